/* tokenize.c: the tokenizer and vocabulary of kernels/text. */
#include "kernels/text/tokenize.h"

#include <stdlib.h>
#include <string.h>

int tok_utf8_valid(const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1, cp = c & 0x1F, min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2, cp = c & 0x0F, min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (len - i <= n) return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += n + 1;
    }
    return 1;
}

/* The code point at byte pos (the text already known valid when !latin1);
 * returns the position after it. */
static size_t decode_at(const unsigned char *p, size_t len, size_t pos, int latin1, uint32_t *cp) {
    unsigned c = p[pos];
    if (latin1 || c < 0x80) {
        *cp = c;
        return pos + 1;
    }
    size_t n = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
    uint32_t v = c & (0x3F >> n);
    for (size_t k = 1; k <= n && pos + k < len; k++) v = (v << 6) | (p[pos + k] & 0x3F);
    *cp = v;
    return pos + n + 1;
}

enum { C_SPACE, C_WORD, C_DIGIT, C_PUNCT, C_QUOTE, C_APOS, C_SINGLE };

static int classify(uint32_t c) {
    if (c < 0x80) {
        if (c >= 'a' && c <= 'z') return C_WORD;
        if (c >= 'A' && c <= 'Z') return C_WORD;
        if (c >= '0' && c <= '9') return C_DIGIT;
        if (c <= 0x20 || c == 0x7F) return C_SPACE;
        if (c == '\'') return C_APOS;
        if (c == '"' || c == '`') return C_QUOTE;
        return C_PUNCT;
    }
    if (c < 0xA0) return C_SPACE; /* C1 controls */
    if (c < 0xC0) {
        if (c == 0xAA || c == 0xB5 || c == 0xBA) return C_WORD;
        if (c == 0xB2 || c == 0xB3 || c == 0xB9) return C_DIGIT;
        if (c == 0xA0 || c == 0xAD) return C_SPACE;
        if (c == 0xAB || c == 0xBB) return C_QUOTE;
        return C_PUNCT;
    }
    if (c == 0xD7 || c == 0xF7) return C_PUNCT;
    if (c < 0x2000) return C_WORD;
    if (c == 0x2018 || c == 0x2019) return C_APOS;
    if (c >= 0x201A && c <= 0x201F) return C_QUOTE;
    if (c <= 0x200F || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x2060)
        return C_SPACE;
    if (c < 0x2070) return C_PUNCT;
    if (c >= 0x2190 && c < 0x2600) return C_PUNCT;  /* arrows, math, boxes */
    if (c >= 0x2600 && c < 0x27C0) return C_SINGLE; /* symbols, dingbats */
    if (c == 0x3000) return C_SPACE;
    if (c > 0x3000 && c < 0x3040) return C_PUNCT;                   /* CJK punctuation */
    if ((c >= 0x3040 && c < 0xA000) || (c >= 0xAC00 && c < 0xD7B0)) /* kana, CJK, hangul */
        return C_SINGLE;
    if (c >= 0xF900 && c < 0xFB00) return C_SINGLE;
    if (c >= 0xFE00 && c <= 0xFE0F) return C_SPACE; /* variation selectors */
    if (c == 0xFEFF || c == 0xFFFD) return C_SPACE; /* BOM, replacement */
    if (c >= 0xFF00 && c < 0xFF10) return C_PUNCT;
    if (c >= 0x1F000 && c < 0x1FC00) return C_SINGLE; /* emoji */
    if (c >= 0x1F3FB && c <= 0x1F3FF) return C_SPACE; /* skin tones */
    if (c >= 0x20000 && c < 0x30000) return C_SINGLE; /* CJK extensions */
    if (c >= 0xE0000) return C_SPACE;                 /* tags */
    return C_WORD;
}

static uint32_t lower(uint32_t c) {
    if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
    if (c >= 0x100 && c < 0x138 && !(c & 1)) return c + 1;
    if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 32;
    if (c >= 0x410 && c <= 0x42F) return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    return c;
}

/* Appends cp as UTF-8 to the token at t (length *n); drops it when it would
 * not fit, so a long word is cut at a character boundary. */
static void put(char *t, size_t *n, uint32_t cp) {
    unsigned char b[4];
    size_t k;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp, k = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | (cp >> 6)), b[1] = (unsigned char)(0x80 | (cp & 0x3F)), k = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F)), k = 3;
    } else {
        b[0] = (unsigned char)(0xF0 | (cp >> 18));
        b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (unsigned char)(0x80 | (cp & 0x3F)), k = 4;
    }
    if (*n + k > TOK_MAX_BYTES) return;
    memcpy(t + *n, b, k);
    *n += k;
    t[*n] = 0;
}

static int is_wordish(int cls) {
    return cls == C_WORD || cls == C_DIGIT;
}

/* Length (in code points, at most 3) of the letters after an apostrophe at
 * byte pos, and those letters lowercased into s; 0 when what follows is not
 * a run of at most 2 ASCII letters that ends the word. */
static size_t clitic_after(const unsigned char *p, size_t len, size_t pos, int latin1, char *s,
                           size_t *end) {
    size_t n = 0;
    while (pos < len) {
        uint32_t c;
        size_t next = decode_at(p, len, pos, latin1, &c);
        int cls = classify(c);
        if (!is_wordish(cls)) break;
        if (n == 2 || c >= 0x80) return 0;
        s[n++] = (char)lower(c);
        pos = next;
    }
    s[n] = 0;
    *end = pos;
    if (n == 0) return 0;
    if (strcmp(s, "s") && strcmp(s, "m") && strcmp(s, "d") && strcmp(s, "t") && strcmp(s, "ll") &&
        strcmp(s, "re") && strcmp(s, "ve"))
        return 0;
    return n;
}

size_t tok_split(const char *text, size_t len, char *buf, size_t max_tokens, unsigned *flags) {
    const unsigned char *p = (const unsigned char *)text;
    int latin1 = !tok_utf8_valid(text, len);
    unsigned fl = latin1 ? TOK_LATIN1 : 0;
    size_t nt = 0, pos = 0;
#define EMIT_BEGIN() (buf + nt * TOK_STRIDE)
    while (pos < len) {
        if (nt >= max_tokens) {
            /* Only whitespace may follow without truncation. */
            uint32_t c;
            while (pos < len) {
                pos = decode_at(p, len, pos, latin1, &c);
                int cls = classify(c);
                if (cls != C_SPACE && cls != C_QUOTE) {
                    fl |= TOK_TRUNCATED;
                    break;
                }
            }
            break;
        }
        uint32_t c;
        size_t next = decode_at(p, len, pos, latin1, &c);
        int cls = classify(c);
        if (cls == C_SPACE || cls == C_QUOTE) {
            pos = next;
            continue;
        }
        char *t = EMIT_BEGIN();
        size_t tn = 0;
        t[0] = 0;
        if (cls == C_PUNCT || cls == C_SINGLE) {
            put(t, &tn, lower(c));
            nt++;
            pos = next;
            continue;
        }
        if (cls == C_APOS) {
            /* A clitic standing alone, as in pre-tokenized text: "i 'm". */
            char s[4];
            size_t end;
            if (clitic_after(p, len, next, latin1, s, &end) && strcmp(s, "t") != 0) {
                t[0] = '\'';
                memcpy(t + 1, s, strlen(s) + 1);
                nt++;
                pos = end;
            } else {
                pos = next; /* a quotation mark */
            }
            continue;
        }
        /* A word or number. */
        uint32_t prev = c;
        put(t, &tn, lower(c));
        pos = next;
        int split_done = 0;
        while (pos < len) {
            next = decode_at(p, len, pos, latin1, &c);
            cls = classify(c);
            if (is_wordish(cls)) {
                put(t, &tn, lower(c));
                prev = c;
                pos = next;
                continue;
            }
            if (next >= len) break;
            uint32_t c2;
            decode_at(p, len, next, latin1, &c2);
            int cls2 = classify(c2);
            int prev_digit = classify(prev) == C_DIGIT;
            if (c == '-' && is_wordish(cls2)) {
                put(t, &tn, c);
                prev = c;
                pos = next;
                continue;
            }
            if ((c == '.' || c == ',') && prev_digit && cls2 == C_DIGIT) {
                put(t, &tn, c);
                prev = c;
                pos = next;
                continue;
            }
            if (cls == C_APOS && is_wordish(cls2)) {
                char s[4];
                size_t end;
                if (clitic_after(p, len, next, latin1, s, &end)) {
                    if (strcmp(s, "t") == 0) {
                        /* "doesn't" -> "does" "n't"; a lone "n" is "n't". */
                        if (tn > 1 && t[tn - 1] == 'n') {
                            t[--tn] = 0;
                            nt++;
                            if (nt >= max_tokens) {
                                fl |= TOK_TRUNCATED;
                                pos = len;
                                split_done = 1;
                                break;
                            }
                            t = EMIT_BEGIN();
                        }
                        memcpy(t, "n't", 4);
                    } else {
                        nt++;
                        if (nt >= max_tokens) {
                            fl |= TOK_TRUNCATED;
                            pos = len;
                            split_done = 1;
                            break;
                        }
                        t = EMIT_BEGIN();
                        t[0] = '\'';
                        memcpy(t + 1, s, strlen(s) + 1);
                    }
                    nt++;
                    pos = end;
                    split_done = 1;
                    break;
                }
                /* o'clock, rock'n'roll: the apostrophe stays in the word. */
                put(t, &tn, '\'');
                prev = c;
                pos = next;
                continue;
            }
            break;
        }
        if (!split_done) nt++;
    }
#undef EMIT_BEGIN
    if (flags) *flags = fl;
    return nt;
}

/* ---- vocabulary ---- */

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

vocab_t *vocab_new(void) {
    vocab_t *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->table_cap = 1024;
    v->table = calloc(v->table_cap, sizeof *v->table);
    if (!v->table) {
        free(v);
        return NULL;
    }
    return v;
}

void vocab_destroy(vocab_t *v) {
    if (!v) return;
    for (uint32_t i = 0; i < v->n; i++) free(v->words[i]);
    free(v->words);
    free(v->counts);
    free(v->table);
    free(v);
}

static uint32_t *slot_of(const vocab_t *v, const char *word) {
    uint32_t mask = v->table_cap - 1;
    uint32_t i = (uint32_t)fnv1a(word) & mask;
    while (v->table[i] && strcmp(v->words[v->table[i] - 1], word) != 0) i = (i + 1) & mask;
    return &v->table[i];
}

int64_t vocab_find(const vocab_t *v, const char *word) {
    uint32_t s = *slot_of(v, word);
    return s ? (int64_t)s - 1 : -1;
}

static int grow_table(vocab_t *v) {
    uint32_t cap = v->table_cap * 2;
    uint32_t *t = calloc(cap, sizeof *t);
    if (!t) return -1;
    free(v->table);
    v->table = t;
    v->table_cap = cap;
    for (uint32_t id = 0; id < v->n; id++) *slot_of(v, v->words[id]) = id + 1;
    return 0;
}

int64_t vocab_add(vocab_t *v, const char *word, uint64_t count) {
    uint32_t *s = slot_of(v, word);
    if (*s) {
        v->counts[*s - 1] += count;
        return *s - 1;
    }
    if (v->n == v->cap) {
        uint32_t cap = v->cap ? v->cap * 2 : 256;
        char **w = realloc(v->words, cap * sizeof *w);
        if (!w) return -1;
        v->words = w;
        uint64_t *c = realloc(v->counts, cap * sizeof *c);
        if (!c) return -1;
        v->counts = c;
        v->cap = cap;
    }
    char *copy = strdup(word);
    if (!copy) return -1;
    v->words[v->n] = copy;
    v->counts[v->n] = count;
    *s = v->n + 1;
    v->n++;
    if (v->n * 2 > v->table_cap && grow_table(v) < 0) return -1;
    return v->n - 1;
}

/* Sort key of a kept word: the comparator needs no global, so several
 * threads can prune at once (eval --threads runs folds in parallel). */
typedef struct prune_ent {
    uint64_t count;
    const char *word;
} prune_ent_t;

static int by_count(const void *a, const void *b) {
    const prune_ent_t *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return strcmp(x->word, y->word);
}

vocab_t *vocab_prune(const vocab_t *v, uint64_t min_count, uint32_t max_words, int with_unk) {
    prune_ent_t *order = malloc((v->n + 1) * sizeof *order);
    vocab_t *out = vocab_new();
    if (!order || !out) goto fail;
    uint32_t n = 0;
    for (uint32_t i = 0; i < v->n; i++)
        if (v->counts[i] >= min_count && strcmp(v->words[i], VOCAB_UNK) != 0)
            order[n++] = (prune_ent_t){v->counts[i], v->words[i]};
    qsort(order, n, sizeof *order, by_count);
    if (max_words && n > max_words) n = max_words;
    if (with_unk && vocab_add(out, VOCAB_UNK, 0) < 0) goto fail;
    for (uint32_t i = 0; i < n; i++)
        if (vocab_add(out, order[i].word, order[i].count) < 0) goto fail;
    free(order);
    return out;
fail:
    free(order);
    vocab_destroy(out);
    return NULL;
}

static int put_u32(FILE *f, uint32_t x) {
    unsigned char b[4] = {(unsigned char)x, (unsigned char)(x >> 8), (unsigned char)(x >> 16),
                          (unsigned char)(x >> 24)};
    return fwrite(b, 1, 4, f) == 4 ? 0 : -1;
}

int vocab_write(const vocab_t *v, FILE *f) {
    if (put_u32(f, v->n) < 0) return -1;
    for (uint32_t i = 0; i < v->n; i++) {
        size_t l = strlen(v->words[i]);
        unsigned char lb = (unsigned char)(l > 255 ? 255 : l);
        if (fwrite(&lb, 1, 1, f) != 1 || fwrite(v->words[i], 1, lb, f) != lb) return -1;
        if (put_u32(f, (uint32_t)v->counts[i]) < 0 || put_u32(f, (uint32_t)(v->counts[i] >> 32)))
            return -1;
    }
    return 0;
}

static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

vocab_t *vocab_read(const unsigned char *data, size_t len, size_t *pos, char *errstr,
                    size_t errstr_size) {
    size_t p = *pos;
    if (len - p < 4) {
        snprintf(errstr, errstr_size, "vocabulary truncated");
        return NULL;
    }
    uint32_t n = get_u32(data + p);
    p += 4;
    if (n > (len - p) / 9) {
        snprintf(errstr, errstr_size, "vocabulary of %u words does not fit the data", n);
        return NULL;
    }
    vocab_t *v = vocab_new();
    if (!v) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    char w[256];
    for (uint32_t i = 0; i < n; i++) {
        if (len - p < 1 || len - p - 1 < (size_t)data[p] + 8) {
            snprintf(errstr, errstr_size, "vocabulary truncated at word %u", i);
            goto fail;
        }
        size_t l = data[p++];
        memcpy(w, data + p, l);
        w[l] = 0;
        p += l;
        uint64_t c = get_u32(data + p) | (uint64_t)get_u32(data + p + 4) << 32;
        p += 8;
        if (strlen(w) != l || vocab_find(v, w) >= 0) {
            snprintf(errstr, errstr_size, "vocabulary word %u is empty, has a NUL or repeats", i);
            goto fail;
        }
        if (vocab_add(v, w, c) < 0) {
            snprintf(errstr, errstr_size, "out of memory");
            goto fail;
        }
    }
    *pos = p;
    return v;
fail:
    vocab_destroy(v);
    return NULL;
}

size_t vocab_ids(const vocab_t *v, const char *buf, size_t n_tokens, int32_t unk_id, int32_t *ids) {
    size_t n = 0;
    for (size_t i = 0; i < n_tokens; i++) {
        int64_t id = vocab_find(v, buf + i * TOK_STRIDE);
        if (id >= 0)
            ids[n++] = (int32_t)id;
        else if (unk_id >= 0)
            ids[n++] = unk_id;
    }
    return n;
}
