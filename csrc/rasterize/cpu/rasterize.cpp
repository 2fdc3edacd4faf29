// C++ CPU backend: tile intersection + sort, front-to-back compositing and its backward.
// Per-pixel math (sigma, alpha, skip/stop rules, VJPs) is the shared host/device code of
// csrc/include/orster4d/composite_math.h; this file holds the loops and the bookkeeping.
#include <algorithm>
#include <cstring>
#include <vector>

#include "ops.h"
#include "orster4d/composite_math.h"
#include "orster4d/gaussian_math.h"

namespace orster4d {
namespace {

// One (camera | tile | depth) key with its Gaussian; positive float depths order like their bits.
struct Isect {
  uint64_t bin;    // camera * n_tiles + tile
  uint32_t depth;  // float bits of the depth
  int32_t id;      // flat index into B*C*N (ties keep index order)
  bool operator<(const Isect& o) const {
    if (bin != o.bin) return bin < o.bin;
    if (depth != o.depth) return depth < o.depth;
    return id < o.id;
  }
};

uint32_t float_bits(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof(u));
  return u;
}

// The pixels of tile `tile` that lie in the image.
struct TileRange { int x0, x1, y0, y1; };
TileRange tile_pixels(int64_t tile, int64_t tile_w, int64_t tile_size, int64_t width, int64_t height) {
  const int tx = int(tile % tile_w), ty = int(tile / tile_w);
  return {int(tx * tile_size), int(std::min<int64_t>((tx + 1) * tile_size, width)), int(ty * tile_size),
          int(std::min<int64_t>((ty + 1) * tile_size, height))};
}

// The rasterizer's inputs as raw pointers (backgrounds: nullptr when absent), shared by the forward
// and backward loops.  A splat g is a flat index into [B, C, N]; its opacity is per (B, N).
struct RasterInputs {
  const float *means2d, *conics, *colors, *opacities, *depths, *backgrounds;
  const int32_t *offsets, *flatten_ids;
  int64_t N, CN;
  int64_t opacity_index(int64_t g) const { return (g / CN) * N + g % N; }
  Vec3<float> background(int64_t bc) const {
    return backgrounds ? Vec3<float>{backgrounds[3 * bc], backgrounds[3 * bc + 1], backgrounds[3 * bc + 2]}
                       : Vec3<float>{0.f, 0.f, 0.f};
  }
};

// A splat at the pixel centre (cx, cy): its conic, offset mean2d - centre (px), sigma and alpha.
struct SplatAtPixel {
  Sym2<float> conic;
  float dx, dy, sigma, alpha;
};
// A splat of a tile's run with what the per-pixel loops read of it, gathered once per tile so that
// a tile's pixels read contiguous memory (and the opacity index's divisions happen once per splat).
struct TileSplat {
  float mx, my;
  Sym2<float> conic;
  float opacity;
  Vec3<float> color;
  float depth;
  int64_t g, og;  // flat [B, C, N] index and opacity index
};

void gather_tile(const RasterInputs& in, int64_t begin, int64_t end, std::vector<TileSplat>& out) {
  out.resize(static_cast<size_t>(end - begin));
  for (int64_t k = begin; k < end; ++k) {
    const int64_t g = in.flatten_ids[k], og = in.opacity_index(g);
    out[k - begin] = {in.means2d[2 * g], in.means2d[2 * g + 1],
                      {in.conics[3 * g], in.conics[3 * g + 1], in.conics[3 * g + 2]}, in.opacities[og],
                      {in.colors[3 * g], in.colors[3 * g + 1], in.colors[3 * g + 2]}, in.depths[g], g, og};
  }
}

SplatAtPixel splat_at(const TileSplat& t, float cx, float cy) {
  SplatAtPixel s;
  s.conic = t.conic;
  s.dx = t.mx - cx;
  s.dy = t.my - cy;
  s.sigma = gaussian_sigma(s.conic, s.dx, s.dy);
  s.alpha = gaussian_alpha(t.opacity, s.sigma);
  return s;
}

RasterInputs check_raster_inputs(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                                 const at::Tensor& opacities, const at::Tensor& depths,
                                 const std::optional<at::Tensor>& backgrounds, const at::Tensor& isect_offsets,
                                 const at::Tensor& flatten_ids, int64_t width, int64_t height, int64_t tile_size) {
  ORSTER4D_CHECK_CPU_F32(means2d);
  ORSTER4D_CHECK_CPU_F32(conics);
  ORSTER4D_CHECK_CPU_F32(colors);
  ORSTER4D_CHECK_CPU_F32(opacities);
  ORSTER4D_CHECK_CPU_F32(depths);
  ORSTER4D_CHECK_CPU_I32(isect_offsets);
  ORSTER4D_CHECK_CPU_I32(flatten_ids);
  if (backgrounds.has_value()) { ORSTER4D_CHECK_CPU_F32(backgrounds.value()); }
  TORCH_CHECK(depths.dim() == 3, "depths must be [B, C, N]");
  TORCH_CHECK(width > 0 && height > 0 && tile_size > 0, "width, height and tile_size must be > 0");
  const int64_t B = depths.size(0), C = depths.size(1);
  TORCH_CHECK(isect_offsets.dim() == 3 && isect_offsets.size(0) == B * C, "isect_offsets must be [B*C, tile_h, tile_w]");
  TORCH_CHECK(isect_offsets.size(1) == (height + tile_size - 1) / tile_size &&
                  isect_offsets.size(2) == (width + tile_size - 1) / tile_size,
              "isect_offsets does not match the image size and tile size");
  return {means2d.data_ptr<float>(),
          conics.data_ptr<float>(),
          colors.data_ptr<float>(),
          opacities.data_ptr<float>(),
          depths.data_ptr<float>(),
          backgrounds.has_value() ? backgrounds->data_ptr<float>() : nullptr,
          isect_offsets.data_ptr<int32_t>(),
          flatten_ids.data_ptr<int32_t>(),
          depths.size(2),
          depths.size(1) * depths.size(2)};
}

}  // namespace

std::vector<at::Tensor> intersect_tiles_cpu(const at::Tensor& means2d, const at::Tensor& radii,
                                            const at::Tensor& depths, int64_t tile_size, int64_t tile_w,
                                            int64_t tile_h, const std::optional<at::Tensor>& conics,
                                            const std::optional<at::Tensor>& opacities) {
  ORSTER4D_CHECK_CPU_F32(means2d);
  ORSTER4D_CHECK_CPU_I32(radii);
  ORSTER4D_CHECK_CPU_F32(depths);
  TORCH_CHECK(radii.dim() == 3, "radii must be [B, C, N]");
  TORCH_CHECK(tile_size > 0 && tile_w > 0 && tile_h > 0, "tile_size, tile_w, tile_h must be > 0");
  const bool tight = conics.has_value() && opacities.has_value();
  if (tight) {
    ORSTER4D_CHECK_CPU_F32(conics.value());
    ORSTER4D_CHECK_CPU_F32(opacities.value());
  }
  const int64_t B = radii.size(0), C = radii.size(1), N = radii.size(2);
  const int64_t BC = B * C, total = BC * N, CN = C * N, n_tiles = tile_w * tile_h;
  TORCH_CHECK(total < (int64_t(1) << 31), "too many projected Gaussians (B*C*N = ", total, ")");
  const float* pm = means2d.data_ptr<float>();
  const int32_t* pr = radii.data_ptr<int32_t>();
  const float* pd = depths.data_ptr<float>();
  const float* pc = tight ? conics->data_ptr<float>() : nullptr;
  const float* po = tight ? opacities->data_ptr<float>() : nullptr;

  // tiles per Gaussian, then an exclusive scan gives each Gaussian its slots
  std::vector<int64_t> start(total + 1, 0);
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < total; ++g) {
    const GaussianTiles t = gaussian_tiles_at(g, CN, N, pm, pr, pc, po, int(tile_size), int(tile_w), int(tile_h));
    start[g + 1] = int64_t(t.x1 - t.x0) * int64_t(t.y1 - t.y0);
  }
  for (int64_t g = 0; g < total; ++g) start[g + 1] += start[g];
  const int64_t n_isect = start[total];
  TORCH_CHECK(n_isect < (int64_t(1) << 31), "too many tile intersections (", n_isect, ")");

  std::vector<Isect> isects(n_isect);
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < total; ++g) {
    const GaussianTiles t = gaussian_tiles_at(g, CN, N, pm, pr, pc, po, int(tile_size), int(tile_w), int(tile_h));
    const uint64_t cam = uint64_t(g / N);
    const uint32_t dbits = float_bits(pd[g]);
    int64_t k = start[g];
    for (int y = t.y0; y < t.y1; ++y)
      for (int x = t.x0; x < t.x1; ++x) isects[k++] = {cam * uint64_t(n_tiles) + uint64_t(y * tile_w + x), dbits, int32_t(g)};
  }
  std::sort(isects.begin(), isects.end());

  at::Tensor offsets = at::empty({BC, tile_h, tile_w}, means2d.options().dtype(at::kInt));
  at::Tensor flatten_ids = at::empty({n_isect}, means2d.options().dtype(at::kInt));
  int32_t* po_ = offsets.data_ptr<int32_t>();
  int32_t* pf = flatten_ids.data_ptr<int32_t>();
  // offsets[bin] = first index of the bin's run (empty runs point at the next run)
  int64_t k = 0;
  for (int64_t bin = 0; bin < BC * n_tiles; ++bin) {
    while (k < n_isect && isects[k].bin < uint64_t(bin)) ++k;
    po_[bin] = int32_t(k);
  }
  for (int64_t i = 0; i < n_isect; ++i) pf[i] = isects[i].id;
  return {offsets, flatten_ids};
}

std::vector<at::Tensor> rasterize_fwd_cpu(const at::Tensor& means2d, const at::Tensor& conics,
                                          const at::Tensor& colors, const at::Tensor& opacities,
                                          const at::Tensor& depths, const std::optional<at::Tensor>& backgrounds,
                                          int64_t width, int64_t height, int64_t tile_size,
                                          const at::Tensor& isect_offsets, const at::Tensor& flatten_ids) {
  const RasterInputs in = check_raster_inputs(means2d, conics, colors, opacities, depths, backgrounds, isect_offsets,
                                              flatten_ids, width, height, tile_size);
  const int64_t B = depths.size(0), C = depths.size(1), BC = B * C;
  const int64_t tile_h = isect_offsets.size(1), tile_w = isect_offsets.size(2), n_tiles = tile_w * tile_h;
  const int64_t n_isect = flatten_ids.numel(), HW = height * width;
  auto opt = means2d.options();
  at::Tensor render = at::empty({B, C, height, width, 3}, opt);
  at::Tensor render_depth = at::empty({B, C, height, width, 1}, opt);
  at::Tensor last_ids = at::empty({B, C, height, width}, opt.dtype(at::kInt));
  at::Tensor transmittance = at::empty({B, C, height, width}, opt);
  float* orgb = render.data_ptr<float>();
  float* odep = render_depth.data_ptr<float>();
  int32_t* olast = last_ids.data_ptr<int32_t>();
  float* otrans = transmittance.data_ptr<float>();
  // A tile's run is taken in batches of kBatch splats, gathered once for all its pixels; a pixel
  // whose transmittance ran out skips the rest, and the tile stops when every pixel has, so no more
  // of a long run is gathered than its pixels composite (plus one batch).
  constexpr int64_t kBatch = 256;
#pragma omp parallel
  {
    std::vector<TileSplat> ts;
    std::vector<float> Tp, rp, gp, bp, dp;
    std::vector<int64_t> lastp;
    std::vector<char> done;
#pragma omp for schedule(dynamic)
    for (int64_t bin = 0; bin < BC * n_tiles; ++bin) {
      const int64_t bc = bin / n_tiles, tile = bin % n_tiles;
      const IsectRun run = bin_isect_run(in.offsets, bin, BC * n_tiles, n_isect);
      const TileRange px = tile_pixels(tile, tile_w, tile_size, width, height);
      const Vec3<float> bg = in.background(bc);
      const int pw = px.x1 - px.x0, n_px = pw * (px.y1 - px.y0);
      Tp.assign(n_px, 1.f);
      rp.assign(n_px, 0.f);
      gp.assign(n_px, 0.f);
      bp.assign(n_px, 0.f);
      dp.assign(n_px, 0.f);
      lastp.assign(n_px, run.begin);  // one past the last composited splat
      done.assign(n_px, 0);
      int alive = n_px;
      for (int64_t b0 = run.begin; b0 < run.end && alive > 0; b0 += kBatch) {
        const int64_t b1 = std::min<int64_t>(b0 + kBatch, run.end);
        gather_tile(in, b0, b1, ts);
        for (int i = 0; i < n_px; ++i) {
          if (done[i]) continue;
          const float cx = float(px.x0 + i % pw) + 0.5f, cy = float(px.y0 + i / pw) + 0.5f;
          float T = Tp[i], r = rp[i], gch = gp[i], bch = bp[i], dsum = dp[i];
          for (int64_t k = b0; k < b1; ++k) {
            const TileSplat& t = ts[k - b0];
            const SplatAtPixel sp = splat_at(t, cx, cy);
            const float a = sp.alpha;
            if (!splat_contributes(sp.sigma, a)) continue;
            const float next_T = T * (1.f - a);
            if (next_T <= kTransmittanceMin) {
              done[i] = 1;
              --alive;
              break;
            }
            const float w = a * T;
            r += t.color.x * w;
            gch += t.color.y * w;
            bch += t.color.z * w;
            dsum += t.depth * w;
            T = next_T;
            lastp[i] = k + 1;
          }
          Tp[i] = T;
          rp[i] = r;
          gp[i] = gch;
          bp[i] = bch;
          dp[i] = dsum;
        }
      }
      for (int i = 0; i < n_px; ++i) {
        const int64_t pix = bc * HW + int64_t(px.y0 + i / pw) * width + (px.x0 + i % pw);
        const float T = Tp[i];
        orgb[3 * pix] = rp[i] + T * bg.x;
        orgb[3 * pix + 1] = gp[i] + T * bg.y;
        orgb[3 * pix + 2] = bp[i] + T * bg.z;
        odep[pix] = dp[i];
        otrans[pix] = T;  // alpha = 1 - T is formed by the caller; T itself keeps its digits when small
        olast[pix] = int32_t(lastp[i]);
      }
    }
  }
  return {render, render_depth, last_ids, transmittance};
}

std::vector<std::optional<at::Tensor>> rasterize_bwd_cpu(
    const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors, const at::Tensor& opacities,
    const at::Tensor& depths, const std::optional<at::Tensor>& backgrounds, int64_t width, int64_t height,
    int64_t tile_size, const at::Tensor& isect_offsets, const at::Tensor& flatten_ids, const at::Tensor& render,
    const at::Tensor& render_depth, const at::Tensor& transmittance, const at::Tensor& last_ids,
    const at::Tensor& v_render, const std::optional<at::Tensor>& v_render_depth,
    const std::optional<at::Tensor>& v_alpha) {
  const RasterInputs in = check_raster_inputs(means2d, conics, colors, opacities, depths, backgrounds, isect_offsets,
                                              flatten_ids, width, height, tile_size);
  ORSTER4D_CHECK_CPU_F32(transmittance);
  ORSTER4D_CHECK_CPU_I32(last_ids);
  ORSTER4D_CHECK_CPU_F32(v_render);
  if (v_render_depth.has_value()) { ORSTER4D_CHECK_CPU_F32(v_render_depth.value()); }
  if (v_alpha.has_value()) { ORSTER4D_CHECK_CPU_F32(v_alpha.value()); }
  (void)render;
  (void)render_depth;
  const int64_t B = depths.size(0), C = depths.size(1), BC = B * C;
  const int64_t tile_h = isect_offsets.size(1), tile_w = isect_offsets.size(2), n_tiles = tile_w * tile_h;
  const int64_t HW = height * width;
  TORCH_CHECK(transmittance.numel() == BC * HW && last_ids.numel() == BC * HW,
              "transmittance and last_ids must be [B, C, H, W] (rasterize_fwd's outputs)");
  at::Tensor v_means2d = at::zeros_like(means2d), v_conics = at::zeros_like(conics);
  at::Tensor v_colors = at::zeros_like(colors), v_opacities = at::zeros_like(opacities);
  at::Tensor v_depths = at::zeros_like(depths);
  const float* ptrans = transmittance.data_ptr<float>();
  const int32_t* plast = last_ids.data_ptr<int32_t>();
  const float* gr = v_render.data_ptr<float>();
  const float* gdep = v_render_depth.has_value() ? v_render_depth->data_ptr<float>() : nullptr;
  const float* galp = v_alpha.has_value() ? v_alpha->data_ptr<float>() : nullptr;
  float* om2 = v_means2d.data_ptr<float>();
  float* ocon = v_conics.data_ptr<float>();
  float* ocol = v_colors.data_ptr<float>();
  float* oop = v_opacities.data_ptr<float>();
  float* odep = v_depths.data_ptr<float>();
  const int64_t n_isect = flatten_ids.numel();
  // Each tile's pixels add their splats' gradients into a per-tile buffer indexed by the splat's
  // place in the tile's run (a Gaussian is in a run once), flushed with one atomic add per splat
  // and component when the tile is done: a tile's 256 pixels share one set of atomics.
  constexpr int kG = 10;  // rgb 3, depth 1, mean2d 2, conic 3, opacity 1
#pragma omp parallel
  {
    std::vector<float> acc;
    std::vector<TileSplat> ts;
#pragma omp for schedule(dynamic)
    for (int64_t bin = 0; bin < BC * n_tiles; ++bin) {
      const int64_t bc = bin / n_tiles, tile = bin % n_tiles;
      const IsectRun run = bin_isect_run(in.offsets, bin, BC * n_tiles, n_isect);
      const int64_t begin = run.begin;
      const TileRange px = tile_pixels(tile, tile_w, tile_size, width, height);
      int64_t end = begin;  // one past the furthest splat any pixel of the tile composited
      for (int y = px.y0; y < px.y1; ++y)
        for (int x = px.x0; x < px.x1; ++x) end = std::max<int64_t>(end, plast[bc * HW + int64_t(y) * width + x]);
      if (end <= begin) continue;
      acc.assign(static_cast<size_t>(end - begin) * kG, 0.f);
      gather_tile(in, begin, end, ts);
      const Vec3<float> bg = in.background(bc);
      for (int y = px.y0; y < px.y1; ++y) {
        for (int x = px.x0; x < px.x1; ++x) {
          const int64_t pix = bc * HW + int64_t(y) * width + x;
          const float cx = float(x) + 0.5f, cy = float(y) + 0.5f;
          const float T_final = ptrans[pix];
          const Vec3<float> v_rgb = {gr[3 * pix], gr[3 * pix + 1], gr[3 * pix + 2]};
          const float v_d = gdep ? gdep[pix] : 0.f;
          const float v_a = galp ? galp[pix] : 0.f;
          float T = T_final;  // transmittance behind the current splat
          Vec3<float> S = {0.f, 0.f, 0.f};
          float S_depth = 0.f;
          for (int64_t k = int64_t(plast[pix]) - 1; k >= begin; --k) {
            const TileSplat& t = ts[k - begin];
            const SplatAtPixel sp = splat_at(t, cx, cy);
            const float a = sp.alpha;
            if (!splat_contributes(sp.sigma, a)) continue;
            const float T_i = T / (1.f - a);
            const float w = a * T_i;
            const Vec3<float> col = t.color;
            const float v_alpha_i =
                composite_alpha_grad(a, T_i, col, t.depth, S, S_depth, T_final, v_rgb, v_d, v_a, bg);
            const AlphaGrad<float> ag = gaussian_alpha_vjp(sp.conic, t.opacity, sp.dx, sp.dy, v_alpha_i);
            float* q = acc.data() + (k - begin) * kG;
            q[0] += w * v_rgb.x;
            q[1] += w * v_rgb.y;
            q[2] += w * v_rgb.z;
            q[3] += w * v_d;
            q[4] += ag.v_mean2d.x;
            q[5] += ag.v_mean2d.y;
            q[6] += ag.v_conic.xx;
            q[7] += ag.v_conic.xy;
            q[8] += ag.v_conic.yy;
            q[9] += ag.v_opacity;
            S.x += col.x * w;
            S.y += col.y * w;
            S.z += col.z * w;
            S_depth += t.depth * w;
            T = T_i;
          }
        }
      }
      for (int64_t k = begin; k < end; ++k) {
        const float* q = acc.data() + (k - begin) * kG;
        bool any = false;
        for (int j = 0; j < kG; ++j) any |= q[j] != 0.f;
        if (!any) continue;  // the splat touched no pixel of this tile
        const int64_t g = ts[k - begin].g, og = ts[k - begin].og;
        float* dst[kG] = {ocol + 3 * g, ocol + 3 * g + 1, ocol + 3 * g + 2, odep + g, om2 + 2 * g, om2 + 2 * g + 1,
                          ocon + 3 * g, ocon + 3 * g + 1, ocon + 3 * g + 2, oop + og};
        for (int j = 0; j < kG; ++j) {
#pragma omp atomic
          *dst[j] += q[j];
        }
      }
    }
  }
  std::optional<at::Tensor> v_backgrounds;
  if (backgrounds.has_value()) {
    // d render / d background = T_final per pixel
    v_backgrounds = at::empty({B, C, 3}, means2d.options());
    float* obg = v_backgrounds->data_ptr<float>();
#pragma omp parallel for schedule(static)
    for (int64_t bc = 0; bc < BC; ++bc) {
      double s0 = 0, s1 = 0, s2 = 0;
      for (int64_t i = bc * HW; i < (bc + 1) * HW; ++i) {
        const double t = ptrans[i];
        s0 += t * gr[3 * i];
        s1 += t * gr[3 * i + 1];
        s2 += t * gr[3 * i + 2];
      }
      obg[3 * bc] = float(s0);
      obg[3 * bc + 1] = float(s1);
      obg[3 * bc + 2] = float(s2);
    }
  }
  return {v_means2d, v_conics, v_colors, v_opacities, v_depths, v_backgrounds};
}

}  // namespace orster4d
