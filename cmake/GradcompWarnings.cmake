# Warnings on for every gradcomp target (link gradcomp_warnings PRIVATE); GRADCOMP_WERROR turns them
# into errors (the dev, ci and asan presets set it). Third-party headers come in as SYSTEM includes
# and do not warn.
option(GRADCOMP_WERROR "Treat warnings as errors" OFF)

add_library(gradcomp_warnings INTERFACE)
target_compile_options(gradcomp_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion>
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${GRADCOMP_WERROR}>>:-Werror>
  # nvcc: host-compiler warnings for .cu files (not fatal; no .cu file exists yet to tune them on).
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra>)
