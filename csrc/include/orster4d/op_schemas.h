// The schemas of every orster4d:: operator: the one place where they are written down.
//
// Each kernel family's CPU module calls its define_*_ops() from a
// TORCH_LIBRARY_FRAGMENT(orster4d, m) block and registers its CPU kernels; the CUDA module
// of the family only registers CUDA kernels (TORCH_LIBRARY_IMPL(orster4d, CUDA, m)) under the
// same names. So every op is defined exactly once, however many modules are loaded, and the
// CPU module of a family must be loaded before its ops can be called (orster4d/build.py
// loads it first). FRAGMENT, not TORCH_LIBRARY: two families share the namespace.
//
// Shapes and units: csrc/rasterize/README.md (rasterizer) and docs/kernels.md (both).
// The differentiable ops' autograd kernels are C++ too (csrc/<family>/cpu/autograd.cpp); Python
// adds the fake (meta) kernels (orster4d/ops/rasterize/_ops.py, orster4d/ops/hexplane/_ops.py).
#pragma once

#include <torch/library.h>

namespace orster4d {

inline void define_rasterize_ops(torch::Library& m) {
  // flags[i] = 1 when tensors[i] holds NaN or +-inf, else 0: int32 [len(tensors)] in host memory.
  // On CUDA a kernel on the current stream writes them (pinned memory): read them only once that
  // stream has synchronised.
  m.def("nonfinite_flags(Tensor[] tensors) -> Tensor flags");
  m.def(
      "project_fwd(Tensor means, Tensor quats, Tensor scales, Tensor viewmats, Tensor Ks, int width, int height, "
      "float near, float far, float eps2d) -> (Tensor radii, Tensor means2d, Tensor depths, Tensor conics)");
  m.def(
      "project_bwd(Tensor means, Tensor quats, Tensor scales, Tensor viewmats, Tensor Ks, int width, int height, "
      "float eps2d, Tensor radii, Tensor conics, Tensor v_means2d, Tensor v_depths, Tensor v_conics) "
      "-> (Tensor v_means, Tensor v_quats, Tensor v_scales)");
  m.def("sh_fwd(int degree, Tensor dirs, Tensor coeffs, Tensor? radii=None) -> Tensor colors");
  m.def(
      "sh_bwd(int degree, Tensor dirs, Tensor coeffs, Tensor? radii, Tensor v_colors) "
      "-> (Tensor v_coeffs, Tensor v_dirs)");
  m.def(
      "intersect_tiles(Tensor means2d, Tensor radii, Tensor depths, int tile_size, int tile_w, int tile_h, "
      "Tensor? conics=None, Tensor? opacities=None) -> (Tensor isect_offsets, Tensor flatten_ids)");
  m.def(
      "rasterize_fwd(Tensor means2d, Tensor conics, Tensor colors, Tensor opacities, Tensor depths, "
      "Tensor? backgrounds, int width, int height, int tile_size, Tensor isect_offsets, Tensor flatten_ids) "
      "-> (Tensor render, Tensor render_depth, Tensor last_ids, Tensor transmittance)");
  m.def(
      "rasterize_bwd(Tensor means2d, Tensor conics, Tensor colors, Tensor opacities, Tensor depths, "
      "Tensor? backgrounds, int width, int height, int tile_size, Tensor isect_offsets, Tensor flatten_ids, "
      "Tensor render, Tensor render_depth, Tensor transmittance, Tensor last_ids, Tensor v_render, "
      "Tensor? v_render_depth=None, Tensor? v_alpha=None) -> (Tensor v_means2d, Tensor v_conics, "
      "Tensor v_colors, Tensor v_opacities, Tensor v_depths, Tensor v_backgrounds)");
}

inline void define_hexplane_ops(torch::Library& m) {
  m.def("hexplane_fwd(Tensor points, Tensor packed, int[] meta) -> Tensor features");
  m.def("hexplane_fwd_out(Tensor points, Tensor packed, int[] meta, Tensor(a!) out) -> Tensor(a!)");
  m.def(
      "hexplane_bwd(Tensor grad_out, Tensor points, Tensor packed, int[] meta, bool need_points, "
      "bool need_planes) -> (Tensor grad_points, Tensor grad_packed)");
}

}  // namespace orster4d
