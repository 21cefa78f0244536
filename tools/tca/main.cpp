// tca command-line entry point: a thin dispatcher over subcommands (no math here).
#include <cstdio>
#include <cstring>
#include <string>

int main(int argc, char** argv) {
    if (argc < 2 || std::strcmp(argv[1], "--help") == 0) {
        std::printf("usage: tca <command> [options]\n");
        return argc < 2 ? 2 : 0;
    }
    std::fprintf(stderr, "tca: unknown command '%s' (see tca --help)\n", argv[1]);
    return 2;
}
