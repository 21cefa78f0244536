# Build options (all visible in `cmake -LH`; no hidden environment knobs).
option(TCA_NATIVE "Compile for the build machine's CPU (-march=native), like llama.cpp's default" ON)
option(TCA_SANITIZE "Build with AddressSanitizer + UndefinedBehaviorSanitizer" OFF)
option(TCA_BUILD_TESTS "Build the GoogleTest suites" ON)

# TCA_CUDA defaults to ON only when nvcc is found.
include(CheckLanguage)
check_language(CUDA)
if(CMAKE_CUDA_COMPILER)
  set(tca_cuda_default ON)
else()
  set(tca_cuda_default OFF)
endif()
option(TCA_CUDA "Build the CUDA backend (default: ON when nvcc is found)" ${tca_cuda_default})

# Interface target carrying the code-generation flags every tca target shares.
add_library(tca_options INTERFACE)
if(TCA_NATIVE)
  target_compile_options(tca_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-march=native>)
endif()
if(TCA_SANITIZE)
  target_compile_options(tca_options INTERFACE
    "$<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined;-fno-omit-frame-pointer;-fno-sanitize-recover=all>")
  target_link_options(tca_options INTERFACE -fsanitize=address,undefined)
endif()
# No fast-math anywhere: attention masks rely on -inf and NaN checks (docs/architecture.md).
target_compile_options(tca_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-fno-fast-math>)
