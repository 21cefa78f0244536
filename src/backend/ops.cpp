// Validation shared by every backend, and the device dispatch (the only device switch).
#include "backend/ops.h"

#include <cmath>

#include "backend/cpu/cpu_ops.h"

namespace tca {

const char* device_name(Device d) { return d == Device::kCpu ? "cpu" : "cuda"; }

namespace {

std::string dims_string(const TensorView& t) { return t.empty() ? "(null)" : t.shape_string(); }

// A tensor of `ndim` dims with a contiguous innermost dim and the expected shape (-1 = any).
Status check_tensor(const TensorView& t, const char* op, const char* name, int ndim,
                    std::initializer_list<int64_t> shape) {
    if (t.empty()) return invalid_argument("%s: tensor %s is missing", op, name);
    if (t.ndim != ndim) {
        return invalid_argument("%s: tensor %s must have %d dims, got %s", op, name, ndim,
                                dims_string(t).c_str());
    }
    size_t i = 0;
    for (int64_t want : shape) {
        if (want >= 0 && t.shape[i] != want) {
            std::string expect = "[";
            size_t j = 0;
            for (int64_t w : shape) {
                if (j++) expect += ", ";
                expect += w >= 0 ? std::to_string(w) : std::string("*");
            }
            expect += "]";
            return invalid_argument("%s: tensor %s: expected %s, got %s", op, name, expect.c_str(),
                                    dims_string(t).c_str());
        }
        if (t.shape[i] < 0) return invalid_argument("%s: tensor %s has a negative extent", op, name);
        ++i;
    }
    if (t.stride[static_cast<size_t>(ndim - 1)] != 1 && t.shape[static_cast<size_t>(ndim - 1)] > 1) {
        return unsupported("%s: tensor %s must be contiguous in its last dim, got stride %lld", op,
                           name, static_cast<long long>(t.stride[static_cast<size_t>(ndim - 1)]));
    }
    return Status();
}

Status check_dtype(const TensorView& t, const char* op, const char* name, DType want) {
    if (t.dtype != want) {
        return invalid_argument("%s: tensor %s must be %s, got %s", op, name, dtype_name(want),
                                dtype_name(t.dtype));
    }
    return Status();
}

Status check_kv_storage(const TensorView& k, const TensorView& v, const char* op,
                        const char* kname, const char* vname) {
    if (!is_float_storage(k.dtype)) {
        return unsupported("%s: tensor %s must be f32, f16 or bf16, got %s", op, kname,
                           dtype_name(k.dtype));
    }
    if (v.dtype != k.dtype) {
        return invalid_argument("%s: tensor %s must have the dtype of %s (%s), got %s", op, vname,
                                kname, dtype_name(k.dtype), dtype_name(v.dtype));
    }
    for (int i = 0; i < 3; ++i) {
        if (k.shape[static_cast<size_t>(i)] != v.shape[static_cast<size_t>(i)]) {
            return invalid_argument("%s: tensors %s %s and %s %s must have the same shape", op,
                                    kname, dims_string(k).c_str(), vname, dims_string(v).c_str());
        }
    }
    return Status();
}

// q [H, n_q, d] f32 against k/v [Hkv, n, d]: GQA divisibility and head_dim support.
Status check_q_kv(const TensorView& q, const TensorView& k, const TensorView& v, const char* op,
                  const char* kname, const char* vname) {
    TCA_RETURN_IF_ERROR(check_tensor(q, op, "q", 3, {-1, -1, -1}));
    TCA_RETURN_IF_ERROR(check_dtype(q, op, "q", DType::kF32));
    TCA_RETURN_IF_ERROR(check_tensor(k, op, kname, 3, {-1, -1, q.shape[2]}));
    TCA_RETURN_IF_ERROR(check_tensor(v, op, vname, 3, {-1, -1, q.shape[2]}));
    TCA_RETURN_IF_ERROR(check_kv_storage(k, v, op, kname, vname));
    TCA_RETURN_IF_ERROR(validate_head_dim(q.shape[2], op));
    const int64_t hq = q.shape[0], hkv = k.shape[0];
    if (hkv < 1 || hq < 1 || hq % hkv != 0) {
        return invalid_argument("%s: n_q_heads (%lld) must be a positive multiple of n_kv_heads "
                                "(%lld)", op, static_cast<long long>(hq), static_cast<long long>(hkv));
    }
    return Status();
}

Status check_out(const TensorView& out, const TensorView& q, const char* op) {
    TCA_RETURN_IF_ERROR(check_tensor(out, op, "out", 3, {q.shape[0], q.shape[1], q.shape[2]}));
    return check_dtype(out, op, "out", DType::kF32);
}

Status check_i32(const TensorView& t, const char* op, const char* name, int ndim,
                 std::initializer_list<int64_t> shape) {
    TCA_RETURN_IF_ERROR(check_tensor(t, op, name, ndim, shape));
    return check_dtype(t, op, name, DType::kI32);
}

Status check_f32(const TensorView& t, const char* op, const char* name, int ndim,
                 std::initializer_list<int64_t> shape) {
    TCA_RETURN_IF_ERROR(check_tensor(t, op, name, ndim, shape));
    return check_dtype(t, op, name, DType::kF32);
}

Status check_scale(float scale, const char* op) {
    if (!std::isfinite(scale) || scale < 0.0f) {
        return invalid_argument("%s: scale must be finite and >= 0 (0 = 1/sqrt(head_dim)), got %g",
                                op, static_cast<double>(scale));
    }
    return Status();
}

Status with_op(Status s, const char* op) {
    if (s.ok()) return s;
    return Status(s.code(), std::string(op) + ": " + s.message());
}

// The cache tensors of decode_attention and block_compact.
Status check_cache(const TensorView& q, const TensorView& k, const TensorView& v,
                   const TensorView& slot_pos, const char* op) {
    TCA_RETURN_IF_ERROR(check_q_kv(q, k, v, op, "k_cache", "v_cache"));
    return check_i32(slot_pos, op, "slot_pos", 2, {k.shape[0], k.shape[1]});
}

}  // namespace

Status validate_head_dim(int64_t head_dim, const char* op) {
    if (head_dim < 8 || head_dim > 256 || head_dim % 8 != 0) {
        return unsupported("%s: head_dim must be a multiple of 8 in [8, 256], got %lld", op,
                           static_cast<long long>(head_dim));
    }
    return Status();
}

float effective_scale(float scale, int64_t head_dim) {
    return scale > 0.0f ? scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
}

Status validate(const AttentionDenseParams& p) {
    const char* op = "attention_dense";
    TCA_RETURN_IF_ERROR(check_q_kv(p.q, p.k, p.v, op, "k", "v"));
    TCA_RETURN_IF_ERROR(check_out(p.out, p.q, op));
    TCA_RETURN_IF_ERROR(check_scale(p.scale, op));
    if (p.q_pos0 < 0 || p.q_pos0 + p.q.shape[1] > p.k.shape[1]) {
        return invalid_argument("%s: q_pos0 + n_q must lie within n_kv = %lld, got q_pos0 %lld, "
                                "n_q %lld", op, static_cast<long long>(p.k.shape[1]),
                                static_cast<long long>(p.q_pos0), static_cast<long long>(p.q.shape[1]));
    }
    return Status();
}

Status validate(const TokenImportanceParams& p) {
    const char* op = "token_importance";
    TCA_RETURN_IF_ERROR(check_q_kv(p.q, p.k, p.k, op, "k", "k"));
    TCA_RETURN_IF_ERROR(check_f32(p.scores, op, "scores", 2, {p.k.shape[0], p.k.shape[1]}));
    TCA_RETURN_IF_ERROR(check_scale(p.scale, op));
    const int64_t n_obs = p.q.shape[1], n_kv = p.k.shape[1];
    const int64_t pos0 = p.q_pos0 < 0 ? n_kv - n_obs : p.q_pos0;
    if (n_obs < 1 || pos0 < 0 || pos0 + n_obs > n_kv) {
        return invalid_argument("%s: obs_window %lld at q_pos0 %lld must lie within n_kv = %lld", op,
                                static_cast<long long>(n_obs), static_cast<long long>(p.q_pos0),
                                static_cast<long long>(n_kv));
    }
    return Status();
}

Status validate(const BlockScoreParams& p) {
    const char* op = "block_score";
    TCA_RETURN_IF_ERROR(with_op(validate_block_size(p.block_size), op));
    TCA_RETURN_IF_ERROR(check_f32(p.scores, op, "scores", 2, {-1, -1}));
    const int64_t hkv = p.scores.shape[0];
    TCA_RETURN_IF_ERROR(check_f32(p.mass, op, "mass", 2, {hkv, -1}));
    const int64_t nb = p.mass.shape[1];
    TCA_RETURN_IF_ERROR(check_f32(p.hhi, op, "hhi", 2, {hkv, nb}));
    TCA_RETURN_IF_ERROR(check_f32(p.block_score, op, "block_score", 2, {hkv, nb}));
    if (nb * p.block_size > p.scores.shape[1]) {
        return invalid_argument("%s: %lld blocks of %d tokens exceed n_kv = %lld", op,
                                static_cast<long long>(nb), p.block_size,
                                static_cast<long long>(p.scores.shape[1]));
    }
    if (!(p.alpha >= 0.0f && p.alpha <= 1.0f)) {
        return invalid_argument("%s: alpha must be in [0, 1], got %g", op, static_cast<double>(p.alpha));
    }
    return Status();
}

Status validate(const BlockBudgetParams& p) {
    const char* op = "block_budget";
    TCA_RETURN_IF_ERROR(with_op(validate_block_size(p.block_size), op));
    TCA_RETURN_IF_ERROR(check_f32(p.block_score, op, "block_score", 2, {-1, -1}));
    const int64_t hkv = p.block_score.shape[0], nb = p.block_score.shape[1];
    TCA_RETURN_IF_ERROR(check_i32(p.psi, op, "psi", 2, {hkv, nb}));
    return check_i32(p.keep, op, "keep", 2, {hkv, nb});
}

Status validate(const TokenSelectParams& p) {
    const char* op = "token_select";
    TCA_RETURN_IF_ERROR(with_op(validate_block_size(p.block_size), op));
    TCA_RETURN_IF_ERROR(check_f32(p.scores, op, "scores", 2, {-1, -1}));
    const int64_t hkv = p.scores.shape[0];
    TCA_RETURN_IF_ERROR(check_i32(p.keep, op, "keep", 2, {hkv, -1}));
    const int64_t nb = p.keep.shape[1];
    if (nb * p.block_size > p.scores.shape[1]) {
        return invalid_argument("%s: %lld blocks of %d tokens exceed n_kv = %lld", op,
                                static_cast<long long>(nb), p.block_size,
                                static_cast<long long>(p.scores.shape[1]));
    }
    TCA_RETURN_IF_ERROR(check_i32(p.selected, op, "selected", 2, {hkv, -1}));
    if (p.selected.shape[1] < nb * p.block_size) {
        return invalid_argument("%s: tensor selected needs capacity >= n_blocks * block_size = "
                                "%lld, got %lld", op, static_cast<long long>(nb * p.block_size),
                                static_cast<long long>(p.selected.shape[1]));
    }
    return check_i32(p.n_selected, op, "n_selected", 1, {hkv});
}

Status validate(const KvGatherParams& p) {
    const char* op = "kv_gather";
    TCA_RETURN_IF_ERROR(check_tensor(p.k, op, "k", 3, {-1, -1, -1}));
    const int64_t hkv = p.k.shape[0], d = p.k.shape[2];
    TCA_RETURN_IF_ERROR(check_tensor(p.v, op, "v", 3, {hkv, p.k.shape[1], d}));
    TCA_RETURN_IF_ERROR(check_kv_storage(p.k, p.v, op, "k", "v"));
    TCA_RETURN_IF_ERROR(validate_head_dim(d, op));
    TCA_RETURN_IF_ERROR(check_i32(p.positions, op, "positions", 2, {hkv, -1}));
    TCA_RETURN_IF_ERROR(check_i32(p.n_positions, op, "n_positions", 1, {hkv}));
    TCA_RETURN_IF_ERROR(check_tensor(p.k_out, op, "k_out", 3, {hkv, -1, d}));
    TCA_RETURN_IF_ERROR(check_tensor(p.v_out, op, "v_out", 3, {hkv, p.k_out.shape[1], d}));
    TCA_RETURN_IF_ERROR(check_dtype(p.k_out, op, "k_out", p.k.dtype));
    TCA_RETURN_IF_ERROR(check_dtype(p.v_out, op, "v_out", p.k.dtype));
    return check_i32(p.slot_pos, op, "slot_pos", 2, {hkv, p.k_out.shape[1]});
}

Status validate(const SparsePrefillParams& p) {
    const char* op = "sparse_prefill";
    TCA_RETURN_IF_ERROR(with_op(validate_block_size(p.block_size), op));
    TCA_RETURN_IF_ERROR(with_op(validate_local_window(p.local_window, p.block_size), op));
    TCA_RETURN_IF_ERROR(check_q_kv(p.q, p.k, p.v, op, "k", "v"));
    TCA_RETURN_IF_ERROR(check_out(p.out, p.q, op));
    TCA_RETURN_IF_ERROR(check_scale(p.scale, op));
    const int64_t hkv = p.k.shape[0], n_kv = p.k.shape[1], d = p.k.shape[2];
    TCA_RETURN_IF_ERROR(check_tensor(p.k_global, op, "k_global", 3, {hkv, -1, d}));
    TCA_RETURN_IF_ERROR(check_tensor(p.v_global, op, "v_global", 3, {hkv, p.k_global.shape[1], d}));
    TCA_RETURN_IF_ERROR(check_dtype(p.k_global, op, "k_global", p.k.dtype));
    TCA_RETURN_IF_ERROR(check_dtype(p.v_global, op, "v_global", p.k.dtype));
    TCA_RETURN_IF_ERROR(check_i32(p.global_pos, op, "global_pos", 2, {hkv, p.k_global.shape[1]}));
    TCA_RETURN_IF_ERROR(check_i32(p.n_global, op, "n_global", 1, {hkv}));
    if (p.q_pos0 < 0 || p.q_pos0 + p.q.shape[1] > n_kv) {
        return invalid_argument("%s: q_pos0 + n_q must lie within n_kv = %lld, got q_pos0 %lld, "
                                "n_q %lld", op, static_cast<long long>(n_kv),
                                static_cast<long long>(p.q_pos0), static_cast<long long>(p.q.shape[1]));
    }
    const int64_t n = n_candidate_blocks(n_kv, p.local_window, p.block_size);
    if (p.n_blocks != n) {
        return invalid_argument("%s: n_blocks must be floor((n_kv - w) / b) = %lld for n_kv %lld, "
                                "w %d, b %d; got %lld", op, static_cast<long long>(n),
                                static_cast<long long>(n_kv), p.local_window, p.block_size,
                                static_cast<long long>(p.n_blocks));
    }
    return Status();
}

Status validate(const DecodeAttentionParams& p) {
    const char* op = "decode_attention";
    TCA_RETURN_IF_ERROR(check_cache(p.q, p.k_cache, p.v_cache, p.slot_pos, op));
    TCA_RETURN_IF_ERROR(check_i32(p.n_slots, op, "n_slots", 1, {p.k_cache.shape[0]}));
    TCA_RETURN_IF_ERROR(check_out(p.out, p.q, op));
    TCA_RETURN_IF_ERROR(check_scale(p.scale, op));
    if (p.q_pos0 < 0) {
        return invalid_argument("%s: q_pos0 must be >= 0, got %lld", op,
                                static_cast<long long>(p.q_pos0));
    }
    return Status();
}

Status validate(const BlockCompactParams& p) {
    const char* op = "block_compact";
    TCA_RETURN_IF_ERROR(with_op(validate_block_size(p.block_size), op));
    TCA_RETURN_IF_ERROR(check_cache(p.q, p.k_cache, p.v_cache, p.slot_pos, op));
    const int64_t hkv = p.k_cache.shape[0];
    TCA_RETURN_IF_ERROR(check_i32(p.n_global, op, "n_global", 1, {hkv}));
    TCA_RETURN_IF_ERROR(check_i32(p.n_slots, op, "n_slots", 1, {hkv}));
    TCA_RETURN_IF_ERROR(check_i32(p.keep, op, "keep", 1, {hkv}));
    return check_scale(p.scale, op);
}

namespace ops {
#define TCA_DEFINE_DISPATCH(name, Params)                                           \
    Status name(Device device, const Params& p) {                                   \
        switch (device) {                                                           \
            case Device::kCpu: return cpu::name(p);                                 \
            case Device::kCuda: break;                                              \
        }                                                                           \
        return unsupported(#name ": device %s is not available in this build",     \
                           device_name(device));                                    \
    }
TCA_FOR_EACH_OP(TCA_DEFINE_DISPATCH)
#undef TCA_DEFINE_DISPATCH
}  // namespace ops

}  // namespace tca
