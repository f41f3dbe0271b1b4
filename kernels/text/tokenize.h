/* tokenize.h: text -> lowercase word tokens, and a vocabulary of them.
 *
 * Input is UTF-8; a text that is not valid UTF-8 is read as Latin-1 (the
 * movie-review corpora are Latin-1), so every byte string tokenizes.
 * Tokens are lowercased words (hyphenated words and numbers like 3.5 stay
 * whole), clitics split the Penn Treebank way ("doesn't" -> "does" "n't",
 * "it's" -> "it" "'s"), each punctuation mark its own token (quotes are
 * dropped), and each CJK character or emoji its own token. NUL bytes,
 * controls and zero-width joiners are spaces. Output tokens are UTF-8. */
#ifndef REEL_KERNELS_TEXT_TOKENIZE_H
#define REEL_KERNELS_TEXT_TOKENIZE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Longest token in bytes; longer words are cut at a character boundary. */
#define TOK_MAX_BYTES 48
/* Stride of a token in the caller's buffer (token plus its NUL). */
#define TOK_STRIDE (TOK_MAX_BYTES + 1)

/* Flags tok_split() reports. */
#define TOK_LATIN1 1u    /* the text was not valid UTF-8, read as Latin-1 */
#define TOK_TRUNCATED 2u /* more than max_tokens tokens: the rest ignored */

/* Splits text[0..len) into at most max_tokens tokens. Token i is written
 * NUL-terminated at buf + i * TOK_STRIDE; buf (the caller's) must hold
 * max_tokens * TOK_STRIDE bytes. Returns the token count and sets *flags
 * (may be NULL). Never allocates; any byte string is accepted. */
size_t tok_split(const char *text, size_t len, char *buf, size_t max_tokens, unsigned *flags);

/* 1 when s[0..len) is valid UTF-8 (no overlongs, surrogates or code
 * points above U+10FFFF). */
int tok_utf8_valid(const char *s, size_t len);

/* A vocabulary: words with counts and dense ids. */
typedef struct vocab {
    char **words;     /* words[id], owned */
    uint64_t *counts; /* counts[id] */
    uint32_t n;       /* number of words */
    uint32_t cap;
    uint32_t *table; /* open addressing: id + 1, 0 = empty */
    uint32_t table_cap;
} vocab_t;

#define VOCAB_UNK "<unk>"

/* A new empty vocabulary, or NULL when out of memory. The caller frees it
 * with vocab_destroy(). */
vocab_t *vocab_new(void);
void vocab_destroy(vocab_t *v);

/* Adds count to word (NUL-terminated), inserting it when new. Returns its
 * id, or -1 when out of memory. */
int64_t vocab_add(vocab_t *v, const char *word, uint64_t count);

/* Id of word, or -1 when absent. */
int64_t vocab_find(const vocab_t *v, const char *word);

/* A new vocabulary of the words of v counted at least min_count times,
 * most frequent first (ties by word), at most max_words of them (0: no
 * limit), with VOCAB_UNK as id 0 when with_unk. The caller owns it. NULL
 * when out of memory. */
vocab_t *vocab_prune(const vocab_t *v, uint64_t min_count, uint32_t max_words, int with_unk);

/* Writes v as: u32 n, then per word u8 length, bytes, u64 count (little
 * endian). Returns 0 or -1 on a write error. */
int vocab_write(const vocab_t *v, FILE *f);

/* Reads what vocab_write() wrote from data[*pos..len), advancing *pos.
 * Returns a vocabulary the caller owns, or NULL with errstr (truncated or
 * malformed data, out of memory). */
vocab_t *vocab_read(const unsigned char *data, size_t len, size_t *pos, char *errstr,
                    size_t errstr_size);

/* Ids of tokens (as tok_split() wrote them) into ids; a token not in v gets
 * unk_id, or is skipped when unk_id < 0. Returns the number of ids. */
size_t vocab_ids(const vocab_t *v, const char *buf, size_t n_tokens, int32_t unk_id, int32_t *ids);

#endif
