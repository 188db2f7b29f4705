// Matrix products over a batch of activation rows, split across the pool by output rows.
//
// The activations are quantized once per call into the weight type's partner format (llama.cpp's
// scheme: integer dot products per block), then every task computes a chunk of output rows for all
// batch rows, so one pass over a weight row serves every sequence in the batch.
#include "kernels_internal.h"

#include <string.h>

size_t ag_row_bytes(int type, int64_t n) {
    int bs = ag_type_block_size(type), bb = ag_type_block_bytes(type);
    if (bs == 0) return 0;
    return (size_t)(n / bs) * (size_t)bb;
}

size_t ag_matmul_scratch_bytes(int weight_type, int64_t n, int64_t batch) {
    return ag_row_bytes(ag_activation_type(weight_type), n) * (size_t)batch + 64;
}

typedef struct {
    int act_type;
    const float *x;
    int64_t x_stride, n, batch, rows_per_task;
    char *dst;
    size_t dst_stride;
} quantize_job;

static void quantize_task(void *raw, int64_t index, int thread) {
    (void)thread;
    quantize_job *job = raw;
    int64_t b0 = index * job->rows_per_task, b1 = b0 + job->rows_per_task;
    if (b1 > job->batch) b1 = job->batch;
    for (int64_t b = b0; b < b1; b++) {
        const float *x = job->x + b * job->x_stride;
        char *dst = job->dst + (size_t)b * job->dst_stride;
        if (job->act_type == AG_ACT_PACKED) ag_quantize_packed_row(x, dst, job->n);
        else if (job->act_type == AG_ACT_PACKED_K) ag_quantize_packed_k_row(x, dst, job->n);
        else ag_quantize_row(job->act_type, x, dst, job->n);
    }
}

size_t ag_quantize_rows(ag_pool *pool, int act_type, const float *x, int64_t x_stride, int64_t batch, int64_t n, void *dst) {
    size_t stride = act_type == AG_ACT_PACKED ? ag_packed_activation_bytes(AG_PACKED_INPUT_BLOCKS, n)
                    : act_type == AG_ACT_PACKED_K ? ag_packed_activation_bytes(AG_PACKED_INPUT_SUPERBLOCKS, n)
                    : ag_row_bytes(act_type, n);
    quantize_job job = {act_type, x, x_stride, n, batch, 0, dst, stride};
    int threads = ag_pool_threads(pool);
    if (batch < 8 || threads == 1) {
        job.rows_per_task = batch;
        quantize_task(&job, 0, 0);
    } else {
        job.rows_per_task = (batch + threads * 2 - 1) / (threads * 2);
        ag_pool_run(pool, quantize_task, &job, (batch + job.rows_per_task - 1) / job.rows_per_task);
    }
    return stride;
}

typedef struct {
    int count;
    ag_matmul_target targets[AG_MATMUL_MAX_TARGETS];
    int64_t task_start[AG_MATMUL_MAX_TARGETS + 1];  // first task index of each target
    int64_t rows_per_task;
    int64_t n, batch;
    const char *xq;
    size_t xq_stride;
} matmul_job;

// Rows of weights processed together for every batch row: small enough to stay in L1 while the
// activation rows stream past.
#define AG_ROW_TILE 16

static void matmul_task(void *raw, int64_t index, int thread) {
    (void)thread;
    const matmul_job *job = raw;
    int t = 0;
    while (index >= job->task_start[t + 1]) t++;
    const ag_matmul_target *target = &job->targets[t];
    int64_t r0 = (index - job->task_start[t]) * job->rows_per_task;
    int64_t r1 = r0 + job->rows_per_task;
    if (r1 > target->rows) r1 = target->rows;
    const size_t row_bytes = ag_row_bytes(target->weight_type, job->n);
    const char *w = target->weights;
    for (int64_t rt = r0; rt < r1; rt += AG_ROW_TILE) {
        int64_t rt1 = rt + AG_ROW_TILE < r1 ? rt + AG_ROW_TILE : r1;
        for (int64_t b = 0; b < job->batch; b++) {
            const char *xb = job->xq + (size_t)b * job->xq_stride;
            float *yb = target->y + b * target->y_stride;
            ag_vec_dot_rows(target->weight_type, job->n, w + (size_t)rt * row_bytes, row_bytes, rt1 - rt, xb, yb + rt);
        }
    }
}

int64_t ag_plan_tasks(const int64_t *units, int count, int threads, int64_t align, int64_t *per, int64_t *task_start) {
    int64_t total = 0;
    for (int i = 0; i < count; i++) total += units[i];
    // Several tasks per thread so that uneven progress evens out, each a multiple of `align`.
    const int64_t want_tasks = threads == 1 ? 1 : threads * 8;
    int64_t p = (total + want_tasks - 1) / want_tasks;
    p = (p + align - 1) / align * align;
    if (p < align) p = align;
    int64_t tasks = 0;
    for (int i = 0; i < count; i++) {
        task_start[i] = tasks;
        tasks += (units[i] + p - 1) / p;
    }
    task_start[count] = tasks;
    *per = p;
    return tasks;
}

void ag_matmul_quantized(ag_pool *pool, const ag_matmul_target *targets, int count, int64_t n,
                         const void *xq, size_t xq_stride, int64_t batch) {
    if (count < 1 || count > AG_MATMUL_MAX_TARGETS || batch < 1) return;
    matmul_job job;
    memset(&job, 0, sizeof job);
    job.count = count;
    job.n = n;
    job.batch = batch;
    job.xq = xq;
    job.xq_stride = xq_stride;
    int64_t rows[AG_MATMUL_MAX_TARGETS];
    for (int i = 0; i < count; i++) {
        job.targets[i] = targets[i];
        rows[i] = targets[i].rows;
    }
    const int64_t tasks = ag_plan_tasks(rows, count, ag_pool_threads(pool), AG_ROW_TILE, &job.rows_per_task, job.task_start);
    ag_pool_run(pool, matmul_task, &job, tasks);
}

void ag_matmul(ag_pool *pool, int weight_type, const void *w, int64_t rows, int64_t n,
               const float *x, int64_t x_stride, int64_t batch, float *y, int64_t y_stride, void *scratch) {
    int act = ag_activation_type(weight_type);
    size_t stride = ag_quantize_rows(pool, act, x, x_stride, batch, n, scratch);
    ag_matmul_target target = {weight_type, w, rows, y, y_stride};
    ag_matmul_quantized(pool, &target, 1, n, scratch, stride, batch);
}
