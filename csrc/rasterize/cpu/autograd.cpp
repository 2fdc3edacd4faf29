// Autograd kernels of the rasterizer's three differentiable ops (project_fwd, sh_fwd,
// rasterize_fwd), registered under the Autograd dispatch key.
//
// They live in the CPU library because that library defines the ops (orster4d/op_schemas.h);
// nothing here is device specific: each forward calls the op below autograd (the CPU or CUDA
// kernel, by the tensors' device) and each backward calls the matching *_bwd op. Written in C++
// rather than with torch.library.register_autograd so that a render's forward and backward cross
// no Python autograd wrapper (about 25 us per op call on the development CPU, three ops a call).
// torch.compile traces through them: AOTAutograd records the *_bwd ops these backwards call.
//
// Gradient conventions (shapes: csrc/rasterize/README.md):
//   project_fwd   means, quats, scales -> radii (no gradient), means2d, depths, conics
//   sh_fwd        dirs, coeffs -> colors
//   rasterize_fwd means2d, conics, colors, opacities, depths, backgrounds -> render, render_depth,
//                 transmittance (T_final; the caller's alpha is 1 - T_final, so the backward op's
//                 v_alpha is -v_transmittance); last_ids carries no gradient
// An output gradient autograd did not produce arrives undefined (grads are not materialised):
// the required ones become zeros here, the optional ones (v_render_depth, v_alpha) stay None.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

namespace orster4d {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using Tensor = at::Tensor;
using OptTensor = std::optional<at::Tensor>;
using Tensor2 = std::tuple<Tensor, Tensor>;
using Tensor3 = std::tuple<Tensor, Tensor, Tensor>;
using Tensor4 = std::tuple<Tensor, Tensor, Tensor, Tensor>;
using Tensor6 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;

// A typed handle of an orster4d:: op, looked up once.
template <typename Signature>
c10::TypedOperatorHandle<Signature> op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

Tensor or_zeros(const Tensor& g, const Tensor& like, at::IntArrayRef shape) {
  return g.defined() ? g.contiguous() : at::zeros(shape, like.options());
}

OptTensor or_none(const Tensor& g) { return g.defined() ? OptTensor(g.contiguous()) : std::nullopt; }

// v_alpha [B, C, H, W, 1] of the backward op from the transmittance's gradient [B, C, H, W].
OptTensor alpha_grad(const Tensor& v_transmittance) {
  return v_transmittance.defined() ? OptTensor((-v_transmittance).unsqueeze(-1).contiguous()) : std::nullopt;
}

// ------------------------------------------------------------------------------------ projection
struct ProjectFn : torch::autograd::Function<ProjectFn> {
  static variable_list forward(AutogradContext* ctx, const Tensor& means, const Tensor& quats, const Tensor& scales,
                               const Tensor& viewmats, const Tensor& Ks, int64_t width, int64_t height, double near,
                               double far, double eps2d) {
    static const auto fwd = op<Tensor4(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                        int64_t, int64_t, double, double, double)>("orster4d::project_fwd");
    at::AutoDispatchBelowADInplaceOrView below;
    auto [radii, means2d, depths, conics] =
        fwd.call(means, quats, scales, viewmats, Ks, width, height, near, far, eps2d);
    ctx->mark_non_differentiable({radii});
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({means, quats, scales, viewmats, Ks, radii, conics});
    ctx->saved_data["width"] = width;
    ctx->saved_data["height"] = height;
    ctx->saved_data["eps2d"] = eps2d;
    return {radii, means2d, depths, conics};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto bwd =
        op<Tensor3(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, double,
                   const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&)>("orster4d::project_bwd");
    auto s = ctx->get_saved_variables();
    const Tensor& conics = s[6];
    auto rows = conics.sizes().slice(0, conics.dim() - 1);  // [B, C, N]
    std::vector<int64_t> shape2(rows.begin(), rows.end());
    shape2.push_back(2);
    at::AutoDispatchBelowADInplaceOrView below;
    auto [v_means, v_quats, v_scales] =
        bwd.call(s[0], s[1], s[2], s[3], s[4], ctx->saved_data["width"].toInt(), ctx->saved_data["height"].toInt(),
                 ctx->saved_data["eps2d"].toDouble(), s[5], conics, or_zeros(grads[1], conics, shape2),
                 or_zeros(grads[2], conics, rows), or_zeros(grads[3], conics, conics.sizes()));
    return {v_means, v_quats, v_scales, Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

Tensor4 project_fwd_autograd(const Tensor& means, const Tensor& quats, const Tensor& scales, const Tensor& viewmats,
                             const Tensor& Ks, int64_t width, int64_t height, double near, double far, double eps2d) {
  auto out = ProjectFn::apply(means, quats, scales, viewmats, Ks, width, height, near, far, eps2d);
  return {out[0], out[1], out[2], out[3]};
}

// ------------------------------------------------------------------------------ SH colours
struct ShFn : torch::autograd::Function<ShFn> {
  static variable_list forward(AutogradContext* ctx, int64_t degree, const Tensor& dirs, const Tensor& coeffs,
                               const OptTensor& radii) {
    static const auto fwd =
        op<Tensor(int64_t, const Tensor&, const Tensor&, const OptTensor&)>("orster4d::sh_fwd");
    at::AutoDispatchBelowADInplaceOrView below;
    Tensor colors = fwd.call(degree, dirs, coeffs, radii);
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({dirs, coeffs, radii.value_or(Tensor())});
    ctx->saved_data["degree"] = degree;
    return {colors};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto bwd = op<Tensor2(int64_t, const Tensor&, const Tensor&, const OptTensor&, const Tensor&)>(
        "orster4d::sh_bwd");
    auto s = ctx->get_saved_variables();
    const Tensor& dirs = s[0];
    OptTensor radii = s[2].defined() ? OptTensor(s[2]) : std::nullopt;
    at::AutoDispatchBelowADInplaceOrView below;
    auto [v_coeffs, v_dirs] =
        bwd.call(ctx->saved_data["degree"].toInt(), dirs, s[1], radii, or_zeros(grads[0], dirs, dirs.sizes()));
    return {Tensor(), v_dirs, v_coeffs, Tensor()};
  }
};

Tensor sh_fwd_autograd(int64_t degree, const Tensor& dirs, const Tensor& coeffs, const OptTensor& radii) {
  return ShFn::apply(degree, dirs, coeffs, radii)[0];
}

// ------------------------------------------------------------------------------ compositing
struct RasterizeFn : torch::autograd::Function<RasterizeFn> {
  static variable_list forward(AutogradContext* ctx, const Tensor& means2d, const Tensor& conics, const Tensor& colors,
                               const Tensor& opacities, const Tensor& depths, const OptTensor& backgrounds,
                               int64_t width, int64_t height, int64_t tile_size, const Tensor& isect_offsets,
                               const Tensor& flatten_ids) {
    static const auto fwd =
        op<Tensor4(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OptTensor&, int64_t,
                   int64_t, int64_t, const Tensor&, const Tensor&)>("orster4d::rasterize_fwd");
    at::AutoDispatchBelowADInplaceOrView below;
    auto [render, render_depth, last_ids, transmittance] = fwd.call(
        means2d, conics, colors, opacities, depths, backgrounds, width, height, tile_size, isect_offsets, flatten_ids);
    ctx->mark_non_differentiable({last_ids});
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({means2d, conics, colors, opacities, depths, backgrounds.value_or(Tensor()),
                            isect_offsets, flatten_ids, render, render_depth, transmittance, last_ids});
    ctx->saved_data["width"] = width;
    ctx->saved_data["height"] = height;
    ctx->saved_data["tile_size"] = tile_size;
    return {render, render_depth, last_ids, transmittance};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto bwd =
        op<Tensor6(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OptTensor&, int64_t,
                   int64_t, int64_t, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                   const Tensor&, const Tensor&, const OptTensor&, const OptTensor&)>("orster4d::rasterize_bwd");
    auto s = ctx->get_saved_variables();
    OptTensor backgrounds = s[5].defined() ? OptTensor(s[5]) : std::nullopt;
    const Tensor& render = s[8];
    at::AutoDispatchBelowADInplaceOrView below;
    auto [v_means2d, v_conics, v_colors, v_opacities, v_depths, v_bg] =
        bwd.call(s[0], s[1], s[2], s[3], s[4], backgrounds, ctx->saved_data["width"].toInt(),
                 ctx->saved_data["height"].toInt(), ctx->saved_data["tile_size"].toInt(), s[6], s[7], render, s[9],
                 s[10], s[11], or_zeros(grads[0], render, render.sizes()), or_none(grads[1]),
                 alpha_grad(grads[3]));
    if (!backgrounds || !ctx->needs_input_grad(5)) v_bg = Tensor();
    return {v_means2d, v_conics, v_colors, v_opacities, v_depths, v_bg, Tensor(), Tensor(), Tensor(), Tensor(),
            Tensor()};
  }
};

Tensor4 rasterize_fwd_autograd(const Tensor& means2d, const Tensor& conics, const Tensor& colors,
                               const Tensor& opacities, const Tensor& depths, const OptTensor& backgrounds,
                               int64_t width, int64_t height, int64_t tile_size, const Tensor& isect_offsets,
                               const Tensor& flatten_ids) {
  auto out = RasterizeFn::apply(means2d, conics, colors, opacities, depths, backgrounds, width, height, tile_size,
                                isect_offsets, flatten_ids);
  return {out[0], out[1], out[2], out[3]};
}

}  // namespace
}  // namespace orster4d

TORCH_LIBRARY_IMPL(orster4d, Autograd, m) {
  m.impl("project_fwd", &orster4d::project_fwd_autograd);
  m.impl("sh_fwd", &orster4d::sh_fwd_autograd);
  m.impl("rasterize_fwd", &orster4d::rasterize_fwd_autograd);
}
