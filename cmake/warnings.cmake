# Warnings on and clean for every tca target (C++ sources; CUDA sources get theirs from
# tca_set_cuda_warnings in cmake/cuda.cmake).
set(tca_cxx_warnings -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion
    -Wnon-virtual-dtor -Wcast-align -Wformat=2 -Wimplicit-fallthrough
    # GCC 12 reports false -Wrestrict and -Wstringop-overflow in libstdc++ code at -O3
    -Wno-restrict -Wno-stringop-overflow)
function(tca_set_warnings target)
  target_compile_options(${target} PRIVATE "$<$<COMPILE_LANGUAGE:CXX>:${tca_cxx_warnings}>")
  if(TCA_WERROR)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
  endif()
  if(COMMAND tca_set_cuda_warnings)
    tca_set_cuda_warnings(${target})
  endif()
endfunction()
option(TCA_WERROR "Treat warnings as errors (the test script turns this on)" OFF)
