// Packed F16 and BF16 weights (Hugging Face directories loaded without quantization, F16/BF16 GGUF files,
// vision towers) for batched products with float arithmetic.
//
// Layouts, per group of 16 rows (rows padded with zero weights to a multiple of 16), groups back to back,
// n * 32 bytes a group (the file's 2 bytes a weight):
//   F16:  for each input position k, the 16 rows' halves (lane r = row r): one 256-bit load and one
//         conversion give the weights of 16 outputs at one position.
//   BF16: for each pair of positions (2j, 2j+1), 16 32-bit words, lane r = row r's w[2j] (low half) and
//         w[2j+1] (high half): what vdpbf16ps multiplies against a broadcast pair of bf16 activations.
// Activations: float32 rows (format F32), or bf16 rows (format BF16, rounded to nearest even) for the
// vdpbf16ps kernel, which multiplies bf16 by bf16 as llama.cpp does for BF16 weights.
//
// Kernels (tasks are pairs of groups, 32 outputs; activation rows go past them in chunks):
//   AVX-512 F16: 8 activation rows x 32 outputs, 16 accumulators, two conversions per 16 FMAs.
//   AVX-512 BF16 (avx512_bf16): 8 rows x 32 outputs, one vdpbf16ps does 32 products (two positions).
//   AVX2 F16: 6 rows x 16 outputs. AVX2 BF16 (also AVX-512 CPUs without avx512_bf16): 4 rows x 16 outputs,
//   bf16 widened to float by a shift (exact), float activations.
// Every F16 kernel and the AVX2 BF16 kernel compute each output as one chain of fused multiply-adds over
// k in order (acc = fma(x[k], w[k], acc)), so results do not depend on the batch, on how the rows are
// chunked, or on the path (AVX2 == AVX-512), and equal ag_packed_float_reference. The vdpbf16ps kernel
// adds the products of each pair in the instruction's own way (bf16 x bf16 products are exact in float);
// it is batch invariant and within a stated bound of the reference on bf16-rounded activations.
#include "kernels_internal.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define PF_ROWS 16
#define PF_CHUNK 1024  // positions per pass (even: BF16 pairs stay whole)

size_t ag_packed_float_group_bytes(int64_t n) { return (size_t)n * PF_ROWS * 2; }

void ag_pack_float(int kind, const uint16_t *src, int64_t rows, int64_t n, uint16_t *dst) {
    const int64_t groups = (rows + PF_ROWS - 1) / PF_ROWS;
    for (int64_t g = 0; g < groups; g++) {
        uint16_t *out = dst + (size_t)g * (size_t)n * PF_ROWS;
        for (int r = 0; r < PF_ROWS; r++) {
            const int64_t row = g * PF_ROWS + r;
            const uint16_t *w = row < rows ? src + (size_t)row * (size_t)n : NULL;
            if (kind == AG_PACKED_F16) {
                for (int64_t k = 0; k < n; k++) out[k * PF_ROWS + r] = w ? w[k] : 0;
            } else {
                for (int64_t j = 0; j < n / 2; j++) {
                    out[(j * PF_ROWS + r) * 2] = w ? w[2 * j] : 0;
                    out[(j * PF_ROWS + r) * 2 + 1] = w ? w[2 * j + 1] : 0;
                }
            }
        }
    }
}

void ag_bf16_row(const float *x, uint16_t *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = ag_f32_to_bf16(x[i]);
}

// The weight of row `r` (of the group at `w`) at position k.
static inline float pf_weight(int kind, const uint16_t *w, int64_t k, int r) {
    if (kind == AG_PACKED_F16) return ag_half_to_f32(w[k * PF_ROWS + r]);
    return ag_bf16_to_f32(w[((k / 2) * PF_ROWS + r) * 2 + (k & 1)]);
}

float ag_packed_float_reference(int kind, const void *group, int row, const float *x, int64_t n) {
    float acc = 0;
    for (int64_t k = 0; k < n; k++) acc = fmaf(x[k], pf_weight(kind, group, k, row), acc);
    return acc;
}

#if defined(__x86_64__)
#define PF512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")))
#define PFBF16 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#define PF256 __attribute__((target("avx2,fma,f16c")))

// Stores `acc` (16 outputs of one group) into y for the valid lanes.
PF512 static inline void store16(float *y, __m512 acc, int64_t valid) {
    if (valid <= 0) return;
    const __mmask16 m = valid >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << valid) - 1u);
    _mm512_mask_storeu_ps(y, m, acc);
}

// The partial sums of an earlier chunk of positions (valid lanes), or zeros.
PF512 static inline __m512 load16(const float *y, int64_t valid, int add) {
    if (!add || valid <= 0) return _mm512_setzero_ps();
    const __mmask16 m = valid >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << valid) - 1u);
    return _mm512_maskz_loadu_ps(m, y);
}

// R activation rows (stride xs floats) x T groups (1 or 2: w0, w1), positions 0..n-1 of the pointers given,
// continuing the sums in y when `add` (a later chunk of positions: the same chain of operations).
#define PF_F16_512(NAME, R, T)                                                                                     \
PF512 static void NAME(const uint16_t *w0, const uint16_t *w1, int64_t n, const float *x, int64_t xs, float *y,   \
                       int64_t ys, int64_t valid, int add) {                                                      \
    __m512 acc[R][T];                                                                                            \
    for (int r = 0; r < R; r++)                                                                                  \
        for (int t = 0; t < T; t++) acc[r][t] = load16(y + r * ys + 16 * t, valid - 16 * t, add);               \
    for (int64_t k = 0; k < n; k++) {                                                                            \
        __m512 w[T];                                                                                             \
        w[0] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w0 + k * PF_ROWS)));                         \
        if (T > 1) w[T - 1] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w1 + k * PF_ROWS)));          \
        for (int r = 0; r < R; r++) {                                                                            \
            const __m512 b = _mm512_set1_ps(x[r * xs + k]);                                                      \
            for (int t = 0; t < T; t++) acc[r][t] = _mm512_fmadd_ps(b, w[t], acc[r][t]);                         \
        }                                                                                                        \
    }                                                                                                            \
    for (int r = 0; r < R; r++)                                                                                  \
        for (int t = 0; t < T; t++) store16(y + r * ys + 16 * t, acc[r][t], valid - 16 * t);                     \
}
PF_F16_512(f16_512_12x2, 12, 2)
PF_F16_512(f16_512_8x2, 8, 2)
PF_F16_512(f16_512_4x2, 4, 2)
PF_F16_512(f16_512_2x2, 2, 2)
PF_F16_512(f16_512_1x2, 1, 2)
PF_F16_512(f16_512_8x1, 8, 1)
PF_F16_512(f16_512_4x1, 4, 1)
PF_F16_512(f16_512_2x1, 2, 1)
PF_F16_512(f16_512_1x1, 1, 1)

// The same with vdpbf16ps: x holds bf16 rows (stride xs halves), read as 32-bit pairs.
#define PF_BF16_512(NAME, R, T)                                                                                    \
PFBF16 static void NAME(const uint16_t *w0, const uint16_t *w1, int64_t n, const uint16_t *x, int64_t xs,          \
                        float *y, int64_t ys, int64_t valid, int add) {                                           \
    __m512 acc[R][T];                                                                                            \
    for (int r = 0; r < R; r++)                                                                                  \
        for (int t = 0; t < T; t++) acc[r][t] = load16(y + r * ys + 16 * t, valid - 16 * t, add);               \
    for (int64_t j = 0; j < n / 2; j++) {                                                                        \
        __m512bh w[T];                                                                                           \
        w[0] = (__m512bh)_mm512_loadu_si512((const void *)(w0 + j * 2 * PF_ROWS));                              \
        if (T > 1) w[T - 1] = (__m512bh)_mm512_loadu_si512((const void *)(w1 + j * 2 * PF_ROWS));                \
        for (int r = 0; r < R; r++) {                                                                            \
            uint32_t pair;                                                                                       \
            memcpy(&pair, x + r * xs + 2 * j, 4);                                                                \
            const __m512bh b = (__m512bh)_mm512_set1_epi32((int)pair);                                           \
            for (int t = 0; t < T; t++) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], b, w[t]);                        \
        }                                                                                                        \
    }                                                                                                            \
    for (int r = 0; r < R; r++)                                                                                  \
        for (int t = 0; t < T; t++) store16(y + r * ys + 16 * t, acc[r][t], valid - 16 * t);                     \
}
PF_BF16_512(bf16_512_8x2, 8, 2)
PF_BF16_512(bf16_512_4x2, 4, 2)
PF_BF16_512(bf16_512_2x2, 2, 2)
PF_BF16_512(bf16_512_1x2, 1, 2)
PF_BF16_512(bf16_512_8x1, 8, 1)
PF_BF16_512(bf16_512_4x1, 4, 1)
PF_BF16_512(bf16_512_2x1, 2, 1)
PF_BF16_512(bf16_512_1x1, 1, 1)

// AVX2: 8 lanes; lanes 0-7 and 8-15 of one group in two registers.
PF256 static inline __m256 load8(const float *y, int64_t valid, int add) {
    if (!add || valid <= 0) return _mm256_setzero_ps();
    if (valid >= 8) return _mm256_loadu_ps(y);
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(y, _mm256_cmpgt_epi32(_mm256_set1_epi32((int)valid), lanes));
}

PF256 static inline void store8(float *y, __m256 acc, int64_t valid) {
    if (valid <= 0) return;
    if (valid >= 8) {
        _mm256_storeu_ps(y, acc);
        return;
    }
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(y, _mm256_cmpgt_epi32(_mm256_set1_epi32((int)valid), lanes), acc);
}

#define PF_F16_256(NAME, R)                                                                                        \
PF256 static void NAME(const uint16_t *w, int64_t n, const float *x, int64_t xs, float *y, int64_t ys,             \
                       int64_t valid, int add) {                                                                  \
    __m256 acc[R][2];                                                                                            \
    for (int r = 0; r < R; r++) {                                                                                \
        acc[r][0] = load8(y + r * ys, valid, add);                                                               \
        acc[r][1] = load8(y + r * ys + 8, valid - 8, add);                                                       \
    }                                                                                                            \
    for (int64_t k = 0; k < n; k++) {                                                                            \
        const __m256 a = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + k * PF_ROWS)));                   \
        const __m256 c = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + k * PF_ROWS + 8)));               \
        for (int r = 0; r < R; r++) {                                                                            \
            const __m256 b = _mm256_set1_ps(x[r * xs + k]);                                                      \
            acc[r][0] = _mm256_fmadd_ps(b, a, acc[r][0]);                                                        \
            acc[r][1] = _mm256_fmadd_ps(b, c, acc[r][1]);                                                        \
        }                                                                                                        \
    }                                                                                                            \
    for (int r = 0; r < R; r++) {                                                                                \
        store8(y + r * ys, acc[r][0], valid);                                                                    \
        store8(y + r * ys + 8, acc[r][1], valid - 8);                                                            \
    }                                                                                                            \
}
PF_F16_256(f16_256_6, 6)
PF_F16_256(f16_256_3, 3)
PF_F16_256(f16_256_1, 1)

// BF16 widened by shifts: the low half of a pair word is w[2j], the high half w[2j+1].
#define PF_BF16_256(NAME, R)                                                                                       \
PF256 static void NAME(const uint16_t *w, int64_t n, const float *x, int64_t xs, float *y, int64_t ys,             \
                       int64_t valid, int add) {                                                                  \
    __m256 acc[R][2];                                                                                            \
    for (int r = 0; r < R; r++) {                                                                                \
        acc[r][0] = load8(y + r * ys, valid, add);                                                               \
        acc[r][1] = load8(y + r * ys + 8, valid - 8, add);                                                       \
    }                                                                                                            \
    const __m256i high = _mm256_set1_epi32((int)0xFFFF0000u);                                                    \
    for (int64_t j = 0; j < n / 2; j++) {                                                                        \
        const __m256i p0 = _mm256_loadu_si256((const __m256i *)(w + j * 2 * PF_ROWS));                           \
        const __m256i p1 = _mm256_loadu_si256((const __m256i *)(w + j * 2 * PF_ROWS + 16));                      \
        const __m256 e0 = _mm256_castsi256_ps(_mm256_slli_epi32(p0, 16));                                        \
        const __m256 e1 = _mm256_castsi256_ps(_mm256_slli_epi32(p1, 16));                                        \
        const __m256 o0 = _mm256_castsi256_ps(_mm256_and_si256(p0, high));                                       \
        const __m256 o1 = _mm256_castsi256_ps(_mm256_and_si256(p1, high));                                      \
        for (int r = 0; r < R; r++) {                                                                            \
            const __m256 be = _mm256_set1_ps(x[r * xs + 2 * j]);                                                 \
            acc[r][0] = _mm256_fmadd_ps(be, e0, acc[r][0]);                                                      \
            acc[r][1] = _mm256_fmadd_ps(be, e1, acc[r][1]);                                                      \
            const __m256 bo = _mm256_set1_ps(x[r * xs + 2 * j + 1]);                                             \
            acc[r][0] = _mm256_fmadd_ps(bo, o0, acc[r][0]);                                                      \
            acc[r][1] = _mm256_fmadd_ps(bo, o1, acc[r][1]);                                                      \
        }                                                                                                        \
    }                                                                                                            \
    for (int r = 0; r < R; r++) {                                                                                \
        store8(y + r * ys, acc[r][0], valid);                                                                    \
        store8(y + r * ys + 8, acc[r][1], valid - 8);                                                            \
    }                                                                                                            \
}
PF_BF16_256(bf16_256_4, 4)
PF_BF16_256(bf16_256_2, 2)
PF_BF16_256(bf16_256_1, 1)

typedef void (*pf512_fn)(const uint16_t *, const uint16_t *, int64_t, const float *, int64_t, float *, int64_t, int64_t, int);
typedef void (*pfbf_fn)(const uint16_t *, const uint16_t *, int64_t, const uint16_t *, int64_t, float *, int64_t, int64_t, int);
typedef void (*pf256_fn)(const uint16_t *, int64_t, const float *, int64_t, float *, int64_t, int64_t, int);
#endif

int ag_packed_float_bf16_dot_available(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
    }
    return cached;
#else
    return 0;
#endif
}

void ag_packed_float_groups(int kind, int format, int isa, const uint8_t *group, size_t group_bytes, int pair,
                            int64_t n, const void *x, size_t xs_bytes, int64_t batch, float *y, int64_t ys,
                            int64_t valid) {
#if defined(__x86_64__)
    const uint16_t *w0 = (const uint16_t *)group, *w1 = (const uint16_t *)(group + group_bytes);
    const int f16_512 = isa >= AG_ISA_AVX512 && kind == AG_PACKED_F16;
    const int bf16_512 = isa >= AG_ISA_AVX512 && kind == AG_PACKED_BF16 && format == AG_PACKED_INPUT_BF16;
    const int f32_256 = !f16_512 && isa >= AG_ISA_AVX2 && format == AG_PACKED_INPUT_F32;
    // Positions in chunks of PF_CHUNK, so that the chunk of the groups' weights (64 KB for a pair) and of the
    // activation rows stay in cache while the rows go past; each chunk continues the sums of the one before.
    for (int64_t k0 = 0; k0 < n; k0 += PF_CHUNK) {
        const int64_t kn = n - k0 < PF_CHUNK ? n - k0 : PF_CHUNK;
        const int add = k0 > 0;
        const uint16_t *c0 = w0 + k0 * PF_ROWS, *c1 = w1 + k0 * PF_ROWS;  // both layouts: 16 halves a position
        if (f16_512) {
            const int64_t xs = (int64_t)(xs_bytes / sizeof(float));
            const float *xf = (const float *)x + k0;
            static const pf512_fn two[13] = {0, f16_512_1x2, f16_512_2x2, 0, f16_512_4x2, 0, 0, 0, f16_512_8x2, 0, 0, 0, f16_512_12x2};
            static const pf512_fn one[9] = {0, f16_512_1x1, f16_512_2x1, 0, f16_512_4x1, 0, 0, 0, f16_512_8x1};
            for (int64_t b = 0; b < batch;) {
                const int64_t left = batch - b;
                const int r = left >= 12 && pair ? 12 : left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
                (pair ? two : one)[r](c0, c1, kn, xf + b * xs, xs, y + b * ys, ys, valid, add);
                b += r;
            }
        } else if (bf16_512) {
            const int64_t xs = (int64_t)(xs_bytes / sizeof(uint16_t));
            const uint16_t *xh = (const uint16_t *)x + k0;
            static const pfbf_fn two[9] = {0, bf16_512_1x2, bf16_512_2x2, 0, bf16_512_4x2, 0, 0, 0, bf16_512_8x2};
            static const pfbf_fn one[9] = {0, bf16_512_1x1, bf16_512_2x1, 0, bf16_512_4x1, 0, 0, 0, bf16_512_8x1};
            for (int64_t b = 0; b < batch;) {
                const int64_t left = batch - b;
                const int r = left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
                (pair ? two : one)[r](c0, c1, kn, xh + b * xs, xs, y + b * ys, ys, valid, add);
                b += r;
            }
        } else if (f32_256) {
            const int64_t xs = (int64_t)(xs_bytes / sizeof(float));
            const float *xf = (const float *)x + k0;
            const int f16 = kind == AG_PACKED_F16;
            const int most = f16 ? 6 : 4;
            for (int g = 0; g <= pair; g++) {
                const uint16_t *w = g ? c1 : c0;
                for (int64_t b = 0; b < batch;) {
                    const int64_t left = batch - b;
                    const int r = left >= most ? most : left >= most / 2 ? most / 2 : 1;
                    const pf256_fn fn = f16 ? (r == 6 ? f16_256_6 : r == 3 ? f16_256_3 : f16_256_1)
                                            : (r == 4 ? bf16_256_4 : r == 2 ? bf16_256_2 : bf16_256_1);
                    fn(w, kn, xf + b * xs, xs, y + b * ys + 16 * g, ys, valid - 16 * g, add);
                    b += r;
                }
            }
        }
    }
    if (f16_512 || bf16_512 || f32_256) return;
#endif
    // No vector path (not reached: packing needs AVX2): the reference, one output at a time.
    for (int g = 0; g <= pair; g++) {
        for (int64_t b = 0; b < batch; b++) {
            for (int r = 0; r < PF_ROWS && 16 * g + r < valid; r++) {
                const float *xb = (const float *)((const char *)x + (size_t)b * xs_bytes);
                y[b * ys + 16 * g + r] = ag_packed_float_reference(kind, group + (size_t)g * group_bytes, r, xb, n);
            }
        }
    }
}
