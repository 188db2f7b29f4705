// Bidirectional attention over one image's tokens (the vision tower): every query sees every key.
//
// Keys are first transposed once per call into [head][head_dim][tokens] (rows padded to whole tiles with zeros).
// For each head and block of queries, keys are visited in tiles of AG_DENSE_KEYS: the tile is AG_DENSE_KEYS
// consecutive floats of each transposed row, so that scores for several queries come from broadcast-FMA rows (no
// horizontal sums), then
// an online softmax (running max and sum, flash-attention style) rescales the accumulated output before the tile's
// values are added. Everything is float32.
#include "kernels_internal.h"

#include <math.h>
#include <stdlib.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define AG_DENSE_KEYS 64     // keys per tile
#define AG_DENSE_QUERIES 64  // queries per task

typedef struct {
    const float *q, *k, *v;
    float *out;
    int64_t tokens, stride, out_stride;
    int heads, head_dim;
    float scale;
    int64_t query_blocks;
    int isa;
    float *kt;           // [heads][head_dim][padded]
    int64_t padded;      // tokens rounded up to AG_DENSE_KEYS
} dense_job;

static void transpose_task(void *context, int64_t index, int thread) {
    (void)thread;
    const dense_job *job = context;
    const int head = (int)(index / job->head_dim), e = (int)(index % job->head_dim);
    float *row = job->kt + ((int64_t)head * job->head_dim + e) * job->padded;
    const float *k = job->k + (int64_t)head * job->head_dim + e;
    for (int64_t j = 0; j < job->tokens; j++) row[j] = k[j * job->stride];
    for (int64_t j = job->tokens; j < job->padded; j++) row[j] = 0;
}

static void dense_scalar_scores(const float *qrow, const float *kt, int64_t kt_stride, int head_dim, int count, float scale, float *s) {
    for (int j = 0; j < count; j++) s[j] = 0;
    for (int e = 0; e < head_dim; e++) {
        const float qe = qrow[e];
        const float *row = kt + (int64_t)e * kt_stride;
        for (int j = 0; j < count; j++) s[j] += qe * row[j];
    }
    for (int j = 0; j < count; j++) s[j] *= scale;
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma,avx512f")))
static void dense_avx512_scores4(const float *q0, const float *q1, const float *q2, const float *q3, const float *kt,
                                 int64_t kt_stride, int head_dim, float scale, float *s0, float *s1, float *s2, float *s3) {
    // 4 queries x 64 keys: 16 accumulators of 16 lanes.
    __m512 a[4][4];
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) a[r][c] = _mm512_setzero_ps();
    for (int e = 0; e < head_dim; e++) {
        const float *row = kt + (int64_t)e * kt_stride;
        __m512 k0 = _mm512_loadu_ps(row), k1 = _mm512_loadu_ps(row + 16), k2 = _mm512_loadu_ps(row + 32), k3 = _mm512_loadu_ps(row + 48);
        __m512 b0 = _mm512_set1_ps(q0[e]), b1 = _mm512_set1_ps(q1[e]), b2 = _mm512_set1_ps(q2[e]), b3 = _mm512_set1_ps(q3[e]);
        a[0][0] = _mm512_fmadd_ps(b0, k0, a[0][0]); a[0][1] = _mm512_fmadd_ps(b0, k1, a[0][1]);
        a[0][2] = _mm512_fmadd_ps(b0, k2, a[0][2]); a[0][3] = _mm512_fmadd_ps(b0, k3, a[0][3]);
        a[1][0] = _mm512_fmadd_ps(b1, k0, a[1][0]); a[1][1] = _mm512_fmadd_ps(b1, k1, a[1][1]);
        a[1][2] = _mm512_fmadd_ps(b1, k2, a[1][2]); a[1][3] = _mm512_fmadd_ps(b1, k3, a[1][3]);
        a[2][0] = _mm512_fmadd_ps(b2, k0, a[2][0]); a[2][1] = _mm512_fmadd_ps(b2, k1, a[2][1]);
        a[2][2] = _mm512_fmadd_ps(b2, k2, a[2][2]); a[2][3] = _mm512_fmadd_ps(b2, k3, a[2][3]);
        a[3][0] = _mm512_fmadd_ps(b3, k0, a[3][0]); a[3][1] = _mm512_fmadd_ps(b3, k1, a[3][1]);
        a[3][2] = _mm512_fmadd_ps(b3, k2, a[3][2]); a[3][3] = _mm512_fmadd_ps(b3, k3, a[3][3]);
    }
    const __m512 sc = _mm512_set1_ps(scale);
    float *outs[4] = {s0, s1, s2, s3};
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) _mm512_storeu_ps(outs[r] + 16 * c, _mm512_mul_ps(a[r][c], sc));
}

// e^x for x <= 0 (scores minus their maximum): 2^(x log2 e) as 2^n * 2^f, |f| <= 1/2, 2^f by its degree-6 Taylor
// polynomial (relative error ~1e-8), the power of two applied with scalef. Underflows to 0 below -87.
__attribute__((target("avx2,fma,avx512f")))
static inline __m512 dense_exp512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(1.5403530393381609e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284772e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821580e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994531e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

// One query's tile of 64 scores: new running maximum, the scores turned into e^(s - max) in place, their sum.
// Returns the factor the earlier output and sum must be scaled by.
__attribute__((target("avx2,fma,avx512f")))
static float dense_avx512_softmax_tile(float *s, int count, float *running_max, float *running_sum) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 v[4];
    for (int c = 0; c < 4; c++) {
        const int left = count - 16 * c;
        const __mmask16 mask = left >= 16 ? (__mmask16)0xffff : left > 0 ? (__mmask16)((1u << left) - 1) : 0;
        v[c] = _mm512_mask_loadu_ps(ninf, mask, s + 16 * c);
    }
    const float tile_max = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(v[0], v[1]), _mm512_max_ps(v[2], v[3])));
    const float m = tile_max > *running_max ? tile_max : *running_max;
    const float correction = expf(*running_max - m);
    const __m512 mv = _mm512_set1_ps(m);
    __m512 sum = _mm512_setzero_ps();
    for (int c = 0; c < 4; c++) {
        const __m512 e = dense_exp512(_mm512_sub_ps(v[c], mv));  // -inf lanes (past count) give 0
        sum = _mm512_add_ps(sum, e);
        _mm512_storeu_ps(s + 16 * c, e);
    }
    *running_sum = *running_sum * correction + _mm512_reduce_add_ps(sum);
    *running_max = m;
    return correction;
}

__attribute__((target("avx2,fma,avx512f")))
static void dense_avx512_accumulate(float *o, const float *p, const float *v, int64_t v_stride, int count, int head_dim) {
    // o[0..head_dim) += sum_j p[j] v_j, head_dim a multiple of 16 (checked by the caller).
    for (int d = 0; d < head_dim; d += 64) {
        const int lanes = head_dim - d >= 64 ? 4 : (head_dim - d) / 16;
        __m512 acc[4];
        for (int c = 0; c < lanes; c++) acc[c] = _mm512_loadu_ps(o + d + 16 * c);
        for (int j = 0; j < count; j++) {
            const __m512 pj = _mm512_set1_ps(p[j]);
            const float *vj = v + (int64_t)j * v_stride + d;
            for (int c = 0; c < lanes; c++) acc[c] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vj + 16 * c), acc[c]);
        }
        for (int c = 0; c < lanes; c++) _mm512_storeu_ps(o + d + 16 * c, acc[c]);
    }
}

// Two queries at once with a 128-wide head: each value row is loaded once for both, 16 independent accumulators.
__attribute__((target("avx2,fma,avx512f")))
static void dense_avx512_accumulate2_128(float *o0, float *o1, const float *p0, const float *p1, const float *v, int64_t v_stride,
                                         int count) {
    __m512 a0[8], a1[8];
    for (int c = 0; c < 8; c++) {
        a0[c] = _mm512_loadu_ps(o0 + 16 * c);
        a1[c] = _mm512_loadu_ps(o1 + 16 * c);
    }
    for (int j = 0; j < count; j++) {
        const __m512 b0 = _mm512_set1_ps(p0[j]), b1 = _mm512_set1_ps(p1[j]);
        const float *vj = v + (int64_t)j * v_stride;
        for (int c = 0; c < 8; c++) {
            const __m512 vv = _mm512_loadu_ps(vj + 16 * c);
            a0[c] = _mm512_fmadd_ps(b0, vv, a0[c]);
            a1[c] = _mm512_fmadd_ps(b1, vv, a1[c]);
        }
    }
    for (int c = 0; c < 8; c++) {
        _mm512_storeu_ps(o0 + 16 * c, a0[c]);
        _mm512_storeu_ps(o1 + 16 * c, a1[c]);
    }
}

// ---- AVX2 (8 lanes): the same steps for a CPU without AVX-512 ----
#define AD2 __attribute__((target("avx2,fma")))

// 4 queries x 64 keys, 16 keys (two registers a query) at a time: 8 accumulators.
AD2 static void dense_avx2_scores4(const float *q0, const float *q1, const float *q2, const float *q3, const float *kt,
                                   int64_t kt_stride, int head_dim, float scale, float *s0, float *s1, float *s2, float *s3) {
    const float *qs[4] = {q0, q1, q2, q3};
    float *outs[4] = {s0, s1, s2, s3};
    const __m256 sc = _mm256_set1_ps(scale);
    for (int c = 0; c < AG_DENSE_KEYS; c += 16) {
        __m256 a[4][2];
        for (int r = 0; r < 4; r++) a[r][0] = a[r][1] = _mm256_setzero_ps();
        for (int e = 0; e < head_dim; e++) {
            const float *row = kt + (int64_t)e * kt_stride + c;
            const __m256 k0 = _mm256_loadu_ps(row), k1 = _mm256_loadu_ps(row + 8);
            for (int r = 0; r < 4; r++) {
                const __m256 b = _mm256_set1_ps(qs[r][e]);
                a[r][0] = _mm256_fmadd_ps(b, k0, a[r][0]);
                a[r][1] = _mm256_fmadd_ps(b, k1, a[r][1]);
            }
        }
        for (int r = 0; r < 4; r++) {
            _mm256_storeu_ps(outs[r] + c, _mm256_mul_ps(a[r][0], sc));
            _mm256_storeu_ps(outs[r] + c + 8, _mm256_mul_ps(a[r][1], sc));
        }
    }
}

AD2 static float dense_avx2_softmax_tile(float *s, int count, float *running_max, float *running_sum) {
    for (int j = count; j < AG_DENSE_KEYS; j++) s[j] = -INFINITY;  // past the last key: e^-inf = 0
    __m256 mx = _mm256_loadu_ps(s);
    for (int c = 8; c < AG_DENSE_KEYS; c += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(s + c));
    float lanes[8];
    _mm256_storeu_ps(lanes, mx);
    float tile_max = lanes[0];
    for (int i = 1; i < 8; i++) tile_max = lanes[i] > tile_max ? lanes[i] : tile_max;
    const float m = tile_max > *running_max ? tile_max : *running_max;
    const float correction = expf(*running_max - m);
    const __m256 mv = _mm256_set1_ps(m);
    __m256 sum = _mm256_setzero_ps();
    for (int c = 0; c < AG_DENSE_KEYS; c += 8) {
        const __m256 e = ag_exp_nonpositive8(_mm256_sub_ps(_mm256_loadu_ps(s + c), mv));
        sum = _mm256_add_ps(sum, e);
        _mm256_storeu_ps(s + c, e);
    }
    _mm256_storeu_ps(lanes, sum);
    float total = 0;
    for (int i = 0; i < 8; i++) total += lanes[i];
    *running_sum = *running_sum * correction + total;
    *running_max = m;
    return correction;
}

// o[0..head_dim) += sum_j p[j] v_j, head_dim a multiple of 8, in slabs of up to 64 (8 registers).
AD2 static void dense_avx2_accumulate(float *o, const float *p, const float *v, int64_t v_stride, int count, int head_dim) {
    for (int d = 0; d < head_dim; d += 64) {
        const int lanes = head_dim - d >= 64 ? 8 : (head_dim - d) / 8;
        __m256 acc[8];
        for (int c = 0; c < lanes; c++) acc[c] = _mm256_loadu_ps(o + d + 8 * c);
        for (int j = 0; j < count; j++) {
            const __m256 pj = _mm256_set1_ps(p[j]);
            const float *vj = v + (int64_t)j * v_stride + d;
            for (int c = 0; c < lanes; c++) acc[c] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8 * c), acc[c]);
        }
        for (int c = 0; c < lanes; c++) _mm256_storeu_ps(o + d + 8 * c, acc[c]);
    }
}
#endif

static void dense_task(void *context, int64_t index, int thread) {
    (void)thread;
    const dense_job *job = (const dense_job *)context;
    const int head = (int)(index / job->query_blocks);
    const int64_t first = (index % job->query_blocks) * AG_DENSE_QUERIES;
    const int64_t last = first + AG_DENSE_QUERIES < job->tokens ? first + AG_DENSE_QUERIES : job->tokens;
    const int nq = (int)(last - first), hd = job->head_dim;
    const int64_t offset = (int64_t)head * hd;

    float scores[AG_DENSE_QUERIES][AG_DENSE_KEYS];
    const float *kt_head = job->kt + (int64_t)head * hd * job->padded;
    float running_max[AG_DENSE_QUERIES], running_sum[AG_DENSE_QUERIES];
    float *o = job->out;
    for (int i = 0; i < nq; i++) {
        running_max[i] = -INFINITY;
        running_sum[i] = 0;
        float *orow = o + (first + i) * job->out_stride + offset;
        for (int e = 0; e < hd; e++) orow[e] = 0;
    }
    const int fast = job->isa >= AG_ISA_AVX512 && hd % 16 == 0;
    const int fast2 = !fast && job->isa >= AG_ISA_AVX2 && hd % 8 == 0;
    for (int64_t k0 = 0; k0 < job->tokens; k0 += AG_DENSE_KEYS) {
        const int count = (int)(job->tokens - k0 < AG_DENSE_KEYS ? job->tokens - k0 : AG_DENSE_KEYS);
        const float *kt = kt_head + k0;
        int i = 0;
#if defined(__x86_64__)
        if (fast) {
            for (; i + 4 <= nq; i += 4) {
                const float *qb = job->q + (first + i) * job->stride + offset;
                dense_avx512_scores4(qb, qb + job->stride, qb + 2 * job->stride, qb + 3 * job->stride, kt, job->padded, hd, job->scale,
                                     scores[i], scores[i + 1], scores[i + 2], scores[i + 3]);
            }
        }
        if (fast2) {
            for (; i + 4 <= nq; i += 4) {
                const float *qb = job->q + (first + i) * job->stride + offset;
                dense_avx2_scores4(qb, qb + job->stride, qb + 2 * job->stride, qb + 3 * job->stride, kt, job->padded, hd, job->scale,
                                   scores[i], scores[i + 1], scores[i + 2], scores[i + 3]);
            }
        }
#endif
        for (; i < nq; i++) dense_scalar_scores(job->q + (first + i) * job->stride + offset, kt, job->padded, hd, count, job->scale, scores[i]);
#if defined(__x86_64__)
        if (fast) {
            const float *vb = job->v + k0 * job->stride + offset;
            for (i = 0; i < nq; i++) {
                const float correction = dense_avx512_softmax_tile(scores[i], count, &running_max[i], &running_sum[i]);
                float *orow = o + (first + i) * job->out_stride + offset;
                if (correction != 1.0f)
                    for (int e = 0; e < hd; e++) orow[e] *= correction;
            }
            i = 0;
            if (hd == 128) {
                for (; i + 2 <= nq; i += 2) {
                    float *o0 = o + (first + i) * job->out_stride + offset;
                    dense_avx512_accumulate2_128(o0, o0 + job->out_stride, scores[i], scores[i + 1], vb, job->stride, count);
                }
            }
            for (; i < nq; i++) dense_avx512_accumulate(o + (first + i) * job->out_stride + offset, scores[i], vb, job->stride, count, hd);
            continue;
        }
        if (fast2) {
            const float *vb = job->v + k0 * job->stride + offset;
            for (i = 0; i < nq; i++) {
                const float correction = dense_avx2_softmax_tile(scores[i], count, &running_max[i], &running_sum[i]);
                float *orow = o + (first + i) * job->out_stride + offset;
                if (correction != 1.0f)
                    for (int e = 0; e < hd; e++) orow[e] *= correction;
                dense_avx2_accumulate(orow, scores[i], vb, job->stride, count, hd);
            }
            continue;
        }
#endif
        for (i = 0; i < nq; i++) {
            float *s = scores[i];
            float m = running_max[i];
            for (int j = 0; j < count; j++) m = s[j] > m ? s[j] : m;
            const float correction = expf(running_max[i] - m);
            float sum = 0;
            for (int j = 0; j < count; j++) {
                s[j] = expf(s[j] - m);
                sum += s[j];
            }
            running_sum[i] = running_sum[i] * correction + sum;
            running_max[i] = m;
            float *orow = o + (first + i) * job->out_stride + offset;
            if (correction != 1.0f)
                for (int e = 0; e < hd; e++) orow[e] *= correction;
            const float *vb = job->v + k0 * job->stride + offset;
            for (int j = 0; j < count; j++) {
                const float pj = s[j];
                const float *vj = vb + (int64_t)j * job->stride;
                for (int e = 0; e < hd; e++) orow[e] += pj * vj[e];
            }
        }
    }
    for (int i = 0; i < nq; i++) {
        float *orow = o + (first + i) * job->out_stride + offset;
        const float inv = 1.0f / running_sum[i];
        for (int e = 0; e < hd; e++) orow[e] *= inv;
    }
}

int ag_attention_dense(ag_pool *pool, const float *q, const float *k, const float *v, int64_t stride, float *out,
                       int64_t out_stride, int64_t tokens, int heads, int head_dim, float scale) {
    if (tokens <= 0 || heads <= 0 || head_dim <= 0 || head_dim > 256) return -1;
    const int64_t padded = (tokens + AG_DENSE_KEYS - 1) / AG_DENSE_KEYS * AG_DENSE_KEYS;
    float *kt = malloc(sizeof(float) * (size_t)heads * (size_t)head_dim * (size_t)padded);
    if (!kt) return -1;
    dense_job job = {q, k, v, out, tokens, stride, out_stride, heads, head_dim, scale,
                     (tokens + AG_DENSE_QUERIES - 1) / AG_DENSE_QUERIES, ag_isa_active(), kt, padded};
    ag_pool_run(pool, transpose_task, &job, (int64_t)heads * head_dim);
    ag_pool_run(pool, dense_task, &job, (int64_t)heads * job.query_blocks);
    free(kt);
    return 0;
}

// ---- the machine's float32 FMA peak ------------------------------------------------------------------------
// Independent chains of vector FMAs on every pool thread, long enough to hide latency: the ceiling any float32
// product (F32, F16 or BF16 weights widened to float32) can reach here.

typedef struct { int64_t iterations; int isa; float sink[64]; } peak_job;

#if defined(__x86_64__)
__attribute__((target("avx2,fma,avx512f")))
static float peak_avx512(int64_t iterations) {
    __m512 a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps(0.001f * (float)i);
    const __m512 b = _mm512_set1_ps(0.9999f), c = _mm512_set1_ps(0.0001f);
    for (int64_t k = 0; k < iterations; k++)
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
    float s = 0;
    for (int i = 0; i < 12; i++) s += _mm512_reduce_add_ps(a[i]);
    return s;
}

__attribute__((target("avx2,fma")))
static float peak_avx2(int64_t iterations) {
    __m256 a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps(0.001f * (float)i);
    const __m256 b = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(0.0001f);
    for (int64_t k = 0; k < iterations; k++)
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], b, c);
    float out[8], s = 0;
    for (int i = 0; i < 12; i++) {
        _mm256_storeu_ps(out, a[i]);
        for (int j = 0; j < 8; j++) s += out[j];
    }
    return s;
}
#endif

static void peak_task(void *context, int64_t index, int thread) {
    (void)thread;
    peak_job *job = (peak_job *)context;
    float s = 0;
#if defined(__x86_64__)
    if (job->isa >= 2) s = peak_avx512(job->iterations);
    else if (job->isa >= 1) s = peak_avx2(job->iterations);
#endif
    job->sink[index % 64] = s;
}

double ag_fma_peak_flops_per_iteration(void) {
    const int isa = ag_isa_active();
    return isa >= 2 ? 12.0 * 16 * 2 : isa >= 1 ? 12.0 * 8 * 2 : 0;
}

void ag_fma_peak(ag_pool *pool, int64_t iterations) {
    peak_job job = {iterations, ag_isa_active(), {0}};
    ag_pool_run(pool, peak_task, &job, ag_pool_threads(pool));
}
