/* cli_util.c: small helpers the commands share (see workers.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workers/workers.h"

void *cli_read_file(const char *path, size_t max, size_t *len, char *errstr, size_t errstr_size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    int too_big = 0;
    while (buf) {
        if (n == cap) {
            unsigned char *grown = cap < max + 1 ? realloc(buf, cap * 2) : NULL;
            if (!grown) {
                too_big = cap >= max + 1;
                break;
            }
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int failed = !buf || ferror(f) || too_big || n > max;
    fclose(f);
    if (failed) {
        if (too_big || n > max)
            snprintf(errstr, errstr_size, "%s: larger than %zu bytes", path, max);
        else
            snprintf(errstr, errstr_size, "%s: read failed", path);
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}
