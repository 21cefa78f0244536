// TensorView helpers, HostTensor storage and dtype names.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

#include "core/host_tensor.h"
#include "core/strings.h"
#include "core/tensor_view.h"

namespace tca {

size_t dtype_size(DType t) {
    switch (t) {
        case DType::kF32: return 4;
        case DType::kF16: return 2;
        case DType::kBF16: return 2;
        case DType::kF64: return 8;
        case DType::kI32: return 4;
        case DType::kI64: return 8;
        case DType::kU8: return 1;
    }
    return 0;
}

const char* dtype_name(DType t) {
    switch (t) {
        case DType::kF32: return "f32";
        case DType::kF16: return "f16";
        case DType::kBF16: return "bf16";
        case DType::kF64: return "f64";
        case DType::kI32: return "i32";
        case DType::kI64: return "i64";
        case DType::kU8: return "u8";
    }
    return "?";
}

int64_t TensorView::numel() const {
    if (ndim == 0) return data ? 1 : 0;
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[static_cast<size_t>(i)];
    return n;
}

bool TensorView::is_contiguous() const {
    int64_t expect = 1;
    for (int i = ndim - 1; i >= 0; --i) {
        const auto u = static_cast<size_t>(i);
        if (shape[u] != 1 && stride[u] != expect) return false;
        expect *= shape[u];
    }
    return true;
}

std::string TensorView::shape_string() const {
    std::string s = "[";
    for (int i = 0; i < ndim; ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[static_cast<size_t>(i)]);
    }
    s += "] ";
    s += dtype_name(dtype);
    return s;
}

void* TensorView::at(std::initializer_list<int64_t> idx) const {
    TCA_ASSERT(static_cast<int>(idx.size()) == ndim, "%zu indices for a %d-d tensor", idx.size(),
               ndim);
    int64_t off = 0;
    size_t i = 0;
    for (int64_t v : idx) {
        TCA_ASSERT(v >= 0 && v < shape[i], "index %lld out of range [0, %lld) in dim %zu",
                   static_cast<long long>(v), static_cast<long long>(shape[i]), i);
        off += v * stride[i];
        ++i;
    }
    return static_cast<char*>(data) + off * static_cast<int64_t>(dtype_size(dtype));
}

TensorView make_view(void* data, DType dtype, std::initializer_list<int64_t> shape) {
    TCA_ASSERT(shape.size() <= kMaxDims, "at most %d dims", kMaxDims);
    TensorView v;
    v.data = data;
    v.dtype = dtype;
    v.ndim = static_cast<int>(shape.size());
    size_t i = 0;
    for (int64_t s : shape) v.shape[i++] = s;
    int64_t st = 1;
    for (int d = v.ndim - 1; d >= 0; --d) {
        v.stride[static_cast<size_t>(d)] = st;
        st *= v.shape[static_cast<size_t>(d)];
    }
    return v;
}

TensorView slice(const TensorView& t, int dim, int64_t start, int64_t len) {
    TCA_ASSERT(dim >= 0 && dim < t.ndim, "slice dim %d of a %d-d tensor", dim, t.ndim);
    const auto u = static_cast<size_t>(dim);
    TCA_ASSERT(start >= 0 && len >= 0 && start + len <= t.shape[u],
               "slice [%lld, %lld) of extent %lld", static_cast<long long>(start),
               static_cast<long long>(start + len), static_cast<long long>(t.shape[u]));
    TensorView v = t;
    v.data = static_cast<char*>(t.data) +
             start * t.stride[u] * static_cast<int64_t>(dtype_size(t.dtype));
    v.shape[u] = len;
    return v;
}

void HostTensor::Free::operator()(void* p) const { std::free(p); }

HostTensor::HostTensor(DType dtype, std::initializer_list<int64_t> shape)
    : HostTensor(dtype, std::vector<int64_t>(shape)) {}

HostTensor::HostTensor(DType dtype, const std::vector<int64_t>& shape) {
    TCA_ASSERT(shape.size() <= kMaxDims, "at most %d dims", kMaxDims);
    int64_t n = 1;
    for (int64_t s : shape) {
        TCA_ASSERT(s >= 0, "negative extent %lld", static_cast<long long>(s));
        n *= s;
    }
    bytes_ = static_cast<size_t>(n) * dtype_size(dtype);
    const size_t alloc = ((bytes_ + 63) / 64) * 64;
    void* p = std::aligned_alloc(64, alloc == 0 ? 64 : alloc);
    if (!p) throw std::bad_alloc();
    buf_.reset(p);
    view_.data = p;
    view_.dtype = dtype;
    view_.ndim = static_cast<int>(shape.size());
    int64_t st = 1;
    for (int d = view_.ndim - 1; d >= 0; --d) {
        const auto u = static_cast<size_t>(d);
        view_.shape[u] = shape[u];
        view_.stride[u] = st;
        st *= shape[u];
    }
}

void HostTensor::fill(double v) {
    const int64_t n = numel();
    switch (view_.dtype) {
        case DType::kI32:
            for (int64_t i = 0; i < n; ++i) data<int32_t>()[i] = static_cast<int32_t>(v);
            break;
        case DType::kI64:
            for (int64_t i = 0; i < n; ++i) data<int64_t>()[i] = static_cast<int64_t>(v);
            break;
        case DType::kU8:
            std::memset(view_.data, static_cast<int>(v), bytes_);
            break;
        case DType::kF64:
            for (int64_t i = 0; i < n; ++i) data<double>()[i] = v;
            break;
        default:
            for (int64_t i = 0; i < n; ++i) store_from_f32(view_.data, i, view_.dtype, static_cast<float>(v));
    }
}

}  // namespace tca
