#include "image_codecs.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

int32_t ag_image_sniff(const uint8_t *data, size_t size) {
    static const uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
    if (size >= 8 && memcmp(data, png_signature, 8) == 0) return AG_FORMAT_PNG;
    if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) return AG_FORMAT_JPEG;
    return AG_FORMAT_UNKNOWN;
}

static int32_t check_size(ag_image *out, uint64_t w, uint64_t h, uint64_t max_pixels, uint32_t max_side) {
    if (w == 0 || h == 0) {
        snprintf(out->message, sizeof out->message, "declares an empty image (%llux%llu)",
                 (unsigned long long)w, (unsigned long long)h);
        return AG_IMAGE_CORRUPT;
    }
    if (w > max_side || h > max_side || w * h > max_pixels) {
        snprintf(out->message, sizeof out->message,
                 "declares %llux%llu pixels, over the limit of %llu pixels and %u per side",
                 (unsigned long long)w, (unsigned long long)h, (unsigned long long)max_pixels, max_side);
        return AG_IMAGE_TOO_LARGE;
    }
    return AG_IMAGE_OK;
}

// ---- PNG -------------------------------------------------------------------------------------------

typedef struct {
    const uint8_t *data;
    size_t size, offset;
} png_source;

typedef struct {
    jmp_buf jump;
    ag_image *out;
} png_context;

static void png_read_from_memory(png_structp png, png_bytep target, png_size_t length) {
    png_source *src = (png_source *)png_get_io_ptr(png);
    if (length > src->size - src->offset) {
        png_error(png, "the data ends early (truncated file)");
        return;
    }
    memcpy(target, src->data + src->offset, length);
    src->offset += length;
}

static void png_on_error(png_structp png, png_const_charp message) {
    png_context *ctx = (png_context *)png_get_error_ptr(png);
    snprintf(ctx->out->message, sizeof ctx->out->message, "%s", message);
    longjmp(ctx->jump, 1);
}

static void png_on_warning(png_structp png, png_const_charp message) { (void)png; (void)message; }

static int32_t decode_png(const uint8_t *data, size_t size, uint64_t max_pixels, uint32_t max_side, ag_image *out) {
    png_context ctx;
    ctx.out = out;
    png_source src = {data, size, 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error, png_on_warning);
    if (!png) return AG_IMAGE_NO_MEMORY;
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return AG_IMAGE_NO_MEMORY;
    }
    // volatile: read after longjmp.
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(ctx.jump)) {
        free(pixels);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return AG_IMAGE_CORRUPT;
    }
    png_set_read_fn(png, &src, png_read_from_memory);
    // Ancillary chunks (text, ICC profiles) are bounded too, so a file cannot make libpng allocate without limit.
    png_set_chunk_malloc_max(png, 8 << 20);
    // Sizes are checked below against the caller's limits with a clear message; libpng's own limits stay at their maximum.
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int32_t status = check_size(out, w, h, max_pixels, max_side);
    if (status != AG_IMAGE_OK) {
        png_destroy_read_struct(&png, &info, NULL);
        return status;
    }
    int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    // To 8-bit RGB the way Pillow's convert("RGB") does: palette and low-depth grey expanded, 16-bit colour
    // samples keep their high byte, grey replicated, alpha dropped (not composited). 16-bit grey without alpha is
    // Pillow's mode I;16, whose conversion clamps each value to 255: read as 16 bits and clamped below.
    const int grey16 = color == PNG_COLOR_TYPE_GRAY && depth == 16;
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16 && !grey16) png_set_strip_16(png);
    if (!grey16 && (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA)) png_set_gray_to_rgb(png);
    if (color & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t row_bytes = png_get_rowbytes(png, info);
    if (row_bytes != (size_t)w * (grey16 ? 2 : 3)) {
        snprintf(out->message, sizeof out->message, "converts to %zu bytes a row, expected %u", row_bytes, (unsigned)w * 3);
        png_destroy_read_struct(&png, &info, NULL);
        return AG_IMAGE_UNSUPPORTED;
    }
    // Room for RGB even when the rows are 16-bit grey (2 bytes a pixel), converted in place below.
    pixels = malloc((size_t)w * 3 * h);
    rows = malloc(sizeof(png_bytep) * h);
    if (!pixels || !rows) {
        free(pixels);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return AG_IMAGE_NO_MEMORY;
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = pixels + y * row_bytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    free(rows);
    if (grey16) {
        // Rows of big-endian 16-bit grey were read at the start of each 2w-byte row; spread them to RGB from the
        // last pixel back so that nothing is overwritten before it is read.
        uint8_t *p = pixels;
        for (int64_t i = (int64_t)w * h - 1; i >= 0; i--) {
            const int64_t y = i / w, x = i % w;
            const uint8_t *s = p + (size_t)y * row_bytes + (size_t)x * 2;
            const unsigned v = ((unsigned)s[0] << 8) | s[1];
            const uint8_t c = v > 255 ? 255 : (uint8_t)v;
            p[(size_t)i * 3] = p[(size_t)i * 3 + 1] = p[(size_t)i * 3 + 2] = c;
        }
    }
    png_destroy_read_struct(&png, &info, NULL);
    out->format = AG_FORMAT_PNG;
    out->width = (int32_t)w;
    out->height = (int32_t)h;
    out->rgb = pixels;
    return AG_IMAGE_OK;
}

// ---- JPEG ------------------------------------------------------------------------------------------

typedef struct {
    struct jpeg_error_mgr base;
    jmp_buf jump;
    ag_image *out;
    int truncated;
} jpeg_context;

static void jpeg_on_error(j_common_ptr cinfo) {
    jpeg_context *ctx = (jpeg_context *)cinfo->err;
    char buffer[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, buffer);
    snprintf(ctx->out->message, sizeof ctx->out->message, "%s", buffer);
    longjmp(ctx->jump, 1);
}

static void jpeg_on_message(j_common_ptr cinfo) { (void)cinfo; }

// Warnings are counted, and the one libjpeg gives when the data ends before the image does is remembered.
static void jpeg_on_emit(j_common_ptr cinfo, int level) {
    if (level >= 0) return;
    jpeg_context *ctx = (jpeg_context *)cinfo->err;
    // The data ended early, or a marker came before the scan data did (a header that lies about the size).
    if (cinfo->err->msg_code == JWRN_JPEG_EOF || cinfo->err->msg_code == JWRN_HIT_MARKER) ctx->truncated = 1;
    cinfo->err->num_warnings++;
}

static int32_t decode_jpeg(const uint8_t *data, size_t size, uint64_t max_pixels, uint32_t max_side, ag_image *out) {
    struct jpeg_decompress_struct cinfo;
    jpeg_context ctx;
    ctx.out = out;
    ctx.truncated = 0;
    cinfo.err = jpeg_std_error(&ctx.base);
    ctx.base.error_exit = jpeg_on_error;
    ctx.base.output_message = jpeg_on_message;
    ctx.base.emit_message = jpeg_on_emit;
    uint8_t *volatile pixels = NULL;
    if (setjmp(ctx.jump)) {
        free(pixels);
        jpeg_destroy_decompress(&cinfo);
        return AG_IMAGE_CORRUPT;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    int32_t status = check_size(out, cinfo.image_width, cinfo.image_height, max_pixels, max_side);
    if (status != AG_IMAGE_OK) {
        jpeg_destroy_decompress(&cinfo);
        return status;
    }
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        snprintf(out->message, sizeof out->message, "is a CMYK JPEG; convert it to RGB first");
        jpeg_destroy_decompress(&cinfo);
        return AG_IMAGE_UNSUPPORTED;
    }
    cinfo.out_color_space = JCS_RGB;  // grey and YCbCr alike; Pillow's defaults: islow DCT, fancy upsampling
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_components != 3) {
        snprintf(out->message, sizeof out->message, "decodes to %d components, expected 3", cinfo.output_components);
        jpeg_destroy_decompress(&cinfo);
        return AG_IMAGE_UNSUPPORTED;
    }
    size_t row_bytes = (size_t)cinfo.output_width * 3;
    pixels = malloc(row_bytes * cinfo.output_height);
    if (!pixels) {
        jpeg_destroy_decompress(&cinfo);
        return AG_IMAGE_NO_MEMORY;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = pixels + (size_t)cinfo.output_scanline * row_bytes;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    // A file that ends early is padded by libjpeg with a warning; refuse it as Pillow does for a truncated image.
    jpeg_finish_decompress(&cinfo);
    int truncated = ctx.truncated;
    out->format = AG_FORMAT_JPEG;
    out->width = (int32_t)cinfo.output_width;
    out->height = (int32_t)cinfo.output_height;
    jpeg_destroy_decompress(&cinfo);
    if (truncated) {
        free(pixels);
        snprintf(out->message, sizeof out->message, "the scan data ends before the image does (truncated, or a header that lies about the size)");
        return AG_IMAGE_CORRUPT;
    }
    out->rgb = pixels;
    return AG_IMAGE_OK;
}

int32_t ag_image_decode(const uint8_t *data, size_t size, uint64_t max_pixels, uint32_t max_side, ag_image *out) {
    memset(out, 0, sizeof *out);
    switch (ag_image_sniff(data, size)) {
    case AG_FORMAT_PNG: return decode_png(data, size, max_pixels, max_side, out);
    case AG_FORMAT_JPEG: return decode_jpeg(data, size, max_pixels, max_side, out);
    default:
        snprintf(out->message, sizeof out->message, "is neither a PNG nor a JPEG (unknown signature)");
        return AG_IMAGE_NOT_IMAGE;
    }
}

void ag_image_free(ag_image *image) {
    free(image->rgb);
    image->rgb = NULL;
}
