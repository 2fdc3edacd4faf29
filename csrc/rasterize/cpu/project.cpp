// C++ CPU backend: EWA projection and SH colours, forward and backward.
// The math is the shared host/device code of csrc/include/orster4d/; this file only loops.
#include <cstring>

#include "ops.h"
#include "orster4d/gaussian_math.h"
#include "orster4d/sh_math.h"

namespace orster4d {

std::vector<at::Tensor> project_fwd_cpu(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                                        const at::Tensor& viewmats, const at::Tensor& Ks, int64_t width,
                                        int64_t height, double near_plane, double far_plane, double eps2d) {
  ORSTER4D_CHECK_CPU_F32(means);
  ORSTER4D_CHECK_CPU_F32(quats);
  ORSTER4D_CHECK_CPU_F32(scales);
  ORSTER4D_CHECK_CPU_F32(viewmats);
  ORSTER4D_CHECK_CPU_F32(Ks);
  TORCH_CHECK(means.dim() == 3 && viewmats.dim() == 4, "means must be [B, N, 3] and viewmats [B, C, 4, 4]");
  const int64_t B = means.size(0), N = means.size(1), C = viewmats.size(1);
  auto opt = means.options();
  at::Tensor radii = at::empty({B, C, N}, opt.dtype(at::kInt));
  at::Tensor means2d = at::empty({B, C, N, 2}, opt);
  at::Tensor depths = at::empty({B, C, N}, opt);
  at::Tensor conics = at::empty({B, C, N, 3}, opt);
  const float* pm = means.data_ptr<float>();
  const float* pq = quats.data_ptr<float>();
  const float* ps = scales.data_ptr<float>();
  const float* pv = viewmats.data_ptr<float>();
  const float* pk = Ks.data_ptr<float>();
  int32_t* pr = radii.data_ptr<int32_t>();
  float* pm2 = means2d.data_ptr<float>();
  float* pd = depths.data_ptr<float>();
  float* pc = conics.data_ptr<float>();
  const int64_t total = B * C * N;
#pragma omp parallel for schedule(static)
  for (int64_t idx = 0; idx < total; ++idx)
    project_element(idx, C, N, pm, pq, ps, pv, pk, int(width), int(height), float(near_plane), float(far_plane),
                    float(eps2d), pr, pm2, pd, pc);
  return {radii, means2d, depths, conics};
}

std::vector<at::Tensor> project_bwd_cpu(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                                        const at::Tensor& viewmats, const at::Tensor& Ks, int64_t width,
                                        int64_t height, double eps2d, const at::Tensor& radii,
                                        const at::Tensor& conics, const at::Tensor& v_means2d,
                                        const at::Tensor& v_depths, const at::Tensor& v_conics) {
  ORSTER4D_CHECK_CPU_F32(means);
  ORSTER4D_CHECK_CPU_F32(quats);
  ORSTER4D_CHECK_CPU_F32(scales);
  ORSTER4D_CHECK_CPU_F32(viewmats);
  ORSTER4D_CHECK_CPU_F32(Ks);
  ORSTER4D_CHECK_CPU_I32(radii);
  ORSTER4D_CHECK_CPU_F32(conics);
  ORSTER4D_CHECK_CPU_F32(v_means2d);
  ORSTER4D_CHECK_CPU_F32(v_depths);
  ORSTER4D_CHECK_CPU_F32(v_conics);
  (void)eps2d;  // additive low-pass: the conic of the forward carries it
  const int64_t B = means.size(0), N = means.size(1), C = viewmats.size(1);
  at::Tensor v_means = at::empty_like(means), v_quats = at::empty_like(quats), v_scales = at::empty_like(scales);
  const float* pm = means.data_ptr<float>();
  const float* pq = quats.data_ptr<float>();
  const float* ps = scales.data_ptr<float>();
  const float* pv = viewmats.data_ptr<float>();
  const float* pk = Ks.data_ptr<float>();
  const int32_t* pr = radii.data_ptr<int32_t>();
  const float* pc = conics.data_ptr<float>();
  const float* gm2 = v_means2d.data_ptr<float>();
  const float* gd = v_depths.data_ptr<float>();
  const float* gc = v_conics.data_ptr<float>();
  float* om = v_means.data_ptr<float>();
  float* oq = v_quats.data_ptr<float>();
  float* os = v_scales.data_ptr<float>();
#pragma omp parallel for schedule(static)  // cameras summed in a fixed order: deterministic, no atomics
  for (int64_t g = 0; g < B * N; ++g)
    project_vjp_element(g, C, N, pm, pq, ps, pv, pk, int(width), int(height), pr, pc, gm2, gd, gc, om, oq, os);
  return {v_means, v_quats, v_scales};
}

namespace {
void check_sh(int64_t degree, const at::Tensor& dirs, const at::Tensor& coeffs, const std::optional<at::Tensor>& radii) {
  TORCH_CHECK(degree >= 0 && degree <= 3, "sh degree must be in 0..3, got ", degree);
  ORSTER4D_CHECK_CPU_F32(dirs);
  ORSTER4D_CHECK_CPU_F32(coeffs);
  TORCH_CHECK(dirs.dim() == 4 && dirs.size(3) == 3, "dirs must be [B, C, N, 3]");
  TORCH_CHECK(coeffs.dim() == 4 && coeffs.size(3) == 3 && coeffs.size(0) == dirs.size(0) &&
                  coeffs.size(1) == dirs.size(2),
              "coeffs must be [B, N, K, 3]");
  TORCH_CHECK(coeffs.size(2) >= (degree + 1) * (degree + 1), "coeffs has K = ", coeffs.size(2),
              " < (degree + 1)^2 for degree ", degree);
  if (radii.has_value()) { ORSTER4D_CHECK_CPU_I32(radii.value()); }
}
}  // namespace

at::Tensor sh_fwd_cpu(int64_t degree, const at::Tensor& dirs, const at::Tensor& coeffs,
                      const std::optional<at::Tensor>& radii) {
  check_sh(degree, dirs, coeffs, radii);
  const int64_t B = dirs.size(0), C = dirs.size(1), N = dirs.size(2), K = coeffs.size(2);
  at::Tensor colors = at::empty({B, C, N, 3}, dirs.options());
  const float* pd = dirs.data_ptr<float>();
  const float* pc = coeffs.data_ptr<float>();
  const int32_t* pr = radii.has_value() ? radii->data_ptr<int32_t>() : nullptr;
  float* out = colors.data_ptr<float>();
#pragma omp parallel for schedule(static)
  for (int64_t idx = 0; idx < B * C * N; ++idx) {
    const int64_t n = idx % N, b = idx / (C * N);
    Vec3<float> col = {0.f, 0.f, 0.f};
    if (pr == nullptr || pr[idx] > 0) {
      const Vec3<float> d = {pd[3 * idx], pd[3 * idx + 1], pd[3 * idx + 2]};
      col = sh_to_color(int(degree), d, pc + (b * N + n) * K * 3);
    }
    out[3 * idx] = col.x; out[3 * idx + 1] = col.y; out[3 * idx + 2] = col.z;
  }
  return colors;
}

std::vector<at::Tensor> sh_bwd_cpu(int64_t degree, const at::Tensor& dirs, const at::Tensor& coeffs,
                                   const std::optional<at::Tensor>& radii, const at::Tensor& v_colors) {
  check_sh(degree, dirs, coeffs, radii);
  ORSTER4D_CHECK_CPU_F32(v_colors);
  const int64_t B = dirs.size(0), C = dirs.size(1), N = dirs.size(2), K = coeffs.size(2);
  at::Tensor v_coeffs = at::zeros_like(coeffs), v_dirs = at::empty_like(dirs);
  const float* pd = dirs.data_ptr<float>();
  const float* pc = coeffs.data_ptr<float>();
  const int32_t* pr = radii.has_value() ? radii->data_ptr<int32_t>() : nullptr;
  const float* gcol = v_colors.data_ptr<float>();
  float* ocoef = v_coeffs.data_ptr<float>();
  float* odir = v_dirs.data_ptr<float>();
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < B * N; ++g) {
    const int64_t b = g / N, n = g % N;
    for (int64_t c = 0; c < C; ++c) {  // one Gaussian's cameras in one thread: no atomics on v_coeffs
      const int64_t idx = (b * C + c) * N + n;
      Vec3<float> vd = {0.f, 0.f, 0.f};
      if (pr == nullptr || pr[idx] > 0) {
        const Vec3<float> d = {pd[3 * idx], pd[3 * idx + 1], pd[3 * idx + 2]};
        const Vec3<float> vc = {gcol[3 * idx], gcol[3 * idx + 1], gcol[3 * idx + 2]};
        vd = sh_to_color_vjp(int(degree), d, pc + g * K * 3, vc, ocoef + g * K * 3);
      }
      odir[3 * idx] = vd.x; odir[3 * idx + 1] = vd.y; odir[3 * idx + 2] = vd.z;
    }
  }
  return {v_coeffs, v_dirs};
}

}  // namespace orster4d
