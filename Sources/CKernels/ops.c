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

void ag_add(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

void ag_add_bias(float *x, int64_t x_stride, int64_t rows, const float *bias, int64_t n) {
    for (int64_t r = 0; r < rows; r++) {
        float *xr = x + r * x_stride;
        for (int64_t i = 0; i < n; i++) xr[i] += bias[i];
    }
}

typedef struct {
    const float *q;
    int64_t q_stride;
    float *out;
    int64_t out_stride;
    const int32_t *positions, *block_tables;
    const int64_t *table_offsets;
    int kv_type;
    const char *k_arena, *v_arena;
    int block_size, heads, kv_heads, head_dim;
    float scale;
} attention_job;

static _Thread_local float *tl_scores;
static _Thread_local int64_t tl_capacity;

static size_t kv_element_bytes(int kv_type) { return kv_type == AG_TYPE_F32 ? 4 : 2; }

// One task = one query token and one KV head, with all the query heads that share it (GQA): each
// cached key and value row is read once for the whole group (GLM-4: 16 query heads a KV head), and
// an f16/bf16 row is converted in the dot product / axpy that reads it. Per query head the float
// operations are the same as one head at a time, in the same order.
static void attention_task(void *raw, int64_t index, int thread) {
    (void)thread;
    const attention_job *job = raw;
    const ag_kernel_table *kt = ag_table();
    const int64_t t = index / job->kv_heads;
    const int kvh = (int)(index % job->kv_heads);
    const int group = job->heads / job->kv_heads;
    const int head_dim = job->head_dim;
    const size_t eb = kv_element_bytes(job->kv_type);
    const size_t row_bytes = (size_t)job->kv_heads * (size_t)head_dim * eb, head_offset = (size_t)kvh * (size_t)head_dim * eb;
    const int64_t length = (int64_t)job->positions[t] + 1;
    const int32_t *table = job->block_tables + job->table_offsets[t];
    if (tl_capacity < length * group) {
        free(tl_scores);
        tl_capacity = length * group < 4096 ? 4096 : length * group * 2;
        tl_scores = malloc((size_t)tl_capacity * sizeof(float));
    }
    const float *q0 = job->q + t * job->q_stride + (int64_t)kvh * group * head_dim;
    float *o0 = job->out + t * job->out_stride + (int64_t)kvh * group * head_dim;
    const ag_dot_kernel dot_kv = kt->dot[job->kv_type];
    for (int64_t p = 0; p < length; p++) {
        const int64_t slot = (int64_t)table[p / job->block_size] * job->block_size + p % job->block_size;
        const void *k = job->k_arena + (size_t)slot * row_bytes + head_offset;
        for (int g = 0; g < group; g++) {
            const float *q = q0 + (int64_t)g * head_dim;
            const float s = job->kv_type == AG_TYPE_F32 ? kt->dot_f32(q, k, head_dim) : dot_kv(head_dim, k, q);
            tl_scores[(int64_t)g * length + p] = s * job->scale;
        }
    }
    for (int g = 0; g < group; g++) {
        float *scores = tl_scores + (int64_t)g * length;
        float maximum = -INFINITY;
        for (int64_t p = 0; p < length; p++) if (scores[p] > maximum) maximum = scores[p];
        float sum = 0;
        for (int64_t p = 0; p < length; p++) {
            const float e = expf(scores[p] - maximum);
            scores[p] = e;
            sum += e;
        }
        const float inverse = 1.0f / sum;
        for (int64_t p = 0; p < length; p++) scores[p] *= inverse;
        float *o = o0 + (int64_t)g * head_dim;
        for (int i = 0; i < head_dim; i++) o[i] = 0;
    }
    for (int64_t p = 0; p < length; p++) {
        const int64_t slot = (int64_t)table[p / job->block_size] * job->block_size + p % job->block_size;
        const void *v = job->v_arena + (size_t)slot * row_bytes + head_offset;
        for (int g = 0; g < group; g++) {
            float *o = o0 + (int64_t)g * head_dim;
            const float w = tl_scores[(int64_t)g * length + p];
            switch (job->kv_type) {
            case AG_TYPE_F16: kt->axpy_f16(o, w, v, head_dim); break;
            case AG_TYPE_BF16: kt->axpy_bf16(o, w, v, head_dim); break;
            default: kt->axpy_f32(o, w, v, head_dim); break;
            }
        }
    }
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
            const uint32_t u = ag_f32_to_bits(src[i]);
            // Round to nearest even; a NaN stays a (quiet) NaN.
            y[i] = (u & 0x7FFFFFFFu) > 0x7F800000u ? (uint16_t)((u >> 16) | 0x40u)
                                                   : (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
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
                 int block_size, int heads, int kv_heads, int head_dim, float scale) {
    if (kv_type != AG_TYPE_F32 && kv_type != AG_TYPE_F16 && kv_type != AG_TYPE_BF16) return -1;
    attention_job job = {q, q_stride, out, out_stride, positions, block_tables, table_offsets,
                         kv_type, k_arena, v_arena, block_size, heads, kv_heads, head_dim, scale};
    ag_pool_run(pool, attention_task, &job, tokens * kv_heads);
    return 0;
}
