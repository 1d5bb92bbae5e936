// Parameter initialisers (torch.nn.init equivalents). All write in place, under NoGradGuard, and
// draw from the given Rng in row-major element order, so a model initialised from one seed is the
// same on every machine and thread count. Tensors must be contiguous.
#pragma once
#include <cstdint>

#include "autograd/tensor.h"
#include "common/rng.h"

namespace hippo::init {

// fan_in / fan_out as torch.nn.init._calculate_fan_in_and_fan_out: for a weight of shape
// (out, in, k...) fan_in = in * prod(k), fan_out = out * prod(k). Needs >= 2 dims.
int64_t fan_in(const Tensor& t);
int64_t fan_out(const Tensor& t);

void zeros_(Tensor& t);
void ones_(Tensor& t);
void constant_(Tensor& t, float value);
void normal_(Tensor& t, float mean, float std, Rng& rng);
void uniform_(Tensor& t, float lo, float hi, Rng& rng);  // [lo, hi)
// torch.nn.init.kaiming_uniform_(t, a, mode="fan_in", nonlinearity="leaky_relu"):
// bound = sqrt(3) * sqrt(2 / (1 + a^2)) / sqrt(fan_in). With a = sqrt(5) (nn.Linear's default)
// the bound is 1 / sqrt(fan_in).
void kaiming_uniform_(Tensor& t, float a, Rng& rng);
// torch.nn.init.xavier_uniform_: bound = gain * sqrt(6 / (fan_in + fan_out)).
void xavier_uniform_(Tensor& t, Rng& rng, float gain = 1.0f);

}  // namespace hippo::init
