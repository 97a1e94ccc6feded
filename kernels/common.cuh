// Shared by every kernel file. Under nvcc this is plain CUDA; built for the host
// emulator (GOOGLENET_EMU defined), it pulls in the emulated execution model.
#pragma once

#ifdef GOOGLENET_EMU
#include "emu/cuda_emu.h"
#else
// Registers a kernel with the emulator by name; nothing to do on a real GPU.
#define EMU_REGISTER(kernel)
#endif
