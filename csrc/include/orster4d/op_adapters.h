// Adapters between the kernels' host functions and the dispatcher's calling convention.
//
// The host functions return std::vector<at::Tensor> (some entries std::optional); an op
// schema returns a fixed tuple "(Tensor a, Tensor b, ...)". Tupled<&fn, K>::call has fn's
// arguments and returns its first K results as a std::tuple, so that
//   m.impl("op", &Tupled<&fn, K>::call);
// registers fn unchanged. A schema return cannot be None: absent results become an empty
// [0] tensor (like_or_empty).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <optional>
#include <tuple>
#include <utility>

namespace orster4d {

inline at::Tensor as_tensor(const at::Tensor& t) { return t; }
inline at::Tensor as_tensor(const std::optional<at::Tensor>& t) { return t.value_or(at::Tensor()); }

// t when it is defined, else an empty [0] tensor with like's options.
inline at::Tensor like_or_empty(const at::Tensor& t, const at::Tensor& like) {
  return t.defined() ? t : at::empty({0}, like.options());
}

template <typename Vec, size_t... I>
auto first_results(const Vec& v, std::index_sequence<I...>) {
  return std::make_tuple(as_tensor(v[I])...);
}

template <auto Fn, size_t K, typename Sig = decltype(Fn)>
struct Tupled;

template <auto Fn, size_t K, typename R, typename... A>
struct Tupled<Fn, K, R (*)(A...)> {
  static auto call(A... args) { return first_results(Fn(std::forward<A>(args)...), std::make_index_sequence<K>{}); }
};

}  // namespace orster4d
