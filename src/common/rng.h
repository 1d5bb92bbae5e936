// Random numbers. One seeded generator per purpose (init, data, dropout, sampling), all derived
// from the run's --seed, and all with a state that fits in a checkpoint so a resumed run continues
// the same stream.
#pragma once
#include <array>
#include <cmath>
#include <cstdint>

namespace hippo {

inline uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// Counter-based uniform in [0, 1): the value for element i depends only on (seed, i), so dropout
// masks are identical whatever the thread count or the order in which elements are visited.
inline float hash_uniform(uint64_t seed, uint64_t i) {
    return float(splitmix64(seed ^ splitmix64(i)) >> 40) * 0x1.0p-24f;
}

// xoshiro256** (Blackman & Vigna): fast, 256-bit state, good statistical quality.
class Rng {
public:
    explicit Rng(uint64_t seed = 0) { reseed(seed); }
    void reseed(uint64_t seed) {
        uint64_t x = seed;
        for (auto& w : s_) w = x = splitmix64(x);
        has_spare_ = false;
    }
    uint64_t next_u64() {
        uint64_t result = rotl(s_[1] * 5, 7) * 9;
        uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }
    // Uniform in [0, 1) with 24 random bits (exactly representable in fp32).
    float uniform() { return float(next_u64() >> 40) * 0x1.0p-24f; }
    double uniform_double() { return double(next_u64() >> 11) * 0x1.0p-53; }
    // Uniform integer in [0, n), n > 0 (Lemire's multiply-shift; bias < 2^-32 for n < 2^32).
    uint64_t below(uint64_t n) { return uint64_t((unsigned __int128)next_u64() * n >> 64); }
    // Standard normal by Box-Muller in double, one spare kept.
    double normal() {
        if (has_spare_) {
            has_spare_ = false;
            return spare_;
        }
        double u1 = uniform_double(), u2 = uniform_double();
        if (u1 < 1e-300) u1 = 1e-300;
        double r = std::sqrt(-2.0 * std::log(u1)), th = 2.0 * M_PI * u2;
        spare_ = r * std::sin(th);
        has_spare_ = true;
        return r * std::cos(th);
    }

    // Serialisable state (4 words + the Box-Muller spare).
    struct State {
        std::array<uint64_t, 4> s;
        double spare;
        bool has_spare;
    };
    State state() const { return {s_, spare_, has_spare_}; }
    void set_state(const State& st) {
        s_ = st.s;
        spare_ = st.spare;
        has_spare_ = st.has_spare;
    }

private:
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    std::array<uint64_t, 4> s_{};
    double spare_ = 0;
    bool has_spare_ = false;
};

}  // namespace hippo
