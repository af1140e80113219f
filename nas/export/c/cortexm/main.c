/* m2nas target harness for the emulated Cortex-M boards (see nas/export/c/cortexm.py).

   The same contract as the host harness -- int8 inputs file in, int8 logits file out -- but with
   semihosting for the files (no C library on the target) and the board's CMSDK APB timer 0 around
   every inference. Under `qemu-system-arm -icount shift=0` one instruction is one nanosecond of
   virtual time and the timer counts 25 MHz of it, so a tick is 40 instructions: the ticks.bin it
   writes are an instruction count, which is what an emulator can honestly measure (not cycles).

   Files (in QEMU's working directory): inputs.bin (N * M2NAS_INPUT_TOTAL_SIZE int8) -> logits.bin
   (N * M2NAS_NUM_CLASSES int8), ticks.bin (N uint32, one per inference) and, in a profiling build
   (-DM2NAS_PROFILE, model.c built with -include profile.h), profile.bin: uint32 ticks summed over
   the samples for [input load, step 0 .. step S-1, logits read-out]; stack.bin: one uint32, the most
   stack bytes an inference used (the stack below main's frame is painted with a pattern first, and
   the lowest word the inferences changed is found afterwards). */
#include "model.h"
#include "semihost.h"

#define M2_TIMER_CTRL (*(volatile uint32_t *)0x40000000u)
#define M2_TIMER_VALUE (*(volatile uint32_t *)0x40000004u)
#define M2_TIMER_RELOAD (*(volatile uint32_t *)0x40000008u)

extern uint32_t __stack_bottom;
#define M2_PAINT 0x5AA5C33Cu

static int8_t m2_in[M2NAS_INPUT_TOTAL_SIZE];
static int8_t m2_out[M2NAS_NUM_CLASSES];

#ifdef M2NAS_PROFILE
static uint32_t m2_marks[M2NAS_NUM_STEPS + 1];
static uint32_t m2_prof[M2NAS_NUM_STEPS + 2];

void m2nas_op_hook(int step)
{
    m2_marks[step] = M2_TIMER_VALUE;
}
#endif

int main(void)
{
    const int8_t *ptrs[M2NAS_NUM_INPUTS];
    int32_t fin, flog, ftick, size, n, i, k;
    uint32_t t0, t1, ticks, sp, *w;
    fin = m2_open("inputs.bin", 1);
    flog = m2_open("logits.bin", 5);
    ftick = m2_open("ticks.bin", 5);
    if (fin < 0 || flog < 0 || ftick < 0)
        return 2;
    size = m2_flen(fin);
    if (size < 0)
        return 2;
    n = size / M2NAS_INPUT_TOTAL_SIZE;
    M2_TIMER_CTRL = 0;
    M2_TIMER_RELOAD = 0xFFFFFFFFu;
    M2_TIMER_VALUE = 0xFFFFFFFFu;
    M2_TIMER_CTRL = 1;
    __asm volatile("mov %0, sp" : "=r"(sp));
    for (w = &__stack_bottom; (uint32_t)(uintptr_t)w < sp - 64u; ++w)
        *w = M2_PAINT; /* 64 B below sp are left for the calls above */
    for (i = 0; i < n; ++i) {
        const int8_t *p = m2_in;
        if (m2_read(fin, m2_in, M2NAS_INPUT_TOTAL_SIZE) != 0)
            return 3;
        for (k = 0; k < M2NAS_NUM_INPUTS; ++k) {
            ptrs[k] = p;
            p += m2nas_input_sizes[k];
        }
        t0 = M2_TIMER_VALUE; /* counts down */
        m2nas_infer_all(ptrs, m2_out);
        t1 = M2_TIMER_VALUE;
        ticks = t0 - t1;
#ifdef M2NAS_PROFILE
        m2_prof[0] += t0 - m2_marks[0];
        for (k = 0; k < M2NAS_NUM_STEPS; ++k)
            m2_prof[k + 1] += m2_marks[k] - m2_marks[k + 1];
        m2_prof[M2NAS_NUM_STEPS + 1] += m2_marks[M2NAS_NUM_STEPS] - t1;
#endif
        if (m2_write(flog, m2_out, M2NAS_NUM_CLASSES) != 0 || m2_write(ftick, &ticks, 4) != 0)
            return 4;
    }
#ifdef M2NAS_PROFILE
    {
        int32_t fp = m2_open("profile.bin", 5);
        if (fp < 0 || m2_write(fp, m2_prof, sizeof m2_prof) != 0)
            return 4;
        m2_close(fp);
    }
#endif
    for (w = &__stack_bottom; *w == M2_PAINT; ++w) {
    }
    {
        const uint32_t used = sp - (uint32_t)(uintptr_t)w;
        int32_t fs = m2_open("stack.bin", 5);
        if (fs < 0 || m2_write(fs, &used, 4) != 0)
            return 4;
        m2_close(fs);
    }
    m2_close(fin);
    m2_close(flog);
    m2_close(ftick);
    return 0;
}
