/* Arm semihosting (the host side is QEMU's -semihosting): one call is `bkpt 0xab` with the
   operation in r0 and a pointer to its argument block in r1; the result comes back in r0. */
#ifndef M2_SEMIHOST_H
#define M2_SEMIHOST_H

#include <stdint.h>

static inline int32_t m2_semihost(uint32_t op, void *args)
{
    register uint32_t r0 __asm("r0") = op;
    register void *r1 __asm("r1") = args;
    __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return (int32_t)r0;
}

enum { M2_SYS_OPEN = 0x01, M2_SYS_CLOSE = 0x02, M2_SYS_WRITE = 0x05, M2_SYS_READ = 0x06, M2_SYS_FLEN = 0x0C };

/* mode: 1 = "rb", 5 = "wb" (the ISO C fopen modes by their semihosting numbers). */
static inline int32_t m2_open(const char *name, uint32_t mode)
{
    uint32_t len = 0, a[3];
    while (name[len])
        ++len;
    a[0] = (uint32_t)(uintptr_t)name;
    a[1] = mode;
    a[2] = len;
    return m2_semihost(M2_SYS_OPEN, a);
}

/* Both return the number of bytes NOT transferred (0 = all of them), as semihosting does. */
static inline int32_t m2_read(int32_t fd, void *buf, uint32_t n)
{
    uint32_t a[3] = {(uint32_t)fd, (uint32_t)(uintptr_t)buf, n};
    return m2_semihost(M2_SYS_READ, a);
}

static inline int32_t m2_write(int32_t fd, const void *buf, uint32_t n)
{
    uint32_t a[3] = {(uint32_t)fd, (uint32_t)(uintptr_t)buf, n};
    return m2_semihost(M2_SYS_WRITE, a);
}

static inline int32_t m2_flen(int32_t fd)
{
    uint32_t a[1] = {(uint32_t)fd};
    return m2_semihost(M2_SYS_FLEN, a);
}

static inline void m2_close(int32_t fd)
{
    uint32_t a[1] = {(uint32_t)fd};
    (void)m2_semihost(M2_SYS_CLOSE, a);
}

#endif /* M2_SEMIHOST_H */
