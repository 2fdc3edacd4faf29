// nonfinite_flags on the CPU: which of the entry point's inputs hold NaN or +-inf, in one op.
// The CUDA twin (csrc/rasterize/cuda/validate.cu) runs the same test in one kernel launch.
#include <ATen/Parallel.h>

#include <atomic>
#include <cstring>

#include "ops.h"
#include "orster4d/common.h"

namespace orster4d {
namespace {

// True when some float of p[0, n) is NaN or +-inf (nonfinite_bits). Branch-free inside a
// chunk so the compiler vectorises it; chunks stop early once one is found.
bool any_nonfinite(const float* p, int64_t n) {
  std::atomic<bool> found{false};
  at::parallel_for(0, n, 1 << 16, [&](int64_t lo, int64_t hi) {
    constexpr int64_t kChunk = 4096;
    for (int64_t c = lo; c < hi && !found.load(std::memory_order_relaxed); c += kChunk) {
      const int64_t e = std::min(hi, c + kChunk);
      uint32_t bad = 0;
      for (int64_t i = c; i < e; ++i) {
        uint32_t bits;
        std::memcpy(&bits, p + i, sizeof(bits));
        bad |= uint32_t(nonfinite_bits(bits));
      }
      if (bad) found.store(true, std::memory_order_relaxed);
    }
  });
  return found.load();
}

}  // namespace

at::Tensor nonfinite_flags_cpu(at::TensorList tensors) {
  const int64_t n = int64_t(tensors.size());
  at::Tensor flags = at::zeros({n}, at::TensorOptions().dtype(at::kInt));
  int32_t* f = flags.data_ptr<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor& x = tensors[i];
    TORCH_CHECK(x.device().is_cpu(), "nonfinite_flags: tensor ", i, " must be a CPU tensor");
    TORCH_CHECK(x.scalar_type() == at::kFloat, "nonfinite_flags: tensor ", i, " must be float32");
    if (x.numel() == 0) continue;
    // a dense tensor's elements fill numel() floats from its data pointer, in whatever order
    const at::Tensor dense = x.is_non_overlapping_and_dense() ? x : x.contiguous();
    f[i] = any_nonfinite(dense.data_ptr<float>(), dense.numel()) ? 1 : 0;
  }
  return flags;
}

}  // namespace orster4d
