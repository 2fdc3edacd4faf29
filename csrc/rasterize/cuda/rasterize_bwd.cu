// Tile rasterization, backward: same grid as the forward; every pixel walks its tile's run
// back to front from the last splat it composited (last_ids), rebuilding the transmittance
// from T_final, which the forward stored (not 1 - alpha: that loses T_final's digits when it is
// small, on nearly opaque pixels).  The ten per-splat gradients are summed over the warp with one
// reduce-scatter (16 shuffles instead of the 50 of ten butterfly sums; 3-7% off the kernel on an
// H200) and added into the per-splat outputs by ten lanes at once, one atomic each.
#include "orster4d/composite_math.h"
#include "orster4d/cuda_utils.cuh"

namespace orster4d {
namespace {

__global__ void rasterize_bwd_kernel(
    int64_t C, int64_t N, int64_t BC, int width, int height, int tile_size, int tile_w, int tile_h, int64_t n_isect,
    const float* __restrict__ means2d, const float* __restrict__ conics, const float* __restrict__ colors,
    const float* __restrict__ opacities, const float* __restrict__ depths, const float* __restrict__ backgrounds,
    const int32_t* __restrict__ offsets, const int32_t* __restrict__ flatten_ids,
    const float* __restrict__ transmittance, const int32_t* __restrict__ last_ids, const float* __restrict__ v_render,
    const float* __restrict__ v_render_depth, const float* __restrict__ v_alpha, float* __restrict__ v_means2d,
    float* __restrict__ v_conics, float* __restrict__ v_colors, float* __restrict__ v_opacities,
    float* __restrict__ v_depths, float* __restrict__ v_backgrounds) {
  extern __shared__ float4 smem[];
  const int bsize = blockDim.x * blockDim.y;
  float4* s_geo = smem;              // x, y, opacity, depth
  float4* s_col = smem + bsize;      // conic a, b, c ; unused
  float4* s_rgb = smem + 2 * bsize;  // r, g, b ; unused
  int32_t* s_id = reinterpret_cast<int32_t*>(smem + 3 * bsize);

  const int64_t bc = blockIdx.z;
  const int tile_id = blockIdx.y * tile_w + blockIdx.x;
  const int i = blockIdx.y * tile_size + threadIdx.y, j = blockIdx.x * tile_size + threadIdx.x;
  const int tr = threadIdx.y * blockDim.x + threadIdx.x;
  const int lane = tr & 31;
  const bool inside = i < height && j < width;
  const float px = float(j) + 0.5f, py = float(i) + 0.5f;

  const IsectRun run = bin_isect_run(offsets, bc * int64_t(tile_w) * tile_h + tile_id, BC * int64_t(tile_w) * tile_h,
                                     n_isect);
  const int32_t range_start = run.begin, range_end = run.end;
  const int n_batches = (range_end - range_start + bsize - 1) / bsize;

  const int64_t pix = (bc * height + min(i, height - 1)) * int64_t(width) + min(j, width - 1);
  const float T_final = inside ? transmittance[pix] : 1.f;
  float T = T_final;
  const int32_t bin_final = inside ? last_ids[pix] : -1;
  const Vec3<float> vr = inside ? Vec3<float>{v_render[3 * pix], v_render[3 * pix + 1], v_render[3 * pix + 2]}
                                : Vec3<float>{0.f, 0.f, 0.f};
  const float vd = inside && v_render_depth != nullptr ? v_render_depth[pix] : 0.f;
  const float va = inside && v_alpha != nullptr ? v_alpha[pix] : 0.f;
  Vec3<float> bg = {0.f, 0.f, 0.f};
  if (backgrounds != nullptr) bg = {backgrounds[3 * bc], backgrounds[3 * bc + 1], backgrounds[3 * bc + 2]};

  // background gradient: dL/dbg = sum over pixels of T_final * v_render
  if (v_backgrounds != nullptr) {
    const float s0 = warp_sum(T_final * vr.x), s1 = warp_sum(T_final * vr.y), s2 = warp_sum(T_final * vr.z);
    if (lane == 0) {
      atomicAdd(v_backgrounds + 3 * bc, s0);
      atomicAdd(v_backgrounds + 3 * bc + 1, s1);
      atomicAdd(v_backgrounds + 3 * bc + 2, s2);
    }
  }

  const int32_t warp_bin_final = warp_max(bin_final);
  // batches wholly behind every pixel of the block are never loaded
  __shared__ int32_t s_block_final;
  if (tr == 0) s_block_final = -1;
  __syncthreads();
  if (lane == 0) atomicMax(&s_block_final, warp_bin_final);
  __syncthreads();
  const int32_t block_final = s_block_final;
  const int first_batch = block_final < range_start ? n_batches : (range_end - 1 - block_final) / bsize;
  Vec3<float> S = {0.f, 0.f, 0.f};
  float S_d = 0.f;
  for (int batch = first_batch; batch < n_batches; ++batch) {
    const int32_t batch_end = range_end - 1 - batch * bsize;  // first (deepest) index of this batch
    const int n = min(bsize, batch_end + 1 - range_start);
    __syncthreads();
    if (tr < n) {
      const int32_t idx = batch_end - tr;
      const int32_t gid = flatten_ids[idx];
      const int64_t gb = gid / (C * N), gn = gid % N;
      s_id[tr] = gid;
      s_geo[tr] = make_float4(means2d[2 * gid], means2d[2 * gid + 1], opacities[gb * N + gn], depths[gid]);
      s_col[tr] = make_float4(conics[3 * gid], conics[3 * gid + 1], conics[3 * gid + 2], 0.f);
      s_rgb[tr] = make_float4(colors[3 * gid], colors[3 * gid + 1], colors[3 * gid + 2], 0.f);
    }
    __syncthreads();
    // skip the splats behind every pixel of this warp
    const int t0 = max(0, batch_end - warp_bin_final);
    for (int t = t0; t < n; ++t) {
      const int32_t idx = batch_end - t;
      bool valid = inside && idx <= bin_final;
      const float4 geo = s_geo[t];
      const float4 cc = s_col[t];
      const Sym2<float> conic = {cc.x, cc.y, cc.z};
      const float dx = geo.x - px, dy = geo.y - py;
      const float sigma = gaussian_sigma(conic, dx, dy);
      const float vis = exp_(-sigma);
      const float alpha = min_(kAlphaMax, geo.z * vis);
      valid = valid && splat_contributes(sigma, alpha);
      if (!__any_sync(0xffffffffu, valid)) continue;
      float g_mx = 0.f, g_my = 0.f, g_ca = 0.f, g_cb = 0.f, g_cc = 0.f, g_r = 0.f, g_g = 0.f, g_b = 0.f, g_o = 0.f,
            g_d = 0.f;
      if (valid) {
        const float4 rgb = s_rgb[t];
        const float ra = 1.f / (1.f - alpha);
        T *= ra;  // transmittance in front of this splat
        const float w = alpha * T;
        g_r = w * vr.x;
        g_g = w * vr.y;
        g_b = w * vr.z;
        g_d = w * vd;
        const Vec3<float> col = {rgb.x, rgb.y, rgb.z};
        const float v_a = composite_alpha_grad(alpha, T, col, geo.w, S, S_d, T_final, vr, vd, va, bg);
        const AlphaGrad<float> ag = gaussian_alpha_vjp(conic, geo.z, dx, dy, vis, v_a);
        g_mx = ag.v_mean2d.x;
        g_my = ag.v_mean2d.y;
        g_ca = ag.v_conic.xx;
        g_cb = ag.v_conic.xy;
        g_cc = ag.v_conic.yy;
        g_o = ag.v_opacity;
        S.x += rgb.x * w;
        S.y += rgb.y * w;
        S.z += rgb.z * w;
        S_d += geo.w * w;
      }
      const int32_t gid = s_id[t];
      // the ten sums land in lanes 0, 2, ..., 18, which add them with one atomic instruction
      float g[16] = {g_mx, g_my, g_ca, g_cb, g_cc, g_r, g_g, g_b, g_o, g_d, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
      warp_reduce_scatter16(g, lane);
      const int which = lane >> 1;
      if ((lane & 1) == 0 && which < 10) {
        float* dst;
        if (which < 2) dst = v_means2d + 2 * gid + which;
        else if (which < 5) dst = v_conics + 3 * gid + (which - 2);
        else if (which < 8) dst = v_colors + 3 * gid + (which - 5);
        else if (which == 8) dst = v_opacities + (gid / (C * N)) * N + gid % N;
        else dst = v_depths + gid;
        atomicAdd(dst, g[0]);
      }
    }
  }
}

}  // namespace

std::vector<at::Tensor> rasterize_bwd_cuda(
    const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors, const at::Tensor& opacities,
    const at::Tensor& depths, const c10::optional<at::Tensor>& backgrounds, int64_t width, int64_t height,
    int64_t tile_size, const at::Tensor& isect_offsets, const at::Tensor& flatten_ids, const at::Tensor& render,
    const at::Tensor& render_depth, const at::Tensor& transmittance, const at::Tensor& last_ids,
    const at::Tensor& v_render, const c10::optional<at::Tensor>& v_render_depth,
    const c10::optional<at::Tensor>& v_alpha) {
  ORSTER4D_CHECK_INPUT_F32(means2d);
  ORSTER4D_CHECK_INPUT_F32(conics);
  ORSTER4D_CHECK_INPUT_F32(colors);
  ORSTER4D_CHECK_INPUT_F32(opacities);
  ORSTER4D_CHECK_INPUT_F32(depths);
  ORSTER4D_CHECK_INPUT_I32(isect_offsets);
  ORSTER4D_CHECK_INPUT_I32(flatten_ids);
  ORSTER4D_CHECK_INPUT_F32(transmittance);
  ORSTER4D_CHECK_INPUT_I32(last_ids);
  ORSTER4D_CHECK_INPUT_F32(v_render);
  if (backgrounds.has_value()) { ORSTER4D_CHECK_INPUT_F32(backgrounds.value()); }
  if (v_render_depth.has_value()) { ORSTER4D_CHECK_INPUT_F32(v_render_depth.value()); }
  if (v_alpha.has_value()) { ORSTER4D_CHECK_INPUT_F32(v_alpha.value()); }
  (void)render;
  (void)render_depth;
  TORCH_CHECK(tile_size > 0 && tile_size * tile_size <= 1024 && (tile_size * tile_size) % 32 == 0,
              "tile_size must make whole warps (e.g. 16)");
  const c10::cuda::CUDAGuard guard(means2d.device());
  const int64_t B = colors.size(0), C = colors.size(1), N = colors.size(2), BC = B * C;
  const int64_t tile_h = isect_offsets.size(1), tile_w = isect_offsets.size(2);
  TORCH_CHECK(transmittance.numel() == BC * height * width && last_ids.numel() == BC * height * width,
              "transmittance and last_ids must be [B, C, H, W] (rasterize_fwd's outputs)");
  at::Tensor v_means2d = at::zeros_like(means2d), v_conics = at::zeros_like(conics);
  at::Tensor v_colors = at::zeros_like(colors), v_opacities = at::zeros_like(opacities);
  at::Tensor v_depths = at::zeros_like(depths);
  at::Tensor v_backgrounds;
  if (backgrounds.has_value()) v_backgrounds = at::zeros_like(backgrounds.value());
  if (BC > 0 && width > 0 && height > 0) {
    const dim3 block(tile_size, tile_size);
    const dim3 grid(tile_w, tile_h, BC);
    const size_t shmem = (3 * sizeof(float4) + sizeof(int32_t)) * tile_size * tile_size;
    rasterize_bwd_kernel<<<grid, block, shmem, c10::cuda::getCurrentCUDAStream()>>>(
        C, N, BC, int(width), int(height), int(tile_size), int(tile_w), int(tile_h), flatten_ids.numel(),
        means2d.data_ptr<float>(), conics.data_ptr<float>(), colors.data_ptr<float>(), opacities.data_ptr<float>(),
        depths.data_ptr<float>(), backgrounds.has_value() ? backgrounds->data_ptr<float>() : nullptr,
        isect_offsets.data_ptr<int32_t>(), flatten_ids.data_ptr<int32_t>(), transmittance.data_ptr<float>(),
        last_ids.data_ptr<int32_t>(), v_render.data_ptr<float>(),
        v_render_depth.has_value() ? v_render_depth->data_ptr<float>() : nullptr,
        v_alpha.has_value() ? v_alpha->data_ptr<float>() : nullptr, v_means2d.data_ptr<float>(),
        v_conics.data_ptr<float>(), v_colors.data_ptr<float>(), v_opacities.data_ptr<float>(),
        v_depths.data_ptr<float>(), backgrounds.has_value() ? v_backgrounds.data_ptr<float>() : nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {v_means2d, v_conics, v_colors, v_opacities, v_depths, v_backgrounds};
}

}  // namespace orster4d
