// CUDA-only helpers shared by the kernels in csrc/*/cuda/ (checks, launch sizes, warp sums).
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>

#include <vector>

#define ORSTER4D_CHECK_CUDA(x) TORCH_CHECK((x).is_cuda(), #x " must be a CUDA tensor")
#define ORSTER4D_CHECK_CONTIG(x) TORCH_CHECK((x).is_contiguous(), #x " must be contiguous")
#define ORSTER4D_CHECK_F32(x) TORCH_CHECK((x).scalar_type() == at::kFloat, #x " must be float32")
#define ORSTER4D_CHECK_I32(x) TORCH_CHECK((x).scalar_type() == at::kInt, #x " must be int32")
#define ORSTER4D_CHECK_INPUT_F32(x) \
  ORSTER4D_CHECK_CUDA(x);           \
  ORSTER4D_CHECK_CONTIG(x);         \
  ORSTER4D_CHECK_F32(x)
#define ORSTER4D_CHECK_INPUT_I32(x) \
  ORSTER4D_CHECK_CUDA(x);           \
  ORSTER4D_CHECK_CONTIG(x);         \
  ORSTER4D_CHECK_I32(x)

namespace orster4d {

constexpr int kThreads1D = 256;

inline int blocks_for(int64_t n, int threads = kThreads1D) {
  return static_cast<int>((n + threads - 1) / threads);
}

// Sum of v over the 32 lanes of a full warp; every lane gets the result.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <int kOff>
__device__ __forceinline__ void reduce_scatter_step(float (&v)[16], int lane) {
  constexpr int kHalf = kOff / 2;  // values kept: 8, 4, 2, 1 for offsets 16, 8, 4, 2
  const bool upper = (lane & kOff) != 0;
#pragma unroll
  for (int k = 0; k < kHalf; ++k) {
    const float give = upper ? v[k] : v[k + kHalf];
    const float keep = upper ? v[k + kHalf] : v[k];
    v[k] = keep + __shfl_xor_sync(0xffffffffu, give, kOff);
  }
}

// Sums of 16 per-lane values over a full warp, scattered over the lanes (a reduce-scatter):
// on return every lane's v[0] holds the warp sum of value number lane >> 1 (both lanes of a pair
// hold the same sum). Each halving step sends the half of the values a lane gives away to its
// partner across `off` and keeps the other half, so 8 + 4 + 2 + 1 + 1 = 16 shuffles replace the
// 16 x 5 = 80 of one butterfly sum per value; slots past the values in use hold zeros.
__device__ __forceinline__ void warp_reduce_scatter16(float (&v)[16], int lane) {
  reduce_scatter_step<16>(v, lane);
  reduce_scatter_step<8>(v, lane);
  reduce_scatter_step<4>(v, lane);
  reduce_scatter_step<2>(v, lane);
  v[0] += __shfl_xor_sync(0xffffffffu, v[0], 1);
}

__device__ __forceinline__ int warp_max(int v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Number of bits needed to hold values 0 .. n-1 (0 when n <= 1).
inline int bits_for(int64_t n) {
  int b = 0;
  while ((int64_t(1) << b) < n) ++b;
  return b;
}

}  // namespace orster4d
