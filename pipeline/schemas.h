/* schemas.h: the Avro schemas compiled into reel, with their pinned ids.
 * The table is generated at build time from schemas/schemas.tsv. */
#ifndef REEL_PIPELINE_SCHEMAS_H
#define REEL_PIPELINE_SCHEMAS_H

#include <stddef.h>
#include <stdint.h>

typedef struct reel_schema_src {
    int32_t id;            /* Confluent schema id written in every record header */
    const char *name;      /* record name, e.g. "ViewingEvent" */
    const char *topic;     /* topic whose values use it, e.g. "viewing-events" */
    const char *key_field; /* field whose value is the Kafka message key */
    const char *json;      /* the .avsc text */
} reel_schema_src_t;

extern const reel_schema_src_t reel_schema_sources[];
extern const size_t reel_schema_source_count;

#endif
