#include "text/unicode.h"

#include <algorithm>
#include <array>

namespace hippo::text {

namespace {

// JavaScript \s: WhiteSpace + LineTerminator (ECMA-262), i.e. \t \n \v \f \r, space, U+00A0,
// U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000, U+FEFF.
bool is_js_space(uint32_t c) {
    if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
    return c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000 || c == 0xFEFF;
}

CharClass lookup(uint32_t c) {
    if (is_js_space(c)) return kSpace;
    const UnicodeRange* b = kUnicodeRanges;
    const UnicodeRange* e = kUnicodeRanges + kUnicodeRangeCount;
    const UnicodeRange* it = std::upper_bound(b, e, c, [](uint32_t v, const UnicodeRange& r) { return v < r.lo; });
    if (it == b) return kOther;
    --it;
    return c <= it->hi ? CharClass(it->cls) : kOther;
}

// The Basic Multilingual Plane as a flat table (64 KiB), built once.
struct BmpTable {
    std::array<uint8_t, 0x10000> t;
    BmpTable() {
        for (uint32_t c = 0; c < 0x10000; c++) t[c] = lookup(c);
    }
};

}  // namespace

CharClass char_class(uint32_t cp) {
    static const BmpTable bmp;
    if (cp < 0x10000) return CharClass(bmp.t[cp]);
    if (cp > 0x10FFFF) return kOther;
    return lookup(cp);
}

size_t utf8_decode(const uint8_t* s, size_t n, uint32_t* cp) {
    uint8_t b0 = s[0];
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    size_t len;
    uint32_t c, min;
    if (b0 >= 0xC2 && b0 <= 0xDF) len = 2, c = b0 & 0x1F, min = 0x80;
    else if (b0 >= 0xE0 && b0 <= 0xEF) len = 3, c = b0 & 0x0F, min = 0x800;
    else if (b0 >= 0xF0 && b0 <= 0xF4) len = 4, c = b0 & 0x07, min = 0x10000;
    else {
        *cp = kInvalidCp;
        return 1;
    }
    if (n < len) {
        *cp = kInvalidCp;
        return 1;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *cp = kInvalidCp;
            return 1;
        }
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
        *cp = kInvalidCp;
        return 1;
    }
    *cp = c;
    return len;
}

}  // namespace hippo::text
