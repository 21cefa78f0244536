// Reference kv_append and kv_compact (tca::ref and tca::ref::naive_f32 alike: they copy rows,
// with at most one rounding to the cache dtype, so both precisions are the same loop).
#include <vector>

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

// Builds the new slot order explicitly (kept slots, then the slots after the region) and
// rewrites the head from a copy: no in-place reasoning needed.
Status kv_compact_impl(const KvCompactParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hkv = p.k_cache.shape[0], d = p.k_cache.shape[2];
    for (int64_t h = 0; h < hkv; ++h) {
        const int32_t region = p.region.ptr<int32_t>()[h * p.region.stride[0]];
        if (region < 0) continue;
        int32_t& n_global = p.n_global.ptr<int32_t>()[h * p.n_global.stride[0]];
        int32_t& n_slots = p.n_slots.ptr<int32_t>()[h * p.n_slots.stride[0]];
        const int32_t n_kept = p.n_kept.ptr<int32_t>()[h * p.n_kept.stride[0]];
        TCA_ASSERT(n_kept >= 0 && n_kept <= region && n_global + region <= n_slots,
                   "kv_compact: bad counts");
        std::vector<int64_t> order;
        for (int32_t i = 0; i < n_kept; ++i) {
            const int32_t off = p.kept.ptr<int32_t>()[h * p.kept.stride[0] + i * p.kept.stride[1]];
            TCA_ASSERT(off >= 0 && off < region, "kv_compact: kept offset %d outside the region", off);
            order.push_back(n_global + off);
        }
        for (int64_t s = n_global + region; s < n_slots; ++s) order.push_back(s);
        std::vector<float> kbuf(order.size() * static_cast<size_t>(d)), vbuf(kbuf.size());
        std::vector<int32_t> pbuf(order.size());
        auto k_at = [&](int64_t s, int64_t c) { return h * p.k_cache.stride[0] + s * p.k_cache.stride[1] + c; };
        auto v_at = [&](int64_t s, int64_t c) { return h * p.v_cache.stride[0] + s * p.v_cache.stride[1] + c; };
        int32_t* pos = p.slot_pos.ptr<int32_t>() + h * p.slot_pos.stride[0];
        for (size_t r = 0; r < order.size(); ++r) {
            for (int64_t c = 0; c < d; ++c) {
                kbuf[r * static_cast<size_t>(d) + static_cast<size_t>(c)] =
                    load_as_f32(p.k_cache.data, k_at(order[r], c), p.k_cache.dtype);
                vbuf[r * static_cast<size_t>(d) + static_cast<size_t>(c)] =
                    load_as_f32(p.v_cache.data, v_at(order[r], c), p.v_cache.dtype);
            }
            pbuf[r] = pos[order[r] * p.slot_pos.stride[1]];
        }
        for (size_t r = 0; r < order.size(); ++r) {
            const int64_t s = n_global + static_cast<int64_t>(r);
            for (int64_t c = 0; c < d; ++c) {  // f32 round trip is exact for every storage type
                store_from_f32(p.k_cache.data, k_at(s, c), p.k_cache.dtype,
                               kbuf[r * static_cast<size_t>(d) + static_cast<size_t>(c)]);
                store_from_f32(p.v_cache.data, v_at(s, c), p.v_cache.dtype,
                               vbuf[r * static_cast<size_t>(d) + static_cast<size_t>(c)]);
            }
            pos[s * p.slot_pos.stride[1]] = pbuf[r];
        }
        n_slots = static_cast<int32_t>(n_global + static_cast<int64_t>(order.size()));
        n_global += n_kept;
    }
    return Status();
}

}  // namespace

Status kv_append(const KvAppendParams& p) { return kv_append_impl(p); }
Status kv_compact(const KvCompactParams& p) { return kv_compact_impl(p); }
namespace naive_f32 {
Status kv_append(const KvAppendParams& p) { return kv_append_impl(p); }
Status kv_compact(const KvCompactParams& p) { return kv_compact_impl(p); }
}  // namespace naive_f32

}  // namespace tca::ref
