// View-dependent colour from spherical harmonics (degree 0..3) and its backward.
#include "orster4d/cuda_utils.cuh"
#include "orster4d/sh_math.h"

namespace orster4d {
namespace {

__global__ void sh_fwd_kernel(int degree, int64_t B, int64_t C, int64_t N, int64_t K, const float* __restrict__ dirs,
                              const float* __restrict__ coeffs, const int32_t* __restrict__ radii,
                              float* __restrict__ colors) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * C * N) return;
  const int64_t n = idx % N, b = idx / (C * N);
  Vec3<float> col = {0.f, 0.f, 0.f};
  if (radii == nullptr || radii[idx] > 0) {
    const Vec3<float> d = {dirs[3 * idx], dirs[3 * idx + 1], dirs[3 * idx + 2]};
    col = sh_to_color(degree, d, coeffs + (b * N + n) * K * 3);
  }
  colors[3 * idx] = col.x;
  colors[3 * idx + 1] = col.y;
  colors[3 * idx + 2] = col.z;
}

__global__ void sh_bwd_kernel(int degree, int64_t B, int64_t C, int64_t N, int64_t K, const float* __restrict__ dirs,
                              const float* __restrict__ coeffs, const int32_t* __restrict__ radii,
                              const float* __restrict__ v_colors, float* __restrict__ v_coeffs,
                              float* __restrict__ v_dirs) {
  const int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g >= B * N) return;
  const int64_t b = g / N, n = g % N;
  const int Kd = sh_num_coeffs(degree);
  float vc[48];
  for (int k = 0; k < 3 * Kd; ++k) vc[k] = 0.f;
  const float* co = coeffs + g * K * 3;
  float cl[48];
  for (int k = 0; k < 3 * Kd; ++k) cl[k] = co[k];
  for (int64_t c = 0; c < C; ++c) {
    const int64_t idx = (b * C + c) * N + n;
    Vec3<float> vd = {0.f, 0.f, 0.f};
    if (radii == nullptr || radii[idx] > 0) {
      const Vec3<float> d = {dirs[3 * idx], dirs[3 * idx + 1], dirs[3 * idx + 2]};
      const Vec3<float> vcol = {v_colors[3 * idx], v_colors[3 * idx + 1], v_colors[3 * idx + 2]};
      vd = sh_to_color_vjp(degree, d, cl, vcol, vc);
    }
    v_dirs[3 * idx] = vd.x;
    v_dirs[3 * idx + 1] = vd.y;
    v_dirs[3 * idx + 2] = vd.z;
  }
  float* out = v_coeffs + g * K * 3;
  for (int k = 0; k < 3 * K; ++k) out[k] = k < 3 * Kd ? vc[k] : 0.f;
}

void check_sh_args(int64_t degree, const at::Tensor& dirs, const at::Tensor& coeffs) {
  TORCH_CHECK(degree >= 0 && degree <= 3, "sh degree must be in 0..3, got ", degree);
  TORCH_CHECK(coeffs.dim() == 4 && coeffs.size(3) == 3, "coeffs must be [B, N, K, 3]");
  TORCH_CHECK(coeffs.size(2) >= (degree + 1) * (degree + 1), "coeffs has K = ", coeffs.size(2),
              " < (degree + 1)^2 for degree ", degree);
  TORCH_CHECK(dirs.dim() == 4 && dirs.size(3) == 3, "dirs must be [B, C, N, 3]");
}

}  // namespace

at::Tensor sh_fwd_cuda(int64_t degree, const at::Tensor& dirs, const at::Tensor& coeffs,
                       const c10::optional<at::Tensor>& radii) {
  ORSTER4D_CHECK_INPUT_F32(dirs);
  ORSTER4D_CHECK_INPUT_F32(coeffs);
  check_sh_args(degree, dirs, coeffs);
  if (radii.has_value()) { ORSTER4D_CHECK_INPUT_I32(radii.value()); }
  const c10::cuda::CUDAGuard guard(dirs.device());
  const int64_t B = dirs.size(0), C = dirs.size(1), N = dirs.size(2), K = coeffs.size(2);
  at::Tensor colors = at::empty({B, C, N, 3}, dirs.options());
  if (B * C * N > 0) {
    sh_fwd_kernel<<<blocks_for(B * C * N), kThreads1D, 0, c10::cuda::getCurrentCUDAStream()>>>(
        int(degree), B, C, N, K, dirs.data_ptr<float>(), coeffs.data_ptr<float>(),
        radii.has_value() ? radii->data_ptr<int32_t>() : nullptr, colors.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return colors;
}

std::vector<at::Tensor> sh_bwd_cuda(int64_t degree, const at::Tensor& dirs, const at::Tensor& coeffs,
                                    const c10::optional<at::Tensor>& radii, const at::Tensor& v_colors) {
  ORSTER4D_CHECK_INPUT_F32(dirs);
  ORSTER4D_CHECK_INPUT_F32(coeffs);
  ORSTER4D_CHECK_INPUT_F32(v_colors);
  check_sh_args(degree, dirs, coeffs);
  if (radii.has_value()) { ORSTER4D_CHECK_INPUT_I32(radii.value()); }
  const c10::cuda::CUDAGuard guard(dirs.device());
  const int64_t B = dirs.size(0), C = dirs.size(1), N = dirs.size(2), K = coeffs.size(2);
  at::Tensor v_coeffs = at::empty_like(coeffs), v_dirs = at::empty_like(dirs);
  if (B * N > 0) {
    sh_bwd_kernel<<<blocks_for(B * N), kThreads1D, 0, c10::cuda::getCurrentCUDAStream()>>>(
        int(degree), B, C, N, K, dirs.data_ptr<float>(), coeffs.data_ptr<float>(),
        radii.has_value() ? radii->data_ptr<int32_t>() : nullptr, v_colors.data_ptr<float>(),
        v_coeffs.data_ptr<float>(), v_dirs.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {v_coeffs, v_dirs};
}

}  // namespace orster4d
