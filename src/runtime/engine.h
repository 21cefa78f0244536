// Engine: a model, its tokenizer, a KV cache and the run state, with the operations a user of
// an inference engine needs: evaluate a prompt (in chunks of batch_size), decode token by
// token, generate with a sampler and streamed output, and report memory and speed.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "backend/communicator.h"
#include "core/thread_pool.h"
#include "kv/kv_cache.h"
#include "runtime/attention_runner.h"
#include "runtime/model.h"
#include "sampling/sampler.h"
#include "tokenizer/tokenizer.h"

namespace tca {

struct EngineOptions {
    std::string model_path;
    std::string tokenizer_path;  // tokenizer.json overriding the model's own vocabulary
    int64_t ctx_size = 0;        // 0: the model's context length, at most 4096
    int64_t batch_size = 512;    // prompt tokens per forward call
    int n_threads = 0;           // 0: all hardware threads
    // KV cache storage; unset: f32 on the CPU, bf16 on cuda (the tensor-core attention reads
    // bf16 K/V without a conversion).
    std::optional<DType> kv_dtype;
    bool all_logits = false;     // keep the logits of every prompt token
    // Matmul activations (ops.h): the weight type's dot type as llama.cpp (default; its logits
    // match llama.cpp's, docs/numerics.md) or plain f32 (--matmul-activations f32).
    MatmulActivations matmul_activations = MatmulActivations::kWeightDotType;
    // Where the model, the KV cache and every activation live and the ops run. cuda: weights
    // uploaded (quantized types dequantized to bf16 at load), host reads of runtime data go
    // through explicit small copies (the sampled logits row, cache counts).
    Device device = Device::kCpu;
    // Attention policy (dense by default). TCA evaluates a first prompt as one batch (the
    // method selects with the prompt's last query at every layer), so its activation buffers
    // are sized for the whole context.
    AttentionPolicy attention;
    // tca: per-head budgets from `tca calibrate` (checked against the model's identity); they
    // replace attention.budgets and attention.uniform.
    std::string budget_file;
    // Tensor parallelism (--tensor-parallel): N ranks, one thread each, rank r holding the query
    // heads [r * n_head / N, ...), their KV heads (KV cache and TCA selection local to the rank)
    // and n_ff / N MLP columns (Model::create_shard); the attention output and MLP down
    // projections are all-reduced. On the CPU the ranks split --threads; on cuda rank r runs on
    // GPU r with an NCCL communicator. 1: one unsharded model, no communicator.
    int tensor_parallel = 1;
    // Time the TCA prefill stages (stats: tca_selection_ms, tca_attend_ms) on a device too; the
    // stage clocks then synchronise before and after each stage (H100, 16K prompt: ~1 ms per
    // layer), so it is off by default there. The CPU always times them (no synchronisation).
    bool time_tca_stages = false;
    // > 0: measure attention fidelity against dense (AttentionProbe, attention_runner.h) for
    // every prompt, comparing the prefill outputs of its last probe_rows queries; prompts then
    // run as one batch (as TCA's do) under every policy. Needs tensor_parallel 1.
    int64_t probe_rows = 0;
};

struct EngineStats {
    int64_t n_prompt_tokens = 0;
    int64_t n_positions = 0;     // tokens in the sequence (prompt + generated)
    uint64_t kv_bytes = 0;       // K/V bytes the cache holds now
    uint64_t kv_bytes_dense = 0; // K/V bytes dense attention would hold for the sequence
    int64_t n_generated = 0;
    double prefill_ms = 0;
    double decode_ms = 0;
    double prefill_tokens_per_s() const;
    double decode_tokens_per_s() const;
};

class Engine {
public:
    static Result<std::unique_ptr<Engine>> create(const EngineOptions& opt);

    // The whole model's configuration (also with tensor parallelism).
    const ModelConfig& config() const { return model_->weights().config; }
    const Tokenizer& tokenizer() const { return *tokenizer_; }
    // The KV cache (rank 0's heads under tensor parallelism).
    const KvCache& cache() const { return cache_; }
    int tensor_parallel() const { return opt_.tensor_parallel; }
    int64_t ctx_size() const { return cache_.capacity(); }
    int64_t n_past() const { return n_past_; }
    // Speed and KV accounting of everything evaluated so far.
    EngineStats stats() const;
    const AttentionRunner& attention() const { return *attention_; }
    // The stats as a JSON object (--stats-json): kv_bytes, kv_bytes_dense, prefill_ms,
    // decode_tokens_per_s, n_prompt_tokens, attention, ...
    std::string stats_json() const;
    // One line per buffer kind: weights, KV cache, activations.
    std::string memory_report() const;

    // Evaluates tokens after the current sequence. When logits_out is non-null (requires
    // all_logits) it receives n x n_vocab floats, row i = logits after token i.
    Status eval(std::span<const int32_t> ids, std::vector<float>* logits_out,
                const LayerObserver* observer = nullptr);
    // Logits after the last evaluated token [n_vocab] (host memory on every device).
    const float* last_logits() const;
    Device device() const { return opt_.device; }
    // Generates up to n_predict tokens after the evaluated sequence; on_token gets each id
    // (return false to stop). Stops at an end-of-generation token.
    Status generate(int64_t n_predict, Sampler& sampler,
                    const std::function<bool(int32_t)>& on_token);
    // Forgets the sequence (empty cache).
    void reset();
    // Before the first prompt: evaluates n_tokens synthetic tokens (ids 1, 2, ...) as one
    // prompt and one decode step on the same path as a real prompt, then forgets them and the
    // statistics, so that GPU kernels are loaded and work buffers allocated before the first
    // timed prompt (tca run --warmup; llama.cpp warms up too). For TCA, n_tokens above the
    // local window plus a block also runs the prompt-end selection and compaction.
    Status warmup(int64_t n_tokens);

    ~Engine();

private:
    Engine() = default;
    // Tensor parallelism: what each rank other than 0 owns (rank 0's are the members below).
    struct Rank {
        std::unique_ptr<Model> model;
        KvCache cache;
        std::unique_ptr<RunState> state;
        std::unique_ptr<AttentionRunner> attention;
    };
    // Creates rank r's model, cache, attention runner and run state.
    Status create_rank(int r, const std::shared_ptr<const ModelWeights>& weights,
                       const AttentionPolicy& policy, int64_t ctx, DType kv_dtype,
                       const MemorySpace& space, Rank& out);
    // One forward call of every rank (forward() itself without tensor parallelism).
    Status forward_all(std::span<const int32_t> ids, int64_t pos0, bool prompt_end,
                       const LayerObserver* observer);
    EngineOptions opt_;
    std::vector<Rank> ranks_;                           // ranks 1 .. N-1
    std::vector<std::unique_ptr<ThreadPool>> pools_;    // CPU: ranks' thread pools
    std::unique_ptr<HostCommGroup> host_comm_;          // CPU ranks
    std::vector<std::unique_ptr<Communicator>> nccl_;   // cuda ranks
    std::unique_ptr<Model> model_;
    std::unique_ptr<Tokenizer> tokenizer_;
    KvCache cache_;
    std::unique_ptr<RunState> state_;
    std::unique_ptr<AttentionRunner> attention_;
    int64_t n_past_ = 0;
    int64_t last_row_ = 0;  // row of state_->logits holding the last token's logits
    // Device engines: the host copy of the last token's logits (for the sampler).
    HostTensor host_logits_;
    Status fetch_last_logits();
    EngineStats stats_;
};

}  // namespace tca
