// Batched products with F16 weights (a vision tower's, as llama.cpp writes mmproj files): y[b] = W x[b] for many
// rows b at once, float32 arithmetic.
//
// The weights are repacked once into tiles of 16 output rows stored column by column ([n][16] halves), so that one
// 16-lane load and conversion gives the weights of 16 outputs at one input position. The microkernel then takes
// 8 activation rows and 2 tiles (32 outputs): 16 accumulators, each input value broadcast once per tile pair, two
// conversions per 16 FMAs. Tasks are (32-output group, block of 64 activation rows), so a group's tiles stay in
// cache while the block's rows go by; the input dimension is cut into chunks of 1024 to bound that footprint.
#include "kernels_internal.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define F16_TILE 16
#define F16_ROWS 8        // activation rows per microkernel call
#define F16_BLOCK 64      // activation rows per task
#define F16_CHUNK 1024    // input positions per pass

size_t ag_f16_tiles_bytes(int64_t rows, int64_t n) {
    return (size_t)((rows + F16_TILE - 1) / F16_TILE) * (size_t)n * F16_TILE * sizeof(uint16_t);
}

typedef struct { const uint16_t *w; int64_t rows, n; uint16_t *dst; } pack_job;

static void pack_task(void *context, int64_t g, int thread) {
    (void)thread;
    const pack_job *job = context;
    uint16_t *out = job->dst + (size_t)g * (size_t)job->n * F16_TILE;
    for (int r = 0; r < F16_TILE; r++) {
        const int64_t row = g * F16_TILE + r;
        if (row < job->rows) {
            const uint16_t *src = job->w + (size_t)row * (size_t)job->n;
            for (int64_t k = 0; k < job->n; k++) out[k * F16_TILE + r] = src[k];
        } else {
            for (int64_t k = 0; k < job->n; k++) out[k * F16_TILE + r] = 0;
        }
    }
}

void ag_pack_f16_tiles(ag_pool *pool, const uint16_t *w, int64_t rows, int64_t n, uint16_t *dst) {
    pack_job job = {w, rows, n, dst};
    ag_pool_run(pool, pack_task, &job, (rows + F16_TILE - 1) / F16_TILE);
}

typedef struct {
    const float *x;
    int64_t x_stride, batch;
    const uint16_t *tiles;
    int64_t rows, n;
    float *y;
    int64_t y_stride;
    int64_t groups, blocks;  // 32-output groups, 64-row blocks
    int isa;
} gemm_job;

#if defined(__x86_64__)
// rows_x activation rows (1..8) x tiles_x tiles (1 or 2), input positions [k0, k1); adds into y when `add`.
#define F16_KERNEL(NAME, R, T)                                                                                    \
__attribute__((target("avx2,fma,f16c,avx512f")))                                                                  \
static void NAME(const float *x, int64_t xs, const uint16_t *t0, const uint16_t *t1, int64_t k0, int64_t k1,     \
                 float *y, int64_t ys, int64_t out0, int64_t rows, int add) {                                     \
    __m512 acc[R][T];                                                                                             \
    for (int r = 0; r < R; r++)                                                                                   \
        for (int c = 0; c < T; c++) acc[r][c] = _mm512_setzero_ps();                                              \
    for (int64_t k = k0; k < k1; k++) {                                                                           \
        __m512 w[T];                                                                                              \
        w[0] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(t0 + k * F16_TILE)));                         \
        if (T > 1) w[T - 1] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(t1 + k * F16_TILE)));          \
        for (int r = 0; r < R; r++) {                                                                             \
            const __m512 b = _mm512_set1_ps(x[r * xs + k]);                                                       \
            for (int c = 0; c < T; c++) acc[r][c] = _mm512_fmadd_ps(b, w[c], acc[r][c]);                          \
        }                                                                                                         \
    }                                                                                                             \
    for (int r = 0; r < R; r++) {                                                                                 \
        for (int c = 0; c < T; c++) {                                                                             \
            const int64_t o = out0 + 16 * c;                                                                      \
            const int64_t left = rows - o;                                                                        \
            if (left <= 0) continue;                                                                              \
            const __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);                   \
            float *dst = y + r * ys + o;                                                                          \
            __m512 v = acc[r][c];                                                                                 \
            if (add) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, dst));                                         \
            _mm512_mask_storeu_ps(dst, m, v);                                                                     \
        }                                                                                                         \
    }                                                                                                             \
}
F16_KERNEL(f16_8x2, 8, 2)
F16_KERNEL(f16_8x1, 8, 1)
F16_KERNEL(f16_1x2, 1, 2)
F16_KERNEL(f16_1x1, 1, 1)
#endif

static void gemm_scalar(const gemm_job *job, int64_t g, int64_t b0, int64_t b1) {
    for (int64_t o = g * 2 * F16_TILE; o < (g + 1) * 2 * F16_TILE && o < job->rows; o++) {
        const uint16_t *tile = job->tiles + (size_t)(o / F16_TILE) * (size_t)job->n * F16_TILE;
        const int lane = (int)(o % F16_TILE);
        for (int64_t b = b0; b < b1; b++) {
            const float *x = job->x + b * job->x_stride;
            float s = 0;
            for (int64_t k = 0; k < job->n; k++) s += ag_fp16_to_fp32(tile[k * F16_TILE + lane]) * x[k];
            job->y[b * job->y_stride + o] = s;
        }
    }
}

static void gemm_task(void *context, int64_t index, int thread) {
    (void)thread;
    const gemm_job *job = context;
    const int64_t g = index % job->groups, block = index / job->groups;
    const int64_t b0 = block * F16_BLOCK, b1 = b0 + F16_BLOCK < job->batch ? b0 + F16_BLOCK : job->batch;
#if defined(__x86_64__)
    if (job->isa >= 2) {
        const int64_t tile_count = (job->rows + F16_TILE - 1) / F16_TILE;
        const int64_t first_tile = 2 * g;
        const int pair = first_tile + 1 < tile_count;
        const uint16_t *t0 = job->tiles + (size_t)first_tile * (size_t)job->n * F16_TILE;
        const uint16_t *t1 = pair ? t0 + (size_t)job->n * F16_TILE : t0;
        const int64_t out0 = first_tile * F16_TILE;
        for (int64_t k0 = 0; k0 < job->n; k0 += F16_CHUNK) {
            const int64_t k1 = k0 + F16_CHUNK < job->n ? k0 + F16_CHUNK : job->n;
            const int add = k0 > 0;
            int64_t b = b0;
            for (; b + F16_ROWS <= b1; b += F16_ROWS) {
                const float *x = job->x + b * job->x_stride;
                float *y = job->y + b * job->y_stride;
                if (pair) f16_8x2(x, job->x_stride, t0, t1, k0, k1, y, job->y_stride, out0, job->rows, add);
                else f16_8x1(x, job->x_stride, t0, t1, k0, k1, y, job->y_stride, out0, job->rows, add);
            }
            for (; b < b1; b++) {
                const float *x = job->x + b * job->x_stride;
                float *y = job->y + b * job->y_stride;
                if (pair) f16_1x2(x, job->x_stride, t0, t1, k0, k1, y, job->y_stride, out0, job->rows, add);
                else f16_1x1(x, job->x_stride, t0, t1, k0, k1, y, job->y_stride, out0, job->rows, add);
            }
        }
        return;
    }
#endif
    gemm_scalar(job, g, b0, b1);
}

void ag_gemm_f16_tiles(ag_pool *pool, const float *x, int64_t x_stride, int64_t batch, const uint16_t *tiles, int64_t rows,
                       int64_t n, float *y, int64_t y_stride) {
    if (batch <= 0 || rows <= 0 || n <= 0) return;
    gemm_job job = {x, x_stride, batch, tiles, rows, n, y, y_stride,
                    (rows + 2 * F16_TILE - 1) / (2 * F16_TILE), (batch + F16_BLOCK - 1) / F16_BLOCK, ag_isa_active()};
    ag_pool_run(pool, gemm_task, &job, job.groups * job.blocks);
}
