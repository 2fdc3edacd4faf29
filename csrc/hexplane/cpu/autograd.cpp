// Autograd kernel of orster4d::hexplane_fwd, registered under the Autograd dispatch key.
//
// It lives in the CPU library because that library defines the ops (orster4d/op_schemas.h);
// nothing here is device specific: the forward calls the op below autograd (the CPU or CUDA
// kernel, by the tensors' device) and the backward calls orster4d::hexplane_bwd, asking only
// for the gradients autograd needs (points [N, 4] and/or the packed planes [rows, C]).
// Written in C++ (not torch.library.register_autograd) so that a call crosses no Python autograd
// wrapper; torch.compile traces through it, recording the hexplane_bwd op.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct HexPlaneFn : torch::autograd::Function<HexPlaneFn> {
  static variable_list forward(AutogradContext* ctx, const Tensor& points, const Tensor& packed,
                               at::IntArrayRef meta) {
    static const auto fwd = c10::Dispatcher::singleton()
                                .findSchemaOrThrow("orster4d::hexplane_fwd", "")
                                .typed<Tensor(const Tensor&, const Tensor&, at::IntArrayRef)>();
    at::AutoDispatchBelowADInplaceOrView below;
    Tensor features = fwd.call(points, packed, meta);
    ctx->save_for_backward({points, packed});
    ctx->saved_data["meta"] = meta.vec();
    return {features};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto bwd =
        c10::Dispatcher::singleton()
            .findSchemaOrThrow("orster4d::hexplane_bwd", "")
            .typed<std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&, at::IntArrayRef, bool,
                                              bool)>();
    const bool need_points = ctx->needs_input_grad(0), need_planes = ctx->needs_input_grad(1);
    if (!need_points && !need_planes) return {Tensor(), Tensor(), Tensor()};
    auto s = ctx->get_saved_variables();
    std::vector<int64_t> meta = ctx->saved_data["meta"].toIntVector();
    at::AutoDispatchBelowADInplaceOrView below;
    auto [grad_points, grad_packed] = bwd.call(grads[0].contiguous(), s[0], s[1], meta, need_points, need_planes);
    return {need_points ? grad_points : Tensor(), need_planes ? grad_packed : Tensor(), Tensor()};
  }
};

Tensor hexplane_fwd_autograd(const Tensor& points, const Tensor& packed, at::IntArrayRef meta) {
  return HexPlaneFn::apply(points, packed, meta)[0];
}

}  // namespace

TORCH_LIBRARY_IMPL(orster4d, Autograd, m) { m.impl("hexplane_fwd", &hexplane_fwd_autograd); }
