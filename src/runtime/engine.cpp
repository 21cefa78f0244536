// Engine implementation (engine.h).
#include "runtime/engine.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <new>
#include <optional>
#include <system_error>
#include <thread>

#include "backend/device_memory.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/strings.h"
#include "core/thread_pool.h"
#include "sparse/budget_file.h"

namespace tca {
namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

double EngineStats::prefill_tokens_per_s() const {
    return prefill_ms > 0 ? 1000.0 * static_cast<double>(n_prompt_tokens) / prefill_ms : 0.0;
}
double EngineStats::decode_tokens_per_s() const {
    return decode_ms > 0 ? 1000.0 * static_cast<double>(n_generated) / decode_ms : 0.0;
}

Result<std::unique_ptr<Engine>> Engine::create(const EngineOptions& opt) {
    if (opt.n_threads < 0 || opt.n_threads > 1024) {
        return usage_error("--threads must be in [1, 1024], got %d", opt.n_threads);
    }
    if (opt.batch_size < 1) {
        return usage_error("--batch-size must be >= 1, got %lld", static_cast<long long>(opt.batch_size));
    }
    if (opt.ctx_size < 0) {
        return usage_error("--ctx-size must be >= 1, got %lld", static_cast<long long>(opt.ctx_size));
    }
    if (opt.n_threads > 0) set_num_threads(opt.n_threads);
    // The device first: a missing GPU is one error before any loading.
    TCA_ASSIGN_OR_RETURN(const MemorySpace* space, memory_space(opt.device));
    const DType kv_dtype = opt.kv_dtype.value_or(opt.device == Device::kCpu ? DType::kF32 : DType::kBF16);
    std::unique_ptr<Engine> e(new (std::nothrow) Engine());
    if (!e) return out_of_memory("engine: cannot allocate");
    e->opt_ = opt;
    TCA_ASSIGN_OR_RETURN(ModelWeights weights, load_model(opt.model_path));
    // Tokenizer: a tokenizer.json given explicitly, else the GGUF's own, else tokenizer.json
    // next to a safetensors model.
    std::string tok_path = opt.tokenizer_path;
    if (tok_path.empty() && !weights.gguf) {
        std::string dir = weights.path;
        if (dir.size() > 12 && dir.compare(dir.size() - 12, 12, ".safetensors") == 0) {
            const size_t slash = dir.find_last_of('/');
            dir = slash == std::string::npos ? "." : dir.substr(0, slash);
        }
        tok_path = dir + "/tokenizer.json";
    }
    if (!tok_path.empty()) {
        TCA_ASSIGN_OR_RETURN(Tokenizer t, Tokenizer::from_hf_json_file(tok_path));
        e->tokenizer_ = std::make_unique<Tokenizer>(std::move(t));
    } else {
        TCA_ASSIGN_OR_RETURN(Tokenizer t, Tokenizer::from_gguf(*weights.gguf));
        e->tokenizer_ = std::make_unique<Tokenizer>(std::move(t));
    }
    if (e->tokenizer_->n_vocab() > weights.config.n_vocab) {
        return invalid_argument("tokenizer has %d tokens but the model's vocabulary is %lld",
                                e->tokenizer_->n_vocab(), static_cast<long long>(weights.config.n_vocab));
    }
    AttentionPolicy policy = opt.attention;
    if (!opt.budget_file.empty()) {
        if (policy.kind != AttentionKind::kTca) {
            return usage_error("--budget-file applies to --attention tca, not %s",
                               attention_kind_name(policy.kind));
        }
        TCA_ASSIGN_OR_RETURN(BudgetFile file, read_budget_file(opt.budget_file));
        TCA_RETURN_IF_ERROR(check_budgets_for_model(file.identity, weights));
        policy.budgets = std::move(file.budgets);
        policy.uniform.reset();
    }
    const int tp = opt.tensor_parallel;
    if (tp < 1 || tp > 64) return usage_error("--tensor-parallel must be in [1, 64], got %d", tp);
    if (opt.probe_rows < 0) {
        return usage_error("attention probe rows must be >= 0, got %lld", static_cast<long long>(opt.probe_rows));
    }
    if (opt.probe_rows > 0 && tp > 1) {
        return usage_error("--tensor-parallel %d: the attention probe (--attn-stats) needs the whole "
                           "model on one device; use --tensor-parallel 1", tp);
    }
    TCA_RETURN_IF_ERROR(check_tensor_parallel(weights.config, tp));
    if (tp > 1 && opt.device == Device::kCuda) {
        TCA_ASSIGN_OR_RETURN(e->nccl_, create_nccl_communicators(tp));
    } else if (tp > 1) {
        // CPU ranks: threads of this process, each with its share of the worker threads.
        e->host_comm_ = std::make_unique<HostCommGroup>(tp);
        const int threads = opt.n_threads > 0 ? opt.n_threads : thread_pool().n_threads();
        for (int r = 0; r < tp; ++r) e->pools_.push_back(std::make_unique<ThreadPool>(std::max(1, threads / tp)));
    }
    int64_t ctx = opt.ctx_size;
    const ModelConfig& full = weights.config;
    if (ctx == 0) ctx = full.context_length > 0 ? std::min<int64_t>(full.context_length, 4096) : 4096;
    if (ctx > (int64_t{1} << 30)) {
        return usage_error("--ctx-size %lld is larger than the supported 2^30 tokens",
                           static_cast<long long>(ctx));
    }
    expand_uniform(policy, full.n_layer, full.n_head_kv);
    TCA_RETURN_IF_ERROR(validate(policy, full.n_layer, full.n_head_kv));
    std::shared_ptr<const ModelWeights> shared;
    try {
        shared = std::make_shared<const ModelWeights>(std::move(weights));
    } catch (const std::bad_alloc&) {
        return out_of_memory("engine: cannot allocate");
    }
    e->ranks_.resize(static_cast<size_t>(tp - 1));
    for (int r = 0; r < tp; ++r) {
        // Rank r's buffers live on device r (a no-op on the CPU).
        TCA_RETURN_IF_ERROR(select_device(opt.device, r));
        Rank one;
        TCA_RETURN_IF_ERROR(e->create_rank(r, shared, policy, ctx, kv_dtype, *space, one));
        if (r == 0) {
            e->model_ = std::move(one.model);
            e->cache_ = std::move(one.cache);
            e->attention_ = std::move(one.attention);
            e->state_ = std::move(one.state);
        } else {
            e->ranks_[static_cast<size_t>(r - 1)] = std::move(one);
        }
    }
    TCA_RETURN_IF_ERROR(select_device(opt.device, 0));
    const ModelConfig& c = e->config();
    if (!space->is_host()) {
        try {
            e->host_logits_ = HostTensor(DType::kF32, {c.n_vocab});
        } catch (const std::bad_alloc&) {
            return out_of_memory("engine: cannot allocate the host logits");
        }
    }
    return e;
}

Engine::~Engine() = default;

Status Engine::create_rank(int r, const std::shared_ptr<const ModelWeights>& weights,
                           const AttentionPolicy& policy, int64_t ctx, DType kv_dtype,
                           const MemorySpace& space, Rank& out) {
    const int tp = opt_.tensor_parallel;
    TCA_ASSIGN_OR_RETURN(out.model, Model::create_shard(weights, space, TensorShard{r, tp}));
    out.model->set_matmul_activations(opt_.matmul_activations);
    const ModelConfig& c = out.model->config();  // the shard's heads and MLP columns
    TCA_ASSIGN_OR_RETURN(out.cache, KvCache::create(c.n_layer, c.n_head_kv, ctx, c.head_dim,
                                                    kv_dtype, space.available_bytes(), space));
    TCA_ASSIGN_OR_RETURN(out.attention, AttentionRunner::create(policy, c.n_head, c.n_head_kv, c.head_dim,
                                                                ctx, kv_dtype, space, r * c.n_head_kv));
    out.attention->set_stage_timing(space.is_host() || opt_.time_tca_stages);
    if (opt_.probe_rows > 0) TCA_RETURN_IF_ERROR(out.attention->enable_probe(opt_.probe_rows));
    const bool whole_prompt = opt_.attention.kind == AttentionKind::kTca || opt_.probe_rows > 0;
    const int64_t batch = whole_prompt ? ctx : std::min(opt_.batch_size, ctx);
    // Every rank computes the (replicated) logits; only rank 0's are read.
    Result<std::unique_ptr<RunState>> st = RunState::create(c, batch, opt_.all_logits && r == 0, space);
    if (!st.ok()) {
        return Status(st.status().code(), strformat("run state for a batch of %lld tokens does not fit: %s",
                                                    static_cast<long long>(batch),
                                                    st.status().message().c_str()));
    }
    out.state = std::move(st.value());
    return Status();
}

Status Engine::forward_all(std::span<const int32_t> ids, int64_t pos0, bool prompt_end,
                           const LayerObserver* observer) {
    if (ranks_.empty()) {
        return forward(opt_.device, *model_, *state_, cache_, *attention_, ids, pos0, prompt_end, observer);
    }
    if (observer && *observer) {
        return unsupported("--tensor-parallel %d: layer observers (calibration, diagnostics) need "
                           "the whole model on one device; use --tensor-parallel 1",
                           opt_.tensor_parallel);
    }
    const int tp = opt_.tensor_parallel;
    std::vector<Status> status(static_cast<size_t>(tp));
    std::vector<char> failed_first(static_cast<size_t>(tp), 0);
    auto run_rank = [&](int r) {
        Communicator& comm = host_comm_ ? host_comm_->rank(r) : *nccl_[static_cast<size_t>(r)];
        std::optional<ScopedThreadPool> pool;
        if (!pools_.empty()) pool.emplace(*pools_[static_cast<size_t>(r)]);
        Status s = select_device(opt_.device, r);
        if (s.ok()) {
            if (r == 0) {
                s = forward(opt_.device, *model_, *state_, cache_, *attention_, ids, pos0, prompt_end,
                            nullptr, &comm);
            } else {
                Rank& k = ranks_[static_cast<size_t>(r - 1)];
                s = forward(opt_.device, *k.model, *k.state, k.cache, *k.attention, ids, pos0,
                            prompt_end, nullptr, &comm);
            }
        }
        if (!s.ok()) {
            failed_first[static_cast<size_t>(r)] = 1;
            comm.abort();
        }
        status[static_cast<size_t>(r)] = std::move(s);
    };
    std::vector<std::thread> threads;
    try {
        for (int r = 1; r < tp; ++r) threads.emplace_back(run_rank, r);
    } catch (const std::system_error& err) {
        TCA_ASSERT(false, "tensor parallel: cannot start a rank thread: %s", err.what());
    }
    run_rank(0);
    for (std::thread& t : threads) t.join();
    TCA_RETURN_IF_ERROR(select_device(opt_.device, 0));
    if (host_comm_) host_comm_->reset();
    // The first rank whose own step failed (the others report the abort).
    for (const Status& s : status) {
        if (!s.ok() && s.message() != "tensor parallel: another rank failed") return s;
    }
    for (const Status& s : status) TCA_RETURN_IF_ERROR(s);
    return Status();
}

std::string Engine::memory_report() const {
    std::string where;
    if (opt_.device != Device::kCpu) {
        where = strformat(" on %s", device_name(opt_.device));
        if (!model_->weight_conversion().empty()) where += " (" + model_->weight_conversion() + ")";
    }
    if (opt_.tensor_parallel > 1) {
        where += strformat(" per rank (rank 0 of %d, its heads and MLP columns)", opt_.tensor_parallel);
    }
    return strformat("weights %s%s, kv cache %s (%lld tokens x %lld layers, %s), activations %s, "
                     "attention (%s) scratch %s",
                     format_bytes(model_->weight_bytes()).c_str(), where.c_str(),
                     format_bytes(cache_.allocated_bytes()).c_str(),
                     static_cast<long long>(cache_.capacity()),
                     static_cast<long long>(cache_.n_layers()), dtype_name(cache_.dtype()),
                     format_bytes(state_->nbytes()).c_str(),
                     attention_kind_name(attention_->policy().kind),
                     format_bytes(attention_->scratch_bytes()).c_str());
}

Status Engine::eval(std::span<const int32_t> ids, std::vector<float>* logits_out,
                    const LayerObserver* observer) {
    const auto n = static_cast<int64_t>(ids.size());
    if (n == 0) return invalid_argument("nothing to evaluate: the prompt has no tokens");
    if (n_past_ + n > cache_.capacity()) {
        return invalid_argument("%lld tokens after %lld exceed the context size %lld (--ctx-size)",
                                static_cast<long long>(n), static_cast<long long>(n_past_),
                                static_cast<long long>(cache_.capacity()));
    }
    const int32_t vocab = static_cast<int32_t>(config().n_vocab);
    for (int64_t i = 0; i < n; ++i) {
        const int32_t id = ids[static_cast<size_t>(i)];
        if (id < 0 || id >= vocab) {
            return invalid_argument("token id %d at index %lld is outside the vocabulary [0, %d)",
                                    id, static_cast<long long>(i), vocab);
        }
    }
    if (logits_out) {
        TCA_ASSERT(state_->all_logits, "eval: logits of every token need all_logits");
        logits_out->resize(static_cast<size_t>(n * vocab));
    }
    const bool prompt = n > 1;
    Progress progress("prefill", n);
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < n; i += state_->max_batch) {
        const int64_t len = std::min(state_->max_batch, n - i);
        TCA_RETURN_IF_ERROR(forward_all(ids.subspan(static_cast<size_t>(i), static_cast<size_t>(len)),
                                        n_past_, i + len == n, observer));
        n_past_ += len;
        last_row_ = state_->all_logits ? len - 1 : 0;
        if (logits_out) {
            const size_t bytes = static_cast<size_t>(len * vocab) * sizeof(float);
            if (state_->logits.on_host()) {
                std::memcpy(logits_out->data() + i * vocab, state_->logits.data<float>(), bytes);
            } else {
                TCA_RETURN_IF_ERROR(state_->logits.download(logits_out->data() + i * vocab, bytes));
            }
        }
        progress.update(i + len);
    }
    TCA_RETURN_IF_ERROR(fetch_last_logits());
    progress.done();
    if (prompt) {
        stats_.prefill_ms += ms_since(t0);
        stats_.n_prompt_tokens += n;
    }
    return Status();
}

Status Engine::fetch_last_logits() {
    if (state_->logits.on_host()) return Status();
    const size_t row = static_cast<size_t>(config().n_vocab) * sizeof(float);
    return state_->logits.download(host_logits_.data<float>(), row, static_cast<size_t>(last_row_) * row);
}

const float* Engine::last_logits() const {
    if (!state_->logits.on_host()) return host_logits_.data<float>();
    return state_->logits.data<float>() + last_row_ * config().n_vocab;
}

Status Engine::generate(int64_t n_predict, Sampler& sampler,
                        const std::function<bool(int32_t)>& on_token) {
    if (n_past_ == 0) return invalid_argument("generate: evaluate a prompt first");
    Progress progress("generate", n_predict);
    const auto t0 = std::chrono::steady_clock::now();
    int64_t produced = 0;
    for (int64_t i = 0; i < n_predict; ++i) {
        const int32_t id = sampler.sample(last_logits());
        if (tokenizer_->is_eog(id)) break;
        ++produced;
        if (!on_token(id)) break;
        if (i + 1 == n_predict) break;  // the last token needs no forward pass
        if (n_past_ + 1 > cache_.capacity()) {
            return invalid_argument("generation reached the context size %lld (--ctx-size)",
                                    static_cast<long long>(cache_.capacity()));
        }
        const int32_t one[1] = {id};
        TCA_RETURN_IF_ERROR(forward_all(one, n_past_, false, nullptr));
        ++n_past_;
        last_row_ = 0;
        TCA_RETURN_IF_ERROR(fetch_last_logits());
        progress.update(i + 1);
    }
    progress.done();
    stats_.decode_ms += ms_since(t0);
    stats_.n_generated += produced;
    return Status();
}

EngineStats Engine::stats() const {
    EngineStats s = stats_;
    s.n_positions = n_past_;
    s.kv_bytes = cache_.held_bytes();
    for (const Rank& k : ranks_) s.kv_bytes += k.cache.held_bytes();
    s.kv_bytes_dense = kv_cache_bytes(cache_.n_layers(), config().n_head_kv, n_past_,
                                      cache_.head_dim(), cache_.dtype());
    return s;
}

std::string Engine::stats_json() const {
    const EngineStats s = stats();
    const TcaStageTimings& t = attention_->tca_timings();
    return strformat(
        "{\"attention\":\"%s\",\"n_prompt_tokens\":%lld,\"n_generated\":%lld,\"n_positions\":%lld,"
        "\"kv_bytes\":%llu,\"kv_bytes_dense\":%llu,\"kv_fraction\":%.6f,\"prefill_ms\":%.3f,"
        "\"prefill_tokens_per_s\":%.3f,\"decode_ms\":%.3f,\"decode_tokens_per_s\":%.3f,"
        "\"tca_selection_ms\":%.3f,\"tca_attend_ms\":%.3f,\"threads\":%d}",
        attention_kind_name(attention_->policy().kind), static_cast<long long>(s.n_prompt_tokens),
        static_cast<long long>(s.n_generated), static_cast<long long>(s.n_positions),
        static_cast<unsigned long long>(s.kv_bytes), static_cast<unsigned long long>(s.kv_bytes_dense),
        s.kv_bytes_dense ? static_cast<double>(s.kv_bytes) / static_cast<double>(s.kv_bytes_dense) : 0.0,
        s.prefill_ms, s.prefill_tokens_per_s(), s.decode_ms, s.decode_tokens_per_s(),
        t.selection_ms(), t.attend_ms, thread_pool().n_threads());
}

void Engine::reset() {
    cache_.clear();
    for (Rank& k : ranks_) k.cache.clear();
    n_past_ = 0;
    last_row_ = 0;
}

Status Engine::warmup(int64_t n_tokens) {
    if (n_tokens < 0) return invalid_argument("warmup: token count must be >= 0, got %lld", static_cast<long long>(n_tokens));
    if (n_tokens == 0) return Status();
    if (n_past_ != 0) return invalid_argument("warmup: the engine already holds %lld tokens", static_cast<long long>(n_past_));
    // One slot stays free for the decode step.
    const int64_t n = std::min(n_tokens, cache_.capacity() - 1);
    const int64_t vocab = config().n_vocab;
    if (n < 1 || vocab < 2) return Status();
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>(1 + i % (vocab - 1));
    TCA_LOG_DEBUG("warmup: %lld tokens and one decode step", static_cast<long long>(n));
    Status s = eval(ids, nullptr);
    if (s.ok()) {
        const int32_t one[1] = {ids[0]};
        s = forward_all(one, n_past_, false, nullptr);
        if (s.ok()) ++n_past_;
        if (s.ok()) s = fetch_last_logits();  // on a device: waits for the queued work
    }
    reset();
    stats_ = EngineStats{};
    attention_->clear_measurements();
    for (Rank& k : ranks_) k.attention->clear_measurements();
    if (!s.ok()) return Status(s.code(), "warmup: " + s.message());
    return Status();
}

}  // namespace tca
