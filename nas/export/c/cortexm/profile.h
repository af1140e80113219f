/* Force-included (-include) into model.c for a profiling build: every step boundary calls the
   target harness (main.c), which reads the timer there. */
void m2nas_op_hook(int step);
#define M2NAS_OP_HOOK(step) m2nas_op_hook(step)
