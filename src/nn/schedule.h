// Learning-rate schedules. Steps count from 0 (the first optimizer step uses lr_at(0)).
//
//   warmup:   step < warmup            lr * (step + 1) / warmup        (llm.c; step 0 is not wasted)
//   constant: after warmup             lr
//   cosine:   warmup <= step < total   min_lr + (lr - min_lr) (1 + cos(pi p)) / 2
//   linear:   warmup <= step < total   lr - (lr - min_lr) p
//             with p = (step - warmup) / (total - warmup); min_lr from step `total` on.
//
// Without warmup, cosine equals torch's CosineAnnealingLR(T_max=total, eta_min=min_lr) and linear
// equals LinearLR(start_factor=1, end_factor=min_lr/lr, total_iters=total) (closed forms).
#pragma once
#include <cstdint>
#include <string>

namespace hippo {

enum class LrScheduleKind { Constant, Cosine, Linear };

// "constant" / "cosine" / "linear" (case-sensitive); hippo::Error listing the choices otherwise.
LrScheduleKind parse_lr_schedule_kind(const std::string& name);
const char* lr_schedule_kind_name(LrScheduleKind k);

class LrSchedule {
public:
    // Validates: lr >= 0, 0 <= min_lr <= lr, warmup >= 0, and for cosine/linear total > warmup.
    LrSchedule(LrScheduleKind kind, double lr, int64_t warmup_steps = 0, int64_t total_steps = 0,
               double min_lr = 0.0);
    // kind from a string spec, see parse_lr_schedule_kind.
    static LrSchedule parse(const std::string& spec, double lr, int64_t warmup_steps = 0,
                            int64_t total_steps = 0, double min_lr = 0.0);

    double lr_at(int64_t step) const;
    std::string str() const;  // "cosine(lr=0.0003, warmup=100, total=5000, min_lr=3e-05)"

    LrScheduleKind kind() const { return kind_; }
    double lr() const { return lr_; }
    double min_lr() const { return min_lr_; }
    int64_t warmup_steps() const { return warmup_; }
    int64_t total_steps() const { return total_; }

private:
    LrScheduleKind kind_;
    double lr_, min_lr_;
    int64_t warmup_, total_;
};

}  // namespace hippo
