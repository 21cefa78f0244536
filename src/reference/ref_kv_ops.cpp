// Reference kv_append (tca::ref and tca::ref::naive_f32 alike: it is a copy with one
// rounding to the cache dtype, so both precisions are the same loop).
#include "reference/ref_ops.h"

namespace tca::ref {
namespace {
Status kv_append_impl(const KvAppendParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t n = p.k_new.shape[0], hkv = p.k_cache.shape[0], cap = p.k_cache.shape[1];
    const int64_t d = p.k_cache.shape[2];
    for (int64_t h = 0; h < hkv; ++h) {
        int32_t& count = p.n_slots.ptr<int32_t>()[h * p.n_slots.stride[0]];
        TCA_ASSERT(count >= 0 && count + n <= cap, "kv_append: capacity exceeded");
        for (int64_t t = 0; t < n; ++t) {
            const int64_t slot = count + t;
            for (int64_t c = 0; c < d; ++c) {
                const float kv = p.k_new.ptr<float>()[t * p.k_new.stride[0] + h * p.k_new.stride[1] + c];
                const float vv = p.v_new.ptr<float>()[t * p.v_new.stride[0] + h * p.v_new.stride[1] + c];
                store_from_f32(p.k_cache.data, h * p.k_cache.stride[0] + slot * p.k_cache.stride[1] + c,
                               p.k_cache.dtype, kv);
                store_from_f32(p.v_cache.data, h * p.v_cache.stride[0] + slot * p.v_cache.stride[1] + c,
                               p.v_cache.dtype, vv);
            }
            p.slot_pos.ptr<int32_t>()[h * p.slot_pos.stride[0] + slot * p.slot_pos.stride[1]] =
                static_cast<int32_t>(p.pos0 + t);
        }
        count += static_cast<int32_t>(n);
    }
    return Status();
}
}  // namespace

Status kv_append(const KvAppendParams& p) { return kv_append_impl(p); }
namespace naive_f32 {
Status kv_append(const KvAppendParams& p) { return kv_append_impl(p); }
}  // namespace naive_f32

}  // namespace tca::ref
