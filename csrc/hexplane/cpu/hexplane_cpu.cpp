// Fused HexPlane sampling, C++ CPU backend (OpenMP over points); registered in register.cpp.
//
// Same math as the CUDA backend through orster4d/hexplane_math.h. Inputs are validated
// in Python (orster4d/hexplane); the checks here only guard memory safety.
#include <torch/types.h>

#ifdef _OPENMP
#include <omp.h>
#else  // built without OpenMP: one thread
inline int omp_get_max_threads() { return 1; }
inline int omp_get_num_threads() { return 1; }
inline int omp_get_thread_num() { return 0; }
#endif

#include <optional>
#include <vector>

#include "orster4d/hexplane_math.h"

namespace ohp = orster4d::hexplane;

namespace {

void check_common(const torch::Tensor& points, const torch::Tensor& packed, const std::vector<int64_t>& meta) {
  TORCH_CHECK(points.device().is_cpu() && packed.device().is_cpu(), "hexplane cpu: tensors must be on the CPU");
  TORCH_CHECK(points.dim() == 2 && points.size(1) == 4, "hexplane cpu: points must be [N, 4]");
  TORCH_CHECK(packed.dim() == 2, "hexplane cpu: packed planes must be [rows, C]");
  TORCH_CHECK(points.is_contiguous() && packed.is_contiguous(), "hexplane cpu: tensors must be contiguous");
  TORCH_CHECK(points.scalar_type() == packed.scalar_type(), "hexplane cpu: dtype mismatch");
  TORCH_CHECK(meta.size() % ohp::kMetaPerLevel == 0, "hexplane cpu: bad layout metadata");
  const int64_t levels = static_cast<int64_t>(meta.size()) / ohp::kMetaPerLevel;
  TORCH_CHECK(levels >= 1 && levels <= ohp::kMaxLevels, "hexplane cpu: 1 to 8 levels supported");
}

template <typename T>
void forward_impl(const T* pts, const T* planes, T* out, int64_t n_points, const ohp::Layout& lay) {
  const int C = lay.channels, L = lay.levels;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < n_points; ++n) {
    const T* u = pts + n * 4;
    for (int l = 0; l < L; ++l) {
      const ohp::LevelDesc& d = lay.level[l];
      T* o = out + (n * L + l) * C;
      for (int c = 0; c < C; ++c) o[c] = T(1);
      for (int p = 0; p < ohp::kNumPlanes; ++p) {
        const ohp::PlaneCell<T> cell = ohp::plane_cell<T>(d, p, u);
        const auto& w = cell.w;
        const auto& r = cell.r;
        const T* v00 = planes + r.r00 * C;
        const T* v10 = planes + r.r10 * C;
        const T* v01 = planes + r.r01 * C;
        const T* v11 = planes + r.r11 * C;
        for (int c = 0; c < C; ++c) o[c] *= ohp::bilinear<T>(w, v00[c], v10[c], v01[c], v11[c]);
      }
    }
  }
}

// Adds v to *p: plainly into a buffer only this thread writes, atomically into a shared one.
template <typename T, bool kAtomic>
inline void accumulate(T* p, T v) {
  if constexpr (kAtomic) {
#pragma omp atomic
    *p += v;
  } else {
    *p += v;
  }
}

// Gradients of one point: its plane gradients added into dst (kAtomic: shared between threads),
// its coordinate gradient written to gpts. val / others / suffix are the thread's scratch ([6 C], [C], [C]).
template <typename T, bool kAtomic>
void backward_point(int64_t n, const T* gout, const T* pts, const T* planes, T* gpts, T* dst,
                    const ohp::Layout& lay, T* val, T* others, T* suffix) {
  const int C = lay.channels, L = lay.levels;
  const T* u = pts + n * 4;
  T gp[4] = {T(0), T(0), T(0), T(0)};
  for (int l = 0; l < L; ++l) {
    const ohp::LevelDesc& d = lay.level[l];
    const T* g = gout + (n * L + l) * C;
    ohp::PlaneCell<T> cells[ohp::kNumPlanes];
    for (int p = 0; p < ohp::kNumPlanes; ++p) {
      cells[p] = ohp::plane_cell<T>(d, p, u);
      const auto& w = cells[p].w;
      const auto& r = cells[p].r;
      for (int c = 0; c < C; ++c)
        val[p * C + c] = ohp::bilinear<T>(w, planes[r.r00 * C + c], planes[r.r10 * C + c],
                                          planes[r.r01 * C + c], planes[r.r11 * C + c]);
    }
    // others_p = prod_{q < p} val_q * prod_{q > p} val_q (prefix/suffix: no division).
    for (int c = 0; c < C; ++c) suffix[c] = T(1);
    for (int p = ohp::kNumPlanes - 1; p >= 0; --p) {
      for (int c = 0; c < C; ++c) {
        T pre = T(1);
        for (int q = 0; q < p; ++q) pre *= val[q * C + c];
        others[c] = pre * suffix[c];
      }
      const int a = ohp::plane_axis_w(p), b = ohp::plane_axis_h(p);
      const auto& sx = cells[p].sx;
      const auto& sy = cells[p].sy;
      const auto& w = cells[p].w;
      const auto& r = cells[p].r;
      T dx = T(0), dy = T(0);
      for (int c = 0; c < C; ++c) {
        const T gv = g[c] * others[c];
        if (dst) {
          accumulate<T, kAtomic>(dst + r.r00 * C + c, w.w00 * gv);
          accumulate<T, kAtomic>(dst + r.r10 * C + c, w.w10 * gv);
          accumulate<T, kAtomic>(dst + r.r01 * C + c, w.w01 * gv);
          accumulate<T, kAtomic>(dst + r.r11 * C + c, w.w11 * gv);
        }
        if (gpts) {
          const T v00 = planes[r.r00 * C + c], v10 = planes[r.r10 * C + c];
          const T v01 = planes[r.r01 * C + c], v11 = planes[r.r11 * C + c];
          dx += gv * ohp::bilinear_dx<T>(sy.frac, v00, v10, v01, v11);
          dy += gv * ohp::bilinear_dy<T>(sx.frac, v00, v10, v01, v11);
        }
        suffix[c] *= val[p * C + c];
      }
      gp[a] += dx * sx.dpos;
      gp[b] += dy * sy.dpos;
    }
  }
  if (gpts) {
    for (int i = 0; i < 4; ++i) gpts[n * 4 + i] = gp[i];
  }
}

// Plane gradients go, per thread, into a private buffer when that pays (more than one thread, the
// points' corner updates outnumber the buffer's entries, and all buffers fit in kPrivateBytes);
// the buffers are then summed into gplanes in a fixed order, so the result does not depend on how
// the points were scheduled. Otherwise (one thread: plain adds; or too little work / too much
// memory) every thread adds into gplanes directly, atomically when there are several.
constexpr int64_t kPrivateBytes = int64_t(256) << 20;

template <typename T>
void backward_impl(const T* gout, const T* pts, const T* planes, T* gpts, T* gplanes, int64_t n_points,
                   int64_t rows, const ohp::Layout& lay) {
  const int C = lay.channels, L = lay.levels;
  const int threads = omp_get_max_threads();
  const int64_t size = rows * C;
  const bool priv = gplanes != nullptr && threads > 1 && n_points * L * ohp::kNumPlanes * 4 > 2 * rows &&
                    size * threads * static_cast<int64_t>(sizeof(T)) <= kPrivateBytes;
  std::vector<T> buffers(priv ? static_cast<size_t>(size) * threads : 0, T(0));
  int used = 1;
#pragma omp parallel
  {
    std::vector<T> val(static_cast<size_t>(ohp::kNumPlanes) * C), others(C), suffix(C);
    const int tid = omp_get_thread_num();
#pragma omp single
    used = omp_get_num_threads();
    if (priv) {
      T* dst = buffers.data() + static_cast<int64_t>(tid) * size;
#pragma omp for schedule(static)
      for (int64_t n = 0; n < n_points; ++n)
        backward_point<T, false>(n, gout, pts, planes, gpts, dst, lay, val.data(), others.data(), suffix.data());
    } else if (omp_get_num_threads() == 1) {
      for (int64_t n = 0; n < n_points; ++n)
        backward_point<T, false>(n, gout, pts, planes, gpts, gplanes, lay, val.data(), others.data(), suffix.data());
    } else {
#pragma omp for schedule(static)
      for (int64_t n = 0; n < n_points; ++n)
        backward_point<T, true>(n, gout, pts, planes, gpts, gplanes, lay, val.data(), others.data(), suffix.data());
    }
  }
  if (priv) {
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < size; ++j) {
      T acc = T(0);
      for (int t = 0; t < used; ++t) acc += buffers[static_cast<size_t>(t) * size + j];
      gplanes[j] = acc;
    }
  }
}

}  // namespace

// Entry points (registered with the dispatcher in register.cpp).
torch::Tensor hexplane_forward_cpu(torch::Tensor points, torch::Tensor packed, std::vector<int64_t> meta,
                               std::optional<torch::Tensor> out_opt) {
  check_common(points, packed, meta);
  const int levels = static_cast<int>(meta.size() / ohp::kMetaPerLevel);
  const int channels = static_cast<int>(packed.size(1));
  const ohp::Layout lay = ohp::layout_from_meta(meta.data(), levels, channels);
  torch::Tensor out;
  if (out_opt.has_value()) {
    out = *out_opt;
    TORCH_CHECK(out.is_contiguous() && out.device() == packed.device() && out.scalar_type() == packed.scalar_type() &&
                    out.dim() == 2 && out.size(0) == points.size(0) &&
                    out.size(1) == static_cast<int64_t>(channels) * levels,
                "hexplane cpu: out must be a contiguous [N, C*L] tensor like the planes");
  } else {
    out = torch::empty({points.size(0), static_cast<int64_t>(channels) * levels}, packed.options());
  }
  AT_DISPATCH_FLOATING_TYPES(packed.scalar_type(), "hexplane_forward_cpu", [&] {
    forward_impl<scalar_t>(points.data_ptr<scalar_t>(), packed.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                           points.size(0), lay);
  });
  return out;
}

std::vector<torch::Tensor> hexplane_backward_cpu(torch::Tensor grad_out, torch::Tensor points, torch::Tensor packed,
                                             std::vector<int64_t> meta, bool need_points, bool need_planes) {
  check_common(points, packed, meta);
  const int levels = static_cast<int>(meta.size() / ohp::kMetaPerLevel);
  const int channels = static_cast<int>(packed.size(1));
  TORCH_CHECK(grad_out.is_contiguous() && grad_out.scalar_type() == packed.scalar_type() &&
                  grad_out.dim() == 2 && grad_out.size(0) == points.size(0) &&
                  grad_out.size(1) == static_cast<int64_t>(channels) * levels,
              "hexplane cpu: grad_out must be a contiguous [N, C*L] tensor of the planes' dtype");
  const ohp::Layout lay = ohp::layout_from_meta(meta.data(), levels, channels);
  torch::Tensor gpts = need_points ? torch::empty_like(points) : torch::Tensor();
  torch::Tensor gplanes = need_planes ? torch::zeros_like(packed) : torch::Tensor();
  AT_DISPATCH_FLOATING_TYPES(packed.scalar_type(), "hexplane_backward_cpu", [&] {
    backward_impl<scalar_t>(grad_out.data_ptr<scalar_t>(), points.data_ptr<scalar_t>(), packed.data_ptr<scalar_t>(),
                            need_points ? gpts.data_ptr<scalar_t>() : nullptr,
                            need_planes ? gplanes.data_ptr<scalar_t>() : nullptr, points.size(0), packed.size(0),
                            lay);
  });
  return {gpts, gplanes};
}

