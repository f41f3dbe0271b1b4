/* fuzz_tokenize.c: libFuzzer target for the text readers of untrusted
 * input: the tokenizer (review text from Kafka) and the model parsers
 * (blobs from Redis).
 *
 *   CC=clang cmake -S . -B build-fuzz -DREEL_FUZZ=ON && make -C build-fuzz fuzz_tokenize
 *   build-fuzz/fuzz_tokenize -max_total_time=600
 *
 * Checks beyond "no crash": every token is non-empty valid UTF-8 of at most
 * TOK_MAX_BYTES, and no more than max tokens come back. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/text/sentiment.h"
#include "kernels/text/tokenize.h"
#include "kernels/text/word2vec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char buf[64 * TOK_STRIDE];
    size_t max = size ? 1 + data[0] % 64 : 1;
    unsigned flags = 0;
    size_t n = tok_split((const char *)data, size, buf, max, &flags);
    if (n > max) abort();
    for (size_t i = 0; i < n; i++) {
        const char *t = buf + i * TOK_STRIDE;
        size_t l = strlen(t);
        if (l == 0 || l > TOK_MAX_BYTES || !tok_utf8_valid(t, l)) abort();
    }
    if ((flags & TOK_LATIN1) ? tok_utf8_valid((const char *)data, size)
                             : !tok_utf8_valid((const char *)data, size))
        abort();
    char err[256];
    if (size >= 4 && memcmp(data, "RSNT", 4) == 0)
        sent_destroy(sent_load_mem(data, size, err, sizeof err));
    if (size >= 4 && memcmp(data, "RW2V", 4) == 0)
        w2v_destroy(w2v_load_mem(data, size, err, sizeof err));
    size_t pos = 0;
    vocab_destroy(vocab_read(data, size, &pos, err, sizeof err));
    return 0;
}
