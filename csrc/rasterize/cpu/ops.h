// Declarations of the C++ CPU rasterizer ops (contract: csrc/rasterize/README.md).
#pragma once

// Slim ATen headers only (fast to compile).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/util/Exception.h>
#include <optional>

#include <vector>

#define ORSTER4D_CHECK_CPU_F32(x)                                                   \
  TORCH_CHECK((x).device().is_cpu(), #x " must be a CPU tensor");                   \
  TORCH_CHECK((x).is_contiguous(), #x " must be contiguous");                       \
  TORCH_CHECK((x).scalar_type() == at::kFloat, #x " must be float32")
#define ORSTER4D_CHECK_CPU_I32(x)                                                   \
  TORCH_CHECK((x).device().is_cpu(), #x " must be a CPU tensor");                   \
  TORCH_CHECK((x).is_contiguous(), #x " must be contiguous");                       \
  TORCH_CHECK((x).scalar_type() == at::kInt, #x " must be int32")

namespace orster4d {

// project.cpp
std::vector<at::Tensor> project_fwd_cpu(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                                        const at::Tensor& viewmats, const at::Tensor& Ks, int64_t width,
                                        int64_t height, double near_plane, double far_plane, double eps2d);
std::vector<at::Tensor> project_bwd_cpu(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                                        const at::Tensor& viewmats, const at::Tensor& Ks, int64_t width,
                                        int64_t height, double eps2d, const at::Tensor& radii,
                                        const at::Tensor& conics, const at::Tensor& v_means2d,
                                        const at::Tensor& v_depths, const at::Tensor& v_conics);
at::Tensor sh_fwd_cpu(int64_t degree, const at::Tensor& dirs, const at::Tensor& coeffs,
                      const std::optional<at::Tensor>& radii);
std::vector<at::Tensor> sh_bwd_cpu(int64_t degree, const at::Tensor& dirs, const at::Tensor& coeffs,
                                   const std::optional<at::Tensor>& radii, const at::Tensor& v_colors);

// validate.cpp
at::Tensor nonfinite_flags_cpu(at::TensorList tensors);

// rasterize.cpp
std::vector<at::Tensor> intersect_tiles_cpu(const at::Tensor& means2d, const at::Tensor& radii,
                                            const at::Tensor& depths, int64_t tile_size, int64_t tile_w,
                                            int64_t tile_h, const std::optional<at::Tensor>& conics,
                                            const std::optional<at::Tensor>& opacities);
std::vector<at::Tensor> rasterize_fwd_cpu(const at::Tensor& means2d, const at::Tensor& conics,
                                          const at::Tensor& colors, const at::Tensor& opacities,
                                          const at::Tensor& depths, const std::optional<at::Tensor>& backgrounds,
                                          int64_t width, int64_t height, int64_t tile_size,
                                          const at::Tensor& isect_offsets, const at::Tensor& flatten_ids);
std::vector<std::optional<at::Tensor>> rasterize_bwd_cpu(
    const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors, const at::Tensor& opacities,
    const at::Tensor& depths, const std::optional<at::Tensor>& backgrounds, int64_t width, int64_t height,
    int64_t tile_size, const at::Tensor& isect_offsets, const at::Tensor& flatten_ids, const at::Tensor& render,
    const at::Tensor& render_depth, const at::Tensor& transmittance, const at::Tensor& last_ids,
    const at::Tensor& v_render,
    const std::optional<at::Tensor>& v_render_depth, const std::optional<at::Tensor>& v_alpha);

}  // namespace orster4d
