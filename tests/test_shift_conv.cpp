#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/rng.h"
#include "kernels/shift_conv.h"

using namespace hippo;

TEST(ShiftConv, MatchesReferenceForwardAndBackward) {
    Rng rng(3);
    auto randv = [&](size_t n) {
        std::vector<float> v(n);
        for (auto& x : v) x = float(rng.normal());
        return v;
    };
    for (int64_t L : {1, 2, 3, 63, 64, 65, 200})
        for (int64_t C : {1, 7, 16, 33})
            for (int64_t N : {1, 4, 64}) {
                const int64_t B = 2;
                size_t total = size_t(B * L * C);
                auto x = randv(total), dy = randv(total), h = randv(size_t(C * N)), Dk = randv(size_t(C));
                std::vector<float> y(total), yr(total), dx(total), dxr(total), dh(size_t(C * N)), dhr(dh.size()),
                    dD(static_cast<size_t>(C)), dDr(static_cast<size_t>(C));
                shift_conv_forward(y.data(), x.data(), h.data(), Dk.data(), B, L, C, N);
                shift_conv_forward_ref(yr.data(), x.data(), h.data(), Dk.data(), B, L, C, N);
                shift_conv_backward(dx.data(), dh.data(), dD.data(), dy.data(), x.data(), h.data(), Dk.data(), B, L, C, N);
                shift_conv_backward_ref(dxr.data(), dhr.data(), dDr.data(), dy.data(), x.data(), h.data(), Dk.data(), B, L,
                                        C, N);
                auto close = [](const std::vector<float>& a, const std::vector<float>& b, const char* what, int64_t L) {
                    for (size_t i = 0; i < a.size(); i++)
                        ASSERT_NEAR(a[i], b[i], 1e-4 * (1 + std::fabs(b[i]))) << what << " i=" << i << " L=" << L;
                };
                close(y, yr, "y", L);
                close(dx, dxr, "dx", L);
                close(dh, dhr, "dh", L);
                close(dD, dDr, "dDk", L);
            }
}
