// Portable scalar kernels: the reference every SIMD path is tested against, and the path on
// machines without AVX2 (arm64 included). Integer dot products per block, as ggml does.
#include "kernels_internal.h"

static float dot_q4_0(int64_t n, const void *vw, const void *vx) {
    const ag_block_q4_0 *w = vw;
    const ag_block_q8_0 *x = vx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / AG_QK; i++) {
        int s = 0;
        for (int j = 0; j < 16; j++) {
            s += ((w[i].qs[j] & 0x0F) - 8) * x[i].qs[j];
            s += ((w[i].qs[j] >> 4) - 8) * x[i].qs[j + 16];
        }
        sum += (float)s * (ag_half_to_f32(w[i].d) * ag_half_to_f32(x[i].d));
    }
    return sum;
}

static float dot_q4_1(int64_t n, const void *vw, const void *vx) {
    const ag_block_q4_1 *w = vw;
    const ag_block_q8_1 *x = vx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / AG_QK; i++) {
        int s = 0;
        for (int j = 0; j < 16; j++) {
            s += (w[i].qs[j] & 0x0F) * x[i].qs[j];
            s += (w[i].qs[j] >> 4) * x[i].qs[j + 16];
        }
        sum += (float)s * (ag_half_to_f32(w[i].d) * ag_half_to_f32(x[i].d))
             + ag_half_to_f32(w[i].m) * ag_half_to_f32(x[i].s);
    }
    return sum;
}

static float dot_q5_0(int64_t n, const void *vw, const void *vx) {
    const ag_block_q5_0 *w = vw;
    const ag_block_q8_0 *x = vx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / AG_QK; i++) {
        uint32_t qh;
        memcpy(&qh, w[i].qh, 4);
        int s = 0;
        for (int j = 0; j < 16; j++) {
            const int q0 = ((w[i].qs[j] & 0x0F) | (int)(((qh >> j) & 1u) << 4)) - 16;
            const int q1 = ((w[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4)) - 16;
            s += q0 * x[i].qs[j] + q1 * x[i].qs[j + 16];
        }
        sum += (float)s * (ag_half_to_f32(w[i].d) * ag_half_to_f32(x[i].d));
    }
    return sum;
}

static float dot_q5_1(int64_t n, const void *vw, const void *vx) {
    const ag_block_q5_1 *w = vw;
    const ag_block_q8_1 *x = vx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / AG_QK; i++) {
        uint32_t qh;
        memcpy(&qh, w[i].qh, 4);
        int s = 0;
        for (int j = 0; j < 16; j++) {
            const int q0 = (w[i].qs[j] & 0x0F) | (int)(((qh >> j) & 1u) << 4);
            const int q1 = (w[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
            s += q0 * x[i].qs[j] + q1 * x[i].qs[j + 16];
        }
        sum += (float)s * (ag_half_to_f32(w[i].d) * ag_half_to_f32(x[i].d))
             + ag_half_to_f32(w[i].m) * ag_half_to_f32(x[i].s);
    }
    return sum;
}

static float dot_q8_0(int64_t n, const void *vw, const void *vx) {
    const ag_block_q8_0 *w = vw;
    const ag_block_q8_0 *x = vx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / AG_QK; i++) {
        int s = 0;
        for (int j = 0; j < AG_QK; j++) s += w[i].qs[j] * x[i].qs[j];
        sum += (float)s * (ag_half_to_f32(w[i].d) * ag_half_to_f32(x[i].d));
    }
    return sum;
}

static float dot_q4_K(int64_t n, const void *vw, const void *vx) {
    const ag_block_q4_K *w = vw;
    const ag_block_q8_K *x = vx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / AG_QK_K; i++) {
        uint8_t sm[16];
        ag_unpack_k4_scales(w[i].scales, sm);
        int smin = 0;
        for (int j = 0; j < 16; j++) smin += x[i].bsums[j] * sm[8 + j / 2];
        int s = 0;
        for (int j = 0; j < 4; j++) {
            const uint8_t *q = w[i].qs + 32 * j;
            const int8_t *y = x[i].qs + 64 * j;
            int s0 = 0, s1 = 0;
            for (int l = 0; l < 32; l++) {
                s0 += (q[l] & 0x0F) * y[l];
                s1 += (q[l] >> 4) * y[l + 32];
            }
            s += s0 * sm[2 * j] + s1 * sm[2 * j + 1];
        }
        const float d = ag_half_to_f32(w[i].d) * x[i].d, dmin = ag_half_to_f32(w[i].dmin) * x[i].d;
        sum += d * (float)s - dmin * (float)smin;
    }
    return sum;
}

static float dot_q5_K(int64_t n, const void *vw, const void *vx) {
    const ag_block_q5_K *w = vw;
    const ag_block_q8_K *x = vx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / AG_QK_K; i++) {
        uint8_t sm[16];
        ag_unpack_k4_scales(w[i].scales, sm);
        int smin = 0;
        for (int j = 0; j < 16; j++) smin += x[i].bsums[j] * sm[8 + j / 2];
        int s = 0;
        for (int j = 0; j < 4; j++) {
            const uint8_t *q = w[i].qs + 32 * j;
            const int8_t *y = x[i].qs + 64 * j;
            int s0 = 0, s1 = 0;
            for (int l = 0; l < 32; l++) {
                s0 += ((q[l] & 0x0F) | (((w[i].qh[l] >> (2 * j)) & 1) << 4)) * y[l];
                s1 += ((q[l] >> 4) | (((w[i].qh[l] >> (2 * j + 1)) & 1) << 4)) * y[l + 32];
            }
            s += s0 * sm[2 * j] + s1 * sm[2 * j + 1];
        }
        const float d = ag_half_to_f32(w[i].d) * x[i].d, dmin = ag_half_to_f32(w[i].dmin) * x[i].d;
        sum += d * (float)s - dmin * (float)smin;
    }
    return sum;
}

static float dot_q6_K(int64_t n, const void *vw, const void *vx) {
    const ag_block_q6_K *w = vw;
    const ag_block_q8_K *x = vx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / AG_QK_K; i++) {
        int s = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[i].ql + 64 * h, *qh = w[i].qh + 32 * h;
            const int8_t *sc = w[i].scales + 8 * h, *y = x[i].qs + 128 * h;
            int g[8] = {0};
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                g[is + 0] += (((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) - 32) * y[l];
                g[is + 2] += (((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32) * y[l + 32];
                g[is + 4] += (((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32) * y[l + 64];
                g[is + 6] += (((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32) * y[l + 96];
            }
            for (int k = 0; k < 8; k++) s += g[k] * sc[k];
        }
        sum += (ag_half_to_f32(w[i].d) * x[i].d) * (float)s;
    }
    return sum;
}

static float dot_f32(int64_t n, const void *vw, const void *vx) {
    const float *w = vw, *x = vx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += w[i] * x[i];
    return sum;
}

static float dot_f16(int64_t n, const void *vw, const void *vx) {
    const ag_half *w = vw;
    const float *x = vx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += ag_half_to_f32(w[i]) * x[i];
    return sum;
}

static float dot_bf16(int64_t n, const void *vw, const void *vx) {
    const uint16_t *w = vw;
    const float *x = vx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += ag_bf16_to_f32(w[i]) * x[i];
    return sum;
}

static float plain_dot_f32(const float *a, const float *b, int64_t n) { return dot_f32(n, a, b); }

static void plain_axpy_f32(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void plain_axpy_f16(float *y, float a, const uint16_t *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * ag_half_to_f32(x[i]);
}

static void plain_axpy_bf16(float *y, float a, const uint16_t *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * ag_bf16_to_f32(x[i]);
}

static void plain_store_f16(const float *x, uint16_t *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = ag_f32_to_half(x[i]);
}

void ag_fill_table_scalar(ag_kernel_table *t) {
    memset(t, 0, sizeof(*t));
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
    t->quant[AG_TYPE_Q8_0] = ag_quantize_q8_0_scalar;
    t->quant[AG_TYPE_Q8_1] = ag_quantize_q8_1_scalar;
    t->quant[AG_TYPE_Q8_K] = ag_quantize_q8_K_scalar;
    t->dot_f32 = plain_dot_f32;
    t->axpy_f32 = plain_axpy_f32;
    t->axpy_f16 = plain_axpy_f16;
    t->axpy_bf16 = plain_axpy_bf16;
    t->store_f16 = plain_store_f16;
}
