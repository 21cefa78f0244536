# The CUDA backend (src/backend/cuda), built into tca_backend when TCA_CUDA is on.
# Machine code for sm_90 (H100/H200) plus compute_90 PTX so newer GPUs can JIT it; kernels that
# need Hopper-only instructions (wgmma) guard them by __CUDA_ARCH_FEAT_SM90_ALL and the arch
# list can be overridden with -DCMAKE_CUDA_ARCHITECTURES=...
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES "90-real;90-virtual")
endif()
set(CMAKE_CUDA_RUNTIME_LIBRARY Static)  # libcudart_static: only the driver is needed at run time
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
# CMake 3.25 does not know nvcc 13's C++20 flag; it is taught here (the headers the .cu files
# include are C++20).
set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
set(CMAKE_CUDA_STANDARD 20)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
set(CMAKE_CUDA_EXTENSIONS OFF)

# Warning flags for CUDA translation units: host code through -Xcompiler, device code by nvcc.
function(tca_set_cuda_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra,-Wno-unused-parameter>
    $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr>
    $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo>)
  if(TCA_WERROR)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings>)
  endif()
endfunction()
