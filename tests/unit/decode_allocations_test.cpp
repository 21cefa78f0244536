// The decode loop allocates nothing (docs/architecture.md): every global operator new of this
// test binary is replaced by a malloc-based one that counts calls while a global flag is
// armed (on any thread: pool workers included). After a warm-up, further decode steps of an
// Engine (through Engine::generate, with a callback that does not allocate) must count zero,
// for --attention dense, tca (b = 8, w = 16: block compaction runs during the measured steps)
// and streaming, on stories260K (skipped when the shared assets are absent) and on a
// generated model. The replacement pairs malloc/aligned_alloc with free only, so it stays
// correct under ASan/UBSan (which intercept malloc and free).
#include <array>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <new>
#include <string>

#include <gtest/gtest.h>

#include "model/random_model.h"
#include "runtime/engine.h"
#include "sampling/sampler.h"
#include "sparse/head_budgets.h"
#include "unit/model_test_util.h"

namespace {

std::atomic<bool> g_armed{false};
std::atomic<int64_t> g_allocs{0};

void* counted_alloc(std::size_t size, std::size_t align) {
    if (g_armed.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
    if (size == 0) size = 1;
    if (align <= alignof(std::max_align_t)) return std::malloc(size);
    // aligned_alloc wants a size that is a multiple of the alignment.
    const std::size_t rounded = (size + align - 1) / align * align;
    return std::aligned_alloc(align, rounded);
}

void* counted_alloc_or_throw(std::size_t size, std::size_t align) {
    void* p = counted_alloc(size, align);
    if (!p) throw std::bad_alloc();
    return p;
}

}  // namespace

// Every replaceable allocation function (C++17): plain, array, aligned, nothrow; every
// deallocation function (sized and aligned ones included) frees.
void* operator new(std::size_t n) { return counted_alloc_or_throw(n, 0); }
void* operator new[](std::size_t n) { return counted_alloc_or_throw(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) {
    return counted_alloc_or_throw(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
    return counted_alloc_or_throw(n, static_cast<std::size_t>(a));
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n, 0); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n, 0); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    return counted_alloc(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    return counted_alloc(n, static_cast<std::size_t>(a));
}
// GCC at -O1 inlines these into GoogleTest's `new TestClass` and warns that free() releases
// memory from operator new: both are the malloc-based replacements above, so it is a false
// positive.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace tca {
namespace {

constexpr int64_t kWarmupSteps = 24;    // 3 TCA block compactions (b = 8) per layer
constexpr int64_t kMeasuredSteps = 40;  // 5 more, and a streaming eviction every step
constexpr int64_t kPromptTokens = 48;

// Counts the allocations of its scope (from zero) when `on`.
struct Armed {
    explicit Armed(bool on = true) {
        g_allocs.store(0);
        g_armed.store(on);
    }
    ~Armed() { g_armed.store(false); }
    Armed(const Armed&) = delete;
    Armed& operator=(const Armed&) = delete;
};

// The counter itself works (guards against a replacement that is not linked in).
TEST(DecodeAllocations, CounterSeesAllocations) {
    int64_t n = 0;
    {
        Armed armed;
        auto p = std::make_unique<std::array<char, 64>>();
        std::vector<int> v(100);
        (void)p, (void)v;
        n = g_allocs.load();
    }
    EXPECT_EQ(n, 2);
}

AttentionPolicy policy(AttentionKind kind) {
    AttentionPolicy p;
    p.kind = kind;
    if (kind == AttentionKind::kTca) {
        p.budgets.options.block_size = 8;
        p.budgets.options.local_window = 16;
        p.uniform = log_gaussian_config(1.0, 1.0, 8);  // keeps ~2 of each block of 8
    }
    if (kind == AttentionKind::kStreaming) {
        p.kv_budget = 40;  // below the prompt: every decode step evicts one token
        p.n_sink = 4;
    }
    return p;
}

// Runs `steps` decode forwards through Engine::generate; returns the allocations counted.
// A sampled end-of-generation token ends a generate call early: one more token is then
// evaluated (not counted, same decode path) and generation goes on.
int64_t decode_allocations(Engine& e, Sampler& sampler, int64_t steps, bool count) {
    std::array<int32_t, 256> ids{};
    size_t n_ids = 0;
    // Built before arming: the callback itself must not allocate.
    const std::function<bool(int32_t)> on_token = [&](int32_t id) {
        ids[n_ids++ % ids.size()] = id;
        return true;
    };
    int64_t allocs = 0;
    for (int attempt = 0; attempt < 16 && steps > 0; ++attempt) {
        const int64_t before = e.n_past();
        Status s;
        {
            // generate(n) runs n - 1 forwards (the last sampled token needs none).
            Armed armed(count);
            s = e.generate(steps + 1, sampler, on_token);
            allocs += count ? g_allocs.load() : 0;
        }
        EXPECT_TRUE(s.ok()) << s.to_string();
        if (!s.ok()) break;
        const int64_t done = e.n_past() - before;
        steps -= done;
        if (steps > 0 && done == 0) {
            const int32_t filler[1] = {300};
            EXPECT_TRUE(e.eval(filler, nullptr).ok());
            --steps;
        }
    }
    EXPECT_EQ(steps, 0) << "generation kept ending early";
    return allocs;
}

void expect_decode_allocates_nothing(const std::string& model_path, AttentionKind kind) {
    SCOPED_TRACE(std::string("attention ") + attention_kind_name(kind) + ", model " + model_path);
    EngineOptions opt;
    opt.model_path = model_path;
    opt.ctx_size = 256;
    opt.n_threads = 2;  // the pool's worker threads are measured too
    opt.attention = policy(kind);
    auto created = Engine::create(opt);
    ASSERT_TRUE(created.ok()) << created.status().to_string();
    Engine& e = *created.value();
    std::vector<int32_t> prompt;
    for (int64_t i = 0; i < kPromptTokens; ++i) prompt.push_back(static_cast<int32_t>(259 + i % 200));
    ASSERT_TRUE(e.eval(prompt, nullptr).ok());
    SamplerOptions so;
    so.temperature = 0.8;
    so.seed = 7;
    Sampler sampler(so, e.config().n_vocab);
    decode_allocations(e, sampler, kWarmupSteps, false);
    const int64_t before = e.n_past();
    EXPECT_EQ(decode_allocations(e, sampler, kMeasuredSteps, true), 0)
        << "operator new calls during " << kMeasuredSteps << " decode steps";
    EXPECT_EQ(e.n_past() - before, kMeasuredSteps);
    if (kind != AttentionKind::kDense) {
        // Compaction / eviction ran: the cache holds fewer K/V bytes than dense attention.
        EXPECT_LT(e.stats().kv_bytes, e.stats().kv_bytes_dense);
    }
}

constexpr AttentionKind kKinds[] = {AttentionKind::kDense, AttentionKind::kTca, AttentionKind::kStreaming};

TEST(DecodeAllocations, GeneratedModel) {
    testing::TempDir dir("decode_alloc");
    const std::string path = dir.path() + "/random.gguf";
    RandomModelSpec spec;
    spec.n_vocab = 512;
    spec.n_embd = 128;
    spec.n_layer = 2;
    spec.n_head = 4;
    spec.n_head_kv = 2;
    spec.head_dim = 64;
    spec.n_ff = 256;
    spec.context_length = 256;
    ASSERT_TRUE(write_random_model(path, spec).ok());
    for (AttentionKind kind : kKinds) expect_decode_allocates_nothing(path, kind);
}

TEST(DecodeAllocations, Stories260K) {
    const std::string path = testing::shared_models_dir() + "/stories260K.gguf";
    if (!std::filesystem::exists(path)) GTEST_SKIP() << "no " << path << " (shared test assets)";
    for (AttentionKind kind : kKinds) expect_decode_allocates_nothing(path, kind);
}

}  // namespace
}  // namespace tca
