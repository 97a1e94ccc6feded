//! One full GoogLeNet training step (forward, backward, Adam): `cargo bench --bench
//! train_step`. Prints the median step time and the images per second, and, for the
//! GPU devices, what one steady-state step costs the host (kernel launches, device
//! allocations, memsets, copies, host waits) and its peak device memory.
//!
//! The counts come from the GPU layer the cuda and emu devices share, so the
//! emulator's are the GPU's: they are measured on emu at batch 16 and 128, 32x32
//! (the image size changes only the split-K reductions' launches, not the rest), and
//! on cuda:0 at 224x224 when there is one. Peak memory follows the image size: emu's
//! is at 32x32.
//!
//! On a GPU (`cuda:0`): 224x224 (`--size`) at batch 16 and 128 (`--batch-sizes`), in
//! each precision of the conv and linear GEMMs (`--precisions f32,tf32,bf16`, the
//! default: a row each; the counts are the same in every precision, so they are
//! reported once, at tf32), `--steps` timed steps (default 20 at batch 16, 10 at
//! larger ones). Without one it says that GPU figures need a GPU. `--gpu-device emu`
//! runs that GPU section on the emulator instead (not GPU figures: the GPU check's
//! rehearsal, at a small `--size`). Then the emulator's counts, and the CPU against
//! PyTorch's CPU step (`--gpu-only` skips both: no emulator, no CPU; `--cpu-only` runs
//! only the latter): batch 16 at 32x32 and 224x224, with 1 and 2 threads
//! (`--sizes 32,224`, `--threads 1,2`, a rayon pool of that size; PyTorch gets `torch.set_num_threads`),
//! our step and `scripts/pytorch_peer.py --device cpu` (eager, f32, Adam) taking turns
//! for `--rounds 3` rounds, so that a load that comes and goes hits both alike. It
//! prints each side's median over the rounds (each round's figure is itself a median
//! of steps) and the ratio PyTorch / ours, and the share of the CPUs' time the host's
//! hypervisor stole while each side ran (`/proc/stat`), which on a shared cloud
//! machine moves the two-thread figures most. The peer runs under `$PEER_PYTHON`
//! (default `python3`); where that has no torch, the bench says the peer was skipped
//! and times ours alone. `cargo test --benches` (which passes no `--bench`) runs only
//! our CPU step at 32x32, one step, no peer. The rows also go to
//! `target/bench-train-step.json` (`--json PATH`), rewritten after each row, so that
//! a run cut short keeps what it measured.
//!
//! Each step is timed on the host clock from its start until the device has finished
//! it (`Device::synchronize`), after warm-up steps that are not counted.
//!
//! Steps run as the training loop runs them (src/training/step/stepper.rs): on the GPU devices each
//! is timed and counted twice, with the step graph (one recorded step replayed) and
//! with its ops launched one by one; `--no-graph` only the latter. Rows say which
//! (`"graph"`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use googlenet::data::Split;
use googlenet::engine::device::View;
use googlenet::engine::device::{cuda, simd_level, CpuGemm};
use googlenet::engine::optim::StepLog;
use googlenet::training::step::DeviceSplit;
use googlenet::training::step::{BatchSettings, Stepper};
use googlenet::{Adam, Counters, Device, GoogLeNet, GoogLeNetConfig, Init, Normalize, Precision};
use serde_json::{json, Value};

/// The tutorial's batch, the CPU's only one.
const BATCH: usize = 16;

/// `samples` 28x28 images of a few bands, on the device.
fn split(device: &Device, samples: usize) -> Result<DeviceSplit> {
    let split = Split {
        images: (0..samples * 28 * 28)
            .map(|i| ((i * 37) % 251) as u8)
            .collect(),
        labels: (0..samples).map(|i| (i % 10) as u8).collect(),
        channels: 1,
        rows: 28,
        cols: 28,
    };
    DeviceSplit::upload(device, &split, None, 10)
}

/// A model, its optimizer and a stepper for batches of `batch` at `size`.
fn setup(
    device: &Device,
    batch: usize,
    size: usize,
    graphs: bool,
) -> Result<(GoogLeNet, googlenet::Parameters, Adam, Stepper)> {
    let (net, params) =
        GoogLeNet::new(device, GoogLeNetConfig::default(), Init::PyTorchDefault, 0)?;
    let adam = Adam::new(&params, 1e-3)?;
    let settings = BatchSettings {
        image_size: size,
        norm: Normalize::FASHION_MNIST,
        smoothing: 0.0,
    };
    let stepper = Stepper::new(device, batch, settings, graphs)?;
    Ok((net, params, adam, stepper))
}

fn median_step(
    device: &Device,
    batch: usize,
    size: usize,
    graphs: bool,
    warmup: usize,
    steps: usize,
) -> Result<Duration> {
    let data = split(device, 2 * batch)?;
    let (net, mut params, mut adam, mut stepper) = setup(device, batch, size, graphs)?;
    // With the graph, the first two steps are the warm-up and the recording.
    let warmup = if stepper.uses_graphs() {
        warmup.max(2)
    } else {
        warmup
    };
    let views = vec![View::IDENTITY; batch];
    let mut times = Vec::new();
    // As the training loop runs it: losses stay on the device until the end.
    let mut log = StepLog::new(device, warmup + steps)?;
    // Warm-up steps fill the allocator and the thread pool (and, on a GPU, load the
    // kernels and raise the clocks); they are not counted.
    for step in 0..warmup + steps {
        let indices: Vec<u32> = (0..batch)
            .map(|i| ((step % 2) * batch + i) as u32)
            .collect();
        let start = Instant::now();
        stepper.step(
            &net,
            &mut params,
            &mut adam,
            &data,
            &indices,
            &views,
            step as u64,
            &mut log,
        )?;
        device.synchronize()?;
        if step >= warmup {
            times.push(start.elapsed());
        }
    }
    log.read()?;
    times.sort();
    Ok(times[times.len() / 2])
}

/// What the third of three training steps cost a GPU device (the first is the
/// warm-up that fills the allocator, the second, with the graph, the recording).
fn steady_state_counts(
    device: &Device,
    batch: usize,
    size: usize,
    graphs: bool,
) -> Result<Counters> {
    let data = split(device, 2 * batch)?;
    let (net, mut params, mut adam, mut stepper) = setup(device, batch, size, graphs)?;
    let mut log = StepLog::new(device, 3)?;
    let views = vec![View::IDENTITY; batch];
    let mut counts = None;
    for step in 0..3 {
        let indices: Vec<u32> = (0..batch)
            .map(|i| ((step % 2) * batch + i) as u32)
            .collect();
        device.take_counters();
        stepper.step(
            &net,
            &mut params,
            &mut adam,
            &data,
            &indices,
            &views,
            step as u64,
            &mut log,
        )?;
        counts = device.take_counters();
    }
    log.read()?;
    counts.context("only GPU devices count")
}

/// Prints the counts and adds them to `rows`.
fn report_counts(
    rows: &mut Rows,
    device: &Device,
    batch: usize,
    size: usize,
    graphs: bool,
) -> Result<()> {
    let c = steady_state_counts(device, batch, size, graphs)?;
    let copies = c.copies_to_device + c.copies_to_host;
    println!(
        "  batch {batch:>3}  {size:>3}x{size:<3}  graph {:<3}  {} launches ({} replays of \
         {} kernels), {} allocations, {} memsets, {copies} copies, {} host waits per step; \
         peak memory {:.1} MiB",
        if graphs { "on" } else { "off" },
        c.launches,
        c.graph_replays,
        c.replayed_launches,
        c.allocations,
        c.memsets,
        c.host_waits,
        c.peak_bytes as f64 / (1 << 20) as f64,
    );
    rows.push(json!({
        "device": device.name(),
        "batch": batch,
        "image_size": size,
        "graph": graphs,
        "launches_per_step": c.launches,
        "graph_replays_per_step": c.graph_replays,
        "replayed_launches_per_step": c.replayed_launches,
        "allocations_per_step": c.allocations,
        "memsets_per_step": c.memsets,
        "copies_per_step": copies,
        "host_waits_per_step": c.host_waits,
        "peak_device_bytes_per_step": c.peak_bytes,
        "measured_over": "the third of three steps (the first fills the allocator, the \
                          second records the graph)",
    }))
}

#[allow(clippy::too_many_arguments)]
fn report(
    rows: &mut Rows,
    device: &Device,
    batch: usize,
    size: usize,
    graphs: bool,
    steps: usize,
    t: Duration,
) -> Result<()> {
    let images_per_s = batch as f64 / t.as_secs_f64();
    println!(
        "  batch {batch:>3}  {size:>3}x{size:<3}  {:>4}  graph {:<3}  {:>8.1} ms/step  \
         {images_per_s:>8.1} images/s  (median of {steps})",
        device.precision(),
        if graphs { "on" } else { "off" },
        t.as_secs_f64() * 1e3,
    );
    rows.push(json!({
        "device": device.name(),
        "precision": device.precision().name(),
        "batch": batch,
        "image_size": size,
        "graph": graphs,
        "ms_per_step": t.as_secs_f64() * 1e3,
        "images_per_s": images_per_s,
        "steps_timed": steps,
    }))
}

/// The rows so far, written out again after each one (so a run killed at its time
/// limit, as the GPU check's can be, leaves every row it finished).
struct Rows {
    path: PathBuf,
    /// Whether the GPU section ran on a GPU.
    gpu: bool,
    rows: Vec<Value>,
}

impl Rows {
    fn new(path: PathBuf) -> Result<Rows> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let rows = Rows {
            path,
            gpu: false,
            rows: Vec::new(),
        };
        rows.write()?;
        Ok(rows)
    }

    fn push(&mut self, row: Value) -> Result<()> {
        self.rows.push(row);
        self.write()
    }

    /// Written beside and renamed over the file, so that a kill mid-write leaves the
    /// last whole file, never half of one.
    fn write(&self) -> Result<()> {
        let doc = json!({
            "gpu": self.gpu,
            "timing": "host clock from a step's start until the device finished it; median",
            "rows": self.rows,
        });
        let partial = self.path.with_extension("json.partial");
        std::fs::write(&partial, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, &self.path)
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// The value after `flag`, if the flag is given.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Result<Option<&'a str>> {
    match args.iter().position(|a| a == flag) {
        Some(i) => match args.get(i + 1) {
            Some(v) => Ok(Some(v)),
            None => bail!("{flag} needs a value"),
        },
        None => Ok(None),
    }
}

/// The positive count after `flag`, if the flag is given.
fn count(args: &[String], flag: &str) -> Result<Option<usize>> {
    flag_value(args, flag)?
        .map(|v| {
            v.parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .with_context(|| format!("{flag} {v:?}: expected a positive count"))
        })
        .transpose()
}

/// A comma-separated list of positive counts after `flag`, or `default`.
fn counts(args: &[String], flag: &str, default: &[usize]) -> Result<Vec<usize>> {
    match flag_value(args, flag)? {
        Some(list) => list
            .split(',')
            .map(|t| t.parse::<usize>().ok().filter(|&t| t > 0))
            .collect::<Option<Vec<_>>>()
            .with_context(|| format!("{flag} {list:?}: expected positive counts like 1,2")),
        None => Ok(default.to_vec()),
    }
}

/// Steps each side times per round, after its warm-up, at an image size: 224x224
/// steps take seconds, so fewer of them.
fn steps_per_round(size: usize) -> (usize, usize) {
    if size >= 224 {
        (1, 3)
    } else {
        (2, 10)
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The Python that runs the peer (`$PEER_PYTHON`, default `python3`), or why it
/// cannot: no such interpreter, or one without torch.
fn peer_python() -> std::result::Result<String, String> {
    let python = std::env::var("PEER_PYTHON").unwrap_or_else(|_| "python3".to_string());
    match Command::new(&python).args(["-c", "import torch"]).output() {
        Ok(out) if out.status.success() => Ok(python),
        Ok(_) => Err(format!("{python} cannot import torch (set PEER_PYTHON)")),
        Err(err) => Err(format!("{python} does not run: {err} (set PEER_PYTHON)")),
    }
}

/// PyTorch's median CPU step in seconds: one run of the peer script in its own process.
fn pytorch_step(python: &str, size: usize, threads: usize) -> Result<f64> {
    let (warmup, steps) = steps_per_round(size);
    let out_path = std::env::temp_dir().join(format!("peer-{}.json", std::process::id()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pytorch_peer.py");
    let out = Command::new(python)
        .arg(&script)
        .args(["--device", "cpu", "--modes", "eager", "--batch-sizes"])
        .arg(BATCH.to_string())
        .arg("--image-size")
        .arg(size.to_string())
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--warmup")
        .arg(warmup.to_string())
        .arg("--steps")
        .arg(steps.to_string())
        .arg("--json")
        .arg(&out_path)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(
        &std::fs::read(&out_path).with_context(|| format!("reading {}", out_path.display()))?,
    )?;
    let _ = std::fs::remove_file(&out_path);
    doc["rows"][0]["ms_per_step"]
        .as_f64()
        .map(|ms| ms / 1e3)
        .with_context(|| format!("the peer's JSON has no ms_per_step: {doc}"))
}

/// The host's CPU time counters (`/proc/stat`'s first line): (steal, all), in ticks.
/// Steal is time the hypervisor gave this machine's virtual CPUs to someone else; on a
/// shared cloud machine it comes and goes, and a step that waits for both CPUs pays
/// for it. `None` where there is no `/proc/stat`.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    Some((*ticks.get(7)?, ticks.iter().sum()))
}

/// Steal accumulated over the periods `f` runs, as a share of all CPU time then.
#[derive(Default)]
struct Steal {
    steal: u64,
    all: u64,
}

impl Steal {
    fn during<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let before = cpu_ticks();
        let out = f();
        if let (Some((s0, a0)), Some((s1, a1))) = (before, cpu_ticks()) {
            self.steal += s1.saturating_sub(s0);
            self.all += a1.saturating_sub(a0);
        }
        out
    }

    fn share(&self) -> Option<f64> {
        (self.all > 0).then(|| self.steal as f64 / self.all as f64)
    }
}

/// Our CPU step and PyTorch's, taking turns `rounds` times at each size and thread
/// count; prints the medians and their ratio, and adds a row for each.
fn cpu_against_pytorch(
    rows: &mut Rows,
    sizes: &[usize],
    threads: &[usize],
    rounds: usize,
    gemms: &[CpuGemm],
) -> Result<()> {
    let python = peer_python();
    println!(
        "CPU: {} ({}); matrix multiply: {}",
        cpu_model(),
        simd_level().name(),
        gemms
            .iter()
            .map(|g| g.describe())
            .collect::<Vec<_>>()
            .join(", then ")
    );
    match &python {
        Ok(python) => println!(
            "CPU train step, batch {BATCH}, f32, Adam: ours and PyTorch's ({python} \
             scripts/pytorch_peer.py --device cpu, eager) in turn, {rounds} rounds"
        ),
        Err(why) => println!("CPU train step, batch {BATCH}: PyTorch peer skipped ({why})"),
    }
    println!(
        "  {:>7}  {:>7}  {:>14}  {:>12}  {:>12}  {:>16}  {:>11}  {:>13}",
        "size",
        "threads",
        "gemm",
        "ours ms",
        "PyTorch ms",
        "PyTorch / ours",
        "steal ours",
        "steal PyTorch"
    );
    let device = Device::cpu();
    for &size in sizes {
        for &t in threads {
            for &gemm in gemms {
                gemm.select();
                cpu_row(rows, &device, python.as_ref().ok(), size, t, rounds, gemm)?;
            }
        }
    }
    Ok(())
}

/// One row of `cpu_against_pytorch`: our step on `gemm` and PyTorch's, taking turns.
fn cpu_row(
    rows: &mut Rows,
    device: &Device,
    python: Option<&String>,
    size: usize,
    t: usize,
    rounds: usize,
    gemm: CpuGemm,
) -> Result<()> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build()?;
    let (warmup, steps) = steps_per_round(size);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut our_steal, mut their_steal) = (Steal::default(), Steal::default());
    for _ in 0..rounds {
        let step = our_steal
            .during(|| pool.install(|| median_step(device, BATCH, size, false, warmup, steps)))?;
        ours.push(step.as_secs_f64());
        if let Some(python) = python {
            theirs.push(their_steal.during(|| pytorch_step(python, size, t))?);
        }
    }
    let ours = median(ours);
    let theirs = (!theirs.is_empty()).then(|| median(theirs));
    let shown = |s: Option<f64>| s.map_or("skipped".to_string(), |s| format!("{:.1}", s * 1e3));
    let ratio = theirs.map(|p| p / ours);
    let percent = |s: Option<f64>| s.map_or("-".to_string(), |s| format!("{:.1}%", s * 1e2));
    println!(
        "  {:>7}  {t:>7}  {:>14}  {:>12.1}  {:>12}  {:>16}  {:>11}  {:>13}",
        format!("{size}x{size}"),
        gemm_name(gemm),
        ours * 1e3,
        shown(theirs),
        ratio.map_or("-".to_string(), |r| format!("{r:.2}x")),
        percent(our_steal.share()),
        percent(their_steal.share()),
    );
    rows.push(json!({
        "device": format!("cpu ({t} threads)"),
        "batch": BATCH,
        "image_size": size,
        "threads": t,
        "simd_level": simd_level().name(),
        "gemm": gemm.describe(),
        "ms_per_step": ours * 1e3,
        "images_per_s": BATCH as f64 / ours,
        "pytorch_ms_per_step": theirs.map(|p| p * 1e3),
        "pytorch_over_ours": ratio,
        "steal_share_ours": our_steal.share(),
        "steal_share_pytorch": their_steal.share(),
        "rounds": rounds,
        "steps_timed_per_round": steps,
    }))?;
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = !args.iter().any(|a| a == "--bench");
    let gpu_only = args.iter().any(|a| a == "--gpu-only");
    let cpu_only = args.iter().any(|a| a == "--cpu-only");
    // On the GPU devices: with the step graph and without, or only without.
    let graph_modes: &[bool] = if args.iter().any(|a| a == "--no-graph") {
        &[false]
    } else {
        &[true, false]
    };
    let precisions = match flag_value(&args, "--precisions")? {
        Some(list) => list
            .split(',')
            .map(|p| Precision::parse(p.trim()))
            .collect::<Result<Vec<_>>>()
            .context("--precisions: e.g. f32,tf32,bf16")?,
        None => Precision::ALL.to_vec(),
    };
    let batches = counts(&args, "--batch-sizes", &[16, 128])?;
    let size = count(&args, "--size")?.unwrap_or(224);
    let steps = count(&args, "--steps")?;
    let mut rows = Rows::new(PathBuf::from(
        flag_value(&args, "--json")?.unwrap_or("target/bench-train-step.json"),
    ))?;

    let gpu = match flag_value(&args, "--gpu-device")? {
        _ if cpu_only => Err("--cpu-only".to_string()),
        Some("emu") => Ok(Device::emu()),
        Some("cuda") | None if !cuda::driver_present() => Err("no CUDA driver found".to_string()),
        Some("cuda") | None => {
            Device::cuda(0).map_err(|err| format!("cuda:0 is unusable: {err:#}"))
        }
        Some(other) => bail!("--gpu-device {other:?}: expected cuda or emu"),
    };
    match &gpu {
        Ok(gpu) => {
            if gpu.cuda_stream().is_some() {
                rows.gpu = true;
            } else {
                println!(
                    "GPU figures need a GPU: the GPU section on {} (--gpu-device emu)",
                    gpu.name()
                );
            }
            println!("train step on {}", gpu.name());
            for &precision in &precisions {
                gpu.set_precision(precision)?;
                for &batch in &batches {
                    let steps = steps.unwrap_or(if batch <= 16 { 20 } else { 10 });
                    for &graphs in graph_modes {
                        let t = median_step(gpu, batch, size, graphs, 3, steps)?;
                        report(&mut rows, gpu, batch, size, graphs, steps, t)?;
                    }
                }
            }
            gpu.set_precision(Precision::Tf32)?;
            println!("what a steady-state step costs the host on {}", gpu.name());
            for &batch in &batches {
                for &graphs in graph_modes {
                    report_counts(&mut rows, gpu, batch, size, graphs)?;
                }
            }
        }
        Err(why) => println!("GPU figures need a GPU ({why})"),
    }

    if !quick && !cpu_only && !gpu_only {
        let emu = Device::emu();
        println!("what a steady-state step costs the host on emu (the GPU layer's counts)");
        for batch in [16, 128] {
            for &graphs in graph_modes {
                report_counts(&mut rows, &emu, batch, 32, graphs)?;
            }
        }
    }

    if quick {
        let device = Device::cpu();
        println!("train step on {}", device.name());
        let t = median_step(&device, BATCH, 32, false, 1, 1)?;
        report(&mut rows, &device, BATCH, 32, false, 1, t)?;
    } else if !gpu_only {
        let sizes = counts(&args, "--sizes", &[32, 224])?;
        let threads = counts(&args, "--threads", &[1, 2])?;
        let rounds = match flag_value(&args, "--rounds")? {
            Some(r) => r
                .parse::<usize>()
                .ok()
                .filter(|&r| r > 0)
                .with_context(|| format!("--rounds {r:?}: expected a count of at least 1"))?,
            None => 3,
        };
        let gemms = match flag_value(&args, "--cpu-gemms")? {
            Some(list) => list
                .split(',')
                .map(|name| match name.trim() {
                    "matrixmultiply" => Ok(CpuGemm::Matrixmultiply),
                    "gemm" => Ok(CpuGemm::GemmCrate),
                    other => anyhow::bail!(
                        "--cpu-gemms: {other:?} is unknown: expected a list of matrixmultiply and gemm"
                    ),
                })
                .collect::<Result<Vec<_>>>()?,
            None => vec![CpuGemm::active()],
        };
        cpu_against_pytorch(&mut rows, &sizes, &threads, rounds, &gemms)?;
    }
    println!("rows written to {}", rows.path.display());
    Ok(())
}

/// The short name of a matrix multiply, for the table.
fn gemm_name(gemm: CpuGemm) -> &'static str {
    match gemm {
        CpuGemm::Matrixmultiply => "matrixmultiply",
        CpuGemm::GemmCrate => "gemm",
    }
}

/// The processor's name, from /proc/cpuinfo.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("model name"))?;
            Some(line.split_once(':')?.1.trim().to_string())
        })
        .unwrap_or_else(|| "unknown processor".to_string())
}
