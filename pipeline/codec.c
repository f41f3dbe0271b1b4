/* codec.c: Avro records in the Confluent wire format, and JSON <-> Avro.
 *
 * Avro C 1.11 trusts its input: it allocates whatever a length prefix or
 * block count says and leaks what it allocated when a read fails half way.
 * So every record is first checked by scan_value(), a bounded walk over the
 * schema that proves the bytes are exactly one well-formed value (lengths
 * fit in what is left, varints are short, union and enum indexes are in
 * range, strings are UTF-8, nothing trails). Only bytes that passed reach
 * avro_value_read(), which then cannot fail on them. */
#include "pipeline/codec.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CODEC_MAGIC 0x00
#define CODEC_HEADER_BYTES 5
/* Deepest nesting of records, arrays and maps a value may have. Our schemas
 * nest three levels; the bound exists because a recursive schema would let
 * the input choose the depth of our (and Avro C's) recursion. */
#define CODEC_MAX_DEPTH 64
/* Array and map items one record may hold: CODEC_ITEMS_BASE plus one per
 * CODEC_BYTES_PER_ITEM bytes of the size limit. Avro C spends about a hundred
 * bytes on each decoded item however small its encoding (a 16 MiB array of
 * empty strings took 1.8 GB), so the count is bounded as well as the bytes:
 * at the 16 MiB default the worst record decodes into about 120 MB. */
#define CODEC_ITEMS_BASE 65536u
#define CODEC_BYTES_PER_ITEM 16u

/* The field defaults of one record schema: Avro C 1.11 parses "default" but
 * does not expose it, so they are read from the .avsc text with jansson. */
typedef struct record_defaults {
    avro_schema_t record; /* borrowed from codec_schema.avro */
    json_t *fields;       /* borrowed from codec_schema.json: the "fields" array */
} record_defaults_t;

struct codec_schema {
    const reel_schema_src_t *src; /* static */
    avro_schema_t avro;           /* owned */
    avro_value_iface_t *iface;    /* owned; generic values of avro */
    json_t *json;                 /* owned; the parsed .avsc */
    record_defaults_t *records;   /* owned; every record defined in the .avsc */
    size_t n_records;
};

struct codec {
    codec_schema_t *schemas; /* owned; one per reel_schema_sources entry */
    size_t n_schemas;        /* how many are initialized */
    avro_reader_t reader;    /* reused for every decode */
    avro_writer_t writer;    /* reused for every encode */
    size_t max_record_bytes;
};

/* ---------------------------------------------------------------------------
 * Field paths for error messages ("items[2].score"). */

typedef struct path {
    struct {
        const char *name; /* field name, or NULL for an array/map position */
        size_t index;
    } seg[CODEC_MAX_DEPTH];
    int n;
} path_t;

static int path_push_name(path_t *p, const char *name) {
    if (p->n == CODEC_MAX_DEPTH) return -1;
    p->seg[p->n].name = name;
    p->seg[p->n].index = 0;
    p->n++;
    return 0;
}

static int path_push_index(path_t *p, size_t index) {
    if (p->n == CODEC_MAX_DEPTH) return -1;
    p->seg[p->n].name = NULL;
    p->seg[p->n].index = index;
    p->n++;
    return 0;
}

static void path_pop(path_t *p) {
    p->n--;
}

static void path_format(const path_t *p, char *out, size_t size) {
    size_t used = 0;
    out[0] = '\0';
    if (p->n == 0) {
        snprintf(out, size, "(record)");
        return;
    }
    for (int i = 0; i < p->n && used < size; i++) {
        int w;
        if (p->seg[i].name)
            w = snprintf(out + used, size - used, "%s%s", i ? "." : "", p->seg[i].name);
        else
            w = snprintf(out + used, size - used, "[%zu]", p->seg[i].index);
        if (w < 0) break;
        used += (size_t)w;
    }
}

/* ---------------------------------------------------------------------------
 * Small helpers. */

/* Avro C's message for a failed call. Some of its failures (writing a bytes
 * field that was never set, for one) return an error code without setting a
 * message, leaving an older, unrelated one. Clearing the message before every
 * call costs an snprintf per record on the hot path, so the code's own text
 * leads and Avro's last message follows as a hint. */
static const char *avro_reason(int rc, char *buf, size_t n) {
    const char *e = avro_strerror();
    if (e && *e)
        snprintf(buf, n, "%s (Avro: %s)", strerror(rc), e);
    else
        snprintf(buf, n, "%s", strerror(rc));
    return buf;
}

static avro_schema_t resolve(avro_schema_t s) {
    while (is_avro_link(s)) s = avro_schema_link_target(s);
    return s;
}

static const char *avro_type_label(avro_schema_t s) {
    switch (avro_typeof(resolve(s))) {
    case AVRO_STRING:
        return "string";
    case AVRO_BYTES:
        return "bytes";
    case AVRO_INT32:
        return "int";
    case AVRO_INT64:
        return "long";
    case AVRO_FLOAT:
        return "float";
    case AVRO_DOUBLE:
        return "double";
    case AVRO_BOOLEAN:
        return "boolean";
    case AVRO_NULL:
        return "null";
    case AVRO_RECORD:
        return "record";
    case AVRO_ENUM:
        return "enum";
    case AVRO_FIXED:
        return "fixed";
    case AVRO_MAP:
        return "map";
    case AVRO_ARRAY:
        return "array";
    case AVRO_UNION:
        return "union";
    default:
        return "unknown type";
    }
}

static const char *json_type_label(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "real";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}

/* RFC 3629 UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len) return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

/* ---------------------------------------------------------------------------
 * Buffers. */

static int buf_reserve(codec_buf_t *b, size_t extra) {
    if (extra > SIZE_MAX - b->len) return -1;
    size_t need = b->len + extra;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    unsigned char *d = realloc(b->data, cap);
    if (!d) return -1;
    b->data = d;
    b->cap = cap;
    return 0;
}

int codec_buf_append(codec_buf_t *b, const void *data, size_t len) {
    if (len == 0) return 0;
    if (buf_reserve(b, len) < 0) return -1;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

void codec_buf_free(codec_buf_t *b) {
    if (!b) return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static int buf_puts(codec_buf_t *b, const char *s) {
    return codec_buf_append(b, s, strlen(s));
}

/* ---------------------------------------------------------------------------
 * Base64 (RFC 4648, standard alphabet, padded). */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *codec_base64_encode(const void *data, size_t len) {
    const unsigned char *in = data;
    if (len > (SIZE_MAX - 1) / 4 * 3 - 3) return NULL;
    size_t out_len = (len + 2) / 3 * 4;
    char *out = malloc(out_len + 1);
    if (!out) return NULL;
    size_t o = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len) v |= (uint32_t)in[i + 1] << 8;
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return out;
}

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict: the length is a multiple of 4, '=' appears only as the last one or
 * two characters, and there is no whitespace. Returns a buffer of at least
 * one byte (so that empty input is not mistaken for an error). */
unsigned char *codec_base64_decode(const char *text, size_t text_len, size_t *out_len) {
    if (!text || text_len % 4 != 0) return NULL;
    size_t pad = 0;
    if (text_len >= 4 && text[text_len - 1] == '=') pad = text[text_len - 2] == '=' ? 2 : 1;
    unsigned char *out = malloc(text_len / 4 * 3 + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < text_len; i += 4) {
        bool last = i + 4 == text_len;
        int v[4];
        for (int k = 0; k < 4; k++) {
            if (last && k >= 4 - (int)pad) {
                v[k] = 0;
                continue;
            }
            v[k] = b64_value((unsigned char)text[i + k]);
            if (v[k] < 0) {
                free(out);
                return NULL;
            }
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | v[3];
        out[o++] = (unsigned char)(w >> 16);
        if (!last || pad < 2) out[o++] = (unsigned char)(w >> 8);
        if (!last || pad < 1) out[o++] = (unsigned char)w;
    }
    *out_len = o;
    return out;
}

/* ---------------------------------------------------------------------------
 * The validation walker. */

typedef struct scan {
    const unsigned char *p;
    const unsigned char *end;
    size_t items_left; /* array and map items the rest of the record may hold */
    path_t path;
    char *errstr;
    size_t errstr_size;
} scan_t;

/* Formats "<reason> at field <path>". Always returns -1. */
static int scan_fail(scan_t *sc, const char *fmt, ...) {
    char reason[256], where[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    path_format(&sc->path, where, sizeof where);
    snprintf(sc->errstr, sc->errstr_size, "%s at field %s", reason, where);
    return -1;
}

static size_t scan_left(const scan_t *sc) {
    return (size_t)(sc->end - sc->p);
}

/* A zig-zag varint of at most max_bytes bytes (5 for int, 10 for long). */
static int scan_varint(scan_t *sc, int max_bytes, int64_t *out) {
    uint64_t raw = 0;
    for (int i = 0;; i++) {
        if (i == max_bytes) return scan_fail(sc, "varint longer than %d bytes", max_bytes);
        if (sc->p == sc->end) return scan_fail(sc, "truncated Avro");
        unsigned b = *sc->p++;
        /* The tenth byte of a long has room for one bit only. */
        if (i == 9 && (b & 0x7E)) return scan_fail(sc, "varint overflows 64 bits");
        raw |= (uint64_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) break;
    }
    if (max_bytes == 5 && raw > UINT32_MAX) return scan_fail(sc, "varint overflows 32 bits");
    *out = (int64_t)((raw >> 1) ^ (~(raw & 1) + 1));
    return 0;
}

static int scan_long(scan_t *sc, int64_t *out) {
    return scan_varint(sc, 10, out);
}

static int scan_skip(scan_t *sc, size_t n) {
    if (scan_left(sc) < n)
        return scan_fail(sc, "truncated Avro (%zu bytes needed, %zu left)", n, scan_left(sc));
    sc->p += n;
    return 0;
}

/* A length prefix, checked against what is left before anyone allocates it. */
static int scan_length(scan_t *sc, size_t *len) {
    int64_t n;
    if (scan_long(sc, &n) < 0) return -1;
    if (n < 0) return scan_fail(sc, "negative length %" PRId64, n);
    if ((uint64_t)n > scan_left(sc))
        return scan_fail(sc, "truncated Avro (length %" PRId64 ", %zu bytes left)", n,
                         scan_left(sc));
    *len = (size_t)n;
    return 0;
}

static int scan_string(scan_t *sc) {
    size_t n = 0; /* gcc -O3 cannot see that scan_length sets it on success */
    if (scan_length(sc, &n) < 0) return -1;
    if (!utf8_valid(sc->p, n)) return scan_fail(sc, "invalid UTF-8");
    sc->p += n;
    return 0;
}

/* Fewest bytes a value of s can encode in, to refuse block counts that the
 * bytes left cannot hold. Links (possibly recursive) count 0, which never
 * refuses a valid record; the item budget still bounds them. */
static size_t min_encoded_size(avro_schema_t s) {
    switch (avro_typeof(s)) {
    case AVRO_NULL:
        return 0;
    case AVRO_FLOAT:
        return 4;
    case AVRO_DOUBLE:
        return 8;
    case AVRO_FIXED:
        return (size_t)avro_schema_fixed_size(s);
    case AVRO_RECORD: {
        size_t sum = 0;
        size_t n = avro_schema_record_size(s);
        for (size_t i = 0; i < n; i++)
            sum += min_encoded_size(avro_schema_record_field_get_by_index(s, (int)i));
        return sum;
    }
    case AVRO_LINK:
        return 0;
    default:
        return 1; /* varints, lengths, union indexes, block counts */
    }
}

static int scan_value(scan_t *sc, avro_schema_t s);

static int scan_blocks(scan_t *sc, avro_schema_t items, bool is_map) {
    size_t min_size = min_encoded_size(items) + (is_map ? 1 : 0);
    size_t index = 0;
    for (;;) {
        int64_t count;
        if (scan_long(sc, &count) < 0) return -1;
        if (count == 0) return 0;
        if (count < 0) {
            /* A negative count is followed by the block's size in bytes. */
            if (count == INT64_MIN) return scan_fail(sc, "bad block count");
            count = -count;
            int64_t block_bytes;
            if (scan_long(sc, &block_bytes) < 0) return -1;
            if (block_bytes < 0 || (uint64_t)block_bytes > scan_left(sc))
                return scan_fail(sc, "bad block size %" PRId64, block_bytes);
        }
        if (min_size > 0 && (uint64_t)count > scan_left(sc) / min_size)
            return scan_fail(sc, "block of %" PRId64 " items with %zu bytes left", count,
                             scan_left(sc));
        if ((uint64_t)count > sc->items_left)
            return scan_fail(sc, "block of %" PRId64 " items is over the record's item limit",
                             count);
        sc->items_left -= (size_t)count;
        for (int64_t i = 0; i < count; i++, index++) {
            if (path_push_index(&sc->path, index) < 0)
                return scan_fail(sc, "nested deeper than %d", CODEC_MAX_DEPTH);
            if (is_map && scan_string(sc) < 0) return -1;
            if (scan_value(sc, items) < 0) return -1;
            path_pop(&sc->path);
        }
    }
}

static int scan_value(scan_t *sc, avro_schema_t s) {
    s = resolve(s);
    switch (avro_typeof(s)) {
    case AVRO_NULL:
        return 0;
    case AVRO_BOOLEAN:
        if (sc->p == sc->end) return scan_fail(sc, "truncated Avro");
        if (*sc->p > 1) return scan_fail(sc, "bad boolean byte 0x%02x", *sc->p);
        sc->p++;
        return 0;
    case AVRO_INT32: {
        int64_t v;
        return scan_varint(sc, 5, &v);
    }
    case AVRO_INT64: {
        int64_t v;
        return scan_long(sc, &v);
    }
    case AVRO_FLOAT:
        return scan_skip(sc, 4);
    case AVRO_DOUBLE:
        return scan_skip(sc, 8);
    case AVRO_STRING:
        return scan_string(sc);
    case AVRO_BYTES: {
        size_t n = 0;
        if (scan_length(sc, &n) < 0) return -1;
        sc->p += n;
        return 0;
    }
    case AVRO_FIXED:
        return scan_skip(sc, (size_t)avro_schema_fixed_size(s));
    case AVRO_ENUM: {
        int64_t v;
        if (scan_long(sc, &v) < 0) return -1;
        if (v < 0 || v >= avro_schema_enum_number_of_symbols(s))
            return scan_fail(sc, "enum index %" PRId64 " out of range", v);
        return 0;
    }
    case AVRO_UNION: {
        int64_t v;
        if (scan_long(sc, &v) < 0) return -1;
        if (v < 0 || (uint64_t)v >= avro_schema_union_size(s))
            return scan_fail(sc, "union index %" PRId64 " out of range", v);
        return scan_value(sc, avro_schema_union_branch(s, (int)v));
    }
    case AVRO_RECORD: {
        size_t n = avro_schema_record_size(s);
        for (size_t i = 0; i < n; i++) {
            if (path_push_name(&sc->path, avro_schema_record_field_name(s, (int)i)) < 0)
                return scan_fail(sc, "nested deeper than %d", CODEC_MAX_DEPTH);
            if (scan_value(sc, avro_schema_record_field_get_by_index(s, (int)i)) < 0) return -1;
            path_pop(&sc->path);
        }
        return 0;
    }
    case AVRO_ARRAY:
        return scan_blocks(sc, resolve(avro_schema_array_items(s)), false);
    case AVRO_MAP:
        return scan_blocks(sc, resolve(avro_schema_map_values(s)), true);
    default:
        return scan_fail(sc, "unsupported schema type");
    }
}

/* Checks that body is exactly one value of s. */
static int scan_body(const codec_t *c, const codec_schema_t *s, const unsigned char *body,
                     size_t len, char *errstr, size_t errstr_size) {
    scan_t sc;
    sc.p = body;
    sc.end = body + len;
    sc.items_left = CODEC_ITEMS_BASE + c->max_record_bytes / CODEC_BYTES_PER_ITEM;
    sc.path.n = 0;
    sc.errstr = errstr;
    sc.errstr_size = errstr_size;
    if (scan_value(&sc, s->avro) < 0) return -1;
    if (sc.p != sc.end) {
        snprintf(errstr, errstr_size, "%zu trailing bytes", scan_left(&sc));
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Codec lifetime and lookups. */

/* Walks the parsed .avsc beside the Avro C schema and remembers the "fields"
 * array of every record defined there, for defaults. A name that refers to
 * an earlier definition is a string in the JSON and a link in Avro C, and
 * has nothing new to collect. */
static int collect_records(codec_schema_t *cs, avro_schema_t s, json_t *j) {
    if (!j) return -1;
    if (json_is_string(j) || is_avro_link(s)) return 0;
    if (json_is_array(j)) {
        if (!is_avro_union(s) || json_array_size(j) != avro_schema_union_size(s)) return -1;
        for (size_t i = 0; i < json_array_size(j); i++)
            if (collect_records(cs, avro_schema_union_branch(s, (int)i), json_array_get(j, i)) < 0)
                return -1;
        return 0;
    }
    if (!json_is_object(j)) return -1;
    json_t *type = json_object_get(j, "type");
    if (json_is_object(type) || json_is_array(type)) return collect_records(cs, s, type);
    switch (avro_typeof(s)) {
    case AVRO_RECORD: {
        json_t *fields = json_object_get(j, "fields");
        size_t n = avro_schema_record_size(s);
        if (!json_is_array(fields) || json_array_size(fields) != n) return -1;
        record_defaults_t *r = realloc(cs->records, (cs->n_records + 1) * sizeof *r);
        if (!r) return -1;
        cs->records = r;
        cs->records[cs->n_records].record = s;
        cs->records[cs->n_records].fields = fields;
        cs->n_records++;
        for (size_t i = 0; i < n; i++) {
            json_t *field = json_array_get(fields, i);
            if (collect_records(cs, avro_schema_record_field_get_by_index(s, (int)i),
                                json_object_get(field, "type")) < 0)
                return -1;
        }
        return 0;
    }
    case AVRO_ARRAY:
        return collect_records(cs, avro_schema_array_items(s), json_object_get(j, "items"));
    case AVRO_MAP:
        return collect_records(cs, avro_schema_map_values(s), json_object_get(j, "values"));
    default:
        return 0;
    }
}

/* The default of field i of record schema rec, or NULL when it has none. */
static json_t *field_default(const codec_schema_t *cs, avro_schema_t rec, size_t i) {
    for (size_t k = 0; k < cs->n_records; k++)
        if (cs->records[k].record == rec)
            return json_object_get(json_array_get(cs->records[k].fields, i), "default");
    return NULL;
}

static void schema_done(codec_schema_t *cs) {
    if (cs->iface) avro_value_iface_decref(cs->iface);
    if (cs->avro) avro_schema_decref(cs->avro);
    json_decref(cs->json);
    free(cs->records);
    memset(cs, 0, sizeof *cs);
}

static int schema_init(codec_schema_t *cs, const reel_schema_src_t *src, char *errstr,
                       size_t errstr_size) {
    json_error_t jerr;
    cs->src = src;
    if (avro_schema_from_json_length(src->json, strlen(src->json), &cs->avro) != 0) {
        cs->avro = NULL;
        snprintf(errstr, errstr_size, "schema %s: %s", src->name, avro_strerror());
        return -1;
    }
    if (!is_avro_record(cs->avro)) {
        snprintf(errstr, errstr_size, "schema %s: not a record", src->name);
        return -1;
    }
    cs->iface = avro_generic_class_from_schema(cs->avro);
    if (!cs->iface) {
        snprintf(errstr, errstr_size, "schema %s: %s", src->name, avro_strerror());
        return -1;
    }
    cs->json = json_loads(src->json, 0, &jerr);
    if (!cs->json) {
        snprintf(errstr, errstr_size, "schema %s: line %d: %s", src->name, jerr.line, jerr.text);
        return -1;
    }
    if (collect_records(cs, cs->avro, cs->json) < 0) {
        snprintf(errstr, errstr_size, "schema %s: cannot read field defaults", src->name);
        return -1;
    }
    /* Message keys come from this field, so a schema without it is a bug in
     * schemas.tsv better caught here than on the first record. */
    int idx = avro_schema_record_field_get_index(cs->avro, src->key_field);
    avro_schema_t key =
        idx < 0 ? NULL : resolve(avro_schema_record_field_get_by_index(cs->avro, idx));
    if (!key || !is_avro_string(key)) {
        snprintf(errstr, errstr_size, "schema %s: key field %s is not a string field", src->name,
                 src->key_field);
        return -1;
    }
    return 0;
}

codec_t *codec_new(char *errstr, size_t errstr_size) {
    static const char empty[1];
    codec_t *c = calloc(1, sizeof *c);
    if (!c) goto oom;
    c->max_record_bytes = CODEC_DEFAULT_MAX_RECORD_BYTES;
    c->schemas =
        calloc(reel_schema_source_count ? reel_schema_source_count : 1, sizeof *c->schemas);
    c->reader = avro_reader_memory(empty, 0);
    c->writer = avro_writer_memory(empty, 0);
    if (!c->schemas || !c->reader || !c->writer) goto oom;
    for (size_t i = 0; i < reel_schema_source_count; i++) {
        c->n_schemas++;
        if (schema_init(&c->schemas[i], &reel_schema_sources[i], errstr, errstr_size) < 0)
            goto fail;
    }
    return c;
oom:
    snprintf(errstr, errstr_size, "out of memory");
fail:
    codec_destroy(c);
    return NULL;
}

void codec_destroy(codec_t *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n_schemas; i++) schema_done(&c->schemas[i]);
    free(c->schemas);
    if (c->reader) avro_reader_free(c->reader);
    if (c->writer) avro_writer_free(c->writer);
    free(c);
}

void codec_set_max_record_bytes(codec_t *c, size_t max_bytes) {
    c->max_record_bytes = max_bytes;
}

const codec_schema_t *codec_by_id(const codec_t *c, int32_t id) {
    for (size_t i = 0; i < c->n_schemas; i++)
        if (c->schemas[i].src->id == id) return &c->schemas[i];
    return NULL;
}

const codec_schema_t *codec_by_name(const codec_t *c, const char *name) {
    for (size_t i = 0; i < c->n_schemas; i++)
        if (strcmp(c->schemas[i].src->name, name) == 0) return &c->schemas[i];
    return NULL;
}

/* DLQ topics ("<topic>.dlq") never match: no schema's topic has that name. */
const codec_schema_t *codec_by_topic(const codec_t *c, const char *topic) {
    for (size_t i = 0; i < c->n_schemas; i++)
        if (strcmp(c->schemas[i].src->topic, topic) == 0) return &c->schemas[i];
    return NULL;
}

const reel_schema_src_t *codec_schema_src(const codec_schema_t *s) {
    return s->src;
}

avro_schema_t codec_schema_avro(const codec_schema_t *s) {
    return s->avro;
}

int codec_value_new(const codec_schema_t *s, avro_value_t *value, char *errstr,
                    size_t errstr_size) {
    if (avro_generic_value_new(s->iface, value) != 0) {
        snprintf(errstr, errstr_size, "%s: cannot create value: %s", s->src->name, avro_strerror());
        return -1;
    }
    return 0;
}

/* Whether value was made for schema s; the pointer test is the usual case,
 * avro_schema_equal() covers a value from another codec. */
static bool value_is_of(const avro_value_t *value, const codec_schema_t *s) {
    avro_schema_t vs = avro_value_get_schema(value);
    return vs && (vs == s->avro || avro_schema_equal(vs, s->avro));
}

/* ---------------------------------------------------------------------------
 * Wire format. */

int codec_peek_id(const void *buf, size_t len, int32_t *id, char *errstr, size_t errstr_size) {
    const unsigned char *b = buf;
    if (len == 0) {
        snprintf(errstr, errstr_size, "empty record");
        return -1;
    }
    if (len < CODEC_HEADER_BYTES) {
        snprintf(errstr, errstr_size, "record too short (%zu bytes)", len);
        return -1;
    }
    if (b[0] != CODEC_MAGIC) {
        snprintf(errstr, errstr_size, "wrong magic byte 0x%02x", b[0]);
        return -1;
    }
    *id = (int32_t)((uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 8 | b[4]);
    return 0;
}

int codec_decode(codec_t *c, const codec_schema_t *expected, const void *buf, size_t len,
                 avro_value_t *value, char *errstr, size_t errstr_size) {
    int32_t id;
    /* Reset first so that a failed decode leaves an empty value, never the
     * previous record. */
    avro_value_reset(value);
    if (codec_peek_id(buf, len, &id, errstr, errstr_size) < 0) return -1;
    if (!codec_by_id(c, id)) {
        snprintf(errstr, errstr_size, "schema id %" PRId32 " unknown", id);
        return -1;
    }
    if (id != expected->src->id) {
        snprintf(errstr, errstr_size, "schema id %" PRId32 " where %" PRId32 " (%s) expected", id,
                 expected->src->id, expected->src->name);
        return -1;
    }
    const unsigned char *body = (const unsigned char *)buf + CODEC_HEADER_BYTES;
    size_t body_len = len - CODEC_HEADER_BYTES;
    if (body_len > c->max_record_bytes) {
        snprintf(errstr, errstr_size, "record too large (%zu bytes, limit %zu)", body_len,
                 c->max_record_bytes);
        return -1;
    }
    if (!value_is_of(value, expected)) {
        snprintf(errstr, errstr_size, "value is not a %s", expected->src->name);
        return -1;
    }
    if (scan_body(c, expected, body, body_len, errstr, errstr_size) < 0) return -1;
    avro_reader_memory_set_source(c->reader, (const char *)body, (int64_t)body_len);
    int rc = avro_value_read(c->reader, value);
    if (rc != 0) {
        /* Unreachable for bytes scan_body() accepted; kept as a guard. */
        char reason[256];
        snprintf(errstr, errstr_size, "cannot decode %s: %s", expected->src->name,
                 avro_reason(rc, reason, sizeof reason));
        return -1;
    }
    return 0;
}

int codec_encode(codec_t *c, const codec_schema_t *s, const avro_value_t *value, codec_buf_t *out,
                 char *errstr, size_t errstr_size) {
    /* Avro C's write API is not const-correct; it does not modify value. */
    avro_value_t *v = (avro_value_t *)value;
    size_t size;
    if (!value_is_of(value, s)) {
        snprintf(errstr, errstr_size, "value is not a %s", s->src->name);
        return -1;
    }
    int rc = avro_value_sizeof(v, &size);
    if (rc != 0) {
        char reason[256];
        snprintf(errstr, errstr_size, "cannot encode %s: %s", s->src->name,
                 avro_reason(rc, reason, sizeof reason));
        return -1;
    }
    /* Our own consumers would refuse it; better to fail the producer. */
    if (size > c->max_record_bytes) {
        snprintf(errstr, errstr_size, "%s of %zu bytes is over the %zu byte limit", s->src->name,
                 size, c->max_record_bytes);
        return -1;
    }
    if (buf_reserve(out, CODEC_HEADER_BYTES + size) < 0) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    unsigned char *hdr = out->data + out->len;
    uint32_t id = (uint32_t)s->src->id;
    hdr[0] = CODEC_MAGIC;
    hdr[1] = (unsigned char)(id >> 24);
    hdr[2] = (unsigned char)(id >> 16);
    hdr[3] = (unsigned char)(id >> 8);
    hdr[4] = (unsigned char)id;
    unsigned char *body = hdr + CODEC_HEADER_BYTES;
    avro_writer_memory_set_dest(c->writer, (const char *)body, (int64_t)size);
    rc = avro_value_write(c->writer, v);
    if (rc == 0 && avro_writer_tell(c->writer) != (int64_t)size) rc = EIO;
    if (rc != 0) {
        char reason[256];
        snprintf(errstr, errstr_size, "cannot encode %s: %s", s->src->name,
                 avro_reason(rc, reason, sizeof reason));
        return -1;
    }
    /* What we write must be what we accept: this catches, for instance, a
     * worker that put invalid UTF-8 in a string, before it reaches the bus. */
    char why[384];
    if (scan_body(c, s, body, size, why, sizeof why) < 0) {
        snprintf(errstr, errstr_size, "cannot encode %s: %s", s->src->name, why);
        return -1;
    }
    out->len += CODEC_HEADER_BYTES + size;
    return 0;
}

/* ---------------------------------------------------------------------------
 * JSON -> Avro. */

typedef struct fill {
    const codec_schema_t *cs;
    path_t path;
    char *errstr;
    size_t errstr_size;
} fill_t;

/* Formats "field <path>: <reason>". Always returns -1. */
static int fill_fail(fill_t *f, const char *fmt, ...) {
    char reason[256], where[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    path_format(&f->path, where, sizeof where);
    snprintf(f->errstr, f->errstr_size, "field %s: %s", where, reason);
    return -1;
}

/* Whether j could be a value of s, for picking a union branch. */
static bool json_fits(avro_schema_t s, const json_t *j) {
    s = resolve(s);
    switch (avro_typeof(s)) {
    case AVRO_NULL:
        return json_is_null(j);
    case AVRO_BOOLEAN:
        return json_is_boolean(j);
    case AVRO_INT32:
        return json_is_integer(j) && json_integer_value(j) >= INT32_MIN &&
               json_integer_value(j) <= INT32_MAX;
    case AVRO_INT64:
        return json_is_integer(j);
    case AVRO_FLOAT:
    case AVRO_DOUBLE:
        return json_is_number(j);
    case AVRO_STRING:
    case AVRO_BYTES:
    case AVRO_FIXED:
        return json_is_string(j);
    case AVRO_ENUM:
        return json_is_string(j) && avro_schema_enum_get_by_name(s, json_string_value(j)) >= 0;
    case AVRO_ARRAY:
        return json_is_array(j);
    case AVRO_MAP:
    case AVRO_RECORD:
        return json_is_object(j);
    default:
        return false;
    }
}

/* Avro's JSON encoding of a bytes default: one code point (0-255) a byte. */
static unsigned char *latin1_bytes(const char *s, size_t n, size_t *out_len) {
    unsigned char *out = malloc(n + 1);
    size_t o = 0;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            out[o++] = c;
        } else if ((c == 0xC2 || c == 0xC3) && i + 1 < n) {
            out[o++] = (unsigned char)(((c & 0x03) << 6) | ((unsigned char)s[++i] & 0x3F));
        } else {
            free(out);
            return NULL;
        }
    }
    *out_len = o;
    return out;
}

static int fill_value(fill_t *f, avro_value_t *v, json_t *j, bool is_default);

static int fill_bytes(fill_t *f, avro_value_t *v, avro_schema_t s, json_t *j, bool is_default) {
    size_t n;
    unsigned char *data;
    int rc;
    if (!json_is_string(j))
        return fill_fail(f, "expected base64 string, got %s", json_type_label(j));
    if (is_default)
        data = latin1_bytes(json_string_value(j), json_string_length(j), &n);
    else
        data = codec_base64_decode(json_string_value(j), json_string_length(j), &n);
    if (!data) return fill_fail(f, is_default ? "bad bytes default" : "bad base64");
    if (is_avro_fixed(s)) {
        if ((int64_t)n != avro_schema_fixed_size(s))
            rc = fill_fail(f, "%zu bytes where fixed size is %" PRId64, n,
                           avro_schema_fixed_size(s));
        else
            rc = avro_value_set_fixed(v, data, n) ? fill_fail(f, "%s", avro_strerror()) : 0;
    } else {
        rc = avro_value_set_bytes(v, data, n) ? fill_fail(f, "%s", avro_strerror()) : 0;
    }
    free(data);
    return rc;
}

static int fill_union(fill_t *f, avro_value_t *v, avro_schema_t s, json_t *j, bool is_default) {
    size_t n = avro_schema_union_size(s);
    int pick = -1;
    if (is_default) {
        /* Avro: a union's default is a value of its first branch. */
        pick = 0;
    } else {
        for (size_t i = 0; i < n && pick < 0; i++) {
            avro_schema_t b = resolve(avro_schema_union_branch(s, (int)i));
            if (json_is_null(j) ? is_avro_null(b) : !is_avro_null(b) && json_fits(b, j))
                pick = (int)i;
        }
    }
    if (pick < 0) {
        char types[256];
        size_t used = 0;
        types[0] = '\0';
        for (size_t i = 0; i < n && used < sizeof types; i++) {
            int w = snprintf(types + used, sizeof types - used, "%s%s", i ? " or " : "",
                             avro_type_label(avro_schema_union_branch(s, (int)i)));
            if (w < 0) break;
            used += (size_t)w;
        }
        return fill_fail(f, "expected %s, got %s", types, json_type_label(j));
    }
    avro_value_t branch;
    if (avro_value_set_branch(v, pick, &branch) != 0) return fill_fail(f, "%s", avro_strerror());
    return fill_value(f, &branch, j, is_default);
}

static int fill_record(fill_t *f, avro_value_t *v, avro_schema_t s, json_t *j, bool is_default) {
    const char *key;
    json_t *item;
    if (!json_is_object(j)) return fill_fail(f, "expected object, got %s", json_type_label(j));
    /* Unknown names first: a typo then reads "unknown field usr_id" rather
     * than "missing field user_id". */
    json_object_foreach(j, key, item) {
        if (avro_schema_record_field_get_index(s, key) < 0) {
            char where[512];
            if (path_push_name(&f->path, key) < 0) return fill_fail(f, "nested too deep");
            path_format(&f->path, where, sizeof where);
            snprintf(f->errstr, f->errstr_size, "unknown field %s", where);
            return -1;
        }
    }
    size_t n = avro_schema_record_size(s);
    for (size_t i = 0; i < n; i++) {
        avro_value_t field;
        const char *name;
        if (avro_value_get_by_index(v, i, &field, &name) != 0)
            return fill_fail(f, "%s", avro_strerror());
        if (path_push_name(&f->path, name) < 0) return fill_fail(f, "nested too deep");
        json_t *fj = json_object_get(j, name);
        bool dflt = is_default;
        if (!fj) {
            fj = field_default(f->cs, s, i);
            if (!fj) {
                char where[512];
                path_format(&f->path, where, sizeof where);
                snprintf(f->errstr, f->errstr_size, "missing field %s", where);
                return -1;
            }
            dflt = true;
        }
        if (fill_value(f, &field, fj, dflt) < 0) return -1;
        path_pop(&f->path);
    }
    return 0;
}

static int fill_value(fill_t *f, avro_value_t *v, json_t *j, bool is_default) {
    avro_schema_t s = resolve(avro_value_get_schema(v));
    int rc = 0;
    switch (avro_typeof(s)) {
    case AVRO_NULL:
        if (!json_is_null(j)) return fill_fail(f, "expected null, got %s", json_type_label(j));
        rc = avro_value_set_null(v);
        break;
    case AVRO_BOOLEAN:
        if (!json_is_boolean(j))
            return fill_fail(f, "expected boolean, got %s", json_type_label(j));
        rc = avro_value_set_boolean(v, json_is_true(j));
        break;
    case AVRO_INT32:
        if (!json_is_integer(j)) return fill_fail(f, "expected int, got %s", json_type_label(j));
        if (json_integer_value(j) < INT32_MIN || json_integer_value(j) > INT32_MAX)
            return fill_fail(f, "%" JSON_INTEGER_FORMAT " is out of range for int",
                             json_integer_value(j));
        rc = avro_value_set_int(v, (int32_t)json_integer_value(j));
        break;
    case AVRO_INT64:
        if (!json_is_integer(j)) return fill_fail(f, "expected long, got %s", json_type_label(j));
        rc = avro_value_set_long(v, json_integer_value(j));
        break;
    case AVRO_FLOAT: {
        if (!json_is_number(j)) return fill_fail(f, "expected float, got %s", json_type_label(j));
        double d = json_number_value(j);
        /* Converting a double beyond FLT_MAX to float is undefined in C. */
        if (fabs(d) > FLT_MAX) return fill_fail(f, "%g is out of range for float", d);
        rc = avro_value_set_float(v, (float)d);
        break;
    }
    case AVRO_DOUBLE:
        if (!json_is_number(j)) return fill_fail(f, "expected double, got %s", json_type_label(j));
        rc = avro_value_set_double(v, json_number_value(j));
        break;
    case AVRO_STRING:
        if (!json_is_string(j)) return fill_fail(f, "expected string, got %s", json_type_label(j));
        /* The size Avro C wants includes the terminating NUL. */
        rc = avro_value_set_string_len(v, json_string_value(j), json_string_length(j) + 1);
        break;
    case AVRO_BYTES:
    case AVRO_FIXED:
        return fill_bytes(f, v, s, j, is_default);
    case AVRO_ENUM: {
        if (!json_is_string(j))
            return fill_fail(f, "expected enum symbol, got %s", json_type_label(j));
        int idx = avro_schema_enum_get_by_name(s, json_string_value(j));
        if (idx < 0) {
            char symbols[256];
            size_t used = 0;
            int n = avro_schema_enum_number_of_symbols(s);
            symbols[0] = '\0';
            for (int i = 0; i < n && used < sizeof symbols; i++) {
                int w = snprintf(symbols + used, sizeof symbols - used, "%s%s", i ? ", " : "",
                                 avro_schema_enum_get(s, i));
                if (w < 0) break;
                used += (size_t)w;
            }
            return fill_fail(f, "bad enum symbol \"%s\" (expected one of %s)", json_string_value(j),
                             symbols);
        }
        rc = avro_value_set_enum(v, idx);
        break;
    }
    case AVRO_ARRAY: {
        size_t i;
        json_t *item;
        if (!json_is_array(j)) return fill_fail(f, "expected array, got %s", json_type_label(j));
        json_array_foreach(j, i, item) {
            avro_value_t child;
            if (path_push_index(&f->path, i) < 0) return fill_fail(f, "nested too deep");
            if (avro_value_append(v, &child, NULL) != 0) return fill_fail(f, "%s", avro_strerror());
            if (fill_value(f, &child, item, is_default) < 0) return -1;
            path_pop(&f->path);
        }
        return 0;
    }
    case AVRO_MAP: {
        const char *key;
        json_t *item;
        size_t i = 0;
        if (!json_is_object(j)) return fill_fail(f, "expected object, got %s", json_type_label(j));
        json_object_foreach(j, key, item) {
            avro_value_t child;
            if (path_push_index(&f->path, i++) < 0) return fill_fail(f, "nested too deep");
            if (avro_value_add(v, key, &child, NULL, NULL) != 0)
                return fill_fail(f, "%s", avro_strerror());
            if (fill_value(f, &child, item, is_default) < 0) return -1;
            path_pop(&f->path);
        }
        return 0;
    }
    case AVRO_UNION:
        return fill_union(f, v, s, j, is_default);
    case AVRO_RECORD:
        return fill_record(f, v, s, j, is_default);
    default:
        return fill_fail(f, "unsupported schema type");
    }
    if (rc != 0) return fill_fail(f, "%s", avro_strerror());
    return 0;
}

int codec_value_from_json(const codec_schema_t *s, const char *json, size_t len,
                          avro_value_t *value, char *errstr, size_t errstr_size) {
    json_error_t jerr;
    fill_t f;
    int rc = -1;
    avro_value_reset(value);
    if (!value_is_of(value, s)) {
        snprintf(errstr, errstr_size, "value is not a %s", s->src->name);
        return -1;
    }
    /* Duplicate keys are refused: which one wins would be a guess. */
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(errstr, errstr_size, "invalid JSON at line %d column %d: %s", jerr.line,
                 jerr.column, jerr.text);
        return -1;
    }
    if (!json_is_object(root)) {
        snprintf(errstr, errstr_size, "expected a JSON object for %s, got %s", s->src->name,
                 json_type_label(root));
        goto done;
    }
    f.cs = s;
    f.path.n = 0;
    f.errstr = errstr;
    f.errstr_size = errstr_size;
    rc = fill_value(&f, value, root, false);
done:
    /* A half-filled value is no use to anyone: leave it empty. */
    if (rc < 0) avro_value_reset(value);
    json_decref(root);
    return rc;
}

/* ---------------------------------------------------------------------------
 * Avro -> JSON. The text is written by hand rather than through jansson's
 * dumper, which prints every real with the same precision: a float would show
 * as 0.89999997615814209 instead of 0.9. Each number here is the shortest
 * text that reads back to the same float or double. */

static int emit_real(codec_buf_t *b, double d, bool is_float) {
    char text[40];
    if (!isfinite(d)) return -1; /* JSON has no NaN or infinity */
    for (int prec = 1; prec <= (is_float ? 9 : 17); prec++) {
        snprintf(text, sizeof text, "%.*g", prec, d);
        if (is_float ? strtof(text, NULL) == (float)d : strtod(text, NULL) == d) break;
    }
    /* Keep it a real for readers that tell 1.0 from 1. */
    if (!strpbrk(text, ".e")) strcat(text, ".0");
    return buf_puts(b, text);
}

static int emit_string(codec_buf_t *b, const char *s, size_t n) {
    if (!utf8_valid((const unsigned char *)s, n)) return -1;
    if (buf_reserve(b, n + 2) < 0 || codec_buf_append(b, "\"", 1) < 0) return -1;
    size_t run = 0; /* bytes copied as they are, flushed before each escape */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c >= 0x20 && c != '"' && c != '\\') {
            run++;
            continue;
        }
        if (codec_buf_append(b, s + i - run, run) < 0) return -1;
        run = 0;
        switch (c) {
        case '"':
            strcpy(esc, "\\\"");
            break;
        case '\\':
            strcpy(esc, "\\\\");
            break;
        case '\n':
            strcpy(esc, "\\n");
            break;
        case '\r':
            strcpy(esc, "\\r");
            break;
        case '\t':
            strcpy(esc, "\\t");
            break;
        case '\b':
            strcpy(esc, "\\b");
            break;
        case '\f':
            strcpy(esc, "\\f");
            break;
        default:
            snprintf(esc, sizeof esc, "\\u%04x", c);
            break;
        }
        if (buf_puts(b, esc) < 0) return -1;
    }
    if (codec_buf_append(b, s + n - run, run) < 0) return -1;
    return codec_buf_append(b, "\"", 1);
}

static int emit_value(codec_buf_t *b, const avro_value_t *v, int depth) {
    char num[32];
    if (depth > CODEC_MAX_DEPTH) return -1;
    switch (avro_value_get_type(v)) {
    case AVRO_NULL:
        return buf_puts(b, "null");
    case AVRO_BOOLEAN: {
        int x;
        if (avro_value_get_boolean(v, &x)) return -1;
        return buf_puts(b, x ? "true" : "false");
    }
    case AVRO_INT32: {
        int32_t x;
        if (avro_value_get_int(v, &x)) return -1;
        snprintf(num, sizeof num, "%" PRId32, x);
        return buf_puts(b, num);
    }
    case AVRO_INT64: {
        int64_t x;
        if (avro_value_get_long(v, &x)) return -1;
        snprintf(num, sizeof num, "%" PRId64, x);
        return buf_puts(b, num);
    }
    case AVRO_FLOAT: {
        float x;
        if (avro_value_get_float(v, &x)) return -1;
        return emit_real(b, x, true);
    }
    case AVRO_DOUBLE: {
        double x;
        if (avro_value_get_double(v, &x)) return -1;
        return emit_real(b, x, false);
    }
    case AVRO_STRING: {
        const char *s;
        size_t size;
        if (avro_value_get_string(v, &s, &size)) return -1;
        return emit_string(b, s ? s : "", size ? size - 1 : 0);
    }
    case AVRO_BYTES:
    case AVRO_FIXED: {
        const void *data;
        size_t size;
        int rc = avro_value_get_type(v) == AVRO_BYTES ? avro_value_get_bytes(v, &data, &size)
                                                      : avro_value_get_fixed(v, &data, &size);
        if (rc) return -1;
        char *text = codec_base64_encode(size ? data : "", size);
        if (!text) return -1;
        rc = emit_string(b, text, strlen(text));
        free(text);
        return rc;
    }
    case AVRO_ENUM: {
        int idx;
        if (avro_value_get_enum(v, &idx)) return -1;
        avro_schema_t s = resolve(avro_value_get_schema(v));
        if (idx < 0 || idx >= avro_schema_enum_number_of_symbols(s)) return -1;
        const char *sym = avro_schema_enum_get(s, idx);
        return sym ? emit_string(b, sym, strlen(sym)) : -1;
    }
    case AVRO_UNION: {
        avro_value_t branch;
        if (avro_value_get_current_branch(v, &branch)) return -1;
        return emit_value(b, &branch, depth);
    }
    case AVRO_ARRAY:
    case AVRO_MAP:
    case AVRO_RECORD: {
        avro_type_t t = avro_value_get_type(v);
        size_t n;
        if (avro_value_get_size(v, &n)) return -1;
        if (codec_buf_append(b, t == AVRO_ARRAY ? "[" : "{", 1) < 0) return -1;
        for (size_t i = 0; i < n; i++) {
            avro_value_t child;
            const char *name = NULL;
            if (avro_value_get_by_index(v, i, &child, &name)) return -1;
            if (i && codec_buf_append(b, ",", 1) < 0) return -1;
            if (t != AVRO_ARRAY) {
                if (!name || emit_string(b, name, strlen(name)) < 0) return -1;
                if (codec_buf_append(b, ":", 1) < 0) return -1;
            }
            if (emit_value(b, &child, depth + 1) < 0) return -1;
        }
        return codec_buf_append(b, t == AVRO_ARRAY ? "]" : "}", 1);
    }
    default:
        return -1;
    }
}

char *codec_value_to_json(const avro_value_t *value) {
    codec_buf_t b = {0};
    if (emit_value(&b, value, 0) < 0 || codec_buf_append(&b, "", 1) < 0) {
        codec_buf_free(&b);
        return NULL;
    }
    return (char *)b.data;
}

int codec_value_key(const avro_value_t *value, const char *key_field, const char **str,
                    size_t *len) {
    avro_value_t field;
    const char *s;
    size_t size;
    if (avro_value_get_type(value) != AVRO_RECORD) return -1;
    if (avro_value_get_by_name(value, key_field, &field, NULL) != 0) return -1;
    if (avro_value_get_type(&field) == AVRO_UNION) {
        avro_value_t branch;
        if (avro_value_get_current_branch(&field, &branch) != 0) return -1;
        field = branch;
    }
    if (avro_value_get_type(&field) != AVRO_STRING) return -1;
    if (avro_value_get_string(&field, &s, &size) != 0) return -1;
    *str = s ? s : "";
    *len = size ? size - 1 : 0;
    return 0;
}
