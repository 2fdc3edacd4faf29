// Registers the CUDA rasterizer kernels with the PyTorch dispatcher under the ops that the CPU
// module defines (schemas: orster4d/op_schemas.h; contract: csrc/rasterize/README.md).
#include <torch/library.h>

#include <optional>
#include <vector>

#include "orster4d/op_adapters.h"

namespace orster4d {
at::Tensor nonfinite_flags_cuda(at::TensorList);
std::vector<at::Tensor> project_fwd_cuda(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                         const at::Tensor&, int64_t, int64_t, double, double, double);
std::vector<at::Tensor> project_bwd_cuda(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                         const at::Tensor&, int64_t, int64_t, double, const at::Tensor&,
                                         const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&);
at::Tensor sh_fwd_cuda(int64_t, const at::Tensor&, const at::Tensor&, const c10::optional<at::Tensor>&);
std::vector<at::Tensor> sh_bwd_cuda(int64_t, const at::Tensor&, const at::Tensor&, const c10::optional<at::Tensor>&,
                                    const at::Tensor&);
std::vector<at::Tensor> intersect_tiles_cuda(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t,
                                             int64_t, const c10::optional<at::Tensor>&,
                                             const c10::optional<at::Tensor>&);
std::vector<at::Tensor> rasterize_fwd_cuda(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                           const at::Tensor&, const c10::optional<at::Tensor>&, int64_t, int64_t,
                                           int64_t, const at::Tensor&, const at::Tensor&);
std::vector<at::Tensor> rasterize_bwd_cuda(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                           const at::Tensor&, const c10::optional<at::Tensor>&, int64_t, int64_t,
                                           int64_t, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                           const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                           const c10::optional<at::Tensor>&, const c10::optional<at::Tensor>&);

namespace {

// v_backgrounds is an empty [0] tensor when there are no backgrounds.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> rasterize_bwd(
    const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors, const at::Tensor& opacities,
    const at::Tensor& depths, const std::optional<at::Tensor>& backgrounds, int64_t width, int64_t height,
    int64_t tile_size, const at::Tensor& isect_offsets, const at::Tensor& flatten_ids, const at::Tensor& render,
    const at::Tensor& render_depth, const at::Tensor& transmittance, const at::Tensor& last_ids,
    const at::Tensor& v_render,
    const std::optional<at::Tensor>& v_render_depth, const std::optional<at::Tensor>& v_alpha) {
  auto r = rasterize_bwd_cuda(means2d, conics, colors, opacities, depths, backgrounds, width, height, tile_size,
                              isect_offsets, flatten_ids, render, render_depth, transmittance, last_ids, v_render,
                              v_render_depth, v_alpha);
  return {r[0], r[1], r[2], r[3], r[4], like_or_empty(r[5], means2d)};
}

}  // namespace
}  // namespace orster4d

TORCH_LIBRARY_IMPL(orster4d, CUDA, m) {
  using orster4d::Tupled;
  m.impl("nonfinite_flags", &orster4d::nonfinite_flags_cuda);
  m.impl("project_fwd", &Tupled<&orster4d::project_fwd_cuda, 4>::call);
  m.impl("project_bwd", &Tupled<&orster4d::project_bwd_cuda, 3>::call);
  m.impl("sh_fwd", &orster4d::sh_fwd_cuda);
  m.impl("sh_bwd", &Tupled<&orster4d::sh_bwd_cuda, 2>::call);
  m.impl("intersect_tiles", &Tupled<&orster4d::intersect_tiles_cuda, 2>::call);
  m.impl("rasterize_fwd", &Tupled<&orster4d::rasterize_fwd_cuda, 4>::call);
  m.impl("rasterize_bwd", &orster4d::rasterize_bwd);
}
