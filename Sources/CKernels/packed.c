// Row-interleaved ("packed") weights for batched matrix products on AVX-512 VNNI and AVX2.
//
// The plain kernels compute one weight row against one activation row at a time; a batch of B
// sequences (or B prompt positions) then unpacks every weight block B times, and each 32-element
// block costs ~10 vector instructions per (row, activation row). Here 16 weight rows are
// interleaved by 4-byte groups, so lane r of a 512-bit register holds bytes 4k..4k+3 of row r:
// one vpdpbusd against a broadcast 4-byte group of an activation row advances all 16 rows, a block
// of 16 rows x 32 elements takes 8 of them, and the unpacked block stays in registers while up to
// 8 activation rows go past it. Each lane's result is its row's sum, so no horizontal reduction.
//
// Packed layout, per group of 16 rows (rows padded with zero weights to a multiple of 16), per
// 32-element block b, groups back to back:
//   Q4 (from Q4_0 or Q4_1): 4 x 64 bytes of nibbles (register k, lane r = qs[4k..4k+3] of row r:
//     low nibbles are elements 4k.., high nibbles 16+4k..), then 16 fp16 d, then 16 fp16 m
//     (Q4_0 becomes m = -8d, exact: value = d*q + m).                               320 bytes
//   Q8 (from Q8_0): 8 x 64 bytes (register k, lane r = qs[4k..4k+3] of row r, each byte + 128 so
//     that it is unsigned for vpdpbusd), then 16 fp16 d.                             544 bytes
// Activations (one layout for both): per row, nb x 32 int8, then nb float d, then nb float
// s = d * sum(q), then nb int32 c = -128 * sum(q) (the correction for the +128 of Q8 weights).
//
// Per (row, activation row) the float operations are the same whatever the batch size and however
// the activation rows are grouped, so a sequence's logits do not depend on what it is batched with.
#include "kernels_internal.h"

#include <math.h>

#define PK_ROWS 16

static int packed_kind(int type) {
    switch (type) {
    case AG_TYPE_Q4_0: case AG_TYPE_Q4_1: return AG_PACKED_Q4;
    case AG_TYPE_Q8_0: return AG_PACKED_Q8;
    default: return -1;
    }
}

static size_t block_group_bytes(int kind) { return kind == AG_PACKED_Q4 ? 320 : 544; }

int ag_packed_kind(int weight_type) {
    if (ag_isa_active() < AG_ISA_AVX2) return -1;
    return packed_kind(weight_type);
}

size_t ag_packed_group_bytes(int kind, int64_t n) {
    if (kind != AG_PACKED_Q4 && kind != AG_PACKED_Q8) return 0;
    return (size_t)(n / AG_QK) * block_group_bytes(kind);
}

size_t ag_packed_bytes(int weight_type, int64_t rows, int64_t n) {
    const int kind = packed_kind(weight_type);
    if (kind < 0 || n % AG_QK != 0 || rows < 1) return 0;
    return (size_t)((rows + PK_ROWS - 1) / PK_ROWS) * ag_packed_group_bytes(kind, n);
}

int ag_pack_weights(int weight_type, const void *src, int64_t rows, int64_t n, void *dst) {
    const int kind = packed_kind(weight_type);
    if (kind < 0 || n % AG_QK != 0 || rows < 1) return -1;
    const int64_t nb = n / AG_QK, groups = (rows + PK_ROWS - 1) / PK_ROWS;
    const size_t row_bytes = ag_row_bytes(weight_type, n), bb = block_group_bytes(kind);
    uint8_t *out = dst;
    memset(out, 0, (size_t)groups * (size_t)nb * bb);
    for (int64_t g = 0; g < groups; g++) {
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *blk = out + ((size_t)g * (size_t)nb + (size_t)b) * bb;
            for (int r = 0; r < PK_ROWS; r++) {
                const int64_t row = g * PK_ROWS + r;
                if (row >= rows) break;  // padding rows stay zero: d = m = 0
                const uint8_t *rowp = (const uint8_t *)src + (size_t)row * row_bytes;
                ag_half *d = (ag_half *)(blk + (kind == AG_PACKED_Q4 ? 256 : 512));
                if (weight_type == AG_TYPE_Q4_1) {
                    const ag_block_q4_1 *w = (const ag_block_q4_1 *)rowp + b;
                    for (int k = 0; k < 4; k++) memcpy(blk + k * 64 + r * 4, w->qs + 4 * k, 4);
                    d[r] = w->d;
                    d[PK_ROWS + r] = w->m;
                } else if (weight_type == AG_TYPE_Q4_0) {
                    const ag_block_q4_0 *w = (const ag_block_q4_0 *)rowp + b;
                    for (int k = 0; k < 4; k++) memcpy(blk + k * 64 + r * 4, w->qs + 4 * k, 4);
                    d[r] = w->d;
                    d[PK_ROWS + r] = ag_f32_to_half(-8.0f * ag_half_to_f32(w->d));  // exact: a power-of-two scale
                } else {
                    const ag_block_q8_0 *w = (const ag_block_q8_0 *)rowp + b;
                    for (int k = 0; k < 8; k++) {
                        for (int i = 0; i < 4; i++) blk[k * 64 + r * 4 + i] = (uint8_t)((int)w->qs[4 * k + i] + 128);
                    }
                    d[r] = w->d;
                }
            }
        }
    }
    return 0;
}

size_t ag_packed_activation_bytes(int64_t n) { return (size_t)(n / AG_QK) * (32 + 12); }

void ag_quantize_packed_row(const float *x, void *dst, int64_t n) {
    int8_t *out = dst;
    const int64_t nb = n / AG_QK;
    float *ds = (float *)(out + nb * 32);
    float *ss = ds + nb;
    int32_t *cs = (int32_t *)(ss + nb);
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + b * AG_QK;
        float amax = 0;
        for (int i = 0; i < AG_QK; i++) amax = fmaxf(amax, fabsf(xb[i]));
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int i = 0; i < AG_QK; i++) {
            const int q = (int)lrintf(xb[i] * id);  // |q| <= 127
            out[b * 32 + i] = (int8_t)q;
            sum += q;
        }
        ds[b] = d;
        ss[b] = d * (float)sum;
        cs[b] = -128 * sum;
    }
}

size_t ag_quantize_packed_rows(ag_pool *pool, const float *x, int64_t x_stride, int64_t batch, int64_t n, void *dst) {
    return ag_quantize_rows(pool, AG_ACT_PACKED, x, x_stride, batch, n, dst);
}

// ---- the AVX-512 VNNI kernel ---------------------------------------------------------------------

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512dq")))

// Lane r: start[r] + sum over the block's 32 elements of weight byte x activation byte, for the 16
// rows; two independent chains of four vpdpbusd (integer sums, so the split changes no result).
AVX512 static inline __m512i block_sums(const __m512i q[8], const int32_t *xq, __m512i start) {
    __m512i s0 = _mm512_dpbusd_epi32(start, q[0], _mm512_set1_epi32(xq[0]));
    __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[4], _mm512_set1_epi32(xq[4]));
    for (int k = 1; k < 4; k++) {
        s0 = _mm512_dpbusd_epi32(s0, q[k], _mm512_set1_epi32(xq[k]));
        s1 = _mm512_dpbusd_epi32(s1, q[k + 4], _mm512_set1_epi32(xq[k + 4]));
    }
    return _mm512_add_epi32(s0, s1);
}

// One group of 16 rows against NC activation rows, all blocks. `w`: the group's packed blocks;
// `x`: NC activation rows at stride xs; y: outputs y[c * ys + r] for the first `valid` rows.
#define PK_MAX_COLS 8

AVX512 static inline __attribute__((always_inline)) void group_q4(
    const uint8_t *w, int64_t nb, const int8_t *x, size_t xs, int nc, float *y, int64_t ys, __mmask16 valid) {
    __m512 acc[PK_MAX_COLS];
    for (int c = 0; c < nc; c++) acc[c] = _mm512_setzero_ps();
    const __m512i low = _mm512_set1_epi8(0x0F);
    for (int64_t b = 0; b < nb; b++, w += 320) {
        __m512i q[8];
        for (int k = 0; k < 4; k++) {
            const __m512i v = _mm512_loadu_si512((const void *)(w + 64 * k));
            q[k] = _mm512_and_si512(v, low);
            q[k + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + 256)));
        const __m512 mw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + 288)));
        for (int c = 0; c < nc; c++) {
            const int8_t *xc = x + (size_t)c * xs;
            const int32_t *xq = (const int32_t *)(xc + b * 32);
            const float *xd = (const float *)(xc + nb * 32);
            const __m512 p = _mm512_cvtepi32_ps(block_sums(q, xq, _mm512_setzero_si512()));
            acc[c] = _mm512_fmadd_ps(p, _mm512_mul_ps(dw, _mm512_set1_ps(xd[b])), acc[c]);
            acc[c] = _mm512_fmadd_ps(mw, _mm512_set1_ps(xd[nb + b]), acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) _mm512_mask_storeu_ps(y + c * ys, valid, acc[c]);
}

AVX512 static inline __attribute__((always_inline)) void group_q8(
    const uint8_t *w, int64_t nb, const int8_t *x, size_t xs, int nc, float *y, int64_t ys, __mmask16 valid) {
    __m512 acc[PK_MAX_COLS];
    for (int c = 0; c < nc; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, w += 544) {
        __m512i q[8];
        for (int k = 0; k < 8; k++) q[k] = _mm512_loadu_si512((const void *)(w + 64 * k));
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + 512)));
        for (int c = 0; c < nc; c++) {
            const int8_t *xc = x + (size_t)c * xs;
            const int32_t *xq = (const int32_t *)(xc + b * 32);
            const float *xd = (const float *)(xc + nb * 32);
            const int32_t *xcorr = (const int32_t *)(xd + 2 * nb);
            const __m512 p = _mm512_cvtepi32_ps(block_sums(q, xq, _mm512_set1_epi32(xcorr[b])));
            acc[c] = _mm512_fmadd_ps(p, _mm512_mul_ps(dw, _mm512_set1_ps(xd[b])), acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) _mm512_mask_storeu_ps(y + c * ys, valid, acc[c]);
}

// Instantiated per column count so the accumulators stay in registers.
#define PK_GROUP_CASES(FN)                                                                          \
    switch (nc) {                                                                                   \
    case 1: FN(w, nb, x, xs, 1, y, ys, valid); break;                                               \
    case 2: FN(w, nb, x, xs, 2, y, ys, valid); break;                                               \
    case 3: FN(w, nb, x, xs, 3, y, ys, valid); break;                                               \
    case 4: FN(w, nb, x, xs, 4, y, ys, valid); break;                                               \
    case 5: FN(w, nb, x, xs, 5, y, ys, valid); break;                                               \
    case 6: FN(w, nb, x, xs, 6, y, ys, valid); break;                                               \
    case 7: FN(w, nb, x, xs, 7, y, ys, valid); break;                                               \
    default: FN(w, nb, x, xs, 8, y, ys, valid); break;                                              \
    }

AVX512 static void group_avx512(int kind, const uint8_t *w, int64_t nb, const int8_t *x, size_t xs, int nc,
                                float *y, int64_t ys, __mmask16 valid) {
    if (kind == AG_PACKED_Q4) {
        PK_GROUP_CASES(group_q4)
    } else {
        PK_GROUP_CASES(group_q8)
    }
}

// ---- the AVX2 kernel: the same layout, 8 rows (half a group) per 256-bit register ---------------
// No vpdpbusd: vpmaddubsw (u8 x s8 -> pairs summed to s16) then vpmaddwd by ones (-> s32). Q4 sums the
// eight s16 partials before widening (at most 8 x 2 x 15 x 127 = 30480, no saturation); Q8 undoes the
// +128 and multiplies |w| by x with w's sign (at most 2 x 127 x 127 per s16) and widens each. The
// integer sums equal the AVX-512 kernel's and the float operations are the same, so the two paths
// give bitwise equal results.

#define AVX2F __attribute__((target("avx2,fma,f16c")))
#define PK2_MAX_COLS 4

AVX2F static inline __m256i widen_pairs(__m256i s16) { return _mm256_madd_epi16(s16, _mm256_set1_epi16(1)); }

AVX2F static inline __attribute__((always_inline)) void half_group(
    int kind, const uint8_t *w, int64_t nb, int half, const int8_t *x, size_t xs, int nc, float *y, int64_t ys, __m256i valid) {
    __m256 acc[PK2_MAX_COLS];
    for (int c = 0; c < nc; c++) acc[c] = _mm256_setzero_ps();
    const size_t bb = kind == AG_PACKED_Q4 ? 320 : 544;
    for (int64_t b = 0; b < nb; b++, w += bb) {
        __m256i q[8];
        __m256 dw, mw = _mm256_setzero_ps();
        if (kind == AG_PACKED_Q4) {
            for (int k = 0; k < 4; k++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(w + 64 * k + 32 * half));
                q[k] = _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
                q[k + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0F));
            }
            dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 256 + 16 * half)));
            mw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 288 + 16 * half)));
        } else {
            for (int k = 0; k < 8; k++) {
                q[k] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(w + 64 * k + 32 * half)), _mm256_set1_epi8((char)0x80));
            }
            dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 512 + 16 * half)));
        }
        for (int c = 0; c < nc; c++) {
            const int8_t *xc = x + (size_t)c * xs;
            const int32_t *xq = (const int32_t *)(xc + b * 32);
            const float *xd = (const float *)(xc + nb * 32);
            __m256i sum;
            if (kind == AG_PACKED_Q4) {
                __m256i s16 = _mm256_maddubs_epi16(q[0], _mm256_set1_epi32(xq[0]));
                for (int k = 1; k < 8; k++) s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(q[k], _mm256_set1_epi32(xq[k])));
                sum = widen_pairs(s16);
            } else {
                sum = _mm256_setzero_si256();
                for (int k = 0; k < 8; k++) {
                    const __m256i xb = _mm256_set1_epi32(xq[k]);
                    sum = _mm256_add_epi32(sum, widen_pairs(_mm256_maddubs_epi16(_mm256_abs_epi8(q[k]), _mm256_sign_epi8(xb, q[k]))));
                }
            }
            const __m256 p = _mm256_cvtepi32_ps(sum);
            acc[c] = _mm256_fmadd_ps(p, _mm256_mul_ps(dw, _mm256_set1_ps(xd[b])), acc[c]);
            if (kind == AG_PACKED_Q4) acc[c] = _mm256_fmadd_ps(mw, _mm256_set1_ps(xd[nb + b]), acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) _mm256_maskstore_ps(y + c * ys + 8 * half, valid, acc[c]);
}

AVX2F static void group_avx2(int kind, const uint8_t *w, int64_t nb, const int8_t *x, size_t xs, int nc,
                             float *y, int64_t ys, unsigned valid) {
    for (int half = 0; half < 2; half++) {
        const unsigned bits = (valid >> (8 * half)) & 0xFFu;
        if (bits == 0) break;
        const __m256i lanes = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
        const __m256i mask = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)bits), lanes), lanes);
        for (int c0 = 0; c0 < nc; c0 += PK2_MAX_COLS) {
            const int n = nc - c0 < PK2_MAX_COLS ? nc - c0 : PK2_MAX_COLS;
            const int8_t *xc = x + (size_t)c0 * xs;
            float *yc = y + c0 * ys;
            #define PK2_CASE(K, N) half_group(K, w, nb, half, xc, xs, N, yc, ys, mask)
            if (kind == AG_PACKED_Q4) {
                switch (n) { case 1: PK2_CASE(AG_PACKED_Q4, 1); break; case 2: PK2_CASE(AG_PACKED_Q4, 2); break;
                             case 3: PK2_CASE(AG_PACKED_Q4, 3); break; default: PK2_CASE(AG_PACKED_Q4, 4); break; }
            } else {
                switch (n) { case 1: PK2_CASE(AG_PACKED_Q8, 1); break; case 2: PK2_CASE(AG_PACKED_Q8, 2); break;
                             case 3: PK2_CASE(AG_PACKED_Q8, 3); break; default: PK2_CASE(AG_PACKED_Q8, 4); break; }
            }
            #undef PK2_CASE
        }
    }
}
#endif

typedef struct {
    int count;
    ag_packed_target targets[AG_MATMUL_MAX_TARGETS];
    int64_t task_start[AG_MATMUL_MAX_TARGETS + 1];
    int64_t groups_per_task;
    int isa;  // the caller's path: AG_ISA_AVX512 or AG_ISA_AVX2
    int64_t n, batch;
    const int8_t *xq;
    size_t xq_stride;
} pm_job;

static void pm_task(void *raw, int64_t index, int thread) {
    (void)thread;
    const pm_job *job = raw;
    int t = 0;
    while (index >= job->task_start[t + 1]) t++;
    const ag_packed_target *target = &job->targets[t];
    const int64_t nb = job->n / AG_QK;
    const size_t gb = ag_packed_group_bytes(target->kind, job->n);
    int64_t g0 = (index - job->task_start[t]) * job->groups_per_task, g1 = g0 + job->groups_per_task;
    const int64_t groups = (target->rows + PK_ROWS - 1) / PK_ROWS;
    if (g1 > groups) g1 = groups;
#if defined(__x86_64__)
    // Activation rows in chunks of up to 8 per pass over a group (the group's weights stay in L1).
    for (int64_t g = g0; g < g1; g++) {
        const uint8_t *w = (const uint8_t *)target->packed + (size_t)g * gb;
        const int64_t left = target->rows - g * PK_ROWS;
        const __mmask16 valid = left >= PK_ROWS ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
        if (job->isa < AG_ISA_AVX512) {
            group_avx2(target->kind, w, nb, job->xq, job->xq_stride, (int)job->batch, target->y + g * PK_ROWS,
                       target->y_stride, (unsigned)valid);
            continue;
        }
        for (int64_t c0 = 0; c0 < job->batch; c0 += PK_MAX_COLS) {
            const int nc = (int)(job->batch - c0 < PK_MAX_COLS ? job->batch - c0 : PK_MAX_COLS);
            group_avx512(target->kind, w, nb, job->xq + (size_t)c0 * job->xq_stride, job->xq_stride, nc,
                         target->y + c0 * target->y_stride + g * PK_ROWS, target->y_stride, valid);
        }
    }
#else
    (void)nb; (void)gb; (void)g0; (void)g1;
#endif
}

int ag_matmul_packed(ag_pool *pool, const ag_packed_target *targets, int count, int64_t n,
                     const void *xq, size_t xq_stride, int64_t batch) {
    if (count < 1 || count > AG_MATMUL_MAX_TARGETS || batch < 1 || n % AG_QK != 0) return -1;
    const int isa = ag_isa_active();
    if (isa < AG_ISA_AVX2) return -1;
    pm_job job;
    memset(&job, 0, sizeof job);
    job.isa = isa;
    job.count = count;
    job.n = n;
    job.batch = batch;
    job.xq = xq;
    job.xq_stride = xq_stride;
    int64_t groups[AG_MATMUL_MAX_TARGETS];
    for (int i = 0; i < count; i++) {
        if (targets[i].kind != AG_PACKED_Q4 && targets[i].kind != AG_PACKED_Q8) return -1;
        job.targets[i] = targets[i];
        groups[i] = (targets[i].rows + PK_ROWS - 1) / PK_ROWS;
    }
    const int64_t tasks = ag_plan_tasks(groups, count, ag_pool_threads(pool), 1, &job.groups_per_task, job.task_start);
    ag_pool_run(pool, pm_task, &job, tasks);
    return 0;
}
