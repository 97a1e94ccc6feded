//! Microbenchmarks of every kernel on GoogLeNet's real shapes: `cargo bench --bench kernels`.
//!
//! On a GPU (`cuda:0`), at batch 16 and 128 with 224x224 inputs:
//!
//! - every distinct convolution of the model (`GoogLeNet::layer_geometries`), forward,
//!   backward data and backward filter, in each precision (`--precisions`, default
//!   f32,tf32,bf16: a row each), beside cuDNN on the same shape at the same math:
//!   f32 with `CUDNN_FMA_MATH` (no tensor cores), tf32 with `CUDNN_TENSOR_OP_MATH` on
//!   f32 tensors (TF32 tensor cores, PyTorch's default), bf16 with
//!   `CUDNN_TENSOR_OP_MATH` on bf16 copies of its f32 tensors and f32 compute (cuDNN's
//!   bf16 convolutions take bf16 tensors; ours take f32 ones and round them to bf16 as
//!   they stage them: both multiply bf16 values and sum in f32); cuDNN's fastest
//!   algorithm by timing, as `torch.backends.cudnn.benchmark` picks;
//! - every distinct max pool (3x3/2 between stages, 3x3/1 in the Inception blocks) and
//!   the global average pool, forward and backward;
//! - ReLU forward and backward on the largest and the smallest convolution output;
//! - softmax cross-entropy forward and backward on `[batch, 10]` logits;
//! - one Adam step over all 5,977,530 parameters;
//! - the 28x28 u8 → 224x224 f32 resize of a batch.
//!
//! Each row is one op as the engine calls it (`googlenet::ops`), so its time includes
//! what the op does besides the kernel: allocating and zeroing its output, the bias
//! (convolution forward), the bias gradient (backward filter), several launches where
//! the op has several. cuDNN's convolutions write into buffers allocated beforehand
//! and add no bias. Times are the median over 5 samples of the mean time per call,
//! each sample a run of back-to-back calls lasting about 5 ms between two CUDA events
//! on the device's stream, after 3 warm-up calls. A row gives the time, the achieved
//! TFLOP/s (convolutions: 2 x multiply-adds) or GB/s (the rest: each input read once,
//! each output written once), that as a share of the GPU's ceiling (for convolutions
//! the row's precision's: FP32 CUDA cores, dense TF32 or bf16 tensor cores; HBM
//! bandwidth for the rest), and for convolutions cuDNN's time and ours over it. The
//! ceilings are the datasheet's for the GPU the driver names (`Ceilings::of`: an H100
//! SXM or an H200 SXM, the sm_90 GPUs this runs on); another GPU gets no share. The
//! rows also go to `target/bench-kernels.json` (`--json PATH`), rewritten after each
//! row, so that a run cut short keeps every row it finished.
//!
//! A shape on which no cuDNN algorithm runs in a configuration gets no cuDNN figure,
//! and the rows after it still get theirs; only cuDNN failing outright (or panicking)
//! turns it off for the rest of the run.
//!
//! Without a GPU it runs a smoke version: each benchmark once on the emulator and the
//! CPU, batch 1 at 32x32 unless `--batches`/`--size` say otherwise, so that CI keeps it
//! building and running; its times say nothing about a GPU. `cargo test --benches`
//! (which passes no `--bench`) runs the emulator half only.
//!
//! Flags: `--batches 16,128`, `--size 224`, `--precisions f32,tf32,bf16` (the
//! convolutions'; the CPU takes f32 only), `--filter TEXT` (rows whose kernel, layer or
//! shape contains TEXT), `--json PATH`, `--no-cudnn`.

use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::CudaStream;
use googlenet::engine::device::ceilings::Ceilings;
use googlenet::engine::device::cuda;
use googlenet::engine::device::geometry::{ConvGeometry, PoolGeometry};
use googlenet::engine::nn::LayerGeometry;
use googlenet::engine::ops;
use googlenet::Parameters;
use googlenet::{
    Adam, ByteImages, Device, GoogLeNet, GoogLeNetConfig, Gradients, Init, Labels, Normalize,
    Precision, Tensor,
};
use serde_json::{json, Value};

/// The ceiling of a row: its precision's compute, or HBM bandwidth.
fn ceiling_of(ceilings: &Ceilings, row: &Row) -> f64 {
    match row.work {
        Work::Flops(_) => ceilings.flops(row.precision),
        Work::Bytes(_) => ceilings.hbm_gbps,
    }
}

/// Batch 1 at 32x32 without a GPU: every shape stays valid (GoogLeNet halves the
/// input five times) and the emulator gets through all of it in seconds.
const SMOKE_SIZE: usize = 32;
const SMOKE_BATCH: usize = 1;

/// Set when this program restarted itself with cuDNN's directory on LD_LIBRARY_PATH.
const RESTARTED: &str = "GOOGLENET_BENCH_CUDNN_RESTARTED";

fn main() -> Result<()> {
    let args = Args::parse()?;
    let gpu = if cuda::driver_present() {
        restart_with_cudnn_path();
        Device::cuda(0).map_err(|err| format!("cuda:0 is unusable: {err:#}"))
    } else {
        Err("no CUDA driver found".to_string())
    };
    match gpu {
        Ok(gpu) => run_gpu(&gpu, &args),
        Err(why) => {
            println!("GPU figures need a GPU ({why}); running the smoke version.");
            run_smoke(&args, &why)
        }
    }
}

struct Args {
    /// Default: 16 and 128 on a GPU, 1 in the smoke run.
    batches: Option<Vec<usize>>,
    /// Default: 224 on a GPU, 32 in the smoke run.
    size: Option<usize>,
    filter: Option<String>,
    json: PathBuf,
    cudnn: bool,
    /// The convolutions' precisions, a row each.
    precisions: Vec<Precision>,
    /// `cargo bench` passes `--bench`; `cargo test --benches` does not (a quicker smoke).
    bench: bool,
}

impl Args {
    fn parse() -> Result<Args> {
        let mut args = Args {
            batches: None,
            size: None,
            filter: None,
            json: PathBuf::from("target/bench-kernels.json"),
            cudnn: true,
            precisions: Precision::ALL.to_vec(),
            bench: false,
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
            match arg.as_str() {
                "--bench" => args.bench = true,
                "--no-cudnn" => args.cudnn = false,
                "--batches" => {
                    let list = value("--batches")?
                        .split(',')
                        .map(|b| b.trim().parse().context("--batches: e.g. 16,128"))
                        .collect::<Result<_>>()?;
                    args.batches = Some(list);
                }
                "--precisions" => {
                    args.precisions = value("--precisions")?
                        .split(',')
                        .map(|p| Precision::parse(p.trim()))
                        .collect::<Result<_>>()?;
                }
                "--size" => args.size = Some(value("--size")?.parse().context("--size")?),
                "--filter" => args.filter = Some(value("--filter")?),
                "--json" => args.json = PathBuf::from(value("--json")?),
                other if other.starts_with('-') => eprintln!("ignoring unknown flag {other}"),
                // `cargo bench -- TEXT` passes a bare filter.
                other => args.filter = Some(other.to_string()),
            }
        }
        Ok(args)
    }
}

/// On the GPU machine cuDNN sits in python3's site-packages (nvidia/cudnn/lib), where
/// the dynamic loader does not look, and the loader reads LD_LIBRARY_PATH only when a
/// program starts. So when libcudnn is not found, this program runs itself again, once,
/// with that directory added, and those of the cuBLASLt and NVRTC that cuDNN loads for
/// some of its engines (scripts/gpu-env.sh sets the path for the scripts itself).
fn restart_with_cudnn_path() {
    // SAFETY: only tries to open the library; nothing from it is called.
    if std::env::var_os(RESTARTED).is_some() || unsafe { cudarc::cudnn::sys::is_culib_present() } {
        return;
    }
    let Some(dirs) = python_cudnn_dirs() else {
        return;
    };
    let path = match std::env::var("LD_LIBRARY_PATH") {
        Ok(old) if !old.is_empty() => format!("{dirs}:{old}"),
        _ => dirs.clone(),
    };
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    eprintln!("cuDNN: restarting with {dirs} on LD_LIBRARY_PATH");
    let err = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("LD_LIBRARY_PATH", path)
        .env(RESTARTED, "1")
        .exec();
    eprintln!("cuDNN: cannot restart ({err}); going on without it");
}

/// The directories of python3's NVIDIA wheels that hold libcudnn (nvidia/cudnn/lib in
/// the cuDNN 9 wheels), libcublasLt and libnvrtc, joined by ':'; None without cuDNN.
fn python_cudnn_dirs() -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", FIND_CUDNN])
        .output()
        .ok()?;
    let dirs = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!dirs.is_empty()).then_some(dirs)
}

/// Prints the directories under python3's `nvidia` packages that hold libcudnn and the
/// libraries it loads, or nothing without libcudnn.
const FIND_CUDNN: &str = r#"
import glob, os, nvidia
dirs = []
for name in ("libcudnn.so*", "libcublasLt.so*", "libnvrtc.so*"):
    for root in nvidia.__path__:
        for f in sorted(glob.glob(os.path.join(root, "**", name), recursive=True)):
            if os.path.dirname(f) not in dirs:
                dirs.append(os.path.dirname(f))
    if not dirs:
        raise SystemExit
print(":".join(dirs))
"#;

// ---------------------------------------------------------------------------------
// Timing

/// How many calls a measurement makes.
#[derive(Clone, Copy)]
struct Plan {
    /// Untimed calls first (module loading, allocator pools, clocks).
    warmup: usize,
    /// Samples after the one call that sizes them; 0: that call is the measurement.
    samples: usize,
    /// Each sample repeats the call for about this long.
    sample_s: f64,
}

const GPU_PLAN: Plan = Plan {
    warmup: 3,
    samples: 5,
    sample_s: 5e-3,
};
/// Enough to rank cuDNN's algorithms; the winner is then timed with `GPU_PLAN`.
const SEARCH_PLAN: Plan = Plan {
    warmup: 1,
    samples: 1,
    sample_s: 2e-3,
};
const SMOKE_PLAN: Plan = Plan {
    warmup: 0,
    samples: 0,
    sample_s: 0.0,
};

#[derive(Clone, Copy)]
struct Timing {
    /// Median seconds per call.
    seconds: f64,
    /// Calls timed in all.
    calls: usize,
}

/// CUDA events on the device's stream on a GPU; the host clock, after synchronizing,
/// elsewhere.
struct Timer {
    device: Device,
    stream: Option<Arc<CudaStream>>,
}

impl Timer {
    fn new(device: &Device) -> Timer {
        Timer {
            device: device.clone(),
            stream: device.cuda_stream(),
        }
    }

    fn time(&self, plan: Plan, f: &mut dyn FnMut() -> Result<()>) -> Result<Timing> {
        for _ in 0..plan.warmup {
            f()?;
        }
        let one = self.span(1, f)?;
        if plan.samples == 0 {
            return Ok(Timing {
                seconds: one,
                calls: 1,
            });
        }
        let reps = (plan.sample_s / one.max(1e-7)).ceil().clamp(1.0, 10_000.0) as usize;
        let mut samples = (0..plan.samples)
            .map(|_| self.span(reps, f))
            .collect::<Result<Vec<_>>>()?;
        samples.sort_by(f64::total_cmp);
        Ok(Timing {
            seconds: samples[samples.len() / 2],
            calls: 1 + reps * plan.samples,
        })
    }

    /// Mean seconds per call over `reps` back-to-back calls.
    fn span(&self, reps: usize, f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
        match &self.stream {
            Some(stream) => {
                let flags = Some(CUevent_flags::CU_EVENT_DEFAULT);
                let start = stream.record_event(flags)?;
                for _ in 0..reps {
                    f()?;
                }
                let end = stream.record_event(flags)?;
                Ok(f64::from(start.elapsed_ms(&end)?) * 1e-3 / reps as f64)
            }
            None => {
                self.device.synchronize()?;
                let start = Instant::now();
                for _ in 0..reps {
                    f()?;
                }
                self.device.synchronize()?;
                Ok(start.elapsed().as_secs_f64() / reps as f64)
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Rows

#[derive(Clone, Copy)]
enum Work {
    /// Floating-point operations (convolutions).
    Flops(f64),
    /// The fewest bytes the op must move through device memory.
    Bytes(f64),
}

struct Row {
    device: String,
    batch: usize,
    size: usize,
    kernel: &'static str,
    /// The GEMMs' precision (f32 for the rows without one).
    precision: Precision,
    /// The model's layers with this shape (how often the op runs per step).
    layers: Vec<String>,
    shape: String,
    timing: Timing,
    work: Work,
    /// cuDNN on the same convolution: seconds and algorithm.
    cudnn: Option<(f64, String)>,
}

impl Row {
    fn rate(&self) -> (f64, &'static str) {
        match self.work {
            Work::Flops(f) => (f / self.timing.seconds * 1e-12, "TFLOP/s"),
            Work::Bytes(b) => (b / self.timing.seconds * 1e-9, "GB/s"),
        }
    }

    /// Share of the ceiling, in percent.
    fn percent_of(&self, ceilings: &Ceilings) -> f64 {
        self.rate().0 / ceiling_of(ceilings, self) * 100.0
    }

    fn layer_label(&self) -> String {
        match self.layers.len() {
            0 => String::new(),
            1 => self.layers[0].clone(),
            n => format!("{} (+{})", self.layers[0], n - 1),
        }
    }

    fn json(&self, ceilings: Option<&Ceilings>) -> Value {
        let (rate, unit) = self.rate();
        let mut row = json!({
            "device": self.device,
            "batch": self.batch,
            "image_size": self.size,
            "kernel": self.kernel,
            "precision": self.precision.name(),
            "layers": self.layers,
            "shape": self.shape,
            "time_us": self.timing.seconds * 1e6,
            "calls_timed": self.timing.calls,
        });
        match self.work {
            Work::Flops(f) => {
                row["flops"] = json!(f);
                row["tflops"] = json!(rate);
            }
            Work::Bytes(b) => {
                row["bytes"] = json!(b);
                row["gbps"] = json!(rate);
            }
        }
        if let Some(c) = ceilings {
            row["percent_of_ceiling"] = json!(self.percent_of(c));
            row["ceiling"] = json!(format!("{} {} {unit}", c.gpu, ceiling_of(c, self)));
        }
        if let Some((seconds, algo)) = &self.cudnn {
            row["cudnn_us"] = json!(seconds * 1e6);
            row["cudnn_algo"] = json!(algo);
            if let Work::Flops(f) = self.work {
                row["cudnn_tflops"] = json!(f / seconds * 1e-12);
            }
            row["ours_over_cudnn"] = json!(self.timing.seconds / seconds);
        }
        row
    }
}

/// 5977530 -> "5,977,530".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn conv_shape(g: &ConvGeometry) -> String {
    format!(
        "{}x{}x{} k{}s{}p{} -> {}x{}x{}",
        g.c_in, g.h, g.w, g.k, g.stride, g.pad, g.c_out, g.oh, g.ow
    )
}

fn pool_shape(g: &PoolGeometry) -> String {
    format!(
        "{}x{}x{} {}x{}/{} p{} -> {}x{}x{}",
        g.c, g.h, g.w, g.kh, g.kw, g.stride, g.pad, g.c, g.oh, g.ow
    )
}

fn print_table(title: &str, rows: &[Row], ceilings: Option<&Ceilings>) {
    println!("\n{title}");
    println!(
        "{:<17} {:<5} {:<28} {:<32} {:>10} {:>17} {:>7} {:>10} {:>7}",
        "kernel", "prec", "layer", "shape", "time µs", "rate", "% peak", "cuDNN µs", "/cuDNN"
    );
    for row in rows {
        let (rate, unit) = row.rate();
        let percent = ceilings.map_or("-".into(), |c| format!("{:.1}", row.percent_of(c)));
        let (cudnn, ratio) = match &row.cudnn {
            Some((s, _)) => (
                format!("{:.1}", s * 1e6),
                format!("{:.2}", row.timing.seconds / s),
            ),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{:<17} {:<5} {:<28} {:<32} {:>10.1} {:>9.2} {:<7} {:>7} {:>10} {:>7}",
            row.kernel,
            row.precision.name(),
            row.layer_label(),
            row.shape,
            row.timing.seconds * 1e6,
            rate,
            unit,
            percent,
            cudnn,
            ratio
        );
    }
}

// ---------------------------------------------------------------------------------
// The benchmarks

/// Deterministic values in [-1, 1): never zeros, which can hide wrong indexing and run
/// faster than real data.
fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn tensor(device: &Device, shape: &[usize], seed: u64) -> Result<Tensor> {
    Tensor::from_vec(device, shape, random(shape.iter().product(), seed))
}

/// Each distinct geometry once, with the names of the layers that have it.
fn distinct<G: PartialEq + Copy>(
    layers: impl Iterator<Item = (String, G)>,
) -> Vec<(G, Vec<String>)> {
    let mut out: Vec<(G, Vec<String>)> = Vec::new();
    for (name, g) in layers {
        match out.iter_mut().find(|(h, _)| *h == g) {
            Some((_, names)) => names.push(name),
            None => out.push((g, vec![name])),
        }
    }
    out
}

struct Suite<'a> {
    device: Device,
    timer: Timer,
    plan: Plan,
    filter: Option<&'a str>,
    cudnn: Option<reference::Cudnn>,
    rows: Vec<Row>,
    /// Where every row goes as it is measured.
    report: &'a mut Report,
    /// The index in `report.rows` of this suite's first row.
    first_reported: usize,
    /// The batch and image size being run.
    batch: usize,
    size: usize,
    /// The precision of the convolution rows being run.
    precision: Precision,
    precisions: &'a [Precision],
}

impl Suite<'_> {
    fn wanted(&self, kernel: &str, layers: &[String], shape: &str) -> bool {
        self.filter.is_none_or(|f| {
            kernel.contains(f) || shape.contains(f) || layers.iter().any(|l| l.contains(f))
        })
    }

    /// Times `f` as a row of the current batch, unless the filter leaves it out.
    fn run(
        &mut self,
        kernel: &'static str,
        layers: &[String],
        shape: String,
        work: Work,
        f: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Option<usize>> {
        if !self.wanted(kernel, layers, &shape) {
            return Ok(None);
        }
        // A failing op is reported and skipped, so that one bad shape does not cost
        // the rest of a GPU run.
        let timing = match self.timer.time(self.plan, f) {
            Ok(timing) => timing,
            Err(err) => {
                let line = format!("error: {kernel} on {shape} (batch {}): {err:#}", self.batch);
                println!("{line}");
                self.report.errors.push(line);
                self.report.save()?;
                return Ok(None);
            }
        };
        self.rows.push(Row {
            device: self.device.name(),
            batch: self.batch,
            size: self.size,
            kernel,
            precision: if kernel.starts_with("conv") {
                self.precision
            } else {
                Precision::F32
            },
            layers: layers.to_vec(),
            shape,
            timing,
            work,
            cudnn: None,
        });
        let row = self.rows.len() - 1;
        self.reported(row)?;
        Ok(Some(row))
    }

    /// Row `row` (new, or with cuDNN's figures added) into the report, which is saved.
    fn reported(&mut self, row: usize) -> Result<()> {
        let value = self.rows[row].json(self.report.ceilings.as_ref());
        let at = self.first_reported + row;
        if at < self.report.rows.len() {
            self.report.rows[at] = value;
        } else {
            self.report.rows.push(value);
        }
        self.report.save()
    }

    /// cuDNN on the convolution of row `row`, when there is cuDNN. A shape no cuDNN
    /// algorithm runs gets no figure; cuDNN failing (or a panic in the bindings) turns
    /// it off for the rest of the run.
    fn compare(
        &mut self,
        row: Option<usize>,
        g: &ConvGeometry,
        pass: reference::Pass,
    ) -> Result<()> {
        let (Some(row), Some(cudnn)) = (row, &self.cudnn) else {
            return Ok(());
        };
        let precision = self.precision;
        let result = catch_unwind(AssertUnwindSafe(|| {
            cudnn.time(&self.timer, g, pass, precision)
        }));
        match result {
            Ok(Ok(Some(found))) => {
                self.rows[row].cudnn = Some(found);
                self.reported(row)?;
            }
            Ok(Ok(None)) => println!(
                "cuDNN has no algorithm for {} ({pass:?}) in {precision}: no ratio on this row",
                conv_shape(g)
            ),
            Ok(Err(err)) => {
                println!(
                    "cuDNN failed on {} ({pass:?}): {err:#}; no more ratios",
                    conv_shape(g)
                );
                self.cudnn = None;
            }
            Err(_) => {
                println!(
                    "cuDNN panicked on {} ({pass:?}); no more ratios",
                    conv_shape(g)
                );
                self.cudnn = None;
            }
        }
        Ok(())
    }

    /// Every benchmark at one batch size; returns the first row's index.
    fn batch(
        &mut self,
        net: &GoogLeNet,
        params: &mut Parameters,
        batch: usize,
        size: usize,
    ) -> Result<usize> {
        let first = self.rows.len();
        (self.batch, self.size) = (batch, size);
        let dev = self.device.clone();
        let layers = net.layer_geometries(batch, size)?;
        let convs = distinct(layers.iter().filter_map(|(name, l)| match l {
            LayerGeometry::Conv(g) => Some((name.clone(), *g)),
            _ => None,
        }));
        let max_pools = distinct(layers.iter().filter_map(|(name, l)| match l {
            LayerGeometry::MaxPool(g) => Some((name.clone(), *g)),
            _ => None,
        }));
        let avg_pools = distinct(layers.iter().filter_map(|(name, l)| match l {
            LayerGeometry::AvgPool(g) => Some((name.clone(), *g)),
            _ => None,
        }));

        for (i, (g, names)) in convs.iter().enumerate() {
            for &precision in self.precisions {
                // The CPU refuses all but f32: its rows are f32 only.
                if dev.set_precision(precision).is_err() {
                    continue;
                }
                self.precision = precision;
                let seed = 1000 * i as u64;
                let x = tensor(&dev, &g.input_shape(), seed)?;
                let w = tensor(&dev, &g.weight_shape(), seed + 1)?;
                let b = tensor(&dev, &[g.c_out], seed + 2)?;
                let dy = tensor(&dev, &g.output_shape(), seed + 3)?;
                let flops = Work::Flops(2.0 * g.macs() as f64);
                let shape = conv_shape(g);
                let row = self.run("conv fwd", names, shape.clone(), flops, &mut || {
                    ops::conv2d(&x, &w, &b, g, true).map(drop)
                })?;
                self.compare(row, g, reference::Pass::Forward)?;
                let row = self.run("conv bwd data", names, shape.clone(), flops, &mut || {
                    ops::conv2d_bwd_data(&[ops::ConvGrad::whole(&dy)], &[&w], g, None).map(drop)
                })?;
                self.compare(row, g, reference::Pass::BackwardData)?;
                let row = self.run("conv bwd filter", names, shape, flops, &mut || {
                    ops::conv2d_bwd_filter(&x, &[ops::ConvGrad::whole(&dy)], g).map(drop)
                })?;
                self.compare(row, g, reference::Pass::BackwardFilter)?;
            }
        }
        self.precision = Precision::F32;

        // ReLU follows every convolution: the largest and the smallest output.
        let by_len =
            |(g, _): &&(ConvGeometry, Vec<String>)| g.output_shape().iter().product::<usize>();
        let largest = convs.iter().max_by_key(by_len);
        let smallest = convs.iter().min_by_key(by_len);
        for (g, names) in largest.into_iter().chain(smallest) {
            let shape = g.output_shape();
            let len = shape.iter().product::<usize>() as f64;
            let label = format!("{}x{}x{}", shape[1], shape[2], shape[3]);
            let x = tensor(&dev, &shape, 7)?;
            let y = ops::relu(&x)?;
            let dy = tensor(&dev, &shape, 8)?;
            self.run(
                "relu fwd",
                names,
                label.clone(),
                Work::Bytes(8.0 * len),
                &mut || ops::relu(&x).map(drop),
            )?;
            self.run(
                "relu bwd",
                names,
                label,
                Work::Bytes(12.0 * len),
                &mut || ops::relu_bwd(&y, &dy).map(drop),
            )?;
        }

        for (g, names) in &max_pools {
            let (input, output) = (g.input_shape(), g.output_shape());
            let (inp, out) = (
                input.iter().product::<usize>() as f64,
                output.iter().product::<usize>() as f64,
            );
            let x = tensor(&dev, &input, 11)?;
            let dy = tensor(&dev, &output, 12)?;
            let (_, argmax) = ops::max_pool(&x, g)?;
            // Reads x; writes y and the argmax.
            let fwd = Work::Bytes(4.0 * (inp + 2.0 * out));
            // Reads dy and the argmax; writes dx.
            let bwd = Work::Bytes(4.0 * (2.0 * out + inp));
            self.run("max pool fwd", names, pool_shape(g), fwd, &mut || {
                ops::max_pool(&x, g).map(drop)
            })?;
            self.run("max pool bwd", names, pool_shape(g), bwd, &mut || {
                ops::max_pool_bwd(&dy, &argmax, g).map(drop)
            })?;
        }
        for (g, names) in &avg_pools {
            let (input, output) = (g.input_shape(), g.output_shape());
            let bytes = Work::Bytes(
                4.0 * (input.iter().product::<usize>() + output.iter().product::<usize>()) as f64,
            );
            let x = tensor(&dev, &input, 13)?;
            let dy = tensor(&dev, &output, 14)?;
            self.run("avg pool fwd", names, pool_shape(g), bytes, &mut || {
                ops::avg_pool(&x, g).map(drop)
            })?;
            self.run("avg pool bwd", names, pool_shape(g), bytes, &mut || {
                ops::avg_pool_bwd(&dy, g).map(drop)
            })?;
        }

        let classes = net.config().classes;
        let logits = tensor(&dev, &[batch, classes], 21)?;
        let labels: Vec<u32> = (0..batch as u32).map(|i| i % classes as u32).collect();
        let labels = Labels::new(&dev, &labels, classes)?;
        let dloss = Tensor::full(&dev, &[1], 1.0)?;
        let (_, probs) = ops::cross_entropy(&logits, &labels)?;
        let fc = vec!["fc".to_string()];
        let nc = (batch * classes) as f64;
        let label = format!("{batch}x{classes}");
        // Reads logits and labels; writes probabilities, per-row terms and the loss.
        let fwd = Work::Bytes(4.0 * (2.0 * nc + 2.0 * batch as f64 + 1.0));
        // Reads probabilities, labels and dloss; writes dlogits.
        let bwd = Work::Bytes(4.0 * (2.0 * nc + batch as f64 + 1.0));
        self.run("cross-entropy fwd", &fc, label.clone(), fwd, &mut || {
            ops::cross_entropy(&logits, &labels).map(drop)
        })?;
        self.run("cross-entropy bwd", &fc, label, bwd, &mut || {
            ops::cross_entropy_bwd(&probs, &labels, &dloss).map(drop)
        })?;

        // Adam: reads parameter, gradient and both moments; writes all but the gradient.
        let count = params.scalar_count();
        let grads = Gradients(
            params
                .iter()
                .enumerate()
                .map(|(i, p)| tensor(&dev, p.value.shape(), 31 + i as u64).map(Some))
                .collect::<Result<_>>()?,
        );
        let mut adam = Adam::new(params, 1e-3)?;
        let label = format!("{} tensors, {} values", params.len(), thousands(count));
        self.run(
            "adam step",
            &[],
            label,
            Work::Bytes(28.0 * count as f64),
            &mut || adam.step(params, &grads),
        )?;

        // The batch resize: gathers u8 28x28 images by index, writes f32 size x size.
        let (count, side) = (4096, 28);
        let pixels = random(count * side * side, 41)
            .iter()
            .map(|v| ((v + 1.0) * 127.5) as u8)
            .collect();
        let images = ByteImages::new(&dev, pixels, count, side, side)?;
        // Scattered, as a shuffled epoch's are.
        let indices: Vec<u32> = (0..batch as u64)
            .map(|i| (i * 2_654_435_761 % count as u64) as u32)
            .collect();
        let bytes = (batch * (side * side + 4 + 4 * size * size)) as f64;
        let label = format!("{side}x{side} u8 -> {size}x{size} f32");
        self.run("resize", &[], label, Work::Bytes(bytes), &mut || {
            images
                .resize_batch_normalized(&indices, size, Normalize::FASHION_MNIST)
                .map(drop)
        })?;
        Ok(first)
    }
}

/// The convolutions of one training step at one batch, ours and cuDNN's (over the
/// rows cuDNN has a figure for, all of them or some): each distinct shape times the
/// layers that have it. The network's input carries no gradient, so conv1's backward
/// data never runs in training.
fn conv_step_summary(rows: &[Row], precision: Precision) -> Option<String> {
    let (mut ours, mut flops, mut count_rows) = (0.0, 0.0, 0);
    // Ours and cuDNN's over the rows cuDNN has.
    let (mut ours_matched, mut theirs, mut matched) = (0.0, 0.0, 0);
    let convs = rows.iter().filter(|r| r.kernel.starts_with("conv"));
    for row in convs.filter(|r| r.precision == precision) {
        let mut count = row.layers.len() as f64;
        if row.kernel == "conv bwd data" && row.layers.iter().any(|l| l == "conv1.0") {
            count -= 1.0;
        }
        ours += count * row.timing.seconds;
        count_rows += 1;
        if let Work::Flops(f) = row.work {
            flops += count * f;
        }
        if let Some((s, _)) = &row.cudnn {
            ours_matched += count * row.timing.seconds;
            theirs += count * s;
            matched += 1;
        }
    }
    if ours == 0.0 {
        return None;
    }
    let mut line = format!(
        "convolutions of one step in {precision}: {:.2} ms, {:.2} TFLOP/s",
        ours * 1e3,
        flops / ours * 1e-12
    );
    if matched == count_rows {
        let _ = write!(
            line,
            "; cuDNN {:.2} ms, {:.2} TFLOP/s; ours/cuDNN {:.2}",
            theirs * 1e3,
            flops / theirs * 1e-12,
            ours / theirs
        );
    } else if matched > 0 {
        let _ = write!(
            line,
            "; cuDNN on {matched} of {count_rows} rows: {:.2} ms there, ours {:.2} ms; \
             ours/cuDNN {:.2}",
            theirs * 1e3,
            ours_matched * 1e3,
            ours_matched / theirs
        );
    }
    Some(line)
}

/// What goes to `--json`: the run's header, every row so far, each batch's convolution
/// summary, and the rows that failed. Saved again after each row, so that a run killed
/// at its time limit (the GPU check's can be) keeps every row it finished.
struct Report {
    path: PathBuf,
    header: Value,
    /// The GPU's ceilings, when known: each row's share of them.
    ceilings: Option<Ceilings>,
    rows: Vec<Value>,
    summaries: Vec<Value>,
    errors: Vec<String>,
}

impl Report {
    fn new(path: &Path, header: Value, ceilings: Option<Ceilings>) -> Result<Report> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let report = Report {
            path: path.to_path_buf(),
            header,
            ceilings,
            rows: Vec::new(),
            summaries: Vec::new(),
            errors: Vec::new(),
        };
        report.save()?;
        Ok(report)
    }

    /// Written beside and renamed over the file, so that a kill mid-write leaves the
    /// last whole file, never half of one.
    fn save(&self) -> Result<()> {
        let mut doc = self.header.clone();
        doc["conv_step_summaries"] = json!(self.summaries);
        doc["errors"] = json!(self.errors);
        doc["rows"] = json!(self.rows);
        let partial = self.path.with_extension("json.partial");
        std::fs::write(&partial, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, &self.path)
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

fn run_gpu(gpu: &Device, args: &Args) -> Result<()> {
    println!("kernel microbenchmarks on {}", gpu.name());
    let stream = gpu
        .cuda_stream()
        .context("a cuda device without a stream")?;
    let gpu_name = stream
        .context()
        .name()
        .context("cannot read the GPU's name")?;
    let ceilings = Ceilings::of(&gpu_name);
    match &ceilings {
        Some(c) => println!(
            "{} ceilings (convolutions' % peak by precision): FP32 {} TFLOP/s, TF32 tensor \
             {} dense, bf16 tensor {} dense; HBM {} GB/s (the rest's % peak)",
            c.gpu, c.fp32_tflops, c.tf32_tflops, c.bf16_tflops, c.hbm_gbps
        ),
        None => println!(
            "ceilings: none known for {gpu_name} (only the H100 SXM's and the H200 SXM's): \
             no % peak column"
        ),
    }
    let (cudnn, cudnn_note) = if args.cudnn {
        match catch_unwind(|| reference::Cudnn::open(&stream)) {
            Ok(Ok(c)) => {
                let note = format!("cuDNN {} ({})", c.version, reference::configs());
                (Some(c), note)
            }
            Ok(Err(why)) => (None, format!("cuDNN not found: no ratio ({why})")),
            Err(_) => (
                None,
                "cuDNN not found: no ratio (loading it panicked)".to_string(),
            ),
        }
    } else {
        (None, "cuDNN skipped (--no-cudnn)".to_string())
    };
    println!("{cudnn_note}");

    let size = args.size.unwrap_or(224);
    let batches = args.batches.clone().unwrap_or(vec![16, 128]);
    warm_up(gpu, size)?;
    let header = json!({
        "device": gpu.name(),
        "gpu": true,
        "cudnn": cudnn_note,
        "image_size": size,
        "ceilings": ceilings.as_ref().map(|c| json!({
            "gpu": c.gpu,
            "fp32_tflops": c.fp32_tflops,
            "tf32_tensor_dense_tflops": c.tf32_tflops,
            "bf16_tensor_dense_tflops": c.bf16_tflops,
            "hbm_gbps": c.hbm_gbps,
            "source": c.source,
        })),
        "timing": "CUDA events; median of 5 samples of ~5 ms of back-to-back calls, after 3 warm-up calls",
    });
    let mut report = Report::new(&args.json, header, ceilings)?;
    run_batches(gpu, GPU_PLAN, cudnn, args, &batches, size, &mut report)?;
    println!("\nrows written to {}", args.json.display());
    let errors = report.errors.len();
    if errors > 0 {
        bail!("{errors} row(s) failed: see the lines starting with \"error:\" above");
    }
    Ok(())
}

/// Every benchmark at each batch size on one device, into `report` row by row, each
/// batch's table and convolution summaries printed as it finishes.
fn run_batches(
    device: &Device,
    plan: Plan,
    cudnn: Option<reference::Cudnn>,
    args: &Args,
    batches: &[usize],
    size: usize,
    report: &mut Report,
) -> Result<()> {
    let (net, mut params) =
        GoogLeNet::new(device, GoogLeNetConfig::default(), Init::PyTorchDefault, 0)?;
    let first_reported = report.rows.len();
    let mut suite = Suite {
        device: device.clone(),
        timer: Timer::new(device),
        plan,
        filter: args.filter.as_deref(),
        cudnn,
        rows: Vec::new(),
        report,
        first_reported,
        batch: 0,
        size: 0,
        precision: Precision::F32,
        precisions: &args.precisions,
    };
    for &batch in batches {
        let started = Instant::now();
        let first = suite.batch(&net, &mut params, batch, size)?;
        let layers = net.layer_geometries(batch, size)?;
        let convs: Vec<_> = layers
            .iter()
            .filter_map(|(name, l)| match l {
                LayerGeometry::Conv(g) => Some((name.clone(), *g)),
                _ => None,
            })
            .collect();
        let how = if device.cuda_stream().is_some() {
            "CUDA events"
        } else {
            "each op once, host clock; not GPU figures"
        };
        print_table(
            &format!(
                "{}: batch {batch}, {size}x{size}, {} distinct convolutions of {} ({how}; {:.1} s)",
                device.name(),
                distinct(convs.iter().cloned()).len(),
                convs.len(),
                started.elapsed().as_secs_f64()
            ),
            &suite.rows[first..],
            suite.report.ceilings.as_ref(),
        );
        // A filtered run would sum only some passes.
        for &precision in args.precisions.iter().filter(|_| args.filter.is_none()) {
            if let Some(line) = conv_step_summary(&suite.rows[first..], precision) {
                println!("{line}");
                suite.report.summaries.push(json!({
                    "device": device.name(),
                    "batch": batch,
                    "precision": precision.name(),
                    "summary": line,
                }));
            }
        }
        suite.report.save()?;
    }
    Ok(())
}

/// The GPU idles at a few hundred MHz: half a second of convolutions (conv1's, at
/// batch 16) brings its clocks up before the first timed row.
fn warm_up(gpu: &Device, size: usize) -> Result<()> {
    let (net, _) = GoogLeNet::new(gpu, GoogLeNetConfig::default(), Init::PyTorchDefault, 0)?;
    let layers = net.layer_geometries(16, size)?;
    let Some(g) = layers.iter().find_map(|(_, l)| match l {
        LayerGeometry::Conv(g) => Some(*g),
        _ => None,
    }) else {
        return Ok(());
    };
    let x = tensor(gpu, &g.input_shape(), 1)?;
    let w = tensor(gpu, &g.weight_shape(), 2)?;
    let b = tensor(gpu, &[g.c_out], 3)?;
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < 0.5 {
        for _ in 0..10 {
            ops::conv2d(&x, &w, &b, &g, true)?;
        }
        gpu.synchronize()?;
    }
    Ok(())
}

fn run_smoke(args: &Args, why: &str) -> Result<()> {
    // `cargo test --benches` (no --bench): the emulator only, which runs the GPU's
    // kernels and launch code, to keep it quick.
    let devices = if args.bench {
        vec![Device::emu(), Device::cpu()]
    } else {
        vec![Device::emu()]
    };
    let size = args.size.unwrap_or(SMOKE_SIZE);
    let batches = args.batches.clone().unwrap_or(vec![SMOKE_BATCH]);
    let header = json!({
        "device": "none (smoke run: no GPU)",
        "gpu": false,
        "note": format!("GPU figures need a GPU ({why}); these rows time each op once"),
        "image_size": size,
    });
    let mut report = Report::new(&args.json, header, None)?;
    for device in devices {
        run_batches(&device, SMOKE_PLAN, None, args, &batches, size, &mut report)?;
    }
    println!("\nrows written to {}", args.json.display());
    reference::check_host_tensors()?;
    println!(
        "cuDNN not run (no GPU); its rows would be {}: their host tensors checked",
        reference::configs()
    );
    if !report.errors.is_empty() {
        bail!(
            "{} row(s) failed: see the lines starting with \"error:\" above",
            report.errors.len()
        );
    }
    println!(
        "GPU figures need a GPU ({why}): scripts/gpu-check.sh runs this on one at batch 16, \
         scripts/gpu-bench.sh at 128 (docs/GPU.md)."
    );
    Ok(())
}

// ---------------------------------------------------------------------------------
// cuDNN

/// cuDNN's convolutions on the same shapes, through cudarc's safe bindings, loaded at
/// run time (cudarc's `dynamic-loading`): nothing of cuDNN is needed to build, and a
/// machine without it only loses the ratios.
mod reference {
    use std::sync::Arc;

    use anyhow::{ensure, Result};
    use cudarc::cudnn::sys::{
        cudnnConvolutionBwdDataAlgo_t as BwdDataAlgo,
        cudnnConvolutionBwdFilterAlgo_t as BwdFilterAlgo, cudnnConvolutionFwdAlgo_t as FwdAlgo,
        cudnnConvolutionMode_t, cudnnMathType_t, cudnnTensorFormat_t,
    };
    use cudarc::cudnn::{
        self, ConvBackwardData, ConvBackwardFilter, ConvForward, CudnnDataType, CudnnError,
    };
    use cudarc::driver::{CudaSlice, CudaStream, DeviceRepr};
    use googlenet::engine::device::geometry::ConvGeometry;
    use half::bf16;

    use super::{random, Precision, Timer, GPU_PLAN, SEARCH_PLAN};

    /// Algorithms whose workspace would exceed this are skipped.
    const MAX_WORKSPACE: usize = 16 << 30;

    const FWD: [FwdAlgo; 8] = [
        FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
        FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
        FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
        FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_DIRECT,
        FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_FFT,
        FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING,
        FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD,
        FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED,
    ];
    const BWD_DATA: [BwdDataAlgo; 6] = [
        BwdDataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_0,
        BwdDataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
        BwdDataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT,
        BwdDataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING,
        BwdDataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD,
        BwdDataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED,
    ];
    const BWD_FILTER: [BwdFilterAlgo; 6] = [
        BwdFilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0,
        BwdFilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
        BwdFilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT,
        BwdFilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3,
        BwdFilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED,
        BwdFilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING,
    ];

    #[derive(Clone, Copy, Debug)]
    pub enum Pass {
        Forward,
        BackwardData,
        BackwardFilter,
    }

    pub struct Cudnn {
        handle: Arc<cudnn::Cudnn>,
        stream: Arc<CudaStream>,
        pub version: String,
    }

    /// cuDNN's math mode for our kernels' precision, and whether its tensors are bf16
    /// copies of ours (else ours, f32): FMA only for f32 (CUDNN_DEFAULT_MATH would let
    /// FP32 convolutions use TF32 tensor cores), tensor cores for tf32 on f32 tensors
    /// and for bf16 on bf16 ones, whose convolutions cuDNN only runs on bf16 tensors.
    /// The compute type is f32 in all three (cuDNN's PSEUDO_BFLOAT16 configuration for
    /// bf16), as our kernels accumulate in f32.
    pub fn config(precision: Precision) -> (cudnnMathType_t, bool) {
        match precision {
            Precision::F32 => (cudnnMathType_t::CUDNN_FMA_MATH, false),
            Precision::Tf32 => (cudnnMathType_t::CUDNN_TENSOR_OP_MATH, false),
            Precision::Bf16 => (cudnnMathType_t::CUDNN_TENSOR_OP_MATH, true),
        }
    }

    /// The configurations in words, for the run's header.
    pub fn configs() -> String {
        [Precision::F32, Precision::Tf32, Precision::Bf16]
            .map(|p| {
                let (math, bf16_tensors) = config(p);
                let tensors = if bf16_tensors { "bf16" } else { "f32" };
                format!("{p} rows: {math:?} on {tensors} tensors, f32 compute")
            })
            .join("; ")
    }

    /// An element type of cuDNN's tensors here: f32, or bf16 (cuDNN scales both by f32).
    pub trait Element: CudnnDataType<Scalar = f32> + DeviceRepr + Copy {
        fn from_f32(v: f32) -> Self;
    }
    impl Element for f32 {
        fn from_f32(v: f32) -> f32 {
            v
        }
    }
    impl Element for bf16 {
        /// Round to nearest even, as our bf16 kernels round their operands.
        fn from_f32(v: f32) -> bf16 {
            bf16::from_f32(v)
        }
    }

    /// The values cuDNN's tensor of `len` elements holds: `random(len, seed)`, as ours
    /// hold, in cuDNN's element type.
    pub fn host_tensor<T: Element>(len: usize, seed: u64) -> Vec<T> {
        random(len, seed).into_iter().map(T::from_f32).collect()
    }

    /// What the smoke run (no GPU, no cuDNN) can check of the cuDNN rows: the f32 rows'
    /// tensors are `random`'s values, and the bf16 rows' are those rounded to bf16 (to
    /// nearest: within 2^-8 relative), not zeros or the f32 bits reinterpreted.
    pub fn check_host_tensors() -> Result<()> {
        const LEN: usize = 4096;
        let ours = random(LEN, 51);
        ensure!(
            host_tensor::<f32>(LEN, 51) == ours,
            "f32 tensors differ from ours"
        );
        for (i, (v, b)) in ours.iter().zip(host_tensor::<bf16>(LEN, 51)).enumerate() {
            let error = (b.to_f32() - v).abs();
            ensure!(
                error <= v.abs() / 256.0,
                "bf16 tensor element {i}: {} for {v}",
                b.to_f32()
            );
        }
        Ok(())
    }

    impl Cudnn {
        /// A cuDNN handle on `stream` (the engine's), or why there is none.
        pub fn open(stream: &Arc<CudaStream>) -> Result<Cudnn, String> {
            // SAFETY: only tries to open the library; nothing from it is called.
            if !unsafe { cudnn::sys::is_culib_present() } {
                return Err("libcudnn is not on the library path; scripts/gpu-env.sh \
                            puts python3's nvidia/cudnn/lib there"
                    .into());
            }
            let v = cudnn::result::get_version();
            let version = format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100);
            let handle = cudnn::Cudnn::new(stream.clone())
                .map_err(|e| format!("cuDNN {version} does not start: {e}"))?;
            Ok(Cudnn {
                handle,
                stream: stream.clone(),
                version,
            })
        }

        /// cuDNN's fastest algorithm on `g` in its counterpart of `precision` (`config`;
        /// each algorithm tried, timed, the fastest timed again as our rows are):
        /// seconds per call and the algorithm's name; `None` when no algorithm runs
        /// this shape in this configuration.
        pub fn time(
            &self,
            timer: &Timer,
            g: &ConvGeometry,
            pass: Pass,
            precision: Precision,
        ) -> Result<Option<(f64, String)>> {
            match config(precision) {
                (math, false) => self.time_as::<f32>(timer, g, pass, math),
                (math, true) => self.time_as::<bf16>(timer, g, pass, math),
            }
        }

        /// `time` on tensors of element type T.
        fn time_as<T: Element>(
            &self,
            timer: &Timer,
            g: &ConvGeometry,
            pass: Pass,
            math: cudnnMathType_t,
        ) -> Result<Option<(f64, String)>> {
            let c = &self.handle;
            let dims = |s: [usize; 4]| s.map(|d| d as i32);
            let nchw = cudnnTensorFormat_t::CUDNN_TENSOR_NCHW;
            let (p, s) = (g.pad as i32, g.stride as i32);
            let mut conv = c.create_conv2d::<f32>(
                [p, p],
                [s, s],
                [1, 1],
                cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
            )?;
            conv.set_math_type(math)?;
            let x_desc = c.create_4d_tensor::<T>(nchw, dims(g.input_shape()))?;
            let w_desc = c.create_4d_filter::<T>(nchw, dims(g.weight_shape()))?;
            let y_desc = c.create_4d_tensor::<T>(nchw, dims(g.output_shape()))?;
            let len = |s: [usize; 4]| s.iter().product::<usize>();
            let upload = |n: usize, seed: u64| self.stream.clone_htod(&host_tensor::<T>(n, seed));
            let scale = (T::from_f32(1.0), T::from_f32(0.0));
            let mut x = upload(len(g.input_shape()), 51)?;
            let mut w = upload(len(g.weight_shape()), 52)?;
            let mut y = upload(len(g.output_shape()), 53)?;

            match pass {
                Pass::Forward => {
                    let op = ConvForward {
                        conv: &conv,
                        x: &x_desc,
                        w: &w_desc,
                        y: &y_desc,
                    };
                    self.fastest(
                        timer,
                        &FWD,
                        |a| op.get_workspace_size(a),
                        // SAFETY: the buffers have the descriptors' shapes and type.
                        |a, ws| unsafe { op.launch(a, ws, scale, &x, &w, &mut y) },
                    )
                }
                Pass::BackwardData => {
                    let op = ConvBackwardData {
                        conv: &conv,
                        dx: &x_desc,
                        w: &w_desc,
                        dy: &y_desc,
                    };
                    self.fastest(
                        timer,
                        &BWD_DATA,
                        |a| op.get_workspace_size(a),
                        // SAFETY: as above.
                        |a, ws| unsafe { op.launch(a, ws, scale, &mut x, &w, &y) },
                    )
                }
                Pass::BackwardFilter => {
                    let op = ConvBackwardFilter {
                        conv: &conv,
                        x: &x_desc,
                        dw: &w_desc,
                        dy: &y_desc,
                    };
                    self.fastest(
                        timer,
                        &BWD_FILTER,
                        |a| op.get_workspace_size(a),
                        // SAFETY: as above.
                        |a, ws| unsafe { op.launch(a, ws, scale, &x, &mut w, &y) },
                    )
                }
            }
        }

        /// Tries every algorithm that cuDNN supports on this shape (a workspace query or
        /// a first launch that fails means it does not), then times the fastest; `None`
        /// when none runs it.
        fn fastest<A: Copy + std::fmt::Debug>(
            &self,
            timer: &Timer,
            algos: &[A],
            workspace: impl Fn(A) -> Result<usize, CudnnError>,
            mut launch: impl FnMut(A, Option<&mut CudaSlice<u8>>) -> Result<(), CudnnError>,
        ) -> Result<Option<(f64, String)>> {
            let mut best: Option<(f64, A, usize)> = None;
            for &algo in algos {
                let Ok(bytes) = workspace(algo) else { continue };
                if bytes > MAX_WORKSPACE {
                    continue;
                }
                let mut ws = self.workspace(bytes)?;
                if launch(algo, ws.as_mut()).is_err() {
                    continue;
                }
                let t = timer.time(SEARCH_PLAN, &mut || Ok(launch(algo, ws.as_mut())?))?;
                if best.is_none_or(|(b, _, _)| t.seconds < b) {
                    best = Some((t.seconds, algo, bytes));
                }
            }
            let Some((_, algo, bytes)) = best else {
                return Ok(None);
            };
            let mut ws = self.workspace(bytes)?;
            let t = timer.time(GPU_PLAN, &mut || Ok(launch(algo, ws.as_mut())?))?;
            // CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM -> FWD_ALGO_IMPLICIT_GEMM
            let name = format!("{algo:?}").replace("CUDNN_CONVOLUTION_", "");
            Ok(Some((t.seconds, name)))
        }

        fn workspace(&self, bytes: usize) -> Result<Option<CudaSlice<u8>>> {
            Ok(if bytes == 0 {
                None
            } else {
                Some(self.stream.alloc_zeros::<u8>(bytes)?)
            })
        }
    }
}
