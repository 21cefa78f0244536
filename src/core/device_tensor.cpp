// DeviceTensor and the host memory space (device_tensor.h).
#include "core/device_tensor.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "core/strings.h"

namespace tca {
namespace {

class HostMemory final : public MemorySpace {
public:
    const char* name() const override { return "cpu"; }
    bool is_host() const override { return true; }
    Result<void*> allocate(size_t bytes) const override {
        const size_t alloc = ((bytes + 63) / 64) * 64;
        void* p = std::aligned_alloc(64, alloc == 0 ? 64 : alloc);
        if (!p) return out_of_memory("cannot allocate %s of host memory", format_bytes(bytes).c_str());
        return p;
    }
    void release(void* p) const noexcept override { std::free(p); }
    Status upload(void* dst, const void* src, size_t bytes) const override {
        if (bytes) std::memcpy(dst, src, bytes);
        return Status();
    }
    Status download(void* dst, const void* src, size_t bytes) const override {
        if (bytes) std::memcpy(dst, src, bytes);
        return Status();
    }
    Status copy(void* dst, const void* src, size_t bytes) const override {
        if (bytes) std::memmove(dst, src, bytes);
        return Status();
    }
    Status fill_zero(void* dst, size_t bytes) const override {
        if (bytes) std::memset(dst, 0, bytes);
        return Status();
    }
    // MemAvailable of /proc/meminfo, 0 when unknown.
    uint64_t available_bytes() const override {
        std::FILE* f = std::fopen("/proc/meminfo", "r");
        if (!f) return 0;
        char line[256];
        uint64_t kb = 0;
        while (std::fgets(line, sizeof line, f)) {
            unsigned long long v = 0;
            if (std::sscanf(line, "MemAvailable: %llu kB", &v) == 1) {
                kb = v;
                break;
            }
        }
        std::fclose(f);
        return kb * 1024;
    }
};

TensorView contiguous_view(void* data, DType dtype, const std::vector<int64_t>& shape) {
    TCA_ASSERT(shape.size() <= kMaxDims, "at most %d dims", kMaxDims);
    TensorView v;
    v.data = data;
    v.dtype = dtype;
    v.ndim = static_cast<int>(shape.size());
    int64_t st = 1;
    for (int d = v.ndim - 1; d >= 0; --d) {
        const auto u = static_cast<size_t>(d);
        TCA_ASSERT(shape[u] >= 0, "negative extent %lld", static_cast<long long>(shape[u]));
        v.shape[u] = shape[u];
        v.stride[u] = st;
        st *= shape[u];
    }
    return v;
}

size_t byte_size(DType dtype, const std::vector<int64_t>& shape) {
    int64_t n = 1;
    for (int64_t s : shape) {
        TCA_ASSERT(s >= 0, "negative extent %lld", static_cast<long long>(s));
        n *= s;
    }
    return static_cast<size_t>(n) * dtype_size(dtype);
}

}  // namespace

const MemorySpace& host_memory() {
    static const HostMemory host;
    return host;
}

DeviceTensor::DeviceTensor(DType dtype, std::initializer_list<int64_t> shape)
    : DeviceTensor(dtype, std::vector<int64_t>(shape)) {}

DeviceTensor::DeviceTensor(DType dtype, const std::vector<int64_t>& shape) {
    Result<DeviceTensor> t = create(host_memory(), dtype, shape);
    if (!t.ok()) throw std::bad_alloc();
    *this = std::move(t.value());
}

Result<DeviceTensor> DeviceTensor::create(const MemorySpace& space, DType dtype,
                                          const std::vector<int64_t>& shape) {
    DeviceTensor t;
    t.bytes_ = byte_size(dtype, shape);
    TCA_ASSIGN_OR_RETURN(t.ptr_, space.allocate(t.bytes_));
    t.space_ = &space;
    t.view_ = contiguous_view(t.ptr_, dtype, shape);
    return t;
}

DeviceTensor::DeviceTensor(DeviceTensor&& o) noexcept
    : space_(o.space_), ptr_(o.ptr_), bytes_(o.bytes_), view_(o.view_) {
    o.space_ = nullptr;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
    o.view_ = TensorView{};
}

DeviceTensor& DeviceTensor::operator=(DeviceTensor&& o) noexcept {
    if (this != &o) {
        if (ptr_) space_->release(ptr_);
        space_ = o.space_;
        ptr_ = o.ptr_;
        bytes_ = o.bytes_;
        view_ = o.view_;
        o.space_ = nullptr;
        o.ptr_ = nullptr;
        o.bytes_ = 0;
        o.view_ = TensorView{};
    }
    return *this;
}

DeviceTensor::~DeviceTensor() {
    if (ptr_) space_->release(ptr_);
}

Status DeviceTensor::fill(double v) {
    if (on_host() || v != 0.0) {
        // Host (or a non-zero value): fill a host buffer, then upload it unless it is the tensor.
        HostTensor staging;
        void* dst = view_.data;
        if (!on_host()) {
            try {
                staging = HostTensor(view_.dtype, std::vector<int64_t>(view_.shape.begin(),
                                                                       view_.shape.begin() + view_.ndim));
            } catch (const std::bad_alloc&) {
                return out_of_memory("cannot allocate a host copy of %s", format_bytes(bytes_).c_str());
            }
            dst = staging.view().data;
        }
        const int64_t n = numel();
        switch (view_.dtype) {
            case DType::kI32:
                for (int64_t i = 0; i < n; ++i) static_cast<int32_t*>(dst)[i] = static_cast<int32_t>(v);
                break;
            case DType::kI64:
                for (int64_t i = 0; i < n; ++i) static_cast<int64_t*>(dst)[i] = static_cast<int64_t>(v);
                break;
            case DType::kU8:
                std::memset(dst, static_cast<int>(v), bytes_);
                break;
            case DType::kF64:
                for (int64_t i = 0; i < n; ++i) static_cast<double*>(dst)[i] = v;
                break;
            default:
                for (int64_t i = 0; i < n; ++i) store_from_f32(dst, i, view_.dtype, static_cast<float>(v));
        }
        return on_host() ? Status() : space_->upload(view_.data, dst, bytes_);
    }
    return space_->fill_zero(view_.data, bytes_);
}

Status DeviceTensor::upload(const void* src, size_t bytes, size_t offset) {
    TCA_ASSERT(offset + bytes <= bytes_, "upload of %zu bytes at %zu into %zu", bytes, offset, bytes_);
    return space().upload(static_cast<char*>(ptr_) + offset, src, bytes);
}

Status DeviceTensor::download(void* dst, size_t bytes, size_t offset) const {
    TCA_ASSERT(offset + bytes <= bytes_, "download of %zu bytes at %zu from %zu", bytes, offset, bytes_);
    return space().download(dst, static_cast<const char*>(ptr_) + offset, bytes);
}

Result<HostTensor> to_host(const TensorView& v, const MemorySpace& space) {
    std::vector<int64_t> shape(v.shape.begin(), v.shape.begin() + v.ndim);
    HostTensor out;
    try {
        out = HostTensor(v.dtype, shape);
    } catch (const std::bad_alloc&) {
        return out_of_memory("cannot allocate a host copy of %s", v.shape_string().c_str());
    }
    const int64_t n = v.numel();
    if (n == 0) return out;
    const size_t es = dtype_size(v.dtype);
    // The span of elements the view covers (strides are non-negative).
    int64_t last = 0;
    for (int d = 0; d < v.ndim; ++d) last += (v.shape[static_cast<size_t>(d)] - 1) * v.stride[static_cast<size_t>(d)];
    if (v.is_contiguous()) {
        TCA_RETURN_IF_ERROR(space.download(out.view().data, v.data, static_cast<size_t>(n) * es));
        return out;
    }
    std::vector<char> span;
    try {
        span.resize(static_cast<size_t>(last + 1) * es);
    } catch (const std::bad_alloc&) {
        return out_of_memory("cannot allocate a host copy of %s", v.shape_string().c_str());
    }
    TCA_RETURN_IF_ERROR(space.download(span.data(), v.data, span.size()));
    std::array<int64_t, kMaxDims> idx{};
    char* dst = static_cast<char*>(out.view().data);
    for (int64_t i = 0; i < n; ++i) {
        int64_t off = 0;
        for (int d = 0; d < v.ndim; ++d) off += idx[static_cast<size_t>(d)] * v.stride[static_cast<size_t>(d)];
        std::memcpy(dst + i * static_cast<int64_t>(es), span.data() + off * static_cast<int64_t>(es), es);
        for (int d = v.ndim - 1; d >= 0; --d) {
            const auto u = static_cast<size_t>(d);
            if (++idx[u] < v.shape[u]) break;
            idx[u] = 0;
        }
    }
    return out;
}

}  // namespace tca
