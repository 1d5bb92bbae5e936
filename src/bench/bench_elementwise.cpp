#include "bench/bench_elementwise.h"

#include <functional>
#include <string>

#include "autograd/ops.h"
#include "autograd/tensor.h"
#include "common/rng.h"
#include "common/runtime.h"
#include "kernels/elementwise.h"

namespace hippo {

namespace {

BenchRecord make(const std::string& name, int64_t n, const char* pass, double bytes, const std::function<void()>& fn) {
    Timing t = time_median(fn, 5, n >= (1 << 20) ? 0.3 : 0.1);
    BenchRecord r;
    r.name = name;
    r.shape["n"] = n;
    r.pass = pass;
    r.ms = t.median_ms;
    r.runs = t.runs;
    r.derived["gbps"] = bytes / (t.median_ms * 1e-3) / 1e9;
    r.extra["threads"] = num_threads();
    return r;
}

}  // namespace

std::vector<BenchRecord> bench_elementwise() {
    std::vector<BenchRecord> recs;
    num_threads();  // applies the default thread count to OpenMP
    for (int64_t n : {int64_t(1) << 24, int64_t(1) << 16}) {
        Rng rng(7);
        Tensor a = Tensor::empty(Shape{n}), b = Tensor::empty(Shape{n}), y = Tensor::empty(Shape{n});
        for (int64_t i = 0; i < n; i++) {
            a.data()[i] = float(rng.normal());
            b.data()[i] = 0.5f + rng.uniform();
        }
        const float* pa = a.data();
        const float* pb = b.data();
        float* py = y.data();
        double f4 = double(sizeof(float));
        for (ew::BinOp op : {ew::BinOp::Add, ew::BinOp::Mul, ew::BinOp::Div})
            recs.push_back(make(std::string("elementwise.") + ew::name(op), n, "fwd", 3 * n * f4,
                                [&, op] { ew::binary(op, py, pa, pb, n); }));
        {
            int64_t C = 768, R = n / C;
            recs.push_back(make("elementwise.add_row", R * C, "fwd", (2 * R * C + C) * f4,
                                [&, R, C] { ew::binary_row(ew::BinOp::Add, py, pa, pb, R, C, false); }));
        }
        recs.push_back(make("elementwise.mul_scalar", n, "fwd", 2 * n * f4, [&] { ew::affine(py, pa, 1.5f, 0.0f, n); }));
        for (ew::UnOp op : {ew::UnOp::Exp, ew::UnOp::Log, ew::UnOp::Sqrt, ew::UnOp::Tanh, ew::UnOp::Sigmoid,
                            ew::UnOp::Silu, ew::UnOp::Relu, ew::UnOp::Softplus, ew::UnOp::Gelu, ew::UnOp::GeluTanh}) {
            const float* src = (op == ew::UnOp::Log || op == ew::UnOp::Sqrt) ? pb : pa;
            recs.push_back(make(std::string("elementwise.") + ew::name(op), n, "fwd", 2 * n * f4,
                                [&, op, src] { ew::unary(op, py, src, n); }));
        }
        for (ew::UnOp op : {ew::UnOp::Tanh, ew::UnOp::Silu, ew::UnOp::Gelu, ew::UnOp::GeluTanh})
            recs.push_back(make(std::string("elementwise.") + ew::name(op), n, "bwd", 3 * n * f4,
                                [&, op] { ew::unary_backward(op, py, pb, pa, n); }));
        recs.push_back(make("elementwise.exp_ref", n, "fwd", 2 * n * f4, [&] { ew::unary_ref(ew::UnOp::Exp, py, pa, n); }));
        recs.push_back(make("elementwise.sum", n, "fwd", n * f4, [&] { ew::sum_dim(py, pa, 1, n, 1); }));
        {
            int64_t C = 768, R = n / C;
            recs.push_back(make("elementwise.sum_rows", R * C, "fwd", (R * C + C) * f4,
                                [&, R, C] { ew::sum_dim(py, pa, 1, R, C); }));
        }
        // Tensor-level ops (output allocated per call by the caching allocator).
        NoGradGuard ng;
        Tensor a2 = a.reshape(Shape{n / 256, 256});
        recs.push_back(make("elementwise.tensor.add", n, "fwd", 3 * n * f4, [&] { Tensor o = add(a, b); }));
        recs.push_back(make("elementwise.tensor.mul", n, "fwd", 3 * n * f4, [&] { Tensor o = mul(a, b); }));
        recs.push_back(make("elementwise.tensor.exp", n, "fwd", 2 * n * f4, [&] { Tensor o = exp(a); }));
        recs.push_back(make("elementwise.tensor.gelu_tanh", n, "fwd", 2 * n * f4, [&] { Tensor o = gelu_tanh(a); }));
        recs.push_back(make("elementwise.tensor.sum", n, "fwd", n * f4, [&] { Tensor o = sum(a); }));
        recs.push_back(make("elementwise.tensor.sum_dim0", n, "fwd", n * f4, [&] { Tensor o = sum(a2, {0}); }));
    }
    return recs;
}

}  // namespace hippo
