// x86 SIMD intrinsics for hippo's AVX-512 paths, included once here.
//
// GCC 12's AVX-512 intrinsic headers pass a deliberately undefined source register
// (_mm512_undefined_ps and friends) that -Wuninitialized / -Wmaybe-uninitialized report once the
// intrinsics are inlined (GCC bug 105593, fixed in GCC 13). The warnings point into the headers,
// so silencing them for the headers' own lines keeps hippo's code fully checked.
#pragma once
#if defined(__AVX512F__) || defined(__AVX2__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif
