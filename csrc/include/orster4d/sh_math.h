// Real spherical harmonics (degree 0..3) for view-dependent colour, and their VJP.
//
// Same basis, signs and constants as 3DGS / gsplat:
//   colour = max(sum_k basis_k(d) * coeff_k + 0.5, 0)      (the clamp is applied by the caller)
// with d = dir / |dir| the unit direction from the camera centre to the Gaussian mean,
// K = (degree + 1)^2 coefficients per channel, coefficients laid out [K][3] (RGB inner).
// A zero direction evaluates with d = 0 (only the DC term survives) and gets no gradient.
#pragma once

#include "common.h"

namespace orster4d {

constexpr int sh_num_coeffs(int degree) { return (degree + 1) * (degree + 1); }

namespace sh_const {
constexpr double C0 = 0.28209479177387814;
constexpr double C1 = 0.4886025119029199;
constexpr double C2_0 = 1.0925484305920792, C2_1 = -1.0925484305920792, C2_2 = 0.31539156525252005,
                 C2_3 = -1.0925484305920792, C2_4 = 0.5462742152960396;
constexpr double C3_0 = -0.5900435899266435, C3_1 = 2.890611442640554, C3_2 = -0.4570457994644658,
                 C3_3 = 0.3731763325901154, C3_4 = -0.4570457994644658, C3_5 = 1.445305721320277,
                 C3_6 = -0.5900435899266435;
}  // namespace sh_const

// The K = (degree+1)^2 basis values at the unit direction (x, y, z); writes basis[0..K).
template <typename T> ORSTER4D_HD void sh_basis(int degree, T x, T y, T z, T* basis) {
  using namespace sh_const;
  basis[0] = T(C0);
  if (degree < 1) return;
  basis[1] = -T(C1) * y;
  basis[2] = T(C1) * z;
  basis[3] = -T(C1) * x;
  if (degree < 2) return;
  const T xx = x * x, yy = y * y, zz = z * z, xy = x * y, yz = y * z, xz = x * z;
  basis[4] = T(C2_0) * xy;
  basis[5] = T(C2_1) * yz;
  basis[6] = T(C2_2) * (T(2) * zz - xx - yy);
  basis[7] = T(C2_3) * xz;
  basis[8] = T(C2_4) * (xx - yy);
  if (degree < 3) return;
  basis[9] = T(C3_0) * y * (T(3) * xx - yy);
  basis[10] = T(C3_1) * xy * z;
  basis[11] = T(C3_2) * y * (T(4) * zz - xx - yy);
  basis[12] = T(C3_3) * z * (T(2) * zz - T(3) * xx - T(3) * yy);
  basis[13] = T(C3_4) * x * (T(4) * zz - xx - yy);
  basis[14] = T(C3_5) * z * (xx - yy);
  basis[15] = T(C3_6) * x * (xx - T(3) * yy);
}

// Gradient of sum_k basis_k(x, y, z) * w_k with respect to the unit direction (x, y, z),
// treating x, y, z as independent (the caller projects through the normalisation).
template <typename T> ORSTER4D_HD Vec3<T> sh_basis_grad(int degree, T x, T y, T z, const T* w) {
  using namespace sh_const;
  Vec3<T> g = {T(0), T(0), T(0)};
  if (degree < 1) return g;
  g.x += -T(C1) * w[3];
  g.y += -T(C1) * w[1];
  g.z += T(C1) * w[2];
  if (degree < 2) return g;
  const T xx = x * x, yy = y * y, zz = z * z;
  g.x += T(C2_0) * y * w[4] - T(2) * T(C2_2) * x * w[6] + T(C2_3) * z * w[7] + T(2) * T(C2_4) * x * w[8];
  g.y += T(C2_0) * x * w[4] + T(C2_1) * z * w[5] - T(2) * T(C2_2) * y * w[6] - T(2) * T(C2_4) * y * w[8];
  g.z += T(C2_1) * y * w[5] + T(4) * T(C2_2) * z * w[6] + T(C2_3) * x * w[7];
  if (degree < 3) return g;
  g.x += T(C3_0) * T(6) * x * y * w[9] + T(C3_1) * y * z * w[10] - T(C3_2) * T(2) * x * y * w[11] -
         T(C3_3) * T(6) * x * z * w[12] + T(C3_4) * (T(4) * zz - T(3) * xx - yy) * w[13] +
         T(C3_5) * T(2) * x * z * w[14] + T(C3_6) * T(3) * (xx - yy) * w[15];
  g.y += T(C3_0) * T(3) * (xx - yy) * w[9] + T(C3_1) * x * z * w[10] +
         T(C3_2) * (T(4) * zz - xx - T(3) * yy) * w[11] - T(C3_3) * T(6) * y * z * w[12] -
         T(C3_4) * T(2) * x * y * w[13] - T(C3_5) * T(2) * y * z * w[14] - T(C3_6) * T(6) * x * y * w[15];
  g.z += T(C3_1) * x * y * w[10] + T(C3_2) * T(8) * y * z * w[11] +
         T(C3_3) * (T(6) * zz - T(3) * xx - T(3) * yy) * w[12] + T(C3_4) * T(8) * x * z * w[13] +
         T(C3_5) * (xx - yy) * w[14];
  return g;
}

// Unit direction and 1/|dir| (0 for a zero direction).
template <typename T> ORSTER4D_HD Vec3<T> sh_normalize(Vec3<T> dir, T& inv_norm) {
  const T n2 = dot(dir, dir);
  inv_norm = n2 > T(0) ? T(1) / sqrt_(n2) : T(0);
  return scale(dir, inv_norm);
}

// Unclamped RGB = sum_k basis_k(d) coeffs[k][:] + 0.5 for a unit direction d (coeffs: K x 3);
// fills basis[0 .. K) with the basis values at d.
template <typename T> ORSTER4D_HD Vec3<T> sh_raw_color(int degree, Vec3<T> d, const T* coeffs, T* basis) {
  sh_basis(degree, d.x, d.y, d.z, basis);
  const int K = sh_num_coeffs(degree);
  Vec3<T> c = {T(0.5), T(0.5), T(0.5)};
  for (int k = 0; k < K; ++k) {
    c.x += basis[k] * coeffs[3 * k + 0];
    c.y += basis[k] * coeffs[3 * k + 1];
    c.z += basis[k] * coeffs[3 * k + 2];
  }
  return c;
}

// RGB = sum_k basis_k(dir/|dir|) coeffs[k][:] + 0.5, clamped at 0 (the colour fed to compositing).
// coeffs: K x 3 (row k = coefficient k, RGB).  Returns the unclamped value in `raw` if non-null.
template <typename T> ORSTER4D_HD Vec3<T> sh_to_color(int degree, Vec3<T> dir, const T* coeffs, Vec3<T>* raw = nullptr) {
  T inv;
  const Vec3<T> d = sh_normalize(dir, inv);
  T basis[16];
  const Vec3<T> c = sh_raw_color(degree, d, coeffs, basis);
  if (raw) *raw = c;
  return {max_(c.x, T(0)), max_(c.y, T(0)), max_(c.z, T(0))};
}

// VJP of sh_to_color.  v_color: dL/dRGB (after the clamp; the clamp passes the gradient where
// the unclamped value is >= 0, like torch.clamp_min).  Adds dL/dcoeffs to v_coeffs (K x 3) and
// returns dL/ddir for the *unnormalised* direction.
template <typename T>
ORSTER4D_HD Vec3<T> sh_to_color_vjp(int degree, Vec3<T> dir, const T* coeffs, Vec3<T> v_color, T* v_coeffs) {
  T inv;
  const Vec3<T> d = sh_normalize(dir, inv);
  T basis[16];
  const Vec3<T> c = sh_raw_color(degree, d, coeffs, basis);
  const int K = sh_num_coeffs(degree);
  const Vec3<T> g = {c.x >= T(0) ? v_color.x : T(0), c.y >= T(0) ? v_color.y : T(0), c.z >= T(0) ? v_color.z : T(0)};
  T w[16];
  for (int k = 0; k < K; ++k) {
    v_coeffs[3 * k + 0] += basis[k] * g.x;
    v_coeffs[3 * k + 1] += basis[k] * g.y;
    v_coeffs[3 * k + 2] += basis[k] * g.z;
    w[k] = coeffs[3 * k + 0] * g.x + coeffs[3 * k + 1] * g.y + coeffs[3 * k + 2] * g.z;
  }
  if (degree < 1 || inv == T(0)) return {T(0), T(0), T(0)};
  const Vec3<T> vd = sh_basis_grad(degree, d.x, d.y, d.z, w);
  // through d = dir / |dir|:  dL/ddir = (vd - d <d, vd>) / |dir|
  const T p = dot(d, vd);
  return {(vd.x - d.x * p) * inv, (vd.y - d.y * p) * inv, (vd.z - d.z * p) * inv};
}

}  // namespace orster4d
