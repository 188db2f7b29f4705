// AVX2 + FMA + F16C kernels (x86-64 only; compiled for that target by function attribute and
// chosen at run time). Integer math per block is exact, so these equal the scalar path up to the
// order of float additions.
#include "kernels_internal.h"

#include <math.h>

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float h2f(ag_half h) { return _cvtsh_ss(h); }

AVX2 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static inline int hsum8i(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x55));
    return _mm_cvtsi128_si32(s);
}

// 16 packed bytes -> 32 unsigned nibbles: the low nibbles first, then the high ones (ggml's order).
AVX2 static inline __m256i nibbles32(const uint8_t *p) {
    const __m128i t = _mm_loadu_si128((const __m128i *)p);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0x0F));
}

// 32 bits -> 32 bytes, 0xFF where the bit is set.
AVX2 static inline __m256i bits32(const uint8_t *p) {
    uint32_t u;
    memcpy(&u, p, 4);
    const __m256i shuf = _mm256_setr_epi64x(0x0000000000000000LL, 0x0101010101010101LL,
                                            0x0202020202020202LL, 0x0303030303030303LL);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)u), shuf);
    b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfeLL));
    return _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
}

// Sum of products of unsigned bytes a with signed bytes b, as 8 int32.
AVX2 static inline __m256i dot_u8i8(__m256i a, __m256i b) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1));
}
// Signed a with signed b (b never -128: activations are within [-127, 127]).
AVX2 static inline __m256i dot_i8i8(__m256i a, __m256i b) {
    return dot_u8i8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

// ---- legacy 32-element blocks -------------------------------------------------------------------
// One block per step, four independent accumulators. The block scales come from one vcvtph2ps of
// the block's first 8 bytes: lane 0 is d, lane 1 is m (Q4_1/Q5_1) or s (Q8_1); lanes 2-3 are
// quant bytes read as fp16 and never used (products of fp16 values are never fp32 subnormals).

AVX2 static inline __m128 head4(const void *block) { return _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)block)); }

#define AG_UNROLL4(STEP)                                                                           \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                                \
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();                                \
    __m128 ms0 = _mm_setzero_ps(), ms1 = _mm_setzero_ps();                                        \
    int64_t i = 0;                                                                                 \
    for (; i + 3 < nb; i += 4) {                                                                   \
        STEP(acc0, ms0, i);                                                                        \
        STEP(acc1, ms1, i + 1);                                                                    \
        STEP(acc2, ms0, i + 2);                                                                    \
        STEP(acc3, ms1, i + 3);                                                                    \
    }                                                                                              \
    for (; i < nb; i++) STEP(acc0, ms0, i);                                                        \
    const float dsum = hsum8(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3))); \
    const float msum = _mm_cvtss_f32(_mm_movehdup_ps(_mm_add_ps(ms0, ms1)));                       \
    (void)msum;

#define Q4_0_STEP(acc, ms, k)                                                                      \
    do {                                                                                           \
        const __m128 sc = _mm_mul_ps(head4(w + (k)), head4(x + (k)));                              \
        const __m256i q = _mm256_sub_epi8(nibbles32(w[k].qs), eight);                              \
        const __m256i p = dot_i8i8(q, _mm256_loadu_si256((const __m256i *)x[k].qs));               \
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcastss_ps(sc), acc);              \
    } while (0)

AVX2 static float dot_q4_0(int64_t n, const void *vw, const void *vx) {
    const ag_block_q4_0 *w = vw;
    const ag_block_q8_0 *x = vx;
    const int64_t nb = n / AG_QK;
    const __m256i eight = _mm256_set1_epi8(8);
    AG_UNROLL4(Q4_0_STEP)
    return dsum;
}

#define Q4_1_STEP(acc, ms, k)                                                                      \
    do {                                                                                           \
        const __m128 sc = _mm_mul_ps(head4(w + (k)), head4(x + (k)));       /* [dd, m*s, -, -] */  \
        const __m256i p = dot_u8i8(nibbles32(w[k].qs), _mm256_loadu_si256((const __m256i *)x[k].qs)); \
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcastss_ps(sc), acc);              \
        ms = _mm_add_ps(ms, sc);                                                                   \
    } while (0)

AVX2 static float dot_q4_1(int64_t n, const void *vw, const void *vx) {
    const ag_block_q4_1 *w = vw;
    const ag_block_q8_1 *x = vx;
    const int64_t nb = n / AG_QK;
    AG_UNROLL4(Q4_1_STEP)
    return dsum + msum;
}

// q - 16: where the fifth bit is clear, ORing 0xF0 makes the nibble negative by 16.
#define Q5_0_STEP(acc, ms, k)                                                                      \
    do {                                                                                           \
        const __m128 sc = _mm_mul_ps(head4(w + (k)), head4(x + (k)));                              \
        const __m256i hi = _mm256_andnot_si256(bits32(w[k].qh), _mm256_set1_epi8((char)0xF0));     \
        const __m256i q = _mm256_or_si256(nibbles32(w[k].qs), hi);                                 \
        const __m256i p = dot_i8i8(q, _mm256_loadu_si256((const __m256i *)x[k].qs));               \
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcastss_ps(sc), acc);              \
    } while (0)

AVX2 static float dot_q5_0(int64_t n, const void *vw, const void *vx) {
    const ag_block_q5_0 *w = vw;
    const ag_block_q8_0 *x = vx;
    const int64_t nb = n / AG_QK;
    AG_UNROLL4(Q5_0_STEP)
    return dsum;
}

#define Q5_1_STEP(acc, ms, k)                                                                      \
    do {                                                                                           \
        const __m128 sc = _mm_mul_ps(head4(w + (k)), head4(x + (k)));                              \
        const __m256i hi = _mm256_and_si256(bits32(w[k].qh), _mm256_set1_epi8(0x10));              \
        const __m256i q = _mm256_or_si256(nibbles32(w[k].qs), hi);                                 \
        const __m256i p = dot_u8i8(q, _mm256_loadu_si256((const __m256i *)x[k].qs));               \
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcastss_ps(sc), acc);              \
        ms = _mm_add_ps(ms, sc);                                                                   \
    } while (0)

AVX2 static float dot_q5_1(int64_t n, const void *vw, const void *vx) {
    const ag_block_q5_1 *w = vw;
    const ag_block_q8_1 *x = vx;
    const int64_t nb = n / AG_QK;
    AG_UNROLL4(Q5_1_STEP)
    return dsum + msum;
}

#define Q8_0_STEP(acc, ms, k)                                                                      \
    do {                                                                                           \
        const __m128 sc = _mm_mul_ps(head4(w + (k)), head4(x + (k)));                              \
        const __m256i p = dot_i8i8(_mm256_loadu_si256((const __m256i *)w[k].qs),                   \
                                   _mm256_loadu_si256((const __m256i *)x[k].qs));                  \
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcastss_ps(sc), acc);              \
    } while (0)

AVX2 static float dot_q8_0(int64_t n, const void *vw, const void *vx) {
    const ag_block_q8_0 *w = vw;
    const ag_block_q8_0 *x = vx;
    const int64_t nb = n / AG_QK;
    AG_UNROLL4(Q8_0_STEP)
    return dsum;
}

// ---- four rows at once (Q4_1, Q8_0): the activation block is loaded and converted once for all
// four rows; one accumulator per row; one transposing reduction for the four sums.

AVX2 static inline __m128 hsum4x8(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

#define ROW4_PTRS(T)                                                                               \
    const T *w0 = vw;                                                                              \
    const T *w1 = (const T *)((const char *)vw + rb);                                              \
    const T *w2 = (const T *)((const char *)vw + 2 * rb);                                          \
    const T *w3 = (const T *)((const char *)vw + 3 * rb)

#define Q4_1_ROW(acc, ms, W, k, xh, y)                                                             \
    do {                                                                                           \
        const __m128 sc = _mm_mul_ps(head4(W + (k)), xh);                                          \
        const __m256i p = dot_u8i8(nibbles32(W[k].qs), y);                                         \
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcastss_ps(sc), acc);              \
        ms = _mm_add_ps(ms, sc);                                                                   \
    } while (0)

AVX2 static void dot4_q4_1(int64_t n, const void *vw, size_t rb, const void *vx, float *out) {
    ROW4_PTRS(ag_block_q4_1);
    const ag_block_q8_1 *x = vx;
    const int64_t nb = n / AG_QK;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m128 m0 = _mm_setzero_ps(), m1 = m0, m2 = m0, m3 = m0;
    for (int64_t k = 0; k < nb; k++) {
        const __m128 xh = head4(x + k);
        const __m256i y = _mm256_loadu_si256((const __m256i *)x[k].qs);
        Q4_1_ROW(a0, m0, w0, k, xh, y);
        Q4_1_ROW(a1, m1, w1, k, xh, y);
        Q4_1_ROW(a2, m2, w2, k, xh, y);
        Q4_1_ROW(a3, m3, w3, k, xh, y);
    }
    const __m128 ms = _mm_movehl_ps(_mm_unpacklo_ps(m2, m3), _mm_unpacklo_ps(m0, m1));
    _mm_storeu_ps(out, _mm_add_ps(hsum4x8(a0, a1, a2, a3), ms));
}

#define Q8_0_ROW(acc, W, k, xh, y)                                                                 \
    do {                                                                                           \
        const __m256i p = dot_i8i8(_mm256_loadu_si256((const __m256i *)W[k].qs), y);               \
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcastss_ps(_mm_mul_ps(head4(W + (k)), xh)), acc); \
    } while (0)

AVX2 static void dot4_q8_0(int64_t n, const void *vw, size_t rb, const void *vx, float *out) {
    ROW4_PTRS(ag_block_q8_0);
    const ag_block_q8_0 *x = vx;
    const int64_t nb = n / AG_QK;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t k = 0; k < nb; k++) {
        const __m128 xh = head4(x + k);
        const __m256i y = _mm256_loadu_si256((const __m256i *)x[k].qs);
        Q8_0_ROW(a0, w0, k, xh, y);
        Q8_0_ROW(a1, w1, k, xh, y);
        Q8_0_ROW(a2, w2, k, xh, y);
        Q8_0_ROW(a3, w3, k, xh, y);
    }
    _mm_storeu_ps(out, hsum4x8(a0, a1, a2, a3));
}

// ---- K-quants -----------------------------------------------------------------------------------

// Sum over the 8 sub-blocks of min[j] * (bsums[2j] + bsums[2j+1]), as 4 int32.
AVX2 static inline __m128i k4_min_products(const uint8_t *mins8, const int16_t *bsums) {
    const __m128i mins = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)mins8));
    const __m128i b0 = _mm_loadu_si128((const __m128i *)bsums), b1 = _mm_loadu_si128((const __m128i *)(bsums + 8));
    return _mm_madd_epi16(mins, _mm_hadd_epi16(b0, b1));
}

AVX2 static float dot_q4_K(int64_t n, const void *vw, const void *vx) {
    const ag_block_q4_K *w = vw;
    const ag_block_q8_K *x = vx;
    const int64_t nb = n / AG_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        uint8_t sm[16];
        ag_unpack_k4_scales(w[i].scales, sm);
        const float dy = x[i].d;
        const float d = h2f(w[i].d) * dy, dmin = h2f(w[i].dmin) * dy;
        accm = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(k4_min_products(sm + 8, x[i].bsums)), accm);
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * j));
            const __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            const __m256i y0 = _mm256_loadu_si256((const __m256i *)(x[i].qs + 64 * j));
            const __m256i y1 = _mm256_loadu_si256((const __m256i *)(x[i].qs + 64 * j + 32));
            const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0), _mm256_set1_epi16(sm[2 * j]));
            const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1), _mm256_set1_epi16(sm[2 * j + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    __m128 m = _mm_add_ps(accm, _mm_movehl_ps(accm, accm));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    return hsum8(acc) - _mm_cvtss_f32(m);
}

AVX2 static float dot_q5_K(int64_t n, const void *vw, const void *vx) {
    const ag_block_q5_K *w = vw;
    const ag_block_q8_K *x = vx;
    const int64_t nb = n / AG_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        uint8_t sm[16];
        ag_unpack_k4_scales(w[i].scales, sm);
        const float dy = x[i].d;
        const float d = h2f(w[i].d) * dy, dmin = h2f(w[i].dmin) * dy;
        accm = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(k4_min_products(sm + 8, x[i].bsums)), accm);
        __m256i qh = _mm256_loadu_si256((const __m256i *)w[i].qh);
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * j));
            // Bits 0 and 1 of each qh byte are the fifth bits of this pair of sub-blocks; shifting
            // 16-bit lanes by 2 each round leaves those two bits of every byte intact.
            const __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(qh, one), 4);
            const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 1), one), 4);
            qh = _mm256_srli_epi16(qh, 2);
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4), h0);
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), h1);
            const __m256i y0 = _mm256_loadu_si256((const __m256i *)(x[i].qs + 64 * j));
            const __m256i y1 = _mm256_loadu_si256((const __m256i *)(x[i].qs + 64 * j + 32));
            const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0), _mm256_set1_epi16(sm[2 * j]));
            const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1), _mm256_set1_epi16(sm[2 * j + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    __m128 m = _mm_add_ps(accm, _mm_movehl_ps(accm, accm));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    return hsum8(acc) - _mm_cvtss_f32(m);
}

AVX2 static float dot_q6_K(int64_t n, const void *vw, const void *vx) {
    const ag_block_q6_K *w = vw;
    const ag_block_q8_K *x = vx;
    const int64_t nb = n / AG_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    // Spreads the int16 scale pair (2k, 2k+1) as [s(2k) x 8 | s(2k+1) x 8].
    const __m256i pair_shuf = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
                                               2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w[i].scales));
        // Subtracting 32 from every quant: 32 * sum over groups of scale * bsum.
        const __m256i offs = _mm256_slli_epi32(
            _mm256_madd_epi16(sc, _mm256_loadu_si256((const __m256i *)x[i].bsums)), 5);
        __m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(), offs);
        for (int h = 0; h < 2; h++) {
            const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(w[i].ql + 64 * h));
            const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(w[i].ql + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(w[i].qh + 32 * h));
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
            q[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m30));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
            for (int c = 0; c < 4; c++) {
                const int k = 4 * h + c; // scales 2k and 2k+1 cover these 32 elements
                const __m256i s = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(sc, _mm256_set1_epi32(k)), pair_shuf);
                const __m256i y = _mm256_loadu_si256((const __m256i *)(x[i].qs + 128 * h + 32 * c));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q[c], y), s));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[i].d) * x[i].d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum8(acc);
}

// ---- float formats --------------------------------------------------------------------------------

AVX2 static float dot_f32_impl(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float sum = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

AVX2 static float dot_f32(int64_t n, const void *w, const void *x) { return dot_f32_impl(w, x, n); }

AVX2 static float dot_f16(int64_t n, const void *vw, const void *vx) {
    const ag_half *w = vw;
    const float *x = vx;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i))), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i + 8))), _mm256_loadu_ps(x + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i + 16))), _mm256_loadu_ps(x + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i + 24))), _mm256_loadu_ps(x + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i))), _mm256_loadu_ps(x + i), s0);
    float sum = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) sum += h2f(w[i]) * x[i];
    return sum;
}

AVX2 static inline __m256 bf16x8(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

AVX2 static float dot_bf16(int64_t n, const void *vw, const void *vx) {
    const uint16_t *w = vw;
    const float *x = vx;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(bf16x8(w + i), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(bf16x8(w + i + 8), _mm256_loadu_ps(x + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(bf16x8(w + i), _mm256_loadu_ps(x + i), s0);
    float sum = hsum8(_mm256_add_ps(s0, s1));
    for (; i < n; i++) sum += ag_bf16_to_f32(w[i]) * x[i];
    return sum;
}

// The scalar tails use the same single-rounding fma as the vector lanes, so every element of y gets
// the same operation whatever its index.
AVX2 static void axpy_f16(float *y, float a, const uint16_t *x, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] = fmaf(a, h2f(x[i]), y[i]);
}

AVX2 static void axpy_bf16(float *y, float a, const uint16_t *x, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, bf16x8(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] = fmaf(a, ag_bf16_to_f32(x[i]), y[i]);
}

AVX2 static void store_f16(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) y[i] = ag_f32_to_half(x[i]);
}

AVX2 static void axpy_f32(float *y, float a, const float *x, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
        _mm256_storeu_ps(y + i + 8, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8)));
    }
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

// ---- activation quantizers (bit-exact with the scalar reference) ---------------------------------

// roundf: to nearest, halfway cases away from zero. t - trunc(t) is exact.
AVX2 static inline __m256i round_away(__m256 t) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 tr = _mm256_round_ps(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 fr = _mm256_andnot_ps(sign, _mm256_sub_ps(t, tr));
    const __m256 one = _mm256_or_ps(_mm256_and_ps(t, sign), _mm256_set1_ps(1.0f));
    const __m256 adj = _mm256_and_ps(_mm256_cmp_ps(fr, _mm256_set1_ps(0.5f), _CMP_GE_OQ), one);
    return _mm256_cvttps_epi32(_mm256_add_ps(tr, adj));
}

AVX2 static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

// Quantizes 32 floats with the reference scale; returns the sum of the quants.
AVX2 static inline int quant32(const float *x, int8_t *qs, float *dout) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8), v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    const __m256 a = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                   _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    const float amax = hmax8(a);
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    *dout = d;
    const __m256 vid = _mm256_set1_ps(id);
    const __m256i i0 = round_away(_mm256_mul_ps(v0, vid)), i1 = round_away(_mm256_mul_ps(v1, vid));
    const __m256i i2 = round_away(_mm256_mul_ps(v2, vid)), i3 = round_away(_mm256_mul_ps(v3, vid));
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    _mm256_storeu_si256((__m256i *)qs, _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    return hsum8i(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
}

AVX2 static void quant_q8_0(const float *x, void *dst, int64_t n) {
    ag_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / AG_QK; i++) {
        float d;
        (void)quant32(x + AG_QK * i, y[i].qs, &d);
        y[i].d = ag_f32_to_half(d);
    }
}

AVX2 static void quant_q8_1(const float *x, void *dst, int64_t n) {
    ag_block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / AG_QK; i++) {
        float d;
        const int sum = quant32(x + AG_QK * i, y[i].qs, &d);
        y[i].d = ag_f32_to_half(d);
        y[i].s = ag_f32_to_half((float)sum * d);
    }
}

AVX2 static void quant_q8_K(const float *x, void *dst, int64_t n) {
    ag_block_q8_K *y = dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / AG_QK_K; i++, x += AG_QK_K) {
        __m256 a = _mm256_setzero_ps();
        for (int k = 0; k < 32; k++) a = _mm256_max_ps(a, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * k)));
        const float amax = hmax8(a);
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        // The reference keeps the first element of largest magnitude, with its sign.
        float max = 0.0f;
        const __m256 va = _mm256_set1_ps(amax);
        for (int k = 0; k < 32; k++) {
            const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * k)), va, _CMP_EQ_OQ));
            if (hit) { max = x[8 * k + __builtin_ctz((unsigned)hit)]; break; }
        }
        const float iscale = -127.0f / max;
        const __m256 vs = _mm256_set1_ps(iscale);
        const __m256i lim = _mm256_set1_epi32(127);
        for (int k = 0; k < 16; k++) {
            // vcvtps2dq rounds half to even, as ggml's nearest_int.
            const __m256i q0 = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16 * k), vs)), lim);
            const __m256i q1 = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16 * k + 8), vs)), lim);
            const __m256i w16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(q0, q1), 0xD8);
            _mm_storeu_si128((__m128i *)(y[i].qs + 16 * k),
                             _mm_packs_epi16(_mm256_castsi256_si128(w16), _mm256_extracti128_si256(w16, 1)));
            y[i].bsums[k] = (int16_t)hsum8i(_mm256_add_epi32(q0, q1));
        }
        y[i].d = 1.0f / iscale;
    }
}

void ag_fill_table_avx2(ag_kernel_table *t) {
    t->dot[AG_TYPE_F32] = dot_f32;
    t->dot[AG_TYPE_F16] = dot_f16;
    t->dot[AG_TYPE_BF16] = dot_bf16;
    t->dot[AG_TYPE_Q4_0] = dot_q4_0;
    t->dot[AG_TYPE_Q4_1] = dot_q4_1;
    t->dot[AG_TYPE_Q5_0] = dot_q5_0;
    t->dot[AG_TYPE_Q5_1] = dot_q5_1;
    t->dot[AG_TYPE_Q8_0] = dot_q8_0;
    t->dot[AG_TYPE_Q4_K] = dot_q4_K;
    t->dot[AG_TYPE_Q5_K] = dot_q5_K;
    t->dot[AG_TYPE_Q6_K] = dot_q6_K;
    t->dot4[AG_TYPE_Q4_1] = dot4_q4_1;
    t->dot4[AG_TYPE_Q8_0] = dot4_q8_0;
    t->quant[AG_TYPE_Q8_0] = quant_q8_0;
    t->quant[AG_TYPE_Q8_1] = quant_q8_1;
    t->quant[AG_TYPE_Q8_K] = quant_q8_K;
    t->dot_f32 = dot_f32_impl;
    t->axpy_f32 = axpy_f32;
    t->axpy_f16 = axpy_f16;
    t->axpy_bf16 = axpy_bf16;
    t->store_f16 = store_f16;
}

#else
void ag_fill_table_avx2(ag_kernel_table *t) { (void)t; }
#endif
