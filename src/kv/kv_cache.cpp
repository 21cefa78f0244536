// KvCache implementation (kv_cache.h).
#include "kv/kv_cache.h"

#include <algorithm>
#include <new>
#include <vector>

#include "core/strings.h"

namespace tca {

uint64_t kv_cache_bytes(int64_t n_layers, int64_t n_kv_heads, int64_t capacity, int64_t head_dim,
                        DType dtype) {
    return 2ull * static_cast<uint64_t>(n_layers) * static_cast<uint64_t>(n_kv_heads) *
           static_cast<uint64_t>(capacity) * static_cast<uint64_t>(head_dim) * dtype_size(dtype);
}

Result<KvCache> KvCache::create(int64_t n_layers, int64_t n_kv_heads, int64_t capacity,
                                int64_t head_dim, DType dtype, uint64_t max_bytes,
                                const MemorySpace& space) {
    if (n_layers < 1 || n_kv_heads < 1 || capacity < 1 || head_dim < 1) {
        return invalid_argument("kv cache: bad dimensions (%lld layers, %lld kv heads, capacity "
                                "%lld, head_dim %lld)", static_cast<long long>(n_layers),
                                static_cast<long long>(n_kv_heads), static_cast<long long>(capacity),
                                static_cast<long long>(head_dim));
    }
    if (!is_float_storage(dtype)) {
        return invalid_argument("kv cache: type must be f32, f16 or bf16, got %s", dtype_name(dtype));
    }
    const uint64_t bytes = kv_cache_bytes(n_layers, n_kv_heads, capacity, head_dim, dtype);
    if (max_bytes != 0 && bytes > max_bytes) {
        return out_of_memory("kv cache of %lld tokens needs %s, more than the %s available%s; "
                             "lower --ctx-size or use --kv-type f16", static_cast<long long>(capacity),
                             format_bytes(bytes).c_str(), format_bytes(max_bytes).c_str(),
                             space.is_host() ? "" : " on the device");
    }
    KvCache c;
    c.n_kv_heads_ = n_kv_heads;
    c.capacity_ = capacity;
    c.head_dim_ = head_dim;
    c.dtype_ = dtype;
    c.on_host_ = space.is_host();
    try {
        c.layers_.resize(static_cast<size_t>(n_layers));
    } catch (const std::bad_alloc&) {
        return out_of_memory("kv cache: cannot allocate %s", format_bytes(bytes).c_str());
    }
    for (KvLayer& l : c.layers_) {
        Status s;
        auto alloc = [&](DeviceTensor& t, DType dt, std::vector<int64_t> shape) {
            if (!s.ok()) return;
            Result<DeviceTensor> r = DeviceTensor::create(space, dt, shape);
            if (r.ok()) {
                t = std::move(r.value());
            } else {
                s = r.status();
            }
        };
        alloc(l.k, dtype, {n_kv_heads, capacity, head_dim});
        alloc(l.v, dtype, {n_kv_heads, capacity, head_dim});
        alloc(l.slot_pos, DType::kI32, {n_kv_heads, capacity});
        alloc(l.n_slots, DType::kI32, {n_kv_heads});
        alloc(l.n_global, DType::kI32, {n_kv_heads});
        if (!s.ok()) {
            if (space.is_host()) return out_of_memory("kv cache: cannot allocate %s", format_bytes(bytes).c_str());
            return Status(s.code(), "kv cache of " + format_bytes(bytes) + ": " + s.message());
        }
    }
    c.clear();
    return c;
}

Status KvCache::read_n_slots(int64_t i, int32_t* dst) const {
    const KvLayer& l = layer(i);
    return l.n_slots.download(dst, static_cast<size_t>(n_kv_heads_) * sizeof(int32_t));
}

uint64_t KvCache::held_bytes() const {
    uint64_t slots = 0;
    if (!on_host_) {
        // Device counts: one small copy per layer (accounting, not the decode loop).
        std::vector<int32_t> n(static_cast<size_t>(n_kv_heads_));
        for (int64_t i = 0; i < n_layers(); ++i) {
            if (!read_n_slots(i, n.data()).ok()) return 0;
            for (int32_t x : n) slots += static_cast<uint64_t>(x);
        }
        return 2ull * slots * static_cast<uint64_t>(head_dim_) * dtype_size(dtype_);
    }
    for (const KvLayer& l : layers_) {
        for (int64_t h = 0; h < n_kv_heads_; ++h) slots += static_cast<uint64_t>(l.n_slots.data<int32_t>()[h]);
    }
    return 2ull * slots * static_cast<uint64_t>(head_dim_) * dtype_size(dtype_);
}

uint64_t KvCache::allocated_bytes() const {
    return kv_cache_bytes(n_layers(), n_kv_heads_, capacity_, head_dim_, dtype_);
}

int64_t KvCache::max_slots() const {
    int64_t m = 0;
    if (!on_host_) {
        std::vector<int32_t> n(static_cast<size_t>(n_kv_heads_));
        for (int64_t i = 0; i < n_layers(); ++i) {
            if (!read_n_slots(i, n.data()).ok()) return 0;
            for (int32_t x : n) m = std::max<int64_t>(m, x);
        }
        return m;
    }
    for (const KvLayer& l : layers_) {
        for (int64_t h = 0; h < n_kv_heads_; ++h) m = std::max<int64_t>(m, l.n_slots.data<int32_t>()[h]);
    }
    return m;
}

void KvCache::clear() {
    for (KvLayer& l : layers_) {
        (void)l.n_slots.fill(0);  // never fails on the host
        (void)l.n_global.fill(0);
    }
}

}  // namespace tca
