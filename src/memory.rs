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

use std::fs;

use anyhow::{bail, Result};

use crate::data::FashionMnist;
use crate::device::geometry::ConvGeometry;
use crate::device::Device;
use crate::nn::{GoogLeNet, LayerGeometry, Parameters};
use crate::train::TrainConfig;

const F32: u64 = 4;

/// What the program takes besides its tensors: code, thread stacks, the allocator's
/// arenas and the freed pages it keeps a while. Set from measured peaks: at 32x32 the
/// peak was 235-265 MiB, 40-70 MiB above the tensors counted here; the rest is margin.
const PROGRAM_BYTES: u64 = 112 << 20;

/// The batch evaluation runs at (`train::evaluate_split`'s).
pub fn eval_batch(config: &TrainConfig) -> usize {
    config.batch_size.max(64)
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

/// The estimate for `config` with `net` (whose parameters are `param_count` scalars),
/// on a GPU or not, with `data_images` 28x28 images read from the files (both splits).
pub fn estimate(
    net: &GoogLeNet,
    param_count: usize,
    config: &TrainConfig,
    on_gpu: bool,
    data_images: usize,
) -> Result<Estimate> {
    let size = config.image_size;
    let pixels = |n: usize| (n * size * size) as u64 * F32;
    let train = activations(&net.layer_geometries(config.batch_size, size)?, on_gpu);
    let step = pixels(config.batch_size) + train.kept + train.train_layer + train.block;
    let batch = eval_batch(config);
    let eval = activations(&net.layer_geometries(batch, size)?, on_gpu);
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
    let model = 4 * param_count as u64 * F32;
    let saving = 4 * param_count as u64 * F32;

    // The files as read (image bytes and label bytes), then the splits cut to the
    // limits and uploaded (u8 images, u32 labels), made from a copy.
    let image = (crate::data::IMAGE_SIDE * crate::data::IMAGE_SIDE) as u64;
    let files = data_images as u64 * (image + 1);
    let used = config.train_limit.unwrap_or(usize::MAX).min(data_images) as u64
        + config.test_limit.unwrap_or(usize::MAX).min(data_images) as u64;
    let uploaded = used.min(data_images as u64) * (image + 4);

    Ok(if on_gpu {
        Estimate {
            host: vec![
                ("program", PROGRAM_BYTES),
                ("data set", files + 2 * uploaded),
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
                ("data set", files + 2 * uploaded),
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

/// Bytes as people read them.
pub fn human(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    if bytes as f64 >= GIB {
        format!("{:.1} GiB", bytes as f64 / GIB)
    } else {
        format!("{:.0} MiB", (bytes as f64 / MIB).ceil())
    }
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

/// Memory this process can still get on the host, and what limits it.
#[derive(Clone, Debug, PartialEq)]
pub struct HostMemory {
    pub available: u64,
    pub limited_by: String,
}

/// `MemAvailable` of a /proc/meminfo text, in bytes.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// What a cgroup's limit leaves: `limit - usage`; None when there is no limit
/// (cgroup v2 writes "max"; v1 a number near 2^63).
pub fn cgroup_room(limit: &str, usage: &str) -> Option<u64> {
    let limit: u64 = limit.trim().parse().ok()?;
    let usage: u64 = usage.trim().parse().ok()?;
    (limit < 1 << 60).then(|| limit.saturating_sub(usage))
}

/// The cgroup this process is in: (memory limit, usage) file pairs to try, v2 first.
fn cgroup_files() -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Ok(text) = fs::read_to_string("/proc/self/cgroup") {
        for line in text.lines() {
            if let Some(path) = line.strip_prefix("0::") {
                let dir = format!("/sys/fs/cgroup{}", path.trim_end_matches('/'));
                out.push((format!("{dir}/memory.max"), format!("{dir}/memory.current")));
            }
        }
    }
    out.push((
        "/sys/fs/cgroup/memory.max".to_string(),
        "/sys/fs/cgroup/memory.current".to_string(),
    ));
    out.push((
        "/sys/fs/cgroup/memory/memory.limit_in_bytes".to_string(),
        "/sys/fs/cgroup/memory/memory.usage_in_bytes".to_string(),
    ));
    out
}

/// The host's `MemAvailable`, or less when this process's cgroup allows less.
/// None when /proc/meminfo cannot be read (not Linux): nothing is checked then.
pub fn host_memory() -> Option<HostMemory> {
    let meminfo = fs::read_to_string("/proc/meminfo").ok()?;
    let mut best = HostMemory {
        available: parse_meminfo(&meminfo)?,
        limited_by: "MemAvailable in /proc/meminfo".to_string(),
    };
    let room = cgroup_files().into_iter().find_map(|(limit, usage)| {
        let room = cgroup_room(
            &fs::read_to_string(&limit).ok()?,
            &fs::read_to_string(usage).ok()?,
        )?;
        Some((room, limit))
    });
    if let Some((room, limit)) = room {
        if room < best.available {
            best = HostMemory {
                available: room,
                limited_by: format!("the cgroup limit in {limit}"),
            };
        }
    }
    Some(best)
}

/// This process's resident memory now (VmRSS), which the estimate already includes.
fn resident() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Refuses `config` when its estimate does not fit in what the host (and the GPU, for
/// a cuda device) has left; returns the estimate otherwise.
pub fn check(
    device: &Device,
    net: &GoogLeNet,
    params: &Parameters,
    config: &TrainConfig,
    data: &FashionMnist,
) -> Result<Estimate> {
    let estimate = estimate(
        net,
        params.scalar_count(),
        config,
        device.is_gpu(),
        data.train.len() + data.test.len(),
    )?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_cgroup_texts() {
        let meminfo =
            "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(parse_meminfo(meminfo), Some(20_000_000 * 1024));
        assert_eq!(parse_meminfo("MemTotal: 5 kB\n"), None);
        assert_eq!(cgroup_room("max\n", "12345\n"), None);
        assert_eq!(cgroup_room("9223372036854771712\n", "5\n"), None);
        assert_eq!(cgroup_room("1000\n", "300\n"), Some(700));
        assert_eq!(cgroup_room("1000\n", "3000\n"), Some(0));
        assert_eq!(human(3 << 30), "3.0 GiB");
        assert_eq!(human(5 << 20), "5 MiB");
    }
}
