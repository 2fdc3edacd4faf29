// Per-pixel Gaussian evaluation and front-to-back alpha compositing, with VJPs.
//
// For a pixel centre p = (j + 0.5, i + 0.5) (px) and a splat with 2D mean m (px), conic
// (a, b, c) (1/px^2) and opacity o in (0, 1):
//   d = m - p,  sigma = 0.5 (a dx^2 + c dy^2) + b dx dy            (dimensionless)
//   alpha = min(kAlphaMax, o exp(-sigma))
// The splat is skipped when sigma < 0 or alpha < 1/255.  Compositing front to back:
//   C = sum_i c_i alpha_i T_i + T_final * background,   T_{i+1} = T_i (1 - alpha_i),  T_0 = 1
// and a pixel stops *before* the splat whose T_{i+1} would fall to <= 1e-4 (that splat is
// not composited).  The same weights w_i = alpha_i T_i give the depth sum D = sum_i w_i z_i
// and the output alpha = 1 - T_final.
#pragma once

#include "common.h"

namespace orster4d {

constexpr float kAlphaMax = 0.99f;           // alpha cap (3DGS)
constexpr float kAlphaMin = 1.f / 255.f;     // splats below are skipped
constexpr float kTransmittanceMin = 1e-4f;   // stop when T would fall to this or below

// The run [begin, end) of a bin's depth-sorted intersections in flatten_ids, a bin being
// (camera, tile) = camera * n_tiles + tile of n_bins: offsets[bin] (an empty run points at the
// next one) up to the next bin's offset, or n_isect after the last bin.
struct IsectRun { int32_t begin, end; };
ORSTER4D_HD IsectRun bin_isect_run(const int32_t* offsets, int64_t bin, int64_t n_bins, int64_t n_isect) {
  return {offsets[bin], bin == n_bins - 1 ? int32_t(n_isect) : offsets[bin + 1]};
}

// sigma = 0.5 (a dx^2 + c dy^2) + b dx dy with (dx, dy) = mean2d - pixel centre.
template <typename T> ORSTER4D_HD T gaussian_sigma(Sym2<T> conic, T dx, T dy) {
  return T(0.5) * (conic.xx * dx * dx + conic.yy * dy * dy) + conic.xy * dx * dy;
}

// alpha = min(kAlphaMax, opacity exp(-sigma)).
template <typename T> ORSTER4D_HD T gaussian_alpha(T opacity, T sigma) {
  return min_(T(kAlphaMax), opacity * exp_(-sigma));
}

// True when the splat takes part in the pixel (sigma >= 0 and alpha >= 1/255).
template <typename T> ORSTER4D_HD bool splat_contributes(T sigma, T alpha) {
  return sigma >= T(0) && alpha >= T(kAlphaMin);
}

// Gradients of one splat's alpha at one pixel with respect to its parameters.
template <typename T> struct AlphaGrad {
  Vec2<T> v_mean2d;  // dL/dmean2d (px^-1)
  Sym2<T> v_conic;   // dL/d(a, b, c) as stored
  T v_opacity;
};

// VJP of alpha = min(kAlphaMax, o exp(-sigma(conic, mean2d - p))) given v_alpha = dL/dalpha.
// Exact: zero where the cap is active (o exp(-sigma) > kAlphaMax).
// `vis` = exp(-sigma) as already evaluated by the caller.
template <typename T>
ORSTER4D_HD AlphaGrad<T> gaussian_alpha_vjp(Sym2<T> conic, T opacity, T dx, T dy, T vis, T v_alpha) {
  AlphaGrad<T> g;
  if (opacity * vis > T(kAlphaMax)) v_alpha = T(0);
  const T v_sigma = -opacity * vis * v_alpha;
  g.v_opacity = vis * v_alpha;
  g.v_conic = {T(0.5) * v_sigma * dx * dx, v_sigma * dx * dy, T(0.5) * v_sigma * dy * dy};
  g.v_mean2d = {v_sigma * (conic.xx * dx + conic.xy * dy), v_sigma * (conic.xy * dx + conic.yy * dy)};
  return g;
}

template <typename T>
ORSTER4D_HD AlphaGrad<T> gaussian_alpha_vjp(Sym2<T> conic, T opacity, T dx, T dy, T v_alpha) {
  return gaussian_alpha_vjp(conic, opacity, dx, dy, exp_(-gaussian_sigma(conic, dx, dy)), v_alpha);
}

// dL/dalpha_i of the composited outputs for splat i, walking back to front.
//   T_i       transmittance in front of splat i (T_{i+1} / (1 - alpha_i))
//   color_i, depth_i      the splat's colour and depth
//   S_color, S_depth      sums over the splats behind i: sum_{j>i} c_j w_j, sum_{j>i} z_j w_j
//   T_final               transmittance after the last composited splat
//   v_render, v_depth, v_alpha_out, background:  upstream gradients and the background colour
// dC/dalpha_i = c_i T_i - (S_color + T_final bg) / (1 - alpha_i); d(1 - T_final)/dalpha_i = T_final / (1 - alpha_i).
template <typename T>
ORSTER4D_HD T composite_alpha_grad(T alpha, T T_i, Vec3<T> color, T depth, Vec3<T> S_color, T S_depth, T T_final,
                                   Vec3<T> v_render, T v_depth, T v_alpha_out, Vec3<T> background) {
  const T ra = T(1) / (T(1) - alpha);
  T g = v_render.x * (color.x * T_i - (S_color.x + T_final * background.x) * ra) +
        v_render.y * (color.y * T_i - (S_color.y + T_final * background.y) * ra) +
        v_render.z * (color.z * T_i - (S_color.z + T_final * background.z) * ra);
  g += v_depth * (depth * T_i - S_depth * ra);
  g += v_alpha_out * T_final * ra;
  return g;
}

}  // namespace orster4d
