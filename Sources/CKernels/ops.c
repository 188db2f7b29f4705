// The element-wise and attention operations of a transformer layer, float32 activations; the
// KV cache in float32, f16 or bf16.
#include "kernels_internal.h"

#include <math.h>
#include <stdlib.h>

void ag_rmsnorm(const float *x, int64_t x_stride, const float *weight, float *out, int64_t out_stride,
                int64_t rows, int64_t n, float eps) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * x_stride;
        float *o = out + r * out_stride;
        double sum = 0;  // in double: a 4096-wide row of large activations loses bits in float
        for (int64_t i = 0; i < n; i++) sum += (double)xr[i] * xr[i];
        const float scale = (float)(1.0 / sqrt(sum / (double)n + (double)eps));
        for (int64_t i = 0; i < n; i++) o[i] = xr[i] * scale * weight[i];
    }
}

void ag_rope(float *x, int64_t x_stride, int64_t rows, int heads, int head_dim, int rot_dims,
             const int32_t *positions, float base, int neox) {
    const int half = rot_dims / 2;
    float cosines[512], sines[512];
    if (half > 512) return;
    for (int64_t r = 0; r < rows; r++) {
        const double pos = positions[r];
        for (int i = 0; i < half; i++) {
            const double theta = pos * pow((double)base, -2.0 * i / rot_dims);
            cosines[i] = (float)cos(theta);
            sines[i] = (float)sin(theta);
        }
        float *row = x + r * x_stride;
        for (int h = 0; h < heads; h++) {
            float *v = row + (int64_t)h * head_dim;
            for (int i = 0; i < half; i++) {
                const int a = neox ? i : 2 * i;
                const int b = neox ? i + half : 2 * i + 1;
                const float x0 = v[a], x1 = v[b];
                v[a] = x0 * cosines[i] - x1 * sines[i];
                v[b] = x0 * sines[i] + x1 * cosines[i];
            }
        }
    }
}

void ag_silu_mul(const float *gate, const float *up, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

// ---- the same on the pool: row ranges (or element ranges) per task, each computed as above, so the
// results do not depend on the split. Small inputs run on the calling thread.

typedef struct {
    int op;  // 0 rmsnorm, 1 rope, 2 silu_mul
    int64_t per, count;
    const float *x; int64_t x_stride; const float *weight; float *out; int64_t out_stride; int64_t n; float eps;
    float *rx; int heads, head_dim, rot_dims; const int32_t *positions; float base; int neox;
    const float *gate, *up;
} rows_job;

static void rows_task(void *raw, int64_t index, int thread) {
    (void)thread;
    const rows_job *j = raw;
    const int64_t a = index * j->per, b = a + j->per < j->count ? a + j->per : j->count;
    if (a >= b) return;
    switch (j->op) {
    case 0: ag_rmsnorm(j->x + a * j->x_stride, j->x_stride, j->weight, j->out + a * j->out_stride, j->out_stride, b - a, j->n, j->eps); break;
    case 1: ag_rope(j->rx + a * j->x_stride, j->x_stride, b - a, j->heads, j->head_dim, j->rot_dims, j->positions + a, j->base, j->neox); break;
    default: ag_silu_mul(j->gate + a, j->up + a, j->out + a, b - a); break;
    }
}

// Runs `job` over `count` units in tasks of at least `least` units, two tasks per thread.
static void run_rows(ag_pool *pool, rows_job *job, int64_t count, int64_t least) {
    const int threads = pool ? ag_pool_threads(pool) : 1;
    job->count = count;
    if (threads < 2 || count < 2 * least) {
        job->per = count;
        rows_task(job, 0, 0);
        return;
    }
    int64_t per = (count + 2 * threads - 1) / (2 * threads);
    if (per < least) per = least;
    job->per = per;
    ag_pool_run(pool, rows_task, job, (count + per - 1) / per);
}

void ag_rmsnorm_pool(ag_pool *pool, const float *x, int64_t x_stride, const float *weight, float *out, int64_t out_stride,
                     int64_t rows, int64_t n, float eps) {
    rows_job job = {.op = 0, .x = x, .x_stride = x_stride, .weight = weight, .out = out, .out_stride = out_stride, .n = n, .eps = eps};
    run_rows(pool, &job, rows, 8);
}

void ag_rope_pool(ag_pool *pool, float *x, int64_t x_stride, int64_t rows, int heads, int head_dim, int rot_dims,
                  const int32_t *positions, float base, int neox) {
    rows_job job = {.op = 1, .rx = x, .x_stride = x_stride, .heads = heads, .head_dim = head_dim, .rot_dims = rot_dims,
                    .positions = positions, .base = base, .neox = neox};
    run_rows(pool, &job, rows, 4);
}

void ag_silu_mul_pool(ag_pool *pool, const float *gate, const float *up, float *out, int64_t n) {
    rows_job job = {.op = 2, .gate = gate, .up = up, .out = out};
    run_rows(pool, &job, n, 16384);
}

void ag_add(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

void ag_add_bias(float *x, int64_t x_stride, int64_t rows, const float *bias, int64_t n) {
    for (int64_t r = 0; r < rows; r++) {
        float *xr = x + r * x_stride;
        for (int64_t i = 0; i < n; i++) xr[i] += bias[i];
    }
}

// ---- attention ------------------------------------------------------------------------------------
// Keys are stored transposed inside each block (see ag_attention in ckernels.h): for one block and KV
// head, dimension d of the block's positions is a contiguous run of block_size elements, so a vector
// load gives one dimension of 16 keys and a query row's scores against 16 keys are head_dim
// multiply-adds with the query element broadcast, no horizontal sums. A task is a tile of
// consecutive query tokens of one sequence and one KV head with all its query heads (GQA): each key
// and value element is converted once per tile and used by every row of it.
//
// Per query row the float operations do not depend on the tile (which other rows share it): the
// score against position p is (sum over even d + sum over odd d) * scale, each sum in order of d;
// softmax in order of p; out[i] accumulates weight * value in order of p with one fused multiply-add
// each. So a token's attention is bitwise the same in a prefill chunk, alone in decode or batched.

#define AG_ATTENTION_MAX_ROWS 64  // query rows (tokens x query heads of one KV head) per task
#define AG_Q8_KV_MAX_SCALES 4096   // block_size x head_dim / 32 for a Q8_0 cache (e.g. 256 positions x 512 dims)

typedef struct {
    const float *q;
    int64_t q_stride;
    float *out;
    int64_t out_stride;
    const int32_t *positions, *block_tables;
    const int64_t *table_offsets;
    int kv_type;
    const char *k_arena, *v_arena;
    const uint16_t *k_scales, *v_scales;  // Q8_0 only
    int block_size, heads, kv_heads, head_dim;
    float scale;
    const int64_t *tile_start;  // tiles + 1 token indices
    int64_t tiles;
    int isa;
} attention_job;

typedef struct {
    float *scores;
    int64_t scores_capacity;
    float *values;  // one block of values as float32
    int64_t values_capacity;
    float *keys;    // one block of Q8_0 keys as float32 (transposed, as stored)
    int64_t keys_capacity;
} attention_scratch;

static _Thread_local attention_scratch tl_attention;

static float *scratch_floats(float **buffer, int64_t *capacity, int64_t needed) {
    if (*capacity < needed) {
        free(*buffer);
        *capacity = needed < 4096 ? 4096 : needed * 2;
        *buffer = malloc((size_t)*capacity * sizeof(float));
    }
    return *buffer;
}

static size_t kv_element_bytes(int kv_type) { return kv_type == AG_TYPE_F32 ? 4 : kv_type == AG_TYPE_Q8_0 ? 1 : 2; }

static inline float kv_element(int kv_type, const char *base, int64_t i) {
    switch (kv_type) {
    case AG_TYPE_F16: return ag_half_to_f32(((const ag_half *)base)[i]);
    case AG_TYPE_BF16: return ag_bf16_to_f32(((const uint16_t *)base)[i]);
    default: return ((const float *)base)[i];
    }
}

// Q8_0 KV: one block of one KV head dequantized (value = scale * int8, one rounding, the same on every path).
// The scales of the block's positions and this head's groups of 32 go first into st[g * bs + j] (position j,
// group g): scales[((first_slot + j) * kv_width + head0) / 32 + g].
static void q8_block_scales(const uint16_t *scales, int64_t first_slot, int64_t kv_width, int64_t head0, int bs, int hd,
                            float *st) {
    for (int j = 0; j < bs; j++) {
        const uint16_t *sc = scales + ((first_slot + j) * kv_width + head0) / 32;
        for (int g = 0; g < hd / 32; g++) st[g * bs + j] = ag_half_to_f32(sc[g]);
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
// Keys, transposed as stored (element d of position j at d * bs + j), into kf[d * bs + j].
__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")))
static void q8_keys_avx512(const int8_t *k, const float *st, int bs, int hd, float *kf) {
    for (int d = 0; d < hd; d++) {
        const float *s = st + (d / 32) * bs;
        for (int j = 0; j < bs; j += 16) {
            const __mmask16 m = (__mmask16)(bs - j >= 16 ? 0xFFFFu : (1u << (bs - j)) - 1u);
            const __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, k + (int64_t)d * bs + j)));
            _mm512_mask_storeu_ps(kf + (int64_t)d * bs + j, m, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, s + j)));
        }
    }
}

// Values, position-major rows of kv_width, into vf[j * hd + e].
__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")))
static void q8_values_avx512(const int8_t *v, int64_t kv_width, const float *st, int bs, int count, int hd, float *vf) {
    for (int j = 0; j < count; j++) {
        for (int g = 0; g < hd / 32; g++) {
            const __m512 d = _mm512_set1_ps(st[g * bs + j]);
            for (int h = 0; h < 32; h += 16) {
                const __m512 x = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(v + j * kv_width + 32 * g + h))));
                _mm512_storeu_ps(vf + (int64_t)j * hd + 32 * g + h, _mm512_mul_ps(x, d));
            }
        }
    }
}

__attribute__((target("avx2,fma,f16c")))
static void q8_keys_avx2(const int8_t *k, const float *st, int bs, int hd, float *kf) {
    for (int d = 0; d < hd; d++) {
        const float *s = st + (d / 32) * bs;
        int j = 0;
        for (; j + 8 <= bs; j += 8) {
            const __m256 x = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(k + (int64_t)d * bs + j))));
            _mm256_storeu_ps(kf + (int64_t)d * bs + j, _mm256_mul_ps(x, _mm256_loadu_ps(s + j)));
        }
        for (; j < bs; j++) kf[(int64_t)d * bs + j] = (float)k[(int64_t)d * bs + j] * s[j];
    }
}

__attribute__((target("avx2,fma,f16c")))
static void q8_values_avx2(const int8_t *v, int64_t kv_width, const float *st, int bs, int count, int hd, float *vf) {
    for (int j = 0; j < count; j++) {
        for (int g = 0; g < hd / 32; g++) {
            const __m256 d = _mm256_set1_ps(st[g * bs + j]);
            for (int h = 0; h < 32; h += 8) {
                const __m256 x = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(v + j * kv_width + 32 * g + h))));
                _mm256_storeu_ps(vf + (int64_t)j * hd + 32 * g + h, _mm256_mul_ps(x, d));
            }
        }
    }
}
#endif

static void q8_keys_to_f32(int isa, const int8_t *k, const float *st, int bs, int hd, float *kf) {
#if defined(__x86_64__)
    if (isa >= AG_ISA_AVX512) { q8_keys_avx512(k, st, bs, hd, kf); return; }
    if (isa >= AG_ISA_AVX2) { q8_keys_avx2(k, st, bs, hd, kf); return; }
#endif
    for (int d = 0; d < hd; d++)
        for (int j = 0; j < bs; j++) kf[(int64_t)d * bs + j] = (float)k[(int64_t)d * bs + j] * st[(d / 32) * bs + j];
}

static void q8_values_to_f32(int isa, const int8_t *v, int64_t kv_width, const float *st, int bs, int count, int hd, float *vf) {
#if defined(__x86_64__)
    if (isa >= AG_ISA_AVX512) { q8_values_avx512(v, kv_width, st, bs, count, hd, vf); return; }
    if (isa >= AG_ISA_AVX2) { q8_values_avx2(v, kv_width, st, bs, count, hd, vf); return; }
#endif
    for (int j = 0; j < count; j++)
        for (int e = 0; e < hd; e++) vf[(int64_t)j * hd + e] = (float)v[j * kv_width + e] * st[(e / 32) * bs + j];
}

// The rows of one task: query row r is token t0 + r / group, query head kvh * group + r % group.
typedef struct {
    const float *q[AG_ATTENTION_MAX_ROWS];
    float *o[AG_ATTENTION_MAX_ROWS];
    int64_t length[AG_ATTENTION_MAX_ROWS];  // positions 0 ..< length attended
    int count;
} attention_rows;

// Scores of every row against positions [block * bs, block * bs + bs) into scores[r * ss + position],
// portable C (the scalar and AVX2 paths; the compiler vectorizes across positions).
static void scores_generic(const attention_rows *rows, const char *kb, int kv_type, int bs, int64_t first, int hd,
                           float scale, float *scores, int64_t ss) {
    for (int r = 0; r < rows->count; r++) {
        const float *q = rows->q[r];
        float *s = scores + r * ss + first;
        for (int j = 0; j < bs; j++) {
            float even = 0, odd = 0;
            int d = 0;
            for (; d + 1 < hd; d += 2) {
                even = even + q[d] * kv_element(kv_type, kb, (int64_t)d * bs + j);
                odd = odd + q[d + 1] * kv_element(kv_type, kb, (int64_t)(d + 1) * bs + j);
            }
            if (d < hd) even = even + q[d] * kv_element(kv_type, kb, (int64_t)d * bs + j);
            s[j] = (even + odd) * scale;
        }
    }
}

// out rows += weight * value for positions [first, first + count) of one block, values already float32
// (vf: count rows of hd).
static void values_generic(const attention_rows *rows, const float *vf, int64_t first, int count, int hd,
                           const float *scores, int64_t ss) {
    for (int r = 0; r < rows->count; r++) {
        const int64_t n = rows->length[r] - first < count ? rows->length[r] - first : count;
        const float *w = scores + r * ss + first;
        float *o = rows->o[r];
        for (int64_t j = 0; j < n; j++) {
            for (int i = 0; i < hd; i++) o[i] = o[i] + w[j] * vf[j * hd + i];
        }
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
#define AT512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")))

AT512 static inline __m512 kt_load(int kv_type, const char *p, __mmask16 m) {
    switch (kv_type) {
    case AG_TYPE_F16: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
    case AG_TYPE_BF16: return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
    default: return _mm512_maskz_loadu_ps(m, p);
    }
}

// NR rows (at most 8) against up to 16 positions (mask m) starting at element offset j of each dimension.
AT512 static inline __attribute__((always_inline)) void scores_rows_avx512(
    const float *const *q, int nr, const char *kb, int kv_type, size_t eb, int bs, int j, __mmask16 m, int hd,
    float scale, float *s, int64_t ss) {
    __m512 even[8], odd[8];
    for (int r = 0; r < nr; r++) even[r] = odd[r] = _mm512_setzero_ps();
    int d = 0;
    for (; d + 1 < hd; d += 2) {
        const __m512 k0 = kt_load(kv_type, kb + ((size_t)d * (size_t)bs + (size_t)j) * eb, m);
        const __m512 k1 = kt_load(kv_type, kb + ((size_t)(d + 1) * (size_t)bs + (size_t)j) * eb, m);
        for (int r = 0; r < nr; r++) {
            even[r] = _mm512_fmadd_ps(_mm512_set1_ps(q[r][d]), k0, even[r]);
            odd[r] = _mm512_fmadd_ps(_mm512_set1_ps(q[r][d + 1]), k1, odd[r]);
        }
    }
    if (d < hd) {
        const __m512 k0 = kt_load(kv_type, kb + ((size_t)d * (size_t)bs + (size_t)j) * eb, m);
        for (int r = 0; r < nr; r++) even[r] = _mm512_fmadd_ps(_mm512_set1_ps(q[r][d]), k0, even[r]);
    }
    const __m512 vs = _mm512_set1_ps(scale);
    for (int r = 0; r < nr; r++) _mm512_mask_storeu_ps(s + r * ss, m, _mm512_mul_ps(_mm512_add_ps(even[r], odd[r]), vs));
}

AT512 static void scores_avx512(const attention_rows *rows, const char *kb, int kv_type, int bs, int64_t first, int hd,
                                float scale, float *scores, int64_t ss) {
    const size_t eb = kv_element_bytes(kv_type);
    for (int j = 0; j < bs; j += 16) {
        const int lanes = bs - j < 16 ? bs - j : 16;
        const __mmask16 m = (__mmask16)(lanes == 16 ? 0xFFFFu : (1u << lanes) - 1u);
        for (int r0 = 0; r0 < rows->count; r0 += 8) {
            const int nr = rows->count - r0 < 8 ? rows->count - r0 : 8;
            float *s = scores + r0 * ss + first + j;
            const float *const *q = rows->q + r0;
            switch (nr) {
            case 1: scores_rows_avx512(q, 1, kb, kv_type, eb, bs, j, m, hd, scale, s, ss); break;
            case 2: scores_rows_avx512(q, 2, kb, kv_type, eb, bs, j, m, hd, scale, s, ss); break;
            case 3: scores_rows_avx512(q, 3, kb, kv_type, eb, bs, j, m, hd, scale, s, ss); break;
            case 4: scores_rows_avx512(q, 4, kb, kv_type, eb, bs, j, m, hd, scale, s, ss); break;
            case 5: scores_rows_avx512(q, 5, kb, kv_type, eb, bs, j, m, hd, scale, s, ss); break;
            case 6: scores_rows_avx512(q, 6, kb, kv_type, eb, bs, j, m, hd, scale, s, ss); break;
            case 7: scores_rows_avx512(q, 7, kb, kv_type, eb, bs, j, m, hd, scale, s, ss); break;
            default: scores_rows_avx512(q, 8, kb, kv_type, eb, bs, j, m, hd, scale, s, ss); break;
            }
        }
    }
}

// exp(x) for x <= 0 (softmax after subtracting the maximum): 2^n * e^r with |r| <= ln2 / 2, e^r by
// Cephes' degree-6 polynomial (about 1 ulp), 2^n by vscalefps (0 below the float range).
AT512 static inline __m512 exp_nonpositive(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(y, n);
}

// In place over s[0 ..< n]: softmax (maximum, exponentials and their sum, then the scaling).
AT512 static void softmax_avx512(float *s, int64_t n) {
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    int64_t p = 0;
    for (; p + 16 <= n; p += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(s + p));
    const __mmask16 tail = (__mmask16)((1u << (n - p)) - 1u);
    if (p < n) vmax = _mm512_mask_max_ps(vmax, tail, vmax, _mm512_maskz_loadu_ps(tail, s + p));
    const __m512 maximum = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
    __m512 vsum = _mm512_setzero_ps();
    for (p = 0; p + 16 <= n; p += 16) {
        const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(s + p), maximum));
        _mm512_storeu_ps(s + p, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    if (p < n) {
        const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, s + p), maximum));
        _mm512_mask_storeu_ps(s + p, tail, e);
        vsum = _mm512_mask_add_ps(vsum, tail, vsum, e);
    }
    const __m512 inverse = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
    for (p = 0; p + 16 <= n; p += 16) _mm512_storeu_ps(s + p, _mm512_mul_ps(_mm512_loadu_ps(s + p), inverse));
    if (p < n) _mm512_mask_storeu_ps(s + p, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, s + p), inverse));
}

// One block's values of one KV head (count positions, rows at a stride of kv_width elements) as float32.
AT512 static void values_to_f32_avx512(int kv_type, const char *v, size_t row_bytes, int count, int hd, float *vf) {
    for (int j = 0; j < count; j++, v += row_bytes) {
        for (int i = 0; i < hd; i += 16) {
            const __mmask16 m = (__mmask16)(hd - i >= 16 ? 0xFFFFu : (1u << (hd - i)) - 1u);
            _mm512_mask_storeu_ps(vf + (int64_t)j * hd + i, m, kt_load(kv_type, v + (size_t)i * kv_element_bytes(kv_type), m));
        }
    }
}

// Rows' outputs stay in registers across the block's positions: NC vectors of 16 a row, NR rows of
// the same length at once (independent multiply-add chains; each element still accumulates in order
// of position).
AT512 static inline __attribute__((always_inline)) void values_rows_avx512(
    float *const *o, const float *const *w, int nr, int nc, int64_t n, const float *vf, int hd) {
    __m512 acc[2][8];
    for (int r = 0; r < nr; r++) for (int c = 0; c < nc; c++) acc[r][c] = _mm512_loadu_ps(o[r] + 16 * c);
    for (int64_t j = 0; j < n; j++) {
        for (int r = 0; r < nr; r++) {
            const __m512 wj = _mm512_set1_ps(w[r][j]);
            for (int c = 0; c < nc; c++) acc[r][c] = _mm512_fmadd_ps(wj, _mm512_loadu_ps(vf + j * hd + 16 * c), acc[r][c]);
        }
    }
    for (int r = 0; r < nr; r++) for (int c = 0; c < nc; c++) _mm512_storeu_ps(o[r] + 16 * c, acc[r][c]);
}

AT512 static void values_avx512(const attention_rows *rows, const float *vf, int64_t first, int count, int hd,
                                const float *scores, int64_t ss) {
    const int whole = hd % 16 == 0 && hd <= 128;  // else the general loop below
    for (int r = 0; r < rows->count;) {
        const int64_t n = rows->length[r] - first < count ? rows->length[r] - first : count;
        const int pair = whole && r + 1 < rows->count && rows->length[r + 1] == rows->length[r];
        if (n <= 0) { r += pair ? 2 : 1; continue; }
        if (whole) {
            float *o[2] = {rows->o[r], pair ? rows->o[r + 1] : NULL};
            const float *w[2] = {scores + r * ss + first, pair ? scores + (r + 1) * ss + first : NULL};
            switch (hd / 16 + (pair ? 100 : 0)) {
            case 1: values_rows_avx512(o, w, 1, 1, n, vf, hd); break;
            case 2: values_rows_avx512(o, w, 1, 2, n, vf, hd); break;
            case 3: values_rows_avx512(o, w, 1, 3, n, vf, hd); break;
            case 4: values_rows_avx512(o, w, 1, 4, n, vf, hd); break;
            case 5: values_rows_avx512(o, w, 1, 5, n, vf, hd); break;
            case 6: values_rows_avx512(o, w, 1, 6, n, vf, hd); break;
            case 7: values_rows_avx512(o, w, 1, 7, n, vf, hd); break;
            case 8: values_rows_avx512(o, w, 1, 8, n, vf, hd); break;
            case 101: values_rows_avx512(o, w, 2, 1, n, vf, hd); break;
            case 102: values_rows_avx512(o, w, 2, 2, n, vf, hd); break;
            case 103: values_rows_avx512(o, w, 2, 3, n, vf, hd); break;
            case 104: values_rows_avx512(o, w, 2, 4, n, vf, hd); break;
            case 105: values_rows_avx512(o, w, 2, 5, n, vf, hd); break;
            case 106: values_rows_avx512(o, w, 2, 6, n, vf, hd); break;
            case 107: values_rows_avx512(o, w, 2, 7, n, vf, hd); break;
            default: values_rows_avx512(o, w, 2, 8, n, vf, hd); break;
            }
            r += pair ? 2 : 1;
            continue;
        }
        const float *w = scores + r * ss + first;
        float *o = rows->o[r];
        for (int i = 0; i < hd; i += 16) {
            const __mmask16 m = (__mmask16)(hd - i >= 16 ? 0xFFFFu : (1u << (hd - i)) - 1u);
            __m512 acc = _mm512_maskz_loadu_ps(m, o + i);
            for (int64_t j = 0; j < n; j++) acc = _mm512_fmadd_ps(_mm512_set1_ps(w[j]), _mm512_maskz_loadu_ps(m, vf + j * hd + i), acc);
            _mm512_mask_storeu_ps(o + i, m, acc);
        }
        r++;
    }
}

// ---- the AVX2 path: the same structure, 8 positions (lanes) at a time ----------------------------
#define AT2 __attribute__((target("avx2,fma,f16c")))

// Up to 8 elements from p (lanes of them; the rest 0).
AT2 static inline __m256 kt_load8(int kv_type, const char *p, int lanes) {
    if (lanes < 8) {
        uint8_t tmp[32] = {0};
        memcpy(tmp, p, (size_t)lanes * kv_element_bytes(kv_type));
        return kt_load8(kv_type, (const char *)tmp, 8);
    }
    switch (kv_type) {
    case AG_TYPE_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    case AG_TYPE_BF16: return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
    default: return _mm256_loadu_ps((const float *)p);
    }
}

AT2 static inline void store8(float *s, __m256 v, int lanes) {
    if (lanes == 8) { _mm256_storeu_ps(s, v); return; }
    float tmp[8];
    _mm256_storeu_ps(tmp, v);
    memcpy(s, tmp, (size_t)lanes * sizeof(float));
}

AT2 static inline __attribute__((always_inline)) void scores_rows_avx2(
    const float *const *q, int nr, const char *kb, int kv_type, size_t eb, int bs, int j, int lanes, int hd,
    float scale, float *s, int64_t ss) {
    __m256 even[4], odd[4];
    for (int r = 0; r < nr; r++) even[r] = odd[r] = _mm256_setzero_ps();
    int d = 0;
    for (; d + 1 < hd; d += 2) {
        const __m256 k0 = kt_load8(kv_type, kb + ((size_t)d * (size_t)bs + (size_t)j) * eb, lanes);
        const __m256 k1 = kt_load8(kv_type, kb + ((size_t)(d + 1) * (size_t)bs + (size_t)j) * eb, lanes);
        for (int r = 0; r < nr; r++) {
            even[r] = _mm256_fmadd_ps(_mm256_set1_ps(q[r][d]), k0, even[r]);
            odd[r] = _mm256_fmadd_ps(_mm256_set1_ps(q[r][d + 1]), k1, odd[r]);
        }
    }
    if (d < hd) {
        const __m256 k0 = kt_load8(kv_type, kb + ((size_t)d * (size_t)bs + (size_t)j) * eb, lanes);
        for (int r = 0; r < nr; r++) even[r] = _mm256_fmadd_ps(_mm256_set1_ps(q[r][d]), k0, even[r]);
    }
    for (int r = 0; r < nr; r++) store8(s + r * ss, _mm256_mul_ps(_mm256_add_ps(even[r], odd[r]), _mm256_set1_ps(scale)), lanes);
}

AT2 static void scores_avx2(const attention_rows *rows, const char *kb, int kv_type, int bs, int64_t first, int hd,
                            float scale, float *scores, int64_t ss) {
    const size_t eb = kv_element_bytes(kv_type);
    for (int j = 0; j < bs; j += 8) {
        const int lanes = bs - j < 8 ? bs - j : 8;
        for (int r0 = 0; r0 < rows->count; r0 += 4) {
            const int nr = rows->count - r0 < 4 ? rows->count - r0 : 4;
            float *s = scores + r0 * ss + first + j;
            const float *const *q = rows->q + r0;
            switch (nr) {
            case 1: scores_rows_avx2(q, 1, kb, kv_type, eb, bs, j, lanes, hd, scale, s, ss); break;
            case 2: scores_rows_avx2(q, 2, kb, kv_type, eb, bs, j, lanes, hd, scale, s, ss); break;
            case 3: scores_rows_avx2(q, 3, kb, kv_type, eb, bs, j, lanes, hd, scale, s, ss); break;
            default: scores_rows_avx2(q, 4, kb, kv_type, eb, bs, j, lanes, hd, scale, s, ss); break;
            }
        }
    }
}

AT2 static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

AT2 static inline float hsum8(__m256 v) {
    __m128 m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_add_ps(m, _mm_movehl_ps(m, m));
    m = _mm_add_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

AT2 static void softmax_avx2(float *s, int64_t n) {
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    int64_t p = 0;
    for (; p + 8 <= n; p += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(s + p));
    float maximum = hmax8(vmax);
    for (int64_t i = p; i < n; i++) if (s[i] > maximum) maximum = s[i];
    const __m256 vm = _mm256_set1_ps(maximum);
    __m256 vsum = _mm256_setzero_ps();
    float tail[8] = {0};
    const int rest = (int)(n - p);
    for (p = 0; p + 8 <= n; p += 8) {
        const __m256 e = ag_exp_nonpositive8(_mm256_sub_ps(_mm256_loadu_ps(s + p), vm));
        _mm256_storeu_ps(s + p, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    if (rest > 0) {
        for (int i = 0; i < 8; i++) tail[i] = i < rest ? s[p + i] : maximum;
        __m256 e = ag_exp_nonpositive8(_mm256_sub_ps(_mm256_loadu_ps(tail), vm));
        _mm256_storeu_ps(tail, e);
        for (int i = rest; i < 8; i++) tail[i] = 0;
        memcpy(s + p, tail, (size_t)rest * sizeof(float));
        vsum = _mm256_add_ps(vsum, _mm256_loadu_ps(tail));
    }
    const __m256 inverse = _mm256_set1_ps(1.0f / hsum8(vsum));
    for (p = 0; p + 8 <= n; p += 8) _mm256_storeu_ps(s + p, _mm256_mul_ps(_mm256_loadu_ps(s + p), inverse));
    for (; p < n; p++) s[p] *= _mm256_cvtss_f32(inverse);
}

// One row's output in slabs of up to 64 elements (8 registers) kept across the block's positions.
AT2 static inline __attribute__((always_inline)) void values_slab_avx2(float *o, const float *w, int nc, int64_t n,
                                                                       const float *vf, int hd) {
    __m256 acc[8];
    for (int c = 0; c < nc; c++) acc[c] = _mm256_loadu_ps(o + 8 * c);
    for (int64_t j = 0; j < n; j++) {
        const __m256 wj = _mm256_set1_ps(w[j]);
        for (int c = 0; c < nc; c++) acc[c] = _mm256_fmadd_ps(wj, _mm256_loadu_ps(vf + j * hd + 8 * c), acc[c]);
    }
    for (int c = 0; c < nc; c++) _mm256_storeu_ps(o + 8 * c, acc[c]);
}

AT2 static void values_avx2(const attention_rows *rows, const float *vf, int64_t first, int count, int hd,
                            const float *scores, int64_t ss) {
    for (int r = 0; r < rows->count; r++) {
        const int64_t n = rows->length[r] - first < count ? rows->length[r] - first : count;
        if (n <= 0) continue;
        const float *w = scores + r * ss + first;
        float *o = rows->o[r];
        int i = 0;
        for (; i + 64 <= hd; i += 64) values_slab_avx2(o + i, w, 8, n, vf + i, hd);
        for (; i + 8 <= hd; i += 8) values_slab_avx2(o + i, w, 1, n, vf + i, hd);
        for (; i < hd; i++) {
            float acc = o[i];
            for (int64_t j = 0; j < n; j++) acc = fmaf(w[j], vf[j * hd + i], acc);
            o[i] = acc;
        }
    }
}
#endif

static void attention_task(void *raw, int64_t index, int thread) {
    (void)thread;
    const attention_job *job = raw;
    const int64_t tile = job->tiles - 1 - index / job->kv_heads;  // the last (longest) tiles first: less idle time at the end
    const int kvh = (int)(index % job->kv_heads);
    const int group = job->heads / job->kv_heads, hd = job->head_dim, bs = job->block_size;
    const int64_t t0 = job->tile_start[tile], t1 = job->tile_start[tile + 1];
    const size_t eb = kv_element_bytes(job->kv_type);
    const int64_t kv_width = (int64_t)job->kv_heads * hd;
    attention_rows rows;
    rows.count = 0;
    int64_t longest = 0;
    for (int64_t t = t0; t < t1; t++) {
        for (int g = 0; g < group; g++) {
            const int r = rows.count++;
            rows.q[r] = job->q + t * job->q_stride + ((int64_t)kvh * group + g) * hd;
            rows.o[r] = job->out + t * job->out_stride + ((int64_t)kvh * group + g) * hd;
            rows.length[r] = (int64_t)job->positions[t] + 1;
            if (rows.length[r] > longest) longest = rows.length[r];
        }
    }
    const int32_t *table = job->block_tables + job->table_offsets[t0];
    const int64_t blocks = (longest + bs - 1) / bs, ss = blocks * bs;
    float *scores = scratch_floats(&tl_attention.scores, &tl_attention.scores_capacity, ss * rows.count);
    float *vf = scratch_floats(&tl_attention.values, &tl_attention.values_capacity, (int64_t)bs * hd);
    const int q8 = job->kv_type == AG_TYPE_Q8_0;
    float *kf = q8 ? scratch_floats(&tl_attention.keys, &tl_attention.keys_capacity, (int64_t)bs * hd) : NULL;
    const int key_type = q8 ? AG_TYPE_F32 : job->kv_type;  // Q8_0 keys are read as float32 once widened
    float st[AG_Q8_KV_MAX_SCALES];  // one block's scales (Q8_0), bs x hd / 32 of them
    for (int64_t b = 0; b < blocks; b++) {
        // This KV head's keys in block b: dimension d of its positions at element d * bs.
        const char *kb = job->k_arena + ((size_t)table[b] * (size_t)bs * (size_t)kv_width + (size_t)kvh * (size_t)hd * (size_t)bs) * eb;
        if (q8) {
            q8_block_scales(job->k_scales, (int64_t)table[b] * bs, kv_width, (int64_t)kvh * hd, bs, hd, st);
            q8_keys_to_f32(job->isa, (const int8_t *)kb, st, bs, hd, kf);
            kb = (const char *)kf;
        }
#if defined(__x86_64__)
        if (job->isa >= AG_ISA_AVX512) { scores_avx512(&rows, kb, key_type, bs, b * bs, hd, job->scale, scores, ss); continue; }
        if (job->isa >= AG_ISA_AVX2) { scores_avx2(&rows, kb, key_type, bs, b * bs, hd, job->scale, scores, ss); continue; }
#endif
        scores_generic(&rows, kb, key_type, bs, b * bs, hd, job->scale, scores, ss);
    }
    for (int r = 0; r < rows.count; r++) {
        float *s = scores + r * ss;
        const int64_t n = rows.length[r];
#if defined(__x86_64__)
        if (job->isa >= AG_ISA_AVX512) {
            softmax_avx512(s, n);
            memset(rows.o[r], 0, (size_t)hd * sizeof(float));
            continue;
        }
        if (job->isa >= AG_ISA_AVX2) {
            softmax_avx2(s, n);
            memset(rows.o[r], 0, (size_t)hd * sizeof(float));
            continue;
        }
#endif
        float maximum = -INFINITY;
        for (int64_t p = 0; p < n; p++) if (s[p] > maximum) maximum = s[p];
        float sum = 0;
        for (int64_t p = 0; p < n; p++) {
            const float e = expf(s[p] - maximum);
            s[p] = e;
            sum += e;
        }
        const float inverse = 1.0f / sum;
        for (int64_t p = 0; p < n; p++) s[p] *= inverse;
        for (int i = 0; i < hd; i++) rows.o[r][i] = 0;
    }
    for (int64_t b = 0; b < blocks; b++) {
        const int64_t first = b * bs;
        const int count = longest - first < bs ? (int)(longest - first) : bs;
        // The block's values (position-major rows, as stored) converted to float32 once.
        const char *v0 = job->v_arena + ((size_t)table[b] * (size_t)bs * (size_t)kv_width + (size_t)kvh * (size_t)hd) * eb;
        if (q8) {
            q8_block_scales(job->v_scales, (int64_t)table[b] * bs, kv_width, (int64_t)kvh * hd, bs, hd, st);
            q8_values_to_f32(job->isa, (const int8_t *)v0, kv_width, st, bs, count, hd, vf);
        }
#if defined(__x86_64__)
        if (job->isa >= AG_ISA_AVX512) {
            if (q8) {
                values_avx512(&rows, vf, first, count, hd, scores, ss);
                continue;
            }
            values_to_f32_avx512(job->kv_type, v0, (size_t)kv_width * eb, count, hd, vf);
            values_avx512(&rows, vf, first, count, hd, scores, ss);
            continue;
        }
        if (job->isa >= AG_ISA_AVX2) {
            if (!q8)
                for (int j = 0; j < count; j++) ag_dequantize_row(job->kv_type, v0 + (size_t)j * (size_t)kv_width * eb, vf + (int64_t)j * hd, hd);
            values_avx2(&rows, vf, first, count, hd, scores, ss);
            continue;
        }
#endif
        if (!q8)
            for (int j = 0; j < count; j++) ag_dequantize_row(job->kv_type, v0 + (size_t)j * (size_t)kv_width * eb, vf + (int64_t)j * hd, hd);
        values_generic(&rows, vf, first, count, hd, scores, ss);
    }
}

int ag_kv_store_strided(int kv_type, const float *src, void *dst, int64_t n, int64_t stride) {
    if (stride == 1) return ag_kv_store(kv_type, src, dst, n);
    const size_t eb = kv_element_bytes(kv_type);
    uint16_t buffer[64];
    for (int64_t i0 = 0; i0 < n; i0 += 64) {
        const int64_t m = n - i0 < 64 ? n - i0 : 64;
        const void *converted = src + i0;  // float32: scattered as is
        if (kv_type != AG_TYPE_F32) {
            if (ag_kv_store(kv_type, src + i0, buffer, m) != 0) return -1;
            converted = buffer;
        }
        for (int64_t i = 0; i < m; i++) memcpy((char *)dst + (size_t)((i0 + i) * stride) * eb, (const char *)converted + (size_t)i * eb, eb);
    }
    return 0;
}

int ag_kv_store_q8(const float *src, int8_t *dst, uint16_t *scales, int64_t n, int64_t stride) {
    if (n % AG_QK != 0 || stride < 1) return -1;
    for (int64_t i = 0; i < n; i += AG_QK) {
        ag_block_q8_0 block;
        if (ag_quantize_row(AG_TYPE_Q8_0, src + i, &block, AG_QK) != 0) return -1;
        for (int k = 0; k < AG_QK; k++) dst[(i + k) * stride] = block.qs[k];
        scales[i / AG_QK] = block.d;
    }
    return 0;
}

int ag_kv_store(int kv_type, const float *src, void *dst, int64_t n) {
    switch (kv_type) {
    case AG_TYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        return 0;
    case AG_TYPE_F16:
        ag_table()->store_f16(src, dst, n);
        return 0;
    case AG_TYPE_BF16: {
        uint16_t *y = dst;
        for (int64_t i = 0; i < n; i++) {
            y[i] = ag_f32_to_bf16(src[i]);
        }
        return 0;
    }
    default:
        return -1;
    }
}

int ag_attention(ag_pool *pool, const float *q, int64_t q_stride, float *out, int64_t out_stride,
                 int64_t tokens, const int32_t *positions, const int32_t *block_tables,
                 const int64_t *table_offsets, int kv_type, const void *k_arena, const void *v_arena,
                 const uint16_t *k_scales, const uint16_t *v_scales,
                 int block_size, int heads, int kv_heads, int head_dim, float scale) {
    if (kv_type != AG_TYPE_F32 && kv_type != AG_TYPE_F16 && kv_type != AG_TYPE_BF16 && kv_type != AG_TYPE_Q8_0) return -1;
    if (kv_type == AG_TYPE_Q8_0 && (head_dim % 32 != 0 || !k_scales || !v_scales || (int64_t)block_size * head_dim / 32 > AG_Q8_KV_MAX_SCALES))
        return -1;
    if (tokens < 1 || kv_heads < 1 || heads % kv_heads != 0 || heads / kv_heads > AG_ATTENTION_MAX_ROWS) return -1;
    // Tiles: runs of consecutive tokens of one sequence (same block table), at most 64 query rows each.
    const int group = heads / kv_heads;
    const int64_t per_tile = AG_ATTENTION_MAX_ROWS / group;
    int64_t *tile_start = malloc((size_t)(tokens + 1) * sizeof(int64_t));
    if (!tile_start) return -1;
    int64_t tiles = 0;
    for (int64_t t = 0; t < tokens; t++) {
        if (t == 0 || table_offsets[t] != table_offsets[t - 1] || t - tile_start[tiles - 1] >= per_tile) tile_start[tiles++] = t;
    }
    tile_start[tiles] = tokens;
    attention_job job = {q, q_stride, out, out_stride, positions, block_tables, table_offsets,
                         kv_type, k_arena, v_arena, k_scales, v_scales, block_size, heads, kv_heads, head_dim, scale, tile_start,
                         tiles, ag_isa_active()};
    ag_pool_run(pool, attention_task, &job, tiles * kv_heads);
    free(tile_start);
    return 0;
}
