// Tile intersection and the device radix sort of (camera | tile | depth).
//
// Two stable radix sorts give exactly the order of one sort of 64-bit
// (camera | tile | depth) keys, with far fewer key bits on the big list:
//   1. sort the B*C*N projected Gaussians by (camera | depth bits)   (32 + cam_bits bits);
//   2. emit one (camera | tile) key per intersected tile in that order and stable-sort
//      them with cam_bits + tile_bits bits (32-bit keys when they fit).
// Positive float depths order like their bit patterns; ties keep the Gaussian index
// order (both sorts are stable), as a single sort of (camera | tile | depth) would.
// The host synchronises once, to read the number of intersections (when B*C*N > 0; the entry
// point reads its finiteness flags after that synchronisation).
#include <c10/cuda/CUDAFunctions.h>
#include <cub/cub.cuh>

#include "orster4d/cuda_utils.cuh"
#include "orster4d/gaussian_math.h"

namespace orster4d {
namespace {

__global__ void depth_keys_kernel(int64_t total, int64_t N, const float* __restrict__ depths,
                                  const int32_t* __restrict__ radii, uint64_t* __restrict__ keys,
                                  int32_t* __restrict__ ids) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const uint64_t bc = uint64_t(i / N);
  const uint32_t dbits = radii[i] > 0 ? __float_as_uint(depths[i]) : 0xffffffffu;
  keys[i] = (bc << 32) | dbits;
  ids[i] = int32_t(i);
}

__global__ void count_tiles_kernel(int64_t total, int64_t CN, int64_t N, const int32_t* __restrict__ order,
                                   const float* __restrict__ means2d, const int32_t* __restrict__ radii,
                                   const float* __restrict__ conics, const float* __restrict__ opacities,
                                   int tile_size, int tile_w, int tile_h, int32_t* __restrict__ counts) {
  const int64_t s = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (s >= total) return;
  const GaussianTiles t = gaussian_tiles_at(order[s], CN, N, means2d, radii, conics, opacities, tile_size, tile_w, tile_h);
  counts[s] = (t.x1 - t.x0) * (t.y1 - t.y0);
}

// One (camera | tile) key per intersected tile, written cooperatively: the 32 lanes of a warp
// take the warp's 32 Gaussians in turn and write each one's run of keys together, so every
// store instruction writes consecutive addresses.
template <typename KeyT>
__global__ void emit_kernel(int64_t total, int64_t CN, int64_t N, const int32_t* __restrict__ order,
                            const float* __restrict__ means2d, const int32_t* __restrict__ radii,
                            const float* __restrict__ conics, const float* __restrict__ opacities, int tile_size,
                            int tile_w, int tile_h, int tile_bits, const int32_t* __restrict__ cum,
                            KeyT* __restrict__ keys, int32_t* __restrict__ ids) {
  const int64_t s = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int lane = threadIdx.x & 31;
  int32_t gid = 0, pos = 0, count = 0;
  GaussianTiles t = {0, 0, 0, 0};
  if (s < total) {
    gid = order[s];
    t = gaussian_tiles_at(gid, CN, N, means2d, radii, conics, opacities, tile_size, tile_w, tile_h);
    count = (t.x1 - t.x0) * (t.y1 - t.y0);
    pos = cum[s] - count;
  }
  for (int src = 0; src < 32; ++src) {
    const int c = __shfl_sync(0xffffffffu, count, src);
    if (c == 0) continue;
    const int32_t p0 = __shfl_sync(0xffffffffu, pos, src);
    const int32_t g = __shfl_sync(0xffffffffu, gid, src);
    const int x0 = __shfl_sync(0xffffffffu, t.x0, src);
    const int bw = __shfl_sync(0xffffffffu, t.x1, src) - x0;
    const int y0 = __shfl_sync(0xffffffffu, t.y0, src);
    const KeyT cam = KeyT(g / N);
    for (int k = lane; k < c; k += 32) {
      const int y = y0 + k / bw, x = x0 + k % bw;
      keys[p0 + k] = (cam << tile_bits) | KeyT(y * tile_w + x);
      ids[p0 + k] = g;
    }
  }
}

// offsets[cam * n_tiles + tile] = first index of that tile's run (empty runs point at the next run).
template <typename KeyT>
__global__ void offsets_kernel(int64_t n_isect, int64_t n_bins, int64_t n_tiles, int tile_bits,
                               const KeyT* __restrict__ keys, int32_t* __restrict__ offsets) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_isect) return;
  const KeyT mask = (KeyT(1) << tile_bits) - 1;
  const int64_t cur = int64_t(keys[i] >> tile_bits) * n_tiles + int64_t(keys[i] & mask);
  const int64_t prev = i == 0 ? -1 : int64_t(keys[i - 1] >> tile_bits) * n_tiles + int64_t(keys[i - 1] & mask);
  for (int64_t b = prev + 1; b <= cur; ++b) offsets[b] = int32_t(i);
  if (i == n_isect - 1)
    for (int64_t b = cur + 1; b < n_bins; ++b) offsets[b] = int32_t(n_isect);
}

template <typename KeyT>
at::Tensor sort_and_offsets(int64_t total, int64_t CN, int64_t N, int64_t n_isect, int64_t BC, int cam_bits,
                            int tile_bits, const at::Tensor& order, const at::Tensor& cum, const at::Tensor& means2d,
                            const at::Tensor& radii, const float* conics, const float* opacities, int tile_size,
                            int tile_w, int tile_h, at::Tensor& offsets) {
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  auto opt = means2d.options();
  const at::ScalarType kt = sizeof(KeyT) == 8 ? at::kLong : at::kInt;
  at::Tensor keys = at::empty({n_isect}, opt.dtype(kt));
  at::Tensor ids = at::empty({n_isect}, opt.dtype(at::kInt));
  emit_kernel<KeyT><<<blocks_for(total), kThreads1D, 0, stream>>>(
      total, CN, N, order.data_ptr<int32_t>(), means2d.data_ptr<float>(), radii.data_ptr<int32_t>(), conics,
      opacities, tile_size, tile_w, tile_h, tile_bits, cum.data_ptr<int32_t>(),
      reinterpret_cast<KeyT*>(keys.data_ptr()), ids.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::Tensor keys_sorted = at::empty_like(keys), ids_sorted = at::empty_like(ids);
  const int end_bit = max(1, cam_bits + tile_bits);
  size_t temp_bytes = 0;
  cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, reinterpret_cast<KeyT*>(keys.data_ptr()),
                                  reinterpret_cast<KeyT*>(keys_sorted.data_ptr()), ids.data_ptr<int32_t>(),
                                  ids_sorted.data_ptr<int32_t>(), int(n_isect), 0, end_bit, stream);
  at::Tensor temp = at::empty({int64_t(temp_bytes)}, opt.dtype(at::kByte));
  cub::DeviceRadixSort::SortPairs(temp.data_ptr(), temp_bytes, reinterpret_cast<KeyT*>(keys.data_ptr()),
                                  reinterpret_cast<KeyT*>(keys_sorted.data_ptr()), ids.data_ptr<int32_t>(),
                                  ids_sorted.data_ptr<int32_t>(), int(n_isect), 0, end_bit, stream);
  keys = at::Tensor();
  ids = at::Tensor();
  temp = at::Tensor();
  const int64_t n_tiles = int64_t(tile_w) * tile_h;
  offsets_kernel<KeyT><<<blocks_for(n_isect), kThreads1D, 0, stream>>>(
      n_isect, BC * n_tiles, n_tiles, tile_bits, reinterpret_cast<KeyT*>(keys_sorted.data_ptr()),
      offsets.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return ids_sorted;
}

}  // namespace

std::vector<at::Tensor> intersect_tiles_cuda(const at::Tensor& means2d, const at::Tensor& radii,
                                             const at::Tensor& depths, int64_t tile_size, int64_t tile_w,
                                             int64_t tile_h, const c10::optional<at::Tensor>& conics,
                                             const c10::optional<at::Tensor>& opacities) {
  ORSTER4D_CHECK_INPUT_F32(means2d);
  ORSTER4D_CHECK_INPUT_I32(radii);
  ORSTER4D_CHECK_INPUT_F32(depths);
  TORCH_CHECK(radii.dim() == 3, "radii must be [B, C, N]");
  TORCH_CHECK(tile_size > 0 && tile_w > 0 && tile_h > 0, "tile_size, tile_w, tile_h must be > 0");
  const bool tight = conics.has_value() && opacities.has_value();
  if (tight) {
    ORSTER4D_CHECK_INPUT_F32(conics.value());
    ORSTER4D_CHECK_INPUT_F32(opacities.value());
  }
  const c10::cuda::CUDAGuard guard(means2d.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t B = radii.size(0), C = radii.size(1), N = radii.size(2);
  const int64_t BC = B * C, total = BC * N, CN = C * N;
  const int64_t n_tiles = tile_w * tile_h;
  auto opt = means2d.options();
  at::Tensor offsets = at::empty({BC, tile_h, tile_w}, opt.dtype(at::kInt));
  if (total == 0) {
    offsets.zero_();
    return {offsets, at::empty({0}, opt.dtype(at::kInt))};
  }
  TORCH_CHECK(total < (int64_t(1) << 31), "too many projected Gaussians (B*C*N = ", total, ")");
  const float* conics_p = tight ? conics->data_ptr<float>() : nullptr;
  const float* opac_p = tight ? opacities->data_ptr<float>() : nullptr;
  const int cam_bits = bits_for(BC), tile_bits = bits_for(n_tiles);
  TORCH_CHECK(cam_bits + tile_bits <= 64, "too many cameras x tiles for 64-bit keys");

  // 1. order the projected Gaussians by (camera | depth)
  at::Tensor dkeys = at::empty({total}, opt.dtype(at::kLong)), dkeys_sorted = at::empty_like(dkeys);
  at::Tensor ids = at::empty({total}, opt.dtype(at::kInt)), order = at::empty_like(ids);
  depth_keys_kernel<<<blocks_for(total), kThreads1D, 0, stream>>>(
      total, N, depths.data_ptr<float>(), radii.data_ptr<int32_t>(),
      reinterpret_cast<uint64_t*>(dkeys.data_ptr()), ids.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  {
    size_t temp_bytes = 0;
    cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, reinterpret_cast<uint64_t*>(dkeys.data_ptr()),
                                    reinterpret_cast<uint64_t*>(dkeys_sorted.data_ptr()), ids.data_ptr<int32_t>(),
                                    order.data_ptr<int32_t>(), int(total), 0, 32 + cam_bits, stream);
    at::Tensor temp = at::empty({int64_t(temp_bytes)}, opt.dtype(at::kByte));
    cub::DeviceRadixSort::SortPairs(temp.data_ptr(), temp_bytes, reinterpret_cast<uint64_t*>(dkeys.data_ptr()),
                                    reinterpret_cast<uint64_t*>(dkeys_sorted.data_ptr()), ids.data_ptr<int32_t>(),
                                    order.data_ptr<int32_t>(), int(total), 0, 32 + cam_bits, stream);
  }
  dkeys = at::Tensor();
  dkeys_sorted = at::Tensor();
  ids = at::Tensor();

  // 2. tiles per Gaussian (in that order), inclusive scan, one sync for the total
  at::Tensor counts = at::empty({total}, opt.dtype(at::kInt)), cum = at::empty_like(counts);
  count_tiles_kernel<<<blocks_for(total), kThreads1D, 0, stream>>>(
      total, CN, N, order.data_ptr<int32_t>(), means2d.data_ptr<float>(), radii.data_ptr<int32_t>(), conics_p,
      opac_p, int(tile_size), int(tile_w), int(tile_h), counts.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  {
    size_t temp_bytes = 0;
    cub::DeviceScan::InclusiveSum(nullptr, temp_bytes, counts.data_ptr<int32_t>(), cum.data_ptr<int32_t>(),
                                  int(total), stream);
    at::Tensor temp = at::empty({int64_t(temp_bytes)}, opt.dtype(at::kByte));
    cub::DeviceScan::InclusiveSum(temp.data_ptr(), temp_bytes, counts.data_ptr<int32_t>(), cum.data_ptr<int32_t>(),
                                  int(total), stream);
  }
  counts = at::Tensor();
  int32_t last = 0;  // the stream's one synchronisation (the caller's finiteness flags rely on it)
  c10::cuda::memcpy_and_sync(&last, cum.data_ptr<int32_t>() + (total - 1), sizeof(last), cudaMemcpyDeviceToHost,
                             stream);
  const int64_t n_isect = last;
  if (n_isect == 0) {
    offsets.zero_();
    return {offsets, at::empty({0}, opt.dtype(at::kInt))};
  }

  // 3. emit (camera | tile) keys in depth order, stable radix sort, run starts
  at::Tensor flatten_ids;
  if (cam_bits + tile_bits <= 32) {
    flatten_ids = sort_and_offsets<uint32_t>(total, CN, N, n_isect, BC, cam_bits, tile_bits, order, cum, means2d,
                                             radii, conics_p, opac_p, int(tile_size), int(tile_w), int(tile_h),
                                             offsets);
  } else {
    flatten_ids = sort_and_offsets<uint64_t>(total, CN, N, n_isect, BC, cam_bits, tile_bits, order, cum, means2d,
                                             radii, conics_p, opac_p, int(tile_size), int(tile_w), int(tile_h),
                                             offsets);
  }
  return {offsets, flatten_ids};
}

}  // namespace orster4d
