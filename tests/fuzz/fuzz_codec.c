/* fuzz_codec.c: libFuzzer target for the codec's two readers of untrusted
 * input, codec_decode() and codec_value_from_json().
 *
 *   clang -std=c11 -D_GNU_SOURCE -g -fsanitize=fuzzer,address,undefined \
 *     -I. -Ibuild/generated pipeline/codec.c build/generated/schemas_gen.c \
 *     tests/fuzz/fuzz_codec.c -lavro -ljansson -lm -o fuzz_codec
 *
 * Each input is tried as the Avro body of every schema (behind a valid
 * header, so the fuzzer's bytes reach the Avro walker instead of dying on
 * the header check), as a whole wire-format record, and as JSON. Anything
 * that decodes must also render and encode again. Values are reused within
 * one input, as a worker reuses them across records. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static codec_t *codec;

static void init(void) {
    char err[256];
    codec = codec_new(err, sizeof err);
    if (!codec) abort();
    /* Small records keep each run fast; the bound logic is the same. */
    codec_set_max_record_bytes(codec, 1u << 16);
}

/* must_encode: a decoded value always encodes again (canonically, so never
 * larger); one built from JSON may be over the size limit. */
static void exercise(const codec_schema_t *s, avro_value_t *v, int must_encode) {
    char err[256];
    char *json = codec_value_to_json(v); /* NULL for NaN and infinities */
    free(json);
    codec_buf_t out = {0};
    if (codec_encode(codec, s, v, &out, err, sizeof err) != 0 && must_encode) abort();
    const char *key;
    size_t key_len;
    if (codec_value_key(v, codec_schema_src(s)->key_field, &key, &key_len) != 0) abort();
    codec_buf_free(&out);
}

/* A failure must come from the codec's own checks: one from Avro C itself
 * means the validator let through bytes Avro C cannot read, and Avro C leaks
 * on that path. */
static void refused_before_avro(const char *err) {
    if (strncmp(err, "cannot decode", 13) == 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    if (!codec) init();
    unsigned char *framed = malloc(size + 5);
    if (!framed) return 0;
    memcpy(framed + 5, data, size);
    for (size_t i = 0; i < reel_schema_source_count; i++) {
        const codec_schema_t *s = codec_by_id(codec, reel_schema_sources[i].id);
        /* A fresh value per input, freed before returning: Avro C's generic
         * values keep some pointers at unaligned offsets, which LeakSanitizer
         * does not scan, so a value that outlived one input would be
         * reported as a leak by libFuzzer's between-input checks. */
        avro_value_t value;
        if (codec_value_new(s, &value, err, sizeof err) != 0) abort();
        uint32_t id = (uint32_t)reel_schema_sources[i].id;
        framed[0] = 0;
        framed[1] = (unsigned char)(id >> 24);
        framed[2] = (unsigned char)(id >> 16);
        framed[3] = (unsigned char)(id >> 8);
        framed[4] = (unsigned char)id;
        if (codec_decode(codec, s, framed, size + 5, &value, err, sizeof err) == 0)
            exercise(s, &value, 1);
        else
            refused_before_avro(err);
        if (codec_decode(codec, s, data, size, &value, err, sizeof err) == 0)
            exercise(s, &value, 1);
        else
            refused_before_avro(err);
        if (codec_value_from_json(s, (const char *)data, size, &value, err, sizeof err) == 0)
            exercise(s, &value, 0);
        avro_value_decref(&value);
    }
    free(framed);
    return 0;
}
