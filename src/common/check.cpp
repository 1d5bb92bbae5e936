#include "common/check.h"

#include <cstdarg>

namespace hippo {

void assert_fail(const char* file, int line, const char* cond, const std::string& msg) {
    std::fprintf(stderr, "hippo: internal error at %s:%d: assertion '%s' failed%s%s\n", file, line,
                 cond, msg.empty() ? "" : ": ", msg.c_str());
    std::fflush(stderr);
    std::abort();
}

std::string strf(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    int n = std::vsnprintf(nullptr, 0, fmt, ap);
    va_end(ap);
    std::string s(n > 0 ? size_t(n) : 0, '\0');
    if (n > 0) std::vsnprintf(s.data(), size_t(n) + 1, fmt, ap2);
    va_end(ap2);
    return s;
}

}  // namespace hippo
