// Registers the C++ CPU HexPlane kernels (hexplane_cpu.cpp) with the PyTorch dispatcher. This
// module also defines the HexPlane ops' schemas (orster4d/op_schemas.h); the CUDA module only
// adds its kernels under the same names.
#include <torch/library.h>

#include <optional>
#include <vector>

#include "orster4d/op_adapters.h"
#include "orster4d/op_schemas.h"

at::Tensor hexplane_forward_cpu(at::Tensor points, at::Tensor packed, std::vector<int64_t> meta,
                                std::optional<at::Tensor> out);
std::vector<at::Tensor> hexplane_backward_cpu(at::Tensor grad_out, at::Tensor points, at::Tensor packed,
                                              std::vector<int64_t> meta, bool need_points, bool need_planes);

namespace {

at::Tensor hexplane_fwd(const at::Tensor& points, const at::Tensor& packed, at::IntArrayRef meta) {
  return hexplane_forward_cpu(points, packed, meta.vec(), std::nullopt);
}

at::Tensor& hexplane_fwd_out(const at::Tensor& points, const at::Tensor& packed, at::IntArrayRef meta,
                             at::Tensor& out) {
  hexplane_forward_cpu(points, packed, meta.vec(), out);
  return out;
}

// A gradient that was not asked for is an empty [0] tensor.
std::tuple<at::Tensor, at::Tensor> hexplane_bwd(const at::Tensor& grad_out, const at::Tensor& points,
                                                const at::Tensor& packed, at::IntArrayRef meta, bool need_points,
                                                bool need_planes) {
  auto r = hexplane_backward_cpu(grad_out, points, packed, meta.vec(), need_points, need_planes);
  return {orster4d::like_or_empty(r[0], points), orster4d::like_or_empty(r[1], packed)};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(orster4d, m) { orster4d::define_hexplane_ops(m); }

TORCH_LIBRARY_IMPL(orster4d, CPU, m) {
  m.impl("hexplane_fwd", &hexplane_fwd);
  m.impl("hexplane_fwd_out", &hexplane_fwd_out);
  m.impl("hexplane_bwd", &hexplane_bwd);
}
