/* m2nas arena trace (a debug build of the host harness; nas/export/c/verify.py): included before
   model.c with
       -include trace.h -DM2NAS_BEGIN_HOOK()=m2nas_trace_begin(A) -DM2NAS_OP_HOOK(s)=m2nas_trace_step(A)
   so that the arena is filled with a canary pattern before the inputs are loaded and written out
   whole before every step and after the last one. */
#ifndef M2NAS_TRACE_H
#define M2NAS_TRACE_H
#include <stdint.h>
void m2nas_trace_begin(const uint8_t *arena);
void m2nas_trace_step(const uint8_t *arena);
#endif
