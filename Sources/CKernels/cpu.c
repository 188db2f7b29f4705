// CPU feature detection and the one place that picks a kernel path.
#include "kernels_internal.h"
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <pthread.h>

static ag_kernel_table g_tables[3];
static int g_detected = AG_ISA_SCALAR;
static atomic_int g_active = -1; // -1 until ag_init ran
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static int detect(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    if (!avx2) return AG_ISA_SCALAR;
    const int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                       __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                       __builtin_cpu_supports("avx512vnni");
    return avx512 ? AG_ISA_AVX512 : AG_ISA_AVX2;
#else
    return AG_ISA_SCALAR;
#endif
}

static void init_once(void) {
    g_detected = detect();
    ag_fill_table_scalar(&g_tables[AG_ISA_SCALAR]);
    g_tables[AG_ISA_AVX2] = g_tables[AG_ISA_SCALAR];
#if defined(__x86_64__)
    if (g_detected >= AG_ISA_AVX2) ag_fill_table_avx2(&g_tables[AG_ISA_AVX2]);
    g_tables[AG_ISA_AVX512] = g_tables[AG_ISA_AVX2];
    if (g_detected >= AG_ISA_AVX512) ag_fill_table_avx512(&g_tables[AG_ISA_AVX512]);
#else
    g_tables[AG_ISA_AVX512] = g_tables[AG_ISA_AVX2];
#endif
    // AUTOGLM_KERNELS=scalar|avx2|avx512 caps the path (to compare paths, or to work around a CPU bug).
    int level = g_detected;
    const char *want = getenv("AUTOGLM_KERNELS");
    if (want && strcmp(want, "scalar") == 0) level = AG_ISA_SCALAR;
    else if (want && strcmp(want, "avx2") == 0 && level > AG_ISA_AVX2) level = AG_ISA_AVX2;
    atomic_store_explicit(&g_active, level, memory_order_release);
}

// A per-thread override from ag_isa_set: tests compare paths on their own thread without changing
// the path a model running on other threads (the worker pool) uses. -1: none.
static _Thread_local int tl_override = -1;

static inline int active(void) {
    if (tl_override >= 0) return tl_override;
    int a = atomic_load_explicit(&g_active, memory_order_acquire);
    if (a < 0) {
        pthread_once(&g_once, init_once);
        a = atomic_load_explicit(&g_active, memory_order_acquire);
    }
    return a;
}

int ag_isa_detected(void) {
    (void)active();
    return g_detected;
}

int ag_isa_active(void) { return active(); }

int ag_isa_set(int level) {
    (void)active();
    if (level < AG_ISA_SCALAR) level = AG_ISA_SCALAR;
    if (level > g_detected) level = g_detected;
    tl_override = level == atomic_load_explicit(&g_active, memory_order_acquire) ? -1 : level;
    return level;
}

const char *ag_isa_name(int level) {
    switch (level) {
    case AG_ISA_SCALAR: return "scalar";
    case AG_ISA_AVX2: return "avx2";
    case AG_ISA_AVX512: return "avx512-vnni";
    default: return "unknown";
    }
}

static inline const ag_kernel_table *table(void) { return &g_tables[active()]; }

const ag_kernel_table *ag_table(void) { return table(); }

ag_vec_dot_fn ag_vec_dot_function(int weight_type) {
    if (weight_type < 0 || weight_type >= AG_TYPE_SLOTS) return NULL;
    return table()->dot[weight_type];
}

float ag_vec_dot(int weight_type, int64_t n, const void *w, const void *x) {
    if (weight_type < 0 || weight_type >= AG_TYPE_SLOTS) return 0.0f;
    const ag_dot_kernel k = table()->dot[weight_type];
    return k ? k(n, w, x) : 0.0f;
}

void ag_vec_dot_rows(int weight_type, int64_t n, const void *w, size_t w_row_bytes, int64_t rows,
                     const void *x, float *out) {
    if (weight_type < 0 || weight_type >= AG_TYPE_SLOTS) return;
    const ag_kernel_table *t = table();
    const ag_dot_kernel k = t->dot[weight_type];
    const ag_dot4_kernel k4 = t->dot4[weight_type];
    if (!k) {
        for (int64_t r = 0; r < rows; r++) out[r] = 0.0f;
        return;
    }
    const char *row = w;
    int64_t r = 0;
    if (k4)
        for (; r + 4 <= rows; r += 4, row += 4 * w_row_bytes) k4(n, row, w_row_bytes, x, out + r);
    for (; r < rows; r++, row += w_row_bytes) out[r] = k(n, row, x);
}

int ag_quantize_row(int act_type, const float *src, void *dst, int64_t n) {
    const int bs = ag_type_block_size(act_type);
    if (bs == 0 || n < 0 || n % bs != 0) return -1;
    if (act_type == AG_TYPE_F32) {
        if ((const void *)src != dst) memmove(dst, src, (size_t)n * sizeof(float));
        return 0;
    }
    if (act_type >= AG_TYPE_SLOTS) return -1;
    const ag_quant_kernel k = table()->quant[act_type];
    if (!k) return -1;
    k(src, dst, n);
    return 0;
}

float ag_dot_f32(const float *a, const float *b, int64_t n) { return table()->dot_f32(a, b, n); }

void ag_axpy_f32(float *y, float a, const float *x, int64_t n) { table()->axpy_f32(y, a, x, n); }
