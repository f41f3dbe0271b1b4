/* models.h: versioned model blobs in Redis, shared by every worker that
 * serves a trained model (tag, transcribe, sentiment).
 *
 * A model is an opaque file (each model family has its own format with a
 * magic and a version, see kernels/). `reel model push FILE` stores it under
 * its kind as a new version and makes it current; running workers poll the
 * current version from their reload() callback and swap models without a
 * restart; `reel model rollback KIND VERSION` points current back.
 *
 * Keys, all with the kind as hash tag so one kind stays in one slot:
 *   reel:models:{<kind>}:blob:<version>  the file's bytes
 *   reel:models:{<kind>}:info            hash version -> JSON
 *                                        {"version","name","size","fnv1a",
 *                                         "pushed_ms"}
 *   reel:models:{<kind>}:current         the version served
 *   reel:models:{<kind>}:next            version counter (INCR)
 * Models are global to a Redis, not per consumer group: every group of a
 * kind serves the same current model. */
#ifndef REEL_PIPELINE_MODELS_H
#define REEL_PIPELINE_MODELS_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/store.h"

/* Kinds known to the registry (the first four bytes of a model file name
 * its kind, see models_kind_of()). */
#define MODELS_KIND_MAX 32

/* Kind of a model file from its first bytes, or NULL when the magic is
 * unknown. Returns a static string. Known magics live in a table in
 * models.c: add a family's magic there when adding a family. */
const char *models_kind_of(const void *data, size_t len);

/* Stores data as a new version of kind and, when make_current, makes it
 * the current one (atomically with the store). name is a label shown by
 * `reel model list` (e.g. the file name); may be NULL. *version receives
 * the new version (1, 2, ...). Returns 0, or -1 with errstr. */
int models_push(store_t *s, const char *kind, const void *data, size_t len, const char *name,
                int make_current, int64_t *version, char *errstr, size_t errstr_size);

/* The current version of kind into *version. Returns 1 when there is one,
 * 0 when none was pushed, -1 with errstr on a Redis error. One round trip:
 * workers call it from reload() to see whether anything changed. */
int models_current(store_t *s, const char *kind, int64_t *version, char *errstr,
                   size_t errstr_size);

/* Fetches version of kind. On success returns 0 and *data (malloc'd, the
 * caller frees it) and *len; -1 with errstr when it does not exist or on a
 * Redis error. */
int models_fetch(store_t *s, const char *kind, int64_t version, void **data, size_t *len,
                 char *errstr, size_t errstr_size);

/* Makes version of kind current (roll back or forward). Refuses a version
 * whose blob is missing. Returns 0 or -1 with errstr. */
int models_set_current(store_t *s, const char *kind, int64_t version, char *errstr,
                       size_t errstr_size);

/* Deletes version of kind; refuses the current one. Returns 0 or -1. */
int models_remove(store_t *s, const char *kind, int64_t version, char *errstr, size_t errstr_size);

typedef struct models_info {
    int64_t version;
    char *json; /* the info JSON, owned by the list */
} models_info_t;

/* Every stored version of kind, ascending. *out is malloc'd; free it with
 * models_info_free(). Returns the count (>= 0) or -1 with errstr. */
int models_list(store_t *s, const char *kind, models_info_t **out, char *errstr,
                size_t errstr_size);
void models_info_free(models_info_t *list, int n);

/* Convenience for reload(): when the current version of kind differs from
 * *loaded_version, fetches it into *data and *len (caller frees data), stores the
 * new version in *loaded_version and returns 1; returns 0 when nothing
 * changed or nothing is pushed, -1 with errstr on error. */
int models_poll(store_t *s, const char *kind, int64_t *loaded_version, void **data, size_t *len,
                char *errstr, size_t errstr_size);

#endif
