// Tile rasterization, forward: one thread block per (camera, tile), one thread per pixel.
// The block walks its tile's depth-sorted run in batches of block-size splats staged in
// shared memory and composites front to back until every pixel is saturated.
#include "orster4d/composite_math.h"
#include "orster4d/cuda_utils.cuh"

namespace orster4d {
namespace {

__global__ void rasterize_fwd_kernel(int64_t C, int64_t N, int64_t BC, int width, int height, int tile_size,
                                     int tile_w, int tile_h, int64_t n_isect, const float* __restrict__ means2d,
                                     const float* __restrict__ conics, const float* __restrict__ colors,
                                     const float* __restrict__ opacities, const float* __restrict__ depths,
                                     const float* __restrict__ backgrounds, const int32_t* __restrict__ offsets,
                                     const int32_t* __restrict__ flatten_ids, float* __restrict__ render,
                                     float* __restrict__ render_depth, int32_t* __restrict__ last_ids,
                                     float* __restrict__ transmittance) {
  extern __shared__ float4 smem[];
  const int bsize = blockDim.x * blockDim.y;
  float4* s_geo = smem;              // x, y, opacity, depth
  float4* s_col = smem + bsize;      // conic a, b, c ; unused
  float4* s_rgb = smem + 2 * bsize;  // r, g, b ; unused

  const int64_t bc = blockIdx.z;
  const int tile_id = blockIdx.y * tile_w + blockIdx.x;
  const int i = blockIdx.y * tile_size + threadIdx.y, j = blockIdx.x * tile_size + threadIdx.x;
  const int tr = threadIdx.y * blockDim.x + threadIdx.x;
  const bool inside = i < height && j < width;
  const float px = float(j) + 0.5f, py = float(i) + 0.5f;

  const IsectRun run = bin_isect_run(offsets, bc * int64_t(tile_w) * tile_h + tile_id, BC * int64_t(tile_w) * tile_h,
                                     n_isect);
  const int32_t range_start = run.begin, range_end = run.end;
  const int n_batches = (range_end - range_start + bsize - 1) / bsize;

  float T = 1.f, r = 0.f, g = 0.f, b = 0.f, d = 0.f;
  int32_t cur_idx = -1;
  bool done = !inside;
  for (int batch = 0; batch < n_batches; ++batch) {
    if (__syncthreads_count(done) >= bsize) break;
    const int32_t idx = range_start + batch * bsize + tr;
    if (idx < range_end) {
      const int32_t gid = flatten_ids[idx];
      const int64_t gb = gid / (C * N), gn = gid % N;
      s_geo[tr] = make_float4(means2d[2 * gid], means2d[2 * gid + 1], opacities[gb * N + gn], depths[gid]);
      s_col[tr] = make_float4(conics[3 * gid], conics[3 * gid + 1], conics[3 * gid + 2], 0.f);
      s_rgb[tr] = make_float4(colors[3 * gid], colors[3 * gid + 1], colors[3 * gid + 2], 0.f);
    }
    __syncthreads();
    const int batch_start = range_start + batch * bsize;
    const int n = min(bsize, range_end - batch_start);
    for (int t = 0; t < n && !done; ++t) {
      const float4 geo = s_geo[t];
      const float4 cc = s_col[t];
      const float sigma = gaussian_sigma(Sym2<float>{cc.x, cc.y, cc.z}, geo.x - px, geo.y - py);
      const float alpha = gaussian_alpha(geo.z, sigma);
      if (!splat_contributes(sigma, alpha)) continue;
      const float next_T = T * (1.f - alpha);
      if (next_T <= kTransmittanceMin) {
        done = true;
        break;
      }
      const float w = alpha * T;
      const float4 rgb = s_rgb[t];
      r += rgb.x * w;
      g += rgb.y * w;
      b += rgb.z * w;
      d += geo.w * w;
      cur_idx = batch_start + t;
      T = next_T;
    }
  }
  if (!inside) return;
  const int64_t pix = (bc * height + i) * int64_t(width) + j;
  float bgr = 0.f, bgg = 0.f, bgb = 0.f;
  if (backgrounds != nullptr) {
    bgr = backgrounds[3 * bc];
    bgg = backgrounds[3 * bc + 1];
    bgb = backgrounds[3 * bc + 2];
  }
  render[3 * pix] = r + T * bgr;
  render[3 * pix + 1] = g + T * bgg;
  render[3 * pix + 2] = b + T * bgb;
  render_depth[pix] = d;
  transmittance[pix] = T;  // alpha = 1 - T is formed by the caller; T itself keeps its digits when small
  last_ids[pix] = cur_idx;
}

}  // namespace

std::vector<at::Tensor> rasterize_fwd_cuda(const at::Tensor& means2d, const at::Tensor& conics,
                                           const at::Tensor& colors, const at::Tensor& opacities,
                                           const at::Tensor& depths, const c10::optional<at::Tensor>& backgrounds,
                                           int64_t width, int64_t height, int64_t tile_size,
                                           const at::Tensor& isect_offsets, const at::Tensor& flatten_ids) {
  ORSTER4D_CHECK_INPUT_F32(means2d);
  ORSTER4D_CHECK_INPUT_F32(conics);
  ORSTER4D_CHECK_INPUT_F32(colors);
  ORSTER4D_CHECK_INPUT_F32(opacities);
  ORSTER4D_CHECK_INPUT_F32(depths);
  ORSTER4D_CHECK_INPUT_I32(isect_offsets);
  ORSTER4D_CHECK_INPUT_I32(flatten_ids);
  if (backgrounds.has_value()) { ORSTER4D_CHECK_INPUT_F32(backgrounds.value()); }
  TORCH_CHECK(colors.dim() == 4 && colors.size(3) == 3, "colors must be [B, C, N, 3]");
  TORCH_CHECK(tile_size > 0 && tile_size * tile_size <= 1024, "tile_size must be in 1..32");
  const c10::cuda::CUDAGuard guard(means2d.device());
  const int64_t B = colors.size(0), C = colors.size(1), N = colors.size(2), BC = B * C;
  const int64_t tile_h = isect_offsets.size(1), tile_w = isect_offsets.size(2);
  auto opt = means2d.options();
  at::Tensor render = at::empty({B, C, height, width, 3}, opt);
  at::Tensor render_depth = at::empty({B, C, height, width, 1}, opt);
  at::Tensor last_ids = at::empty({B, C, height, width}, opt.dtype(at::kInt));
  at::Tensor transmittance = at::empty({B, C, height, width}, opt);
  if (BC == 0 || width == 0 || height == 0) return {render, render_depth, last_ids, transmittance};
  const dim3 block(tile_size, tile_size);
  const dim3 grid(tile_w, tile_h, BC);
  const size_t shmem = 3 * sizeof(float4) * tile_size * tile_size;
  rasterize_fwd_kernel<<<grid, block, shmem, c10::cuda::getCurrentCUDAStream()>>>(
      C, N, BC, int(width), int(height), int(tile_size), int(tile_w), int(tile_h), flatten_ids.numel(),
      means2d.data_ptr<float>(), conics.data_ptr<float>(), colors.data_ptr<float>(), opacities.data_ptr<float>(),
      depths.data_ptr<float>(), backgrounds.has_value() ? backgrounds->data_ptr<float>() : nullptr,
      isect_offsets.data_ptr<int32_t>(), flatten_ids.data_ptr<int32_t>(), render.data_ptr<float>(),
      render_depth.data_ptr<float>(), last_ids.data_ptr<int32_t>(), transmittance.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {render, render_depth, last_ids, transmittance};
}

}  // namespace orster4d
