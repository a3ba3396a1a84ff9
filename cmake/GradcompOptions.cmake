# Optional dependencies. Each GRADCOMP_ENABLE_<X> is AUTO (on when found), ON (required: configure
# fails with a clear message when missing) or OFF (not searched). Sets GRADCOMP_HAVE_<X> to TRUE or
# FALSE for the rest of the build. docs/building.md lists the options and the packages behind them.
#
# What each feature provides when GRADCOMP_HAVE_<X> is TRUE:
#   KOKKOS  Kokkos::kokkos (include directory repaired for Debian's 3.4 package)
#   MPI     MPI::MPI_CXX (C API, no C++ bindings), MPIEXEC_EXECUTABLE, and GRADCOMP_MPIEXEC_PREFLAGS for tests
#   CUDA    the CUDA language enabled (CMAKE_CUDA_ARCHITECTURES default 80;90), CUDA::cudart & co.
#   NCCL    NCCL::nccl (needs CUDA)
#   TORCH   TORCH_LIBRARIES / TORCH_CXX_FLAGS from find_package(Torch)
set(_gradcomp_features KOKKOS MPI CUDA NCCL TORCH)
foreach(f IN LISTS _gradcomp_features)
  set(GRADCOMP_ENABLE_${f} AUTO CACHE STRING "Build the ${f} parts: AUTO, ON or OFF")
  set_property(CACHE GRADCOMP_ENABLE_${f} PROPERTY STRINGS AUTO ON OFF)
  string(TOUPPER "${GRADCOMP_ENABLE_${f}}" GRADCOMP_ENABLE_${f})
  if(NOT GRADCOMP_ENABLE_${f} MATCHES "^(AUTO|ON|OFF)$")
    message(FATAL_ERROR "GRADCOMP_ENABLE_${f}='${GRADCOMP_ENABLE_${f}}': use AUTO, ON or OFF")
  endif()
  set(GRADCOMP_HAVE_${f} FALSE)
endforeach()

# What to install when a feature is required but missing.
set(_gradcomp_hint_KOKKOS "install Debian's libtrilinos-kokkos-dev (scripts/setup-deps.sh does) or set Kokkos_DIR")
set(_gradcomp_hint_MPI "install libopenmpi-dev and openmpi-bin (scripts/setup-deps.sh does)")
set(_gradcomp_hint_CUDA "install the CUDA toolkit and put nvcc on PATH, or set CMAKE_CUDA_COMPILER")
set(_gradcomp_hint_NCCL "install NCCL (nccl.h, libnccl.so) next to CUDA or set GRADCOMP_NCCL_ROOT; NCCL also needs CUDA")
set(_gradcomp_hint_TORCH "install Debian's libtorch-dev or set Torch_DIR")

macro(_gradcomp_resolve feature found)
  if(GRADCOMP_ENABLE_${feature} STREQUAL "OFF")
    set(GRADCOMP_HAVE_${feature} FALSE)
  elseif(${found})
    set(GRADCOMP_HAVE_${feature} TRUE)
  elseif(GRADCOMP_ENABLE_${feature} STREQUAL "ON")
    message(FATAL_ERROR
      "GRADCOMP_ENABLE_${feature}=ON but ${feature} was not found: ${_gradcomp_hint_${feature}}. "
      "Or configure with -DGRADCOMP_ENABLE_${feature}=AUTO (build without it when missing) or OFF.")
  else()
    set(GRADCOMP_HAVE_${feature} FALSE)
  endif()
endmacro()

# --- Kokkos ---------------------------------------------------------------------------------
# Debian's Kokkos 3.4 ships Kokkos::kokkos with INTERFACE_INCLUDE_DIRECTORIES=/usr/lib/include,
# which does not exist and makes the generate step fail; point it at Kokkos_INCLUDE_DIRS.
if(NOT GRADCOMP_ENABLE_KOKKOS STREQUAL "OFF")
  find_package(Kokkos 3.4 QUIET)
  if(Kokkos_FOUND AND TARGET Kokkos::kokkos AND Kokkos_INCLUDE_DIRS)
    get_filename_component(_gradcomp_kokkos_inc "${Kokkos_INCLUDE_DIRS}" REALPATH)
    get_target_property(_gradcomp_kokkos_cur Kokkos::kokkos INTERFACE_INCLUDE_DIRECTORIES)
    set(_gradcomp_kokkos_fix FALSE)
    foreach(d IN LISTS _gradcomp_kokkos_cur)
      if(NOT EXISTS "${d}")
        set(_gradcomp_kokkos_fix TRUE)
      endif()
    endforeach()
    if(NOT _gradcomp_kokkos_cur OR _gradcomp_kokkos_fix)
      set_target_properties(Kokkos::kokkos PROPERTIES
        INTERFACE_INCLUDE_DIRECTORIES "${_gradcomp_kokkos_inc}"
        INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${_gradcomp_kokkos_inc}")
    endif()
  endif()
endif()
set(_gradcomp_kokkos_found FALSE)
if(Kokkos_FOUND AND TARGET Kokkos::kokkos)
  set(_gradcomp_kokkos_found TRUE)
endif()
_gradcomp_resolve(KOKKOS _gradcomp_kokkos_found)

# --- MPI ------------------------------------------------------------------------------------
# The project is CXX-only, so ask for the CXX component (the C component needs the C language
# enabled and silently reports "not found" otherwise). MPI_CXX_SKIP_MPICXX keeps the deprecated
# MPI-2 C++ bindings (libmpi_cxx) out: gradcomp calls the C API through MPI::MPI_CXX.
if(NOT GRADCOMP_ENABLE_MPI STREQUAL "OFF")
  set(MPI_CXX_SKIP_MPICXX ON CACHE BOOL "Do not use the MPI-2 C++ bindings")
  find_package(MPI QUIET COMPONENTS CXX)
endif()
_gradcomp_resolve(MPI MPI_CXX_FOUND)
# Flags for tests that launch ranks: run as root in containers, more ranks than cores.
set(GRADCOMP_MPIEXEC_PREFLAGS "--allow-run-as-root;--oversubscribe;--bind-to;none"
    CACHE STRING "Flags put after '-n N' in MPI test commands")

# --- CUDA -----------------------------------------------------------------------------------
# check_language only compiles a tiny program: it needs nvcc, not a GPU. Never default the
# architectures to "native" (configure fails without a GPU).
set(_gradcomp_cuda_found FALSE)
if(NOT GRADCOMP_ENABLE_CUDA STREQUAL "OFF")
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES "80;90" CACHE STRING "CUDA architectures to build for")
  endif()
  include(CheckLanguage)
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc CACHE FILEPATH "CUDA compiler")
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(_gradcomp_cuda_found TRUE)
  endif()
endif()
_gradcomp_resolve(CUDA _gradcomp_cuda_found)
if(GRADCOMP_HAVE_CUDA)
  enable_language(CUDA)
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  find_package(CUDAToolkit REQUIRED)
endif()

# --- NCCL -----------------------------------------------------------------------------------
set(_gradcomp_nccl_found FALSE)
if(GRADCOMP_HAVE_CUDA AND NOT GRADCOMP_ENABLE_NCCL STREQUAL "OFF")
  set(GRADCOMP_NCCL_ROOT "" CACHE PATH "Where NCCL is installed, if not next to CUDA")
  find_path(GRADCOMP_NCCL_INCLUDE_DIR nccl.h
    HINTS ${GRADCOMP_NCCL_ROOT}/include ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include)
  find_library(GRADCOMP_NCCL_LIBRARY nccl
    HINTS ${GRADCOMP_NCCL_ROOT}/lib ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib64
          /usr/local/cuda/lib)
  if(GRADCOMP_NCCL_INCLUDE_DIR AND GRADCOMP_NCCL_LIBRARY)
    set(_gradcomp_nccl_found TRUE)
    if(NOT TARGET NCCL::nccl)
      add_library(NCCL::nccl UNKNOWN IMPORTED)
      set_target_properties(NCCL::nccl PROPERTIES
        IMPORTED_LOCATION "${GRADCOMP_NCCL_LIBRARY}"
        INTERFACE_INCLUDE_DIRECTORIES "${GRADCOMP_NCCL_INCLUDE_DIR}")
    endif()
  endif()
endif()
if(NOT GRADCOMP_HAVE_CUDA)
  set(_gradcomp_hint_NCCL "NCCL needs CUDA, and CUDA is off or not found (GRADCOMP_ENABLE_CUDA=${GRADCOMP_ENABLE_CUDA})")
endif()
_gradcomp_resolve(NCCL _gradcomp_nccl_found)

# --- libtorch -------------------------------------------------------------------------------
if(NOT GRADCOMP_ENABLE_TORCH STREQUAL "OFF")
  find_package(Torch QUIET)
endif()
_gradcomp_resolve(TORCH Torch_FOUND)

function(gradcomp_print_feature_summary)
  foreach(f IN LISTS _gradcomp_features)
    message(STATUS "gradcomp: ${f} = ${GRADCOMP_HAVE_${f}} (GRADCOMP_ENABLE_${f}=${GRADCOMP_ENABLE_${f}})")
  endforeach()
  if(GRADCOMP_HAVE_CUDA)
    message(STATUS "gradcomp: CUDA architectures = ${CMAKE_CUDA_ARCHITECTURES}")
  endif()
endfunction()
