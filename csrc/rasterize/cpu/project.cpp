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
  for (int64_t idx = 0; idx < total; ++idx) {
    const int64_t n = idx % N, bc = idx / N, b = bc / C, g = b * N + n;
    const Camera<float> cam = make_camera(pv + bc * 16, pk + bc * 9, int(width), int(height));
    const Vec3<float> mean = {pm[3 * g], pm[3 * g + 1], pm[3 * g + 2]};
    const Vec4<float> quat = {pq[4 * g], pq[4 * g + 1], pq[4 * g + 2], pq[4 * g + 3]};
    const Vec3<float> scale = {ps[3 * g], ps[3 * g + 1], ps[3 * g + 2]};
    Projected<float> p;
    if (project_gaussian(mean, quat, scale, cam, float(near_plane), float(far_plane), float(eps2d), p)) {
      pr[idx] = p.radius;
      pm2[2 * idx] = p.mean2d.x;
      pm2[2 * idx + 1] = p.mean2d.y;
      pd[idx] = p.depth;
      pc[3 * idx] = p.conic.xx;
      pc[3 * idx + 1] = p.conic.xy;
      pc[3 * idx + 2] = p.conic.yy;
    } else {
      pr[idx] = 0;
      pm2[2 * idx] = pm2[2 * idx + 1] = 0.f;
      pd[idx] = 0.f;
      pc[3 * idx] = pc[3 * idx + 1] = pc[3 * idx + 2] = 0.f;
    }
  }
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
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < B * N; ++g) {
    const int64_t b = g / N, n = g % N;
    const Vec3<float> mean = {pm[3 * g], pm[3 * g + 1], pm[3 * g + 2]};
    const Vec4<float> quat = {pq[4 * g], pq[4 * g + 1], pq[4 * g + 2], pq[4 * g + 3]};
    const Vec3<float> scale = {ps[3 * g], ps[3 * g + 1], ps[3 * g + 2]};
    Vec3<float> vm = {0.f, 0.f, 0.f}, vs = {0.f, 0.f, 0.f};
    Vec4<float> vq = {0.f, 0.f, 0.f, 0.f};
    for (int64_t c = 0; c < C; ++c) {  // cameras in a fixed order: deterministic sums, no atomics
      const int64_t bc = b * C + c, idx = bc * N + n;
      if (pr[idx] <= 0) continue;
      const Camera<float> cam = make_camera(pv + bc * 16, pk + bc * 9, int(width), int(height));
      const Sym2<float> conic = {pc[3 * idx], pc[3 * idx + 1], pc[3 * idx + 2]};
      const Vec2<float> vm2 = {gm2[2 * idx], gm2[2 * idx + 1]};
      const Sym2<float> vc = {gc[3 * idx], gc[3 * idx + 1], gc[3 * idx + 2]};
      project_gaussian_vjp(mean, quat, scale, cam, conic, vm2, gd[idx], vc, vm, vq, vs);
    }
    om[3 * g] = vm.x; om[3 * g + 1] = vm.y; om[3 * g + 2] = vm.z;
    oq[4 * g] = vq.w; oq[4 * g + 1] = vq.x; oq[4 * g + 2] = vq.y; oq[4 * g + 3] = vq.z;
    os[3 * g] = vs.x; os[3 * g + 1] = vs.y; os[3 * g + 2] = vs.z;
  }
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
