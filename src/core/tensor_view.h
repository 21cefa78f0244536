// TensorView: a non-owning, strided view (up to 4 dims, outermost first, strides in elements).
// Ops take TensorViews inside one Params struct; ownership lives in HostTensor and friends.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "core/check.h"
#include "core/dtype.h"

namespace tca {

inline constexpr int kMaxDims = 4;

struct TensorView {
    void* data = nullptr;
    DType dtype = DType::kF32;
    int ndim = 0;
    std::array<int64_t, kMaxDims> shape{};   // outermost first
    std::array<int64_t, kMaxDims> stride{};  // in elements

    bool empty() const { return data == nullptr; }
    int64_t dim(int i) const {
        TCA_ASSERT(i >= 0 && i < ndim, "dim %d of a %d-d tensor", i, ndim);
        return shape[static_cast<size_t>(i)];
    }
    int64_t numel() const;
    bool is_contiguous() const;
    std::string shape_string() const;  // "[4, 128, 64] bf16"

    template <class T>
    T* ptr() const {
        return static_cast<T*>(data);
    }
    // Byte address of element (i0, i1, ...) given as many indices as dims.
    void* at(std::initializer_list<int64_t> idx) const;
};

// A contiguous (row-major) view over `data` with the given shape.
TensorView make_view(void* data, DType dtype, std::initializer_list<int64_t> shape);
// The sub-view [start, start + len) along `dim`, same strides (no copy).
TensorView slice(const TensorView& t, int dim, int64_t start, int64_t len);
// Same with const data (the view type itself is not const-qualified; ops document read/write).
inline TensorView make_view(const void* data, DType dtype, std::initializer_list<int64_t> shape) {
    return make_view(const_cast<void*>(data), dtype, shape);
}

}  // namespace tca
