// Shared math of the fused HexPlane sampler (CPU and CUDA backends).
//
// A HexPlane level holds six planes, one per axis pair of (x, y, z, t):
//   p = 0: xy, 1: xz, 2: yz, 3: xt, 4: yt, 5: zt.
// For pair (a, b) the first axis a runs along the plane's width (grid_sample's x)
// and the second axis b along its height (grid_sample's y), as in 4D Gaussian
// Splatting's `grid_sample` layout [C, H = res[b], W = res[a]].
//
// Kernel storage ("packed", channel-last): all planes of all levels are rows of one
// [rows, C] tensor. Plane p of level l starts at row `offset[p]` of its level
// descriptor; texel (iy, ix) of that plane is row offset[p] + iy * W + ix, and its C
// channels are contiguous, so a thread that handles a run of channels reads and
// accumulates whole vectors.
//
// Sampling matches torch.nn.functional.grid_sample(mode="bilinear",
// padding_mode="border", align_corners=True): u in [-1, 1] maps to the pixel position
// (u + 1) / 2 * (res - 1), clamped to [0, res - 1]; on and beyond the border the
// derivative of the position with respect to u is zero (grid_sample's convention).
// NaN coordinates sample the first texel.
//
// This header compiles with plain g++ (no CUDA) as well as with nvcc.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define OHP_HD __host__ __device__ __forceinline__
#else
#define OHP_HD inline
#endif

namespace orster4d {
namespace hexplane {

constexpr int kNumPlanes = 6;
constexpr int kMaxLevels = 8;
constexpr int kMetaPerLevel = 4 + kNumPlanes;  // res x, y, z, t, then six row offsets

// Axis along the plane width (grid x) for plane p: xy->x, xz->x, yz->y, xt->x, yt->y, zt->z.
OHP_HD int plane_axis_w(int p) { return p == 2 ? 1 : (p < 3 ? 0 : p - 3); }
// Axis along the plane height (grid y) for plane p: xy->y, xz->z, yz->z, then t.
OHP_HD int plane_axis_h(int p) { return p == 0 ? 1 : (p < 3 ? 2 : 3); }

struct LevelDesc {
  int res[4];                   // resolution along x, y, z, t
  int64_t offset[kNumPlanes];   // first row of each plane in the packed tensor
};

struct Layout {
  int levels;
  int channels;
  LevelDesc level[kMaxLevels];
};

// One axis of a bilinear lookup: the two texel indices, the fraction towards i1 and
// d(pixel position)/d(u) (zero where the coordinate is clamped).
template <typename T>
struct AxisSample {
  int i0;
  int i1;
  T frac;
  T dpos;
};

template <typename T>
OHP_HD AxisSample<T> axis_sample(T u, int res) {
  AxisSample<T> s;
  const T lim = static_cast<T>(res - 1);
  T pos = ((u + T(1)) * T(0.5)) * lim;
  T dpos = T(0.5) * lim;
  if (!(pos > T(0))) {  // also catches NaN
    pos = T(0);
    dpos = T(0);
  } else if (pos >= lim) {
    pos = lim;
    dpos = T(0);
  }
  int i0 = static_cast<int>(floor(pos));
  const int top = res >= 2 ? res - 2 : 0;
  if (i0 > top) i0 = top;
  s.i0 = i0;
  s.i1 = i0 + 1 < res ? i0 + 1 : res - 1;
  s.frac = pos - static_cast<T>(i0);
  s.dpos = dpos;
  return s;
}

// Bilinear weights of the corners (x0,y0), (x1,y0), (x0,y1), (x1,y1).
template <typename T>
struct Bilinear {
  T w00, w10, w01, w11;
};

template <typename T>
OHP_HD Bilinear<T> bilinear_weights(T fx, T fy) {
  Bilinear<T> w;
  const T gx = T(1) - fx, gy = T(1) - fy;
  w.w00 = gx * gy;
  w.w10 = fx * gy;
  w.w01 = gx * fy;
  w.w11 = fx * fy;
  return w;
}

template <typename T>
OHP_HD T bilinear(const Bilinear<T>& w, T v00, T v10, T v01, T v11) {
  return w.w00 * v00 + w.w10 * v10 + w.w01 * v01 + w.w11 * v11;
}

// d(bilinear)/d(pixel position x) and /d(pixel position y).
template <typename T>
OHP_HD T bilinear_dx(T fy, T v00, T v10, T v01, T v11) {
  return (T(1) - fy) * (v10 - v00) + fy * (v11 - v01);
}

template <typename T>
OHP_HD T bilinear_dy(T fx, T v00, T v10, T v01, T v11) {
  return (T(1) - fx) * (v01 - v00) + fx * (v11 - v10);
}

// Rows (texel indices in the packed tensor) of the four corners of a lookup.
struct CornerRows {
  int64_t r00, r10, r01, r11;
};

template <typename T>
OHP_HD CornerRows corner_rows(int64_t offset, int width, const AxisSample<T>& sx, const AxisSample<T>& sy) {
  CornerRows c;
  const int64_t y0 = offset + static_cast<int64_t>(sy.i0) * width;
  const int64_t y1 = offset + static_cast<int64_t>(sy.i1) * width;
  c.r00 = y0 + sx.i0;
  c.r10 = y0 + sx.i1;
  c.r01 = y1 + sx.i0;
  c.r11 = y1 + sx.i1;
  return c;
}

// Where the coordinates u = (x, y, z, t) fall in plane p of a level: the samples along the
// plane's width and height axes, the rows of the four corners and their bilinear weights.
template <typename T>
struct PlaneCell {
  AxisSample<T> sx, sy;
  CornerRows r;
  Bilinear<T> w;
};

template <typename T>
OHP_HD PlaneCell<T> plane_cell(const LevelDesc& d, int p, const T* u) {
  const int a = plane_axis_w(p), b = plane_axis_h(p);
  PlaneCell<T> c;
  c.sx = axis_sample<T>(u[a], d.res[a]);
  c.sy = axis_sample<T>(u[b], d.res[b]);
  c.r = corner_rows<T>(d.offset[p], d.res[a], c.sx, c.sy);
  c.w = bilinear_weights<T>(c.sx.frac, c.sy.frac);
  return c;
}

// Fill a Layout from the flat metadata list [levels * kMetaPerLevel]:
// per level res_x, res_y, res_z, res_t, offset_xy, offset_xz, offset_yz, offset_xt, offset_yt, offset_zt.
inline Layout layout_from_meta(const int64_t* meta, int levels, int channels) {
  Layout lay;
  lay.levels = levels;
  lay.channels = channels;
  for (int l = 0; l < levels; ++l) {
    for (int a = 0; a < 4; ++a) lay.level[l].res[a] = static_cast<int>(meta[l * kMetaPerLevel + a]);
    for (int p = 0; p < kNumPlanes; ++p) lay.level[l].offset[p] = meta[l * kMetaPerLevel + 4 + p];
  }
  for (int l = levels; l < kMaxLevels; ++l) {
    for (int a = 0; a < 4; ++a) lay.level[l].res[a] = 1;
    for (int p = 0; p < kNumPlanes; ++p) lay.level[l].offset[p] = 0;
  }
  return lay;
}

}  // namespace hexplane
}  // namespace orster4d
