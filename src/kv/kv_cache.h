// KvCache: the per-layer, per-KV-head ragged key/value cache (tca-method M7). Each KV head of
// a layer holds `n_slots` slots: a compacted global part [0, n_global) followed by a dense
// local part; slot_pos maps each slot to its token position (ascending). Dense attention
// never compacts, so there slot == position. Buffers are allocated once at engine start, in
// the engine device's memory space (core/device_tensor.h); the accounting below reads the
// counts through small copies when they live on a device.
#pragma once

#include <cstdint>
#include <vector>

#include "core/device_tensor.h"
#include "core/status.h"

namespace tca {

struct KvLayer {
    DeviceTensor k;         // [n_kv_heads, capacity, head_dim] kv dtype
    DeviceTensor v;         // [n_kv_heads, capacity, head_dim] kv dtype
    DeviceTensor slot_pos;  // [n_kv_heads, capacity] i32
    DeviceTensor n_slots;   // [n_kv_heads] i32
    DeviceTensor n_global;  // [n_kv_heads] i32
};

class KvCache {
public:
    // Checks the total size against `max_bytes` (0 = no limit) before allocating in `space`.
    static Result<KvCache> create(int64_t n_layers, int64_t n_kv_heads, int64_t capacity,
                                  int64_t head_dim, DType dtype, uint64_t max_bytes,
                                  const MemorySpace& space = host_memory());

    int64_t n_layers() const { return static_cast<int64_t>(layers_.size()); }
    int64_t n_kv_heads() const { return n_kv_heads_; }
    int64_t capacity() const { return capacity_; }
    int64_t head_dim() const { return head_dim_; }
    DType dtype() const { return dtype_; }
    KvLayer& layer(int64_t i) { return layers_[static_cast<size_t>(i)]; }
    const KvLayer& layer(int64_t i) const { return layers_[static_cast<size_t>(i)]; }

    // Bytes of K and V actually held: sum over layers and KV heads of n_slots * head_dim * 2.
    uint64_t held_bytes() const;
    // Bytes allocated for K and V (capacity of every head).
    uint64_t allocated_bytes() const;
    // The most slots any KV head of any layer holds.
    int64_t max_slots() const;
    // Empties every head (n_slots = n_global = 0). On a device the memset is queued on the
    // backend's stream; a failure there surfaces at the next op.
    void clear();
    // The n_slots counts of layer i on the host (a small copy from a device).
    Status read_n_slots(int64_t i, int32_t* dst) const;

private:
    int64_t n_kv_heads_ = 0, capacity_ = 0, head_dim_ = 0;
    DType dtype_ = DType::kF32;
    std::vector<KvLayer> layers_;
    bool on_host_ = true;
};

// Bytes a cache of these dimensions allocates (K and V).
uint64_t kv_cache_bytes(int64_t n_layers, int64_t n_kv_heads, int64_t capacity, int64_t head_dim,
                        DType dtype);

}  // namespace tca
