// Fused HexPlane sampling, CUDA backend.
//
// Thread mapping: one thread per (point n, level l, run of V channels k). Thread ids are
// ordered (n, l, k) with k fastest, so the threads of one warp write a contiguous stretch
// of the [N, C*L] output, and each reads whole V-vectors of the channel-last planes
// (float4 for float32, double2 for float64 when C allows it).
//
// Forward: six bilinear lookups, Hadamard product, one vector store.
// Backward: recompute the six lookups while carrying the point gradient in forward mode
// (running product and its derivatives along x, y, z, t); then for each plane p the
// product of the other five planes (prefix/suffix products, no division) scales the
// plane gradient, scattered with vector atomics (sm_90 float4/float2 atomicAdd, scalar
// elsewhere). Point gradients are reduced over the channel runs of a (point, level)
// with warp shuffles and added with one atomic per coordinate and level.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include <optional>
#include <type_traits>
#include <vector>

#include "orster4d/hexplane_math.h"

namespace ohp = orster4d::hexplane;

namespace {

template <typename T, int V>
__device__ __forceinline__ void load_vec(const T* __restrict__ p, T (&out)[V]) {
  if constexpr (std::is_same<T, float>::value && V == 4) {
    const float4 q = __ldg(reinterpret_cast<const float4*>(p));
    out[0] = q.x; out[1] = q.y; out[2] = q.z; out[3] = q.w;
  } else if constexpr (std::is_same<T, float>::value && V == 2) {
    const float2 q = __ldg(reinterpret_cast<const float2*>(p));
    out[0] = q.x; out[1] = q.y;
  } else if constexpr (std::is_same<T, double>::value && V == 2) {
    const double2 q = __ldg(reinterpret_cast<const double2*>(p));
    out[0] = q.x; out[1] = q.y;
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) out[i] = __ldg(p + i);
  }
}

template <typename T, int V>
__device__ __forceinline__ void store_vec(T* p, const T (&v)[V]) {
  if constexpr (std::is_same<T, float>::value && V == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else if constexpr (std::is_same<T, float>::value && V == 2) {
    *reinterpret_cast<float2*>(p) = make_float2(v[0], v[1]);
  } else if constexpr (std::is_same<T, double>::value && V == 2) {
    *reinterpret_cast<double2*>(p) = make_double2(v[0], v[1]);
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) p[i] = v[i];
  }
}

template <typename T, int V>
__device__ __forceinline__ void atomic_add_vec(T* p, T w, const T (&g)[V]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if constexpr (std::is_same<T, float>::value && V == 4) {
    atomicAdd(reinterpret_cast<float4*>(p), make_float4(w * g[0], w * g[1], w * g[2], w * g[3]));
    return;
  } else if constexpr (std::is_same<T, float>::value && V == 2) {
    atomicAdd(reinterpret_cast<float2*>(p), make_float2(w * g[0], w * g[1]));
    return;
  }
#endif
#pragma unroll
  for (int i = 0; i < V; ++i) atomicAdd(p + i, w * g[i]);
}

struct ThreadIdx {
  int64_t n;
  int l;
  int k;
};

__device__ __forceinline__ ThreadIdx split_tid(int64_t tid, int L, int G) {
  ThreadIdx t;
  t.k = static_cast<int>(tid % G);
  const int64_t nl = tid / G;
  t.l = static_cast<int>(nl % L);
  t.n = nl / L;
  return t;
}

// Channels [col, col + V) of the four corners of a cell.
template <typename T, int V>
__device__ __forceinline__ void load_corners(const T* __restrict__ planes, int C, int col, const ohp::CornerRows& r,
                                             T (&v00)[V], T (&v10)[V], T (&v01)[V], T (&v11)[V]) {
  load_vec<T, V>(planes + r.r00 * C + col, v00);
  load_vec<T, V>(planes + r.r10 * C + col, v10);
  load_vec<T, V>(planes + r.r01 * C + col, v01);
  load_vec<T, V>(planes + r.r11 * C + col, v11);
}

template <typename T, int V>
__global__ void __launch_bounds__(256) hexplane_forward_kernel(const T* __restrict__ pts, const T* __restrict__ planes,
                                                               T* __restrict__ out, int64_t n_points,
                                                               const __grid_constant__ ohp::Layout lay) {
  const int C = lay.channels, L = lay.levels, G = C / V;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (tid >= n_points * L * G) return;
  const ThreadIdx t = split_tid(tid, L, G);
  T u[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) u[i] = __ldg(pts + t.n * 4 + i);
  const ohp::LevelDesc& d = lay.level[t.l];
  const int col = t.k * V;
  T acc[V];
#pragma unroll
  for (int i = 0; i < V; ++i) acc[i] = T(1);
#pragma unroll
  for (int p = 0; p < ohp::kNumPlanes; ++p) {
    const ohp::PlaneCell<T> cell = ohp::plane_cell<T>(d, p, u);
    T v00[V], v10[V], v01[V], v11[V];
    load_corners<T, V>(planes, C, col, cell.r, v00, v10, v01, v11);
    T val[V];
#pragma unroll
    for (int i = 0; i < V; ++i) val[i] = ohp::bilinear<T>(cell.w, v00[i], v10[i], v01[i], v11[i]);
#pragma unroll
    for (int i = 0; i < V; ++i) acc[i] *= val[i];
  }
  store_vec<T, V>(out + tid * V, acc);  // tid * V == n * C * L + l * C + k * V
}

template <typename T, int V>
__global__ void __launch_bounds__(256, 2) hexplane_backward_kernel(const T* __restrict__ gout, const T* __restrict__ pts,
                                                                const T* __restrict__ planes, T* __restrict__ gpts,
                                                                T* __restrict__ gplanes, int64_t n_points,
                                                                const __grid_constant__ ohp::Layout lay, int shfl_width) {
  const int C = lay.channels, L = lay.levels, G = C / V;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool valid = tid < n_points * L * G;
  T gp[4] = {T(0), T(0), T(0), T(0)};
  ThreadIdx t{0, 0, 0};
  if (valid) {
    t = split_tid(tid, L, G);
    T u[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) u[i] = __ldg(pts + t.n * 4 + i);
    const ohp::LevelDesc& d = lay.level[t.l];
    const int col = t.k * V;
    // Pass 1: the six samples. The point gradient is carried in forward mode alongside:
    // P = prod_{q <= p} f_q and dP/du_axis for the four axes (product rule), so no plane
    // value has to be read twice.
    const bool want_pts = gpts != nullptr;
    T val[ohp::kNumPlanes][V];
    T prod[V], dprod[4][V];
#pragma unroll
    for (int i = 0; i < V; ++i) {
      prod[i] = T(1);
#pragma unroll
      for (int ax = 0; ax < 4; ++ax) dprod[ax][i] = T(0);
    }
#pragma unroll
    for (int p = 0; p < ohp::kNumPlanes; ++p) {
      const int a = ohp::plane_axis_w(p), b = ohp::plane_axis_h(p);
      const ohp::PlaneCell<T> cell = ohp::plane_cell<T>(d, p, u);
      T v00[V], v10[V], v01[V], v11[V];
      load_corners<T, V>(planes, C, col, cell.r, v00, v10, v01, v11);
#pragma unroll
      for (int i = 0; i < V; ++i) {
        const T f = ohp::bilinear<T>(cell.w, v00[i], v10[i], v01[i], v11[i]);
        val[p][i] = f;
        if (want_pts) {
          const T fa = ohp::bilinear_dx<T>(cell.sy.frac, v00[i], v10[i], v01[i], v11[i]) * cell.sx.dpos;
          const T fb = ohp::bilinear_dy<T>(cell.sx.frac, v00[i], v10[i], v01[i], v11[i]) * cell.sy.dpos;
#pragma unroll
          for (int ax = 0; ax < 4; ++ax) {
            if (ax == a) dprod[ax][i] = dprod[ax][i] * f + prod[i] * fa;
            else if (ax == b) dprod[ax][i] = dprod[ax][i] * f + prod[i] * fb;
            else dprod[ax][i] *= f;
          }
        }
        prod[i] *= f;
      }
    }
    T g[V];
    load_vec<T, V>(gout + tid * V, g);
    if (want_pts) {
#pragma unroll
      for (int ax = 0; ax < 4; ++ax) {
#pragma unroll
        for (int i = 0; i < V; ++i) gp[ax] += g[i] * dprod[ax][i];
      }
    }
    // Pass 2 (plane gradients): others_p = prefix_p * suffix_p (no division); the corner
    // rows and weights of plane p are recomputed from the coordinates (no memory reads).
    if (gplanes != nullptr) {
      T suffix[V];
#pragma unroll
      for (int i = 0; i < V; ++i) suffix[i] = T(1);
#pragma unroll
      for (int p = ohp::kNumPlanes - 1; p >= 0; --p) {
        T gv[V];
#pragma unroll
        for (int i = 0; i < V; ++i) {
          T pre = T(1);
#pragma unroll
          for (int q = 0; q < p; ++q) pre *= val[q][i];
          gv[i] = g[i] * pre * suffix[i];
          suffix[i] *= val[p][i];
        }
        const ohp::PlaneCell<T> cell = ohp::plane_cell<T>(d, p, u);
        atomic_add_vec<T, V>(gplanes + cell.r.r00 * C + col, cell.w.w00, gv);
        atomic_add_vec<T, V>(gplanes + cell.r.r10 * C + col, cell.w.w10, gv);
        atomic_add_vec<T, V>(gplanes + cell.r.r01 * C + col, cell.w.w01, gv);
        atomic_add_vec<T, V>(gplanes + cell.r.r11 * C + col, cell.w.w11, gv);
      }
    }
  }
  if (gpts == nullptr) return;
  if (shfl_width > 1) {
    // The G threads of one (point, level) are consecutive lanes of one warp (G divides 32).
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      for (int off = shfl_width / 2; off > 0; off >>= 1) gp[i] += __shfl_down_sync(0xffffffffu, gp[i], off, shfl_width);
    }
    if (valid && t.k == 0) {
#pragma unroll
      for (int i = 0; i < 4; ++i) atomicAdd(gpts + t.n * 4 + i, gp[i]);
    }
  } else if (valid) {
#pragma unroll
    for (int i = 0; i < 4; ++i) atomicAdd(gpts + t.n * 4 + i, gp[i]);
  }
}

void check_common(const torch::Tensor& points, const torch::Tensor& packed, const std::vector<int64_t>& meta) {
  TORCH_CHECK(points.is_cuda() && packed.is_cuda(), "hexplane cuda: tensors must be on a CUDA device");
  TORCH_CHECK(points.device() == packed.device(), "hexplane cuda: tensors must be on the same device");
  TORCH_CHECK(points.dim() == 2 && points.size(1) == 4, "hexplane cuda: points must be [N, 4]");
  TORCH_CHECK(packed.dim() == 2, "hexplane cuda: packed planes must be [rows, C]");
  TORCH_CHECK(points.is_contiguous() && packed.is_contiguous(), "hexplane cuda: tensors must be contiguous");
  TORCH_CHECK(points.scalar_type() == packed.scalar_type(), "hexplane cuda: dtype mismatch");
  TORCH_CHECK(meta.size() % ohp::kMetaPerLevel == 0, "hexplane cuda: bad layout metadata");
  const int64_t levels = static_cast<int64_t>(meta.size()) / ohp::kMetaPerLevel;
  TORCH_CHECK(levels >= 1 && levels <= ohp::kMaxLevels, "hexplane cuda: 1 to 8 levels supported");
}

template <typename T>
int vec_width(int C) {
  constexpr int maxv = 16 / static_cast<int>(sizeof(T));
  for (int v = maxv; v > 1; v /= 2)
    if (C % v == 0) return v;
  return 1;
}

template <typename T, typename F>
void dispatch_vec(int v, F&& f) {
  if constexpr (std::is_same<T, float>::value) {
    if (v == 4) return f(std::integral_constant<int, 4>{});
  }
  if (v == 2) return f(std::integral_constant<int, 2>{});
  return f(std::integral_constant<int, 1>{});
}

constexpr int kThreads = 256;

}  // namespace

torch::Tensor hexplane_forward_cuda(torch::Tensor points, torch::Tensor packed, std::vector<int64_t> meta,
                                    std::optional<torch::Tensor> out_opt) {
  check_common(points, packed, meta);
  const c10::cuda::CUDAGuard guard(points.device());
  const int levels = static_cast<int>(meta.size() / ohp::kMetaPerLevel);
  const int C = static_cast<int>(packed.size(1));
  const ohp::Layout lay = ohp::layout_from_meta(meta.data(), levels, C);
  const int64_t N = points.size(0);
  torch::Tensor out;
  if (out_opt.has_value()) {
    out = *out_opt;
    TORCH_CHECK(out.is_contiguous() && out.device() == packed.device() && out.scalar_type() == packed.scalar_type() &&
                    out.dim() == 2 && out.size(0) == N && out.size(1) == static_cast<int64_t>(C) * levels,
                "hexplane cuda: out must be a contiguous [N, C*L] tensor like the planes");
  } else {
    out = torch::empty({N, static_cast<int64_t>(C) * levels}, packed.options());
  }
  if (N == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(packed.scalar_type(), "hexplane_forward_cuda", [&] {
    const int v = vec_width<scalar_t>(C);
    dispatch_vec<scalar_t>(v, [&](auto vc) {
      constexpr int V = decltype(vc)::value;
      const int64_t threads = N * levels * (C / V);
      const int64_t blocks = (threads + kThreads - 1) / kThreads;
      hexplane_forward_kernel<scalar_t, V><<<blocks, kThreads, 0, stream>>>(
          points.data_ptr<scalar_t>(), packed.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), N, lay);
    });
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::vector<torch::Tensor> hexplane_backward_cuda(torch::Tensor grad_out, torch::Tensor points, torch::Tensor packed,
                                                  std::vector<int64_t> meta, bool need_points, bool need_planes) {
  check_common(points, packed, meta);
  const c10::cuda::CUDAGuard guard(points.device());
  const int levels = static_cast<int>(meta.size() / ohp::kMetaPerLevel);
  const int C = static_cast<int>(packed.size(1));
  TORCH_CHECK(grad_out.is_cuda() && grad_out.is_contiguous() && grad_out.scalar_type() == packed.scalar_type() &&
                  grad_out.dim() == 2 && grad_out.size(0) == points.size(0) &&
                  grad_out.size(1) == static_cast<int64_t>(C) * levels,
              "hexplane cuda: grad_out must be a contiguous [N, C*L] CUDA tensor of the planes' dtype");
  const ohp::Layout lay = ohp::layout_from_meta(meta.data(), levels, C);
  const int64_t N = points.size(0);
  torch::Tensor gpts = need_points ? torch::zeros_like(points) : torch::Tensor();
  torch::Tensor gplanes = need_planes ? torch::zeros_like(packed) : torch::Tensor();
  if (N == 0 || (!need_points && !need_planes)) return {gpts, gplanes};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(packed.scalar_type(), "hexplane_backward_cuda", [&] {
    const int v = vec_width<scalar_t>(C);
    dispatch_vec<scalar_t>(v, [&](auto vc) {
      constexpr int V = decltype(vc)::value;
      const int G = C / V;
      const int shfl = (G <= 32 && (32 % G) == 0) ? G : 1;
      const int64_t threads = N * levels * G;
      const int64_t blocks = (threads + kThreads - 1) / kThreads;
      hexplane_backward_kernel<scalar_t, V><<<blocks, kThreads, 0, stream>>>(
          grad_out.data_ptr<scalar_t>(), points.data_ptr<scalar_t>(), packed.data_ptr<scalar_t>(),
          need_points ? gpts.data_ptr<scalar_t>() : nullptr, need_planes ? gplanes.data_ptr<scalar_t>() : nullptr, N,
          lay, shfl);
    });
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {gpts, gplanes};
}
