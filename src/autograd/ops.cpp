// Part A of ops.h: broadcasting elementwise ops, unary maps, reductions, concat/split and the
// complex helpers. Forwards and backwards call the kernels of kernels/elementwise.h; backwards
// run under the NoGradGuard of Tensor::backward, so the ops they call record nothing.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include "autograd/ops.h"
#include "kernels/elementwise.h"

namespace hippo {

namespace {

using ew::BinOp;
using ew::UnOp;

// Element strides of a contiguous tensor of shape `in` read over the broadcast shape `out`
// (trailing dims aligned; 0 along dims that `in` lacks or has as 1).
void bcast_strides(const Shape& in, const Shape& out, int64_t* st) {
    int off = out.ndim() - in.ndim();
    int64_t s = 1;
    for (int d = out.ndim() - 1; d >= 0; d--) {
        int di = d - off;
        if (di < 0 || in[di] == 1) {
            st[d] = 0;
        } else {
            st[d] = s;
            s *= in[di];
        }
    }
}

// Shape `in` written with out.ndim() dims (leading 1s).
Shape aligned(const Shape& in, int nd) {
    std::vector<int64_t> v(size_t(nd - in.ndim()), 1);
    for (int i = 0; i < in.ndim(); i++) v.push_back(in[i]);
    return Shape(v);
}

// out = a op b with broadcasting; a, b contiguous. Picks the fastest kernel shape.
void binary_into(BinOp op, float* y, const Tensor& a, const Tensor& b, const Shape& os) {
    int64_t n = os.numel();
    if (n == 0) return;
    int64_t na = a.numel(), nb = b.numel();
    if (a.shape() == b.shape()) return ew::binary(op, y, a.data(), b.data(), n);
    if (nb == 1 && na == n) return ew::binary_scalar(op, y, a.data(), b.data()[0], false, n);
    if (na == 1 && nb == n) return ew::binary_scalar(op, y, b.data(), a.data()[0], true, n);
    int nd = os.ndim();
    // Row broadcast: the smaller side matches the trailing dims of the output (bias add), or
    // column broadcast: it matches the leading dims followed by ones.
    auto pattern = [&](const Shape& small, bool& row, bool& col) {
        Shape al = aligned(small, nd);
        int first = 0;
        while (first < nd && al[first] == 1) first++;
        row = true;
        for (int d = first; d < nd; d++) row &= al[d] == os[d];
        int last = nd;
        while (last > 0 && al[last - 1] == 1) last--;
        col = true;
        for (int d = 0; d < last; d++) col &= al[d] == os[d];
    };
    bool row = false, col = false;
    if (na == n) {
        pattern(b.shape(), row, col);
        if (row) return ew::binary_row(op, y, a.data(), b.data(), n / nb, nb, false);
        if (col) return ew::binary_col(op, y, a.data(), b.data(), nb, n / nb, false);
    }
    if (nb == n) {
        pattern(a.shape(), row, col);
        if (row) return ew::binary_row(op, y, b.data(), a.data(), n / na, na, true);
        if (col) return ew::binary_col(op, y, b.data(), a.data(), na, n / na, true);
    }
    int64_t sa[kMaxDims], sb[kMaxDims], shp[kMaxDims];
    bcast_strides(a.shape(), os, sa);
    bcast_strides(b.shape(), os, sb);
    for (int d = 0; d < nd; d++) shp[d] = os[d];
    ew::binary_strided(op, y, a.data(), b.data(), nd, shp, sa, sb);
}

Tensor binary_raw(BinOp op, const Tensor& a, const Tensor& b) {
    Tensor ac = a.contiguous(), bc = b.contiguous();
    Shape os = broadcast_shapes(ac.shape(), bc.shape());
    Tensor out = Tensor::empty(os);
    binary_into(op, out.data(), ac, bc, os);
    return out;
}

bool needs(const Tensor& t) { return t.defined() && t.requires_grad(); }

Tensor affine_raw(const Tensor& x, float alpha, float beta) {
    Tensor xc = x.contiguous();
    Tensor out = Tensor::empty(xc.shape());
    ew::affine(out.data(), xc.data(), alpha, beta, xc.numel());
    return out;
}

// Sorted, unique, normalised reduction dims (all dims when empty).
std::vector<int> norm_dims(const Shape& s, const std::vector<int>& dims) {
    std::vector<int> r;
    if (dims.empty()) {
        for (int i = 0; i < s.ndim(); i++) r.push_back(i);
        return r;
    }
    for (int d : dims) r.push_back(s.axis(d));
    std::sort(r.begin(), r.end());
    HIPPO_CHECK(std::adjacent_find(r.begin(), r.end()) == r.end(), "reduction: dim repeated in the dim list");
    return r;
}

Shape reduced_shape(const Shape& s, const std::vector<int>& rd, bool keepdim) {
    std::vector<int64_t> v;
    for (int i = 0; i < s.ndim(); i++) {
        bool r = std::binary_search(rd.begin(), rd.end(), i);
        if (!r) v.push_back(s[i]);
        else if (keepdim) v.push_back(1);
    }
    return Shape(v);
}

// Sum of contiguous x over the dims in rd (sorted) into y (the kept dims in order), scaled.
// Adjacent dims of one kind are merged; the innermost reduced group is summed first, each step
// one (outer, red, inner) kernel call, so any subset needs no permute.
void sum_into(float* y, const Tensor& x, const std::vector<int>& rd, float scale) {
    struct G {
        int64_t size;
        bool red;
    };
    std::vector<G> gs;
    for (int i = 0; i < x.ndim(); i++) {
        int64_t sz = x.shape()[i];
        bool r = std::binary_search(rd.begin(), rd.end(), i);
        if (sz == 1) continue;
        if (!gs.empty() && gs.back().red == r) gs.back().size *= sz;
        else gs.push_back({sz, r});
    }
    int64_t nout = 1;
    for (auto& g : gs)
        if (!g.red) nout *= g.size;
    if (x.numel() == 0) {
        std::fill_n(y, nout, 0.0f);
        return;
    }
    int nred = 0;
    for (auto& g : gs) nred += g.red;
    if (nred == 0) {
        ew::affine(y, x.data(), scale, 0.0f, nout);
        return;
    }
    Tensor cur = x;
    const float* src = x.data();
    while (nred > 0) {
        int j = int(gs.size()) - 1;
        while (!gs[j].red) j--;
        int64_t outer = 1, inner = 1;
        for (int i = 0; i < j; i++) outer *= gs[i].size;
        for (int i = j + 1; i < int(gs.size()); i++) inner *= gs[i].size;
        nred--;
        if (nred == 0) {
            ew::sum_dim(y, src, outer, gs[j].size, inner);
        } else {
            Tensor t = Tensor::empty(Shape{outer * inner});
            ew::sum_dim(t.data(), src, outer, gs[j].size, inner);
            cur = t;
            src = t.data();
        }
        gs.erase(gs.begin() + j);
        if (j > 0 && j < int(gs.size()) && gs[j - 1].red == gs[j].red) {
            gs[j - 1].size *= gs[j].size;
            gs.erase(gs.begin() + j);
        }
    }
    if (scale != 1.0f) ew::affine(y, y, scale, 0.0f, nout);
}

// Broadcast g (shape = in_shape reduced over rd, with or without keepdim) back to in_shape.
Tensor expand_back(const Tensor& g, const Shape& in_shape, const std::vector<int>& rd, float scale) {
    Tensor gc = g.contiguous();
    Shape keep = reduced_shape(in_shape, rd, true);
    int64_t st[kMaxDims], shp[kMaxDims];
    bcast_strides(keep, in_shape, st);
    for (int d = 0; d < in_shape.ndim(); d++) shp[d] = in_shape[d];
    Tensor out = Tensor::empty(in_shape);
    if (in_shape.numel() == 0) return out;
    ew::broadcast_strided(out.data(), gc.data(), in_shape.ndim(), shp, st, scale);
    return out;
}

Tensor reduce_sum(const Tensor& x_, const std::vector<int>& dims, bool keepdim, bool mean, const char* nm) {
    Tensor x = x_.contiguous();
    std::vector<int> rd = norm_dims(x.shape(), dims);
    int64_t count = 1;
    for (int d : rd) count *= x.shape()[d];
    float scale = mean ? (count ? 1.0f / float(count) : std::numeric_limits<float>::quiet_NaN()) : 1.0f;
    Tensor out = Tensor::empty(reduced_shape(x.shape(), rd, keepdim));
    sum_into(out.data(), x, rd, scale);
    if (any_requires_grad({&x})) {
        Shape in_shape = x.shape();
        record(out, nm, {x}, [in_shape, rd, scale](const Tensor& g) {
            return std::vector<Tensor>{expand_back(g, in_shape, rd, scale)};
        });
    }
    return out;
}

Tensor unary_op(UnOp op, const char* nm, const Tensor& x_) {
    Tensor x = x_.contiguous();
    Tensor out = Tensor::empty(x.shape());
    ew::unary(op, out.data(), x.data(), x.numel());
    if (any_requires_grad({&x})) {
        Tensor saved = ew::unary_backward_uses_output(op) ? out.detach() : x.detach();
        record(out, nm, {x}, [op, saved](const Tensor& g) {
            Tensor gc = g.contiguous();
            Tensor dx = Tensor::empty(saved.shape());
            ew::unary_backward(op, dx.data(), gc.data(), saved.data(), saved.numel());
            return std::vector<Tensor>{dx};
        });
    }
    return out;
}

// (..., 2) complex product with broadcasting over the leading dims; no recording.
Tensor cmul_raw(const Tensor& a_, const Tensor& b_, bool conj_b) {
    Tensor a = a_.contiguous(), b = b_.contiguous();
    HIPPO_CHECK(a.ndim() >= 1 && a.size(-1) == 2 && b.ndim() >= 1 && b.size(-1) == 2,
                "complex_mul: operands need a trailing dim of 2, got %s and %s", a.shape().str().c_str(),
                b.shape().str().c_str());
    std::vector<int64_t> av = a.shape().vec(), bv = b.shape().vec();
    av.pop_back();
    bv.pop_back();
    Shape al(av), bl(bv);
    Shape ol = broadcast_shapes(al, bl);
    std::vector<int64_t> ov = ol.vec();
    ov.push_back(2);
    HIPPO_CHECK(ov.size() <= size_t(kMaxDims), "complex_mul: too many dims");
    Tensor out = Tensor::empty(Shape(ov));
    if (out.numel() == 0) return out;
    int64_t sa[kMaxDims], sb[kMaxDims], shp[kMaxDims];
    bcast_strides(al, ol, sa);
    bcast_strides(bl, ol, sb);
    for (int d = 0; d < ol.ndim(); d++) shp[d] = ol[d];
    ew::complex_mul_strided(out.data(), a.data(), b.data(), ol.ndim(), shp, sa, sb, conj_b);
    return out;
}

Tensor complex_part(const Tensor& z_, bool imag) {
    Tensor z = z_.contiguous();
    HIPPO_CHECK(z.ndim() >= 1 && z.size(-1) == 2, "complex_%s: needs a trailing dim of 2, got %s",
                imag ? "imag" : "real", z.shape().str().c_str());
    std::vector<int64_t> v = z.shape().vec();
    v.pop_back();
    Tensor out = Tensor::empty(Shape(v));
    int64_t n = out.numel();
    ew::deinterleave(imag ? nullptr : out.data(), imag ? out.data() : nullptr, z.data(), n);
    if (any_requires_grad({&z})) {
        Shape zs = z.shape();
        record(out, imag ? "complex_imag" : "complex_real", {z}, [zs, imag](const Tensor& g) {
            Tensor gc = g.contiguous();
            Tensor gz = Tensor::empty(zs);
            ew::interleave(gz.data(), imag ? nullptr : gc.data(), imag ? gc.data() : nullptr, gc.numel());
            return std::vector<Tensor>{gz};
        });
    }
    return out;
}

}  // namespace

// =============================================================================================
// broadcasting

Shape broadcast_shapes(const Shape& a, const Shape& b) {
    int nd = std::max(a.ndim(), b.ndim());
    std::vector<int64_t> v(static_cast<size_t>(nd), 0);
    for (int i = 0; i < nd; i++) {
        int ia = i - (nd - a.ndim()), ib = i - (nd - b.ndim());
        int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
        HIPPO_CHECK(da == db || da == 1 || db == 1, "shapes %s and %s do not broadcast", a.str().c_str(),
                    b.str().c_str());
        v[size_t(i)] = da == 1 ? db : da;
    }
    return Shape(v);
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
    if (g.shape() == shape) return g;
    int lead = g.ndim() - shape.ndim();
    HIPPO_CHECK(lead >= 0, "sum_to: cannot sum %s to the larger rank %s", g.shape().str().c_str(), shape.str().c_str());
    std::vector<int> dims;
    for (int i = 0; i < g.ndim(); i++) {
        if (i < lead) {
            dims.push_back(i);
            continue;
        }
        int64_t want = shape[i - lead];
        HIPPO_CHECK(want == g.shape()[i] || want == 1, "sum_to: %s does not broadcast to %s", shape.str().c_str(),
                    g.shape().str().c_str());
        if (want == 1 && g.shape()[i] != 1) dims.push_back(i);
    }
    if (dims.empty()) return g.reshape(shape);
    return sum(g, dims, true).reshape(shape);
}

// =============================================================================================
// binary ops

Tensor add(const Tensor& a_, const Tensor& b_) {
    Tensor a = a_.contiguous(), b = b_.contiguous();
    Tensor out = binary_raw(BinOp::Add, a, b);
    if (any_requires_grad({&a, &b})) {
        Shape as = a.shape(), bs = b.shape();
        bool ga = needs(a), gb = needs(b);
        record(out, "add", {a, b}, [as, bs, ga, gb](const Tensor& g) {
            return std::vector<Tensor>{ga ? sum_to(g, as) : Tensor(), gb ? sum_to(g, bs) : Tensor()};
        });
    }
    return out;
}

Tensor sub(const Tensor& a_, const Tensor& b_) {
    Tensor a = a_.contiguous(), b = b_.contiguous();
    Tensor out = binary_raw(BinOp::Sub, a, b);
    if (any_requires_grad({&a, &b})) {
        Shape as = a.shape(), bs = b.shape();
        bool ga = needs(a), gb = needs(b);
        record(out, "sub", {a, b}, [as, bs, ga, gb](const Tensor& g) {
            return std::vector<Tensor>{ga ? sum_to(g, as) : Tensor(),
                                       gb ? affine_raw(sum_to(g, bs), -1.0f, 0.0f) : Tensor()};
        });
    }
    return out;
}

Tensor mul(const Tensor& a_, const Tensor& b_) {
    Tensor a = a_.contiguous(), b = b_.contiguous();
    Tensor out = binary_raw(BinOp::Mul, a, b);
    if (any_requires_grad({&a, &b})) {
        bool ga = needs(a), gb = needs(b);
        Tensor ad = a.detach(), bd = b.detach();
        record(out, "mul", {a, b}, [ad, bd, ga, gb](const Tensor& g) {
            return std::vector<Tensor>{ga ? sum_to(binary_raw(BinOp::Mul, g, bd), ad.shape()) : Tensor(),
                                       gb ? sum_to(binary_raw(BinOp::Mul, g, ad), bd.shape()) : Tensor()};
        });
    }
    return out;
}

Tensor div(const Tensor& a_, const Tensor& b_) {
    Tensor a = a_.contiguous(), b = b_.contiguous();
    Tensor out = binary_raw(BinOp::Div, a, b);
    if (any_requires_grad({&a, &b})) {
        bool ga = needs(a), gb = needs(b);
        Tensor ad = a.detach(), bd = b.detach(), od = out.detach();
        record(out, "div", {a, b}, [ad, bd, od, ga, gb](const Tensor& g) {
            if (ad.shape() == bd.shape()) {
                Tensor gc = g.contiguous();
                Tensor da = ga ? Tensor::empty(ad.shape()) : Tensor();
                Tensor db = gb ? Tensor::empty(bd.shape()) : Tensor();
                ew::div_backward(ga ? da.data() : nullptr, gb ? db.data() : nullptr, gc.data(), ad.data(), bd.data(),
                                 gc.numel());
                return std::vector<Tensor>{da, db};
            }
            Tensor t = binary_raw(BinOp::Div, g, bd);  // dy / b over the output shape
            Tensor da = ga ? sum_to(t, ad.shape()) : Tensor();
            Tensor db;
            if (gb) db = affine_raw(sum_to(binary_raw(BinOp::Mul, t, od), bd.shape()), -1.0f, 0.0f);
            return std::vector<Tensor>{da, db};
        });
    }
    return out;
}

Tensor add_scalar(const Tensor& a, float s) {
    Tensor out = affine_raw(a, 1.0f, s);
    record(out, "add_scalar", {a}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
    return out;
}

Tensor mul_scalar(const Tensor& a, float s) {
    Tensor out = affine_raw(a, s, 0.0f);
    record(out, "mul_scalar", {a}, [s](const Tensor& g) { return std::vector<Tensor>{affine_raw(g, s, 0.0f)}; });
    return out;
}

Tensor neg(const Tensor& a) {
    Tensor out = affine_raw(a, -1.0f, 0.0f);
    record(out, "neg", {a}, [](const Tensor& g) { return std::vector<Tensor>{affine_raw(g, -1.0f, 0.0f)}; });
    return out;
}

// =============================================================================================
// unary

Tensor exp(const Tensor& x) { return unary_op(UnOp::Exp, "exp", x); }
Tensor log(const Tensor& x) { return unary_op(UnOp::Log, "log", x); }
Tensor sqrt(const Tensor& x) { return unary_op(UnOp::Sqrt, "sqrt", x); }
Tensor tanh(const Tensor& x) { return unary_op(UnOp::Tanh, "tanh", x); }
Tensor sigmoid(const Tensor& x) { return unary_op(UnOp::Sigmoid, "sigmoid", x); }
Tensor silu(const Tensor& x) { return unary_op(UnOp::Silu, "silu", x); }
Tensor relu(const Tensor& x) { return unary_op(UnOp::Relu, "relu", x); }
Tensor softplus(const Tensor& x) { return unary_op(UnOp::Softplus, "softplus", x); }
Tensor gelu(const Tensor& x) { return unary_op(UnOp::Gelu, "gelu", x); }
Tensor gelu_tanh(const Tensor& x) { return unary_op(UnOp::GeluTanh, "gelu_tanh", x); }

Tensor pow_scalar(const Tensor& x_, float p) {
    Tensor x = x_.contiguous();
    Tensor out = Tensor::empty(x.shape());
    ew::pow_scalar(out.data(), x.data(), p, x.numel());
    if (any_requires_grad({&x})) {
        Tensor xd = x.detach();
        record(out, "pow_scalar", {x}, [xd, p](const Tensor& g) {
            Tensor gc = g.contiguous();
            Tensor dx = Tensor::empty(xd.shape());
            ew::pow_scalar_backward(dx.data(), gc.data(), xd.data(), p, xd.numel());
            return std::vector<Tensor>{dx};
        });
    }
    return out;
}

// =============================================================================================
// reductions

Tensor sum(const Tensor& x, const std::vector<int>& dims, bool keepdim) {
    return reduce_sum(x, dims, keepdim, false, "sum");
}

Tensor mean(const Tensor& x, const std::vector<int>& dims, bool keepdim) {
    return reduce_sum(x, dims, keepdim, true, "mean");
}

Tensor max(const Tensor& x_, int dim, bool keepdim) {
    Tensor x = x_.contiguous();
    int a = x.shape().axis(dim);
    int64_t red = x.shape()[a];
    HIPPO_CHECK(red > 0, "max: dim %d of shape %s is empty", dim, x.shape().str().c_str());
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < a; i++) outer *= x.shape()[i];
    for (int i = a + 1; i < x.ndim(); i++) inner *= x.shape()[i];
    Tensor out = Tensor::empty(reduced_shape(x.shape(), {a}, keepdim));
    auto idx = std::make_shared<std::vector<int64_t>>(size_t(outer * inner));
    ew::max_dim(out.data(), idx->data(), x.data(), outer, red, inner);
    if (any_requires_grad({&x})) {
        Shape xs = x.shape();
        record(out, "max", {x}, [xs, idx, outer, red, inner](const Tensor& g) {
            Tensor gc = g.contiguous();
            Tensor dx = Tensor::empty(xs);
            ew::max_dim_backward(dx.data(), gc.data(), idx->data(), outer, red, inner);
            return std::vector<Tensor>{dx};
        });
    }
    return out;
}

// =============================================================================================
// structure

Tensor concat(const std::vector<Tensor>& xs_, int dim) {
    HIPPO_CHECK(!xs_.empty(), "concat: no tensors");
    std::vector<Tensor> xs;
    for (auto& t : xs_) xs.push_back(t.contiguous());
    const Shape& s0 = xs[0].shape();
    int a = s0.axis(dim);
    int64_t total = 0;
    for (auto& t : xs) {
        HIPPO_CHECK(t.ndim() == s0.ndim(), "concat: ranks differ (%s vs %s)", t.shape().str().c_str(), s0.str().c_str());
        for (int i = 0; i < s0.ndim(); i++)
            HIPPO_CHECK(i == a || t.shape()[i] == s0[i], "concat along dim %d: shapes %s and %s differ elsewhere", dim,
                        t.shape().str().c_str(), s0.str().c_str());
        total += t.shape()[a];
    }
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < a; i++) outer *= s0[i];
    for (int i = a + 1; i < s0.ndim(); i++) inner *= s0[i];
    Shape os = s0;
    os[a] = total;
    Tensor out = Tensor::empty(os);
    int64_t row = total * inner, off = 0;
    std::vector<int64_t> offs, cols;
    for (auto& t : xs) {
        int64_t c = t.shape()[a] * inner;
        ew::copy_rows(out.data() + off, row, t.data(), c, outer, c);
        offs.push_back(off);
        cols.push_back(c);
        off += c;
    }
    bool any = false;
    for (auto& t : xs) any |= needs(t);
    if (any && grad_enabled()) {
        std::vector<Shape> shapes;
        std::vector<bool> want;
        for (auto& t : xs) {
            shapes.push_back(t.shape());
            want.push_back(needs(t));
        }
        record(out, "concat", xs, [shapes, want, offs, cols, outer, row](const Tensor& g) {
            Tensor gc = g.contiguous();
            std::vector<Tensor> r(shapes.size());
            for (size_t i = 0; i < shapes.size(); i++) {
                if (!want[i]) continue;
                r[i] = Tensor::empty(shapes[i]);
                ew::copy_rows(r[i].data(), cols[i], gc.data() + offs[i], row, outer, cols[i]);
            }
            return r;
        });
    }
    return out;
}

std::vector<Tensor> split(const Tensor& x_, const std::vector<int64_t>& sizes, int dim) {
    Tensor x = x_.contiguous();
    int a = x.shape().axis(dim);
    int64_t total = 0;
    for (int64_t s : sizes) {
        HIPPO_CHECK(s >= 0, "split: negative size %lld", (long long)s);
        total += s;
    }
    HIPPO_CHECK(total == x.shape()[a], "split: sizes add up to %lld, dim %d has %lld", (long long)total, dim,
                (long long)x.shape()[a]);
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < a; i++) outer *= x.shape()[i];
    for (int i = a + 1; i < x.ndim(); i++) inner *= x.shape()[i];
    int64_t row = total * inner, off = 0;
    std::vector<Tensor> outs;
    bool rec = any_requires_grad({&x});
    for (int64_t s : sizes) {
        Shape ps = x.shape();
        ps[a] = s;
        Tensor o = Tensor::empty(ps);
        int64_t c = s * inner;
        ew::copy_rows(o.data(), c, x.data() + off, row, outer, c);
        if (rec) {
            Shape xs = x.shape();
            record(o, "split", {x}, [xs, off, c, row, outer](const Tensor& g) {
                Tensor gc = g.contiguous();
                Tensor dx = Tensor::zeros(xs);
                ew::copy_rows(dx.data() + off, row, gc.data(), c, outer, c);
                return std::vector<Tensor>{dx};
            });
        }
        outs.push_back(o);
        off += c;
    }
    return outs;
}

// =============================================================================================
// complex

Tensor complex_mul(const Tensor& a_, const Tensor& b_) {
    Tensor a = a_.contiguous(), b = b_.contiguous();
    Tensor out = cmul_raw(a, b, false);
    if (any_requires_grad({&a, &b})) {
        bool ga = needs(a), gb = needs(b);
        Tensor ad = a.detach(), bd = b.detach();
        // For L real: dL/da = dy * conj(b), dL/db = dy * conj(a) (pairs as (re, im)).
        record(out, "complex_mul", {a, b}, [ad, bd, ga, gb](const Tensor& g) {
            return std::vector<Tensor>{ga ? sum_to(cmul_raw(g, bd, true), ad.shape()) : Tensor(),
                                       gb ? sum_to(cmul_raw(g, ad, true), bd.shape()) : Tensor()};
        });
    }
    return out;
}

Tensor complex_exp(const Tensor& z_) {
    Tensor z = z_.contiguous();
    HIPPO_CHECK(z.ndim() >= 1 && z.size(-1) == 2, "complex_exp: needs a trailing dim of 2, got %s",
                z.shape().str().c_str());
    Tensor out = Tensor::empty(z.shape());
    ew::complex_exp(out.data(), z.data(), z.numel() / 2);
    if (any_requires_grad({&z})) {
        Tensor od = out.detach();
        record(out, "complex_exp", {z}, [od](const Tensor& g) { return std::vector<Tensor>{cmul_raw(g, od, true)}; });
    }
    return out;
}

Tensor complex_real(const Tensor& z) { return complex_part(z, false); }
Tensor complex_imag(const Tensor& z) { return complex_part(z, true); }

Tensor make_complex(const Tensor& re_, const Tensor& im_) {
    Tensor re = re_.contiguous(), im = im_.contiguous();
    HIPPO_CHECK(re.shape() == im.shape(), "make_complex: shapes %s and %s differ", re.shape().str().c_str(),
                im.shape().str().c_str());
    std::vector<int64_t> v = re.shape().vec();
    v.push_back(2);
    HIPPO_CHECK(v.size() <= size_t(kMaxDims), "make_complex: too many dims");
    Tensor out = Tensor::empty(Shape(v));
    ew::interleave(out.data(), re.data(), im.data(), re.numel());
    if (any_requires_grad({&re, &im})) {
        bool gr = needs(re), gi = needs(im);
        Shape s = re.shape();
        record(out, "make_complex", {re, im}, [s, gr, gi](const Tensor& g) {
            Tensor gc = g.contiguous();
            Tensor dr = gr ? Tensor::empty(s) : Tensor(), di = gi ? Tensor::empty(s) : Tensor();
            ew::deinterleave(gr ? dr.data() : nullptr, gi ? di.data() : nullptr, gc.data(), s.numel());
            return std::vector<Tensor>{dr, di};
        });
    }
    return out;
}

}  // namespace hippo
