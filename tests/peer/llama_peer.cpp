// llama.cpp as a live peer: a small driver over the prebuilt libllama from the npm package
// node-llama-cpp (installed by scripts/test-assets.sh; never vendored). It evaluates given
// token ids with the C API and writes what tca is compared with.
//   llama_peer logits MODEL.gguf IDS_FILE OUT.f32 [threads]   all-position logits [n x n_vocab]
//   llama_peer greedy MODEL.gguf IDS_FILE N [threads]          prints N greedy ids
//   llama_peer bench  MODEL.gguf N_PROMPT N_GEN THREADS [REPS] prefill and decode tokens/s
//                                                              (medians over REPS after a warm-up)
// IDS_FILE holds whitespace-separated token ids. K/V cache f32, flash attention off, so the
// attention is plain softmax(QK^T)V as in tca's reference.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "llama.h"

namespace {

void quiet_log(ggml_log_level level, const char* text, void*) {
    if (level >= GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}

struct Peer {
    llama_model* model = nullptr;
    llama_context* ctx = nullptr;
    int n_vocab = 0;
    ~Peer() {
        if (ctx) llama_free(ctx);
        if (model) llama_model_free(model);
        llama_backend_free();
    }
};

bool open_peer(Peer& p, const char* path, int n_ctx, int threads) {
    llama_log_set(quiet_log, nullptr);
    const char* dir = std::getenv("GGML_BACKEND_DIR");
#ifdef TCA_PEER_BACKEND_DIR
    if (!dir) dir = TCA_PEER_BACKEND_DIR;  // the build's peer folder (tests/CMakeLists.txt)
#endif
    ggml_backend_load_all_from_path(dir ? dir : ".");
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    p.model = llama_model_load_from_file(path, mp);
    if (!p.model) {
        std::fprintf(stderr, "llama_peer: cannot load %s\n", path);
        return false;
    }
    p.n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(p.model));
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = static_cast<uint32_t>(n_ctx);
    cp.n_batch = static_cast<uint32_t>(n_ctx);
    cp.n_ubatch = static_cast<uint32_t>(std::min(n_ctx, 512));
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    p.ctx = llama_init_from_model(p.model, cp);
    if (!p.ctx) {
        std::fprintf(stderr, "llama_peer: cannot create a context of %d tokens\n", n_ctx);
        return false;
    }
    return true;
}

std::vector<llama_token> read_ids(const char* path) {
    std::ifstream in(path);
    std::vector<llama_token> ids;
    long long v;
    while (in >> v) ids.push_back(static_cast<llama_token>(v));
    return ids;
}

// Evaluates ids at positions [pos0, pos0 + n) requesting logits for every row when `all`.
bool decode(Peer& p, const std::vector<llama_token>& ids, int pos0, bool all) {
    const int n = static_cast<int>(ids.size());
    llama_batch b = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; ++i) {
        b.token[i] = ids[static_cast<size_t>(i)];
        b.pos[i] = pos0 + i;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = (all || i == n - 1) ? 1 : 0;
    }
    b.n_tokens = n;
    const bool ok = llama_decode(p.ctx, b) == 0;
    llama_batch_free(b);
    if (!ok) std::fprintf(stderr, "llama_peer: llama_decode failed\n");
    return ok;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 5) {
        std::fprintf(stderr, "usage: llama_peer logits|greedy|bench ...\n");
        return 2;
    }
    const std::string mode = argv[1];
    Peer p;
    if (mode == "logits" || mode == "greedy") {
        const std::vector<llama_token> ids = read_ids(argv[3]);
        const int threads = argc > 5 ? std::atoi(argv[5]) : 1;
        const int n_gen = mode == "greedy" ? std::atoi(argv[4]) : 0;
        if (ids.empty() || !open_peer(p, argv[2], static_cast<int>(ids.size()) + n_gen + 8, threads)) {
            return 1;
        }
        if (!decode(p, ids, 0, mode == "logits")) return 1;
        if (mode == "logits") {
            std::FILE* f = std::fopen(argv[4], "wb");
            if (!f) return 1;
            for (size_t i = 0; i < ids.size(); ++i) {
                std::fwrite(llama_get_logits_ith(p.ctx, static_cast<int32_t>(i)), sizeof(float),
                            static_cast<size_t>(p.n_vocab), f);
            }
            std::fclose(f);
            return 0;
        }
        int pos = static_cast<int>(ids.size());
        for (int i = 0; i < n_gen; ++i) {
            const float* l = llama_get_logits_ith(p.ctx, -1);
            const llama_token next = static_cast<llama_token>(std::max_element(l, l + p.n_vocab) - l);
            std::printf("%s%d", i ? " " : "", next);
            if (!decode(p, {next}, pos++, false)) return 1;
        }
        std::printf("\n");
        return 0;
    }
    if (mode == "bench" && argc >= 6) {
        const int n_prompt = std::atoi(argv[3]), n_gen = std::atoi(argv[4]);
        const int threads = std::atoi(argv[5]);
        const int reps = argc > 6 ? std::max(1, std::atoi(argv[6])) : 1;
        if (n_prompt < 1 || n_gen < 1 || threads < 1) return 2;
        if (!open_peer(p, argv[2], n_prompt + n_gen + 8, threads)) return 1;
        std::vector<llama_token> ids(static_cast<size_t>(n_prompt));
        for (int i = 0; i < n_prompt; ++i) ids[static_cast<size_t>(i)] = 1 + (i * 7919) % (p.n_vocab - 1);
        // Warm-up (weights paged in, threads started), then `reps` timed runs on an empty
        // cache; the medians are printed.
        if (!decode(p, std::vector<llama_token>(ids.begin(), ids.begin() + std::min(n_prompt, 16)), 0, false)) return 1;
        std::vector<double> prefill, gen;
        for (int r = 0; r < reps; ++r) {
            llama_memory_clear(llama_get_memory(p.ctx), true);
            // Prompt in ubatches of 512, as llama-bench's pp test does.
            auto t0 = std::chrono::steady_clock::now();
            for (int i = 0; i < n_prompt; i += 512) {
                const int n = std::min(512, n_prompt - i);
                if (!decode(p, std::vector<llama_token>(ids.begin() + i, ids.begin() + i + n), i, false)) return 1;
            }
            prefill.push_back(n_prompt / seconds_since(t0));
            t0 = std::chrono::steady_clock::now();
            llama_token tok = 1;
            for (int i = 0; i < n_gen; ++i) {
                if (!decode(p, {tok}, n_prompt + i, false)) return 1;
                tok = 1 + (i * 104729) % (p.n_vocab - 1);
            }
            gen.push_back(n_gen / seconds_since(t0));
        }
        std::sort(prefill.begin(), prefill.end());
        std::sort(gen.begin(), gen.end());
        std::printf("{\"prefill_tokens_per_s\":%.3f,\"decode_tokens_per_s\":%.3f,\"reps\":%d}\n",
                    prefill[prefill.size() / 2], gen[gen.size() / 2], reps);
        return 0;
    }
    std::fprintf(stderr, "llama_peer: unknown mode '%s'\n", mode.c_str());
    return 2;
}
