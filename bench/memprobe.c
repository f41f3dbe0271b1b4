/* memprobe: how fast this machine's memory answers random reads right now.
 *
 * The recommend kernel spends most of its time on reads scattered over
 * tens of MB, so its figures on a shared machine move with the memory
 * system's load from other tenants (2x within an hour has been seen). The
 * bench prints these two numbers beside its own so that runs taken at
 * different times can be told apart:
 *
 *   dep_ns    one read whose address depends on the previous one (a
 *             pointer chase over a random cycle of cache lines): latency;
 *   indep_ns  reads at random addresses known in advance: how many the
 *             core keeps in flight at once.
 *
 * Usage: memprobe [MB] (64). Prints one JSON line. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

int main(int argc, char **argv) {
    const size_t mb = argc > 1 ? (size_t)atol(argv[1]) : 64;
    if (mb < 1 || mb > 65536) {
        fprintf(stderr, "memprobe: MB must be 1..65536\n");
        return 2;
    }
    const size_t lines = mb * 1024 * 1024 / 64, reads = 2000000;
    uint64_t *mem = aligned_alloc(2u << 20, lines * 64);
    uint32_t *order = malloc(lines * sizeof *order);
    uint32_t *at = malloc(reads * sizeof *at);
    if (!mem || !order || !at) {
        fprintf(stderr, "memprobe: out of memory\n");
        return 1;
    }
    madvise(mem, lines * 64, MADV_HUGEPAGE); /* as reel's malloc: fewer TLB misses */
    uint64_t s = 0x9e3779b97f4a7c15u;
    for (size_t x = 0; x < lines; x++) order[x] = (uint32_t)x;
    for (size_t x = lines - 1; x > 0; x--) { /* a random cycle through every line */
        size_t y = xorshift(&s) % (x + 1);
        uint32_t t = order[x];
        order[x] = order[y];
        order[y] = t;
    }
    for (size_t x = 0; x < lines; x++) mem[(size_t)order[x] * 8] = order[(x + 1) % lines];
    for (size_t x = 0; x < reads; x++) at[x] = (uint32_t)(xorshift(&s) % lines);

    double t0 = now_s();
    uint64_t p = order[0];
    for (size_t x = 0; x < reads; x++) p = mem[p * 8];
    const double dep = (now_s() - t0) * 1e9 / (double)reads;

    t0 = now_s();
    uint64_t sum = 0;
    for (size_t x = 0; x < reads; x++) sum += mem[(size_t)at[x] * 8];
    const double indep = (now_s() - t0) * 1e9 / (double)reads;

    /* p and sum printed so that neither loop is optimised away. */
    printf("{\"mb\":%zu,\"dep_ns\":%.1f,\"indep_ns\":%.1f,\"check\":%llu}\n", mb, dep, indep,
           (unsigned long long)((p + sum) & 1));
    free(at);
    free(order);
    free(mem);
    return 0;
}
