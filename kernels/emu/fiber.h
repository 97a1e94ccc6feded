// Fibers for the emulator: stacks, and switching between them. Included once, by
// cuda_emu.cpp (it defines the switch routine).
//
// Fibers switch with a few lines of x86-64 assembly (callee-saved registers and the
// stack pointer; no system call), or with ucontext's swapcontext elsewhere (portable,
// but a signal-mask system call per switch, about ten times slower in all). Define
// GOOGLENET_EMU_UCONTEXT to force ucontext. AddressSanitizer must be told of every
// switch (__sanitizer_start/finish_switch_fiber), or it would take a fiber's stack for
// a buffer overflow of the OS thread's: cuda_emu.cpp does that, since it knows where
// each switch goes.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

#if defined(__x86_64__) && !defined(GOOGLENET_EMU_UCONTEXT)
#define EMU_ASM_SWITCH 1
#else
#define EMU_ASM_SWITCH 0
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#ifndef EMU_ASAN
#define EMU_ASAN 0
#endif
#if EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if EMU_ASM_SWITCH
// Saves the callee-saved registers (rbp, rbx, r12-r15) on the current stack, stores
// the stack pointer in *save_sp, loads load_sp and restores the registers saved there.
// Everything else is caller-saved under the System V ABI, so the compiler already keeps
// it out of registers across this call. The SSE and x87 control words are callee-saved
// too, but no emulated thread changes rounding modes, so they are not switched (loading
// MXCSR is slow).
extern "C" void emu_switch_stack(void** save_sp, void* load_sp);
asm(R"(
    .text
    .globl emu_switch_stack
    .hidden emu_switch_stack
    .type emu_switch_stack, @function
    .p2align 4
emu_switch_stack:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch_stack, .-emu_switch_stack
)");
#endif

namespace emu {
namespace fiber {

// Virtual size of a fiber's stack; only the pages a thread touches get memory.
// Generous because AddressSanitizer's redzones make frames several times bigger.
constexpr size_t kStackBytes = 256 * 1024;

struct Stack {
    char* base = nullptr;  // lowest usable address, just above a guard page
    size_t size = 0;       // usable bytes above base
};

inline size_t page_size() {
    static const size_t size = (size_t)sysconf(_SC_PAGESIZE);
    return size;
}

// AddressSanitizer's code assumes the stack below the running frame is unpoisoned:
// a function poisons only its redzones on entry, and clears them on return. A fiber
// left suspended mid-kernel never returns, so its stack is cleared before reuse; and
// this libasan does not clear memory's shadow when it is unmapped, so a new stack that
// the kernel places where an old one was (of an exited OS thread) is cleared too.
inline void unpoison(const Stack& stack) {
#if EMU_ASAN
    ASAN_UNPOISON_MEMORY_REGION(stack.base, kStackBytes);
#else
    (void)stack;
#endif
}

// A stack with an inaccessible page below it, so an overflow faults at once
// instead of overwriting the next fiber's stack. `index` staggers where the stack
// starts within its page: stacks that all started at the same page offset would
// compete for the same few L1 cache sets, and switching through 256 fibers would then
// miss the cache at every switch.
inline bool allocate_stack(Stack& stack, size_t index) {
    size_t guard = page_size();
    void* memory = mmap(nullptr, guard + kStackBytes, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (memory == MAP_FAILED) return false;
    mprotect(memory, guard, PROT_NONE);
    stack.base = static_cast<char*>(memory) + guard;
    stack.size = kStackBytes - (index % 64) * 64;
    unpoison(stack);
    return true;
}

inline void free_stack(Stack& stack) {
    if (!stack.base) return;
    unpoison(stack);
    munmap(stack.base - page_size(), page_size() + kStackBytes);
}

#if EMU_ASM_SWITCH
struct Context {
    void* sp = nullptr;
};

// Lays out `stack` as emu_switch_stack leaves a stack it switched away from, so that
// switching to it "returns" into `entry` with the alignment of a fresh call.
inline void make_context(Context& context, const Stack& stack, void (*entry)()) {
    uintptr_t top = reinterpret_cast<uintptr_t>(stack.base + stack.size) & ~uintptr_t(15);
    void** sp = reinterpret_cast<void**>(top);
    *--sp = nullptr;                         // entry's "return address": it never returns
    *--sp = reinterpret_cast<void*>(entry);  // where the final `ret` goes
    for (int i = 0; i < 6; ++i) *--sp = nullptr;  // rbp, rbx, r12-r15
    context.sp = sp;
}

inline void swap_context(Context& from, Context& to) { emu_switch_stack(&from.sp, to.sp); }
#else
struct Context {
    ucontext_t uc;
};

inline void make_context(Context& context, const Stack& stack, void (*entry)()) {
    getcontext(&context.uc);
    context.uc.uc_stack.ss_sp = stack.base;
    context.uc.uc_stack.ss_size = stack.size;
    context.uc.uc_link = nullptr;  // entry never returns
    makecontext(&context.uc, entry, 0);
}

inline void swap_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#endif

}  // namespace fiber
}  // namespace emu
