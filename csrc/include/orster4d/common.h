// Shared basics of the __host__ __device__ math headers.
//
// Every function in csrc/include/orster4d/*.h is plain C++17 when compiled by a
// host compiler (g++/clang++) and __host__ __device__ when compiled by nvcc, so
// the CUDA kernels and the C++ CPU backend evaluate the *same* formulas.
//
// Types are tiny POD structs templated on the scalar (float for the kernels,
// double for header tests).  Matrices are row-major: m[3 * row + col].
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define ORSTER4D_HD __host__ __device__ __forceinline__
#else
#define ORSTER4D_HD inline
#endif

namespace orster4d {

// True when a float32 with these bits is NaN or +-inf (all-ones exponent): the entry point's
// finiteness test, shared by the CPU loop and the CUDA kernel of nonfinite_flags.
ORSTER4D_HD bool nonfinite_bits(uint32_t bits) { return (bits & 0x7f800000u) == 0x7f800000u; }

template <typename T> struct Vec2 { T x, y; };
template <typename T> struct Vec3 { T x, y, z; };
template <typename T> struct Vec4 { T w, x, y, z; };  // quaternion (w, x, y, z)

// Row-major 3x3 matrix.
template <typename T> struct Mat3 {
  T m[9];
  ORSTER4D_HD T& operator()(int r, int c) { return m[3 * r + c]; }
  ORSTER4D_HD const T& operator()(int r, int c) const { return m[3 * r + c]; }
};

// Symmetric 2x2 matrix [[xx, xy], [xy, yy]] stored as its three distinct entries.
// Used for 2D covariances, conics (inverse covariances) and their gradients.
template <typename T> struct Sym2 { T xx, xy, yy; };

// ---------------------------------------------------------------- scalar helpers
template <typename T> ORSTER4D_HD T min_(T a, T b) { return a < b ? a : b; }
template <typename T> ORSTER4D_HD T max_(T a, T b) { return a > b ? a : b; }
template <typename T> ORSTER4D_HD T clamp_(T v, T lo, T hi) { return min_(max_(v, lo), hi); }
ORSTER4D_HD float sqrt_(float v) { return sqrtf(v); }
ORSTER4D_HD double sqrt_(double v) { return sqrt(v); }
ORSTER4D_HD float exp_(float v) {
#if defined(__CUDA_ARCH__)
  return __expf(v);
#else
  return expf(v);
#endif
}
ORSTER4D_HD double exp_(double v) { return exp(v); }
ORSTER4D_HD float log_(float v) { return logf(v); }
ORSTER4D_HD double log_(double v) { return log(v); }
ORSTER4D_HD float ceil_(float v) { return ceilf(v); }
ORSTER4D_HD double ceil_(double v) { return ceil(v); }
ORSTER4D_HD float floor_(float v) { return floorf(v); }
ORSTER4D_HD double floor_(double v) { return floor(v); }

// ---------------------------------------------------------------- vector helpers
template <typename T> ORSTER4D_HD Vec3<T> add(Vec3<T> a, Vec3<T> b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
template <typename T> ORSTER4D_HD Vec3<T> sub(Vec3<T> a, Vec3<T> b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
template <typename T> ORSTER4D_HD Vec3<T> scale(Vec3<T> a, T s) { return {a.x * s, a.y * s, a.z * s}; }
template <typename T> ORSTER4D_HD T dot(Vec3<T> a, Vec3<T> b) { return a.x * b.x + a.y * b.y + a.z * b.z; }

// ---------------------------------------------------------------- matrix helpers
template <typename T> ORSTER4D_HD Mat3<T> mat3_from_rowmajor(const T* p) {
  Mat3<T> r;
  for (int i = 0; i < 9; ++i) r.m[i] = p[i];
  return r;
}
// Upper-left 3x3 block of a row-major 4x4 matrix (e.g. a world-to-camera viewmat).
template <typename T> ORSTER4D_HD Mat3<T> mat3_from_4x4(const T* p) {
  Mat3<T> r;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) r.m[3 * i + j] = p[4 * i + j];
  return r;
}
template <typename T> ORSTER4D_HD Mat3<T> matmul(const Mat3<T>& a, const Mat3<T>& b) {
  Mat3<T> r;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) r.m[3 * i + j] = a(i, 0) * b(0, j) + a(i, 1) * b(1, j) + a(i, 2) * b(2, j);
  return r;
}
template <typename T> ORSTER4D_HD Mat3<T> transpose(const Mat3<T>& a) {
  Mat3<T> r;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) r.m[3 * i + j] = a(j, i);
  return r;
}
// a * b^T
template <typename T> ORSTER4D_HD Mat3<T> matmul_nt(const Mat3<T>& a, const Mat3<T>& b) {
  Mat3<T> r;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) r.m[3 * i + j] = a(i, 0) * b(j, 0) + a(i, 1) * b(j, 1) + a(i, 2) * b(j, 2);
  return r;
}
// a^T * b
template <typename T> ORSTER4D_HD Mat3<T> matmul_tn(const Mat3<T>& a, const Mat3<T>& b) {
  Mat3<T> r;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) r.m[3 * i + j] = a(0, i) * b(0, j) + a(1, i) * b(1, j) + a(2, i) * b(2, j);
  return r;
}
template <typename T> ORSTER4D_HD Vec3<T> matvec(const Mat3<T>& a, Vec3<T> v) {
  return {a(0, 0) * v.x + a(0, 1) * v.y + a(0, 2) * v.z, a(1, 0) * v.x + a(1, 1) * v.y + a(1, 2) * v.z,
          a(2, 0) * v.x + a(2, 1) * v.y + a(2, 2) * v.z};
}
// a^T * v
template <typename T> ORSTER4D_HD Vec3<T> matvec_t(const Mat3<T>& a, Vec3<T> v) {
  return {a(0, 0) * v.x + a(1, 0) * v.y + a(2, 0) * v.z, a(0, 1) * v.x + a(1, 1) * v.y + a(2, 1) * v.z,
          a(0, 2) * v.x + a(1, 2) * v.y + a(2, 2) * v.z};
}

}  // namespace orster4d
