// Python bindings of the CUDA HexPlane sampler (kernels in hexplane_cuda.cu).
#include <torch/extension.h>

#include <optional>
#include <vector>

torch::Tensor hexplane_forward_cuda(torch::Tensor points, torch::Tensor packed, std::vector<int64_t> meta,
                                    std::optional<torch::Tensor> out);
std::vector<torch::Tensor> hexplane_backward_cuda(torch::Tensor grad_out, torch::Tensor points, torch::Tensor packed,
                                                  std::vector<int64_t> meta, bool need_points, bool need_planes);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Fused HexPlane sampling (CUDA backend)";
  m.def("forward", &hexplane_forward_cuda, "points [N,4], packed [rows,C], meta[, out] -> features [N, C*L]",
        py::arg("points"), py::arg("packed"), py::arg("meta"), py::arg("out") = py::none());
  m.def("backward", &hexplane_backward_cuda,
        "grad_out [N,C*L], points, packed, meta, need_points, need_planes -> (grad_points, grad_packed)");
}
