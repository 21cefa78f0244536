// Validation shared by every backend, and the device dispatch (the only device switch).
#include "backend/ops.h"

#include <cmath>
#include <cstdint>

#include "backend/cpu/cpu_ops.h"
#if TCA_HAVE_CUDA
#include "backend/cuda/cuda_ops.h"
#endif

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
    if (p.pool < 0 || p.pool > kMaxPool) {
        return invalid_argument("%s: pool must be in [0, %d], got %d", op, kMaxPool, p.pool);
    }
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
    if (p.min_local != 0 && (p.min_local < p.block_size || p.min_local > p.k_cache.shape[1])) {
        return invalid_argument("block_compact: min_local must be 0 or in [block_size %d, capacity %lld], got %lld",
                                p.block_size, static_cast<long long>(p.k_cache.shape[1]),
                                static_cast<long long>(p.min_local));
    }
    return check_scale(p.scale, op);
}

// ---- Model ops ------------------------------------------------------------------------------

const char* matmul_activations_name(MatmulActivations a) {
    return a == MatmulActivations::kF32 ? "f32" : "native";
}

GgmlType matmul_dot_type(GgmlType t) {
    switch (t) {
        case GgmlType::kF16: return GgmlType::kF16;
        case GgmlType::kBF16: return GgmlType::kBF16;
        case GgmlType::kQ8_0: case GgmlType::kQ4_0: case GgmlType::kQ5_0: return GgmlType::kQ8_0;
        case GgmlType::kQ4_1: case GgmlType::kQ5_1: return GgmlType::kQ8_1;
        case GgmlType::kQ2_K: case GgmlType::kQ3_K: case GgmlType::kQ4_K: case GgmlType::kQ5_K:
        case GgmlType::kQ6_K: return GgmlType::kQ8_K;
        default: return GgmlType::kF32;
    }
}

bool is_supported_weight_type(GgmlType t) {
    switch (t) {
        case GgmlType::kF32: case GgmlType::kF16: case GgmlType::kBF16: case GgmlType::kQ8_0:
        case GgmlType::kQ4_0: case GgmlType::kQ4_1: case GgmlType::kQ5_0: case GgmlType::kQ5_1:
        case GgmlType::kQ4_K: case GgmlType::kQ6_K:
            return true;
        default: return false;
    }
}


namespace {

// A weight matrix: present, positive extents, a supported type and whole blocks per row.
Status check_weight(const MatrixView& w, const char* op, const char* name) {
    if (w.data == nullptr) return invalid_argument("%s: weight %s is missing", op, name);
    if (w.n_rows < 1 || w.n_cols < 1) {
        return invalid_argument("%s: weight %s must have positive extents, got [%lld, %lld]", op,
                                name, static_cast<long long>(w.n_rows),
                                static_cast<long long>(w.n_cols));
    }
    if (!is_supported_weight_type(w.type)) {
        return unsupported("%s: weight %s has unsupported type %s (F32, F16, BF16, Q8_0, Q4_0, "
                           "Q4_1, Q5_0, Q5_1, Q4_K, Q6_K are)",
                           op, name, ggml_type_label(static_cast<uint32_t>(w.type)).c_str());
    }
    const int64_t be = ggml_type_traits(w.type)->block_elems;
    if (w.n_cols % be != 0) {
        return invalid_argument("%s: weight %s row length %lld must be a multiple of the %s block "
                                "size %lld", op, name, static_cast<long long>(w.n_cols),
                                ggml_type_name(w.type), static_cast<long long>(be));
    }
    return Status();
}

// Byte range [lo, hi) touched by a 2-d view.
bool views_overlap_2d(const TensorView& a, const TensorView& b) {
    auto range = [](const TensorView& t, uintptr_t* lo, uintptr_t* hi) {
        const auto base = reinterpret_cast<uintptr_t>(t.data);
        const int64_t last = (t.shape[0] - 1) * t.stride[0] + (t.shape[1] - 1) * t.stride[1];
        *lo = base;
        *hi = base + static_cast<uintptr_t>(last + 1) * dtype_size(t.dtype);
    };
    if (a.numel() == 0 || b.numel() == 0) return false;
    uintptr_t alo, ahi, blo, bhi;
    range(a, &alo, &ahi);
    range(b, &blo, &bhi);
    return alo < bhi && blo < ahi;
}

// Two views of one shape that address the same elements (the row stride is irrelevant with
// one row, the column stride with one column).
bool same_view_2d(const TensorView& a, const TensorView& b) {
    return a.data == b.data && (a.shape[0] <= 1 || a.stride[0] == b.stride[0]) &&
           (a.shape[1] <= 1 || a.stride[1] == b.stride[1]);
}

// Three [n_tokens, dim] f32 views of one shape (rms_norm's x/out, swiglu, add).
Status check_same_2d(const TensorView& a, const char* aname, const TensorView& b,
                     const char* bname, const char* op) {
    TCA_RETURN_IF_ERROR(check_f32(a, op, aname, 2, {-1, -1}));
    return check_f32(b, op, bname, 2, {a.shape[0], a.shape[1]});
}

}  // namespace

const char* matmul_input_name(MatmulInput in) {
    switch (in) {
        case MatmulInput::kX: return "x";
        case MatmulInput::kRmsNorm: return "rms_norm";
        case MatmulInput::kSwiglu: return "swiglu";
    }
    return "unknown";
}

MatmulParams matmul_of_input(const MatmulParams& p, const TensorView& in) {
    MatmulParams q = p;
    q.x = in;
    q.input = MatmulInput::kX;
    q.norm_weight = TensorView{};
    q.up = TensorView{};
    return q;
}

Status validate(const MatmulParams& p) {
    const char* op = "matmul";
    TCA_RETURN_IF_ERROR(check_weight(p.w, op, "w"));
    TCA_RETURN_IF_ERROR(check_f32(p.x, op, "x", 2, {-1, p.w.n_cols}));
    TCA_RETURN_IF_ERROR(check_f32(p.y, op, "y", 2, {p.x.shape[0], p.w.n_rows}));
    if (!p.bias.empty()) TCA_RETURN_IF_ERROR(check_f32(p.bias, op, "bias", 1, {p.w.n_rows}));
    if (views_overlap_2d(p.x, p.y)) return invalid_argument("%s: y must not overlap x", op);
    switch (p.input) {
        case MatmulInput::kX: break;
        case MatmulInput::kRmsNorm:
            TCA_RETURN_IF_ERROR(check_f32(p.norm_weight, op, "norm_weight", 1, {p.w.n_cols}));
            if (!(std::isfinite(p.norm_eps) && p.norm_eps >= 0.0f)) {
                return invalid_argument("%s: norm_eps must be finite and >= 0, got %g", op,
                                        static_cast<double>(p.norm_eps));
            }
            break;
        case MatmulInput::kSwiglu:
            TCA_RETURN_IF_ERROR(check_f32(p.up, op, "up", 2, {p.x.shape[0], p.w.n_cols}));
            if (views_overlap_2d(p.up, p.y)) return invalid_argument("%s: y must not overlap up", op);
            break;
        default: return invalid_argument("%s: unknown input %d", op, static_cast<int>(p.input));
    }
    if (p.input != MatmulInput::kRmsNorm && !p.norm_weight.empty()) {
        return invalid_argument("%s: norm_weight is set but input is %s (rms_norm uses it)", op,
                                matmul_input_name(p.input));
    }
    if (p.input != MatmulInput::kSwiglu && !p.up.empty()) {
        return invalid_argument("%s: up is set but input is %s (swiglu uses it)", op,
                                matmul_input_name(p.input));
    }
    if (!p.residual.empty()) {
        TCA_RETURN_IF_ERROR(check_f32(p.residual, op, "residual", 2, {p.x.shape[0], p.w.n_rows}));
        if (views_overlap_2d(p.residual, p.y) && !same_view_2d(p.residual, p.y)) {
            return invalid_argument("%s: y overlaps residual without being the same view (in "
                                    "place needs y == residual: same data and strides, y row "
                                    "stride %lld, residual row stride %lld)", op,
                                    static_cast<long long>(p.y.stride[0]),
                                    static_cast<long long>(p.residual.stride[0]));
        }
    }
    return Status();
}

Status validate(const RmsNormParams& p) {
    const char* op = "rms_norm";
    TCA_RETURN_IF_ERROR(check_same_2d(p.x, "x", p.out, "out", op));
    TCA_RETURN_IF_ERROR(check_f32(p.weight, op, "weight", 1, {p.x.shape[1]}));
    if (!(std::isfinite(p.eps) && p.eps >= 0.0f)) {
        return invalid_argument("%s: eps must be finite and >= 0, got %g", op,
                                static_cast<double>(p.eps));
    }
    return Status();
}

Status validate(const RopeParams& p) {
    const char* op = "rope";
    TCA_RETURN_IF_ERROR(check_f32(p.x, op, "x", 3, {-1, -1, -1}));
    const int64_t d = p.x.shape[2];
    if (d < 2 || d % 2 != 0) {
        return invalid_argument("%s: head_dim must be even and >= 2, got %lld", op,
                                static_cast<long long>(d));
    }
    TCA_RETURN_IF_ERROR(check_i32(p.positions, op, "positions", 1, {p.x.shape[0]}));
    TCA_RETURN_IF_ERROR(check_f32(p.inv_freq, op, "inv_freq", 1, {d / 2}));
    if (p.style != RopeStyle::kAdjacentPairs && p.style != RopeStyle::kHalfSplit) {
        return invalid_argument("%s: unknown style %d", op, static_cast<int>(p.style));
    }
    for (int64_t t = 0; t < p.positions.shape[0]; ++t) {
        const int32_t pos = p.positions.ptr<const int32_t>()[t * p.positions.stride[0]];
        if (pos < 0) {
            return invalid_argument("%s: positions[%lld] must be >= 0, got %d", op,
                                    static_cast<long long>(t), pos);
        }
    }
    return Status();
}

Status validate(const SwigluParams& p) {
    const char* op = "swiglu";
    TCA_RETURN_IF_ERROR(check_same_2d(p.gate, "gate", p.up, "up", op));
    return check_f32(p.out, op, "out", 2, {p.gate.shape[0], p.gate.shape[1]});
}

Status validate(const EmbedParams& p) {
    const char* op = "embed";
    TCA_RETURN_IF_ERROR(check_weight(p.table, op, "table"));
    TCA_RETURN_IF_ERROR(check_i32(p.ids, op, "ids", 1, {-1}));
    TCA_RETURN_IF_ERROR(check_f32(p.out, op, "out", 2, {p.ids.shape[0], p.table.n_cols}));
    for (int64_t t = 0; t < p.ids.shape[0]; ++t) {
        const int32_t id = p.ids.ptr<const int32_t>()[t * p.ids.stride[0]];
        if (id < 0 || id >= p.table.n_rows) {
            return invalid_argument("%s: token id %d (ids[%lld]) is out of range for vocab size "
                                    "%lld", op, id, static_cast<long long>(t),
                                    static_cast<long long>(p.table.n_rows));
        }
    }
    return Status();
}

Status validate(const AddParams& p) {
    const char* op = "add";
    TCA_RETURN_IF_ERROR(check_same_2d(p.a, "a", p.b, "b", op));
    return check_f32(p.out, op, "out", 2, {p.a.shape[0], p.a.shape[1]});
}

Status validate(const KvAppendParams& p) {
    const char* op = "kv_append";
    TCA_RETURN_IF_ERROR(check_tensor(p.k_cache, op, "k_cache", 3, {-1, -1, -1}));
    const int64_t hkv = p.k_cache.shape[0], cap = p.k_cache.shape[1], d = p.k_cache.shape[2];
    TCA_RETURN_IF_ERROR(check_tensor(p.v_cache, op, "v_cache", 3, {hkv, cap, d}));
    TCA_RETURN_IF_ERROR(check_kv_storage(p.k_cache, p.v_cache, op, "k_cache", "v_cache"));
    TCA_RETURN_IF_ERROR(validate_head_dim(d, op));
    TCA_RETURN_IF_ERROR(check_f32(p.k_new, op, "k_new", 3, {-1, hkv, d}));
    TCA_RETURN_IF_ERROR(check_f32(p.v_new, op, "v_new", 3, {p.k_new.shape[0], hkv, d}));
    TCA_RETURN_IF_ERROR(check_i32(p.slot_pos, op, "slot_pos", 2, {hkv, cap}));
    TCA_RETURN_IF_ERROR(check_i32(p.n_slots, op, "n_slots", 1, {hkv}));
    if (p.pos0 < 0 || p.pos0 + p.k_new.shape[0] > INT32_MAX) {
        return invalid_argument("%s: positions [%lld, %lld) must lie in [0, 2^31)", op,
                                static_cast<long long>(p.pos0),
                                static_cast<long long>(p.pos0 + p.k_new.shape[0]));
    }
    return Status();
}

Status validate(const KvCompactParams& p) {
    const char* op = "kv_compact";
    TCA_RETURN_IF_ERROR(check_tensor(p.k_cache, op, "k_cache", 3, {-1, -1, -1}));
    const int64_t hkv = p.k_cache.shape[0], cap = p.k_cache.shape[1], d = p.k_cache.shape[2];
    TCA_RETURN_IF_ERROR(check_tensor(p.v_cache, op, "v_cache", 3, {hkv, cap, d}));
    TCA_RETURN_IF_ERROR(check_kv_storage(p.k_cache, p.v_cache, op, "k_cache", "v_cache"));
    TCA_RETURN_IF_ERROR(validate_head_dim(d, op));
    TCA_RETURN_IF_ERROR(check_i32(p.slot_pos, op, "slot_pos", 2, {hkv, cap}));
    TCA_RETURN_IF_ERROR(check_i32(p.n_global, op, "n_global", 1, {hkv}));
    TCA_RETURN_IF_ERROR(check_i32(p.n_slots, op, "n_slots", 1, {hkv}));
    TCA_RETURN_IF_ERROR(check_i32(p.kept, op, "kept", 2, {hkv, -1}));
    TCA_RETURN_IF_ERROR(check_i32(p.n_kept, op, "n_kept", 1, {hkv}));
    return check_i32(p.region, op, "region", 1, {hkv});
}

namespace ops {
namespace {
// The CUDA entry points, or the error of a build without them.
#if TCA_HAVE_CUDA
#define TCA_DEFINE_CUDA_ENTRY(name, Params) \
    Status cuda_##name(const Params& p) { return cuda::name(p); }
#else
#define TCA_DEFINE_CUDA_ENTRY(name, Params)                                                   \
    Status cuda_##name(const Params&) {                                                       \
        return unsupported(#name ": device cuda is not available in this build (built without " \
                           "CUDA; configure with -DTCA_CUDA=ON where nvcc is installed)");      \
    }
#endif
TCA_FOR_EACH_OP(TCA_DEFINE_CUDA_ENTRY)
TCA_FOR_EACH_MODEL_OP(TCA_DEFINE_CUDA_ENTRY)
#undef TCA_DEFINE_CUDA_ENTRY
}  // namespace

#define TCA_DEFINE_DISPATCH(name, Params)                                           \
    Status name(Device device, const Params& p) {                                   \
        switch (device) {                                                           \
            case Device::kCpu: return cpu::name(p);                                 \
            case Device::kCuda: return cuda_##name(p);                              \
        }                                                                           \
        return unsupported(#name ": unknown device %d", static_cast<int>(device));  \
    }
TCA_FOR_EACH_OP(TCA_DEFINE_DISPATCH)
TCA_FOR_EACH_MODEL_OP(TCA_DEFINE_DISPATCH)
#undef TCA_DEFINE_DISPATCH
}  // namespace ops

}  // namespace tca
