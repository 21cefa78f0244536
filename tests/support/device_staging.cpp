// Device staging of op Params for the CUDA test executable (device_staging.h).
#include "support/device_staging.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "backend/op_views.h"
#include "model/ggml_types.h"
#include "reference/ref_model_ops.h"
#include "reference/ref_ops.h"
#if TCA_HAVE_CUDA
#include "backend/cuda/cuda_runtime.h"
#endif

namespace tca::test {

namespace {

// Bytes from a view's first element to one past its last (strided views: the whole span).
[[maybe_unused]] size_t span_bytes(const TensorView& t) {
    if (t.empty() || t.ndim == 0) return 0;
    int64_t last = 0;
    for (int i = 0; i < t.ndim; ++i) {
        const size_t iu = static_cast<size_t>(i);
        if (t.shape[iu] == 0) return 0;
        last += (t.shape[iu] - 1) * t.stride[iu];
    }
    return static_cast<size_t>(last + 1) * dtype_size(t.dtype);
}

#if TCA_HAVE_CUDA
struct Staged {
    void* host = nullptr;
    size_t bytes = 0;
    cuda::DeviceBuffer dev;
    bool copy_back = true;
};

class Stager {
public:
    // Replaces ptr (host) by a device copy of [ptr, ptr + bytes); identical host ranges share.
    Status stage(void*& ptr, size_t bytes, bool copy_back) {
        if (ptr == nullptr || bytes == 0) return Status();
        for (Staged& s : staged_) {
            if (s.host == ptr && s.bytes == bytes) {
                ptr = s.dev.get();
                return Status();
            }
        }
        TCA_ASSIGN_OR_RETURN(cuda::DeviceBuffer dev, cuda::DeviceBuffer::allocate(bytes));
        TCA_RETURN_IF_ERROR(cuda::copy_to_device(dev.get(), ptr, bytes));
        staged_.push_back(Staged{ptr, bytes, std::move(dev), copy_back});
        ptr = staged_.back().dev.get();
        return Status();
    }
    Status finish() {
        TCA_RETURN_IF_ERROR(cuda::synchronize());
        for (Staged& s : staged_) {
            if (s.copy_back) TCA_RETURN_IF_ERROR(cuda::copy_to_host(s.host, s.dev.get(), s.bytes));
        }
        return Status();
    }

private:
    std::vector<Staged> staged_;
};

template <class Params, class Op>
Status stage_and_run(const Params& p_host, Op op) {
    TCA_RETURN_IF_ERROR(cuda::device_check());
    // Validate on the host first, like the dispatch does on every device: an invalid case
    // must fail with the same message, not with a device fault.
    TCA_RETURN_IF_ERROR(validate(p_host));
    Params p = p_host;
    Stager st;
    Status s;
    for_each_view(p, [&](TensorView& t) {
        if (s.ok()) s = st.stage(t.data, span_bytes(t), true);
    });
    for_each_matrix(p, [&](MatrixView& m) {
        if (!s.ok() || m.data == nullptr) return;
        auto rb = ggml_row_bytes(m.type, m.n_cols);
        if (!rb.ok()) {
            s = rb.status();
            return;
        }
        void* d = const_cast<void*>(m.data);
        s = st.stage(d, static_cast<size_t>(rb.value()) * static_cast<size_t>(m.n_rows), false);
        m.data = d;
    });
    TCA_RETURN_IF_ERROR(s);
    const Status run_status = op(p);
    TCA_RETURN_IF_ERROR(st.finish());
    return run_status;
}
#endif

}  // namespace

bool cuda_device_available() {
#if TCA_HAVE_CUDA
    return cuda::device_check().ok();
#else
    return false;
#endif
}

#if TCA_HAVE_CUDA
#define TCA_STAGING_DEFINE(name, Params)                                                      \
    Status run_staged_on_cuda(const Params& p) {                                              \
        return stage_and_run(p, [](const Params& q) { return ops::name(Device::kCuda, q); }); \
    }
#else
#define TCA_STAGING_DEFINE(name, Params) \
    Status run_staged_on_cuda(const Params& p) { return ops::name(Device::kCuda, p); }
#endif
TCA_FOR_EACH_OP(TCA_STAGING_DEFINE)
TCA_FOR_EACH_MODEL_OP(TCA_STAGING_DEFINE)
#undef TCA_STAGING_DEFINE

#if TCA_HAVE_CUDA
#define TCA_STAGING_WITH_DEFINE(name, Params)                                        \
    Status run_staged_on_cuda_with(const Params& p, Status (*op)(const Params&)) {   \
        return stage_and_run(p, [op](const Params& q) { return op(q); });            \
    }
#else
#define TCA_STAGING_WITH_DEFINE(name, Params)                                        \
    Status run_staged_on_cuda_with(const Params& p, Status (*)(const Params&)) {     \
        return ops::name(Device::kCuda, p);                                          \
    }
#endif
TCA_FOR_EACH_OP(TCA_STAGING_WITH_DEFINE)
#undef TCA_STAGING_WITH_DEFINE

// The naive twin for the CUDA backend: ops computed in f32 on the GPU use naive_f32;
// attention_dense and sparse_prefill (bf16/f16 tensor cores) use ref::naive_lowp.
namespace {
template <class Params>
Status naive_twin(const Params& p, Status (*f32)(const Params&)) {
    if constexpr (std::is_same_v<Params, AttentionDenseParams>) {
        return ref::naive_lowp::attention_dense(p);
    } else if constexpr (std::is_same_v<Params, SparsePrefillParams>) {
        return ref::naive_lowp::sparse_prefill(p);
    } else {
        return f32(p);
    }
}
}  // namespace
#define TCA_LOWP_DEFINE(name, Params) \
    Status naive_lowp_run(const Params& p) { return naive_twin<Params>(p, &ref::naive_f32::name); }
TCA_FOR_EACH_OP(TCA_LOWP_DEFINE)
TCA_FOR_EACH_MODEL_OP(TCA_LOWP_DEFINE)
#undef TCA_LOWP_DEFINE

}  // namespace tca::test
