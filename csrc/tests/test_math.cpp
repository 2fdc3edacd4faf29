// ctest of the rasterizer math shared by the CPU and CUDA backends (plain C++, no torch):
// every VJP of csrc/include/orster4d/{gaussian,sh,composite}_math.h against central finite
// differences of its forward, in double precision, at random points.
#include <cmath>
#include <cstdio>
#include <random>

#include "orster4d/composite_math.h"
#include "orster4d/gaussian_math.h"
#include "orster4d/sh_math.h"

using namespace orster4d;
using D = double;

static int g_failures = 0;
static std::mt19937 g_rng(1234);
static D uni(D lo, D hi) { return std::uniform_real_distribution<D>(lo, hi)(g_rng); }

static void expect_close(const char* what, D analytic, D numeric, D tol = 1e-6) {
  const D err = std::fabs(analytic - numeric) / std::fmax(1.0, std::fabs(numeric));
  if (!(err <= tol)) {
    std::printf("FAIL %s: analytic %.10g numeric %.10g (rel err %.3g)\n", what, analytic, numeric, err);
    ++g_failures;
  }
}

// --------------------------------------------------------------- projection
struct ProjInputs {
  D p[10];  // mean (3), quat (4), scale (3)
};

// A scalar loss of the projection outputs with fixed random weights: sum of w . (mean2d, depth, conic).
static D projection_loss(const ProjInputs& in, const Camera<D>& cam, const D* w, bool& visible) {
  Projected<D> out;
  visible = project_gaussian<D>({in.p[0], in.p[1], in.p[2]}, {in.p[3], in.p[4], in.p[5], in.p[6]},
                                {in.p[7], in.p[8], in.p[9]}, cam, 0.01, 100.0, 0.3, out);
  return w[0] * out.mean2d.x + w[1] * out.mean2d.y + w[2] * out.depth + w[3] * out.conic.xx +
         w[4] * out.conic.xy + w[5] * out.conic.yy;
}

static void test_projection_vjp() {
  const D view[16] = {0.8, 0.0, -0.6, 0.1, 0.0, 1.0, 0.0, -0.2, 0.6, 0.0, 0.8, 4.0, 0, 0, 0, 1};
  const D K[9] = {70.0, 0.0, 32.0, 0.0, 72.0, 30.0, 0.0, 0.0, 1.0};
  const Camera<D> cam = make_camera(view, K, 64, 60);
  int tested = 0, clamped = 0;
  for (int trial = 0; trial < 300; ++trial) {
    ProjInputs in;
    // some means far off-axis so that the tangent clamp of the Jacobian is exercised
    const D spread = trial % 3 == 0 ? 6.0 : 1.0;
    for (int i = 0; i < 3; ++i) in.p[i] = uni(-spread, spread);
    for (int i = 3; i < 7; ++i) in.p[i] = uni(-1.0, 1.0);
    for (int i = 7; i < 10; ++i) in.p[i] = std::exp(trial % 3 == 0 ? uni(-0.5, 0.5) : uni(-3.0, -1.0));
    D w[6];
    for (D& v : w) v = uni(-1.0, 1.0);
    bool visible;
    projection_loss(in, cam, w, visible);
    if (!visible) continue;
    Projected<D> out;
    project_gaussian<D>({in.p[0], in.p[1], in.p[2]}, {in.p[3], in.p[4], in.p[5], in.p[6]}, {in.p[7], in.p[8], in.p[9]},
                        cam, 0.01, 100.0, 0.3, out);
    const Vec3<D> pc = world_to_camera(cam, Vec3<D>{in.p[0], in.p[1], in.p[2]});
    const TanLimits<D> L = tan_limits(cam);
    const D ux = pc.x / pc.z, uy = pc.y / pc.z;
    const D margin = 1e-4;  // stay away from the clamp's kink
    if (std::fabs(ux - L.x_pos) < margin || std::fabs(ux + L.x_neg) < margin || std::fabs(uy - L.y_pos) < margin ||
        std::fabs(uy + L.y_neg) < margin)
      continue;
    if (ux > L.x_pos || ux < -L.x_neg || uy > L.y_pos || uy < -L.y_neg) ++clamped;
    Vec3<D> vm = {0, 0, 0}, vs = {0, 0, 0};
    Vec4<D> vq = {0, 0, 0, 0};
    project_gaussian_vjp<D>({in.p[0], in.p[1], in.p[2]}, {in.p[3], in.p[4], in.p[5], in.p[6]},
                            {in.p[7], in.p[8], in.p[9]}, cam, out.conic, {w[0], w[1]}, w[2], {w[3], w[4], w[5]}, vm,
                            vq, vs);
    const D analytic[10] = {vm.x, vm.y, vm.z, vq.w, vq.x, vq.y, vq.z, vs.x, vs.y, vs.z};
    for (int i = 0; i < 10; ++i) {
      const D h = 1e-6 * std::fmax(1.0, std::fabs(in.p[i]));
      ProjInputs a = in, b = in;
      a.p[i] += h;
      b.p[i] -= h;
      bool va, vb;
      const D fa = projection_loss(a, cam, w, va), fb = projection_loss(b, cam, w, vb);
      if (!va || !vb) continue;
      char name[64];
      std::snprintf(name, sizeof(name), "projection d/dparam[%d] (trial %d)", i, trial);
      expect_close(name, analytic[i], (fa - fb) / (2 * h), 1e-5);
    }
    ++tested;
  }
  std::printf("projection: %d visible samples, %d with a clamped tangent\n", tested, clamped);
  if (tested < 100 || clamped < 5) {
    std::printf("FAIL projection: only %d visible samples (%d clamped) tested\n", tested, clamped);
    ++g_failures;
  }
}

// --------------------------------------------------------------- spherical harmonics
static void test_sh_vjp() {
  for (int degree = 0; degree <= 3; ++degree) {
    const int K = sh_num_coeffs(degree);
    for (int trial = 0; trial < 50; ++trial) {
      D coeffs[48], w[3];
      for (int i = 0; i < 3 * K; ++i) coeffs[i] = uni(-0.5, 0.5);
      for (D& v : w) v = uni(-1.0, 1.0);
      Vec3<D> dir = {uni(-2, 2), uni(-2, 2), uni(-2, 2)};
      auto loss = [&](const D* c, Vec3<D> d) {
        Vec3<D> raw;
        sh_to_color(degree, d, c, &raw);  // unclamped, so the loss is smooth
        return w[0] * raw.x + w[1] * raw.y + w[2] * raw.z;
      };
      // sh_to_color_vjp passes the gradient only where the unclamped value is >= 0: make it so
      Vec3<D> raw;
      sh_to_color(degree, dir, coeffs, &raw);
      if (raw.x < 1e-3 || raw.y < 1e-3 || raw.z < 1e-3) {
        coeffs[0] += 4.0; coeffs[1] += 4.0; coeffs[2] += 4.0;
      }
      D v_coeffs[48] = {0};
      const Vec3<D> v_dir = sh_to_color_vjp(degree, dir, coeffs, Vec3<D>{w[0], w[1], w[2]}, v_coeffs);
      const D h = 1e-6;
      for (int i = 0; i < 3 * K; ++i) {
        D a[48], b[48];
        for (int j = 0; j < 3 * K; ++j) a[j] = b[j] = coeffs[j];
        a[i] += h;
        b[i] -= h;
        expect_close("sh d/dcoeff", v_coeffs[i], (loss(a, dir) - loss(b, dir)) / (2 * h));
      }
      const D num[3] = {(loss(coeffs, {dir.x + h, dir.y, dir.z}) - loss(coeffs, {dir.x - h, dir.y, dir.z})) / (2 * h),
                        (loss(coeffs, {dir.x, dir.y + h, dir.z}) - loss(coeffs, {dir.x, dir.y - h, dir.z})) / (2 * h),
                        (loss(coeffs, {dir.x, dir.y, dir.z + h}) - loss(coeffs, {dir.x, dir.y, dir.z - h})) / (2 * h)};
      expect_close("sh d/ddir.x", v_dir.x, num[0]);
      expect_close("sh d/ddir.y", v_dir.y, num[1]);
      expect_close("sh d/ddir.z", v_dir.z, num[2]);
    }
  }
}

// --------------------------------------------------------------- per-pixel alpha and compositing
static void test_alpha_vjp() {
  for (int trial = 0; trial < 200; ++trial) {
    const D m[2] = {uni(0, 16), uni(0, 16)};
    const D p[2] = {uni(0, 16), uni(0, 16)};
    D x[6] = {m[0], m[1], uni(0.05, 0.5), uni(-0.04, 0.04), uni(0.05, 0.5), uni(0.05, 0.95)};  // mean, conic, opacity
    const D w = uni(-1, 1);
    auto loss = [&](const D* v) {
      return w * gaussian_alpha<D>(v[5], gaussian_sigma<D>({v[2], v[3], v[4]}, v[0] - p[0], v[1] - p[1]));
    };
    const D al = loss(x) / w;
    if (std::fabs(al - D(kAlphaMax)) < 1e-4) continue;  // kink of the cap
    const AlphaGrad<D> g = gaussian_alpha_vjp<D>({x[2], x[3], x[4]}, x[5], x[0] - p[0], x[1] - p[1], w);
    const D analytic[6] = {g.v_mean2d.x, g.v_mean2d.y, g.v_conic.xx, g.v_conic.xy, g.v_conic.yy, g.v_opacity};
    for (int i = 0; i < 6; ++i) {
      const D h = 1e-7;
      D a[6], b[6];
      for (int j = 0; j < 6; ++j) a[j] = b[j] = x[j];
      a[i] += h;
      b[i] -= h;
      expect_close("alpha vjp", analytic[i], (loss(a) - loss(b)) / (2 * h));
    }
  }
}

// Composites n splats (no skip, no stop) and returns w . (rgb, depth, alpha).
static D composite_loss(int n, const D* alpha, const D* col, const D* z, const D* bg, const D* w) {
  D T = 1, r[3] = {0, 0, 0}, d = 0;
  for (int i = 0; i < n; ++i) {
    for (int c = 0; c < 3; ++c) r[c] += col[3 * i + c] * alpha[i] * T;
    d += z[i] * alpha[i] * T;
    T *= 1 - alpha[i];
  }
  for (int c = 0; c < 3; ++c) r[c] += T * bg[c];
  return w[0] * r[0] + w[1] * r[1] + w[2] * r[2] + w[3] * d + w[4] * (1 - T);
}

static void test_composite_grad() {
  for (int trial = 0; trial < 50; ++trial) {
    const int n = 1 + trial % 7;
    D alpha[8], col[24], z[8], bg[3], w[5];
    for (int i = 0; i < n; ++i) {
      alpha[i] = uni(0.01, 0.9);
      z[i] = uni(1, 5);
      for (int c = 0; c < 3; ++c) col[3 * i + c] = uni(0, 1);
    }
    for (D& v : bg) v = uni(0, 1);
    for (D& v : w) v = uni(-1, 1);
    D T_final = 1;
    for (int i = 0; i < n; ++i) T_final *= 1 - alpha[i];
    // back to front, as the kernels do
    D T = T_final, S_depth = 0;
    Vec3<D> S = {0, 0, 0};
    for (int i = n - 1; i >= 0; --i) {
      const D T_i = T / (1 - alpha[i]);
      const D g = composite_alpha_grad<D>(alpha[i], T_i, {col[3 * i], col[3 * i + 1], col[3 * i + 2]}, z[i], S,
                                          S_depth, T_final, {w[0], w[1], w[2]}, w[3], w[4], {bg[0], bg[1], bg[2]});
      const D h = 1e-7;
      D a[8], b[8];
      for (int j = 0; j < n; ++j) a[j] = b[j] = alpha[j];
      a[i] += h;
      b[i] -= h;
      expect_close("composite d/dalpha", g, (composite_loss(n, a, col, z, bg, w) - composite_loss(n, b, col, z, bg, w)) / (2 * h));
      const D wi = alpha[i] * T_i;
      S.x += col[3 * i] * wi; S.y += col[3 * i + 1] * wi; S.z += col[3 * i + 2] * wi;
      S_depth += z[i] * wi;
      T = T_i;
    }
  }
}

int main() {
  test_projection_vjp();
  test_sh_vjp();
  test_alpha_vjp();
  test_composite_grad();
  if (g_failures) {
    std::printf("%d check(s) failed\n", g_failures);
    return 1;
  }
  std::printf("test_math: all checks passed\n");
  return 0;
}
