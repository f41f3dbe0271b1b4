/* test_codec.c: the wire format, the JSON shape, and decoding of hostile
 * bytes (which must fail cleanly, never crash, hang or allocate without
 * bound). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "pipeline/codec.h"

/* One realistic record per schema, every field written out (so the rendered
 * JSON can be compared with it as is). Reals carry a decimal point because
 * the renderer always writes floats and doubles as reals. */
static const struct sample {
    const char *schema;
    const char *json;
} samples[] = {
    {"ViewingEvent", "{\"event_id\":\"ev-7f3a9c\",\"user_id\":\"u-1024\",\"item_id\":\"tt0111161\","
                     "\"type\":\"progress\",\"ts\":1732791234567,\"watch_seconds\":312.5,"
                     "\"duration_seconds\":8520.0,\"rating\":null,\"device\":\"android-tv\"}"},
    {"Item",
     "{\"item_id\":\"tt0111161\",\"title\":\"The Shawshank Redemption\",\"genres\":[\"Drama\"],"
     "\"tags\":[\"prison\",\"friendship\",\"hope\"],\"year\":1994,\"ts\":1732791234000}"},
    {"Poster", "{\"item_id\":\"tt0111161\",\"poster_id\":\"p-0001\",\"content_type\":\"image/png\","
               "\"image\":\"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+"
               "M9QDwADhgGAWjR9awAAAABJ"
               "RU5ErkJggg==\",\"ts\":1732791234001}"},
    {"AudioClip", "{\"clip_id\":\"clip-55\",\"item_id\":null,\"content_type\":\"audio/wav\","
                  "\"audio\":\"UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQAAAAA=\","
                  "\"language\":\"en\",\"ts\":1732791234002}"},
    {"Review",
     "{\"review_id\":\"r-9001\",\"item_id\":\"tt0111161\",\"user_id\":\"u-1024\","
     "\"text\":\"Still the best prison drama \\u2014 \\\"hope is a good thing\\\".\\nCaf\\u00e9 "
     "\\ud83c\\udfac\\ttab\",\"rating\":4.5,\"ts\":1732791234003}"},
    {"Recommendations",
     "{\"user_id\":\"u-1024\",\"items\":[{\"item_id\":\"tt0068646\",\"score\":0.93,"
     "\"sources\":[\"item_cf\",\"content\"]},{\"item_id\":\"tt0468569\",\"score\":0.875,"
     "\"sources\":[\"user_cf\"]},{\"item_id\":\"tt0050083\",\"score\":-0.1,\"sources\":[]}],"
     "\"model_version\":\"hybrid-2024.11.28-3\",\"source\":{\"topic\":\"viewing-events\","
     "\"partition\":7,\"offset\":123456789012},\"ts\":1732791234004}"},
    {"PosterTags",
     "{\"item_id\":\"tt0111161\",\"poster_id\":\"p-0001\",\"labels\":[{\"label\":\"drama\","
     "\"confidence\":0.82},{\"label\":\"portrait\",\"confidence\":0.61}],\"width\":1000,"
     "\"height\":1500,\"dominant_colors\":[\"#1a2b3c\",\"#f0e0d0\"],"
     "\"phash\":\"c3d2e1f0a5b49687\",\"moderation\":{\"blocked\":false,\"matched_label\":null,"
     "\"distance\":-1},\"model_version\":\"cnn-7\",\"source\":{\"topic\":\"posters\","
     "\"partition\":2,\"offset\":41},\"ts\":1732791234005}"},
    {"Transcript",
     "{\"clip_id\":\"clip-55\",\"item_id\":\"tt0111161\",\"text\":\"get busy living\","
     "\"words\":[{\"word\":\"get\",\"start\":0.0,\"end\":0.31,\"confidence\":0.97},"
     "{\"word\":\"busy\",\"start\":0.31,\"end\":0.7,\"confidence\":0.88},"
     "{\"word\":\"living\",\"start\":0.7,\"end\":1.2,\"confidence\":0.9}],"
     "\"duration_seconds\":1.2345678901234567,\"model_version\":\"dnn-hmm-2\","
     "\"source\":{\"topic\":\"audio-clips\",\"partition\":0,\"offset\":9},"
     "\"ts\":1732791234006}"},
    {"ReviewSentiment",
     "{\"review_id\":\"r-9001\",\"item_id\":\"tt0111161\",\"label\":\"positive\",\"score\":0.78,"
     "\"probability\":0.91,\"model_version\":\"lstm-3\",\"source\":{\"topic\":\"reviews\","
     "\"partition\":1,\"offset\":77},\"ts\":1732791234007}"},
    {"CountUpdate", "{\"key\":\"u-1024\",\"increment\":1,\"model_version\":\"reel-0.1.0\","
                    "\"source\":{\"topic\":\"viewing-events\",\"partition\":0,\"offset\":0},"
                    "\"ts\":1732791234008}"},
};
#define N_SAMPLES (sizeof samples / sizeof samples[0])

static codec_t *codec;
static char err[512];

static int setup(void **state) {
    (void)state;
    codec = codec_new(err, sizeof err);
    if (!codec) fprintf(stderr, "codec_new: %s\n", err);
    return codec ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    codec_destroy(codec);
    return 0;
}

static const char *sample_for(const char *schema) {
    for (size_t i = 0; i < N_SAMPLES; i++)
        if (strcmp(samples[i].schema, schema) == 0) return samples[i].json;
    return NULL;
}

static const codec_schema_t *schema(const char *name) {
    const codec_schema_t *s = codec_by_name(codec, name);
    assert_non_null(s);
    return s;
}

/* Fills a new value of schema name from json; fails the test on error. */
static void value_from(const char *name, const char *json, avro_value_t *v) {
    const codec_schema_t *s = schema(name);
    assert_int_equal(codec_value_new(s, v, err, sizeof err), 0);
    if (codec_value_from_json(s, json, strlen(json), v, err, sizeof err) != 0)
        fail_msg("%s from JSON: %s", name, err);
}

/* Encodes json as a wire-format record of schema name into out. */
static void encode_json(const char *name, const char *json, codec_buf_t *out) {
    avro_value_t v;
    value_from(name, json, &v);
    if (codec_encode(codec, schema(name), &v, out, err, sizeof err) != 0)
        fail_msg("%s encode: %s", name, err);
    avro_value_decref(&v);
}

/* Renders v and checks it equals json semantically. */
static void assert_json_equal_text(const avro_value_t *v, const char *json) {
    char *out = codec_value_to_json(v);
    assert_non_null(out);
    json_t *a = json_loads(out, 0, NULL), *b = json_loads(json, 0, NULL);
    assert_non_null(a);
    assert_non_null(b);
    if (!json_equal(a, b)) fail_msg("rendered %s\nexpected %s", out, json);
    /* One line of compact JSON. */
    assert_null(strchr(out, '\n'));
    assert_null(strstr(out, ": "));
    json_decref(a);
    json_decref(b);
    free(out);
}

/* Decoding must fail, with a reason containing want (when not NULL). */
static void assert_decode_fails(const codec_schema_t *s, const void *buf, size_t len,
                                const char *want) {
    avro_value_t v;
    assert_int_equal(codec_value_new(s, &v, err, sizeof err), 0);
    err[0] = '\0';
    if (codec_decode(codec, s, buf, len, &v, err, sizeof err) != -1)
        fail_msg("decoding %zu bytes as %s succeeded", len, codec_schema_src(s)->name);
    assert_true(err[0] != '\0');
    if (want && !strstr(err, want)) fail_msg("reason \"%s\" lacks \"%s\"", err, want);
    avro_value_decref(&v);
}

/* JSON -> value must fail with a reason containing want. */
static void assert_json_fails(const char *name, const char *json, const char *want) {
    const codec_schema_t *s = schema(name);
    avro_value_t v;
    assert_int_equal(codec_value_new(s, &v, err, sizeof err), 0);
    err[0] = '\0';
    if (codec_value_from_json(s, json, strlen(json), &v, err, sizeof err) != -1)
        fail_msg("%s accepted %s", name, json);
    if (!strstr(err, want)) fail_msg("reason \"%s\" lacks \"%s\"", err, want);
    avro_value_decref(&v);
}

/* Every schema: JSON -> Avro -> wire -> Avro -> JSON gives back the sample,
 * the header carries the pinned id, and the key field is readable. */
static void test_every_schema_round_trips(void **state) {
    (void)state;
    assert_true(reel_schema_source_count >= 10);
    for (size_t i = 0; i < reel_schema_source_count; i++) {
        const reel_schema_src_t *src = &reel_schema_sources[i];
        const char *json = sample_for(src->name);
        if (!json) fail_msg("no sample for schema %s: add one to samples[]", src->name);
        const codec_schema_t *s = schema(src->name);
        assert_ptr_equal(codec_by_id(codec, src->id), s);
        assert_ptr_equal(codec_by_topic(codec, src->topic), s);
        assert_ptr_equal(codec_schema_src(s), src);
        assert_non_null(codec_schema_avro(s));

        avro_value_t in, out;
        value_from(src->name, json, &in);
        codec_buf_t buf = {0};
        assert_int_equal(codec_encode(codec, s, &in, &buf, err, sizeof err), 0);
        assert_true(buf.len > 5);
        assert_int_equal(buf.data[0], 0);
        assert_int_equal(buf.data[1], ((uint32_t)src->id >> 24) & 0xff);
        assert_int_equal(buf.data[2], ((uint32_t)src->id >> 16) & 0xff);
        assert_int_equal(buf.data[3], ((uint32_t)src->id >> 8) & 0xff);
        assert_int_equal(buf.data[4], (uint32_t)src->id & 0xff);
        int32_t id = 0;
        assert_int_equal(codec_peek_id(buf.data, buf.len, &id, err, sizeof err), 0);
        assert_int_equal(id, src->id);

        assert_int_equal(codec_value_new(s, &out, err, sizeof err), 0);
        if (codec_decode(codec, s, buf.data, buf.len, &out, err, sizeof err) != 0)
            fail_msg("%s decode: %s", src->name, err);
        assert_true(avro_value_equal(&in, &out));
        assert_json_equal_text(&out, json);

        /* The message key is the key field's string. */
        json_t *root = json_loads(json, 0, NULL);
        const char *want = json_string_value(json_object_get(root, src->key_field));
        assert_non_null(want);
        const char *key;
        size_t key_len;
        assert_int_equal(codec_value_key(&out, src->key_field, &key, &key_len), 0);
        assert_int_equal(key_len, strlen(want));
        assert_memory_equal(key, want, key_len);
        assert_int_equal(codec_value_key(&out, "no_such_field", &key, &key_len), -1);
        json_decref(root);

        /* Appending keeps what is already in the buffer. */
        size_t one = buf.len;
        assert_int_equal(codec_encode(codec, s, &in, &buf, err, sizeof err), 0);
        assert_int_equal(buf.len, 2 * one);
        assert_memory_equal(buf.data, buf.data + one, one);

        codec_buf_free(&buf);
        avro_value_decref(&in);
        avro_value_decref(&out);
    }
}

static void test_lookups(void **state) {
    (void)state;
    assert_string_equal(codec_schema_src(codec_by_id(codec, 1001))->name, "ViewingEvent");
    assert_string_equal(codec_schema_src(codec_by_topic(codec, "reviews"))->name, "Review");
    assert_null(codec_by_id(codec, 9999));
    assert_null(codec_by_name(codec, "Nope"));
    assert_null(codec_by_topic(codec, "viewing-events.dlq"));
    assert_null(codec_by_topic(codec, "nope"));
}

/* Every header failure names its cause. */
static void test_bad_headers(void **state) {
    (void)state;
    const codec_schema_t *ve = schema("ViewingEvent");
    unsigned char b[16] = {0, 0, 0, 0x03, 0xe9};
    int32_t id;
    assert_decode_fails(ve, b, 0, "empty");
    assert_decode_fails(ve, NULL, 0, "empty");
    assert_int_equal(codec_peek_id(b, 0, &id, err, sizeof err), -1);
    for (size_t n = 1; n <= 4; n++) {
        char want[64];
        snprintf(want, sizeof want, "record too short (%zu bytes)", n);
        assert_decode_fails(ve, b, n, want);
    }
    const unsigned char json_text[] = "{\"event_id\":1}";
    assert_decode_fails(ve, json_text, sizeof json_text - 1, "wrong magic byte 0x7b");
    const unsigned char unknown[] = {0, 0, 0, 0x27, 0x0f, 0x02, 'a'}; /* 9999 */
    assert_decode_fails(ve, unknown, sizeof unknown, "schema id 9999 unknown");
    codec_buf_t item = {0};
    encode_json("Item", sample_for("Item"), &item);
    assert_decode_fails(ve, item.data, item.len,
                        "schema id 1002 where 1001 (ViewingEvent) expected");
    codec_buf_free(&item);
}

/* Every proper prefix of every sample is refused, and trailing bytes are. */
static void test_truncation_and_trailing_bytes(void **state) {
    (void)state;
    for (size_t i = 0; i < N_SAMPLES; i++) {
        const codec_schema_t *s = schema(samples[i].schema);
        codec_buf_t buf = {0};
        encode_json(samples[i].schema, samples[i].json, &buf);
        for (size_t n = 5; n < buf.len; n++) assert_decode_fails(s, buf.data, n, NULL);
        assert_int_equal(codec_buf_append(&buf, "\x00\x01\x02", 3), 0);
        assert_decode_fails(s, buf.data, buf.len, "3 trailing bytes");
        codec_buf_free(&buf);
    }
    /* The first field of ViewingEvent cut short is named. */
    const unsigned char cut[] = {0, 0, 0, 0x03, 0xe9, 0x0a, 'a', 'b'};
    assert_decode_fails(schema("ViewingEvent"), cut, sizeof cut, "truncated Avro");
    assert_decode_fails(schema("ViewingEvent"), cut, sizeof cut, "event_id");
    const unsigned char none[] = {0, 0, 0, 0x03, 0xe9};
    assert_decode_fails(schema("ViewingEvent"), none, sizeof none,
                        "truncated Avro at field event_id");
}

/* Length prefixes and block counts are checked against what is left before
 * Avro C sees them, so these fail at once instead of allocating gigabytes. */
static void test_huge_lengths_fail_fast(void **state) {
    (void)state;
    /* event_id claims 2^40 bytes (zig-zag 2^41). */
    const unsigned char huge_string[] = {0,    0,    0,    0x03, 0xe9, 0x80,
                                         0x80, 0x80, 0x80, 0x80, 0x40, 'x'};
    assert_decode_fails(schema("ViewingEvent"), huge_string, sizeof huge_string, "event_id");
    /* A negative length. */
    const unsigned char negative[] = {0, 0, 0, 0x03, 0xe9, 0x01, 'x'};
    assert_decode_fails(schema("ViewingEvent"), negative, sizeof negative, "negative length");
    /* image claims INT64_MAX bytes. */
    const unsigned char huge_bytes[] = {0,    0,    0,    0x03, 0xeb, 0x02, 'a',  0x02,
                                        'b',  0x02, 'c',  0xfe, 0xff, 0xff, 0xff, 0xff,
                                        0xff, 0xff, 0xff, 0xff, 0x01, 'x'};
    assert_decode_fails(schema("Poster"), huge_bytes, sizeof huge_bytes, "image");
    /* genres claims 2^59 items. */
    const unsigned char huge_array[] = {0,    0,    0,    0x03, 0xea, 0x02, 'a',  0x02, 'b',  0x80,
                                        0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10, 0x02, 'x'};
    assert_decode_fails(schema("Item"), huge_array, sizeof huge_array, "genres");
    /* A negative block count (which is followed by a byte size) of INT64_MIN. */
    const unsigned char min_block[] = {0,    0,    0,    0x03, 0xea, 0x02, 'a',
                                       0x02, 'b',  0xff, 0xff, 0xff, 0xff, 0xff,
                                       0xff, 0xff, 0xff, 0xff, 0x01, 0x00, 0x00};
    assert_decode_fails(schema("Item"), min_block, sizeof min_block, "genres");
    /* An eleven-byte varint. */
    const unsigned char long_varint[] = {0,    0,    0,    0x03, 0xe9, 0x80, 0x80, 0x80,
                                         0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    assert_decode_fails(schema("ViewingEvent"), long_varint, sizeof long_varint, "varint");
}

/* Builds an Item whose genres hold n empty strings; returns its length. */
static size_t item_with_genres(unsigned char *buf, size_t n) {
    size_t p = 0;
    const unsigned char head[] = {0, 0, 0, 0x03, 0xea, 0x02, 'a', 0x02, 'b'};
    memcpy(buf, head, sizeof head);
    p = sizeof head;
    for (uint64_t z = (uint64_t)n << 1;; z >>= 7) {
        buf[p++] = (unsigned char)((z & 0x7f) | (z > 0x7f ? 0x80 : 0));
        if (z <= 0x7f) break;
    }
    memset(buf + p, 0, n + 4); /* n empty strings; end of genres, tags, year, ts */
    return p + n + 4;
}

/* Avro C spends ~100 bytes on each decoded item, so items are bounded too:
 * 65536 plus one per 16 bytes of the size limit. */
static void test_item_limit(void **state) {
    (void)state;
    const size_t limit = 128 * 1024, items = 65536 + limit / 16;
    unsigned char *buf = malloc(limit + 64);
    assert_non_null(buf);
    codec_set_max_record_bytes(codec, limit);
    avro_value_t v;
    assert_int_equal(codec_value_new(schema("Item"), &v, err, sizeof err), 0);
    size_t len = item_with_genres(buf, items);
    if (codec_decode(codec, schema("Item"), buf, len, &v, err, sizeof err) != 0)
        fail_msg("%s", err);
    avro_value_t genres;
    size_t n = 0;
    assert_int_equal(avro_value_get_by_name(&v, "genres", &genres, NULL), 0);
    assert_int_equal(avro_value_get_size(&genres, &n), 0);
    assert_int_equal(n, items);
    len = item_with_genres(buf, items + 1);
    assert_decode_fails(schema("Item"), buf, len, "item limit at field genres");
    codec_set_max_record_bytes(codec, CODEC_DEFAULT_MAX_RECORD_BYTES);
    avro_value_decref(&v);
    free(buf);
}

/* A negative block count with its byte size is valid Avro (Java writes it). */
static void test_sized_blocks_decode(void **state) {
    (void)state;
    /* Item: item_id "a", title "b", genres = one block of -1 items (2 bytes):
     * "x"; tags empty; year null; ts 5. */
    const unsigned char rec[] = {0,    0,    0,    0x03, 0xea, 0x02, 'a',  0x02, 'b',
                                 0x01, 0x04, 0x02, 'x',  0x00, 0x00, 0x00, 0x0a};
    avro_value_t v;
    assert_int_equal(codec_value_new(schema("Item"), &v, err, sizeof err), 0);
    if (codec_decode(codec, schema("Item"), rec, sizeof rec, &v, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_json_equal_text(&v, "{\"item_id\":\"a\",\"title\":\"b\",\"genres\":[\"x\"],\"tags\":[],"
                               "\"year\":null,\"ts\":5}");
    avro_value_decref(&v);
}

/* Union and enum indexes, booleans and UTF-8 are checked. */
static void test_bad_indexes_and_utf8(void **state) {
    (void)state;
    /* Item {"item_id":"a","title":"b","ts":5}: 02 61 02 62 00 00 00 0a. */
    unsigned char item[] = {0, 0, 0, 0x03, 0xea, 0x02, 'a', 0x02, 'b', 0x00, 0x00, 0x00, 0x0a};
    avro_value_t v;
    assert_int_equal(codec_value_new(schema("Item"), &v, err, sizeof err), 0);
    assert_int_equal(codec_decode(codec, schema("Item"), item, sizeof item, &v, err, sizeof err),
                     0);
    avro_value_decref(&v);
    item[11] = 0x04; /* year: union index 2 of 2 */
    assert_decode_fails(schema("Item"), item, sizeof item,
                        "union index 2 out of range at field year");
    item[11] = 0x01; /* -1 */
    assert_decode_fails(schema("Item"), item, sizeof item, "year");
    item[11] = 0x00;
    item[8] = 0xff; /* title "\xff" */
    assert_decode_fails(schema("Item"), item, sizeof item, "invalid UTF-8 at field title");
    item[8] = 0xc0; /* overlong start */
    assert_decode_fails(schema("Item"), item, sizeof item, "invalid UTF-8");

    /* ViewingEvent: 3 one-letter ids, then type. */
    unsigned char ve[] = {0,    0, 0, 0x03, 0xe9, 0x02, 'e', 0x02, 'u', 0x02, 'i',  0x0e,
                          0x0a, 0, 0, 0,    0,    0,    0,   0,    0,   0x00, 0x00, 0x00};
    assert_int_equal(codec_value_new(schema("ViewingEvent"), &v, err, sizeof err), 0);
    ve[11] = 0x0c; /* "dislike", the last symbol */
    if (codec_decode(codec, schema("ViewingEvent"), ve, sizeof ve, &v, err, sizeof err) != 0)
        fail_msg("%s", err);
    avro_value_decref(&v);
    ve[11] = 0x0e; /* index 7 of 7 */
    assert_decode_fails(schema("ViewingEvent"), ve, sizeof ve,
                        "enum index 7 out of range at field type");

    /* PosterTags with moderation.blocked = 2. */
    codec_buf_t buf = {0};
    encode_json("PosterTags",
                "{\"item_id\":\"i\",\"poster_id\":\"p\",\"labels\":[],\"width\":1,\"height\":1,"
                "\"dominant_colors\":[],\"phash\":\"h\",\"moderation\":{\"blocked\":true,"
                "\"matched_label\":null,\"distance\":3},\"model_version\":\"m\","
                "\"source\":{\"topic\":\"t\",\"partition\":0,\"offset\":0},\"ts\":0}",
                &buf);
    /* i p labels width height colors phash: 2+2+1+1+1+1+2 bytes after the header. */
    assert_int_equal(buf.data[5 + 10], 0x01);
    buf.data[5 + 10] = 0x02;
    assert_decode_fails(schema("PosterTags"), buf.data, buf.len, "moderation.blocked");
    codec_buf_free(&buf);
}

static void test_size_limit(void **state) {
    (void)state;
    codec_buf_t buf = {0};
    encode_json("Review", sample_for("Review"), &buf);
    codec_set_max_record_bytes(codec, buf.len - 6);
    assert_decode_fails(schema("Review"), buf.data, buf.len, "too large");
    avro_value_t v;
    value_from("Review", sample_for("Review"), &v);
    codec_buf_t out = {0};
    assert_int_equal(codec_encode(codec, schema("Review"), &v, &out, err, sizeof err), -1);
    assert_int_equal(out.len, 0);
    codec_set_max_record_bytes(codec, buf.len - 5);
    assert_int_equal(codec_encode(codec, schema("Review"), &v, &out, err, sizeof err), 0);
    codec_set_max_record_bytes(codec, CODEC_DEFAULT_MAX_RECORD_BYTES);
    avro_value_decref(&v);
    codec_buf_free(&out);
    codec_buf_free(&buf);
}

/* A value reused across decodes holds only the latest record. */
static void test_value_reuse(void **state) {
    (void)state;
    const char *a = "{\"item_id\":\"a\",\"title\":\"A\",\"genres\":[\"x\",\"y\",\"z\"],\"tags\":[],"
                    "\"year\":2001,\"ts\":1}";
    const char *b = "{\"item_id\":\"b\",\"title\":\"B\",\"genres\":[\"w\"],\"tags\":[\"t\"],"
                    "\"year\":null,\"ts\":2}";
    codec_buf_t ba = {0}, bb = {0};
    encode_json("Item", a, &ba);
    encode_json("Item", b, &bb);
    avro_value_t v;
    assert_int_equal(codec_value_new(schema("Item"), &v, err, sizeof err), 0);
    for (int round = 0; round < 3; round++) {
        assert_int_equal(codec_decode(codec, schema("Item"), ba.data, ba.len, &v, err, sizeof err),
                         0);
        assert_json_equal_text(&v, a);
        assert_int_equal(codec_decode(codec, schema("Item"), bb.data, bb.len, &v, err, sizeof err),
                         0);
        assert_json_equal_text(&v, b);
    }
    /* A failed decode leaves the value empty, not holding the last record. */
    assert_int_equal(codec_decode(codec, schema("Item"), bb.data, bb.len - 1, &v, err, sizeof err),
                     -1);
    size_t n = 99;
    avro_value_t genres;
    assert_int_equal(avro_value_get_by_name(&v, "genres", &genres, NULL), 0);
    assert_int_equal(avro_value_get_size(&genres, &n), 0);
    assert_int_equal(n, 0);
    avro_value_decref(&v);
    codec_buf_free(&ba);
    codec_buf_free(&bb);
}

/* A value of one schema is not encoded under another schema's id. */
static void test_encode_checks_schema(void **state) {
    (void)state;
    avro_value_t v;
    value_from("Item", sample_for("Item"), &v);
    codec_buf_t out = {0};
    assert_int_equal(codec_encode(codec, schema("ViewingEvent"), &v, &out, err, sizeof err), -1);
    assert_non_null(strstr(err, "ViewingEvent"));
    assert_int_equal(out.len, 0);
    /* And not decoded into one either. */
    codec_buf_t item = {0};
    encode_json("Item", sample_for("Item"), &item);
    item.data[4] = 0xe9; /* claim ViewingEvent */
    assert_int_equal(
        codec_decode(codec, schema("ViewingEvent"), item.data, item.len, &v, err, sizeof err), -1);
    avro_value_decref(&v);
    codec_buf_free(&item);
}

/* Missing optional fields take the schema default; numbers widen. */
static void test_json_defaults_and_unions(void **state) {
    (void)state;
    avro_value_t v;
    value_from(
        "ViewingEvent",
        "{\"event_id\":\"e\",\"user_id\":\"u\",\"item_id\":\"i\",\"type\":\"view\",\"ts\":7}", &v);
    assert_json_equal_text(&v, "{\"event_id\":\"e\",\"user_id\":\"u\",\"item_id\":\"i\","
                               "\"type\":\"view\",\"ts\":7,\"watch_seconds\":0.0,"
                               "\"duration_seconds\":null,\"rating\":null,\"device\":null}");
    avro_value_decref(&v);

    value_from("Item", "{\"item_id\":\"i\",\"title\":\"t\",\"ts\":7}", &v);
    assert_json_equal_text(&v, "{\"item_id\":\"i\",\"title\":\"t\",\"genres\":[],\"tags\":[],"
                               "\"year\":null,\"ts\":7}");
    avro_value_decref(&v);

    /* Integers are accepted for floats and doubles, and in unions. */
    value_from("ViewingEvent",
               "{\"event_id\":\"e\",\"user_id\":\"u\",\"item_id\":\"i\",\"type\":\"rating\","
               "\"ts\":7,\"watch_seconds\":3,\"duration_seconds\":100,\"rating\":4,"
               "\"device\":\"web\"}",
               &v);
    assert_json_equal_text(&v, "{\"event_id\":\"e\",\"user_id\":\"u\",\"item_id\":\"i\","
                               "\"type\":\"rating\",\"ts\":7,\"watch_seconds\":3.0,"
                               "\"duration_seconds\":100.0,\"rating\":4.0,\"device\":\"web\"}");
    avro_value_decref(&v);
}

/* Empty strings and bytes are values like any other. */
static void test_empty_strings_and_bytes(void **state) {
    (void)state;
    const char *json = "{\"item_id\":\"\",\"poster_id\":\"\",\"content_type\":\"\","
                       "\"image\":\"\",\"ts\":0}";
    codec_buf_t buf = {0};
    encode_json("Poster", json, &buf);
    const unsigned char want[] = {0, 0, 0, 0x03, 0xeb, 0, 0, 0, 0, 0};
    assert_int_equal(buf.len, sizeof want);
    assert_memory_equal(buf.data, want, sizeof want);
    avro_value_t v;
    assert_int_equal(codec_value_new(schema("Poster"), &v, err, sizeof err), 0);
    assert_int_equal(codec_decode(codec, schema("Poster"), buf.data, buf.len, &v, err, sizeof err),
                     0);
    assert_json_equal_text(&v, json);
    const char *key;
    size_t key_len = 99;
    assert_int_equal(codec_value_key(&v, "item_id", &key, &key_len), 0);
    assert_int_equal(key_len, 0);
    avro_value_decref(&v);
    codec_buf_free(&buf);

    /* A value whose union was never set is refused with a reason, not sent. */
    assert_int_equal(codec_value_new(schema("Item"), &v, err, sizeof err), 0);
    assert_int_equal(codec_encode(codec, schema("Item"), &v, &buf, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot encode Item"));
    assert_int_equal(buf.len, 0);
    assert_null(codec_value_to_json(&v));
    avro_value_decref(&v);
    codec_buf_free(&buf);
}

/* Keys in schema order, compact, shortest round-tripping numbers. */
static void test_json_rendering(void **state) {
    (void)state;
    avro_value_t v;
    value_from("CountUpdate",
               "{\"ts\":5,\"source\":{\"offset\":-3,\"partition\":2147483647,\"topic\":\"t\"},"
               "\"model_version\":\"v\",\"increment\":-9223372036854775808,\"key\":\"k\"}",
               &v);
    char *text = codec_value_to_json(&v);
    assert_string_equal(text, "{\"key\":\"k\",\"increment\":-9223372036854775808,"
                              "\"model_version\":\"v\",\"source\":{\"topic\":\"t\","
                              "\"partition\":2147483647,\"offset\":-3},\"ts\":5}");
    free(text);
    avro_value_decref(&v);

    value_from("Review",
               "{\"review_id\":\"r\",\"item_id\":\"i\",\"user_id\":\"u\","
               "\"text\":\"a\\\"b\\\\c\\u0001d/\",\"rating\":0.1,\"ts\":1}",
               &v);
    text = codec_value_to_json(&v);
    assert_string_equal(text, "{\"review_id\":\"r\",\"item_id\":\"i\",\"user_id\":\"u\","
                              "\"text\":\"a\\\"b\\\\c\\u0001d/\",\"rating\":0.1,\"ts\":1}");
    free(text);
    avro_value_decref(&v);

    /* A double that needs all 17 digits comes back bit for bit. */
    value_from("Transcript",
               "{\"clip_id\":\"c\",\"item_id\":null,\"text\":\"\",\"words\":[],"
               "\"duration_seconds\":0.30000000000000004,\"model_version\":\"m\","
               "\"source\":{\"topic\":\"t\",\"partition\":0,\"offset\":0},\"ts\":0}",
               &v);
    text = codec_value_to_json(&v);
    assert_non_null(strstr(text, "\"duration_seconds\":0.30000000000000004,"));
    free(text);
    avro_value_t d;
    assert_int_equal(avro_value_get_by_name(&v, "duration_seconds", &d, NULL), 0);
    assert_int_equal(avro_value_set_double(&d, 1e300), 0);
    text = codec_value_to_json(&v);
    assert_non_null(strstr(text, "\"duration_seconds\":1e+300,"));
    free(text);
    assert_int_equal(avro_value_set_double(&d, 0.1 + 0.7), 0);
    text = codec_value_to_json(&v);
    json_t *root = json_loads(text, 0, NULL);
    assert_true(json_real_value(json_object_get(root, "duration_seconds")) == 0.1 + 0.7);
    json_decref(root);
    free(text);
    avro_value_decref(&v);
}

static void test_json_errors(void **state) {
    (void)state;
    const char *ve_ok_tail = ",\"item_id\":\"i\",\"type\":\"view\",\"ts\":7}";
    char json[512];
    assert_json_fails("ViewingEvent",
                      "{\"event_id\":\"e\",\"item_id\":\"i\",\"type\":\"view\",\"ts\":7}",
                      "missing field user_id");
    snprintf(json, sizeof json, "{\"event_id\":\"e\",\"usr_id\":\"u\"%s", ve_ok_tail);
    assert_json_fails("ViewingEvent", json, "unknown field usr_id");
    snprintf(json, sizeof json, "{\"event_id\":\"e\",\"user_id\":5%s", ve_ok_tail);
    assert_json_fails("ViewingEvent", json, "field user_id: expected string, got integer");
    assert_json_fails("ViewingEvent",
                      "{\"event_id\":\"e\",\"user_id\":\"u\",\"item_id\":\"i\",\"type\":\"watch\","
                      "\"ts\":7}",
                      "field type: bad enum symbol \"watch\"");
    assert_json_fails("ViewingEvent",
                      "{\"event_id\":\"e\",\"user_id\":\"u\",\"item_id\":\"i\",\"type\":\"view\","
                      "\"ts\":7.5}",
                      "field ts: expected long, got real");
    assert_json_fails("ViewingEvent",
                      "{\"event_id\":\"e\",\"user_id\":\"u\",\"item_id\":\"i\",\"type\":\"view\","
                      "\"ts\":7,\"device\":5}",
                      "field device: expected null or string, got integer");
    assert_json_fails("ViewingEvent",
                      "{\"event_id\":\"e\",\"user_id\":\"u\",\"item_id\":\"i\",\"type\":\"view\","
                      "\"ts\":7,\"watch_seconds\":null}",
                      "field watch_seconds: expected double, got null");
    assert_json_fails("Poster",
                      "{\"item_id\":\"i\",\"poster_id\":\"p\",\"content_type\":\"image/png\","
                      "\"image\":\"not base64!\",\"ts\":1}",
                      "field image: bad base64");
    assert_json_fails("PosterTags",
                      "{\"item_id\":\"i\",\"poster_id\":\"p\",\"labels\":[],\"width\":4294967296,"
                      "\"height\":1,\"dominant_colors\":[],\"phash\":\"h\",\"moderation\":"
                      "{\"blocked\":true,\"distance\":3},\"model_version\":\"m\",\"source\":"
                      "{\"topic\":\"t\",\"partition\":0,\"offset\":0},\"ts\":0}",
                      "field width: 4294967296 is out of range for int");
    assert_json_fails("PosterTags",
                      "{\"item_id\":\"i\",\"poster_id\":\"p\",\"labels\":[],\"width\":1,"
                      "\"height\":1,\"dominant_colors\":[],\"phash\":\"h\",\"moderation\":"
                      "{\"blocked\":true,\"distance\":3,\"extra\":1},\"model_version\":\"m\","
                      "\"source\":{\"topic\":\"t\",\"partition\":0,\"offset\":0},\"ts\":0}",
                      "unknown field moderation.extra");
    assert_json_fails("Recommendations",
                      "{\"user_id\":\"u\",\"items\":[{\"item_id\":\"a\",\"score\":1.0,"
                      "\"sources\":[]},{\"item_id\":\"b\",\"score\":\"high\",\"sources\":[]}],"
                      "\"model_version\":\"m\",\"source\":{\"topic\":\"t\",\"partition\":0,"
                      "\"offset\":0},\"ts\":0}",
                      "field items[1].score: expected float, got string");
    assert_json_fails("Recommendations",
                      "{\"user_id\":\"u\",\"items\":[{\"item_id\":\"a\",\"score\":1.0}],"
                      "\"model_version\":\"m\",\"source\":{\"topic\":\"t\",\"partition\":0,"
                      "\"offset\":0},\"ts\":0}",
                      "missing field items[0].sources");
    assert_json_fails("ReviewSentiment",
                      "{\"review_id\":\"r\",\"item_id\":\"i\",\"label\":\"positive\","
                      "\"score\":1e300,\"probability\":0.5,\"model_version\":\"m\","
                      "\"source\":{\"topic\":\"t\",\"partition\":0,\"offset\":0},\"ts\":0}",
                      "field score: 1e+300 is out of range for float");
    assert_json_fails("Item", "{\"item_id\":\"i\",", "invalid JSON");
    assert_json_fails("Item", "[1,2]", "expected a JSON object");
    assert_json_fails("Item", "{\"item_id\":\"i\",\"item_id\":\"j\",\"title\":\"t\",\"ts\":1}",
                      "invalid JSON");
}

/* RFC 4648 vectors, every length 0..10, and malformed input. */
static void test_base64(void **state) {
    (void)state;
    static const char *const vectors[][2] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        char *enc = codec_base64_encode(vectors[i][0], strlen(vectors[i][0]));
        assert_string_equal(enc, vectors[i][1]);
        free(enc);
        size_t n = 99;
        unsigned char *dec = codec_base64_decode(vectors[i][1], strlen(vectors[i][1]), &n);
        assert_non_null(dec);
        assert_int_equal(n, strlen(vectors[i][0]));
        assert_memory_equal(dec, vectors[i][0], n);
        free(dec);
    }
    unsigned char data[10];
    for (size_t len = 0; len <= 10; len++) {
        for (size_t k = 0; k < len; k++) data[k] = (unsigned char)(0xfb + 37 * k + len);
        char *enc = codec_base64_encode(data, len);
        assert_non_null(enc);
        assert_int_equal(strlen(enc), (len + 2) / 3 * 4);
        size_t n = 99;
        unsigned char *dec = codec_base64_decode(enc, strlen(enc), &n);
        assert_non_null(dec);
        assert_int_equal(n, len);
        if (len) assert_memory_equal(dec, data, len);
        free(dec);
        free(enc);
    }
    static const char *const bad[] = {"Zg=",  "Zg",   "Z===",     "====", "Zg=a", "Zm9v\n",
                                      "Zm9*", "=Zg=", "Zg==Zg==", " Zm9", "Zm-_"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n;
        unsigned char *dec = codec_base64_decode(bad[i], strlen(bad[i]), &n);
        if (dec) fail_msg("accepted \"%s\"", bad[i]);
    }
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void) {
    /* xorshift64*: fixed seed, so a failure reproduces. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

/* A decoded record must survive being rendered and encoded again. */
static void check_decoded(const codec_schema_t *s, avro_value_t *v) {
    char *text = codec_value_to_json(v); /* NULL for NaN, which JSON lacks */
    free(text);
    codec_buf_t again = {0};
    if (codec_encode(codec, s, v, &again, err, sizeof err) != 0) fail_msg("re-encode: %s", err);
    avro_value_t w;
    assert_int_equal(codec_value_new(s, &w, err, sizeof err), 0);
    if (codec_decode(codec, s, again.data, again.len, &w, err, sizeof err) != 0)
        fail_msg("re-decode: %s", err);
    /* Compared as bytes: avro_value_equal() would call NaN unequal to itself. */
    codec_buf_t third = {0};
    assert_int_equal(codec_encode(codec, s, &w, &third, err, sizeof err), 0);
    assert_int_equal(third.len, again.len);
    assert_memory_equal(third.data, again.data, again.len);
    avro_value_decref(&w);
    codec_buf_free(&third);
    codec_buf_free(&again);
}

/* A failed decode must have been stopped by the codec's own checks: a
 * failure inside avro_value_read() would mean the validator let through
 * bytes Avro C cannot read, and Avro C leaks on that path. */
static void refused_before_avro(void) {
    if (strncmp(err, "cannot decode", 13) == 0) fail_msg("Avro C refused it: %s", err);
}

/* Random bodies after a valid header, and valid records with random bytes
 * changed: every outcome is a clean success or a clean failure. */
static void test_random_bytes(void **state) {
    (void)state;
    unsigned char buf[256];
    int ok = 0, failed = 0;
    for (size_t i = 0; i < reel_schema_source_count; i++) {
        const reel_schema_src_t *src = &reel_schema_sources[i];
        const codec_schema_t *s = schema(src->name);
        avro_value_t v;
        assert_int_equal(codec_value_new(s, &v, err, sizeof err), 0);
        buf[0] = 0;
        buf[1] = (unsigned char)((uint32_t)src->id >> 24);
        buf[2] = (unsigned char)((uint32_t)src->id >> 16);
        buf[3] = (unsigned char)((uint32_t)src->id >> 8);
        buf[4] = (unsigned char)src->id;
        for (int round = 0; round < 400; round++) {
            size_t len = 5 + rng() % (sizeof buf - 5);
            /* Small bytes make short lengths and low indexes, which get
             * further into the schema than uniform noise does. */
            int small = round % 2;
            for (size_t k = 5; k < len; k++) buf[k] = (unsigned char)(small ? rng() % 8 : rng());
            if (codec_decode(codec, s, buf, len, &v, err, sizeof err) == 0) {
                ok++;
                check_decoded(s, &v);
            } else {
                failed++;
                refused_before_avro();
            }
        }
        codec_buf_t rec = {0};
        encode_json(src->name, sample_for(src->name), &rec);
        unsigned char *m = malloc(rec.len);
        assert_non_null(m);
        for (int round = 0; round < 400; round++) {
            memcpy(m, rec.data, rec.len);
            int edits = 1 + (int)(rng() % 3);
            for (int e = 0; e < edits; e++) {
                size_t at = 5 + rng() % (rec.len - 5);
                m[at] = round % 2 ? (unsigned char)rng() : m[at] ^ (unsigned char)(1u << rng() % 8);
            }
            if (codec_decode(codec, s, m, rec.len, &v, err, sizeof err) == 0) {
                ok++;
                check_decoded(s, &v);
            } else {
                failed++;
                refused_before_avro();
            }
        }
        free(m);
        codec_buf_free(&rec);
        avro_value_decref(&v);
    }
    /* Both outcomes must have happened for the test to mean anything. */
    assert_true(ok > 0);
    assert_true(failed > 0);
}

/* Random text into the JSON reader: clean failures only. */
static void test_random_json(void **state) {
    (void)state;
    static const char alphabet[] = "{}[]\":,0123456789.-eE truefalsnul\\u";
    char text[128];
    for (size_t i = 0; i < reel_schema_source_count; i++) {
        const codec_schema_t *s = schema(reel_schema_sources[i].name);
        avro_value_t v;
        assert_int_equal(codec_value_new(s, &v, err, sizeof err), 0);
        const char *json = sample_for(reel_schema_sources[i].name);
        size_t len = strlen(json);
        for (int round = 0; round < 200; round++) {
            size_t n = rng() % sizeof text;
            for (size_t k = 0; k < n; k++) text[k] = alphabet[rng() % (sizeof alphabet - 1)];
            assert_int_equal(codec_value_from_json(s, text, n, &v, err, sizeof err), -1);
            /* A sample with one character replaced. */
            char *m = strdup(json);
            m[rng() % len] = alphabet[rng() % (sizeof alphabet - 1)];
            (void)codec_value_from_json(s, m, len, &v, err, sizeof err);
            free(m);
        }
        avro_value_decref(&v);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_schema_round_trips),
        cmocka_unit_test(test_lookups),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_truncation_and_trailing_bytes),
        cmocka_unit_test(test_huge_lengths_fail_fast),
        cmocka_unit_test(test_sized_blocks_decode),
        cmocka_unit_test(test_item_limit),
        cmocka_unit_test(test_bad_indexes_and_utf8),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_value_reuse),
        cmocka_unit_test(test_encode_checks_schema),
        cmocka_unit_test(test_json_defaults_and_unions),
        cmocka_unit_test(test_empty_strings_and_bytes),
        cmocka_unit_test(test_json_rendering),
        cmocka_unit_test(test_json_errors),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_random_json),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
