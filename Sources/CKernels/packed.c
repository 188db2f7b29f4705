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
//   Q4 (from Q4_1): 4 x 64 bytes of nibbles (register k, lane r = qs[4k..4k+3] of row r:
//     low nibbles are elements 4k.., high nibbles 16+4k..), then 16 fp16 d, then 16 fp16 m
//     (value = d*q + m).                                                            320 bytes
//   Q40 (from Q4_0): the Q4 nibbles and d, no m: the kernels take m = -8d (exact), as the file's 18
//     bytes a row a block.                                                          288 bytes
//   Q8 (from Q8_0): 8 x 64 bytes (register k, lane r = qs[4k..4k+3] of row r, each byte + 128 so
//     that it is unsigned for vpdpbusd), then 16 fp16 d.                             544 bytes
//   Q5 (from Q5_0): the Q4 nibbles (256 bytes), then 16 x 4 bytes of fifth bits, then 16 fp16 d;
//     value = d*q5 + m with m = -16d (exact). Lane r's fifth-bit word h is qh rearranged so that
//     bit k of byte i is qh bit 4k+i and bit 4+k of byte i is qh bit 16+4k+i: the fifth bits of
//     register k's low nibbles are then (h << (4-k)) & 0x10 per byte, of its high nibbles
//     (h >> k) & 0x10.                                                                352 bytes
//   Q51 (from Q5_1): the Q5 layout, then 16 fp16 m (value = d*q5 + m).                  384 bytes
// Activations for Q4, Q8 and Q5 (format 0): per row, nb x 32 int8, then nb float d, then nb float
// s = d * sum(q), then nb int32 c = -128 * sum(q) (the correction for the +128 of Q8 weights).
//
// The K-quants keep their 256-element super-blocks and their integer sub-block scales:
//   Q4K (from Q4_K), per group of 16 rows, per super-block:
//     32 x 64 bytes of nibbles: register 8p+k, lane r = qs[32p+4k..32p+4k+3] of row r (low nibbles
//       are elements 64p+4k.., sub-block 2p; high nibbles 64p+32+4k.., sub-block 2p+1)     2048
//     8 x 16 bytes: the six-bit scale of sub-block j of row r at 16j+r                      128
//     4 x 32 bytes: the six-bit mins of sub-blocks 2i, 2i+1 of row r at 32i+2r, 32i+2r+1      128
//     16 fp16 d, 16 fp16 dmin                                                                 64
//   so a super-block costs 148 bytes a row (the file's 144 and 4 of padding to whole registers).
//   Per (row, activation row, super-block) the sums are integers, as ggml's Q4_K x Q8_K:
//   S = sum_j scale_j * dot_j and M = sum_j min_j * bsum_j, then y += S*(d*dx) - M*(dmin*dx).
//   Q5K (from Q5_K): the Q4K registers with fifth bits, each quarter p of the super-block (64 elements) holding
//     its 8 nibble registers (as Q4K's 8p..8p+7) then its 2 fifth-bit registers (640 bytes a quarter):
//     fifth-bit register m, lane r holds row r's 32-bit word for nibble registers 4m..4m+3: bit t of
//       byte i is the fifth bit of the low nibble i of register 4m+t, bit 4+t that of its high nibble i
//       (as Q5 above: (h << (4-t)) & 0x10, (h >> t) & 0x10)                        4 x 640 = 2560
//     scales 128, mins 128, 16 fp16 d, 16 fp16 dmin, as Q4K                                  320
//   180 bytes a row (the file's 176). Sums as Q4K with five-bit weights.
//   Q6K (from Q6_K: 16 sub-blocks of 16, signed eight-bit scales, weights q - 32 with q in 0..63), per
//     quarter p of the super-block (832 bytes), then d:
//     8 x 64 bytes of the low four bits: registers 8p..8p+7, laid out as Q4K's nibbles          512
//     4 x 64 bytes of the top two bits: register m (4p..4p+3), lane r holds row r's word for
//       nibble registers 2m (A) and 2m+1 (B): byte i bits 0-1 are A's low element i, 2-3 A's
//       high, 4-5 B's low, 6-7 B's high; shifted left 4, left 2, not, right 2, each & 0x30     256
//     2 x 32 bytes: scales 2i, 2i+1 (i = 2p, 2p+1) of row r at 2r, 2r+1 (int8)                  64
//     16 fp16 d                                                                                 32
//   210 bytes a row, as the file. With q unsigned, per (row, activation row, super-block):
//   S = sum_j scale_j * dot_j, M = sum_j scale_j * bsum16_j, y += (S - 32 M) * (d*dx): the integer
//   ggml's Q6_K x Q8_K computes as sum_j scale_j * sum (q - 32) x.
// Activations for Q4K, Q5K and Q6K (format 1), Q8_K's quantization: per row, nsb x 256 int8, then
// nsb float d, then nsb x 8 int16 sums of 32 quantized values, then nsb x 16 int16 sums of 16.
//
// Per (row, activation row) the float operations are the same whatever the batch size and however
// the activation rows are grouped, so a sequence's logits do not depend on what it is batched with.
#include "kernels_internal.h"

#include <math.h>

#define PK_ROWS 16

#define PK_Q4K_BYTES 2368  // one super-block of a group of 16 Q4_K rows
#define PK_Q5K_BYTES 2880  // ... of Q5_K rows
#define PK_Q6K_BYTES 3360  // ... of Q6_K rows

// Where the parts of a packed K-quant super-block are (layouts above): each quarter p (64 elements) of the
// super-block keeps its nibble registers and its extra bits (and for Q6K its scales) together, so that a kernel
// reads the block front to back as one stream. (Interleaving two streams 2 KB apart halved what one core drew
// from memory at batch 1.)
#define K_NIB(q5, p, k) (((q5) ? 640 : 512) * (p) + 64 * (k))  // nibble register 8p+k of Q4K (q5 = 0) or Q5K
#define Q5_FIFTH(p, j) (640 * (p) + 512 + 64 * (j))            // fifth-bit register 2p+j of Q5K
#define Q6_NIB(p, k) (832 * (p) + 64 * (k))                    // low-bit register 8p+k of Q6K
#define Q6_TOP(p, j) (832 * (p) + 512 + 64 * (j))              // top-bit register 4p+j of Q6K
#define Q6_SC(i) (832 * ((i) / 2) + 768 + 32 * ((i) % 2))      // scales of sub-blocks 2i, 2i+1 of Q6K
#define Q6_D 3328

static int packed_kind(int type) {
    switch (type) {
    case AG_TYPE_Q4_0: return AG_PACKED_Q40;
    case AG_TYPE_Q4_1: return AG_PACKED_Q4;
    case AG_TYPE_Q8_0: return AG_PACKED_Q8;
    case AG_TYPE_Q5_0: return AG_PACKED_Q5;
    case AG_TYPE_Q5_1: return AG_PACKED_Q51;
    case AG_TYPE_Q4_K: return AG_PACKED_Q4K;
    case AG_TYPE_Q5_K: return AG_PACKED_Q5K;
    case AG_TYPE_Q6_K: return AG_PACKED_Q6K;
    case AG_TYPE_F16: return AG_PACKED_F16;
    case AG_TYPE_BF16: return AG_PACKED_BF16;
    default: return -1;
    }
}

// Bytes of one block (32 elements, or a 256-element super-block for Q4K) of a group of 16 rows.
static size_t block_group_bytes(int kind) {
    switch (kind) {
    case AG_PACKED_Q4: return 320;
    case AG_PACKED_Q40: return 288;
    case AG_PACKED_Q8: return 544;
    case AG_PACKED_Q5: return 352;
    case AG_PACKED_Q51: return 384;
    case AG_PACKED_Q4K: return PK_Q4K_BYTES;
    case AG_PACKED_Q5K: return PK_Q5K_BYTES;
    case AG_PACKED_Q6K: return PK_Q6K_BYTES;
    case AG_PACKED_F16: case AG_PACKED_BF16: return 2 * PK_ROWS * 2;  // a pair of positions (packed_float.c)
    default: return 0;
    }
}

static int is_k_kind(int kind) { return kind == AG_PACKED_Q4K || kind == AG_PACKED_Q5K || kind == AG_PACKED_Q6K; }

static int is_float_kind(int kind) { return kind == AG_PACKED_F16 || kind == AG_PACKED_BF16; }

static int64_t block_elements(int kind) { return is_k_kind(kind) ? AG_QK_K : is_float_kind(kind) ? 2 : AG_QK; }

// BF16 weights read bf16 activations where vdpbf16ps runs (the AVX-512 path on a CPU with avx512_bf16).
static int bf16_input_format(int isa) {
    return isa >= AG_ISA_AVX512 && ag_packed_float_bf16_dot_available() ? AG_PACKED_INPUT_BF16 : AG_PACKED_INPUT_F32;
}

static int input_format(int kind, int isa) {
    switch (kind) {
    case AG_PACKED_Q4: case AG_PACKED_Q40: case AG_PACKED_Q8: case AG_PACKED_Q5: case AG_PACKED_Q51: return AG_PACKED_INPUT_BLOCKS;
    case AG_PACKED_Q4K: case AG_PACKED_Q5K: case AG_PACKED_Q6K: return AG_PACKED_INPUT_SUPERBLOCKS;
    case AG_PACKED_F16: return AG_PACKED_INPUT_F32;
    case AG_PACKED_BF16: return bf16_input_format(isa);
    default: return -1;
    }
}

int ag_packed_kind(int weight_type) {
    if (ag_isa_active() < AG_ISA_AVX2) return -1;
    return packed_kind(weight_type);
}

int ag_packed_input_format(int kind) { return input_format(kind, ag_isa_active()); }

size_t ag_packed_group_bytes(int kind, int64_t n) {
    const size_t bb = block_group_bytes(kind);
    if (bb == 0 || n % block_elements(kind) != 0) return 0;
    return (size_t)(n / block_elements(kind)) * bb;
}

size_t ag_packed_bytes(int weight_type, int64_t rows, int64_t n) {
    const int kind = packed_kind(weight_type);
    if (kind < 0 || rows < 1 || n < 1) return 0;
    return (size_t)((rows + PK_ROWS - 1) / PK_ROWS) * ag_packed_group_bytes(kind, n);
}

// Lane r's fifth-bit word for Q5 (see the layout above).
static uint32_t q5_fifth_bits(const uint8_t qh_bytes[4]) {
    uint32_t qh, h = 0;
    memcpy(&qh, qh_bytes, 4);
    for (int i = 0; i < 4; i++) {
        for (int k = 0; k < 4; k++) {
            h |= ((qh >> (4 * k + i)) & 1u) << (8 * i + k);
            h |= ((qh >> (16 + 4 * k + i)) & 1u) << (8 * i + 4 + k);
        }
    }
    return h;
}

// Q4_K and Q5_K (q5 = 1: the fifth bits after the nibbles, scales and the rest 512 bytes later).
static void pack_q4k(const void *src, int64_t rows, int64_t n, uint8_t *out, int q5) {
    const int64_t nsb = n / AG_QK_K, groups = (rows + PK_ROWS - 1) / PK_ROWS;
    const size_t row_bytes = (size_t)nsb * (q5 ? sizeof(ag_block_q5_K) : sizeof(ag_block_q4_K));
    const size_t bb = q5 ? PK_Q5K_BYTES : PK_Q4K_BYTES, tail = q5 ? 2560 : 2048;
    for (int64_t g = 0; g < groups; g++) {
        for (int64_t b = 0; b < nsb; b++) {
            uint8_t *blk = out + ((size_t)g * (size_t)nsb + (size_t)b) * bb;
            ag_half *d = (ag_half *)(blk + tail + 256);
            for (int r = 0; r < PK_ROWS; r++) {
                const int64_t row = g * PK_ROWS + r;
                if (row >= rows) break;  // padding rows stay zero
                const uint8_t *rowp = (const uint8_t *)src + (size_t)row * row_bytes;
                const uint8_t *qs, *scales;
                ag_half wd, wdmin;
                if (q5) {
                    const ag_block_q5_K *w = (const ag_block_q5_K *)rowp + b;
                    qs = w->qs; scales = w->scales; wd = w->d; wdmin = w->dmin;
                    // Register 8p+k's byte i: low nibble is element 64p+4k+i (qh bit 2p of byte 4k+i),
                    // high nibble element 64p+32+4k+i (qh bit 2p+1).
                    for (int m = 0; m < 8; m++) {
                        uint8_t h[4] = {0, 0, 0, 0};
                        for (int t = 0; t < 4; t++) {
                            const int reg = 4 * m + t, p = reg / 8, k = reg % 8;
                            for (int i = 0; i < 4; i++) {
                                const uint8_t qh = w->qh[4 * k + i];
                                h[i] |= (uint8_t)(((qh >> (2 * p)) & 1u) << t);
                                h[i] |= (uint8_t)(((qh >> (2 * p + 1)) & 1u) << (4 + t));
                            }
                        }
                        memcpy(blk + Q5_FIFTH(m / 2, m % 2) + 4 * r, h, 4);
                    }
                } else {
                    const ag_block_q4_K *w = (const ag_block_q4_K *)rowp + b;
                    qs = w->qs; scales = w->scales; wd = w->d; wdmin = w->dmin;
                }
                for (int reg = 0; reg < 32; reg++) memcpy(blk + K_NIB(q5, reg / 8, reg % 8) + r * 4, qs + 4 * reg, 4);
                uint8_t sm[16];
                ag_unpack_k4_scales(scales, sm);
                for (int j = 0; j < 8; j++) blk[tail + 16 * j + r] = sm[j];
                for (int i = 0; i < 4; i++) {
                    blk[tail + 128 + 32 * i + 2 * r] = sm[8 + 2 * i];
                    blk[tail + 128 + 32 * i + 2 * r + 1] = sm[8 + 2 * i + 1];
                }
                d[r] = wd;
                d[PK_ROWS + r] = wdmin;
            }
        }
    }
}

// Q6_K: element e of a super-block is, in ggml's order, for half h = e / 128 and l = e % 32,
// quarter u = (e % 128) / 32: low bits from ql[64h + l + 32 (u & 1)] (>> 4 if u >= 2), top bits
// (qh[32h + l] >> 2u) & 3, scale scales[8h + l / 16 + 2u]. Here element e is re-laid out as Q4K's:
// register 8p+k, byte i holds elements 64p+4k+i (low nibble) and 64p+32+4k+i (high nibble).
static void pack_q6k(const void *src, int64_t rows, int64_t n, uint8_t *out) {
    const int64_t nsb = n / AG_QK_K, groups = (rows + PK_ROWS - 1) / PK_ROWS;
    const size_t row_bytes = (size_t)nsb * sizeof(ag_block_q6_K);
    for (int64_t g = 0; g < groups; g++) {
        for (int64_t b = 0; b < nsb; b++) {
            uint8_t *blk = out + ((size_t)g * (size_t)nsb + (size_t)b) * PK_Q6K_BYTES;
            ag_half *d = (ag_half *)(blk + Q6_D);
            for (int r = 0; r < PK_ROWS; r++) {
                const int64_t row = g * PK_ROWS + r;
                if (row >= rows) break;  // padding rows stay zero
                const ag_block_q6_K *w = (const ag_block_q6_K *)((const uint8_t *)src + (size_t)row * row_bytes) + b;
                uint8_t q[256], sc[16];
                for (int e = 0; e < 256; e++) {
                    const int h = e / 128, l = e % 32, u = (e % 128) / 32;
                    const uint8_t lo = w->ql[64 * h + l + 32 * (u & 1)];
                    q[e] = (uint8_t)(((u >= 2 ? lo >> 4 : lo) & 0x0F) | (((w->qh[32 * h + l] >> (2 * u)) & 3) << 4));
                }
                // Sub-block j (16 elements j*16..) has scale scales[8h + l/16 + 2u] for its elements.
                for (int j = 0; j < 16; j++) {
                    const int e = 16 * j, h = e / 128, l = e % 32, u = (e % 128) / 32;
                    sc[j] = (uint8_t)w->scales[8 * h + l / 16 + 2 * u];
                }
                for (int reg = 0; reg < 32; reg++) {
                    const int p = reg / 8, k = reg % 8;
                    uint8_t lanes[4];
                    for (int i = 0; i < 4; i++) {
                        lanes[i] = (uint8_t)((q[64 * p + 4 * k + i] & 0x0F) | ((q[64 * p + 32 + 4 * k + i] & 0x0F) << 4));
                    }
                    memcpy(blk + Q6_NIB(p, k) + 4 * r, lanes, 4);
                }
                for (int m = 0; m < 16; m++) {
                    uint8_t lanes[4];
                    for (int i = 0; i < 4; i++) {
                        uint8_t v = 0;
                        for (int s2 = 0; s2 < 2; s2++) {
                            const int reg = 2 * m + s2, p = reg / 8, k = reg % 8;
                            v |= (uint8_t)((q[64 * p + 4 * k + i] >> 4) << (4 * s2));
                            v |= (uint8_t)((q[64 * p + 32 + 4 * k + i] >> 4) << (4 * s2 + 2));
                        }
                        lanes[i] = v;
                    }
                    memcpy(blk + Q6_TOP(m / 4, m % 4) + 4 * r, lanes, 4);
                }
                for (int i = 0; i < 8; i++) {
                    blk[Q6_SC(i) + 2 * r] = sc[2 * i];
                    blk[Q6_SC(i) + 2 * r + 1] = sc[2 * i + 1];
                }
                d[r] = w->d;
            }
        }
    }
}

int ag_pack_weights(int weight_type, const void *src, int64_t rows, int64_t n, void *dst) {
    const int kind = packed_kind(weight_type);
    if (kind < 0 || rows < 1 || ag_packed_bytes(weight_type, rows, n) == 0) return -1;
    const int64_t nb = n / AG_QK, groups = (rows + PK_ROWS - 1) / PK_ROWS;
    const size_t row_bytes = ag_row_bytes(weight_type, n), bb = block_group_bytes(kind);
    uint8_t *out = dst;
    if (is_float_kind(kind)) {
        ag_pack_float(kind, src, rows, n, dst);
        return 0;
    }
    memset(out, 0, ag_packed_bytes(weight_type, rows, n));
    if (kind == AG_PACKED_Q4K || kind == AG_PACKED_Q5K) {
        pack_q4k(src, rows, n, out, kind == AG_PACKED_Q5K);
        return 0;
    }
    if (kind == AG_PACKED_Q6K) {
        pack_q6k(src, rows, n, out);
        return 0;
    }
    for (int64_t g = 0; g < groups; g++) {
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *blk = out + ((size_t)g * (size_t)nb + (size_t)b) * bb;
            for (int r = 0; r < PK_ROWS; r++) {
                const int64_t row = g * PK_ROWS + r;
                if (row >= rows) break;  // padding rows stay zero: d = m = 0
                const uint8_t *rowp = (const uint8_t *)src + (size_t)row * row_bytes;
                ag_half *d = (ag_half *)(blk + (kind == AG_PACKED_Q4 || kind == AG_PACKED_Q40 ? 256 : kind == AG_PACKED_Q8 ? 512 : 320));
                if (weight_type == AG_TYPE_Q5_1) {
                    const ag_block_q5_1 *w = (const ag_block_q5_1 *)rowp + b;
                    for (int k = 0; k < 4; k++) memcpy(blk + k * 64 + r * 4, w->qs + 4 * k, 4);
                    const uint32_t h = q5_fifth_bits(w->qh);
                    memcpy(blk + 256 + 4 * r, &h, 4);
                    d[r] = w->d;
                    d[PK_ROWS + r] = w->m;
                } else if (weight_type == AG_TYPE_Q5_0) {
                    const ag_block_q5_0 *w = (const ag_block_q5_0 *)rowp + b;
                    for (int k = 0; k < 4; k++) memcpy(blk + k * 64 + r * 4, w->qs + 4 * k, 4);
                    const uint32_t h = q5_fifth_bits(w->qh);
                    memcpy(blk + 256 + 4 * r, &h, 4);
                    d[r] = w->d;
                } else if (weight_type == AG_TYPE_Q4_1) {
                    const ag_block_q4_1 *w = (const ag_block_q4_1 *)rowp + b;
                    for (int k = 0; k < 4; k++) memcpy(blk + k * 64 + r * 4, w->qs + 4 * k, 4);
                    d[r] = w->d;
                    d[PK_ROWS + r] = w->m;
                } else if (weight_type == AG_TYPE_Q4_0) {
                    const ag_block_q4_0 *w = (const ag_block_q4_0 *)rowp + b;
                    for (int k = 0; k < 4; k++) memcpy(blk + k * 64 + r * 4, w->qs + 4 * k, 4);
                    d[r] = w->d;
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

size_t ag_packed_activation_bytes(int format, int64_t n) {
    if (format == AG_PACKED_INPUT_SUPERBLOCKS) return (size_t)(n / AG_QK_K) * (256 + 4 + 16 + 32);
    // Float rows a multiple of 4 KB apart (n = 4096 floats) would put the rows a kernel reads together in one L1 set:
    // pad them by a cache line.
    if (format == AG_PACKED_INPUT_F32) return (size_t)n * sizeof(float) + ((size_t)n * sizeof(float) % 4096 == 0 ? 64 : 0);
    if (format == AG_PACKED_INPUT_BF16) {
        const size_t bytes = ((size_t)n * 2 + 3) / 4 * 4;
        return bytes + (bytes % 4096 == 0 ? 64 : 0);
    }
    return (size_t)(n / AG_QK) * (32 + 12);
}

void ag_quantize_packed_k_row(const float *x, void *dst, int64_t n) {
    int8_t *out = dst;
    const int64_t nsb = n / AG_QK_K;
    float *ds = (float *)(out + nsb * 256);
    int16_t *bs = (int16_t *)(ds + nsb), *bs16 = bs + 8 * nsb;
    ag_block_q8_K q;
    for (int64_t b = 0; b < nsb; b++) {
        ag_quantize_row(AG_TYPE_Q8_K, x + b * AG_QK_K, &q, AG_QK_K);  // ggml's Q8_K, the plain path's input
        memcpy(out + b * 256, q.qs, 256);
        ds[b] = q.d;
        for (int j = 0; j < 8; j++) bs[8 * b + j] = (int16_t)(q.bsums[2 * j] + q.bsums[2 * j + 1]);
        for (int j = 0; j < 16; j++) bs16[16 * b + j] = q.bsums[j];
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
// The same as the portable loop below, 32 values at a time: the same float division and product
// per value and the same rounding (to nearest even, as lrintf), so the bytes are identical.
__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")))
static void quantize_packed_row_avx512(const float *x, int8_t *out, int64_t nb, float *ds, float *ss, int32_t *cs) {
    const __m512 sign = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
    for (int64_t b = 0; b < nb; b++) {
        const __m512 a0 = _mm512_loadu_ps(x + b * AG_QK), a1 = _mm512_loadu_ps(x + b * AG_QK + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_and_ps(a0, sign), _mm512_and_ps(a1, sign)));
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(a0, _mm512_set1_ps(id)));
        const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(a1, _mm512_set1_ps(id)));
        _mm_storeu_si128((__m128i *)(out + b * 32), _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(out + b * 32 + 16), _mm512_cvtepi32_epi8(q1));
        const int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        ds[b] = d;
        ss[b] = d * (float)sum;
        cs[b] = -128 * sum;
    }
}
#endif

void ag_quantize_packed_row(const float *x, void *dst, int64_t n) {
    int8_t *out = dst;
    const int64_t nb = n / AG_QK;
    float *ds = (float *)(out + nb * 32);
    float *ss = ds + nb;
    int32_t *cs = (int32_t *)(ss + nb);
#if defined(__x86_64__)
    if (ag_isa_active() >= AG_ISA_AVX512) {
        quantize_packed_row_avx512(x, out, nb, ds, ss, cs);
        return;
    }
#endif
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

size_t ag_quantize_packed_rows(ag_pool *pool, int format, const float *x, int64_t x_stride, int64_t batch, int64_t n, void *dst) {
    if (format == AG_PACKED_INPUT_F32 || format == AG_PACKED_INPUT_BF16) {
        const size_t stride = ag_packed_activation_bytes(format, n);
        for (int64_t b = 0; b < batch; b++) {
            char *row = (char *)dst + (size_t)b * stride;
            if (format == AG_PACKED_INPUT_F32) memcpy(row, x + b * x_stride, (size_t)n * sizeof(float));
            else ag_bf16_row(x + b * x_stride, (uint16_t *)row, n);
        }
        return stride;
    }
    return ag_quantize_rows(pool, format == AG_PACKED_INPUT_SUPERBLOCKS ? AG_ACT_PACKED_K : AG_ACT_PACKED,
                            x, x_stride, batch, n, dst);
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

// Q4, Q5 and Q51 (q5 = 1: a fifth bit per weight from the block's bit words, m = -16d; q5 = 2: the
// same with m from the block).
AVX512 static inline __attribute__((always_inline)) void group_q4(
    const uint8_t *w, int64_t nb, const int8_t *x, size_t xs, int nc, float *y, int64_t ys, __mmask16 valid, int q5) {
    __m512 acc[PK_MAX_COLS];
    for (int c = 0; c < nc; c++) acc[c] = _mm512_setzero_ps();
    const __m512i low = _mm512_set1_epi8(0x0F), bit4 = _mm512_set1_epi8(0x10);
    // q5: 0 Q4 (m stored), 1 Q5 (m = -16d), 2 Q51 (m stored), 3 Q40 (four bits, m = -8d).
    const size_t bb = q5 == 3 ? 288 : q5 == 2 ? 384 : q5 ? 352 : 320;
    const int five = q5 == 1 || q5 == 2;
    for (int64_t b = 0; b < nb; b++, w += bb) {
        __m512i q[8];
        const __m512i h = five ? _mm512_loadu_si512((const void *)(w + 256)) : _mm512_setzero_si512();
        for (int k = 0; k < 4; k++) {
            const __m512i v = _mm512_loadu_si512((const void *)(w + 64 * k));
            q[k] = _mm512_and_si512(v, low);
            q[k + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
            if (five) {
                q[k] = _mm512_or_si512(q[k], _mm512_and_si512(_mm512_slli_epi32(h, 4 - k), bit4));
                q[k + 4] = _mm512_or_si512(q[k + 4], _mm512_and_si512(_mm512_srli_epi32(h, k), bit4));
            }
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + (five ? 320 : 256))));
        const __m512 mw = q5 == 1 ? _mm512_mul_ps(dw, _mm512_set1_ps(-16.0f))
                        : q5 == 3 ? _mm512_mul_ps(dw, _mm512_set1_ps(-8.0f))
                                  : _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + (q5 ? 352 : 288))));
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

#define group_q4_plain(w, nb, x, xs, nc, y, ys, valid) group_q4(w, nb, x, xs, nc, y, ys, valid, 0)
#define group_q5(w, nb, x, xs, nc, y, ys, valid) group_q4(w, nb, x, xs, nc, y, ys, valid, 1)
#define group_q40(w, nb, x, xs, nc, y, ys, valid) group_q4(w, nb, x, xs, nc, y, ys, valid, 3)
#define group_q51(w, nb, x, xs, nc, y, ys, valid) group_q4(w, nb, x, xs, nc, y, ys, valid, 2)

// Q4_K and Q5_K (q5 = 1): `nb` super-blocks. Per super-block and activation row the sums are
// integers (scales applied with vpmulld, mins with vpdpwssd against the sub-block sums), then two
// float steps.
AVX512 static inline __attribute__((always_inline)) void group_q4k(
    const uint8_t *w, int64_t nb, const int8_t *x, size_t xs, int nc, float *y, int64_t ys, __mmask16 valid, int q5) {
    __m512 acc[PK_MAX_COLS];
    for (int c = 0; c < nc; c++) acc[c] = _mm512_setzero_ps();
    const __m512i low = _mm512_set1_epi8(0x0F), bit4 = _mm512_set1_epi8(0x10);
    const size_t bb = q5 ? PK_Q5K_BYTES : PK_Q4K_BYTES, tail = q5 ? 2560 : 2048;
    for (int64_t b = 0; b < nb; b++, w += bb) {
        __m512i isum[PK_MAX_COLS];
        for (int c = 0; c < nc; c++) isum[c] = _mm512_setzero_si512();
        for (int p = 0; p < 4; p++) {
            for (int half = 0; half < 2; half++) {
                __m512i q[8];
                for (int k = 0; k < 8; k++) {
                    const __m512i v = _mm512_loadu_si512((const void *)(w + K_NIB(q5, p, k)));
                    q[k] = _mm512_and_si512(half ? _mm512_srli_epi16(v, 4) : v, low);
                    if (q5) {
                        const int t = k & 3;
                        const __m512i h = _mm512_loadu_si512((const void *)(w + Q5_FIFTH(p, k / 4)));
                        q[k] = _mm512_or_si512(q[k], _mm512_and_si512(half ? _mm512_srli_epi32(h, t) : _mm512_slli_epi32(h, 4 - t), bit4));
                    }
                }
                const __m512i sc = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w + tail + 16 * (2 * p + half))));
                for (int c = 0; c < nc; c++) {
                    const int32_t *xq = (const int32_t *)(x + (size_t)c * xs + b * 256 + 64 * p + 32 * half);
                    isum[c] = _mm512_add_epi32(isum[c], _mm512_mullo_epi32(block_sums(q, xq, _mm512_setzero_si512()), sc));
                }
            }
        }
        __m512i mins[4];
        for (int i = 0; i < 4; i++) mins[i] = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(w + tail + 128 + 32 * i)));
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + tail + 256)));
        const __m512 dm = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + tail + 288)));
        for (int c = 0; c < nc; c++) {
            const int8_t *xc = x + (size_t)c * xs;
            const float *xd = (const float *)(xc + nb * 256);
            const int32_t *bs = (const int32_t *)(xd + nb) + 4 * b;  // int16 sub-block sums, two by two
            __m512i m = _mm512_dpwssd_epi32(_mm512_setzero_si512(), mins[0], _mm512_set1_epi32(bs[0]));
            for (int i = 1; i < 4; i++) m = _mm512_dpwssd_epi32(m, mins[i], _mm512_set1_epi32(bs[i]));
            const __m512 dx = _mm512_set1_ps(xd[b]);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[c]), _mm512_mul_ps(dw, dx), acc[c]);
            acc[c] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(m), _mm512_mul_ps(dm, dx), acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) _mm512_mask_storeu_ps(y + c * ys, valid, acc[c]);
}

#define group_q4k_plain(w, nb, x, xs, nc, y, ys, valid) group_q4k(w, nb, x, xs, nc, y, ys, valid, 0)
#define group_q5k(w, nb, x, xs, nc, y, ys, valid) group_q4k(w, nb, x, xs, nc, y, ys, valid, 1)

// Lane r: sum over 16 elements (4 registers) of weight byte x activation byte.
AVX512 static inline __m512i sub16_sums(const __m512i q[4], const int32_t *xq) {
    __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[0], _mm512_set1_epi32(xq[0]));
    __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[2], _mm512_set1_epi32(xq[2]));
    s0 = _mm512_dpbusd_epi32(s0, q[1], _mm512_set1_epi32(xq[1]));
    s1 = _mm512_dpbusd_epi32(s1, q[3], _mm512_set1_epi32(xq[3]));
    return _mm512_add_epi32(s0, s1);
}

// Q6_K: six-bit unsigned weights, 16 sub-blocks of 16 with signed scales; the -32 offset comes from
// the 16-element activation sums (see the layout above).
AVX512 static inline __attribute__((always_inline)) void group_q6k(
    const uint8_t *w, int64_t nb, const int8_t *x, size_t xs, int nc, float *y, int64_t ys, __mmask16 valid) {
    __m512 acc[PK_MAX_COLS];
    for (int c = 0; c < nc; c++) acc[c] = _mm512_setzero_ps();
    const __m512i low = _mm512_set1_epi8(0x0F), top = _mm512_set1_epi8(0x30);
    for (int64_t b = 0; b < nb; b++, w += PK_Q6K_BYTES) {
        __m512i isum[PK_MAX_COLS];
        for (int c = 0; c < nc; c++) isum[c] = _mm512_setzero_si512();
        for (int p = 0; p < 4; p++) {
            for (int half = 0; half < 2; half++) {
                __m512i q[8];
                for (int k = 0; k < 8; k++) {
                    const __m512i v = _mm512_loadu_si512((const void *)(w + Q6_NIB(p, k)));
                    const __m512i h = _mm512_loadu_si512((const void *)(w + Q6_TOP(p, k / 2)));
                    __m512i hb;
                    if (k & 1) hb = half ? _mm512_srli_epi32(h, 2) : h;
                    else hb = half ? _mm512_slli_epi32(h, 2) : _mm512_slli_epi32(h, 4);
                    q[k] = _mm512_or_si512(_mm512_and_si512(half ? _mm512_srli_epi16(v, 4) : v, low), _mm512_and_si512(hb, top));
                }
                // Sub-blocks 4p + 2 half (q[0..3]) and 4p + 2 half + 1 (q[4..7]): their scales, as int32.
                const __m512i s16 = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(w + Q6_SC(2 * p + half))));
                const __m512i sc0 = _mm512_srai_epi32(_mm512_slli_epi32(s16, 16), 16), sc1 = _mm512_srai_epi32(s16, 16);
                for (int c = 0; c < nc; c++) {
                    const int32_t *xq = (const int32_t *)(x + (size_t)c * xs + b * 256 + 64 * p + 32 * half);
                    isum[c] = _mm512_add_epi32(isum[c], _mm512_mullo_epi32(sub16_sums(q, xq), sc0));
                    isum[c] = _mm512_add_epi32(isum[c], _mm512_mullo_epi32(sub16_sums(q + 4, xq + 4), sc1));
                }
            }
        }
        __m512i scales[8];
        for (int i = 0; i < 8; i++) scales[i] = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(w + Q6_SC(i))));
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + Q6_D)));
        for (int c = 0; c < nc; c++) {
            const int8_t *xc = x + (size_t)c * xs;
            const float *xd = (const float *)(xc + nb * 256);
            const int32_t *bs = (const int32_t *)((const int16_t *)(xd + nb) + 8 * nb) + 8 * b;  // 16-element sums, two by two
            __m512i m = _mm512_dpwssd_epi32(_mm512_setzero_si512(), scales[0], _mm512_set1_epi32(bs[0]));
            for (int i = 1; i < 8; i++) m = _mm512_dpwssd_epi32(m, scales[i], _mm512_set1_epi32(bs[i]));
            const __m512i total = _mm512_sub_epi32(isum[c], _mm512_slli_epi32(m, 5));
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(total), _mm512_mul_ps(dw, _mm512_set1_ps(xd[b])), acc[c]);
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
    switch (kind) {
    case AG_PACKED_Q4: PK_GROUP_CASES(group_q4_plain) break;
    case AG_PACKED_Q40: PK_GROUP_CASES(group_q40) break;
    case AG_PACKED_Q5: PK_GROUP_CASES(group_q5) break;
    case AG_PACKED_Q51: PK_GROUP_CASES(group_q51) break;
    case AG_PACKED_Q4K: PK_GROUP_CASES(group_q4k_plain) break;
    case AG_PACKED_Q5K: PK_GROUP_CASES(group_q5k) break;
    case AG_PACKED_Q6K: PK_GROUP_CASES(group_q6k) break;
    default: PK_GROUP_CASES(group_q8) break;
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
    const size_t bb = block_group_bytes(kind);
    const __m256i low = _mm256_set1_epi8(0x0F), bit4 = _mm256_set1_epi8(0x10);
    for (int64_t b = 0; b < nb; b++, w += bb) {
        __m256i q[8];
        __m256 dw, mw = _mm256_setzero_ps();
        const int five = kind == AG_PACKED_Q5 || kind == AG_PACKED_Q51;
        const int four = kind == AG_PACKED_Q4 || kind == AG_PACKED_Q40;
        if (four || five) {
            const __m256i h = five ? _mm256_loadu_si256((const __m256i *)(w + 256 + 32 * half)) : _mm256_setzero_si256();
            for (int k = 0; k < 4; k++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(w + 64 * k + 32 * half));
                q[k] = _mm256_and_si256(v, low);
                q[k + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                if (five) {
                    q[k] = _mm256_or_si256(q[k], _mm256_and_si256(_mm256_slli_epi32(h, 4 - k), bit4));
                    q[k + 4] = _mm256_or_si256(q[k + 4], _mm256_and_si256(_mm256_srli_epi32(h, k), bit4));
                }
            }
            if (five) {
                dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 320 + 16 * half)));
                mw = kind == AG_PACKED_Q51 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 352 + 16 * half)))
                                           : _mm256_mul_ps(dw, _mm256_set1_ps(-16.0f));
            } else {
                dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 256 + 16 * half)));
                mw = kind == AG_PACKED_Q40 ? _mm256_mul_ps(dw, _mm256_set1_ps(-8.0f))
                                           : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 288 + 16 * half)));
            }
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
            if (four) {
                __m256i s16 = _mm256_maddubs_epi16(q[0], _mm256_set1_epi32(xq[0]));
                for (int k = 1; k < 8; k++) s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(q[k], _mm256_set1_epi32(xq[k])));
                sum = widen_pairs(s16);
            } else if (five) {
                // Five-bit weights: at most 2 x 31 x 127 per pair, so four pairs per s16 before widening.
                __m256i s16a = _mm256_maddubs_epi16(q[0], _mm256_set1_epi32(xq[0]));
                __m256i s16b = _mm256_maddubs_epi16(q[4], _mm256_set1_epi32(xq[4]));
                for (int k = 1; k < 4; k++) {
                    s16a = _mm256_add_epi16(s16a, _mm256_maddubs_epi16(q[k], _mm256_set1_epi32(xq[k])));
                    s16b = _mm256_add_epi16(s16b, _mm256_maddubs_epi16(q[k + 4], _mm256_set1_epi32(xq[k + 4])));
                }
                sum = _mm256_add_epi32(widen_pairs(s16a), widen_pairs(s16b));
            } else {
                sum = _mm256_setzero_si256();
                for (int k = 0; k < 8; k++) {
                    const __m256i xb = _mm256_set1_epi32(xq[k]);
                    sum = _mm256_add_epi32(sum, widen_pairs(_mm256_maddubs_epi16(_mm256_abs_epi8(q[k]), _mm256_sign_epi8(xb, q[k]))));
                }
            }
            const __m256 p = _mm256_cvtepi32_ps(sum);
            acc[c] = _mm256_fmadd_ps(p, _mm256_mul_ps(dw, _mm256_set1_ps(xd[b])), acc[c]);
            if (kind != AG_PACKED_Q8) acc[c] = _mm256_fmadd_ps(mw, _mm256_set1_ps(xd[nb + b]), acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) _mm256_maskstore_ps(y + c * ys + 8 * half, valid, acc[c]);
}

// Q4_K and Q5_K on AVX2: the same integer sums as the AVX-512 kernel (vpmaddubsw: at most 2 x 15 x
// 128 per pair, eight pairs per s16 for Q4_K; 2 x 31 x 128, four per s16, for Q5_K; vpmaddwd for the
// mins) and the same float steps.
AVX2F static inline __attribute__((always_inline)) void half_group_q4k(
    const uint8_t *w, int64_t nb, int hg, const int8_t *x, size_t xs, int nc, float *y, int64_t ys, __m256i valid, int q5) {
    __m256 acc[PK2_MAX_COLS];
    for (int c = 0; c < nc; c++) acc[c] = _mm256_setzero_ps();
    const __m256i low = _mm256_set1_epi8(0x0F), bit4 = _mm256_set1_epi8(0x10);
    const size_t bb = q5 ? PK_Q5K_BYTES : PK_Q4K_BYTES, tail = q5 ? 2560 : 2048;
    for (int64_t b = 0; b < nb; b++, w += bb) {
        __m256i isum[PK2_MAX_COLS];
        for (int c = 0; c < nc; c++) isum[c] = _mm256_setzero_si256();
        for (int p = 0; p < 4; p++) {
            for (int half = 0; half < 2; half++) {
                __m256i q[8];
                for (int k = 0; k < 8; k++) {
                    const __m256i v = _mm256_loadu_si256((const __m256i *)(w + K_NIB(q5, p, k) + 32 * hg));
                    q[k] = _mm256_and_si256(half ? _mm256_srli_epi16(v, 4) : v, low);
                    if (q5) {
                        const int t = k & 3;
                        const __m256i h = _mm256_loadu_si256((const __m256i *)(w + Q5_FIFTH(p, k / 4) + 32 * hg));
                        q[k] = _mm256_or_si256(q[k], _mm256_and_si256(half ? _mm256_srli_epi32(h, t) : _mm256_slli_epi32(h, 4 - t), bit4));
                    }
                }
                const __m256i sc = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(w + tail + 16 * (2 * p + half) + 8 * hg)));
                for (int c = 0; c < nc; c++) {
                    const int32_t *xq = (const int32_t *)(x + (size_t)c * xs + b * 256 + 64 * p + 32 * half);
                    __m256i sum;
                    if (q5) {
                        __m256i s16a = _mm256_maddubs_epi16(q[0], _mm256_set1_epi32(xq[0]));
                        __m256i s16b = _mm256_maddubs_epi16(q[4], _mm256_set1_epi32(xq[4]));
                        for (int k = 1; k < 4; k++) {
                            s16a = _mm256_add_epi16(s16a, _mm256_maddubs_epi16(q[k], _mm256_set1_epi32(xq[k])));
                            s16b = _mm256_add_epi16(s16b, _mm256_maddubs_epi16(q[k + 4], _mm256_set1_epi32(xq[k + 4])));
                        }
                        sum = _mm256_add_epi32(widen_pairs(s16a), widen_pairs(s16b));
                    } else {
                        __m256i s16 = _mm256_maddubs_epi16(q[0], _mm256_set1_epi32(xq[0]));
                        for (int k = 1; k < 8; k++) s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(q[k], _mm256_set1_epi32(xq[k])));
                        sum = widen_pairs(s16);
                    }
                    isum[c] = _mm256_add_epi32(isum[c], _mm256_mullo_epi32(sum, sc));
                }
            }
        }
        __m256i mins[4];
        for (int i = 0; i < 4; i++) mins[i] = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(w + tail + 128 + 32 * i + 16 * hg)));
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + tail + 256 + 16 * hg)));
        const __m256 dm = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + tail + 288 + 16 * hg)));
        for (int c = 0; c < nc; c++) {
            const int8_t *xc = x + (size_t)c * xs;
            const float *xd = (const float *)(xc + nb * 256);
            const int32_t *bs = (const int32_t *)(xd + nb) + 4 * b;
            __m256i m = _mm256_madd_epi16(mins[0], _mm256_set1_epi32(bs[0]));
            for (int i = 1; i < 4; i++) m = _mm256_add_epi32(m, _mm256_madd_epi16(mins[i], _mm256_set1_epi32(bs[i])));
            const __m256 dx = _mm256_set1_ps(xd[b]);
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[c]), _mm256_mul_ps(dw, dx), acc[c]);
            acc[c] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(m), _mm256_mul_ps(dm, dx), acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) _mm256_maskstore_ps(y + c * ys + 8 * hg, valid, acc[c]);
}

// Q6_K on AVX2: per 16-element sub-block two vpmaddubsw pairs per s16 (at most 2 x 63 x 128 each),
// widened, then the scale; the same integer sums and float steps as the AVX-512 kernel.
AVX2F static inline __attribute__((always_inline)) void half_group_q6k(
    const uint8_t *w, int64_t nb, int hg, const int8_t *x, size_t xs, int nc, float *y, int64_t ys, __m256i valid) {
    __m256 acc[PK2_MAX_COLS];
    for (int c = 0; c < nc; c++) acc[c] = _mm256_setzero_ps();
    const __m256i low = _mm256_set1_epi8(0x0F), top = _mm256_set1_epi8(0x30);
    for (int64_t b = 0; b < nb; b++, w += PK_Q6K_BYTES) {
        __m256i isum[PK2_MAX_COLS];
        for (int c = 0; c < nc; c++) isum[c] = _mm256_setzero_si256();
        for (int p = 0; p < 4; p++) {
            for (int half = 0; half < 2; half++) {
                __m256i q[8];
                for (int k = 0; k < 8; k++) {
                    const __m256i v = _mm256_loadu_si256((const __m256i *)(w + Q6_NIB(p, k) + 32 * hg));
                    const __m256i h = _mm256_loadu_si256((const __m256i *)(w + Q6_TOP(p, k / 2) + 32 * hg));
                    __m256i hb;
                    if (k & 1) hb = half ? _mm256_srli_epi32(h, 2) : h;
                    else hb = half ? _mm256_slli_epi32(h, 2) : _mm256_slli_epi32(h, 4);
                    q[k] = _mm256_or_si256(_mm256_and_si256(half ? _mm256_srli_epi16(v, 4) : v, low), _mm256_and_si256(hb, top));
                }
                const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + Q6_SC(2 * p + half) + 16 * hg)));
                const __m256i sc0 = _mm256_srai_epi32(_mm256_slli_epi32(s16, 16), 16), sc1 = _mm256_srai_epi32(s16, 16);
                for (int c = 0; c < nc; c++) {
                    const int32_t *xq = (const int32_t *)(x + (size_t)c * xs + b * 256 + 64 * p + 32 * half);
                    __m256i part[4];
                    for (int i = 0; i < 4; i++) {
                        const __m256i s = _mm256_add_epi16(_mm256_maddubs_epi16(q[2 * i], _mm256_set1_epi32(xq[2 * i])),
                                                           _mm256_maddubs_epi16(q[2 * i + 1], _mm256_set1_epi32(xq[2 * i + 1])));
                        part[i] = widen_pairs(s);
                    }
                    isum[c] = _mm256_add_epi32(isum[c], _mm256_mullo_epi32(_mm256_add_epi32(part[0], part[1]), sc0));
                    isum[c] = _mm256_add_epi32(isum[c], _mm256_mullo_epi32(_mm256_add_epi32(part[2], part[3]), sc1));
                }
            }
        }
        __m256i scales[8];
        for (int i = 0; i < 8; i++) scales[i] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + Q6_SC(i) + 16 * hg)));
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + Q6_D + 16 * hg)));
        for (int c = 0; c < nc; c++) {
            const int8_t *xc = x + (size_t)c * xs;
            const float *xd = (const float *)(xc + nb * 256);
            const int32_t *bs = (const int32_t *)((const int16_t *)(xd + nb) + 8 * nb) + 8 * b;
            __m256i m = _mm256_madd_epi16(scales[0], _mm256_set1_epi32(bs[0]));
            for (int i = 1; i < 8; i++) m = _mm256_add_epi32(m, _mm256_madd_epi16(scales[i], _mm256_set1_epi32(bs[i])));
            const __m256i total = _mm256_sub_epi32(isum[c], _mm256_slli_epi32(m, 5));
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), _mm256_mul_ps(dw, _mm256_set1_ps(xd[b])), acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) _mm256_maskstore_ps(y + c * ys + 8 * hg, valid, acc[c]);
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
            #define PK2_CASES(K) switch (n) { case 1: PK2_CASE(K, 1); break; case 2: PK2_CASE(K, 2); break; \
                                             case 3: PK2_CASE(K, 3); break; default: PK2_CASE(K, 4); break; }
            switch (kind) {
            case AG_PACKED_Q4: PK2_CASES(AG_PACKED_Q4) break;
            case AG_PACKED_Q40: PK2_CASES(AG_PACKED_Q40) break;
            case AG_PACKED_Q5: PK2_CASES(AG_PACKED_Q5) break;
            case AG_PACKED_Q51: PK2_CASES(AG_PACKED_Q51) break;
            case AG_PACKED_Q8: PK2_CASES(AG_PACKED_Q8) break;
            #define PK2_K_CASES(CALL) switch (n) { case 1: CALL(1); break; case 2: CALL(2); break; \
                                              case 3: CALL(3); break; default: CALL(4); break; }
            #define PK2_Q4K(N) half_group_q4k(w, nb, half, xc, xs, N, yc, ys, mask, 0)
            #define PK2_Q5K(N) half_group_q4k(w, nb, half, xc, xs, N, yc, ys, mask, 1)
            #define PK2_Q6K(N) half_group_q6k(w, nb, half, xc, xs, N, yc, ys, mask)
            case AG_PACKED_Q4K: PK2_K_CASES(PK2_Q4K) break;
            case AG_PACKED_Q5K: PK2_K_CASES(PK2_Q5K) break;
            default: PK2_K_CASES(PK2_Q6K) break;
            #undef PK2_Q4K
            #undef PK2_Q5K
            #undef PK2_Q6K
            #undef PK2_K_CASES
            }
            #undef PK2_CASES
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
    int64_t slices, slice_rows;  // float kinds: activation rows in slices of slice_rows, a task per (groups, slice)
    int isa;     // the caller's path: AG_ISA_AVX512 or AG_ISA_AVX2
    int format;  // the activations' format, as the caller quantized them
    int64_t n, batch;
    const int8_t *xq;
    size_t xq_stride;
} pm_job;

static void pm_task(void *raw, int64_t index, int thread) {
    (void)thread;
    const pm_job *job = raw;
    const int64_t slice = index % job->slices;
    index /= job->slices;
    int t = 0;
    while (index >= job->task_start[t + 1]) t++;
    const ag_packed_target *target = &job->targets[t];
    const int64_t nb = job->n / block_elements(target->kind);  // blocks, or super-blocks for Q4K
    const size_t gb = ag_packed_group_bytes(target->kind, job->n);
    int64_t g0 = (index - job->task_start[t]) * job->groups_per_task, g1 = g0 + job->groups_per_task;
    const int64_t groups = (target->rows + PK_ROWS - 1) / PK_ROWS;
    if (g1 > groups) g1 = groups;
    if (is_float_kind(target->kind)) {
        // Pairs of groups (tasks start on even groups) against this task's slice of the activation rows.
        const int64_t b0 = slice * job->slice_rows;
        const int64_t rows = job->batch - b0 < job->slice_rows ? job->batch - b0 : job->slice_rows;
        for (int64_t g = g0; g < g1; g += 2) {
            const int pair = g + 1 < g1;
            ag_packed_float_groups(target->kind, job->format, job->isa, (const uint8_t *)target->packed + (size_t)g * gb, gb,
                                   pair, job->n, (const char *)job->xq + (size_t)b0 * job->xq_stride, job->xq_stride, rows,
                                   target->y + b0 * target->y_stride + g * PK_ROWS, target->y_stride,
                                   target->rows - g * PK_ROWS);
        }
        return;
    }
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
    if (count < 1 || count > AG_MATMUL_MAX_TARGETS || batch < 1 || n < 1) return -1;
    const int isa = ag_isa_active();
    if (isa < AG_ISA_AVX2) return -1;
    pm_job job;
    memset(&job, 0, sizeof job);
    job.isa = isa;
    job.format = input_format(targets[0].kind, isa);
    job.count = count;
    job.n = n;
    job.batch = batch;
    job.xq = xq;
    job.xq_stride = xq_stride;
    int64_t groups[AG_MATMUL_MAX_TARGETS];
    int64_t align = 1;
    for (int i = 0; i < count; i++) {
        const int format = input_format(targets[i].kind, isa);
        if (format < 0 || format != job.format) return -1;
        if (is_float_kind(targets[i].kind)) align = 2;
        if (ag_packed_group_bytes(targets[i].kind, n) == 0) return -1;
        job.targets[i] = targets[i];
        groups[i] = (targets[i].rows + PK_ROWS - 1) / PK_ROWS;
    }
    const int64_t tasks = ag_plan_tasks(groups, count, ag_pool_threads(pool), align, &job.groups_per_task, job.task_start);
    // Float kinds are compute bound with long tasks: a long batch (a prompt, image patches) is cut into slices of
    // 64 rows so that the threads finish together; each slice reads the groups' weights again (from cache, or
    // at a cost of a few percent of its arithmetic from memory).
    job.slice_rows = align == 2 ? 64 : batch;
    job.slices = (batch + job.slice_rows - 1) / job.slice_rows;
    ag_pool_run(pool, pm_task, &job, tasks * job.slices);
    return 0;
}
