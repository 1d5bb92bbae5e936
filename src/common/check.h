// Error handling, two levels (as in ggml / llm.c):
//  - HIPPO_ASSERT: a programmer error (broken invariant). Prints file:line and aborts.
//  - hippo::Error: bad input from a user or a file (wrong shape, malformed checkpoint, unknown config
//    key). Thrown, caught at the CLI boundary, printed as one line, exit code 1.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace hippo {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// An error that every rank of a data-parallel job raises together (the same NaN loss after the
// all-reduce, a config that differs between ranks): the ranks can stop in an orderly way and only
// rank 0 prints it. Any other Error on one rank ends the whole job (dist/comm.h, Comm::abort).
struct CollectiveError : Error {
    using Error::Error;
};

[[noreturn]] void assert_fail(const char* file, int line, const char* cond, const std::string& msg);

// printf-style formatting into a std::string (GCC 12 has no <format>).
std::string strf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// Message of a failed HIPPO_ASSERT: empty, or printf-style arguments.
inline std::string assert_msg() { return {}; }
template <class... Args>
std::string assert_msg(const char* fmt, Args... args) {
    if constexpr (sizeof...(Args) == 0) return fmt;
    else return strf(fmt, args...);
}

}  // namespace hippo

#define HIPPO_ASSERT(cond, ...)                                                                  \
    do {                                                                                         \
        if (!(cond)) [[unlikely]]                                                                \
            ::hippo::assert_fail(__FILE__, __LINE__, #cond, ::hippo::assert_msg(__VA_ARGS__));     \
    } while (0)

// Input validation: throws hippo::Error with the formatted message.
#define HIPPO_CHECK(cond, ...)                                                                   \
    do {                                                                                         \
        if (!(cond)) [[unlikely]]                                                                \
            throw ::hippo::Error(::hippo::strf(__VA_ARGS__));                                    \
    } while (0)
