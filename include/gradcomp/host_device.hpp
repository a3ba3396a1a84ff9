// GRADCOMP_HOST_DEVICE marks functions callable from host code, Kokkos kernels and CUDA kernels.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define GRADCOMP_HOST_DEVICE __host__ __device__
#define GRADCOMP_FORCEINLINE __forceinline__
#else
#define GRADCOMP_HOST_DEVICE
#define GRADCOMP_FORCEINLINE inline
#endif
