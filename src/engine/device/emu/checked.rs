//! The init and order checks (GOOGLENET_EMU_CHECK=init,order). The launch runs more
//! than once, each time on fresh copies of its buffers (`CopyOf`), and the runs are
//! compared; only the reference run's results go back to the buffers.
//!
//! - The reference run hands out the blocks in order, on the calling thread (with the
//!   race check, when that is on too).
//! - init: elements that nothing wrote (see `shadow.rs`) hold, in three runs, a NaN,
//!   -1234.5678 and 8765.4321 (as bits in u32 buffers). A kernel whose results differ
//!   between those runs has read them. Which element it read is then found by
//!   bisection: the unwritten elements in order, the first k switched to the fill that
//!   showed the difference, the rest left at the reference's, for the least k that
//!   changes the results. An element a kernel leaves at the fill in every run stays
//!   unwritten; so does a copy of an unwritten one (as MemorySanitizer propagates it),
//!   and the first read that changes a result, or a download, reports it.
//! - order: one run hands out the blocks in a shuffled order (seeded by the kernel and
//!   its grid, so a failure repeats) and shares them with the helper threads, so
//!   blocks run two at a time when a helper is free. Its results must be bit-identical
//!   to the reference's: this project's kernels make no float atomics and no
//!   cross-block reads, so that its GPU runs are reproducible.

use anyhow::{anyhow, Context, Result};

use super::checks::Checks;
use super::launch::{
    in_place, run, CopyOf, Kernel, Region, POISON, RACE_CHECK, SERIAL, SHARE, SHUFFLE,
};
use super::shadow;

/// What unwritten 4-byte elements hold in the init check's runs: what `invalidate`
/// left (a NaN), then -1234.5678 and 8765.4321, of opposite signs and small enough that
/// adding to them, comparing them, taking a max or multiplying by 0 changes the bits.
const FILLS: [u32; 3] = [POISON, 0xc49a_522b, 0x4608_f5ba];

/// Runs `kernel` with the init and order checks of `checks` (and the race check in the
/// reference run).
pub(super) fn launch(kernel: &Kernel, regions: &[Region], checks: Checks) -> Result<()> {
    let unwritten: Vec<Option<Vec<bool>>> = regions
        .iter()
        .map(|r| match checks.init && r.element == 4 {
            true => shadow::unwritten(r.pointer, r.elements()),
            false => None,
        })
        .collect();
    let poisoned = unwritten.iter().any(Option::is_some);
    let blocks: u64 = kernel.launch.grid.iter().map(|&g| u64::from(g)).product();
    let shuffled = checks.order && blocks > 1;
    let race = if checks.race { RACE_CHECK } else { 0 };
    if !poisoned && !shuffled {
        return in_place(kernel, regions, race);
    }
    let runs = Runs {
        kernel,
        regions,
        unwritten: &unwritten,
    };

    let reference = runs.run(&|_, _| FILLS[0], race | SERIAL, 0)?;
    let observed = runs.observe(&reference, &|_, _| FILLS[0]);
    if poisoned {
        for &fill in &FILLS[1..] {
            let copies = runs.run(&|_, _| fill, SERIAL, 0)?;
            if runs.observe(&copies, &|_, _| fill) != observed {
                return Err(runs.find_read(&observed, fill));
            }
        }
    }
    if shuffled {
        let seed = seed_of(kernel);
        let copies = runs
            .run(&|_, _| FILLS[0], SHUFFLE | SHARE, seed)
            .with_context(|| {
                format!(
                    "emu: order check: kernel `{}` fails only with its blocks shuffled \
                     (seed {seed:#x})",
                    kernel.kernel
                )
            })?;
        runs.compare_order(&reference, &copies, seed)?;
    }

    for (copy, region) in reference.iter().zip(regions) {
        if region.written {
            copy.write_back(region);
        }
    }
    // What the kernel wrote is written now; what it left (or copied) unwritten is not.
    for ((region, unwritten), observed) in regions.iter().zip(&unwritten).zip(&observed) {
        if region.written && unwritten.is_some() {
            shadow::set(
                region.pointer,
                observed.iter().map(Option::is_none).collect(),
            );
        }
    }
    Ok(())
}

/// The seed of a launch's shuffle: FNV-1a of the kernel's name and grid, so that the
/// same launch is shuffled the same way in every run.
fn seed_of(kernel: &Kernel) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let grid = kernel.launch.grid.iter().flat_map(|g| g.to_le_bytes());
    for byte in kernel.kernel.bytes().chain(grid) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The element `e` of a copy, as a word.
fn word(copy: &CopyOf, region: &Region, e: usize) -> u32 {
    let bytes = &copy.as_slice()[e * region.element..(e + 1) * region.element];
    match region.element {
        4 => u32::from_ne_bytes(bytes.try_into().expect("4 bytes")),
        _ => u32::from(bytes[0]),
    }
}

/// An element's value for a message: the float and its bits, or the integer.
fn show(region: &Region, word: u32) -> String {
    if region.float {
        format!("{:?} (bits {word:#010x})", f32::from_bits(word))
    } else {
        format!("{word}")
    }
}

/// A fill: the word that unwritten element `e` of region `r` holds in a run.
type Fill<'a> = dyn Fn(usize, usize) -> u32 + 'a;

/// The runs of one checked launch.
struct Runs<'a> {
    kernel: &'a Kernel<'a>,
    regions: &'a [Region],
    /// Per region, which elements nothing wrote (None: all were written).
    unwritten: &'a [Option<Vec<bool>>],
}

impl Runs<'_> {
    /// Runs the launch on fresh copies of the buffers, unwritten elements set by `fill`.
    fn run(&self, fill: &Fill, mode: std::ffi::c_uint, seed: u64) -> Result<Vec<CopyOf>> {
        let mut copies: Vec<CopyOf> = self.regions.iter().map(CopyOf::new).collect();
        for (r, (copy, unwritten)) in copies.iter_mut().zip(self.unwritten).enumerate() {
            let Some(unwritten) = unwritten else { continue };
            for (e, word) in copy.as_mut_slice().chunks_exact_mut(4).enumerate() {
                if unwritten[e] {
                    word.copy_from_slice(&fill(r, e).to_ne_bytes());
                }
            }
        }
        let pointers: Vec<_> = copies.iter().map(|c| c.pointer.cast()).collect();
        run(self.kernel, &pointers, mode, seed)?;
        Ok(copies)
    }

    /// What a run left in the written regions: per element its word, or None for an
    /// unwritten element that still holds the run's fill.
    fn observe(&self, copies: &[CopyOf], fill: &Fill) -> Vec<Vec<Option<u32>>> {
        let regions = self.regions.iter().zip(self.unwritten).zip(copies);
        let observe = |(r, ((region, unwritten), copy)): (usize, _)| {
            let (region, unwritten): (&Region, &Option<Vec<bool>>) = (region, unwritten);
            if !region.written {
                return Vec::new();
            }
            (0..region.elements())
                .map(|e| {
                    let word = word(copy, region, e);
                    let left = unwritten.as_ref().is_some_and(|u| u[e]) && word == fill(r, e);
                    (!left).then_some(word)
                })
                .collect()
        };
        regions.enumerate().map(observe).collect()
    }

    /// The error for a kernel whose results change with `fill` in the unwritten
    /// elements: finds one such element that it reads, by bisection (see the top).
    fn find_read(&self, reference: &[Vec<Option<u32>>], fill: u32) -> anyhow::Error {
        // The unwritten elements in order, and each one's place in that order.
        let mut candidates = Vec::new();
        let mut place = Vec::with_capacity(self.regions.len());
        for (r, unwritten) in self.unwritten.iter().enumerate() {
            let unwritten = unwritten.as_deref().unwrap_or(&[]);
            place.push(
                (0..unwritten.len())
                    .map(|e| {
                        if !unwritten[e] {
                            return usize::MAX;
                        }
                        candidates.push((r, e));
                        candidates.len() - 1
                    })
                    .collect::<Vec<_>>(),
            );
        }
        // Runs with the first k candidates at `fill`, the others at the reference's.
        let observe_first = |k: usize| -> Result<Vec<Vec<Option<u32>>>> {
            let fill_first = |r: usize, e: usize| if place[r][e] < k { fill } else { FILLS[0] };
            let copies = self.run(&fill_first, SERIAL, 0)?;
            Ok(self.observe(&copies, &fill_first))
        };
        // Invariant: k = low leaves the results as the reference's, k = high does not.
        let (mut low, mut high) = (0, candidates.len());
        let mut at_high = None;
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            match observe_first(middle) {
                Ok(observed) if observed == reference => low = middle,
                Ok(observed) => {
                    high = middle;
                    at_high = Some(observed);
                }
                Err(e) => return e,
            }
        }
        let at_high = match at_high.map_or_else(|| observe_first(high), Ok) {
            Ok(observed) => observed,
            Err(e) => return e,
        };
        let (r, e) = candidates[high - 1];
        let region = &self.regions[r];
        let count = self.unwritten[r].iter().flatten().filter(|&&u| u).count();
        let changed = (0..self.regions.len()).find_map(|o| {
            let f = (0..at_high[o].len()).find(|&f| at_high[o][f] != reference[o][f])?;
            Some(format!("element {f} of {}", self.regions[o].what()))
        });
        anyhow!(
            "emu: init check: kernel `{}` reads memory that no upload, memset or kernel \
             wrote: element {e} of {} ({count} of its {} elements are unwritten); what it \
             holds changes {}",
            self.kernel.kernel,
            region.what(),
            region.elements(),
            changed.unwrap_or_else(|| "the results".into())
        )
    }

    /// Fails at the first element of a written region where `shuffled` differs from
    /// `reference`.
    fn compare_order(&self, reference: &[CopyOf], shuffled: &[CopyOf], seed: u64) -> Result<()> {
        for ((region, a), b) in self.regions.iter().zip(reference).zip(shuffled) {
            if !region.written || a.as_slice() == b.as_slice() {
                continue;
            }
            let e = (0..region.elements())
                .find(|&e| word(a, region, e) != word(b, region, e))
                .expect("the copies differ");
            return Err(anyhow!(
                "emu: order check: the blocks of kernel `{}` depend on each other: element \
                 {e} of {} is {} with the blocks run in order, {} with them shuffled (seed \
                 {seed:#x}) and shared between threads",
                self.kernel.kernel,
                region.what(),
                show(region, word(a, region, e)),
                show(region, word(b, region, e))
            ));
        }
        Ok(())
    }
}
