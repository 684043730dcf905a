// Host/device qualifiers for the math bodies shared by the CPU and CUDA launchers.
// Headers that use ISS_HD compile with g++ alone (the qualifier is then empty).
#pragma once

#if defined(__CUDACC__)
#define ISS_HD __host__ __device__
#define ISS_HD_INLINE __host__ __device__ __forceinline__
#else
#define ISS_HD
#define ISS_HD_INLINE inline
#endif
