/* codec.h: Avro records in the Confluent wire format, and JSON <-> Avro.
 *
 * Wire format: byte 0 is 0 (magic), bytes 1-4 the big-endian schema id,
 * then the Avro binary encoding of one value. Schema Registry based tools
 * and other languages' consumers read it as is.
 *
 * A codec is not thread safe: one per worker thread. Every schema in
 * schemas/ is parsed once by codec_new(). */
#ifndef REEL_PIPELINE_CODEC_H
#define REEL_PIPELINE_CODEC_H

#include <avro.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/schemas.h"

/* Avro C 1.11 was not written for hostile input (it can allocate whatever a
 * length prefix says), so records are bounded before decoding. */
#define CODEC_DEFAULT_MAX_RECORD_BYTES (16u * 1024u * 1024u)

typedef struct codec codec_t;
typedef struct codec_schema codec_schema_t;

/* A growable byte buffer. The owner frees data with free(). */
typedef struct codec_buf {
    unsigned char *data;
    size_t len;
    size_t cap;
} codec_buf_t;

/* Parses every embedded schema. Returns NULL and a reason in errstr on
 * failure. The caller owns the codec and frees it with codec_destroy(). */
codec_t *codec_new(char *errstr, size_t errstr_size);
void codec_destroy(codec_t *c);

/* Largest value (after the 5-byte header) codec_decode() accepts. */
void codec_set_max_record_bytes(codec_t *c, size_t max_bytes);

/* Lookups. The returned schema is owned by the codec; NULL when unknown.
 * codec_by_topic() also maps "<topic>.dlq" to NULL (DLQ values are raw). */
const codec_schema_t *codec_by_id(const codec_t *c, int32_t id);
const codec_schema_t *codec_by_name(const codec_t *c, const char *name);
const codec_schema_t *codec_by_topic(const codec_t *c, const char *topic);

/* Facts about a schema; the strings are static. */
const reel_schema_src_t *codec_schema_src(const codec_schema_t *s);
avro_schema_t codec_schema_avro(const codec_schema_t *s);

/* Creates a fresh generic value of the schema in *value. The caller owns it
 * and releases it with avro_value_decref(). Returns 0, or -1 with errstr. */
int codec_value_new(const codec_schema_t *s, avro_value_t *value, char *errstr, size_t errstr_size);

/* Reads the schema id from a wire-format header. Returns 0, or -1 with a
 * reason (empty, too short, wrong magic byte). */
int codec_peek_id(const void *buf, size_t len, int32_t *id, char *errstr, size_t errstr_size);

/* Decodes one wire-format record into value, which must have been created
 * by codec_value_new() for expected (it is reset first). Fails, with a reason
 * in errstr, on empty or short input, a wrong magic byte, a schema id other
 * than expected's, a value over the size limit, Avro that does not parse, or
 * trailing bytes. Returns 0 or -1. */
int codec_decode(codec_t *c, const codec_schema_t *expected, const void *buf, size_t len,
                 avro_value_t *value, char *errstr, size_t errstr_size);

/* Appends the wire format of value (of schema s) to out. Returns 0 or -1. */
int codec_encode(codec_t *c, const codec_schema_t *s, const avro_value_t *value, codec_buf_t *out,
                 char *errstr, size_t errstr_size);

/* Fills value (created by codec_value_new() for s, reset first) from one
 * JSON object shaped like the schema: unions are written plainly (null or
 * the value itself, not Avro's {"type": value} form), enums as their symbol,
 * bytes as base64, timestamp-millis as a number; a missing field takes the
 * schema's default. Returns 0 or -1 with a reason that names the field. */
int codec_value_from_json(const codec_schema_t *s, const char *json, size_t len,
                          avro_value_t *value, char *errstr, size_t errstr_size);

/* Renders value as one line of compact JSON in the same shape. Returns a
 * string the caller frees with free(), or NULL on failure. */
char *codec_value_to_json(const avro_value_t *value);

/* Reads the string field key_field of a record value into *str and *len
 * (borrowed from value). Used for message keys. Returns 0 or -1. */
int codec_value_key(const avro_value_t *value, const char *key_field, const char **str,
                    size_t *len);

/* Standard base64 (RFC 4648, with padding). Both return a string or buffer
 * the caller frees with free(), or NULL on bad input / out of memory. */
char *codec_base64_encode(const void *data, size_t len);
unsigned char *codec_base64_decode(const char *text, size_t text_len, size_t *out_len);

/* Buffer helpers. */
int codec_buf_append(codec_buf_t *b, const void *data, size_t len);
void codec_buf_free(codec_buf_t *b);

#endif
