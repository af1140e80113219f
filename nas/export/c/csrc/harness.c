/* m2nas host harness: int8 inputs file -> int8 logits file (see nas/export/c/harness.py). */
#include "model.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv)
{
    FILE *f;
    long size, n, i, r, reps = 1;
    int8_t *in, *out;
    const int8_t *ptrs[M2NAS_NUM_INPUTS];
    clock_t t0, t1;
    if (argc < 3) {
        fprintf(stderr, "usage: %s inputs.bin logits.bin [repeats]\n", argv[0]);
        return 2;
    }
    if (argc > 3)
        reps = atol(argv[3]);
    f = fopen(argv[1], "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 2;
    }
    n = size / M2NAS_INPUT_TOTAL_SIZE;
    in = (int8_t *)malloc((size_t)size + 1);
    out = (int8_t *)malloc((size_t)n * M2NAS_NUM_CLASSES + 1);
    if (!in || !out || (long)fread(in, 1, (size_t)size, f) != size) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 2;
    }
    fclose(f);
    t0 = clock();
    for (r = 0; r < reps; ++r)
        for (i = 0; i < n; ++i) {
            int k;
            const int8_t *p = in + i * M2NAS_INPUT_TOTAL_SIZE;
            for (k = 0; k < M2NAS_NUM_INPUTS; ++k) {
                ptrs[k] = p;
                p += m2nas_input_sizes[k];
            }
            m2nas_infer_all(ptrs, out + i * M2NAS_NUM_CLASSES);
        }
    t1 = clock();
    if (argc > 3)
        printf("ns_per_inference %.1f\n", 1e9 * (double)(t1 - t0) / CLOCKS_PER_SEC / (double)(n * reps));
    f = fopen(argv[2], "wb");
    if (!f || (long)fwrite(out, 1, (size_t)n * M2NAS_NUM_CLASSES, f) != n * M2NAS_NUM_CLASSES) {
        fprintf(stderr, "cannot write %s\n", argv[2]);
        return 2;
    }
    fclose(f);
    free(in);
    free(out);
    return 0;
}
