// Per-Gaussian projection math (3DGS EWA splatting) and its exact VJPs.
//
// Conventions (identical to gsplat 1.5.3 `rasterization(..., rasterize_mode="classic")`):
//   * quaternions are (w, x, y, z) and are normalised inside;
//   * scales are activated standard deviations (world units, > 0);
//   * Sigma = R S S^T R^T with R = rotation(q), S = diag(scale)       (world units^2);
//   * viewmat is world-to-camera (OpenCV: +z forward, +y down), row-major 4x4:
//     p_c = R_v p + t_v,  Sigma_c = R_v Sigma R_v^T                     (camera units);
//   * pinhole K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in pixels:
//     mean2d = (fx x/z + cx, fy y/z + cy)                                (pixels; pixel
//     (i, j) has its centre at (j + 0.5, i + 0.5));
//   * EWA: cov2d = J Sigma_c J^T + eps2d I with the Jacobian evaluated at the
//     tangent clamped, per side, to the image edge seen from the principal point plus
//     0.3x the half-image tangent (gsplat; 3DGS's 1.3x half field of view when the
//     principal point is the image centre):
//       J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]],
//       tx = z clamp(x/z, -(cx/fx + 0.3 w/(2fx)), (w-cx)/fx + 0.3 w/(2fx))  (same for y);
//     eps2d = 0.3 px^2 is the low-pass filter; culled when det(cov2d) <= 0;
//   * conic = cov2d^{-1} stored as (a, b, c) = ([0][0], [0][1], [1][1])  (1/px^2);
//   * radius (bounding circle, px) = ceil(3.33 sqrt(lambda_max(cov2d))).  3.33 =
//     sqrt(2 ln 255) rounded up: beyond it alpha = opacity exp(-r^2/2) < 1/255 for any
//     opacity <= 1, so no pixel that could be composited lies outside the circle.
//     (A plain 3-sigma circle would drop pixels with 1/255 <= alpha < 0.011.)
//   * culled (radius 0) when z < near or z > far, det <= 0, radius <= 0, or the box
//     [mean2d - radius, mean2d + radius] misses [0, width] x [0, height].
//   * tight_extent(): gsplat's opacity-aware axis-aligned box used for tile
//     intersection: k = min(3.33, sqrt(2 ln(255 opacity))), (rx, ry) =
//     (ceil(k sqrt(cov2d.xx)), ceil(k sqrt(cov2d.yy))).  It contains every pixel
//     with alpha >= 1/255 and is never larger than the circle.
//
// Gradient conventions: a gradient of a symmetric matrix (Mat3 G or Sym2 G) holds the
// entries of the *full symmetric* matrix dL/dM_ij (so for a loss written in terms of the
// stored off-diagonal value b = M_01 = M_10, G.xy = dL/db / 2).  The one exception is
// the conic gradient handed in by the compositing stage, which is with respect to the
// stored (a, b, c); conic_vjp() converts it.
#pragma once

#include "common.h"

namespace orster4d {

constexpr float kGaussianExtent = 3.33f;    // sigmas; sqrt(2 ln 255) = 3.3290
constexpr float kAlphaThreshold = 1.f / 255.f;

// ---------------------------------------------------------------- rotation
// Rotation matrix of the quaternion q = (w, x, y, z) after normalising it.
template <typename T> ORSTER4D_HD Mat3<T> quat_to_rotmat(Vec4<T> q) {
  const T inv = T(1) / sqrt_(q.w * q.w + q.x * q.x + q.y * q.y + q.z * q.z);
  const T w = q.w * inv, x = q.x * inv, y = q.y * inv, z = q.z * inv;
  Mat3<T> R;
  R(0, 0) = T(1) - T(2) * (y * y + z * z); R(0, 1) = T(2) * (x * y - w * z);       R(0, 2) = T(2) * (x * z + w * y);
  R(1, 0) = T(2) * (x * y + w * z);       R(1, 1) = T(1) - T(2) * (x * x + z * z); R(1, 2) = T(2) * (y * z - w * x);
  R(2, 0) = T(2) * (x * z - w * y);       R(2, 1) = T(2) * (y * z + w * x);       R(2, 2) = T(1) - T(2) * (x * x + y * y);
  return R;
}

// VJP of quat_to_rotmat: v_R = dL/dR (row-major)  ->  dL/dq for the *unnormalised* q.
template <typename T> ORSTER4D_HD Vec4<T> quat_to_rotmat_vjp(Vec4<T> q, const Mat3<T>& v) {
  const T inv = T(1) / sqrt_(q.w * q.w + q.x * q.x + q.y * q.y + q.z * q.z);
  const T w = q.w * inv, x = q.x * inv, y = q.y * inv, z = q.z * inv;
  Vec4<T> g;  // gradient w.r.t. the normalised quaternion
  g.w = T(2) * (z * (v(1, 0) - v(0, 1)) + y * (v(0, 2) - v(2, 0)) + x * (v(2, 1) - v(1, 2)));
  g.x = T(2) * (y * (v(0, 1) + v(1, 0)) + z * (v(0, 2) + v(2, 0)) + w * (v(2, 1) - v(1, 2))) - T(4) * x * (v(1, 1) + v(2, 2));
  g.y = T(2) * (x * (v(0, 1) + v(1, 0)) + w * (v(0, 2) - v(2, 0)) + z * (v(1, 2) + v(2, 1))) - T(4) * y * (v(0, 0) + v(2, 2));
  g.z = T(2) * (w * (v(1, 0) - v(0, 1)) + x * (v(0, 2) + v(2, 0)) + y * (v(1, 2) + v(2, 1))) - T(4) * z * (v(0, 0) + v(1, 1));
  // through the normalisation qn = q / |q|:  dL/dq = (g - qn <qn, g>) / |q|
  const T d = w * g.w + x * g.x + y * g.y + z * g.z;
  return {(g.w - w * d) * inv, (g.x - x * d) * inv, (g.y - y * d) * inv, (g.z - z * d) * inv};
}

// ---------------------------------------------------------------- 3D covariance
// Sigma = M M^T with M = R diag(scale)   (world units^2).
template <typename T> ORSTER4D_HD Mat3<T> covariance3d(const Mat3<T>& R, Vec3<T> s) {
  Mat3<T> M = R;
  for (int i = 0; i < 3; ++i) { M(i, 0) *= s.x; M(i, 1) *= s.y; M(i, 2) *= s.z; }
  return matmul_nt(M, M);
}

// VJP of covariance3d(quat_to_rotmat(q), s): G = dL/dSigma (full symmetric)  ->  adds to v_q, v_s.
template <typename T>
ORSTER4D_HD void covariance3d_vjp(Vec4<T> q, Vec3<T> s, const Mat3<T>& G, Vec4<T>& v_q, Vec3<T>& v_s) {
  const Mat3<T> R = quat_to_rotmat(q);
  Mat3<T> M = R;
  for (int i = 0; i < 3; ++i) { M(i, 0) *= s.x; M(i, 1) *= s.y; M(i, 2) *= s.z; }
  Mat3<T> vM = matmul(G, M);  // dL/dM = (G + G^T) M = 2 G M
  for (int i = 0; i < 9; ++i) vM.m[i] *= T(2);
  Mat3<T> vR;
  for (int i = 0; i < 3; ++i) { vR(i, 0) = vM(i, 0) * s.x; vR(i, 1) = vM(i, 1) * s.y; vR(i, 2) = vM(i, 2) * s.z; }
  v_s.x += R(0, 0) * vM(0, 0) + R(1, 0) * vM(1, 0) + R(2, 0) * vM(2, 0);
  v_s.y += R(0, 1) * vM(0, 1) + R(1, 1) * vM(1, 1) + R(2, 1) * vM(2, 1);
  v_s.z += R(0, 2) * vM(0, 2) + R(1, 2) * vM(1, 2) + R(2, 2) * vM(2, 2);
  const Vec4<T> g = quat_to_rotmat_vjp(q, vR);
  v_q.w += g.w; v_q.x += g.x; v_q.y += g.y; v_q.z += g.z;
}

// ---------------------------------------------------------------- camera
template <typename T> struct Camera {
  Mat3<T> R;          // world-to-camera rotation
  Vec3<T> t;          // world-to-camera translation
  T fx, fy, cx, cy;   // pixels
  int width, height;  // pixels
};

// viewmat: row-major 4x4 world-to-camera; K: row-major 3x3 intrinsics.
template <typename T> ORSTER4D_HD Camera<T> make_camera(const T* viewmat, const T* K, int width, int height) {
  Camera<T> c;
  c.R = mat3_from_4x4(viewmat);
  c.t = {viewmat[3], viewmat[7], viewmat[11]};
  c.fx = K[0]; c.fy = K[4]; c.cx = K[2]; c.cy = K[5];
  c.width = width; c.height = height;
  return c;
}

// Camera centre in world coordinates: -R^T t (used for view-dependent colour).
template <typename T> ORSTER4D_HD Vec3<T> camera_center(const Camera<T>& c) {
  const Vec3<T> r = matvec_t(c.R, c.t);
  return {-r.x, -r.y, -r.z};
}

// p_c = R p + t.
template <typename T> ORSTER4D_HD Vec3<T> world_to_camera(const Camera<T>& c, Vec3<T> p) { return add(matvec(c.R, p), c.t); }
// Sigma_c = R Sigma R^T.
template <typename T> ORSTER4D_HD Mat3<T> covariance_to_camera(const Camera<T>& c, const Mat3<T>& S) {
  return matmul_nt(matmul(c.R, S), c.R);
}
// VJPs (no gradient to the camera): dL/dp = R^T dL/dp_c;  G_world = R^T G_cam R.
template <typename T> ORSTER4D_HD Vec3<T> world_to_camera_vjp(const Camera<T>& c, Vec3<T> v_pc) { return matvec_t(c.R, v_pc); }
template <typename T> ORSTER4D_HD Mat3<T> covariance_to_camera_vjp(const Camera<T>& c, const Mat3<T>& Gc) {
  return matmul(matmul_tn(c.R, Gc), c.R);
}

// ---------------------------------------------------------------- perspective projection (EWA)
// Tangent limits (x/z, y/z) of the clamped Jacobian: per side, the tangent from the principal
// point to the image edge plus 0.3x the half-image tangent (w / (2 fx), h / (2 fy)).
template <typename T> struct TanLimits { T x_pos, x_neg, y_pos, y_neg; };
template <typename T> ORSTER4D_HD TanLimits<T> tan_limits(const Camera<T>& c) {
  const T tan_fovx = T(0.5) * T(c.width) / c.fx, tan_fovy = T(0.5) * T(c.height) / c.fy;
  return {(T(c.width) - c.cx) / c.fx + T(0.3) * tan_fovx, c.cx / c.fx + T(0.3) * tan_fovx,
          (T(c.height) - c.cy) / c.fy + T(0.3) * tan_fovy, c.cy / c.fy + T(0.3) * tan_fovy};
}

// mean2d (px) and cov2d = J Sigma_c J^T (px^2, before the low-pass) of a camera-space Gaussian (z > 0).
template <typename T>
ORSTER4D_HD void perspective_project(const Camera<T>& c, Vec3<T> pc, const Mat3<T>& Sc, Vec2<T>& mean2d, Sym2<T>& cov2d) {
  const TanLimits<T> L = tan_limits(c);
  const T rz = T(1) / pc.z, rz2 = rz * rz;
  const T tx = pc.z * clamp_(pc.x * rz, -L.x_neg, L.x_pos);
  const T ty = pc.z * clamp_(pc.y * rz, -L.y_neg, L.y_pos);
  // J rows: j0 = (fx rz, 0, -fx tx rz2), j1 = (0, fy rz, -fy ty rz2)
  const T j00 = c.fx * rz, j02 = -c.fx * tx * rz2, j11 = c.fy * rz, j12 = -c.fy * ty * rz2;
  // A = J Sigma (2x3)
  const T a00 = j00 * Sc(0, 0) + j02 * Sc(2, 0), a01 = j00 * Sc(0, 1) + j02 * Sc(2, 1), a02 = j00 * Sc(0, 2) + j02 * Sc(2, 2);
  const T a10 = j11 * Sc(1, 0) + j12 * Sc(2, 0), a11 = j11 * Sc(1, 1) + j12 * Sc(2, 1), a12 = j11 * Sc(1, 2) + j12 * Sc(2, 2);
  cov2d.xx = a00 * j00 + a02 * j02;
  cov2d.xy = a01 * j11 + a02 * j12;
  cov2d.yy = a11 * j11 + a12 * j12;
  (void)a10;
  mean2d.x = c.fx * pc.x * rz + c.cx;
  mean2d.y = c.fy * pc.y * rz + c.cy;
}

// VJP of perspective_project: (dL/dmean2d, G2 = dL/dcov2d full symmetric) -> adds dL/dp_c, returns G_c = dL/dSigma_c.
template <typename T>
ORSTER4D_HD Mat3<T> perspective_project_vjp(const Camera<T>& c, Vec3<T> pc, const Mat3<T>& Sc, Vec2<T> v_mean2d,
                                            Sym2<T> G2, Vec3<T>& v_pc) {
  const TanLimits<T> L = tan_limits(c);
  const T rz = T(1) / pc.z, rz2 = rz * rz, rz3 = rz2 * rz;
  const T ux = pc.x * rz, uy = pc.y * rz;
  const bool x_free = ux <= L.x_pos && ux >= -L.x_neg;
  const bool y_free = uy <= L.y_pos && uy >= -L.y_neg;
  const T tx = pc.z * clamp_(ux, -L.x_neg, L.x_pos);
  const T ty = pc.z * clamp_(uy, -L.y_neg, L.y_pos);
  Mat3<T> J;  // third row zero: J as 3x3 with row 2 = 0
  J(0, 0) = c.fx * rz; J(0, 1) = T(0);      J(0, 2) = -c.fx * tx * rz2;
  J(1, 0) = T(0);      J(1, 1) = c.fy * rz; J(1, 2) = -c.fy * ty * rz2;
  J(2, 0) = T(0);      J(2, 1) = T(0);      J(2, 2) = T(0);
  Mat3<T> G;  // dL/dcov2d embedded in 3x3
  G(0, 0) = G2.xx; G(0, 1) = G2.xy; G(0, 2) = T(0);
  G(1, 0) = G2.xy; G(1, 1) = G2.yy; G(1, 2) = T(0);
  G(2, 0) = T(0);  G(2, 1) = T(0);  G(2, 2) = T(0);
  const Mat3<T> Gc = matmul(matmul_tn(J, G), J);          // J^T G J
  const Mat3<T> GJ = matmul(G, J);
  const Mat3<T> vJ = matmul(GJ, Sc);                      // (G J Sigma) ; dL/dJ = 2 G J Sigma
  const T vJ00 = T(2) * vJ(0, 0), vJ02 = T(2) * vJ(0, 2), vJ11 = T(2) * vJ(1, 1), vJ12 = T(2) * vJ(1, 2);
  // mean2d
  v_pc.x += c.fx * rz * v_mean2d.x;
  v_pc.y += c.fy * rz * v_mean2d.y;
  v_pc.z -= (c.fx * pc.x * v_mean2d.x + c.fy * pc.y * v_mean2d.y) * rz2;
  // J00 = fx/z, J11 = fy/z
  v_pc.z -= c.fx * rz2 * vJ00 + c.fy * rz2 * vJ11;
  // J02 = -fx tx / z^2: tx = x when unclamped, tx = z * limit otherwise
  if (x_free) { v_pc.x -= c.fx * rz2 * vJ02; v_pc.z += T(2) * c.fx * tx * rz3 * vJ02; }
  else        { v_pc.z += c.fx * tx * rz3 * vJ02; }
  if (y_free) { v_pc.y -= c.fy * rz2 * vJ12; v_pc.z += T(2) * c.fy * ty * rz3 * vJ12; }
  else        { v_pc.z += c.fy * ty * rz3 * vJ12; }
  return Gc;
}

// ---------------------------------------------------------------- low-pass, conic, radius
// Adds the low-pass filter eps2d (px^2) to the diagonal; returns det of the result.
template <typename T> ORSTER4D_HD T add_blur(Sym2<T>& cov2d, T eps2d) {
  cov2d.xx += eps2d;
  cov2d.yy += eps2d;
  return cov2d.xx * cov2d.yy - cov2d.xy * cov2d.xy;
}

// Inverse of a symmetric 2x2 matrix with determinant det != 0.
template <typename T> ORSTER4D_HD Sym2<T> inverse_sym2(Sym2<T> m, T det) {
  const T inv = T(1) / det;
  return {m.yy * inv, -m.xy * inv, m.xx * inv};
}

// VJP of conic = cov2d^{-1}: v_conic w.r.t. the stored (a, b, c)  ->  dL/dcov2d (full symmetric).
// G_A = [[va, vb/2], [vb/2, vc]],  dL/dcov2d = -A G_A A.
template <typename T> ORSTER4D_HD Sym2<T> conic_vjp(Sym2<T> A, Sym2<T> v_conic) {
  const T ga = v_conic.xx, gb = T(0.5) * v_conic.xy, gc = v_conic.yy;
  // P = G_A A
  const T p00 = ga * A.xx + gb * A.xy, p01 = ga * A.xy + gb * A.yy;
  const T p10 = gb * A.xx + gc * A.xy, p11 = gb * A.xy + gc * A.yy;
  // A P
  return {-(A.xx * p00 + A.xy * p10), -(A.xx * p01 + A.xy * p11), -(A.xy * p01 + A.yy * p11)};
}

// Bounding-circle radius (px) = ceil(3.33 sqrt(lambda_max(cov2d))).
template <typename T> ORSTER4D_HD T bounding_radius(Sym2<T> cov2d) {
  const T b = T(0.5) * (cov2d.xx + cov2d.yy);
  const T det = cov2d.xx * cov2d.yy - cov2d.xy * cov2d.xy;
  const T lmax = b + sqrt_(max_(T(0), b * b - det));
  return ceil_(T(kGaussianExtent) * sqrt_(lmax));
}

// Opacity-aware tight half-extents (px) of the box that holds every pixel with alpha >= 1/255
// (gsplat's tile-intersection box).  Returns {0, 0} when opacity < 1/255.
template <typename T> ORSTER4D_HD Vec2<T> tight_extent(Sym2<T> cov2d, T opacity) {
  if (!(opacity >= T(kAlphaThreshold))) return {T(0), T(0)};
  const T k = min_(T(kGaussianExtent), sqrt_(T(2) * log_(opacity * T(255))));
  return {ceil_(k * sqrt_(cov2d.xx)), ceil_(k * sqrt_(cov2d.yy))};
}

// cov2d (with the low-pass) recovered from a conic: the inverse of the inverse.
template <typename T> ORSTER4D_HD Sym2<T> cov2d_from_conic(Sym2<T> conic) {
  const T det = conic.xx * conic.yy - conic.xy * conic.xy;
  return inverse_sym2(conic, det);
}

// ---------------------------------------------------------------- tile intersection
// Tiles [x0, x1) x [y0, y1) (tile units) touched by a projected Gaussian: the box of half-size
// `radius` (px) around mean2d, tightened to tight_extent() when `conic` is non-null (then
// `opacity` is used); empty ({0, 0, 0, 0}) when radius <= 0 or both tight extents are 0.
// Tile (tx, ty) covers pixels [tx * tile_size, (tx + 1) * tile_size) (same for y).
struct GaussianTiles { int x0, x1, y0, y1; };

template <typename T>
ORSTER4D_HD GaussianTiles gaussian_tiles(Vec2<T> mean2d, int radius, const Sym2<T>* conic, T opacity, int tile_size, int tile_w,
                             int tile_h) {
  GaussianTiles t = {0, 0, 0, 0};
  if (radius <= 0) return t;
  T rx = T(radius), ry = T(radius);
  if (conic != nullptr) {
    const Vec2<T> e = tight_extent(cov2d_from_conic(*conic), opacity);
    rx = min_(rx, e.x);
    ry = min_(ry, e.y);
    if (rx <= T(0) && ry <= T(0)) return t;
  }
  const T inv = T(1) / T(tile_size);
  const T mx = mean2d.x * inv, my = mean2d.y * inv, trx = rx * inv, try_ = ry * inv;
  t.x0 = min_(max_(0, int(floor_(mx - trx))), tile_w);
  t.x1 = min_(max_(0, int(ceil_(mx + trx))), tile_w);
  t.y0 = min_(max_(0, int(floor_(my - try_))), tile_h);
  t.y1 = min_(max_(0, int(ceil_(my + try_))), tile_h);
  return t;
}

// gaussian_tiles() for entry `gid` of the flat B*C*N arrays written by the projection:
// means2d [B*C*N, 2], radii [B*C*N], optional conics [B*C*N, 3] and opacities [B, N]
// (CN = C*N); both backends' tile intersection call this.
ORSTER4D_HD GaussianTiles gaussian_tiles_at(int64_t gid, int64_t CN, int64_t N, const float* means2d, const int32_t* radii,
                                            const float* conics, const float* opacities, int tile_size, int tile_w,
                                            int tile_h) {
  const int r = radii[gid];
  if (r <= 0) return GaussianTiles{0, 0, 0, 0};
  const Vec2<float> m = {means2d[2 * gid], means2d[2 * gid + 1]};
  if (conics != nullptr && opacities != nullptr) {
    const Sym2<float> conic = {conics[3 * gid], conics[3 * gid + 1], conics[3 * gid + 2]};
    return gaussian_tiles(m, r, &conic, opacities[(gid / CN) * N + gid % N], tile_size, tile_w, tile_h);
  }
  return gaussian_tiles<float>(m, r, nullptr, 0.f, tile_size, tile_w, tile_h);
}

// ---------------------------------------------------------------- the whole projection
template <typename T> struct Projected {
  Vec2<T> mean2d;  // px
  T depth;         // camera-space z (world units)
  Sym2<T> conic;   // inverse of cov2d (with low-pass), 1/px^2
  Sym2<T> cov2d;   // with low-pass, px^2
  int radius;      // bounding-circle radius, px (0 = culled)
};

// Projects one Gaussian into one camera.  Returns false (and out.radius = 0) when culled.
template <typename T>
ORSTER4D_HD bool project_gaussian(Vec3<T> mean, Vec4<T> quat, Vec3<T> scale, const Camera<T>& cam, T near_plane,
                                  T far_plane, T eps2d, Projected<T>& out) {
  out.radius = 0;
  const Vec3<T> pc = world_to_camera(cam, mean);
  if (!(pc.z >= near_plane && pc.z <= far_plane)) return false;
  const Mat3<T> Sc = covariance_to_camera(cam, covariance3d(quat_to_rotmat(quat), scale));
  Vec2<T> m2;
  Sym2<T> cov;
  perspective_project(cam, pc, Sc, m2, cov);
  const T det = add_blur(cov, eps2d);
  if (!(det > T(0))) return false;
  const T r = bounding_radius(cov);
  if (!(r > T(0))) return false;
  if (m2.x + r <= T(0) || m2.x - r >= T(cam.width) || m2.y + r <= T(0) || m2.y - r >= T(cam.height)) return false;
  out.mean2d = m2;
  out.depth = pc.z;
  out.cov2d = cov;
  out.conic = inverse_sym2(cov, det);
  out.radius = int(r);
  return true;
}

// VJP of project_gaussian for a visible Gaussian: (dL/dmean2d, dL/ddepth, dL/dconic w.r.t. the stored
// (a, b, c)) -> adds dL/dmean (world), dL/dquat (unnormalised), dL/dscale.  `conic` is the forward's.
template <typename T>
ORSTER4D_HD void project_gaussian_vjp(Vec3<T> mean, Vec4<T> quat, Vec3<T> scale, const Camera<T>& cam, Sym2<T> conic,
                                      Vec2<T> v_mean2d, T v_depth, Sym2<T> v_conic, Vec3<T>& v_mean, Vec4<T>& v_quat,
                                      Vec3<T>& v_scale) {
  const Vec3<T> pc = world_to_camera(cam, mean);
  const Mat3<T> Sc = covariance_to_camera(cam, covariance3d(quat_to_rotmat(quat), scale));
  const Sym2<T> G2 = conic_vjp(conic, v_conic);  // the low-pass is additive: same gradient
  Vec3<T> v_pc = {T(0), T(0), v_depth};
  const Mat3<T> Gc = perspective_project_vjp(cam, pc, Sc, v_mean2d, G2, v_pc);
  const Vec3<T> vm = world_to_camera_vjp(cam, v_pc);
  v_mean.x += vm.x; v_mean.y += vm.y; v_mean.z += vm.z;
  covariance3d_vjp(quat, scale, covariance_to_camera_vjp(cam, Gc), v_quat, v_scale);
}

// ---------------------------------------------------------------- one element of the flat op layout
// The bodies of the projection ops of csrc/rasterize/README.md, shared by the CPU loops and the
// CUDA kernels. Layout: means [B*N, 3], quats [B*N, 4], scales [B*N, 3], viewmats [B*C, 16],
// Ks [B*C, 9]; per-(b, c, n) outputs at idx = (b * C + c) * N + n.

// Forward for element idx of B*C*N: writes radii, means2d, depths, conics (zeros when culled).
ORSTER4D_HD void project_element(int64_t idx, int64_t C, int64_t N, const float* means, const float* quats,
                                 const float* scales, const float* viewmats, const float* Ks, int width, int height,
                                 float near_plane, float far_plane, float eps2d, int32_t* radii, float* means2d,
                                 float* depths, float* conics) {
  const int64_t n = idx % N, bc = idx / N, g = (bc / C) * N + n;
  const Camera<float> cam = make_camera(viewmats + bc * 16, Ks + bc * 9, width, height);
  const Vec3<float> mean = {means[3 * g], means[3 * g + 1], means[3 * g + 2]};
  const Vec4<float> quat = {quats[4 * g], quats[4 * g + 1], quats[4 * g + 2], quats[4 * g + 3]};
  const Vec3<float> scale = {scales[3 * g], scales[3 * g + 1], scales[3 * g + 2]};
  Projected<float> p;
  const bool visible = project_gaussian(mean, quat, scale, cam, near_plane, far_plane, eps2d, p);
  radii[idx] = visible ? p.radius : 0;
  means2d[2 * idx] = visible ? p.mean2d.x : 0.f;
  means2d[2 * idx + 1] = visible ? p.mean2d.y : 0.f;
  depths[idx] = visible ? p.depth : 0.f;
  conics[3 * idx] = visible ? p.conic.xx : 0.f;
  conics[3 * idx + 1] = visible ? p.conic.xy : 0.f;
  conics[3 * idx + 2] = visible ? p.conic.yy : 0.f;
}

// Backward for Gaussian g of B*N: sums the VJPs over its C cameras in a fixed order (no atomics,
// deterministic) and writes v_means, v_quats (w, x, y, z), v_scales.
ORSTER4D_HD void project_vjp_element(int64_t g, int64_t C, int64_t N, const float* means, const float* quats,
                                     const float* scales, const float* viewmats, const float* Ks, int width,
                                     int height, const int32_t* radii, const float* conics, const float* v_means2d,
                                     const float* v_depths, const float* v_conics, float* v_means, float* v_quats,
                                     float* v_scales) {
  const int64_t b = g / N, n = g % N;
  const Vec3<float> mean = {means[3 * g], means[3 * g + 1], means[3 * g + 2]};
  const Vec4<float> quat = {quats[4 * g], quats[4 * g + 1], quats[4 * g + 2], quats[4 * g + 3]};
  const Vec3<float> scale = {scales[3 * g], scales[3 * g + 1], scales[3 * g + 2]};
  Vec3<float> vm = {0.f, 0.f, 0.f}, vs = {0.f, 0.f, 0.f};
  Vec4<float> vq = {0.f, 0.f, 0.f, 0.f};
  for (int64_t c = 0; c < C; ++c) {
    const int64_t bc = b * C + c, idx = bc * N + n;
    if (radii[idx] <= 0) continue;
    const Camera<float> cam = make_camera(viewmats + bc * 16, Ks + bc * 9, width, height);
    const Sym2<float> conic = {conics[3 * idx], conics[3 * idx + 1], conics[3 * idx + 2]};
    const Vec2<float> vm2 = {v_means2d[2 * idx], v_means2d[2 * idx + 1]};
    const Sym2<float> vc = {v_conics[3 * idx], v_conics[3 * idx + 1], v_conics[3 * idx + 2]};
    project_gaussian_vjp(mean, quat, scale, cam, conic, vm2, v_depths[idx], vc, vm, vq, vs);
  }
  v_means[3 * g] = vm.x; v_means[3 * g + 1] = vm.y; v_means[3 * g + 2] = vm.z;
  v_quats[4 * g] = vq.w; v_quats[4 * g + 1] = vq.x; v_quats[4 * g + 2] = vq.y; v_quats[4 * g + 3] = vq.z;
  v_scales[3 * g] = vs.x; v_scales[3 * g + 1] = vs.y; v_scales[3 * g + 2] = vs.z;
}

}  // namespace orster4d
