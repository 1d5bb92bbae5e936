// Fast elementwise kernels against their plain `_ref` twins (kernels/elementwise.h): exact for
// arithmetic, a few ulp for the vectorised transcendentals, odd sizes so that every vector tail
// and thread split is exercised, plus run-to-run and thread-count determinism.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "common/rng.h"
#include "kernels/elementwise.h"

using namespace hippo;
using namespace hippo::ew;

// memcmp of empty ranges with null pointers is undefined behaviour; empty ranges are equal.
inline int cmp_bytes(const void* a, const void* b, size_t n) { return n == 0 ? 0 : std::memcmp(a, b, n); }

namespace {

const std::vector<int64_t> kSizes = {0, 1, 2, 15, 17, 1000003};

std::vector<float> normal(int64_t n, uint64_t seed, float scale = 1.0f) {
    Rng r(seed);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = float(r.normal()) * scale;
    return v;
}
std::vector<float> uniform(int64_t n, uint64_t seed, float lo, float hi) {
    Rng r(seed);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = lo + (hi - lo) * r.uniform();
    return v;
}

// Distance in units in the last place (0 for equal values, NaN == NaN counts as equal).
int64_t ulp_dist(float a, float b) {
    if (std::isnan(a) && std::isnan(b)) return 0;
    if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<int64_t>::max();
    if (a == b) return 0;
    int32_t ia, ib;
    std::memcpy(&ia, &a, 4);
    std::memcpy(&ib, &b, 4);
    int64_t la = ia < 0 ? int64_t(int32_t(0x80000000u)) - ia : ia;
    int64_t lb = ib < 0 ? int64_t(int32_t(0x80000000u)) - ib : ib;
    return std::llabs(la - lb);
}

// Every element within max_ulp, or within abs_floor in absolute terms (values near 0).
void expect_ulp(const std::vector<float>& got, const std::vector<float>& ref, const std::vector<float>& x,
                int64_t max_ulp, float abs_floor, const char* what) {
    int64_t worst = 0, wi = -1;
    for (size_t i = 0; i < got.size(); i++) {
        int64_t d = ulp_dist(got[i], ref[i]);
        if (d > max_ulp && !(std::fabs(got[i] - ref[i]) <= abs_floor) && d > worst) {
            worst = d;
            wi = int64_t(i);
        }
    }
    EXPECT_LT(wi, 0) << what << ": x=" << (wi >= 0 ? x[static_cast<size_t>(wi)] : 0) << " got " << (wi >= 0 ? got[static_cast<size_t>(wi)] : 0)
                     << " want " << (wi >= 0 ? ref[static_cast<size_t>(wi)] : 0) << " (" << worst << " ulp)";
}

void expect_close(const std::vector<float>& got, const std::vector<float>& ref, double atol, double rtol,
                  const std::string& what) {
    ASSERT_EQ(got.size(), ref.size());
    int64_t wi = -1;
    double worst = 0;
    for (size_t i = 0; i < got.size(); i++) {
        double d = std::fabs(double(got[i]) - ref[i]);
        bool ok = d <= atol + rtol * std::fabs(double(ref[i])) || (std::isnan(got[i]) && std::isnan(ref[i]));
        if (!ok && (wi < 0 || d > worst)) {
            worst = d;
            wi = int64_t(i);
        }
    }
    EXPECT_LT(wi, 0) << what << ": element " << wi << " got " << (wi >= 0 ? got[static_cast<size_t>(wi)] : 0) << " want "
                     << (wi >= 0 ? ref[static_cast<size_t>(wi)] : 0);
}

// Interesting inputs for a unary map: random values in the op's domain plus special points.
std::vector<float> unary_inputs(UnOp op, int64_t n, uint64_t seed) {
    std::vector<float> x;
    if (op == UnOp::Log || op == UnOp::Sqrt) {
        x = uniform(n, seed, 0.0f, 1.0f);
        for (size_t i = 0; i < x.size(); i++) x[i] = std::exp(40.0f * x[i] - 20.0f) * (1.0f + 1e-3f * float(i % 7));
    } else {
        x = normal(n, seed, op == UnOp::Exp ? 20.0f : 4.0f);
    }
    return x;
}

const std::vector<float> kSpecials = {0.0f, -0.0f, 1e-8f, -1e-8f, 1e-3f, -1e-3f, 0.5f, -0.5f, 0.625f, -0.625f,
                                      1.0f, -1.0f, 2.0f, -2.0f, 5.0f, -5.0f, 9.0f, -9.0f, 15.0f, -15.0f, 30.0f,
                                      -30.0f, 87.0f, -87.0f, 88.7f, 89.0f, -100.0f, -104.0f, 200.0f, -200.0f,
                                      std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                                      1e-40f, 3e38f};

struct UlpSpec {
    UnOp op;
    int64_t ulp;
    float abs_floor;
};
// Tolerances: the maps are within 2-4 ulp where they are well conditioned. gelu's far negative
// tail carries the ~3e-7 relative error of the erfc fit; gelu_tanh's for x < -3 the rounding of
// u = sqrt(2/pi) (x + 0.044715 x^3) in fp32, amplified by e^{2u} (PyTorch's fp32 kernel has the same).
// Values below 1e-35 in magnitude are compared in absolute terms.
const std::vector<UlpSpec> kUnary = {
    {UnOp::Exp, 2, 1e-37f},     {UnOp::Log, 2, 0},           {UnOp::Sqrt, 0, 0},
    {UnOp::Tanh, 3, 0},         {UnOp::Sigmoid, 3, 1e-35f},  {UnOp::Silu, 4, 1e-35f},
    {UnOp::Relu, 0, 0},         {UnOp::Softplus, 4, 1e-35f}, {UnOp::Gelu, 12, 1e-35f},
    {UnOp::GeluTanh, 24, 1e-10f},  // x < -4: |y| < 1e-4, relative error up to ~1e-5, absolute < 1e-11
};

}  // namespace

TEST(ElementwiseKernels, BinarySameShape) {
    for (int64_t n : kSizes) {
        auto a = normal(n, 1), b = uniform(n, 2, 0.5f, 2.0f);
        for (BinOp op : {BinOp::Add, BinOp::Sub, BinOp::Mul, BinOp::Div}) {
            std::vector<float> y(static_cast<size_t>(n)), r(static_cast<size_t>(n));
            binary(op, y.data(), a.data(), b.data(), n);
            binary_ref(op, r.data(), a.data(), b.data(), n);
            EXPECT_EQ(0, cmp_bytes(y.data(), r.data(), static_cast<size_t>(n) * 4)) << name(op) << " n=" << n;
            // in place (y == a)
            std::vector<float> ip = a;
            binary(op, ip.data(), ip.data(), b.data(), n);
            EXPECT_EQ(0, cmp_bytes(ip.data(), r.data(), static_cast<size_t>(n) * 4)) << name(op) << " in place n=" << n;
        }
    }
}

TEST(ElementwiseKernels, BinaryScalarRowCol) {
    for (int64_t n : kSizes) {
        auto a = normal(n, 3);
        for (BinOp op : {BinOp::Add, BinOp::Sub, BinOp::Mul, BinOp::Div})
            for (bool left : {false, true}) {
                std::vector<float> y(static_cast<size_t>(n)), r(static_cast<size_t>(n));
                binary_scalar(op, y.data(), a.data(), 1.7f, left, n);
                binary_scalar_ref(op, r.data(), a.data(), 1.7f, left, n);
                EXPECT_EQ(0, cmp_bytes(y.data(), r.data(), static_cast<size_t>(n) * 4)) << name(op) << " n=" << n;
            }
    }
    for (auto [R, C] : std::vector<std::pair<int64_t, int64_t>>{{0, 5}, {1, 1}, {3, 17}, {1, 1000003}, {5, 200001},
                                                                {4001, 251}, {100003, 3}}) {
        auto a = normal(R * C, 4);
        auto brow = uniform(C, 5, 0.5f, 2.0f), bcol = uniform(R, 6, 0.5f, 2.0f);
        for (BinOp op : {BinOp::Add, BinOp::Sub, BinOp::Mul, BinOp::Div})
            for (bool swap : {false, true}) {
                std::vector<float> y(static_cast<size_t>(R * C)), r(static_cast<size_t>(R * C));
                binary_row(op, y.data(), a.data(), brow.data(), R, C, swap);
                binary_row_ref(op, r.data(), a.data(), brow.data(), R, C, swap);
                EXPECT_EQ(0, cmp_bytes(y.data(), r.data(), y.size() * 4)) << "row " << name(op) << " " << R << "x" << C;
                binary_col(op, y.data(), a.data(), bcol.data(), R, C, swap);
                binary_col_ref(op, r.data(), a.data(), bcol.data(), R, C, swap);
                EXPECT_EQ(0, cmp_bytes(y.data(), r.data(), y.size() * 4)) << "col " << name(op) << " " << R << "x" << C;
            }
    }
}

TEST(ElementwiseKernels, BinaryStrided) {
    struct Case {
        std::vector<int64_t> shape, sa, sb;
        int64_t na, nb;
    };
    // (3,1,5) op (4,1) -> (3,4,5); (2,3,4) op transposed b; (7,1,300) op (1,5,1); scalar dims
    std::vector<Case> cases = {
        {{3, 4, 5}, {5, 0, 1}, {0, 1, 0}, 15, 4},
        {{2, 3, 4}, {12, 4, 1}, {1, 2, 6}, 24, 24},
        {{7, 5, 300}, {300, 0, 1}, {0, 1, 0}, 2100, 5},
        {{1000, 1001}, {1001, 1}, {1, 1000}, 1001000, 1001000},
        {{2, 1, 3}, {3, 0, 1}, {0, 0, 0}, 6, 1},
        {{}, {}, {}, 1, 1},
    };
    for (auto& c : cases) {
        auto a = normal(c.na, 7), b = uniform(c.nb, 8, 0.5f, 2.0f);
        int64_t n = 1;
        for (int64_t s : c.shape) n *= s;
        for (BinOp op : {BinOp::Add, BinOp::Sub, BinOp::Mul, BinOp::Div}) {
            std::vector<float> y(static_cast<size_t>(n)), r(static_cast<size_t>(n));
            binary_strided(op, y.data(), a.data(), b.data(), int(c.shape.size()), c.shape.data(), c.sa.data(), c.sb.data());
            binary_strided_ref(op, r.data(), a.data(), b.data(), int(c.shape.size()), c.shape.data(), c.sa.data(),
                               c.sb.data());
            EXPECT_EQ(0, cmp_bytes(y.data(), r.data(), y.size() * 4)) << name(op) << " n=" << n;
        }
    }
}

TEST(ElementwiseKernels, Affine) {
    for (int64_t n : kSizes) {
        auto a = normal(n, 9);
        std::vector<float> y(static_cast<size_t>(n)), r(static_cast<size_t>(n));
        affine(y.data(), a.data(), -1.5f, 0.25f, n);
        affine_ref(r.data(), a.data(), -1.5f, 0.25f, n);
        expect_close(y, r, 1e-7, 1e-7, "affine");
    }
}

TEST(ElementwiseKernels, UnaryWithinUlps) {
    for (auto& spec : kUnary)
        for (int64_t n : kSizes) {
            auto x = unary_inputs(spec.op, n, 10 + uint64_t(spec.op));
            std::vector<float> y(static_cast<size_t>(n)), r(static_cast<size_t>(n));
            unary(spec.op, y.data(), x.data(), n);
            unary_ref(spec.op, r.data(), x.data(), n);
            expect_ulp(y, r, x, spec.ulp, spec.abs_floor, (std::string(name(spec.op)) + " n=" + std::to_string(n)).c_str());
        }
}

TEST(ElementwiseKernels, UnarySpecialValues) {
    std::vector<float> x = kSpecials;
    for (float v : kSpecials) x.push_back(-v);
    x.push_back(std::numeric_limits<float>::quiet_NaN());
    int64_t n = int64_t(x.size());
    for (auto& spec : kUnary) {
        std::vector<float> y(x.size()), r(x.size());
        unary(spec.op, y.data(), x.data(), n);
        unary_ref(spec.op, r.data(), x.data(), n);
        expect_ulp(y, r, x, spec.ulp, spec.abs_floor, name(spec.op));
    }
}

// Dense sweeps of the approximations over their whole useful range.
TEST(ElementwiseKernels, TranscendentalSweeps) {
    const int64_t n = 2000000;
    for (auto& spec : kUnary) {
        std::vector<float> x(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; i++) {
            double t = double(i) / double(n - 1);
            x[static_cast<size_t>(i)] = (spec.op == UnOp::Log || spec.op == UnOp::Sqrt) ? float(std::exp(-87.0 + 175.0 * t))
                           : spec.op == UnOp::Exp                          ? float(-103.0 + 191.5 * t)
                                                                           : float(-30.0 + 60.0 * t);
        }
        std::vector<float> y(static_cast<size_t>(n)), r(static_cast<size_t>(n));
        unary(spec.op, y.data(), x.data(), n);
        unary_ref(spec.op, r.data(), x.data(), n);
        expect_ulp(y, r, x, spec.ulp, spec.abs_floor, name(spec.op));
    }
}

TEST(ElementwiseKernels, UnaryBackward) {
    for (auto& spec : kUnary)
        for (int64_t n : kSizes) {
            auto x = unary_inputs(spec.op, n, 20 + uint64_t(spec.op));
            if (spec.op == UnOp::Exp)
                for (auto& v : x) v *= 0.1f;
            auto dy = normal(n, 21);
            std::vector<float> t = x;
            if (unary_backward_uses_output(spec.op)) unary_ref(spec.op, t.data(), x.data(), n);
            std::vector<float> g(static_cast<size_t>(n)), r(static_cast<size_t>(n));
            unary_backward(spec.op, g.data(), dy.data(), t.data(), n);
            unary_backward_ref(spec.op, r.data(), dy.data(), t.data(), n);
            expect_close(g, r, 1e-6, 2e-6, std::string(name(spec.op)) + " backward n=" + std::to_string(n));
        }
}

TEST(ElementwiseKernels, PowAndDivBackward) {
    for (int64_t n : kSizes) {
        auto x = uniform(n, 30, 0.1f, 3.0f), dy = normal(n, 31), b = uniform(n, 32, 0.5f, 2.0f);
        for (float p : {1.0f, 2.0f, 0.5f, -1.0f, -0.5f, 3.0f, 1.5f, 0.0f}) {
            std::vector<float> y(static_cast<size_t>(n)), r(static_cast<size_t>(n));
            pow_scalar(y.data(), x.data(), p, n);
            pow_scalar_ref(r.data(), x.data(), p, n);
            expect_close(y, r, 0, 3e-7, "pow " + std::to_string(p));
            pow_scalar_backward(y.data(), dy.data(), x.data(), p, n);
            pow_scalar_backward_ref(r.data(), dy.data(), x.data(), p, n);
            expect_close(y, r, 1e-7, 1e-6, "pow backward " + std::to_string(p));
        }
        std::vector<float> da(static_cast<size_t>(n)), db(static_cast<size_t>(n)), ra(static_cast<size_t>(n)), rb(static_cast<size_t>(n));
        div_backward(da.data(), db.data(), dy.data(), x.data(), b.data(), n);
        div_backward_ref(ra.data(), rb.data(), dy.data(), x.data(), b.data(), n);
        expect_close(da, ra, 0, 1e-7, "div backward a");
        expect_close(db, rb, 1e-7, 1e-6, "div backward b");
    }
}

TEST(ElementwiseKernels, SumAndMaxDim) {
    struct C {
        int64_t o, r, i;
    };
    for (C c : std::vector<C>{{1, 0, 1}, {1, 1, 1}, {1, 17, 1}, {1, 1000003, 1}, {3, 15, 1}, {1000003, 2, 1}, {1, 2, 17},
                              {3, 1000, 17}, {2, 3001, 1025}, {1, 5000, 300}, {7, 1, 5}}) {
        int64_t n = c.o * c.r * c.i;
        auto x = normal(n, 40);
        std::vector<float> y(static_cast<size_t>(c.o * c.i)), r(static_cast<size_t>(c.o * c.i));
        sum_dim(y.data(), x.data(), c.o, c.r, c.i);
        sum_dim_ref(r.data(), x.data(), c.o, c.r, c.i);
        expect_close(y, r, 1e-5 * std::sqrt(double(c.r)), 1e-5, "sum_dim");
        if (c.r == 0) continue;
        // ties: quantise so equal values are common
        for (auto& v : x) v = std::round(v * 2.0f);
        std::vector<int64_t> yi(y.size()), ri(y.size());
        max_dim(y.data(), yi.data(), x.data(), c.o, c.r, c.i);
        max_dim_ref(r.data(), ri.data(), x.data(), c.o, c.r, c.i);
        EXPECT_EQ(0, cmp_bytes(y.data(), r.data(), y.size() * 4));
        EXPECT_EQ(yi, ri);
    }
    // NaN is maximal, first one wins
    std::vector<float> x = {1.0f, std::nanf(""), 5.0f, std::nanf("")};
    float y;
    int64_t i;
    max_dim(&y, &i, x.data(), 1, 4, 1);
    EXPECT_TRUE(std::isnan(y));
    EXPECT_EQ(i, 1);
}

TEST(ElementwiseKernels, BroadcastAndCopyRows) {
    std::vector<int64_t> shape = {3, 4, 5}, sx = {5, 0, 1};
    auto x = normal(15, 50);
    std::vector<float> y(60);
    broadcast_strided(y.data(), x.data(), 3, shape.data(), sx.data(), 0.5f);
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 4; b++)
            for (int c = 0; c < 5; c++) EXPECT_EQ(y[static_cast<size_t>(a * 20 + b * 5 + c)], 0.5f * x[static_cast<size_t>(a * 5 + c)]);
    auto src = normal(7 * 9, 51);
    std::vector<float> dst(7 * 12, -1.0f);
    copy_rows(dst.data() + 2, 12, src.data(), 9, 7, 9);
    for (int r = 0; r < 7; r++) {
        EXPECT_EQ(dst[static_cast<size_t>(r * 12 + 1)], -1.0f);
        for (int c = 0; c < 9; c++) EXPECT_EQ(dst[static_cast<size_t>(r * 12 + 2 + c)], src[static_cast<size_t>(r * 9 + c)]);
    }
}

TEST(ElementwiseKernels, Complex) {
    struct Case {
        std::vector<int64_t> shape, sa, sb;
        int64_t na, nb;
    };
    std::vector<Case> cases = {
        {{1000003}, {1}, {1}, 1000003, 1000003},
        {{17}, {1}, {0}, 17, 1},
        {{15}, {0}, {1}, 1, 15},
        {{2, 3, 5, 7}, {105, 35, 7, 1}, {0, 7, 0, 1}, 210, 21},  // RoPE-like (T, 1, D) broadcast
        {{4, 6}, {1, 4}, {6, 1}, 24, 24},
        {{}, {}, {}, 1, 1},
    };
    for (auto& c : cases) {
        auto a = normal(2 * c.na, 60), b = normal(2 * c.nb, 61);
        int64_t n = 1;
        for (int64_t s : c.shape) n *= s;
        for (bool conj : {false, true}) {
            std::vector<float> y(static_cast<size_t>(2 * n)), r(static_cast<size_t>(2 * n));
            complex_mul_strided(y.data(), a.data(), b.data(), int(c.shape.size()), c.shape.data(), c.sa.data(),
                                c.sb.data(), conj);
            complex_mul_strided_ref(r.data(), a.data(), b.data(), int(c.shape.size()), c.shape.data(), c.sa.data(),
                                    c.sb.data(), conj);
            expect_close(y, r, 1e-6, 1e-6, "complex_mul n=" + std::to_string(n));
        }
    }
    for (int64_t n : kSizes) {
        auto z = normal(2 * n, 62);
        std::vector<float> y(static_cast<size_t>(2 * n)), r(static_cast<size_t>(2 * n));
        complex_exp(y.data(), z.data(), n);
        complex_exp_ref(r.data(), z.data(), n);
        expect_close(y, r, 1e-6, 1e-6, "complex_exp");
        std::vector<float> re(static_cast<size_t>(n)), im(static_cast<size_t>(n)), back(static_cast<size_t>(2 * n));
        deinterleave(re.data(), im.data(), z.data(), n);
        interleave(back.data(), re.data(), im.data(), n);
        EXPECT_EQ(back, z);
    }
}

TEST(ElementwiseKernels, DeterministicAcrossRunsAndThreads) {
    const int64_t n = 3000017;
    auto x = normal(n, 70);
    std::vector<float> y1(static_cast<size_t>(n)), y2(static_cast<size_t>(n));
    unary(UnOp::GeluTanh, y1.data(), x.data(), n);
    unary(UnOp::GeluTanh, y2.data(), x.data(), n);
    EXPECT_EQ(0, cmp_bytes(y1.data(), y2.data(), static_cast<size_t>(n) * 4));
#ifdef _OPENMP
    int prev = omp_get_max_threads();
    float s[2], c[2][300];
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t == 0 ? 1 : std::max(2, prev));
        sum_dim(&s[t], x.data(), 1, n, 1);
        sum_dim(c[t], x.data(), 1, n / 300, 300);
    }
    omp_set_num_threads(prev);
    EXPECT_EQ(s[0], s[1]);
    EXPECT_EQ(0, cmp_bytes(c[0], c[1], sizeof(c[0])));
#endif
}
