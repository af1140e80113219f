/* The arena trace of nas/export/c/verify.py: before each inference the whole arena is filled with a
   pseudo-random canary (a new one every sample, so no value of an earlier sample can hide a stray
   write), then written to $M2NAS_TRACE_FILE once before the loads, once before every step and once
   after the last step. Python then checks that each step changed only its outputs and scratch and
   that every output equals the integer reference. */
#include "model.h"
#include "trace.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static FILE *trace_file;
static uint32_t canary = 2463534242u;

static void trace_write(const uint8_t *arena)
{
    if (!trace_file) {
        const char *path = getenv("M2NAS_TRACE_FILE");
        trace_file = fopen(path ? path : "trace.bin", "wb");
        if (!trace_file) {
            fprintf(stderr, "cannot write the arena trace\n");
            exit(2);
        }
    }
    if (fwrite(arena, 1, M2NAS_ARENA_BYTES, trace_file) != M2NAS_ARENA_BYTES) {
        fprintf(stderr, "cannot write the arena trace\n");
        exit(2);
    }
    fflush(trace_file);
}

void m2nas_trace_begin(const uint8_t *arena)
{
    uint8_t *a = (uint8_t *)(uintptr_t)arena;
    int32_t i;
    for (i = 0; i < M2NAS_ARENA_BYTES; ++i) {
        canary ^= canary << 13;
        canary ^= canary >> 17;
        canary ^= canary << 5;
        a[i] = (uint8_t)(canary >> 24);
    }
    trace_write(arena);
}

void m2nas_trace_step(const uint8_t *arena)
{
    trace_write(arena);
}
