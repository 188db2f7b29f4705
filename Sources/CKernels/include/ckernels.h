// autoglm kernels: block formats, dequantization, activation quantization, dot products,
// matrix products and the worker pool. Plain C so that each ISA path is compiled for its own
// target (function attributes) and picked once at run time; the binary runs on any x86-64 and arm64.
//
// Type ids are ggml's (GGUFTensorType in Swift): F32=0 F16=1 Q4_0=2 Q4_1=3 Q5_0=6 Q5_1=7 Q8_0=8
// Q8_1=9 Q4_K=12 Q5_K=13 Q6_K=14 Q8_K=15 BF16=30.
#ifndef AUTOGLM_CKERNELS_H
#define AUTOGLM_CKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    AG_TYPE_F32 = 0, AG_TYPE_F16 = 1, AG_TYPE_Q4_0 = 2, AG_TYPE_Q4_1 = 3, AG_TYPE_Q5_0 = 6,
    AG_TYPE_Q5_1 = 7, AG_TYPE_Q8_0 = 8, AG_TYPE_Q8_1 = 9, AG_TYPE_Q4_K = 12, AG_TYPE_Q5_K = 13,
    AG_TYPE_Q6_K = 14, AG_TYPE_Q8_K = 15, AG_TYPE_BF16 = 30,
};

// ---- CPU features and the kernel path ------------------------------------------------------

enum { AG_ISA_SCALAR = 0, AG_ISA_AVX2 = 1, AG_ISA_AVX512 = 2 };

/// The best path this CPU supports (AVX512 = avx512f+bw+vl+vnni; AVX2 = avx2+fma+f16c).
int ag_isa_detected(void);
/// The path in use (detected unless overridden).
int ag_isa_active(void);
/// Forces a path for the calling thread only (tests compare every path with the scalar one); a level
/// above detected is clamped; setting the process-wide level again clears the override.
/// Returns the level now active.
int ag_isa_set(int level);
/// Human-readable name of a level: "scalar", "avx2", "avx512-vnni".
const char *ag_isa_name(int level);

// ---- formats ---------------------------------------------------------------------------------

/// Elements per block and bytes per block of a type; 0 for an unknown type.
int ag_type_block_size(int type);
int ag_type_block_bytes(int type);
/// The format activations are quantized to before a dot product with weights of `weight_type`:
/// Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for the K-quants, F32 for F32/F16/BF16.
int ag_activation_type(int weight_type);

float ag_fp16_to_fp32(uint16_t h);
uint16_t ag_fp32_to_fp16(float f);

/// Dequantizes `n` elements (a multiple of the block size) of `type` to float32.
/// Bit-exact with ggml's dequantize_row_* (and gguf-py's dequantize). Also takes the activation
/// formats Q8_0, Q8_1 and Q8_K (d * q). Returns 0, or -1 for an unknown type.
int ag_dequantize_row(int type, const void *src, float *dst, int64_t n);

/// Quantizes `n` floats (a multiple of the block size) to an activation format (Q8_0, Q8_1, Q8_K),
/// or copies them for F32. Returns 0, or -1 for an unsupported type.
int ag_quantize_row(int act_type, const float *src, void *dst, int64_t n);

/// Quantizes `n` floats (a multiple of the block size) to a weight format: F32, F16, BF16 (round to
/// nearest even), Q8_0, Q4_0 or Q4_K, byte for byte what ggml's reference quantizers
/// (quantize_row_*_ref, no importance matrix) write. Returns 0, or -1 for another type or a bad `n`.
int ag_quantize_weights(int type, const float *src, void *dst, int64_t n);

/// Dot product of one weight row of `weight_type` with one activation row already in
/// ag_activation_type(weight_type), both `n` elements long. Uses the active ISA path.
float ag_vec_dot(int weight_type, int64_t n, const void *w, const void *x);

/// A dot-product kernel of the active path for one weight type: same arguments and result as
/// ag_vec_dot, without the per-call dispatch (hoist it out of a loop over rows). NULL for an
/// unsupported type. It stays callable after ag_isa_set, as the path that was active when fetched.
typedef float (*ag_vec_dot_fn)(int64_t n, const void *w, const void *x);
ag_vec_dot_fn ag_vec_dot_function(int weight_type);

/// out[r] = ag_vec_dot(weight_type, n, (const char *)w + r * w_row_bytes, x) for r < rows, on the
/// active path: one call for a run of rows against the same activation row. Equal to the per-row
/// calls up to float rounding; faster where a multi-row kernel exists (Q4_1 and Q8_0 on AVX2 and
/// AVX-512 share the activation loads and the final reductions across 4 rows).
void ag_vec_dot_rows(int weight_type, int64_t n, const void *w, size_t w_row_bytes, int64_t rows,
                     const void *x, float *out);

/// Plain float32 dot product (attention scores and the like), active ISA path.
float ag_dot_f32(const float *a, const float *b, int64_t n);
/// y[i] += a * x[i].
void ag_axpy_f32(float *y, float a, const float *x, int64_t n);

// ---- worker pool and matrix products ----------------------------------------------------------

typedef struct ag_pool ag_pool;
/// A persistent pool of `threads` workers (the calling thread counts as one of them).
ag_pool *ag_pool_create(int threads);
void ag_pool_destroy(ag_pool *pool);
int ag_pool_threads(const ag_pool *pool);
/// Runs task(context, i, thread) for i in 0..<count across the pool; returns when all are done.
typedef void (*ag_task_fn)(void *context, int64_t index, int thread);
void ag_pool_run(ag_pool *pool, ag_task_fn task, void *context, int64_t count);

/// Y[b][r] = dot(W row r, X[b]) for r < rows, b < batch.
/// W: `rows` rows of `n` elements of `weight_type`, rows contiguous (`ag_row_bytes`).
/// X: batch x n floats (row stride `x_stride` floats). Y: batch x rows floats (row stride `y_stride`).
/// `scratch` must hold ag_matmul_scratch_bytes(weight_type, n, batch) bytes.
void ag_matmul(ag_pool *pool, int weight_type, const void *w, int64_t rows, int64_t n,
               const float *x, int64_t x_stride, int64_t batch, float *y, int64_t y_stride, void *scratch);
size_t ag_matmul_scratch_bytes(int weight_type, int64_t n, int64_t batch);
size_t ag_row_bytes(int type, int64_t n);

/// Quantizes `batch` rows of `n` floats (row stride `x_stride`) into `act_type`, rows packed
/// back to back in `dst`; returns the bytes per packed row.
size_t ag_quantize_rows(ag_pool *pool, int act_type, const float *x, int64_t x_stride, int64_t batch, int64_t n, void *dst);

/// One weight matrix of a fused product: y[b * y_stride + r] = dot(row r of weights, xq row b).
typedef struct {
    int weight_type;
    const void *weights;
    int64_t rows;
    float *y;
    int64_t y_stride;
} ag_matmul_target;
#define AG_MATMUL_MAX_TARGETS 4
/// Several matrices that share one quantized input (Q, K and V; gate and up) in one pool job.
/// All targets must share the activation type ag_activation_type(weight_type).
void ag_matmul_quantized(ag_pool *pool, const ag_matmul_target *targets, int count, int64_t n,
                         const void *xq, size_t xq_stride, int64_t batch);


// ---- packed (row-interleaved) weights: batched products on AVX-512 VNNI and AVX2 ---------------
// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K matrices repacked at load time so that one instruction advances 16
// rows (8 on AVX2) and an unpacked block serves up to 8 activation rows (4 on AVX2; layout in
// packed.c). Per output, the float operations do not depend on the batch size, so batched and solo
// results are bitwise equal, and the AVX2 and AVX-512 paths give bitwise equal results.

enum { AG_PACKED_Q4 = 0, AG_PACKED_Q8 = 1, AG_PACKED_Q5 = 2, AG_PACKED_Q4K = 3, AG_PACKED_Q5K = 4, AG_PACKED_Q6K = 5, AG_PACKED_Q51 = 6,
       AG_PACKED_F16 = 7, AG_PACKED_BF16 = 8, AG_PACKED_Q40 = 9 };
/// The activation formats of the packed products: blocks of 32 (Q4, Q8, Q5) or super-blocks of 256
/// quantized as Q8_K (Q4K, Q5K, Q6K); float32 rows (F16, and BF16 without avx512_bf16); bf16 rows (BF16 with
/// vdpbf16ps, on the AVX-512 path of a CPU with avx512_bf16). Matrices fused into one product must share it.
enum { AG_PACKED_INPUT_BLOCKS = 0, AG_PACKED_INPUT_SUPERBLOCKS = 1, AG_PACKED_INPUT_F32 = 2, AG_PACKED_INPUT_BF16 = 3 };
/// The packed kind for weights of `weight_type` on the active path, or -1 when there is none
/// (another type, or a path below AVX2).
int ag_packed_kind(int weight_type);
/// The activation format a packed kind reads (AG_PACKED_INPUT_*), or -1 for an unknown kind.
int ag_packed_input_format(int kind);
/// Bytes of a packed copy of `rows` x `n` weights of `weight_type` (rows padded to 16); 0 if unsupported.
size_t ag_packed_bytes(int weight_type, int64_t rows, int64_t n);
/// Bytes of one group of 16 packed rows of `n` elements (row r starts group r / 16).
size_t ag_packed_group_bytes(int kind, int64_t n);
/// Writes the packed copy of `rows` x `n` weights into `dst` (ag_packed_bytes). Returns 0 or -1.
int ag_pack_weights(int weight_type, const void *src, int64_t rows, int64_t n, void *dst);
/// Bytes per activation row in a packed input format.
size_t ag_packed_activation_bytes(int format, int64_t n);
/// Quantizes `batch` rows of `n` floats into a packed input format; returns the stride (bytes per row).
size_t ag_quantize_packed_rows(ag_pool *pool, int format, const float *x, int64_t x_stride, int64_t batch, int64_t n, void *dst);
typedef struct {
    int kind;            // AG_PACKED_*
    const void *packed;  // the first group of the rows to compute
    int64_t rows;
    float *y;
    int64_t y_stride;
} ag_packed_target;
/// y[b * y_stride + r] = dot(row r, activation row b) for each target; activations from
/// ag_quantize_packed_rows in the targets' common input format, on the calling thread's path
/// (AVX-512 VNNI or AVX2; the two give bitwise equal results). Returns 0, or -1 (bad arguments,
/// targets of different input formats, or a path below AVX2 active).
int ag_matmul_packed(ag_pool *pool, const ag_packed_target *targets, int count, int64_t n,
                     const void *xq, size_t xq_stride, int64_t batch);

// ---- transformer operations (float32 activations) --------------------------------------------

/// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight, for `rows` rows of `n` (strides in floats).
void ag_rmsnorm(const float *x, int64_t x_stride, const float *weight, float *out, int64_t out_stride,
                int64_t rows, int64_t n, float eps);
/// Rotary embedding in place on `rows` rows (one per token), each `heads` heads of `head_dim`,
/// rotating the first `rot_dims` dims of each head by positions[r] * base^(-2i/rot_dims).
/// neox = 0: adjacent pairs (x[2i], x[2i+1]) (GGML rope type NORM); neox = 1: (x[i], x[i + rot_dims/2]).
void ag_rope(float *x, int64_t x_stride, int64_t rows, int heads, int head_dim, int rot_dims,
             const int32_t *positions, float base, int neox);
/// out[i] = silu(gate[i]) * up[i], silu(z) = z / (1 + e^-z).
void ag_silu_mul(const float *gate, const float *up, float *out, int64_t n);
/// ag_rmsnorm, ag_rope and ag_silu_mul split over the pool (rows, or elements); the same results as one call.
void ag_rmsnorm_pool(ag_pool *pool, const float *x, int64_t x_stride, const float *weight, float *out, int64_t out_stride,
                     int64_t rows, int64_t n, float eps);
void ag_rope_pool(ag_pool *pool, float *x, int64_t x_stride, int64_t rows, int heads, int head_dim, int rot_dims,
                  const int32_t *positions, float base, int neox);
void ag_silu_mul_pool(ag_pool *pool, const float *gate, const float *up, float *out, int64_t n);
/// y[i] += x[i].
void ag_add(float *y, const float *x, int64_t n);
/// x[r * x_stride + i] += bias[i] for r < rows, i < n (a bias vector added to every row).
void ag_add_bias(float *x, int64_t x_stride, int64_t rows, const float *bias, int64_t n);

/// Paged attention for a batch of query tokens.
/// K and V live in arenas of blocks of `block_size` positions, elements of `kv_type` (AG_TYPE_F32,
/// AG_TYPE_F16, AG_TYPE_BF16 or AG_TYPE_Q8_0), kv_width = kv_heads * head_dim. Q8_0: one int8 an element, and an
/// fp16 scale for each 32 elements of a token's row (head_dim a multiple of 32) in k_scales / v_scales: the scale of
/// element e of the token at block b, position j is scales[((b * block_size + j) * kv_width + e) / 32], for keys
/// and values alike; value = scale * int8 (ggml's Q8_0 blocks along the head dimension). In block b (the sequence's
/// positions p with p / block_size = its index in the block table), position j = p % block_size:
///   value element e (KV head e / head_dim) at (b * block_size + j) * kv_width + e   (position-major);
///   key element e at b * block_size * kv_width + e * block_size + j   (transposed within the block:
///   one dimension of the block's keys is contiguous).
/// The block of token t's position p is block_tables[table_offsets[t] + p / block_size]. Token t
/// attends to positions 0...positions[t] of its own sequence; the tokens of one sequence are
/// consecutive, with the same table offset. q: tokens x (heads * head_dim), out: tokens x (heads *
/// head_dim) (strides in floats). Scores, softmax and the weighted sum are float32; a token's result
/// does not depend on the other tokens of the call. Returns 0, or -1 for another kv_type or more than
/// 64 query heads per KV head.
int ag_attention(ag_pool *pool, const float *q, int64_t q_stride, float *out, int64_t out_stride,
                 int64_t tokens, const int32_t *positions, const int32_t *block_tables,
                 const int64_t *table_offsets, int kv_type, const void *k_arena, const void *v_arena,
                 const uint16_t *k_scales, const uint16_t *v_scales,
                 int block_size, int heads, int kv_heads, int head_dim, float scale);

/// Bidirectional attention (a vision tower's: every token sees every token). q, k and v hold `tokens` rows of
/// `stride` floats (head h at h * head_dim); out rows of `out_stride`. Float32 throughout, online softmax.
/// Returns 0, or -1 for head_dim over 256 or an empty input.
int ag_attention_dense(ag_pool *pool, const float *q, const float *k, const float *v, int64_t stride, float *out,
                       int64_t out_stride, int64_t tokens, int heads, int head_dim, float scale);

/// Runs `iterations` rounds of 12 independent vector FMA chains on every pool thread (AVX-512 or AVX2; nothing on
/// the scalar path): time it to get the float32 FMA peak. Each round of each thread is
/// ag_fma_peak_flops_per_iteration() floating-point operations (0 on the scalar path).
void ag_fma_peak(ag_pool *pool, int64_t iterations);
double ag_fma_peak_flops_per_iteration(void);

/// Stores `n` floats at elements 0, stride, 2 stride, ... of a KV arena of `kv_type` (a key into its
/// transposed block). Returns 0, or -1 for another type.
int ag_kv_store_strided(int kv_type, const float *src, void *dst, int64_t n, int64_t stride);

/// Stores `n` floats into a KV arena of `kv_type` (F32 copies; F16 and BF16 round to nearest even).
/// Returns 0, or -1 for another type.
int ag_kv_store(int kv_type, const float *src, void *dst, int64_t n);

/// Q8_0 KV: quantizes `n` floats (a multiple of 32) as ggml's Q8_0 (per 32: d = max|x| / 127, q = round(x / d)), the
/// int8 values to dst[0], dst[stride], ... and the fp16 scales to scales[0 .. n / 32). Returns 0, or -1.
int ag_kv_store_q8(const float *src, int8_t *dst, uint16_t *scales, int64_t n, int64_t stride);

#ifdef __cplusplus
}
#endif
#endif
