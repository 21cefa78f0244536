// HostTensor: an owning, 64-byte aligned, contiguous host buffer with a TensorView of it.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <vector>

#include "core/tensor_view.h"

namespace tca {

class HostTensor {
public:
    HostTensor() = default;
    HostTensor(DType dtype, std::initializer_list<int64_t> shape);
    HostTensor(DType dtype, const std::vector<int64_t>& shape);

    const TensorView& view() const { return view_; }
    int64_t numel() const { return view_.numel(); }
    size_t nbytes() const { return bytes_; }
    template <class T>
    T* data() const {
        return static_cast<T*>(view_.data);
    }
    // Fill every element with v (converted to the storage type).
    void fill(double v);

private:
    struct Free {
        void operator()(void* p) const;
    };
    std::unique_ptr<void, Free> buf_;
    size_t bytes_ = 0;
    TensorView view_;
};

}  // namespace tca
