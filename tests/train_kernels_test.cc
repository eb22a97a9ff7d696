// Every training backward kernel against a numerical gradient. Each op has a double-precision
// twin here (the obvious formula); central differences of the twin give the reference gradient
// of L = Σ r·y for a random r, which the f32 backward kernel must reproduce. Shapes are tiny and
// ragged (odd lengths, GQA groups, a tail after the 8-wide Dot blocks).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/blas.h"
#include "kernels/cross_entropy.h"
#include "kernels/matmul.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"

namespace elm {
namespace train_kernels_test {

using Vec = std::vector<double>;

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(gen);
  return v;
}
Vec ToD(const std::vector<float>& v) {
  return Vec(v.begin(), v.end());
}

// ∂f/∂x by central differences in double; f returns the scalar loss.
Vec NumericGrad(const std::function<double(const Vec&)>& f, Vec x, double h = 1e-5) {
  Vec g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double fp = f(x);
    x[i] = x0 - h;
    const double fm = f(x);
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

double Weighted(const Vec& y, const std::vector<float>& r) {
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += y[i] * r[i];
  return s;
}

// max |a − b| ≤ tol · max(|b|, 1e-3)
void ExpectClose(const std::vector<float>& got, const Vec& want, double tol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 1e-3, err = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    scale = std::max(scale, std::fabs(want[i]));
    err = std::max(err, std::fabs(got[i] - want[i]));
  }
  EXPECT_LE(err, tol * scale) << what << ": max abs error " << err << ", max |ref| " << scale;
}

// ---- double twins ----
Vec RmsNormD(const Vec& x, const Vec& w, int rows, int n, double eps) {
  Vec y(x.size());
  for (int r = 0; r < rows; ++r) {
    double ss = 0;
    for (int i = 0; i < n; ++i) ss += x[r * n + i] * x[r * n + i];
    const double inv = 1.0 / std::sqrt(ss / n + eps);
    for (int i = 0; i < n; ++i) y[r * n + i] = x[r * n + i] * inv * w[i];
  }
  return y;
}

Vec AttentionD(const Vec& qkv, int B, int T, int H, int Hkv, int Dh) {
  const int C3 = (H + 2 * Hkv) * Dh, g = H / Hkv;
  Vec out(static_cast<size_t>(B) * T * H * Dh, 0.0);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int t = 0; t < T; ++t) {
        const double* q = &qkv[(b * T + t) * C3 + h * Dh];
        Vec s(t + 1);
        double mx = -1e300;
        for (int j = 0; j <= t; ++j) {
          const double* k = &qkv[(b * T + j) * C3 + (H + h / g) * Dh];
          double d = 0;
          for (int e = 0; e < Dh; ++e) d += q[e] * k[e];
          s[j] = d / std::sqrt(static_cast<double>(Dh));
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (auto& v : s) sum += (v = std::exp(v - mx));
        for (int j = 0; j <= t; ++j) {
          const double* v = &qkv[(b * T + j) * C3 + (H + Hkv + h / g) * Dh];
          for (int e = 0; e < Dh; ++e) out[((b * T + t) * H + h) * Dh + e] += s[j] / sum * v[e];
        }
      }
  return out;
}

// OpenBLAS is reloaded with its AVX-512 kernels only where it fell back to AVX2 on an AVX-512
// CPU, and never against the user's own OPENBLAS_CORETYPE.
TEST(TrainKernels, OpenBlasCoreTypeOverride) {
  const char* set = std::getenv("OPENBLAS_CORETYPE");
  const std::string saved = set != nullptr ? set : "";
  unsetenv("OPENBLAS_CORETYPE");
  EXPECT_EQ(OpenBlasCoreTypeOverride("Cooperlake"), nullptr);
  EXPECT_EQ(OpenBlasCoreTypeOverride("SkylakeX"), nullptr);
#if defined(__x86_64__)
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  if (avx512) {
    EXPECT_STREQ(OpenBlasCoreTypeOverride("Haswell"), "SkylakeX");
    EXPECT_STREQ(OpenBlasCoreTypeOverride("Zen"), "SkylakeX");
  } else {
    EXPECT_EQ(OpenBlasCoreTypeOverride("Haswell"), nullptr);
  }
#endif
  setenv("OPENBLAS_CORETYPE", "Haswell", 1);
  EXPECT_EQ(OpenBlasCoreTypeOverride("Haswell"), nullptr);
  if (set != nullptr)
    setenv("OPENBLAS_CORETYPE", saved.c_str(), 1);
  else
    unsetenv("OPENBLAS_CORETYPE");
}

TEST(TrainKernels, RmsNormBackward) {
  const int rows = 3, n = 13;
  const float eps = 1e-6f;
  auto x = Random(rows * n, 1), w = Random(n, 2), r = Random(rows * n, 3);
  std::vector<float> dx(rows * n, 0.25f), dw(n, -0.5f);  // accumulation onto nonzero values
  RmsNormBackward(dx.data(), dw.data(), r.data(), x.data(), w.data(), rows, n, eps);
  for (auto& v : dx) v -= 0.25f;
  for (auto& v : dw) v += 0.5f;
  const Vec wd = ToD(w), xd = ToD(x);
  ExpectClose(
      dx, NumericGrad([&](const Vec& v) { return Weighted(RmsNormD(v, wd, rows, n, eps), r); }, xd),
      1e-4, "dx");
  ExpectClose(
      dw, NumericGrad([&](const Vec& v) { return Weighted(RmsNormD(xd, v, rows, n, eps), r); }, wd),
      1e-4, "dw");
  // The f32 forward agrees with the twin.
  std::vector<float> y(rows * n);
  RmsNorm(y.data(), x.data(), w.data(), rows, n, eps);
  ExpectClose(y, RmsNormD(xd, wd, rows, n, eps), 1e-5, "forward");
}

TEST(TrainKernels, RopeBackward) {
  const int H = 3, Dh = 10, pos = 7;
  RopeTable table(Dh, 10000.0, 16);
  auto x = Random(H * Dh, 4), r = Random(H * Dh, 5);
  auto f = [&](const Vec& v) {
    Vec y(v.size());
    for (int h = 0; h < H; ++h)
      for (int j = 0; j < Dh / 2; ++j) {
        const double c = table.cos(pos)[j], s = table.sin(pos)[j];
        const double a = v[h * Dh + j], b = v[h * Dh + j + Dh / 2];
        y[h * Dh + j] = a * c - b * s;
        y[h * Dh + j + Dh / 2] = b * c + a * s;
      }
    return Weighted(y, r);
  };
  std::vector<float> g = r;
  RopeBackward(g.data(), H, pos, table);
  ExpectClose(g, NumericGrad(f, ToD(x)), 1e-5, "dx");
}

TEST(TrainKernels, SwiGluAndSiluBackward) {
  const int n = 11;
  auto gate = Random(n, 6, 2.0f), up = Random(n, 7), r = Random(n, 8);
  std::vector<float> dgate(n, 0), dup(n, 0), du(n, 0);
  SwiGluBackward(dgate.data(), dup.data(), r.data(), gate.data(), up.data(), n);
  auto silu = [](double z) { return z / (1 + std::exp(-z)); };
  const Vec gd = ToD(gate), ud = ToD(up);
  auto f = [&](const Vec& gv, const Vec& uv) {
    Vec y(n);
    for (int i = 0; i < n; ++i) y[i] = silu(gv[i]) * uv[i];
    return Weighted(y, r);
  };
  ExpectClose(dgate, NumericGrad([&](const Vec& v) { return f(v, ud); }, gd), 1e-5, "dgate");
  ExpectClose(dup, NumericGrad([&](const Vec& v) { return f(gd, v); }, ud), 1e-5, "dup");
  SiluBackward(du.data(), r.data(), gate.data(), n);
  ExpectClose(du,
              NumericGrad(
                  [&](const Vec& v) {
                    Vec y(n);
                    for (int i = 0; i < n; ++i) y[i] = silu(v[i]);
                    return Weighted(y, r);
                  },
                  gd),
              1e-5, "silu");
}

TEST(TrainKernels, MatMulBackward) {
  const int N = 5, C = 7, OC = 3;
  auto x = Random(N * C, 9), w = Random(OC * C, 10), r = Random(N * OC, 11);
  std::vector<float> y(N * OC), dx(N * C, 0), dw(OC * C, 0);
  MatMulForward(y.data(), x.data(), w.data(), N, C, OC);
  MatMulBackward(dx.data(), dw.data(), r.data(), x.data(), w.data(), N, C, OC);
  auto mm = [&](const Vec& xv, const Vec& wv) {
    Vec out(N * OC, 0);
    for (int n = 0; n < N; ++n)
      for (int o = 0; o < OC; ++o)
        for (int c = 0; c < C; ++c) out[n * OC + o] += xv[n * C + c] * wv[o * C + c];
    return out;
  };
  const Vec xd = ToD(x), wd = ToD(w);
  ExpectClose(y, mm(xd, wd), 1e-5, "forward");
  ExpectClose(dx, NumericGrad([&](const Vec& v) { return Weighted(mm(v, wd), r); }, xd), 1e-5,
              "dx");
  ExpectClose(dw, NumericGrad([&](const Vec& v) { return Weighted(mm(xd, v), r); }, wd), 1e-5,
              "dw");
  // Accumulates: a second call doubles the gradients.
  auto dw1 = dw;
  MatMulBackward(nullptr, dw.data(), r.data(), x.data(), w.data(), N, C, OC);
  for (size_t i = 0; i < dw.size(); ++i) EXPECT_FLOAT_EQ(dw[i], 2 * dw1[i]);
}

TEST(TrainKernels, AttentionBackwardGqaRagged) {
  const int B = 2, T = 5, H = 4, Hkv = 2, Dh = 6, C3 = (H + 2 * Hkv) * Dh;
  auto qkv = Random(B * T * C3, 12), r = Random(B * T * H * Dh, 13);
  std::vector<float> out(B * T * H * Dh), lse(B * H * T), dqkv(B * T * C3, 0);
  AttentionForward(out.data(), lse.data(), qkv.data(), B, T, H, Hkv, Dh);
  const Vec qd = ToD(qkv);
  ExpectClose(out, AttentionD(qd, B, T, H, Hkv, Dh), 1e-5, "forward");
  AttentionBackward(dqkv.data(), r.data(), out.data(), lse.data(), qkv.data(), B, T, H, Hkv, Dh);
  ExpectClose(
      dqkv,
      NumericGrad([&](const Vec& v) { return Weighted(AttentionD(v, B, T, H, Hkv, Dh), r); }, qd),
      1e-4, "dqkv");
}

TEST(TrainKernels, AttentionMultiQuery) {
  const int B = 1, T = 7, H = 3, Hkv = 1, Dh = 9, C3 = (H + 2 * Hkv) * Dh;
  auto qkv = Random(B * T * C3, 14), r = Random(B * T * H * Dh, 15);
  std::vector<float> out(B * T * H * Dh), lse(B * H * T), dqkv(B * T * C3, 0);
  AttentionForward(out.data(), lse.data(), qkv.data(), B, T, H, Hkv, Dh);
  AttentionBackward(dqkv.data(), r.data(), out.data(), lse.data(), qkv.data(), B, T, H, Hkv, Dh);
  ExpectClose(
      dqkv,
      NumericGrad([&](const Vec& v) { return Weighted(AttentionD(v, B, T, H, Hkv, Dh), r); },
                  ToD(qkv)),
      1e-4, "dqkv");
}

TEST(TrainKernels, CrossEntropyWithZLossAndIgnore) {
  const int N = 6, V = 9, ignore = 7;
  auto logits = Random(N * V, 16, 3.0f);
  const std::vector<int> targets = {3, 7, 0, 8, 7, 5};  // rows 1 and 4 ignored
  const float ce_scale = 0.25f, z_scale = 0.01f;
  auto f = [&](const Vec& lg) {
    double L = 0;
    for (int i = 0; i < N; ++i) {
      if (targets[i] == ignore) continue;
      double mx = -1e300, s = 0;
      for (int j = 0; j < V; ++j) mx = std::max(mx, lg[i * V + j]);
      for (int j = 0; j < V; ++j) s += std::exp(lg[i * V + j] - mx);
      const double lse = mx + std::log(s);
      L += ce_scale * (lse - lg[i * V + targets[i]]) + z_scale * lse * lse;
    }
    return L;
  };
  std::vector<float> lse(N), d(N * V);
  const CrossEntropyStats s =
      CrossEntropyForward(lse.data(), logits.data(), targets.data(), N, V, ignore);
  EXPECT_EQ(s.n_valid, 4);
  EXPECT_NEAR(ce_scale * s.ce_sum + z_scale * s.lse_sq_sum, f(ToD(logits)), 1e-5);
  CrossEntropyBackward(d.data(), logits.data(), lse.data(), targets.data(), N, V, ignore, ce_scale,
                       z_scale);
  ExpectClose(d, NumericGrad(f, ToD(logits)), 1e-4, "dlogits");
  // In place (the trainer reuses the logits buffer for the gradient).
  CrossEntropyBackward(logits.data(), logits.data(), lse.data(), targets.data(), N, V, ignore,
                       ce_scale, z_scale);
  for (int i = 0; i < N * V; ++i) EXPECT_FLOAT_EQ(logits[i], d[i]);
  const std::vector<int> bad = {3, 9, 0, 1, 2, 3};
  EXPECT_ANY_THROW(CrossEntropyForward(lse.data(), d.data(), bad.data(), N, V, ignore));
}

}  // namespace train_kernels_test
}  // namespace elm
