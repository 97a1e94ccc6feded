//! Memory a training run needs, estimated from the model's layer geometry before
//! anything big is allocated, against what the machine has left. A configuration that
//! cannot fit is refused with both figures, instead of ending in an allocation abort
//! or the kernel's OOM killer taking this process or its neighbours.
//!
//! The estimate is the peak of the whole process (on a GPU: of the host and of the
//! device), the largest of its phases (on the CPU device: the training step's and
//! evaluation's together, as its allocator keeps what it freed):
//!   training step = what the tape keeps for backward (every ReLU output, every pool's
//!                   output and argmax, every Inception block's concatenated output,
//!                   the images) + the largest one layer needs while it runs (im2col
//!                   columns, GEMM output, gradients in flight)
//!   evaluation    = one layer's input, columns and outputs at the evaluation batch
//!                   (nothing is kept: no tape)
//! plus what lives throughout: the parameters with their gradients and Adam's two
//! moments, the data set (read from the files, and its copy on the device), and the
//! program itself. `tests/memory.rs` checks it against the measured peak.

use anyhow::{bail, Result};

use crate::engine::device::geometry::ConvGeometry;
use crate::engine::device::Device;
use crate::engine::nn::{GoogLeNet, LayerGeometry};
use crate::sys::{host_memory, human, resident};

const F32: u64 = 4;

/// What the program takes besides its tensors: code, thread stacks, the allocator's
/// arenas and the freed pages it keeps a while. Set from measured peaks: at 32x32 the
/// peak was 235-265 MiB, 40-70 MiB above the tensors counted here; the rest is margin.
const PROGRAM_BYTES: u64 = 112 << 20;

/// What the estimate measures: the model's layers at the run's sizes, its parameter
/// count, and the data set's shape.
#[derive(Clone, Copy)]
pub struct Workload<'a> {
    pub net: &'a GoogLeNet,
    /// Scalars in the parameters.
    pub param_count: usize,
    /// The side the images are resized to, and the batches of training and evaluation.
    pub image_size: usize,
    pub batch_size: usize,
    pub eval_batch_size: usize,
    pub on_gpu: bool,
    pub data: DataShape,
}

/// The data set as it sits in memory.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DataShape {
    /// Images read (both splits), and the bytes of each as stored.
    pub images_read: usize,
    pub image_bytes: usize,
    /// Of those, the images the run uses (within its limits): uploaded to the device.
    pub images_used: usize,
}

/// A run's memory need, part by part, in bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    pub host: Vec<(&'static str, u64)>,
    /// Empty unless the device is a GPU with its own memory.
    pub device: Vec<(&'static str, u64)>,
}

impl Estimate {
    pub fn host_total(&self) -> u64 {
        self.host.iter().map(|(_, b)| b).sum()
    }

    pub fn device_total(&self) -> u64 {
        self.device.iter().map(|(_, b)| b).sum()
    }
}

/// Sizes at one batch, from the layer geometry.
struct Activations {
    /// What the tape keeps from forward to backward.
    kept: u64,
    /// The most one convolution needs while it runs in training, forward or backward,
    /// besides what is kept: the GEMM's output and its NCHW copy, the ReLU output, the
    /// im2col columns; backward: dy and its regathered copy, dx, the columns again, dw.
    train_layer: u64,
    /// The same without a tape (evaluation): its input, columns and outputs.
    eval_layer: u64,
    /// The largest Inception block's input and output together: what is alive around
    /// a block besides the layer running (the branches' outputs and their
    /// concatenation; in backward, the block's input gradient and the output's).
    block: u64,
}

fn bytes(shape: [usize; 4]) -> u64 {
    shape.iter().product::<usize>() as u64 * F32
}

/// The im2col columns the CPU convolution builds (none for 1x1 stride-1 layers, whose
/// input is its own column matrix; none on a GPU, whose kernels are implicit GEMMs).
fn columns(g: &ConvGeometry, on_gpu: bool) -> u64 {
    if on_gpu || g.is_pointwise() {
        0
    } else {
        (g.patch_len() * g.n * g.oh * g.ow) as u64 * F32
    }
}

/// Backward filter's partial sums on a GPU: at most one weight-sized tensor per split,
/// with at most 256 splits of at least 1024 output pixels (`device::gpu::conv`).
fn filter_partials(g: &ConvGeometry, on_gpu: bool) -> u64 {
    if !on_gpu {
        return 0;
    }
    let splits = (g.n * g.oh * g.ow / 1024).clamp(1, 256) as u64;
    splits * (g.c_out * g.patch_len()) as u64 * F32
}

fn activations(layers: &[(String, LayerGeometry)], on_gpu: bool) -> Activations {
    let mut a = Activations {
        kept: 0,
        train_layer: 0,
        eval_layer: 0,
        block: 0,
    };
    // The current block: its name, input and output so far.
    let mut block: Option<(String, u64, u64)> = None;
    for (name, layer) in layers {
        match layer {
            LayerGeometry::Conv(g) => {
                let (input, out) = (bytes(g.input_shape()), bytes(g.output_shape()));
                let weights = (g.c_out * g.patch_len()) as u64 * F32;
                let col = columns(g, on_gpu);
                // The ReLU output; the convolution's own output is freed once ReLU ran.
                a.kept += out;
                let forward = col + 3 * out;
                let backward = 3 * out + input + col + weights + filter_partials(g, on_gpu);
                a.train_layer = a.train_layer.max(forward).max(backward);
                a.eval_layer = a.eval_layer.max(input + col + 2 * out);
                // A block's four branch outputs are copied into its concatenation.
                if let Some((prefix, _)) = name.split_once(".branch") {
                    if block.as_ref().is_none_or(|(b, _, _)| b != prefix) {
                        block = Some((prefix.to_string(), input, 0));
                    }
                    if [".branch1", ".branch2_2", ".branch3_2", ".branch4_2"]
                        .iter()
                        .any(|b| name.ends_with(b))
                    {
                        a.kept += out;
                        if let Some((_, block_in, block_out)) = &mut block {
                            *block_out += out;
                            a.block = a.block.max(*block_in + *block_out);
                        }
                    }
                }
            }
            LayerGeometry::MaxPool(g) => {
                // The output, and the u32 argmax backward routes gradients by.
                a.kept += 2 * bytes(g.output_shape());
            }
            LayerGeometry::AvgPool(g) => a.kept += bytes(g.output_shape()),
        }
    }
    a
}

/// The estimate for `w`.
pub fn estimate(w: &Workload) -> Result<Estimate> {
    let (size, on_gpu) = (w.image_size, w.on_gpu);
    let pixels = |n: usize| (n * size * size) as u64 * F32;
    let train = activations(&w.net.layer_geometries(w.batch_size, size)?, on_gpu);
    let step = pixels(w.batch_size) + train.kept + train.train_layer + train.block;
    let batch = w.eval_batch_size;
    let eval = activations(&w.net.layer_geometries(batch, size)?, on_gpu);
    let evaluation = pixels(batch) + eval.eval_layer + eval.block;
    // The allocator keeps freed pages a while, so the pages of one phase's sizes are
    // still held when the next phase's are touched, and the fused op set's backward
    // keeps a block's gradients until its last branch has read them: a third more.
    // Measured by tests/memory.rs: at 128x128, batch 16, peaks of 545-564 MiB from run
    // to run, which a fifth or a quarter more covered by only 3-4%.
    let phases = |peak: u64| peak + peak / 3;
    let cpu_phases = |peaks: u64| peaks + peaks / 4;
    // Parameters, gradients, Adam's two moments; and, while a checkpoint is written,
    // the moments and weights copied to host vectors and serialised.
    let model = 4 * w.param_count as u64 * F32;
    let saving = 4 * w.param_count as u64 * F32;

    // The data as read (image bytes and label bytes), then the splits cut to the
    // limits and uploaded (u8 images, u32 labels): the cut copy is the CPU device's
    // buffer, and on a GPU it is held until it is uploaded.
    let image = w.data.image_bytes as u64;
    let files = w.data.images_read as u64 * (image + 1);
    let uploaded = w.data.images_used.min(w.data.images_read) as u64 * (image + 4);

    Ok(if on_gpu {
        Estimate {
            host: vec![
                ("program", PROGRAM_BYTES),
                ("data set", files + uploaded),
                ("checkpoint writing", saving),
            ],
            device: vec![
                ("parameters, gradients, Adam state", model),
                ("activations and workspaces", phases(step.max(evaluation))),
                ("data set on the GPU", uploaded),
            ],
        }
    } else {
        Estimate {
            host: vec![
                ("program", PROGRAM_BYTES),
                ("data set", files + uploaded),
                ("parameters, gradients, Adam state", model),
                // The phases come one after the other, but the CPU device's allocator
                // never hands freed memory back (`cpu::keep_freed_memory`), and an
                // evaluation batch's sizes rarely fit the holes a training step's
                // left: the two phases' pages add up. A checkpoint's vectors fit them
                // (they are the largest phase only at small images). The quarter more
                // is the fused backward's block gradients (above).
                // Measured by tests/memory.rs with that allocator setting: peaks of
                // 257-287 MiB at 32x32 batch 16, 559-619 MiB at 128x128 batch 16 (the
                // larger phase plus a third, 612 MiB, fell short), 593-645 MiB at
                // 96x96 batch 64; this estimate is 1.1-1.7 times them.
                (
                    "activations, workspaces, checkpoint writing",
                    cpu_phases((step + evaluation).max(saving)),
                ),
            ],
            device: Vec::new(),
        }
    })
}

/// Refuses a folder data set that will not fit in memory once decoded, before it is:
/// `check` of `w`, whose data are `w.data.images_read` images of `channels` planes of
/// `store_side x store_side`; when it fails and a smaller store side would fit, the
/// error names the decoded set's size and the largest `--store-size` that fits.
pub fn check_decoded(
    device: &Device,
    w: &Workload,
    channels: usize,
    store_side: usize,
) -> Result<Estimate> {
    let at_side = |side: usize| Workload {
        data: DataShape {
            image_bytes: channels * side * side,
            ..w.data
        },
        ..*w
    };
    let err = match check(device, &at_side(store_side)) {
        Ok(estimate) => return Ok(estimate),
        Err(err) => err,
    };
    // The largest side that fits, by bisection: the need grows with the side.
    let (mut fits, mut fails) = (0, store_side);
    while fails - fits > 1 {
        let mid = (fits + fails) / 2;
        if check(device, &at_side(mid)).is_ok() {
            fits = mid;
        } else {
            fails = mid;
        }
    }
    if fits == 0 {
        return Err(err);
    }
    let decoded = w.data.images_read as u64 * (channels * store_side * store_side) as u64;
    bail!(
        "the data set cannot be decoded into memory: its {} images of {channels}x{s}x{s} \
         take {} as decoded ({err:#}); --store-size {fits} would fit, or fewer images",
        w.data.images_read,
        human(decoded),
        s = store_side
    )
}

/// One line for the program to print: the totals and what makes them up.
pub fn describe(estimate: &Estimate) -> String {
    let mut out = format!(
        "about {} on the host ({})",
        human(estimate.host_total()),
        breakdown(&estimate.host)
    );
    if !estimate.device.is_empty() {
        out += &format!(
            ", {} on the GPU ({})",
            human(estimate.device_total()),
            breakdown(&estimate.device)
        );
    }
    out
}

fn breakdown(parts: &[(&str, u64)]) -> String {
    parts
        .iter()
        .map(|(what, b)| format!("{what} {}", human(*b)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refuses `w` when its estimate does not fit in what the host (and the GPU, for a
/// cuda device) has left; returns the estimate otherwise.
pub fn check(device: &Device, w: &Workload) -> Result<Estimate> {
    let estimate = estimate(w)?;
    let advice = "lower --batch-size or --image-size, or --train-limit/--test-limit";
    if let Some(host) = host_memory() {
        let held = resident();
        let need = estimate.host_total();
        if need.saturating_sub(held) > host.available {
            bail!(
                "not enough memory for this run: it needs about {} on the host ({}), this \
                 process holds {} of it already and {} more is available ({}); {advice}",
                human(need),
                breakdown(&estimate.host),
                human(held),
                human(host.available),
                host.limited_by
            );
        }
    }
    if let Some(free) = device.memory_free() {
        let free = free?;
        let need = estimate.device_total();
        if need > free {
            bail!(
                "not enough GPU memory for this run: it needs about {} on {} ({}), and {} \
                 is free; {advice}",
                human(need),
                device.name(),
                breakdown(&estimate.device),
                human(free),
            );
        }
    }
    Ok(estimate)
}
