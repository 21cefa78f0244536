// cpu::kv_compact: in-place compaction of each KV head's cache region by a kept-slot list
// (tca-method M7). Every move goes to a lower or equal slot, in ascending order, so rows are
// copied with memmove one after another without a scratch buffer. Parallel over KV heads.
#include <cstring>

#include "backend/cpu/cpu_ops.h"
#include "core/thread_pool.h"

namespace tca::cpu {

Status kv_compact(const KvCompactParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hkv = p.k_cache.shape[0], cap = p.k_cache.shape[1];
    const size_t row_bytes = static_cast<size_t>(p.k_cache.shape[2]) * dtype_size(p.k_cache.dtype);
    thread_pool().parallel_for(hkv, [&](int64_t h, int) {
        const int32_t region = p.region.ptr<int32_t>()[h * p.region.stride[0]];
        if (region < 0) return;
        int32_t& n_global = p.n_global.ptr<int32_t>()[h * p.n_global.stride[0]];
        int32_t& n_slots = p.n_slots.ptr<int32_t>()[h * p.n_slots.stride[0]];
        const int32_t n_kept = p.n_kept.ptr<int32_t>()[h * p.n_kept.stride[0]];
        TCA_ASSERT(n_global >= 0 && n_global + region <= n_slots && n_slots <= cap && n_kept >= 0 &&
                       n_kept <= region && n_kept <= p.kept.shape[1],
                   "kv_compact: head %lld: n_global %d, region %d, n_kept %d, n_slots %d",
                   static_cast<long long>(h), n_global, region, n_kept, n_slots);
        char* kb = static_cast<char*>(p.k_cache.data) +
                   h * p.k_cache.stride[0] * static_cast<int64_t>(dtype_size(p.k_cache.dtype));
        char* vb = static_cast<char*>(p.v_cache.data) +
                   h * p.v_cache.stride[0] * static_cast<int64_t>(dtype_size(p.v_cache.dtype));
        const int64_t krow = p.k_cache.stride[1] * static_cast<int64_t>(dtype_size(p.k_cache.dtype));
        const int64_t vrow = p.v_cache.stride[1] * static_cast<int64_t>(dtype_size(p.v_cache.dtype));
        int32_t* pos = p.slot_pos.ptr<int32_t>() + h * p.slot_pos.stride[0];
        const int32_t* kept = p.kept.ptr<int32_t>() + h * p.kept.stride[0];
        auto move = [&](int64_t dst, int64_t src) {
            if (dst == src) return;
            std::memmove(kb + dst * krow, kb + src * krow, row_bytes);
            std::memmove(vb + dst * vrow, vb + src * vrow, row_bytes);
            pos[dst * p.slot_pos.stride[1]] = pos[src * p.slot_pos.stride[1]];
        };
        int64_t dst = n_global;
        for (int32_t i = 0; i < n_kept; ++i) {
            TCA_ASSERT(kept[i] >= 0 && kept[i] < region && (i == 0 || kept[i] > kept[i - 1]),
                       "kv_compact: kept offsets must ascend within the region");
            move(dst++, n_global + kept[i]);
        }
        for (int64_t s = n_global + region; s < n_slots; ++s) move(dst++, s);
        n_slots = static_cast<int32_t>(dst);
        n_global += n_kept;
    });
    return Status();
}

}  // namespace tca::cpu
