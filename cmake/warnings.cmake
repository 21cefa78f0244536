# Warnings on and clean for every tca target.
function(tca_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wconversion
                                           -Wno-sign-conversion -Wnon-virtual-dtor
                                           -Wcast-align -Wformat=2 -Wimplicit-fallthrough
                                           # GCC 12 reports false -Wrestrict and -Wstringop-overflow in libstdc++ code at -O3
                                           -Wno-restrict -Wno-stringop-overflow)
  if(TCA_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
option(TCA_WERROR "Treat warnings as errors (the test script turns this on)" OFF)
