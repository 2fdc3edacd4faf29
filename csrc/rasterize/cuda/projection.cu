// Projection of 3D Gaussians into every camera (EWA splatting) and its backward.
// One thread per (batch, camera, Gaussian) forward; one thread per (batch, Gaussian)
// backward, looping over the cameras so gradients accumulate without atomics.
#include "orster4d/cuda_utils.cuh"
#include "orster4d/gaussian_math.h"

namespace orster4d {
namespace {

__global__ void project_fwd_kernel(int64_t B, int64_t C, int64_t N, const float* __restrict__ means,
                                   const float* __restrict__ quats, const float* __restrict__ scales,
                                   const float* __restrict__ viewmats, const float* __restrict__ Ks, int width,
                                   int height, float near_plane, float far_plane, float eps2d, int32_t* __restrict__ radii,
                                   float* __restrict__ means2d, float* __restrict__ depths, float* __restrict__ conics) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * C * N) return;
  project_element(idx, C, N, means, quats, scales, viewmats, Ks, width, height, near_plane, far_plane, eps2d, radii,
                  means2d, depths, conics);
}

__global__ void project_bwd_kernel(int64_t B, int64_t C, int64_t N, const float* __restrict__ means,
                                   const float* __restrict__ quats, const float* __restrict__ scales,
                                   const float* __restrict__ viewmats, const float* __restrict__ Ks, int width,
                                   int height, const int32_t* __restrict__ radii, const float* __restrict__ conics,
                                   const float* __restrict__ v_means2d, const float* __restrict__ v_depths,
                                   const float* __restrict__ v_conics, float* __restrict__ v_means,
                                   float* __restrict__ v_quats, float* __restrict__ v_scales) {
  const int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g >= B * N) return;
  project_vjp_element(g, C, N, means, quats, scales, viewmats, Ks, width, height, radii, conics, v_means2d, v_depths,
                      v_conics, v_means, v_quats, v_scales);
}

}  // namespace

std::vector<at::Tensor> project_fwd_cuda(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                                         const at::Tensor& viewmats, const at::Tensor& Ks, int64_t width, int64_t height,
                                         double near_plane, double far_plane, double eps2d) {
  ORSTER4D_CHECK_INPUT_F32(means);
  ORSTER4D_CHECK_INPUT_F32(quats);
  ORSTER4D_CHECK_INPUT_F32(scales);
  ORSTER4D_CHECK_INPUT_F32(viewmats);
  ORSTER4D_CHECK_INPUT_F32(Ks);
  const c10::cuda::CUDAGuard guard(means.device());
  const int64_t B = means.size(0), N = means.size(1), C = viewmats.size(1);
  auto fopt = means.options();
  at::Tensor radii = at::empty({B, C, N}, fopt.dtype(at::kInt));
  at::Tensor means2d = at::empty({B, C, N, 2}, fopt);
  at::Tensor depths = at::empty({B, C, N}, fopt);
  at::Tensor conics = at::empty({B, C, N, 3}, fopt);
  const int64_t total = B * C * N;
  if (total > 0) {
    project_fwd_kernel<<<blocks_for(total), kThreads1D, 0, c10::cuda::getCurrentCUDAStream()>>>(
        B, C, N, means.data_ptr<float>(), quats.data_ptr<float>(), scales.data_ptr<float>(),
        viewmats.data_ptr<float>(), Ks.data_ptr<float>(), int(width), int(height), float(near_plane),
        float(far_plane), float(eps2d), radii.data_ptr<int32_t>(), means2d.data_ptr<float>(), depths.data_ptr<float>(),
        conics.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {radii, means2d, depths, conics};
}

std::vector<at::Tensor> project_bwd_cuda(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                                         const at::Tensor& viewmats, const at::Tensor& Ks, int64_t width, int64_t height,
                                         double eps2d, const at::Tensor& radii, const at::Tensor& conics,
                                         const at::Tensor& v_means2d, const at::Tensor& v_depths,
                                         const at::Tensor& v_conics) {
  ORSTER4D_CHECK_INPUT_F32(means);
  ORSTER4D_CHECK_INPUT_F32(quats);
  ORSTER4D_CHECK_INPUT_F32(scales);
  ORSTER4D_CHECK_INPUT_F32(viewmats);
  ORSTER4D_CHECK_INPUT_F32(Ks);
  ORSTER4D_CHECK_INPUT_I32(radii);
  ORSTER4D_CHECK_INPUT_F32(conics);
  ORSTER4D_CHECK_INPUT_F32(v_means2d);
  ORSTER4D_CHECK_INPUT_F32(v_depths);
  ORSTER4D_CHECK_INPUT_F32(v_conics);
  (void)eps2d;  // the low-pass is additive: it does not change the gradient given the forward's conic
  const c10::cuda::CUDAGuard guard(means.device());
  const int64_t B = means.size(0), N = means.size(1), C = viewmats.size(1);
  at::Tensor v_means = at::empty_like(means), v_quats = at::empty_like(quats), v_scales = at::empty_like(scales);
  if (B * N > 0) {
    project_bwd_kernel<<<blocks_for(B * N), kThreads1D, 0, c10::cuda::getCurrentCUDAStream()>>>(
        B, C, N, means.data_ptr<float>(), quats.data_ptr<float>(), scales.data_ptr<float>(),
        viewmats.data_ptr<float>(), Ks.data_ptr<float>(), int(width), int(height), radii.data_ptr<int32_t>(),
        conics.data_ptr<float>(), v_means2d.data_ptr<float>(), v_depths.data_ptr<float>(), v_conics.data_ptr<float>(),
        v_means.data_ptr<float>(), v_quats.data_ptr<float>(), v_scales.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {v_means, v_quats, v_scales};
}

}  // namespace orster4d
