// Internal to CKernels: ggml's block layouts and the per-ISA kernel tables.
#ifndef AUTOGLM_KERNELS_INTERNAL_H
#define AUTOGLM_KERNELS_INTERNAL_H

#include "ckernels.h"
#include <string.h>

#define AG_QK 32    // elements per block of the legacy formats
// Pseudo activation type for ag_quantize_rows: the packed products' input format (packed.c).
#define AG_ACT_PACKED (-2)
void ag_quantize_packed_row(const float *x, void *dst, int64_t n);
// ... and of the packed K-quant products (super-blocks of 256, Q8_K's quantization).
#define AG_ACT_PACKED_K (-3)
void ag_quantize_packed_k_row(const float *x, void *dst, int64_t n);
// Splits `count` targets of units[i] units (rows, or packed row groups) into pool tasks of *per
// units (a multiple of `align`), several per thread; task_start[i] is target i's first task,
// task_start[count] the total, which is returned.
int64_t ag_plan_tasks(const int64_t *units, int count, int threads, int64_t align, int64_t *per, int64_t *task_start);
#define AG_QK_K 256 // elements per super-block of the K-quants
// Packed F16 / BF16 weights (packed_float.c): a group of 16 rows is n * 32 bytes.
size_t ag_packed_float_group_bytes(int64_t n);
void ag_pack_float(int kind, const uint16_t *src, int64_t rows, int64_t n, uint16_t *dst);
void ag_bf16_row(const float *x, uint16_t *dst, int64_t n);
int ag_packed_float_bf16_dot_available(void);
// Row `row` (0..15) of a packed F16/BF16 group dotted with float32 x, one fused multiply-add per position in order:
// what the F16 kernels and the AVX2 BF16 kernel compute, bit for bit.
float ag_packed_float_reference(int kind, const void *group, int row, const float *x, int64_t n);
// One group (or two consecutive ones when `pair`) against `batch` activation rows of `format`, at `isa`;
// y[b * ys + o] for the first `valid` outputs o of the 16 or 32.
void ag_packed_float_groups(int kind, int format, int isa, const uint8_t *group, size_t group_bytes, int pair,
                            int64_t n, const void *x, size_t xs_bytes, int64_t batch, float *y, int64_t ys,
                            int64_t valid);

typedef uint16_t ag_half;

// Layouts exactly as ggml-common.h (little-endian, no padding).
typedef struct { ag_half d; uint8_t qs[16]; } ag_block_q4_0;
typedef struct { ag_half d; ag_half m; uint8_t qs[16]; } ag_block_q4_1;
typedef struct { ag_half d; uint8_t qh[4]; uint8_t qs[16]; } ag_block_q5_0;
typedef struct { ag_half d; ag_half m; uint8_t qh[4]; uint8_t qs[16]; } ag_block_q5_1;
typedef struct { ag_half d; int8_t qs[32]; } ag_block_q8_0;
typedef struct { ag_half d; ag_half s; int8_t qs[32]; } ag_block_q8_1; // s = d * sum(qs)
typedef struct { ag_half d; ag_half dmin; uint8_t scales[12]; uint8_t qs[128]; } ag_block_q4_K;
typedef struct { ag_half d; ag_half dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; } ag_block_q5_K;
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; ag_half d; } ag_block_q6_K;
typedef struct { float d; int8_t qs[256]; int16_t bsums[16]; } ag_block_q8_K;

_Static_assert(sizeof(ag_block_q4_0) == 18, "q4_0");
_Static_assert(sizeof(ag_block_q4_1) == 20, "q4_1");
_Static_assert(sizeof(ag_block_q5_0) == 22, "q5_0");
_Static_assert(sizeof(ag_block_q5_1) == 24, "q5_1");
_Static_assert(sizeof(ag_block_q8_0) == 34, "q8_0");
_Static_assert(sizeof(ag_block_q8_1) == 36, "q8_1");
_Static_assert(sizeof(ag_block_q4_K) == 144, "q4_K");
_Static_assert(sizeof(ag_block_q5_K) == 176, "q5_K");
_Static_assert(sizeof(ag_block_q6_K) == 210, "q6_K");
_Static_assert(sizeof(ag_block_q8_K) == 292, "q8_K");

// Exact conversions (no FPU rounding involved), usable from every path.
static inline float ag_bits_to_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t ag_f32_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static inline float ag_half_to_f32(ag_half h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t mant = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else {
        uint32_t e = 113;
        while (!(mant & 0x400u)) { mant <<= 1; e--; }
        bits = sign | (e << 23) | ((mant & 0x3FFu) << 13);
    }
    return ag_bits_to_f32(bits);
}

// Round to nearest even, overflow to infinity, subnormals exact (as F16C's vcvtps2ph and numpy).
static inline ag_half ag_f32_to_half(float f) {
    const uint32_t x = ag_f32_to_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t ax = x & 0x7FFFFFFFu;
    if (ax > 0x7F800000u) return (ag_half)(sign | 0x7E00u | ((ax >> 13) & 0x3FFu)); // NaN stays NaN (quiet)
    if (ax >= 0x477FF000u) return (ag_half)(sign | 0x7C00u);                         // >= 65520: infinity
    if (ax < 0x38800000u) {                                                          // below 2^-14: subnormal
        if (ax < 0x33000000u) return (ag_half)sign;                                   // below 2^-25: zero
        const uint32_t e = ax >> 23;
        const uint32_t m = (ax & 0x7FFFFFu) | 0x800000u;
        const uint32_t shift = 126u - e;
        uint32_t r = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (ag_half)(sign | r);
    }
    uint32_t h = (((ax >> 23) - 112u) << 10) | ((ax & 0x7FFFFFu) >> 13);
    const uint32_t rem = ax & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (ag_half)(sign | h);
}

static inline float ag_bf16_to_f32(uint16_t h) { return ag_bits_to_f32((uint32_t)h << 16); }

// Round to nearest even on the dropped 16 bits; a NaN stays a (quiet) NaN.
static inline uint16_t ag_f32_to_bf16(float f) {
    const uint32_t u = ag_f32_to_bits(f);
    return (u & 0x7FFFFFFFu) > 0x7F800000u ? (uint16_t)((u >> 16) | 0x40u) : (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// Q4_K / Q5_K: the 12 scale bytes hold 8 six-bit scales and 8 six-bit mins.
// Unpacks them into sc[0..7] = scales, sc[8..15] = mins (bytes), as ggml's get_scale_min_k4.
static inline void ag_unpack_k4_scales(const uint8_t *q, uint8_t *out16) {
    uint32_t u[3];
    memcpy(u, q, 12);
    const uint32_t k1 = 0x3f3f3f3fu, k2 = 0x0f0f0f0fu, k3 = 0x03030303u;
    uint32_t r[4];
    r[0] = u[0] & k1;
    r[1] = (u[2] & k2) | (((u[0] >> 6) & k3) << 4);
    r[2] = u[1] & k1;
    r[3] = ((u[2] >> 4) & k2) | (((u[1] >> 6) & k3) << 4);
    memcpy(out16, r, 16);
}

// ---- per-ISA kernels ------------------------------------------------------------------------

typedef ag_vec_dot_fn ag_dot_kernel;
typedef void (*ag_quant_kernel)(const float *src, void *dst, int64_t n);
// Four rows (w, w + rb, w + 2 rb, w + 3 rb) against one activation row: out[0..3].
typedef void (*ag_dot4_kernel)(int64_t n, const void *w, size_t rb, const void *x, float *out);

// Type ids go up to 30 (BF16).
#define AG_TYPE_SLOTS 31

typedef struct {
    ag_dot_kernel dot[AG_TYPE_SLOTS];        // by weight type
    ag_dot4_kernel dot4[AG_TYPE_SLOTS];      // by weight type; NULL: row by row
    ag_quant_kernel quant[AG_TYPE_SLOTS];    // by activation type (Q8_0, Q8_1, Q8_K)
    float (*dot_f32)(const float *a, const float *b, int64_t n);
    void (*axpy_f32)(float *y, float a, const float *x, int64_t n);
    // y[i] += a * x[i] with x in f16 / bf16 (the KV cache's values).
    void (*axpy_f16)(float *y, float a, const uint16_t *x, int64_t n);
    void (*axpy_bf16)(float *y, float a, const uint16_t *x, int64_t n);
    // float32 -> f16, round to nearest even (the KV cache's stores).
    void (*store_f16)(const float *x, uint16_t *y, int64_t n);
} ag_kernel_table;

// The kernel table of the calling thread's path.
const ag_kernel_table *ag_table(void);

void ag_fill_table_scalar(ag_kernel_table *t);
void ag_fill_table_avx2(ag_kernel_table *t);   // only overwrites what it provides
void ag_fill_table_avx512(ag_kernel_table *t); // only overwrites what it provides

// Scalar reference quantizers (formats.c), shared by every path for the per-block scale math.
void ag_quantize_q8_0_scalar(const float *src, void *dst, int64_t n);
void ag_quantize_q8_1_scalar(const float *src, void *dst, int64_t n);
void ag_quantize_q8_K_scalar(const float *src, void *dst, int64_t n);

#if defined(__x86_64__)
#include <immintrin.h>
// e^x for x <= 0 on AVX2 (softmax after subtracting the maximum), shared by the paged and the dense attention:
// 2^n * e^r with |r| <= ln2 / 2, e^r by Cephes' degree-6 polynomial (about 1 ulp), 2^n built in the exponent bits
// (x clamped at -87: n >= -126, a normal number).
__attribute__((target("avx2,fma"))) static inline __m256 ag_exp_nonpositive8(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}
#endif

#endif
