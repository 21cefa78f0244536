// Run-time loading of the GPU libraries the CUDA backend calls (cuBLAS, NCCL): binaries link
// neither, and open them with dlopen on first use. A CPU-only run, and every CPU test process,
// then never maps them (libcublas + libcublasLt alone cost about 0.4 s of process start, their
// static initialisers), and a CUDA build starts on a machine without them, saying in one line
// what is missing when a GPU op needs it.
#pragma once

#include <dlfcn.h>

#include <string>
#include <vector>

namespace tca::cuda {

// An opened library and the first error met while opening it or resolving its symbols.
struct DynamicLibrary {
    void* handle = nullptr;
    std::string name;   // the candidate that loaded
    std::string error;  // empty while everything resolved

    // dlopen (RTLD_NOW | RTLD_LOCAL) of the first candidate that loads; `error` lists every
    // attempt otherwise. The handle is never closed (the process keeps the library).
    static DynamicLibrary open(const std::vector<std::string>& candidates) {
        DynamicLibrary lib;
        for (const std::string& c : candidates) {
            lib.handle = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
            if (lib.handle) {
                lib.name = c;
                return lib;
            }
            const char* why = dlerror();
            lib.error += (lib.error.empty() ? "" : "; ") + std::string(why ? why : c.c_str());
        }
        if (candidates.empty()) lib.error = "no library name given";
        return lib;
    }

    // fn = the symbol `symbol`; a missing one is recorded in `error` (the first only).
    template <class Fn>
    void resolve(const char* symbol, Fn*& fn) {
        fn = nullptr;
        if (!handle) return;
        fn = reinterpret_cast<Fn*>(dlsym(handle, symbol));
        if (!fn && error.empty()) error = name + " has no " + symbol;
    }

    bool ok() const { return handle != nullptr && error.empty(); }
};

}  // namespace tca::cuda
