#include "checkpoint/sha256_blocks.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace crsm::checkpoint::detail {

#if defined(__x86_64__) && defined(__GNUC__)
namespace {

// The SHA instructions keep the eight working variables as two vectors, {a,b,e,f} and
// {c,d,g,h} (highest lane first), and run two rounds per sha256rnds2: it takes the
// {c,d,g,h} vector, the {a,b,e,f} vector and two message+constant words, and returns
// the new {a,b,e,f}. The old {a,b,e,f} is then the new {c,d,g,h}, so the two vectors
// swap roles every two rounds and are back in place after four.
__attribute__((target("sha,sse4.1,ssse3"))) void blocks_shani(uint32_t state[8], const uint8_t* blocks,
                                                               size_t count) {
  // Message words are big-endian.
  const __m128i byte_swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  const __m128i dcba = _mm_loadu_si128(reinterpret_cast<const __m128i*>(state));
  const __m128i hgfe = _mm_loadu_si128(reinterpret_cast<const __m128i*>(state + 4));
  const __m128i cdab = _mm_shuffle_epi32(dcba, 0xB1);
  const __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1B);
  __m128i abef = _mm_alignr_epi8(cdab, efgh, 8);
  __m128i cdgh = _mm_blend_epi16(efgh, cdab, 0xF0);

  for (size_t b = 0; b < count; ++b, blocks += 64) {
    const __m128i abef_in = abef;
    const __m128i cdgh_in = cdgh;
    // w[g % 4] holds message words 4g..4g+3 of the last four groups.
    __m128i w[4];
    for (int g = 0; g < 16; ++g) {
      __m128i words;
      if (g < 4) {
        words = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blocks + 16 * g)), byte_swap);
      } else {
        // W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16], four at a time:
        // sha256msg1 adds s0, alignr supplies W[t-7..t-4], sha256msg2 adds s1.
        const __m128i older = w[g % 4], old = w[(g + 1) % 4], recent = w[(g + 2) % 4],
                      newest = w[(g + 3) % 4];
        words = _mm_add_epi32(_mm_sha256msg1_epu32(older, old), _mm_alignr_epi8(newest, recent, 4));
        words = _mm_sha256msg2_epu32(words, newest);
      }
      w[g % 4] = words;
      const __m128i wk =
          _mm_add_epi32(words, _mm_loadu_si128(reinterpret_cast<const __m128i*>(kSha256Round + 4 * g)));
      cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);
      abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(wk, 0x0E));
    }
    abef = _mm_add_epi32(abef, abef_in);
    cdgh = _mm_add_epi32(cdgh, cdgh_in);
  }

  const __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
  const __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(state), _mm_blend_epi16(feba, dchg, 0xF0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(state + 4), _mm_alignr_epi8(dchg, feba, 8));
}

bool cpu_has_sha_extensions() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
  const bool ssse3 = ecx & (1u << 9), sse41 = ecx & (1u << 19);
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  const bool sha = ebx & (1u << 29);
  return ssse3 && sse41 && sha;
}

}  // namespace

Sha256Blocks sha256_blocks_accelerated() {
  static const Sha256Blocks chosen = cpu_has_sha_extensions() ? blocks_shani : nullptr;
  return chosen;
}

#else

Sha256Blocks sha256_blocks_accelerated() { return nullptr; }

#endif

}  // namespace crsm::checkpoint::detail
