// Shared by every kernel file. Under nvcc this is plain CUDA; built for the host
// emulator (GOOGLENET_EMU defined), it pulls in the emulated execution model.
#pragma once

#ifdef GOOGLENET_EMU
#include "emu/cuda_emu.h"
#else
// Registers a kernel with the emulator by name; nothing to do on a real GPU.
#define EMU_REGISTER(kernel)
#endif

// Full unrolling of a loop over a thread's register arrays (accumulators, fragments):
// left rolled, nvcc may index them at run time and so put them in local memory (a stack
// frame, which the build's resource check refuses). The emulator's compiler needs none.
#ifdef GOOGLENET_EMU
#define UNROLL
#else
#define UNROLL _Pragma("unroll")
#endif
