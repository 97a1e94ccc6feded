// The emulator's runtime: the block scheduler with its barriers, the kernel registry
// and `emu_launch`. The model it implements is described at the top of
// cuda_emu.h; this file is how.
//
// One OS thread runs one block at a time (`Worker`, a thread-local). A block starts in
// *plain mode*: a single fiber runs its threads one after another as plain calls. The
// first thread to reach a barrier (or warp operation) turns the block into *fiber
// mode*: it keeps that fiber, every thread not yet started gets a fiber of its own,
// and the threads already finished count as exited. In fiber mode the scheduler runs
// every ready fiber until it waits or finishes, then releases whatever barriers are
// complete, and repeats; when nothing is ready and nothing can be released, the block
// is stuck: barrier divergence, reported with who waits where.
//
// Fibers and their stacks are in fiber.h.
//
// The checks of GOOGLENET_EMU_CHECK that live here (src/engine/device/emu/ does the rest):
// a launch may run its blocks in a shuffled order and on every helper thread
// (`kShuffle`, `kShare`), or strictly in order on the calling thread (`kSerial`), and
// may run the race-check build of its kernel (`kRaceCheck`), whose shared-memory
// accesses come to `Worker::shared_access` (see "The race check" in cuda_emu.h).
//
// The tensor-core instructions (see "Tensor-core instructions" in cuda_emu.h) are
// here too: mma and ldmatrix as warp operations whose lanes bring a pointer to their
// fragments (`MmaLane`, `LdmatrixLane`) and whose release computes every lane's
// result (`run_mma`, `run_ldmatrix`); cp.async as a per-thread queue of copies
// (`AsyncCopies`) that cp_async_wait lands.

#include "cuda_emu.h"
#include "fiber.h"

#include <link.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdarg>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

thread_local uint3 threadIdx = {0, 0, 0};
thread_local uint3 blockIdx = {0, 0, 0};
thread_local dim3 blockDim;
thread_local dim3 gridDim;

namespace emu {
namespace {

// The stacks and switching of fiber.h.
using fiber::allocate_stack;
using fiber::Context;
using fiber::free_stack;
using fiber::kStackBytes;
using fiber::make_context;
using fiber::Stack;
using fiber::swap_context;
using fiber::unpoison;

// ---------------------------------------------------------------------------------
// The kernel registry, filled by EMU_REGISTER's static objects before main.

struct Kernel {
    void (*run)(void** args) = nullptr;
    void (*run_race_checked)(void** args) = nullptr;  // the copy with checked shared arrays
    std::string parameters;
};

// emu_launch's `mode` bits (src/engine/device/emu/driver.rs spells them out as well).
constexpr unsigned kRaceCheck = 1;  // run the race-check build of the kernel
constexpr unsigned kShuffle = 2;    // hand out the blocks in a shuffled order (by `seed`)
constexpr unsigned kShare = 4;      // share the blocks with the helpers, however few
constexpr unsigned kSerial = 8;     // run every block on the calling thread

std::map<std::string, Kernel, std::less<>>& registry() {
    static std::map<std::string, Kernel, std::less<>> kernels;
    return kernels;
}

// ---------------------------------------------------------------------------------
// One launch, shared by the OS threads that run its blocks.

struct Launch {
    const char* name = nullptr;
    const Kernel* kernel = nullptr;
    void** args = nullptr;
    void (*run)(void** args) = nullptr;  // the kernel's build that this launch runs
    bool race_check = false;
    dim3 grid, block;
    unsigned threads = 0;  // per block
    uint64_t blocks = 0;
    std::vector<uint64_t> order;  // the blocks' linear indices in the order handed out;
                                  // empty: in order

    std::atomic<uint64_t> next_block{0};  // the next position in `order`
    std::atomic<bool> failed{false};
    std::mutex error_mutex;
    uint64_t error_block = UINT64_MAX;
    std::string error;

    // Keeps the error of the first failing block in handing-out order. Workers finish
    // the block in hand before looking at `failed`, and blocks are handed out in
    // order, so every block before a failing one has run: the report does not depend
    // on thread timing.
    void report(uint64_t block_index, std::string message) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (block_index < error_block) {
            error_block = block_index;
            error = std::move(message);
        }
        failed.store(true, std::memory_order_relaxed);
    }
};

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
    char buffer[512];
    va_list list;
    va_start(list, fmt);
    vsnprintf(buffer, sizeof buffer, fmt, list);
    va_end(list);
    return buffer;
}

const char* base_name(const char* path) {
    const char* slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

std::string describe_index(uint3 i) { return format("(%u,%u,%u)", i.x, i.y, i.z); }

// ---------------------------------------------------------------------------------
// The block scheduler.

enum class Status : uint8_t { Ready, Waiting, Done };

// One emulated thread of the running block, and the barrier it waits at.
struct Slot {
    Status status = Status::Ready;
    bool at_warp = false;  // waits at a warp operation, else at a block barrier
    BlockOp block_op = BlockOp::Sync;
    WarpOp warp_op = WarpOp::Sync;
    unsigned mask = 0;    // warp operation: the lanes named
    int source = -1;      // shuffle: the lane to read; -1 keeps the thread's own value
    uint64_t value = 0;   // what it brings: a shuffled value or a predicate
    uint64_t result = 0;  // what the barrier hands back
    const char* file = "";
    int line = 0;
};

struct Fiber {
    Context context;
    Stack stack;
    void* asan_fake_stack = nullptr;
    bool abandoned = false;  // left suspended mid-kernel when its block failed
};

enum class Progress { Finished, Released, Stuck };

// What a lane brings to a collective instruction (through its slot's `value`): its
// operands and where its results go, on its own stack, which stays put while it waits.
struct MmaLane {
    const uint32_t* a;
    const uint32_t* b;
    const float* c;
    float* d;
};
struct LdmatrixLane {
    const void* row;
    uint32_t* r;
};

bool is_collective(WarpOp op) { return op >= WarpOp::MmaTf32; }
bool is_ldmatrix(WarpOp op) { return op >= WarpOp::LdmatrixX1; }
// ldmatrix: how many 8x8 matrices, and whether transposed.
unsigned ldmatrix_count(WarpOp op) {
    switch (op) {
        case WarpOp::LdmatrixX1: case WarpOp::LdmatrixX1Trans: return 1;
        case WarpOp::LdmatrixX2: case WarpOp::LdmatrixX2Trans: return 2;
        default: return 4;
    }
}
bool ldmatrix_trans(WarpOp op) { return op >= WarpOp::LdmatrixX1Trans; }

// A checked shared array of the race-check build, as its cells were handed out.
struct SharedArray {
    const unsigned char* data;
    size_t bytes;
    size_t element_bytes;
    SharedCell* cells;
    const SharedSite* site;
};

// One cp.async on its way: the bytes it will write (read at the call), and, under the
// race check, the destination's elements.
struct AsyncCopy {
    unsigned char* destination;
    unsigned char data[16];
    int bytes;
    const char* file;
    int line;
    const SharedArray* array;  // nullptr: not race-checked
    size_t first, count;       // the elements of `array` it writes
};

// One thread's copies not landed yet, oldest first: `copies[0 .. group_ends.back())`
// are committed, in groups that end at each of `group_ends`; the rest are not.
struct AsyncCopies {
    std::vector<AsyncCopy> copies;
    std::vector<size_t> group_ends;
};

[[noreturn]] void fiber_main() noexcept;

// The operands of mma, as the hardware reads them.
float tf32_operand(uint32_t bits) { return __uint_as_float(bits & 0xffffe000u); }
float bf16_low(uint32_t bits) { return __uint_as_float(bits << 16); }
float bf16_high(uint32_t bits) { return __uint_as_float(bits & 0xffff0000u); }

// A complete mma of a warp: gathers A, B and C from the 32 lanes' fragments (the
// layouts of kernels/mma.cuh: g = lane / 4, t = lane % 4), computes D with one fmaf
// per k, k ascending, and scatters it. Every C is read before any D is written, so a
// lane's d may be its c.
void run_mma(const Slot* lanes, bool bf16) {
    const int depth = bf16 ? 16 : 8;
    float a[16][16], b[16][8], c[16][8];
    for (int l = 0; l < 32; ++l) {
        const MmaLane& in = *reinterpret_cast<const MmaLane*>(lanes[l].value);
        const int g = l >> 2, t = l % 4;
        if (bf16) {
            const int rows[4] = {g, g + 8, g, g + 8}, cols[4] = {2 * t, 2 * t, 2 * t + 8, 2 * t + 8};
            for (int r = 0; r < 4; ++r) {
                a[rows[r]][cols[r]] = bf16_low(in.a[r]);
                a[rows[r]][cols[r] + 1] = bf16_high(in.a[r]);
            }
            for (int r = 0; r < 2; ++r) {
                b[2 * t + 8 * r][g] = bf16_low(in.b[r]);
                b[2 * t + 8 * r + 1][g] = bf16_high(in.b[r]);
            }
        } else {
            a[g][t] = tf32_operand(in.a[0]);
            a[g + 8][t] = tf32_operand(in.a[1]);
            a[g][t + 4] = tf32_operand(in.a[2]);
            a[g + 8][t + 4] = tf32_operand(in.a[3]);
            b[t][g] = tf32_operand(in.b[0]);
            b[t + 4][g] = tf32_operand(in.b[1]);
        }
        c[g][2 * t] = in.c[0];
        c[g][2 * t + 1] = in.c[1];
        c[g + 8][2 * t] = in.c[2];
        c[g + 8][2 * t + 1] = in.c[3];
    }
    float d[16][8];
    for (int i = 0; i < 16; ++i) {
        for (int j = 0; j < 8; ++j) {
            float sum = c[i][j];
            for (int k = 0; k < depth; ++k) sum = fmaf(a[i][k], b[k][j], sum);
            d[i][j] = sum;
        }
    }
    for (int l = 0; l < 32; ++l) {
        const MmaLane& out = *reinterpret_cast<const MmaLane*>(lanes[l].value);
        const int g = l >> 2, t = l % 4;
        out.d[0] = d[g][2 * t];
        out.d[1] = d[g][2 * t + 1];
        out.d[2] = d[g + 8][2 * t];
        out.d[3] = d[g + 8][2 * t + 1];
    }
}

// A complete ldmatrix of a warp: matrix m's row r is at lane 8m + r's address; lane l
// gets row l/4, columns 2(l%4) and 2(l%4)+1 of each matrix (transposed: those rows of
// column l/4), the first in the low half.
void run_ldmatrix(const Slot* lanes, WarpOp op) {
    const unsigned count = ldmatrix_count(op);
    const bool trans = ldmatrix_trans(op);
    uint16_t m[4][8][8];
    for (unsigned i = 0; i < count; ++i) {
        for (unsigned r = 0; r < 8; ++r) {
            memcpy(m[i][r], reinterpret_cast<const LdmatrixLane*>(lanes[8 * i + r].value)->row, 16);
        }
    }
    for (unsigned l = 0; l < 32; ++l) {
        uint32_t* out = reinterpret_cast<const LdmatrixLane*>(lanes[l].value)->r;
        const unsigned row = l / 4, col = 2 * (l % 4);
        for (unsigned i = 0; i < count; ++i) {
            uint32_t lo = trans ? m[i][col][row] : m[i][row][col];
            uint32_t hi = trans ? m[i][col + 1][row] : m[i][row][col + 1];
            out[i] = lo | hi << 16;
        }
    }
}

// The calling OS thread's thread-local storage, per module: where `__shared__` lives.
using Ranges = std::vector<std::pair<uintptr_t, uintptr_t>>;
int collect_tls(dl_phdr_info* info, size_t, void* ranges) {
    if (!info->dlpi_tls_data) return 0;
    for (unsigned i = 0; i < info->dlpi_phnum; ++i) {
        if (info->dlpi_phdr[i].p_type != PT_TLS) continue;
        uintptr_t begin = reinterpret_cast<uintptr_t>(info->dlpi_tls_data);
        static_cast<Ranges*>(ranges)->push_back({begin, begin + info->dlpi_phdr[i].p_memsz});
    }
    return 0;
}

class Worker {
public:
    ~Worker() {
        for (auto& fiber : fibers_) free_stack(fiber->stack);
    }

    // Runs blocks of `launch` until none is left or one failed.
    void run_blocks(Launch& launch) {
        launch_ = &launch;
        blockDim = launch.block;
        gridDim = launch.grid;
        threads_ = launch.threads;
        if (slots_.size() < threads_) slots_.resize(threads_);
        thread_index_.resize(threads_);
        for (unsigned t = 0; t < threads_; ++t) {
            thread_index_[t] = {t % blockDim.x, t / blockDim.x % blockDim.y,
                                t / blockDim.x / blockDim.y};
        }
        if (launch.race_check) clocks_.assign((size_t)threads_ * 32, 0);
        if (async_.size() < threads_) async_.resize(threads_);
        while (!launch.failed.load(std::memory_order_relaxed)) {
            uint64_t position = launch.next_block.fetch_add(1, std::memory_order_relaxed);
            if (position >= launch.blocks) break;
            uint64_t block = launch.order.empty() ? position : launch.order[position];
            if (!run_block(block)) launch.report(position, std::move(error_));
        }
        launch_ = nullptr;
    }

    // ---- Called from emulated threads (on their fibers). ----

    int block_barrier(BlockOp op, int predicate, const char* file, int line) {
        Slot& slot = slots_[current_];
        slot.at_warp = false;
        slot.block_op = op;
        slot.value = predicate != 0;
        slot.file = file;
        slot.line = line;
        wait();
        return (int)slot.result;
    }

    uint64_t warp_barrier(WarpOp op, unsigned mask, uint64_t value, long long arg, int width,
                          const char* file, int line) {
        unsigned lane = current_ % 32;
        if (!(mask >> lane & 1)) {
            fail(format("thread %s calls %s with mask 0x%08x, which leaves out its own lane %u "
                        "(%s:%d)",
                        describe_index(threadIdx).c_str(), warp_op_name(op), mask, lane,
                        base_name(file), line));
        }
        if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
            fail(format("thread %s calls %s with width %d, which is not a power of two up to "
                        "32 (%s:%d)",
                        describe_index(threadIdx).c_str(), warp_op_name(op), width,
                        base_name(file), line));
        }
        // The source lane follows PTX's shfl: lanes form segments of `width`; a lane
        // whose source falls past its segment (or, for up, before it) keeps its value.
        long long first = lane & ~(unsigned)(width - 1);
        long long last = first + width - 1;
        long long source = -1;
        switch (op) {
            case WarpOp::ShflIdx: source = first + (arg & (width - 1)); break;
            case WarpOp::ShflUp: source = lane - arg >= first ? lane - arg : -1; break;
            case WarpOp::ShflDown: source = lane + arg <= last ? lane + arg : -1; break;
            case WarpOp::ShflXor: source = (lane ^ arg) <= last ? (lane ^ arg) : -1; break;
            default: break;
        }
        Slot& slot = slots_[current_];
        slot.at_warp = true;
        slot.warp_op = op;
        slot.mask = mask;
        slot.source = (int)source;
        slot.value = value;
        slot.file = file;
        slot.line = line;
        wait();
        return slot.result;
    }

    unsigned warp_lanes() const {
        unsigned first = current_ & ~31u;
        unsigned count = std::min(32u, threads_ - first);
        return count == 32 ? ~0u : (1u << count) - 1;
    }

    // ---- Tensor-core instructions (see "Tensor-core instructions" in cuda_emu.h). ----

    void mma(WarpOp op, float* d, const uint32_t* a, const uint32_t* b, const float* c,
             const char* file, int line) {
        MmaLane lane = {a, b, c, d};
        collective(op, &lane, file, line);
    }

    void ldmatrix(WarpOp op, uint32_t* r, const void* row, const char* file, int line) {
        if (current_ % 32 < 8 * ldmatrix_count(op)) {
            if (reinterpret_cast<uintptr_t>(row) % 16 != 0) {
                fail(format("thread %s passes %s the row address %p, which is not 16-byte "
                            "aligned (%s:%d)",
                            describe_index(threadIdx).c_str(), warp_op_name(op), row,
                            base_name(file), line));
            }
            if (!in_shared_memory(row, 16)) {
                fail(format("thread %s passes %s the row address %p, which is not in shared "
                            "memory (%s:%d)",
                            describe_index(threadIdx).c_str(), warp_op_name(op), row,
                            base_name(file), line));
            }
            if (launch_->race_check) {
                if (const SharedArray* array = find_shared(row, 16, warp_op_name(op), file, line)) {
                    auto [first, count] = elements(*array, row, 16);
                    for (size_t e = first; e < first + count; ++e) {
                        shared_access(array->cells[e], *array->site, e, false);
                    }
                }
            }
        }
        LdmatrixLane lane = {row, r};
        collective(op, &lane, file, line);
    }

    void cp_async(void* smem, const void* gmem, int bytes, bool valid, const char* file,
                  int line) {
        if (reinterpret_cast<uintptr_t>(smem) % bytes != 0 ||
            reinterpret_cast<uintptr_t>(gmem) % bytes != 0) {
            fail(format("thread %s calls cp_async<%d> from %p to %p: both addresses must be "
                        "%d-byte aligned (%s:%d)",
                        describe_index(threadIdx).c_str(), bytes, gmem, smem, bytes,
                        base_name(file), line));
        }
        if (!in_shared_memory(smem, bytes)) {
            fail(format("thread %s calls cp_async<%d> to %p, which is not in shared memory "
                        "(%s:%d)",
                        describe_index(threadIdx).c_str(), bytes, smem, base_name(file), line));
        }
        AsyncCopy copy = {};
        copy.destination = static_cast<unsigned char*>(smem);
        copy.bytes = bytes;
        copy.file = file;
        copy.line = line;
        if (valid) memcpy(copy.data, gmem, bytes);  // else zeros, and no read
        if (launch_->race_check) {
            copy.array = find_shared(smem, bytes, "cp_async", file, line);
            if (copy.array) {
                std::tie(copy.first, copy.count) = elements(*copy.array, smem, bytes);
                // The copy may land at once: a write from now on (and until it lands:
                // every access to the elements fails while they are pending).
                for (size_t e = copy.first; e < copy.first + copy.count; ++e) {
                    shared_access(copy.array->cells[e], *copy.array->site, e, true);
                    ++copy.array->cells[e].pending;
                }
            }
        }
        async_[current_].copies.push_back(copy);
        async_used_ = true;
    }

    void cp_async_commit() {
        AsyncCopies& mine = async_[current_];
        mine.group_ends.push_back(mine.copies.size());
        async_used_ = true;
    }

    // Lands the copies of every group but the `n` newest, oldest first.
    void cp_async_wait(int n) {
        AsyncCopies& mine = async_[current_];
        size_t groups = mine.group_ends.size();
        if (groups <= (size_t)n) return;
        size_t complete = groups - (size_t)n;
        size_t landed = mine.group_ends[complete - 1];
        for (size_t i = 0; i < landed; ++i) land(mine.copies[i]);
        mine.copies.erase(mine.copies.begin(), mine.copies.begin() + (ptrdiff_t)landed);
        mine.group_ends.erase(mine.group_ends.begin(),
                              mine.group_ends.begin() + (ptrdiff_t)complete);
        for (size_t& end : mine.group_ends) end -= landed;
    }

    // ---- The race check (called from the race-check build's shared arrays). ----

    SharedCell* shared_cells(size_t count, const void* data, size_t element_bytes,
                             const SharedSite& site) {
        shadows_.push_back(std::make_unique<SharedCell[]>(count));  // value-initialised: zero
        arrays_.push_back({static_cast<const unsigned char*>(data), count * element_bytes,
                           element_bytes, shadows_.back().get(), &site});
        return shadows_.back().get();
    }

    // Checks the running thread's access to `cell` against those recorded in this
    // epoch, then records it. See "The race check" in cuda_emu.h.
    void shared_access(SharedCell& cell, const SharedSite& site, size_t element, bool write) {
        const unsigned me = current_;
        if (cell.pending) {
            fail(format("thread %s %s shared `%s` (%s:%d), element %s, while a cp.async into "
                        "it has not landed: only the cp_async_wait that covers the copy lands "
                        "it (and other threads need a __syncthreads after that wait)",
                        describe_index(thread_index_[me]).c_str(), write ? "writes" : "reads",
                        site.declaration, base_name(site.file), site.line,
                        ElementName(site, element).text));
        }
        const SharedAccess now = {epoch_, me, clocks_[(size_t)me * 32 + me % 32]};
        const SharedAccess& last_write = cell.write;
        if (!ordered(last_write)) {
            race(site, element, last_write.thread, true, write);
        }
        if (write) {
            for (const SharedAccess& read : cell.read) {
                if (!ordered(read)) race(site, element, read.thread, false, true);
            }
            // Earlier reads are ordered before this write, so before anything ordered
            // after it: the write alone speaks for them from now on.
            cell.write = now;
            cell.read[0] = cell.read[1] = SharedAccess{};
            return;
        }
        // Keep this thread's read in a free cell, or in the one it has, or else in the
        // second: a later write by another thread conflicts with at least one of them.
        SharedAccess* slot = &cell.read[1];
        for (SharedAccess& read : cell.read) {
            if (read.epoch != epoch_ || read.thread == me) {
                slot = &read;
                break;
            }
        }
        *slot = now;
    }

    [[noreturn]] void shared_out_of_bounds(const SharedSite& site, int dimension, long long index) {
        fail(format("thread %s indexes shared `%s` (%s:%d) with %lld on dimension %d, whose "
                    "extent is %zu",
                    describe_index(threadIdx).c_str(), site.declaration, base_name(site.file),
                    site.line, index, dimension, site.extents[dimension]));
    }

    // The body of every fiber: runs the thread `current_`, and in plain mode every
    // thread after it, until one reaches a barrier (wait() then switches the block to
    // fiber mode) or the block is done.
    void run_threads() {
        for (;;) {
            unsigned t = current_;
            launch_->run(launch_->args);
            if (async_used_) check_copies_landed(t);
            if (fiber_mode_) {
                slots_[t].status = Status::Done;
                return;
            }
            if (t + 1 == threads_) return;
            current_ = t + 1;
            threadIdx = thread_index_[t + 1];
        }
    }

    // ---- Fiber switching, with AddressSanitizer told of each stack change. ----

    // First code a fiber runs. A fiber entered from the scheduler (the plain-mode one
    // always is) learns the scheduler's stack, which the last switch of a round needs.
    void entered_fiber() {
#if EMU_ASAN
        if (!fiber_mode_) {
            __sanitizer_finish_switch_fiber(nullptr, &scheduler_stack_bottom_,
                                             &scheduler_stack_size_);
        } else {
            __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
        }
#endif
    }

    // The running thread has finished: passes on, never to come back.
    [[noreturn]] void leave_fiber_for_good() {
        pass_on(true);
        abort();  // nothing resumes a finished fiber
    }

private:
    // The fiber the running thread is on: in plain mode every thread runs on fiber 0.
    Fiber& running_fiber() { return *fibers_[fiber_mode_ ? current_ - base_ : 0]; }

    // Runs one block; false (with error_ set) if it failed.
    bool run_block(uint64_t index) {
        const dim3& grid = launch_->grid;
        blockIdx = {(unsigned)(index % grid.x), (unsigned)(index / grid.x % grid.y),
                    (unsigned)(index / grid.x / grid.y)};
        ++epoch_;  // shared memory's records of earlier blocks are void
        drop_copies();
        fiber_mode_ = false;
        failed_ = false;
        base_ = 0;

        // Plain mode: one fiber runs the threads in order.
        if (!ensure_fibers(1)) return false;
        start(*fibers_[0]);
        resume(0);
        if (failed_) return fail_block();
        if (!fiber_mode_) return true;

        // Thread base_ waits at a barrier on fiber 0 (its slot says where). The threads
        // before it have finished; each later one gets a fiber. Plain mode leaves the
        // slots alone, which keeps it cheap: they are set here.
        for (unsigned t = 0; t < base_; ++t) slots_[t].status = Status::Done;
        for (unsigned t = base_ + 1; t < threads_; ++t) slots_[t] = Slot{};
        unsigned count = threads_ - base_;
        if (!ensure_fibers(count)) return false;
        for (unsigned f = 1; f < count; ++f) start(*fibers_[f]);

        // Rounds: run every ready thread until it waits or finishes (each passes the
        // OS thread on to the next ready one, the last back here), then release the
        // barriers that are complete.
        for (;;) {
            unsigned t = next_ready(base_);
            if (t < threads_) {
                resume(t);
                if (failed_) return fail_block();
            }
            switch (release_barriers()) {
                case Progress::Finished: return true;
                case Progress::Released: break;
                case Progress::Stuck: error_ = describe_divergence(); return fail_block();
            }
        }
    }

    bool fail_block() {
        // Fibers of this block may be suspended mid-kernel; they are restarted fresh.
        for (auto& fiber : fibers_) fiber->abandoned = true;
        error_ = format("kernel `%s`, block %s: ", launch_->name,
                        describe_index(blockIdx).c_str()) +
                 error_;
        return false;
    }

    bool ensure_fibers(size_t count) {
        while (fibers_.size() < count) {
            auto fiber = std::make_unique<Fiber>();
            if (!allocate_stack(fiber->stack, fibers_.size())) {
                error_ = format("cannot map a %zu KiB fiber stack (fiber %zu)", kStackBytes / 1024,
                                fibers_.size());
                fail_block();
                return false;
            }
            fibers_.push_back(std::move(fiber));
        }
        return true;
    }

    void start(Fiber& fiber) {
        if (fiber.abandoned) unpoison(fiber.stack);  // its frames never returned
        fiber.abandoned = false;
        make_context(fiber.context, fiber.stack, fiber_main);
    }

    // The first ready thread from `t` on (threads_ if none).
    unsigned next_ready(unsigned t) const {
        while (t < threads_ && slots_[t].status != Status::Ready) ++t;
        return t;
    }

    // Makes thread t the running one: the built-in index and the fiber it runs on.
    Fiber& become(unsigned t) {
        current_ = t;
        threadIdx = thread_index_[t];
        return *fibers_[fiber_mode_ ? t - base_ : 0];
    }

    // From the scheduler: runs threads from t on until the round ends.
    void resume(unsigned t) {
        Fiber& fiber = become(t);
#if EMU_ASAN
        void* fake_stack = nullptr;
        __sanitizer_start_switch_fiber(&fake_stack, fiber.stack.base, fiber.stack.size);
#endif
        swap_context(scheduler_, fiber.context);
#if EMU_ASAN
        __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
    }

    // Suspends the running thread at the barrier its slot describes.
    void wait() {
        slots_[current_].status = Status::Waiting;
        if (!fiber_mode_) {
            // The first barrier of the block: the threads before this one have finished
            // and this one keeps fiber 0, which it runs on. The scheduler sets up the rest.
            fiber_mode_ = true;
            base_ = current_;
            switch_to(running_fiber(), nullptr, false);
            return;
        }
        pass_on(false);
    }

    // Ends the block with `message`; the calling fiber is never resumed.
    [[noreturn]] void fail(std::string message) {
        error_ = std::move(message);
        failed_ = true;
        switch_to(running_fiber(), nullptr, true);
        abort();  // not resumed
    }

    // Switches from the running thread to the next ready one of this round, or to the
    // scheduler after the last: one switch per thread and round. Returns when something
    // switches back to this thread (never if it `finished`).
    void pass_on(bool finished) {
        Fiber& from = running_fiber();
        unsigned next = fiber_mode_ ? next_ready(current_ + 1) : threads_;
        switch_to(from, next < threads_ ? &become(next) : nullptr, finished);
    }

    // Switches from fiber `from` to fiber `to` (nullptr: the scheduler). A fiber that
    // will not be resumed tells AddressSanitizer so, which frees its fake stack.
    void switch_to(Fiber& from, Fiber* to, bool from_for_good) {
#if EMU_ASAN
        __sanitizer_start_switch_fiber(from_for_good ? nullptr : &from.asan_fake_stack,
                                       to ? to->stack.base : scheduler_stack_bottom_,
                                       to ? to->stack.size : scheduler_stack_size_);
#else
        (void)from_for_good;
#endif
        swap_context(from.context, to ? to->context : scheduler_);
#if EMU_ASAN
        __sanitizer_finish_switch_fiber(from.asan_fake_stack, nullptr, nullptr);
#endif
    }

    // Whether a recorded access happened before the running thread's current one: it
    // is of an earlier epoch (a barrier lies between), the same thread's, or of a lane
    // of the same warp that a warp operation of both has since ordered.
    bool ordered(const SharedAccess& access) const {
        const unsigned me = current_;
        if (access.epoch != epoch_ || access.thread == me) return true;
        if (access.thread / 32 != me / 32) return false;
        return clocks_[(size_t)me * 32 + access.thread % 32] > access.clock;
    }

    // "[1][2] (flat index 10)", or "(the scalar)", in a fixed buffer: it is made for
    // fail(), which never returns, so a heap string would never be freed (a leak that
    // AddressSanitizer reports).
    struct ElementName {
        char text[160];
        ElementName(const SharedSite& site, size_t element) {
            if (site.rank == 0) {
                snprintf(text, sizeof text, "(the scalar)");
                return;
            }
            int used = 0;  // what snprintf would have written (it stops at the end)
            auto append = [&](const char* pattern, size_t value) {
                if (used < (int)sizeof text) {
                    used += snprintf(text + used, sizeof text - (size_t)used, pattern, value);
                }
            };
            for (int d = 0; d < site.rank; ++d) {
                size_t stride = 1;  // elements per index of dimension d
                for (int inner = d + 1; inner < site.rank; ++inner) stride *= site.extents[inner];
                append("[%zu]", element / stride % site.extents[d]);
            }
            append(" (flat index %zu)", element);
        }
    };

    // ---- Tensor-core instructions: the parts that run on the lane's own fiber. ----

    // Suspends the running lane at a collective instruction: every lane of a full warp
    // must arrive at the same one (release_warp), which then computes all results.
    void collective(WarpOp op, const void* lane, const char* file, int line) {
        if (warp_lanes() != ~0u) {
            fail(format("thread %s calls %s in a warp of %d threads: it needs all 32 lanes "
                        "(blocks of a multiple of 32 threads) (%s:%d)",
                        describe_index(threadIdx).c_str(), warp_op_name(op),
                        __builtin_popcount(warp_lanes()), base_name(file), line));
        }
        Slot& slot = slots_[current_];
        slot.at_warp = true;
        slot.warp_op = op;
        slot.mask = ~0u;
        slot.source = -1;
        slot.value = reinterpret_cast<uintptr_t>(lane);
        slot.file = file;
        slot.line = line;
        wait();
    }

    // Whether [p, p + bytes) lies in the thread-local storage of one module of this
    // OS thread, where `__shared__` arrays live (looked up again when it does not: a
    // module loaded later has storage of its own).
    bool in_shared_memory(const void* p, size_t bytes) {
        uintptr_t begin = reinterpret_cast<uintptr_t>(p), end = begin + bytes;
        for (int pass = 0; pass < 2; ++pass) {
            for (const auto& [first, last] : tls_) {
                if (begin >= first && end <= last) return true;
            }
            if (pass == 0) {
                tls_.clear();
                dl_iterate_phdr(collect_tls, &tls_);
            }
        }
        return false;
    }

    // The race-check build's array that holds [p, p + bytes), or nullptr (an array the
    // build does not check); fails the launch if the range runs past the array's end.
    const SharedArray* find_shared(const void* p, size_t bytes, const char* what,
                                   const char* file, int line) {
        const unsigned char* begin = static_cast<const unsigned char*>(p);
        for (const SharedArray& array : arrays_) {
            if (begin < array.data || begin >= array.data + array.bytes) continue;
            if (begin + bytes > array.data + array.bytes) {
                fail(format("thread %s: %s accesses %zu bytes at %p, past the end of shared "
                            "`%s` (%s:%d) (%s:%d)",
                            describe_index(threadIdx).c_str(), what, bytes, p,
                            array.site->declaration, base_name(array.site->file),
                            array.site->line, base_name(file), line));
            }
            return &array;
        }
        return nullptr;
    }

    // The first element of `array` that [p, p + bytes) touches, and how many.
    static std::pair<size_t, size_t> elements(const SharedArray& array, const void* p,
                                              size_t bytes) {
        size_t offset = static_cast<size_t>(static_cast<const unsigned char*>(p) - array.data);
        size_t first = offset / array.element_bytes;
        size_t last = (offset + bytes - 1) / array.element_bytes;
        return {first, last - first + 1};
    }

    // A cp.async lands: its elements stop being pending, and it writes them as the
    // waiting thread.
    void land(const AsyncCopy& copy) {
        if (copy.array) {
            for (size_t e = copy.first; e < copy.first + copy.count; ++e) {
                --copy.array->cells[e].pending;
                shared_access(copy.array->cells[e], *copy.array->site, e, true);
            }
        }
        memcpy(copy.destination, copy.data, (size_t)copy.bytes);
    }

    // Thread t has finished: it must have waited for every copy it started.
    void check_copies_landed(unsigned t) {
        AsyncCopies& mine = async_[t];
        if (!mine.copies.empty()) {
            const AsyncCopy& last = mine.copies.back();
            fail(format("thread %s exits with %zu cp.async copies that no cp_async_wait "
                        "covered (the last from %s:%d): they would land after it, or never; "
                        "commit them and cp_async_wait<0>() first",
                        describe_index(thread_index_[t]).c_str(), mine.copies.size(),
                        base_name(last.file), last.line));
        }
        mine.group_ends.clear();  // empty groups are complete
    }

    // Forgets the copies of a block that failed (its threads never waited), and their
    // pending marks, which would otherwise outlive it in the shared arrays' cells.
    void drop_copies() {
        if (!async_used_) return;
        for (AsyncCopies& copies : async_) {
            for (const AsyncCopy& copy : copies.copies) {
                if (!copy.array) continue;
                for (size_t e = copy.first; e < copy.first + copy.count; ++e) {
                    --copy.array->cells[e].pending;
                }
            }
            copies.copies.clear();
            copies.group_ends.clear();
        }
        async_used_ = false;
    }

    // Fails the launch with the conflict between the running thread's access and
    // `other`'s earlier one.
    [[noreturn]] void race(const SharedSite& site, size_t element, unsigned other,
                           bool other_wrote, bool write) {
        const char* kind = !other_wrote ? "write after read"
                           : write      ? "write after write"
                                        : "read after write";
        const char* warp = other / 32 == current_ / 32
                               ? " (one warp, but no __syncwarp, shuffle or vote of both lanes "
                                 "orders them)"
                               : "";
        fail(format("race on shared `%s` (%s:%d), element %s: thread %s %s "
                    "it after thread %s %s it, with no barrier between them%s: %s",
                    site.declaration, base_name(site.file), site.line,
                    ElementName(site, element).text, describe_index(thread_index_[current_]).c_str(), write ? "writes" : "reads",
                    describe_index(thread_index_[other]).c_str(), other_wrote ? "wrote" : "read",
                    warp, kind));
    }

    // Every live thread waits or has finished: releases what can be released.
    Progress release_barriers() {
        unsigned done = 0, at_block = 0;
        for (unsigned t = 0; t < threads_; ++t) {
            done += slots_[t].status == Status::Done;
            at_block += slots_[t].status == Status::Waiting && !slots_[t].at_warp;
        }
        if (done == threads_) return Progress::Finished;
        if (at_block == threads_) return release_block() ? Progress::Released : Progress::Stuck;
        bool released = false;
        for (unsigned first = 0; first < threads_; first += 32) released |= release_warp(first);
        return released ? Progress::Released : Progress::Stuck;
    }

    // All threads wait at a block barrier: releases it if it is the same one.
    bool release_block() {
        const Slot& first = slots_[0];
        unsigned count = 0;
        for (unsigned t = 0; t < threads_; ++t) {
            const Slot& slot = slots_[t];
            if (slot.block_op != first.block_op || !same_site(slot, first)) return false;
            count += slot.value != 0;
        }
        uint64_t result = 0;
        switch (first.block_op) {
            case BlockOp::Sync: break;
            case BlockOp::Count: result = count; break;
            case BlockOp::And: result = count == threads_; break;
            case BlockOp::Or: result = count > 0; break;
        }
        for (unsigned t = 0; t < threads_; ++t) {
            slots_[t].result = result;
            slots_[t].status = Status::Ready;
        }
        ++epoch_;
        return true;
    }

    // Releases the warp operations of the warp starting at thread `first` whose
    // every live lane named in the mask has arrived, with the same mask and kind.
    bool release_warp(unsigned first) {
        Slot* lanes = &slots_[first];
        unsigned count = std::min(32u, threads_ - first);
        unsigned live = 0;
        for (unsigned l = 0; l < count; ++l) live |= unsigned(lanes[l].status != Status::Done) << l;
        bool released = false;
        for (unsigned l = 0; l < count; ++l) {
            const Slot& slot = lanes[l];
            if (slot.status != Status::Waiting || !slot.at_warp) continue;
            // A collective instruction needs every lane: an exited one never arrives.
            unsigned group = is_collective(slot.warp_op) ? slot.mask : slot.mask & live;
            bool complete = true;
            for (unsigned r = 0; r < count && complete; ++r) {
                const Slot& other = lanes[r];
                complete = !(group >> r & 1) ||
                           (other.status == Status::Waiting && other.at_warp &&
                            other.warp_op == slot.warp_op && other.mask == slot.mask);
            }
            if (!complete) continue;
            exchange(lanes, count, group, slot.warp_op);
            if (launch_->race_check) join_clocks(first, count, group);
            released = true;
        }
        return released;
    }

    // Computes the results of a complete warp operation for the lanes in `group`.
    static void exchange(Slot* lanes, unsigned count, unsigned group, WarpOp op) {
        if (is_collective(op)) {  // all 32 lanes (collective() checked the warp is full)
            if (is_ldmatrix(op)) {
                run_ldmatrix(lanes, op);
            } else {
                run_mma(lanes, op == WarpOp::MmaBf16);
            }
            for (unsigned l = 0; l < count; ++l) lanes[l].status = Status::Ready;
            return;
        }
        unsigned ballot = 0;
        for (unsigned l = 0; l < count; ++l) {
            if ((group >> l & 1) && lanes[l].value != 0) ballot |= 1u << l;
        }
        for (unsigned l = 0; l < count; ++l) {
            if (!(group >> l & 1)) continue;
            Slot& slot = lanes[l];
            switch (op) {
                case WarpOp::Sync: slot.result = 0; break;
                case WarpOp::Ballot: slot.result = ballot; break;
                case WarpOp::Any: slot.result = ballot != 0; break;
                case WarpOp::All: slot.result = ballot == group; break;
                default:
                    if (slot.source < 0) {
                        slot.result = slot.value;
                    } else if (group >> slot.source & 1) {
                        slot.result = lanes[slot.source].value;
                    } else {
                        slot.result = ~uint64_t(0);  // an inactive lane: undefined on a GPU
                    }
            }
            slot.status = Status::Ready;
        }
    }

    // The lanes of `group` (of the warp starting at thread `first`) passed a warp
    // operation together: each ticks its own clock, then all take the latest of every
    // lane's, so each knows the others' accesses before it.
    void join_clocks(unsigned first, unsigned count, unsigned group) {
        uint32_t joined[32] = {};
        for (unsigned l = 0; l < count; ++l) {
            if (!(group >> l & 1)) continue;
            uint32_t* clock = &clocks_[(size_t)(first + l) * 32];
            ++clock[l];
            for (unsigned k = 0; k < 32; ++k) joined[k] = std::max(joined[k], clock[k]);
        }
        for (unsigned l = 0; l < count; ++l) {
            if (group >> l & 1) memcpy(&clocks_[(size_t)(first + l) * 32], joined, sizeof joined);
        }
    }

    static bool same_site(const Slot& a, const Slot& b) {
        return a.line == b.line && (a.file == b.file || strcmp(a.file, b.file) == 0);
    }

    static const char* warp_op_name(WarpOp op) {
        switch (op) {
            case WarpOp::Sync: return "__syncwarp";
            case WarpOp::ShflIdx: return "__shfl_sync";
            case WarpOp::ShflUp: return "__shfl_up_sync";
            case WarpOp::ShflDown: return "__shfl_down_sync";
            case WarpOp::ShflXor: return "__shfl_xor_sync";
            case WarpOp::Ballot: return "__ballot_sync";
            case WarpOp::Any: return "__any_sync";
            case WarpOp::All: return "__all_sync";
            case WarpOp::MmaTf32: return "mma_tf32_m16n8k8";
            case WarpOp::MmaBf16: return "mma_bf16_m16n8k16";
            case WarpOp::LdmatrixX1: return "ldmatrix_x1";
            case WarpOp::LdmatrixX2: return "ldmatrix_x2";
            case WarpOp::LdmatrixX4: return "ldmatrix_x4";
            case WarpOp::LdmatrixX1Trans: return "ldmatrix_x1_trans";
            case WarpOp::LdmatrixX2Trans: return "ldmatrix_x2_trans";
            case WarpOp::LdmatrixX4Trans: return "ldmatrix_x4_trans";
        }
        return "?";
    }

    static const char* block_op_name(BlockOp op) {
        switch (op) {
            case BlockOp::Sync: return "__syncthreads";
            case BlockOp::Count: return "__syncthreads_count";
            case BlockOp::And: return "__syncthreads_and";
            case BlockOp::Or: return "__syncthreads_or";
        }
        return "?";
    }

    // What a thread is doing, for the divergence message.
    static std::string describe_state(const Slot& slot) {
        if (slot.status == Status::Done) return "exited";
        if (!slot.at_warp) {
            return format("wait at %s() (%s:%d)", block_op_name(slot.block_op),
                          base_name(slot.file), slot.line);
        }
        if (is_collective(slot.warp_op)) {
            return format("wait at %s() (%s:%d)", warp_op_name(slot.warp_op),
                          base_name(slot.file), slot.line);
        }
        return format("wait at %s(0x%08x, ...) (%s:%d)", warp_op_name(slot.warp_op), slot.mask,
                      base_name(slot.file), slot.line);
    }

    // Groups the threads of a stuck block by what they do, in thread order:
    // "255 threads (first (1,0,0)) wait at __syncthreads() (x.cu:12); 1 thread ((0,0,0)) exited".
    std::string describe_divergence() const {
        struct Group {
            std::string state;
            unsigned count;
            unsigned first;
        };
        std::vector<Group> groups;
        for (unsigned t = 0; t < threads_; ++t) {
            std::string state = describe_state(slots_[t]);
            auto same = [&](const Group& g) { return g.state == state; };
            auto group = std::find_if(groups.begin(), groups.end(), same);
            if (group != groups.end()) {
                ++group->count;
            } else {
                groups.push_back({std::move(state), 1, t});
            }
        }
        std::string out =
            "barrier divergence: the block's threads cannot all meet at one barrier: ";
        const size_t shown = 6;
        for (size_t g = 0; g < groups.size() && g < shown; ++g) {
            const Group& group = groups[g];
            uint3 first = thread_index_[group.first];
            if (g > 0) out += "; ";
            out += group.count == 1
                       ? format("1 thread %s ", describe_index(first).c_str())
                       : format("%u threads (first %s) ", group.count,
                                describe_index(first).c_str());
            out += group.state;
        }
        if (groups.size() > shown) out += format("; and %zu more groups", groups.size() - shown);
        return out;
    }

    Launch* launch_ = nullptr;
    unsigned threads_ = 0;      // per block
    unsigned current_ = 0;      // the thread running (or last run)
    unsigned base_ = 0;         // fiber mode: thread base_ + f runs on fibers_[f]
    bool fiber_mode_ = false;
    bool failed_ = false;
    std::string error_;
    std::vector<Slot> slots_;
    std::vector<uint3> thread_index_;  // threadIdx of each linear thread index
    std::vector<std::unique_ptr<Fiber>> fibers_;  // never move: a ucontext points into itself
    // The race check: the epoch (bumped at each block start and __syncthreads, so the
    // records of shared memory from before are void), each thread's vector clock over
    // the lanes of its warp (clocks_[32 t + lane]), and the records of every checked
    // shared array this OS thread has run.
    uint64_t epoch_ = 0;
    std::vector<uint32_t> clocks_;
    std::vector<std::unique_ptr<SharedCell[]>> shadows_;
    std::deque<SharedArray> arrays_;  // the same arrays by address (a deque: copies point in)
    // cp.async: each thread's copies not landed yet, and whether any thread of the
    // block made one (else the exit check and the clean-up are skipped).
    std::vector<AsyncCopies> async_;
    bool async_used_ = false;
    Ranges tls_;  // the OS thread's thread-local storage: shared memory
    Context scheduler_;                           // the OS thread's own stack
    const void* scheduler_stack_bottom_ = nullptr;
    size_t scheduler_stack_size_ = 0;
};

Worker& worker() {
    static thread_local Worker instance;
    return instance;
}

void fiber_main() noexcept {
    Worker& w = worker();
    w.entered_fiber();
    w.run_threads();
    w.leave_fiber_for_good();
}

// ---------------------------------------------------------------------------------
// Helper threads: a big launch shares its blocks with whichever helpers are idle.

// Below this many threads a launch is not worth waking a helper for (a wake-up costs
// tens of microseconds; a plain thread costs a few nanoseconds).
constexpr uint64_t kMinThreadsToShare = 16384;

// OS threads that run the blocks of a big launch: GOOGLENET_EMU_THREADS, else two
// (one on a single-core machine).
unsigned configured_threads() {
    const char* env = getenv("GOOGLENET_EMU_THREADS");
    long n = env ? strtol(env, nullptr, 10) : std::min(2u, std::thread::hardware_concurrency());
    return (unsigned)std::clamp(n, 1L, 64L);
}

class Helpers {
public:
    // Created on first use, never destroyed: detached helpers may still wait on it
    // while the process exits.
    static Helpers* get() {
        static Helpers* helpers = configured_threads() > 1 ? new Helpers(configured_threads() - 1)
                                                           : nullptr;
        return helpers;
    }

    // Runs the blocks of `launch` on the calling thread and on every idle helper.
    void run(Launch& launch) {
        bool shared = false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!held_) {  // else another launch holds the helpers: run alone
                held_ = true;
                job_ = &launch;
                ++job_id_;
                joined_ = finished_ = 0;
                shared = true;
            }
        }
        if (shared) wake_.notify_all();
        worker().run_blocks(launch);
        if (!shared) return;
        std::unique_lock<std::mutex> lock(mutex_);
        job_ = nullptr;  // no helper joins from now on
        done_.wait(lock, [&] { return finished_ == joined_; });
        // Only now may another launch take the helpers. While this one waited above (the
        // wait lets go of the mutex), a helper could still be in its last block: had a
        // launch from another thread reset the counts then, this one would have returned
        // with that block unfinished (its `Launch`, on this stack, gone under the
        // helper: a crash), and the helper's late `finished_` would have counted for
        // the other launch, which then waited forever.
        held_ = false;
    }

private:
    explicit Helpers(unsigned count) {
        for (unsigned i = 0; i < count; ++i) std::thread([this] { serve(); }).detach();
    }

    void serve() {
        uint64_t seen = 0;
        std::unique_lock<std::mutex> lock(mutex_);
        for (;;) {
            wake_.wait(lock, [&] { return job_ && job_id_ != seen; });
            seen = job_id_;
            Launch* launch = job_;
            ++joined_;
            lock.unlock();
            worker().run_blocks(*launch);
            lock.lock();
            ++finished_;
            done_.notify_all();
        }
    }

    std::mutex mutex_;
    std::condition_variable wake_, done_;
    bool held_ = false;      // a launch holds the helpers, until its last helper is done
    Launch* job_ = nullptr;  // the launch helpers may join (nullptr: none, or no longer)
    uint64_t job_id_ = 0;
    unsigned joined_ = 0, finished_ = 0;
};

// Checks a launch configuration against CUDA's limits; "" if it is valid.
std::string check_configuration(const unsigned grid[3], const unsigned block[3]) {
    std::string shape = format("grid (%u,%u,%u), block (%u,%u,%u)", grid[0], grid[1], grid[2],
                               block[0], block[1], block[2]);
    if (!block[0] || !block[1] || !block[2] || !grid[0] || !grid[1] || !grid[2]) {
        return "invalid launch, " + shape + ": every dimension must be at least 1";
    }
    if ((uint64_t)block[0] * block[1] * block[2] > 1024) {
        return "invalid launch, " + shape + ": a block has at most 1024 threads";
    }
    if (block[2] > 64) return "invalid launch, " + shape + ": block z is at most 64";
    if (grid[0] > 0x7fffffffu || grid[1] > 65535 || grid[2] > 65535) {
        return "invalid launch, " + shape + ": grid x is at most 2^31-1, y and z at most 65535";
    }
    return "";
}

// The blocks 0 .. count-1 in an order shuffled by `seed` (splitmix64, Fisher-Yates).
std::vector<uint64_t> shuffled_blocks(uint64_t count, uint64_t seed) {
    std::vector<uint64_t> order(count);
    for (uint64_t i = 0; i < count; ++i) order[i] = i;
    uint64_t state = seed;
    auto next = [&state] {
        uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    };
    for (uint64_t i = count; i > 1; --i) std::swap(order[i - 1], order[next() % i]);
    return order;
}

std::string launch(const char* name, const unsigned grid[3], const unsigned block[3],
                   void** args, unsigned mode, uint64_t seed) {
    if (!name) return "emu_launch: no kernel name";
    auto found = registry().find(std::string_view(name));
    if (found == registry().end()) {
        return format("unknown kernel `%s`: nothing of that name is registered (is "
                      "EMU_REGISTER(%s) missing after its definition?)",
                      name, name);
    }
    std::string invalid = check_configuration(grid, block);
    if (!invalid.empty()) return format("kernel `%s`: ", name) + invalid;

    Launch launch;
    launch.name = name;
    launch.kernel = &found->second;
    launch.race_check = (mode & kRaceCheck) != 0;
    launch.run = launch.race_check ? launch.kernel->run_race_checked : launch.kernel->run;
    if (!launch.run) {
        return format("kernel `%s` has no race-check build (build.rs makes one of every kernel "
                      "file)",
                      name);
    }
    launch.args = args;
    launch.grid = dim3(grid[0], grid[1], grid[2]);
    launch.block = dim3(block[0], block[1], block[2]);
    launch.threads = block[0] * block[1] * block[2];
    launch.blocks = (uint64_t)grid[0] * grid[1] * grid[2];
    if (mode & kShuffle) launch.order = shuffled_blocks(launch.blocks, seed);

    Helpers* helpers = (mode & kSerial) ? nullptr : Helpers::get();
    bool big = launch.blocks * launch.threads >= kMinThreadsToShare;
    if (helpers && launch.blocks > 1 && (big || (mode & kShare))) {
        helpers->run(launch);
    } else {
        worker().run_blocks(launch);
    }
    return launch.error;
}

void copy_message(const std::string& message, char* out, size_t out_len) {
    if (!out || out_len == 0) return;
    size_t n = std::min(message.size(), out_len - 1);
    memcpy(out, message.data(), n);
    out[n] = '\0';
}

}  // namespace

// ---------------------------------------------------------------------------------
// The interface of cuda_emu.h.

int block_barrier(BlockOp op, int predicate, const char* file, int line) {
    return worker().block_barrier(op, predicate, file, line);
}

uint64_t warp_barrier(WarpOp op, unsigned mask, uint64_t value, long long arg, int width,
                      const char* file, int line) {
    return worker().warp_barrier(op, mask, value, arg, width, file, line);
}

unsigned warp_lanes() { return worker().warp_lanes(); }

void mma(WarpOp op, float* d, const uint32_t* a, const uint32_t* b, const float* c,
         const char* file, int line) {
    worker().mma(op, d, a, b, c, file, line);
}

void ldmatrix(WarpOp op, uint32_t* r, const void* row, const char* file, int line) {
    worker().ldmatrix(op, r, row, file, line);
}

void cp_async(void* smem, const void* gmem, int bytes, bool valid, const char* file, int line) {
    worker().cp_async(smem, gmem, bytes, valid, file, line);
}

void cp_async_commit(const char*, int) { worker().cp_async_commit(); }

void cp_async_wait(int n, const char*, int) { worker().cp_async_wait(n); }

SharedCell* shared_cells(size_t count, const void* data, size_t element_bytes,
                         const SharedSite& site) {
    return worker().shared_cells(count, data, element_bytes, site);
}

void shared_access(SharedCell& cell, const SharedSite& site, size_t element, bool write) {
    worker().shared_access(cell, site, element, write);
}

void shared_out_of_bounds(const SharedSite& site, int dimension, long long index) {
    worker().shared_out_of_bounds(site, dimension, index);
}

Registration::Registration(const char* name, void (*run)(void** args), std::string parameters,
                           bool race_checked) {
    Kernel& kernel = registry()[name];
    (race_checked ? kernel.run_race_checked : kernel.run) = run;
    kernel.parameters = std::move(parameters);
}

}  // namespace emu

// ---------------------------------------------------------------------------------
// The C interface (src/engine/device/emu/driver.rs).

// Runs `kernel` over `grid` x `block` threads. `args[i]` points to the value of the
// kernel's parameter i, as in cuLaunchKernel. `mode` is a set of the k* bits above
// (0: as fast as it goes), `seed` the shuffle's. Returns 0, or nonzero with a message
// in `error` (an unknown kernel, an invalid configuration, barrier divergence, a race).
extern "C" int emu_launch(const char* kernel, const unsigned grid[3], const unsigned block[3],
                          void** args, unsigned mode, uint64_t seed, char* error,
                          size_t error_len) {
    std::string message;
    try {
        message = emu::launch(kernel, grid, block, args, mode, seed);
    } catch (const std::exception& e) {
        message = std::string("emulator: ") + e.what();
    }
    emu::copy_message(message, error, error_len);
    return message.empty() ? 0 : 1;
}

// Writes the parameter types of `kernel` ("const float*,float*,int32", see
// describe_type in cuda_emu.h) to `out`; returns their length, or -1 for an unknown
// kernel.
extern "C" long emu_kernel_parameters(const char* kernel, char* out, size_t out_len) {
    auto found = emu::registry().find(std::string_view(kernel ? kernel : ""));
    if (found == emu::registry().end()) return -1;
    emu::copy_message(found->second.parameters, out, out_len);
    return (long)found->second.parameters.size();
}

// Whether this build checks memory accesses with AddressSanitizer.
extern "C" int emu_address_sanitizer() { return EMU_ASAN; }
