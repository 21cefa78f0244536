// cpu::kv_append: copies each new token's K/V row into its KV head's next slot, converting
// f32 to the cache dtype (round to nearest even). Parallel over KV heads; O(n * d) per head.
#include <cstring>

#include "backend/cpu/cpu_ops.h"
#include "core/thread_pool.h"

namespace tca::cpu {

namespace {
void store_row(const float* src, void* cache, int64_t offset, DType dtype, int64_t d) {
    if (dtype == DType::kF32) {
        std::memcpy(static_cast<float*>(cache) + offset, src, static_cast<size_t>(d) * sizeof(float));
        return;
    }
    for (int64_t c = 0; c < d; ++c) store_from_f32(cache, offset + c, dtype, src[c]);
}
}  // namespace

Status kv_append(const KvAppendParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t n = p.k_new.shape[0], hkv = p.k_cache.shape[0], cap = p.k_cache.shape[1];
    const int64_t d = p.k_cache.shape[2];
    thread_pool().parallel_for(hkv, [&](int64_t h, int) {
        int32_t& count = p.n_slots.ptr<int32_t>()[h * p.n_slots.stride[0]];
        TCA_ASSERT(count >= 0 && count + n <= cap, "kv_append: %d + %lld tokens exceed capacity %lld",
                   count, static_cast<long long>(n), static_cast<long long>(cap));
        int32_t* pos = p.slot_pos.ptr<int32_t>() + h * p.slot_pos.stride[0];
        for (int64_t t = 0; t < n; ++t) {
            const int64_t slot = count + t;
            store_row(p.k_new.ptr<float>() + t * p.k_new.stride[0] + h * p.k_new.stride[1],
                      p.k_cache.data, h * p.k_cache.stride[0] + slot * p.k_cache.stride[1],
                      p.k_cache.dtype, d);
            store_row(p.v_new.ptr<float>() + t * p.v_new.stride[0] + h * p.v_new.stride[1],
                      p.v_cache.data, h * p.v_cache.stride[0] + slot * p.v_cache.stride[1],
                      p.v_cache.dtype, d);
            pos[slot * p.slot_pos.stride[1]] = static_cast<int32_t>(p.pos0 + t);
        }
        count += static_cast<int32_t>(n);
    });
    return Status();
}

}  // namespace tca::cpu
