// nonfinite_flags on CUDA: which of the entry point's inputs hold NaN or +-inf, in one launch and
// without a synchronisation of its own.
//
// The flags live in pinned host memory that the kernel writes through its device mapping (the
// host memory of a CUDA allocation is mapped into the device's address space), so no copy follows
// the kernel: the host reads the flags once the current stream has synchronised, which the
// rasterizer's tile intersection does anyway (to size its list). Grid: blockIdx.y picks the input
// (up to kMaxInputs per launch), blockIdx.x strides over its floats; a block that finds a
// non-finite value stores 1 into that input's flag (a plain store: every writer stores the same 1).
#include <ATen/cuda/CachingHostAllocator.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cstring>

#include "orster4d/common.h"
#include "orster4d/cuda_utils.cuh"

namespace orster4d {
namespace {

constexpr int kMaxInputs = 8;

struct Inputs {
  const uint32_t* bits[kMaxInputs];  // the floats' bit patterns
  int64_t count[kMaxInputs];
};

__global__ void nonfinite_flags_kernel(Inputs in, int32_t* __restrict__ flags) {
  const int k = blockIdx.y;
  const uint32_t* p = in.bits[k];
  const int64_t n = in.count[k];
  bool bad = false;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    bad |= nonfinite_bits(__ldg(p + i));
  if (__syncthreads_or(bad) && threadIdx.x == 0) flags[k] = 1;
}

}  // namespace

at::Tensor nonfinite_flags_cuda(at::TensorList tensors) {
  const int64_t n = int64_t(tensors.size());
  at::Tensor flags = at::empty({n}, at::TensorOptions().dtype(at::kInt).pinned_memory(true));
  std::memset(flags.data_ptr(), 0, sizeof(int32_t) * size_t(n));  // the block is idle: the allocator
  if (n == 0) return flags;                                       // hands out no block still in use
  const c10::cuda::CUDAGuard guard(tensors[0].device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  std::vector<at::Tensor> dense(static_cast<size_t>(n));
  int64_t most = 0;
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor& x = tensors[i];
    TORCH_CHECK(x.is_cuda() && x.device() == tensors[0].device(), "nonfinite_flags: tensor ", i,
                " must be a CUDA tensor on the device of the first");
    TORCH_CHECK(x.scalar_type() == at::kFloat, "nonfinite_flags: tensor ", i, " must be float32");
    // a dense tensor's elements fill numel() floats from its data pointer, in whatever order
    dense[i] = x.is_non_overlapping_and_dense() ? x : x.contiguous();
    most = std::max(most, dense[i].numel());
  }
  if (most == 0) return flags;
  int32_t* device_flags = nullptr;
  at::Tensor staged;  // only if the pinned block has no device mapping: flags on the device, copied back
  if (cudaHostGetDevicePointer(reinterpret_cast<void**>(&device_flags), flags.data_ptr(), 0) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the error
    staged = at::zeros({n}, dense[0].options().dtype(at::kInt));
    device_flags = staged.data_ptr<int32_t>();
  }
  // one wave: at least kPerThread floats a thread, at most kMaxBlocks blocks an input (a small input's
  // spare blocks exit at once)
  constexpr int64_t kPerThread = 8, kMaxBlocks = 128;
  const int blocks = int(std::clamp<int64_t>((most + kThreads1D * kPerThread - 1) / (kThreads1D * kPerThread), 1,
                                             kMaxBlocks));
  for (int64_t first = 0; first < n; first += kMaxInputs) {
    const int64_t count = std::min<int64_t>(kMaxInputs, n - first);
    Inputs in{};
    for (int64_t k = 0; k < count; ++k) {
      in.bits[k] = reinterpret_cast<const uint32_t*>(dense[first + k].data_ptr<float>());
      in.count[k] = dense[first + k].numel();
    }
    nonfinite_flags_kernel<<<dim3(blocks, unsigned(count)), kThreads1D, 0, stream>>>(in, device_flags + first);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  if (staged.defined()) {
    flags.copy_(staged, /*non_blocking=*/true);  // records the stream on the pinned block itself
  } else {
    // the allocator must not hand this block to anyone else before the kernel has written it
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    at::cuda::CachingHostAllocator_recordEvent(flags.data_ptr(), flags.storage().data_ptr().get_context(),
                                               c10::cuda::getCurrentCUDAStream());
#pragma GCC diagnostic pop
  }
  return flags;
}

}  // namespace orster4d
