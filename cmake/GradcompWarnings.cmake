# Warnings on for every gradcomp target; GRADCOMP_WERROR turns them into errors (CI uses it).
option(GRADCOMP_WERROR "Treat warnings as errors" OFF)

add_library(gradcomp_warnings INTERFACE)
target_compile_options(gradcomp_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion>
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${GRADCOMP_WERROR}>>:-Werror>)
