// Python bindings of the C++ CPU rasterizer ops (contract: csrc/rasterize/README.md).
#include <torch/extension.h>

#include "ops.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace py = pybind11;
  using namespace orster4d;
  m.doc() = "orster4d tile rasterizer, C++ CPU backend (see csrc/rasterize/README.md)";
  m.def("project_fwd", &project_fwd_cpu, "EWA projection: -> radii, means2d, depths, conics", py::arg("means"),
        py::arg("quats"), py::arg("scales"), py::arg("viewmats"), py::arg("Ks"), py::arg("width"), py::arg("height"),
        py::arg("near"), py::arg("far"), py::arg("eps2d"));
  m.def("project_bwd", &project_bwd_cpu, "-> v_means, v_quats, v_scales", py::arg("means"), py::arg("quats"),
        py::arg("scales"), py::arg("viewmats"), py::arg("Ks"), py::arg("width"), py::arg("height"), py::arg("eps2d"),
        py::arg("radii"), py::arg("conics"), py::arg("v_means2d"), py::arg("v_depths"), py::arg("v_conics"));
  m.def("sh_fwd", &sh_fwd_cpu, "SH colours: -> colors [B,C,N,3]", py::arg("degree"), py::arg("dirs"),
        py::arg("coeffs"), py::arg("radii") = py::none());
  m.def("sh_bwd", &sh_bwd_cpu, "-> v_coeffs, v_dirs", py::arg("degree"), py::arg("dirs"), py::arg("coeffs"),
        py::arg("radii"), py::arg("v_colors"));
  m.def("intersect_tiles", &intersect_tiles_cpu,
        "tile intersection + sort of (camera | tile | depth): -> isect_offsets [B*C, tile_h, tile_w], flatten_ids. "
        "Optional conics [B,C,N,3] and opacities [B,N] tighten each box to the opacity-aware one.",
        py::arg("means2d"), py::arg("radii"), py::arg("depths"), py::arg("tile_size"), py::arg("tile_w"),
        py::arg("tile_h"), py::arg("conics") = py::none(), py::arg("opacities") = py::none());
  m.def("rasterize_fwd", &rasterize_fwd_cpu, "-> render, render_depth, alpha, last_ids", py::arg("means2d"),
        py::arg("conics"), py::arg("colors"), py::arg("opacities"), py::arg("depths"), py::arg("backgrounds"),
        py::arg("width"), py::arg("height"), py::arg("tile_size"), py::arg("isect_offsets"), py::arg("flatten_ids"));
  m.def("rasterize_bwd", &rasterize_bwd_cpu,
        "-> v_means2d, v_conics, v_colors, v_opacities, v_depths, v_backgrounds (None without backgrounds)",
        py::arg("means2d"), py::arg("conics"), py::arg("colors"), py::arg("opacities"), py::arg("depths"),
        py::arg("backgrounds"), py::arg("width"), py::arg("height"), py::arg("tile_size"), py::arg("isect_offsets"),
        py::arg("flatten_ids"), py::arg("render"), py::arg("render_depth"), py::arg("alpha"), py::arg("last_ids"),
        py::arg("v_render"), py::arg("v_render_depth") = py::none(), py::arg("v_alpha") = py::none());
}
