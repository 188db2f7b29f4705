// Block formats: sizes, fp16/bf16, dequantization (bit-exact with gguf-py) and the scalar
// reference quantizers of the activation formats (bit-exact with ggml's quantize_row_*_ref).
#include "kernels_internal.h"
#include <math.h>

// Bit exactness needs every product and sum rounded on its own, as numpy does: no FMA contraction.
#pragma STDC FP_CONTRACT OFF
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

int ag_type_block_size(int type) {
    switch (type) {
    case AG_TYPE_F32: case AG_TYPE_F16: case AG_TYPE_BF16: return 1;
    case AG_TYPE_Q4_0: case AG_TYPE_Q4_1: case AG_TYPE_Q5_0: case AG_TYPE_Q5_1:
    case AG_TYPE_Q8_0: case AG_TYPE_Q8_1: return AG_QK;
    case AG_TYPE_Q4_K: case AG_TYPE_Q5_K: case AG_TYPE_Q6_K: case AG_TYPE_Q8_K: return AG_QK_K;
    default: return 0;
    }
}

int ag_type_block_bytes(int type) {
    switch (type) {
    case AG_TYPE_F32: return 4;
    case AG_TYPE_F16: case AG_TYPE_BF16: return 2;
    case AG_TYPE_Q4_0: return (int)sizeof(ag_block_q4_0);
    case AG_TYPE_Q4_1: return (int)sizeof(ag_block_q4_1);
    case AG_TYPE_Q5_0: return (int)sizeof(ag_block_q5_0);
    case AG_TYPE_Q5_1: return (int)sizeof(ag_block_q5_1);
    case AG_TYPE_Q8_0: return (int)sizeof(ag_block_q8_0);
    case AG_TYPE_Q8_1: return (int)sizeof(ag_block_q8_1);
    case AG_TYPE_Q4_K: return (int)sizeof(ag_block_q4_K);
    case AG_TYPE_Q5_K: return (int)sizeof(ag_block_q5_K);
    case AG_TYPE_Q6_K: return (int)sizeof(ag_block_q6_K);
    case AG_TYPE_Q8_K: return (int)sizeof(ag_block_q8_K);
    default: return 0;
    }
}

int ag_activation_type(int weight_type) {
    switch (weight_type) {
    case AG_TYPE_Q4_0: case AG_TYPE_Q5_0: case AG_TYPE_Q8_0: return AG_TYPE_Q8_0;
    case AG_TYPE_Q4_1: case AG_TYPE_Q5_1: return AG_TYPE_Q8_1;
    case AG_TYPE_Q4_K: case AG_TYPE_Q5_K: case AG_TYPE_Q6_K: return AG_TYPE_Q8_K;
    case AG_TYPE_F32: case AG_TYPE_F16: case AG_TYPE_BF16: return AG_TYPE_F32;
    default: return -1;
    }
}

float ag_fp16_to_fp32(uint16_t h) { return ag_half_to_f32(h); }
uint16_t ag_fp32_to_fp16(float f) { return ag_f32_to_half(f); }

// ---- dequantization ---------------------------------------------------------------------------
// Each mirrors gguf-py's numpy expression operation by operation (float32 throughout).

static void deq_q4_0(const ag_block_q4_0 *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += AG_QK) {
        const float d = ag_half_to_f32(b[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)((int)(b[i].qs[j] & 0x0F) - 8);
            y[j + 16] = d * (float)((int)(b[i].qs[j] >> 4) - 8);
        }
    }
}

static void deq_q4_1(const ag_block_q4_1 *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += AG_QK) {
        const float d = ag_half_to_f32(b[i].d), m = ag_half_to_f32(b[i].m);
        for (int j = 0; j < 16; j++) {
            const float v0 = d * (float)(b[i].qs[j] & 0x0F);
            const float v1 = d * (float)(b[i].qs[j] >> 4);
            y[j] = v0 + m;
            y[j + 16] = v1 + m;
        }
    }
}

static void deq_q5_0(const ag_block_q5_0 *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += AG_QK) {
        const float d = ag_half_to_f32(b[i].d);
        uint32_t qh;
        memcpy(&qh, b[i].qh, 4);
        for (int j = 0; j < 16; j++) {
            const int h0 = (int)((qh >> j) & 1u) << 4, h1 = (int)((qh >> (j + 16)) & 1u) << 4;
            y[j] = d * (float)(((b[i].qs[j] & 0x0F) | h0) - 16);
            y[j + 16] = d * (float)(((b[i].qs[j] >> 4) | h1) - 16);
        }
    }
}

static void deq_q5_1(const ag_block_q5_1 *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += AG_QK) {
        const float d = ag_half_to_f32(b[i].d), m = ag_half_to_f32(b[i].m);
        uint32_t qh;
        memcpy(&qh, b[i].qh, 4);
        for (int j = 0; j < 16; j++) {
            const int h0 = (int)((qh >> j) & 1u) << 4, h1 = (int)((qh >> (j + 16)) & 1u) << 4;
            const float v0 = d * (float)((b[i].qs[j] & 0x0F) | h0);
            const float v1 = d * (float)((b[i].qs[j] >> 4) | h1);
            y[j] = v0 + m;
            y[j + 16] = v1 + m;
        }
    }
}

static void deq_q8_0(const ag_block_q8_0 *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += AG_QK) {
        const float d = ag_half_to_f32(b[i].d);
        for (int j = 0; j < AG_QK; j++) y[j] = (float)b[i].qs[j] * d;
    }
}

static void deq_q8_1(const ag_block_q8_1 *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += AG_QK) {
        const float d = ag_half_to_f32(b[i].d);
        for (int j = 0; j < AG_QK; j++) y[j] = (float)b[i].qs[j] * d;
    }
}

static void deq_q4_K(const ag_block_q4_K *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = ag_half_to_f32(b[i].d), dmin = ag_half_to_f32(b[i].dmin);
        uint8_t sm[16];
        ag_unpack_k4_scales(b[i].scales, sm);
        for (int j = 0; j < 4; j++) {             // 64 elements: low nibbles, then high nibbles
            const uint8_t *q = b[i].qs + 32 * j;
            const float d0 = d * (float)sm[2 * j], m0 = dmin * (float)sm[8 + 2 * j];
            const float d1 = d * (float)sm[2 * j + 1], m1 = dmin * (float)sm[8 + 2 * j + 1];
            for (int l = 0; l < 32; l++) {
                const float v0 = d0 * (float)(q[l] & 0x0F);
                const float v1 = d1 * (float)(q[l] >> 4);
                y[l] = v0 - m0;
                y[l + 32] = v1 - m1;
            }
            y += 64;
        }
    }
}

static void deq_q5_K(const ag_block_q5_K *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = ag_half_to_f32(b[i].d), dmin = ag_half_to_f32(b[i].dmin);
        uint8_t sm[16];
        ag_unpack_k4_scales(b[i].scales, sm);
        for (int j = 0; j < 4; j++) {
            const uint8_t *q = b[i].qs + 32 * j;
            const float d0 = d * (float)sm[2 * j], m0 = dmin * (float)sm[8 + 2 * j];
            const float d1 = d * (float)sm[2 * j + 1], m1 = dmin * (float)sm[8 + 2 * j + 1];
            for (int l = 0; l < 32; l++) {
                const int h0 = ((b[i].qh[l] >> (2 * j)) & 1) << 4, h1 = ((b[i].qh[l] >> (2 * j + 1)) & 1) << 4;
                const float v0 = d0 * (float)((q[l] & 0x0F) | h0);
                const float v1 = d1 * (float)((q[l] >> 4) | h1);
                y[l] = v0 - m0;
                y[l + 32] = v1 - m1;
            }
            y += 64;
        }
    }
}

static void deq_q6_K(const ag_block_q6_K *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = ag_half_to_f32(b[i].d);
        for (int h = 0; h < 2; h++) {             // two halves of 128 elements
            const uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
            const int8_t *sc = b[i].scales + 8 * h;
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                const float s1 = d * (float)sc[is], s2 = d * (float)sc[is + 2];
                const float s3 = d * (float)sc[is + 4], s4 = d * (float)sc[is + 6];
                y[l] = s1 * (float)q1;
                y[l + 32] = s2 * (float)q2;
                y[l + 64] = s3 * (float)q3;
                y[l + 96] = s4 * (float)q4;
            }
            y += 128;
        }
    }
}

static void deq_q8_K(const ag_block_q8_K *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += AG_QK_K) {
        for (int j = 0; j < AG_QK_K; j++) y[j] = b[i].d * (float)b[i].qs[j];
    }
}

int ag_dequantize_row(int type, const void *src, float *dst, int64_t n) {
    const int bs = ag_type_block_size(type);
    if (bs == 0 || n < 0 || n % bs != 0) return -1;
    const int64_t nb = n / bs;
    switch (type) {
    case AG_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); return 0;
    case AG_TYPE_F16: {
        const ag_half *h = (const ag_half *)src;
        for (int64_t i = 0; i < n; i++) dst[i] = ag_half_to_f32(h[i]);
        return 0;
    }
    case AG_TYPE_BF16: {
        const uint16_t *h = (const uint16_t *)src;
        for (int64_t i = 0; i < n; i++) dst[i] = ag_bf16_to_f32(h[i]);
        return 0;
    }
    case AG_TYPE_Q4_0: deq_q4_0(src, dst, nb); return 0;
    case AG_TYPE_Q4_1: deq_q4_1(src, dst, nb); return 0;
    case AG_TYPE_Q5_0: deq_q5_0(src, dst, nb); return 0;
    case AG_TYPE_Q5_1: deq_q5_1(src, dst, nb); return 0;
    case AG_TYPE_Q8_0: deq_q8_0(src, dst, nb); return 0;
    case AG_TYPE_Q8_1: deq_q8_1(src, dst, nb); return 0;
    case AG_TYPE_Q4_K: deq_q4_K(src, dst, nb); return 0;
    case AG_TYPE_Q5_K: deq_q5_K(src, dst, nb); return 0;
    case AG_TYPE_Q6_K: deq_q6_K(src, dst, nb); return 0;
    case AG_TYPE_Q8_K: deq_q8_K(src, dst, nb); return 0;
    default: return -1;
    }
}

// ---- reference quantizers of the activation formats ------------------------------------------

void ag_quantize_q8_0_scalar(const float *x, void *dst, int64_t n) {
    ag_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / AG_QK; i++, x += AG_QK) {
        float amax = 0.0f;
        for (int j = 0; j < AG_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = ag_f32_to_half(d);
        for (int j = 0; j < AG_QK; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

void ag_quantize_q8_1_scalar(const float *x, void *dst, int64_t n) {
    ag_block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / AG_QK; i++, x += AG_QK) {
        float amax = 0.0f;
        for (int j = 0; j < AG_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = ag_f32_to_half(d);
        int sum = 0;
        for (int j = 0; j < AG_QK; j++) {
            const int8_t q = (int8_t)roundf(x[j] * id);
            y[i].qs[j] = q;
            sum += q;
        }
        y[i].s = ag_f32_to_half((float)sum * d);
    }
}

// ggml's nearest_int: round half to even through the float adder.
static inline int ag_nearest_int(float v) {
    const float t = v + 12582912.0f;
    int32_t i;
    memcpy(&i, &t, 4);
    return (i & 0x007FFFFF) - 0x00400000;
}

void ag_quantize_q8_K_scalar(const float *x, void *dst, int64_t n) {
    ag_block_q8_K *y = dst;
    for (int64_t i = 0; i < n / AG_QK_K; i++, x += AG_QK_K) {
        float max = 0.0f, amax = 0.0f;
        for (int j = 0; j < AG_QK_K; j++) {
            const float ax = fabsf(x[j]);
            if (ax > amax) { amax = ax; max = x[j]; }
        }
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < AG_QK_K; j++) {
            const int v = ag_nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += y[i].qs[16 * j + l];
            y[i].bsums[j] = (int16_t)s;
        }
        y[i].d = 1.0f / iscale;
    }
}

// ---- weight quantizers (model files: `convert`, load-time quantization) -----------------------
// Same arithmetic, step for step, as ggml's reference quantizers quantize_row_q4_0_ref and
// quantize_row_q4_K_ref (no importance matrix), so a file quantized here has the bytes llama.cpp's
// own reference path would write. Q8_0 weights use the activation quantizer above (same format).

static void quantize_q4_0(const float *x, ag_block_q4_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += AG_QK) {
        // The signed value of largest magnitude maps to -8, so the full range -8...7 is used.
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < AG_QK; j++) {
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = ag_f32_to_half(d);
        for (int j = 0; j < AG_QK / 2; j++) {
            // Truncation toward zero of v + 8.5 (v >= -8 here) is rounding half up; clamp the top.
            int lo = (int8_t)(x[j] * id + 8.5f), hi = (int8_t)(x[AG_QK / 2 + j] * id + 8.5f);
            lo = lo < 15 ? lo : 15;
            hi = hi < 15 ? hi : 15;
            y[i].qs[j] = (uint8_t)((uint8_t)lo | ((uint8_t)hi << 4));
        }
    }
}

// Fits x[i] ~ scale * L[i] - the_min with L in 0...nmax, minimizing the weighted squared error:
// a first guess from the range, then `nstep + 1` trial scales around nmax / range, each refined by
// the weighted least-squares solution for (scale, min) given its levels; the best trial wins.
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min,
                           uint8_t *trial, float rmin, float rdelta, int nstep) {
    float lo = x[0], hi = x[0];
    float sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (lo > 0) lo = 0;
    if (hi == lo) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *the_min = -lo;
        return 0.0f;
    }
    float iscale = nmax / (hi - lo);
    float scale = 1 / iscale;
    float best = 0;
    for (int i = 0; i < n; i++) {
        int l = ag_nearest_int(iscale * (x[i] - lo));
        l = l < 0 ? 0 : (l > nmax ? nmax : l);
        L[i] = (uint8_t)l;
        const float diff = scale * L[i] + lo - x[i];
        best += w[i] * (diff * diff);
    }
    for (int step = 0; step <= nstep; step++) {
        iscale = (rmin + rdelta * step + nmax) / (hi - lo);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = ag_nearest_int(iscale * (x[i] - lo));
            l = l < 0 ? 0 : (l > nmax ? nmax : l);
            trial[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        const float det = sum_w * sum_l2 - sum_l * sum_l;
        if (det > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0;
            for (int i = 0; i < n; i++) {
                const float diff = this_scale * trial[i] + this_min - x[i];
                err += w[i] * (diff * diff);
            }
            if (err < best) {
                for (int i = 0; i < n; i++) L[i] = trial[i];
                best = err;
                scale = this_scale;
                lo = this_min;
            }
        }
    }
    *the_min = -lo;
    return scale;
}

static void quantize_q4_K(const float *x, ag_block_q4_K *y, int64_t nb) {
    uint8_t L[AG_QK_K], trial[32];
    float weights[32], mins[AG_QK_K / 32], scales[AG_QK_K / 32];
    for (int64_t i = 0; i < nb; i++, x += AG_QK_K) {
        // Eight sub-blocks of 32, each with its own (scale, min) fit, weighted toward large values.
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < AG_QK_K / 32; j++) {
            const float *xs = x + 32 * j;
            float sum_x2 = 0;
            for (int l = 0; l < 32; l++) sum_x2 += xs[l] * xs[l];
            const float av_x = sqrtf(sum_x2 / 32);
            for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(xs[l]);
            scales[j] = fit_scale_min(32, 15, xs, weights, L + 32 * j, &mins[j], trial, -1.0f, 0.1f, 20);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        // Sub-block scales and mins as 6-bit multiples of two fp16 super-scales, packed 12 bytes.
        const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
        const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
        for (int j = 0; j < AG_QK_K / 32; j++) {
            uint8_t ls = (uint8_t)ag_nearest_int(inv_scale * scales[j]);
            uint8_t lm = (uint8_t)ag_nearest_int(inv_min * mins[j]);
            ls = ls < 63 ? ls : 63;
            lm = lm < 63 ? lm : 63;
            if (j < 4) {
                y[i].scales[j] = ls;
                y[i].scales[j + 4] = lm;
            } else {
                y[i].scales[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
                y[i].scales[j - 4] |= (uint8_t)((ls >> 4) << 6);
                y[i].scales[j] |= (uint8_t)((lm >> 4) << 6);
            }
        }
        y[i].d = ag_f32_to_half(max_scale / 63.0f);
        y[i].dmin = ag_f32_to_half(max_min / 63.0f);
        // Requantize every value against the scales as stored (rounded to 6 bits and fp16).
        for (int j = 0; j < AG_QK_K / 32; j++) {
            uint8_t sc, m;
            if (j < 4) {
                sc = y[i].scales[j] & 63;
                m = y[i].scales[j + 4] & 63;
            } else {
                sc = (uint8_t)((y[i].scales[j + 4] & 0xF) | ((y[i].scales[j - 4] >> 6) << 4));
                m = (uint8_t)((y[i].scales[j + 4] >> 4) | ((y[i].scales[j] >> 6) << 4));
            }
            const float d = ag_half_to_f32(y[i].d) * sc;
            if (d == 0.0f) continue;
            const float dm = ag_half_to_f32(y[i].dmin) * m;
            for (int l = 0; l < 32; l++) {
                int q = ag_nearest_int((x[32 * j + l] + dm) / d);
                L[32 * j + l] = (uint8_t)(q < 0 ? 0 : (q > 15 ? 15 : q));
            }
        }
        // Nibbles: byte l of each 32-byte group holds value l (low) and value l + 32 (high) of 64.
        uint8_t *q = y[i].qs;
        for (int j = 0; j < AG_QK_K; j += 64, q += 32) {
            for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
        }
    }
}

int ag_quantize_weights(int type, const float *src, void *dst, int64_t n) {
    const int block = ag_type_block_size(type);
    if (block == 0 || n % block != 0) return -1;
    switch (type) {
    case AG_TYPE_F32: memcpy(dst, src, (size_t)n * 4); return 0;
    case AG_TYPE_F16: {
        uint16_t *h = dst;
        for (int64_t i = 0; i < n; i++) h[i] = ag_f32_to_half(src[i]);
        return 0;
    }
    case AG_TYPE_BF16: {
        // Round to nearest even on the dropped 16 bits; NaN stays a quiet NaN.
        uint16_t *h = dst;
        for (int64_t i = 0; i < n; i++) {
            h[i] = ag_f32_to_bf16(src[i]);
        }
        return 0;
    }
    case AG_TYPE_Q8_0: ag_quantize_q8_0_scalar(src, dst, n); return 0;
    case AG_TYPE_Q4_0: quantize_q4_0(src, dst, n / AG_QK); return 0;
    case AG_TYPE_Q4_K: quantize_q4_K(src, dst, n / AG_QK_K); return 0;
    default: return -1;
    }
}
