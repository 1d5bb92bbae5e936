#include "nn/schedule.h"

#include <cmath>

#include "common/check.h"

namespace hippo {

LrScheduleKind parse_lr_schedule_kind(const std::string& name) {
    if (name == "constant") return LrScheduleKind::Constant;
    if (name == "cosine") return LrScheduleKind::Cosine;
    if (name == "linear") return LrScheduleKind::Linear;
    throw Error(strf("unknown lr schedule '%s' (expected constant, cosine or linear)", name.c_str()));
}

const char* lr_schedule_kind_name(LrScheduleKind k) {
    switch (k) {
        case LrScheduleKind::Constant: return "constant";
        case LrScheduleKind::Cosine: return "cosine";
        case LrScheduleKind::Linear: return "linear";
    }
    return "?";
}

LrSchedule::LrSchedule(LrScheduleKind kind, double lr, int64_t warmup, int64_t total, double min_lr)
    : kind_(kind), lr_(lr), min_lr_(min_lr), warmup_(warmup), total_(total) {
    HIPPO_CHECK(std::isfinite(lr) && lr >= 0, "lr schedule: invalid lr %g", lr);
    HIPPO_CHECK(warmup >= 0, "lr schedule: negative warmup %lld", (long long)warmup);
    if (kind != LrScheduleKind::Constant) {
        HIPPO_CHECK(std::isfinite(min_lr) && min_lr >= 0 && min_lr <= lr,
                    "lr schedule: min_lr %g must be in [0, lr = %g]", min_lr, lr);
        HIPPO_CHECK(total > warmup, "lr schedule %s: total steps (%lld) must exceed warmup steps (%lld)",
                    lr_schedule_kind_name(kind), (long long)total, (long long)warmup);
    }
}

LrSchedule LrSchedule::parse(const std::string& spec, double lr, int64_t warmup, int64_t total, double min_lr) {
    return LrSchedule(parse_lr_schedule_kind(spec), lr, warmup, total, min_lr);
}

double LrSchedule::lr_at(int64_t step) const {
    HIPPO_CHECK(step >= 0, "lr schedule: negative step %lld", (long long)step);
    if (step < warmup_) return lr_ * double(step + 1) / double(warmup_);
    if (kind_ == LrScheduleKind::Constant) return lr_;
    if (step >= total_) return min_lr_;
    double p = double(step - warmup_) / double(total_ - warmup_);
    if (kind_ == LrScheduleKind::Cosine) return min_lr_ + (lr_ - min_lr_) * 0.5 * (1.0 + std::cos(M_PI * p));
    return lr_ - (lr_ - min_lr_) * p;
}

std::string LrSchedule::str() const {
    if (kind_ == LrScheduleKind::Constant) return strf("constant(lr=%g, warmup=%lld)", lr_, (long long)warmup_);
    return strf("%s(lr=%g, warmup=%lld, total=%lld, min_lr=%g)", lr_schedule_kind_name(kind_), lr_,
                (long long)warmup_, (long long)total_, min_lr_);
}

}  // namespace hippo
