#ifndef AUTOGLM_IMAGE_CODECS_H
#define AUTOGLM_IMAGE_CODECS_H
// PNG and JPEG decoding into 8-bit RGB, over libpng and libjpeg(-turbo) from the system's packages.
// The C side exists for the libraries' setjmp/longjmp error handling, which Swift cannot host.

#include <stddef.h>
#include <stdint.h>

enum {
    AG_IMAGE_OK = 0,
    AG_IMAGE_NOT_IMAGE = 1,     // neither a PNG nor a JPEG signature
    AG_IMAGE_CORRUPT = 2,       // the library refused the data (message says why)
    AG_IMAGE_TOO_LARGE = 3,     // the declared size is over the caller's limit (checked before decoding)
    AG_IMAGE_UNSUPPORTED = 4,   // a valid file of a kind autoglm does not convert (e.g. CMYK JPEG)
    AG_IMAGE_NO_MEMORY = 5,
};

enum { AG_FORMAT_UNKNOWN = 0, AG_FORMAT_PNG = 1, AG_FORMAT_JPEG = 2 };

typedef struct {
    int32_t format;        // AG_FORMAT_*
    int32_t width, height;
    uint8_t *rgb;          // width * height * 3 bytes, row-major; free with ag_image_free
    char message[256];     // why, when the result is not AG_IMAGE_OK
} ag_image;

/// The format from the first bytes.
int32_t ag_image_sniff(const uint8_t *data, size_t size);

/// Decodes `data` into `out`. Refuses (AG_IMAGE_TOO_LARGE) before decoding anything when the declared
/// width * height is over `max_pixels` or either side is over `max_side`.
int32_t ag_image_decode(const uint8_t *data, size_t size, uint64_t max_pixels, uint32_t max_side, ag_image *out);

void ag_image_free(ag_image *image);

#endif
