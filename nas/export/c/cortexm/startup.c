/* m2nas start-up code for QEMU's MPS2 boards (mps2-an386: Cortex-M4F, mps2-an500: Cortex-M7).

   Written for this project (see nas/export/c/cortexm.py). The vector table holds only what a bare
   program needs: the initial stack pointer, reset, and fault handlers that end the emulation with a
   distinct exit status instead of spinning, so that a crash is a failed run, not a timeout. Reset
   copies .data, zeroes .bss, enables the FPU (the code is built for the hard-float ABI) and calls
   main(); main's return value becomes QEMU's exit status through semihosting. */
#include <stdint.h>
#include "semihost.h"

extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end, __stack_top;
extern int main(void);

void m2_reset(void);
void m2_fault(void);

__attribute__((noreturn)) void m2_exit(int status)
{
    /* SYS_EXIT_EXTENDED: QEMU exits with `status` (plain SYS_EXIT only knows success / failure). */
    uint32_t block[2] = {0x20026u /* ADP_Stopped_ApplicationExit */, (uint32_t)status};
    m2_semihost(0x20, block);
    for (;;) {
    }
}

void m2_reset(void)
{
    uint32_t *src = &__data_load, *dst = &__data_start;
    while (dst < &__data_end)
        *dst++ = *src++;
    for (dst = &__bss_start; dst < &__bss_end;)
        *dst++ = 0;
#if defined(__ARM_FP)
    /* CPACR: full access to CP10 / CP11 before any floating-point instruction runs. */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm volatile("dsb\n\tisb" ::: "memory");
#endif
    m2_exit(main());
}

void m2_fault(void)
{
    m2_exit(99);
}

typedef void (*m2_vector)(void);

/* Initial SP, reset, NMI, HardFault, MemManage, BusFault, UsageFault. */
__attribute__((section(".vectors"), used)) const m2_vector m2_vectors[7] = {
    (m2_vector)(uintptr_t)&__stack_top, m2_reset, m2_fault, m2_fault, m2_fault, m2_fault, m2_fault,
};
