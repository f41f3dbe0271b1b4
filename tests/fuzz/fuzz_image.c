/* fuzz_image.c: libFuzzer target for the poster decoder, the code that
 * reads untrusted bytes in the tag worker (kernels/vision/image.c), and the
 * pixel features computed from whatever it decodes.
 *
 *   CC=clang cmake -S . -B build-fuzz -DREEL_FUZZ=ON && make -C build-fuzz fuzz_image
 *   build-fuzz/fuzz_image -max_total_time=600 corpus/ tests/fuzz/image_seeds/
 *
 * Limits are small so that a run explores parsing rather than spending its
 * time on large (legitimately bounded) images; the checks are the same. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "kernels/vision/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static img_t im;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    img_limits_t lim = {1u << 20, 1u << 20, 4096};
    char err[256];
    /* the length picks the DCT scale target, so seeds stay plain images */
    int min_side = (int)(size & 0x3f);
    if (img_decode(data, size, &lim, min_side, min_side, &im, err, sizeof err) == 0) {
        if (im.w <= 0 || im.h <= 0 || im.src_w < im.w || im.src_h < im.h) abort();
        float in[3 * 28 * 28];
        uint32_t colors[4];
        img_to_input(&im, 3, 28, 28, in);
        (void)img_phash(&im);
        (void)img_dominant_colors(&im, 4, colors);
    }
    return 0;
}
