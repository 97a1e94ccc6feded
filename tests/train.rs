//! The training loop, checkpoints and the `train` / `eval` programs, end to end on a
//! tiny crafted data set (48 training and 20 test images of 28x28, each class a
//! bright band at its own height) at 16x16.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use googlenet::data::{DataSet, FashionMnist, Split};
use googlenet::training::checkpoint;
use googlenet::training::metrics::{read_records, Record};
use googlenet::training::{self, Observer, Outcome, TrainConfig};
use googlenet::training::{preset, Preset};
use googlenet::{Adam, Device, GoogLeNet, GoogLeNetConfig, Init, Mode, Tape};

const SIDE: usize = 28;

/// Class `label`'s image: a band of rows 2·label + 4 .. + 6 on a dim textured background.
fn band_image(label: u8, variant: usize) -> Vec<u8> {
    (0..SIDE * SIDE)
        .map(|i| {
            let row = i / SIDE;
            let band = row >= 2 * label as usize + 4 && row < 2 * label as usize + 6;
            if band {
                200 + ((i + variant) % 50) as u8
            } else {
                ((i * 7 + variant * 13) % 40) as u8
            }
        })
        .collect()
}

fn band_split(count: usize, offset: usize) -> Split {
    let labels: Vec<u8> = (0..count).map(|i| ((i * 3 + offset) % 10) as u8).collect();
    let images = labels
        .iter()
        .enumerate()
        .flat_map(|(i, &l)| band_image(l, i + offset))
        .collect();
    Split {
        images,
        labels,
        channels: 1,
        rows: SIDE,
        cols: SIDE,
    }
}

fn tiny_data() -> DataSet {
    FashionMnist {
        train: band_split(48, 0),
        test: band_split(20, 1),
        source: PathBuf::from("(crafted)"),
        found_by: "crafted in memory",
    }
    .into()
}

/// The tiny data set as gzip'ed IDX files, for the programs.
fn tiny_data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_data();
    let files = [&data.train, &data.test].map(|s| {
        (
            common::idx::images_idx_from(s.len(), SIDE, &s.images),
            common::idx::labels_idx(&s.labels),
        )
    });
    let [(train_images, train_labels), (test_images, test_labels)] = files;
    common::idx::write_set(
        dir.path(),
        &[train_images, train_labels, test_images, test_labels],
        true,
    );
    dir
}

fn tiny_config() -> TrainConfig {
    TrainConfig {
        epochs: 2,
        batch_size: 8,
        image_size: 16,
        train_limit: None,
        test_limit: None,
        log_every: 2,
        seed: 3,
        // The whole recipe, so resuming is checked with the schedule past its
        // warm-up and with augmentation.
        warmup_steps: 2,
        // The rate and budget these tests were written for (quick's before it took
        // batches of 64 at 3e-3 for 9.5 minutes).
        lr: 0.001,
        time_budget_minutes: None,
        augment: true,
        ..preset(Preset::Quick)
    }
}

/// Collects records; raises `stop` after step `stop_at`.
struct Recorder<'a> {
    records: Vec<Record>,
    steps: u64,
    stop_at: Option<u64>,
    stop: &'a AtomicBool,
}

impl Observer for Recorder<'_> {
    fn step(&mut self, _epoch: usize, _batch: usize, _batches: usize, _loss: Option<f64>) {
        self.steps += 1;
        if Some(self.steps) == self.stop_at {
            self.stop.store(true, Ordering::SeqCst);
        }
    }

    fn record(&mut self, record: &Record) {
        self.records.push(record.clone());
    }
}

fn run(
    run_dir: &Path,
    resume: Option<&Path>,
    config: &TrainConfig,
    stop_at: Option<u64>,
) -> Result<(Outcome, Vec<Record>)> {
    run_on(&tiny_data(), run_dir, resume, config, stop_at)
}

fn run_on(
    data: &DataSet,
    run_dir: &Path,
    resume: Option<&Path>,
    config: &TrainConfig,
    stop_at: Option<u64>,
) -> Result<(Outcome, Vec<Record>)> {
    let stop = AtomicBool::new(false);
    let mut recorder = Recorder {
        records: Vec::new(),
        steps: 0,
        stop_at,
        stop: &stop,
    };
    let outcome = training::train(
        &Device::cpu(),
        data,
        run_dir,
        resume,
        config,
        &stop,
        &mut recorder,
    )?;
    Ok((outcome, recorder.records))
}

fn final_weights(run_dir: &Path, epochs: usize) -> Vec<u8> {
    let dir = run_dir.join("checkpoints").join(format!("epoch-{epochs}"));
    std::fs::read(dir.join(checkpoint::MODEL_FILE)).unwrap()
}

#[test]
fn a_run_logs_evaluates_and_checkpoints() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (outcome, records) = run(tmp.path(), None, &tiny_config(), None)?;
    assert!(matches!(outcome, Outcome::Finished { .. }), "{outcome:?}");
    // 48 images in batches of 8: 6 batches an epoch, a log line every 2.
    let logs = records
        .iter()
        .filter(|r| matches!(r, Record::Log { .. }))
        .count();
    let epochs = records
        .iter()
        .filter(|r| matches!(r, Record::Epoch { .. }))
        .count();
    assert_eq!((logs, epochs), (6, 2));
    assert_eq!(
        read_records(&googlenet::training::run_dir::metrics_path(tmp.path()))?,
        records
    );
    for epoch in [1, 2] {
        assert!(tmp
            .path()
            .join(format!("checkpoints/epoch-{epoch}/model.safetensors"))
            .exists());
    }
    Ok(())
}

/// The last partial batch is used, and means are per sample: 20 images in batches of 8
/// are 8 + 8 + 4.
#[test]
fn partial_last_batch_counts_per_sample() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let config = TrainConfig {
        epochs: 1,
        train_limit: Some(20),
        log_every: 100,
        ..tiny_config()
    };
    let (_, records) = run(tmp.path(), None, &config, None)?;
    let Some(Record::Epoch {
        step,
        train_accuracy,
        ..
    }) = records.last()
    else {
        panic!("no epoch record")
    };
    assert_eq!(*step, 3);
    let correct = train_accuracy * 20.0;
    assert!(
        (correct - correct.round()).abs() < 1e-9,
        "accuracy {train_accuracy} is not a count over 20 samples"
    );
    Ok(())
}

/// A run with a time budget times its first steps, plans its length, keeps the plan in
/// every checkpoint and ends on it, with an evaluation and a checkpoint (mid-epoch if
/// the plan falls there); a run resumed after the plan was made keeps it. What the plan
/// is depends on the machine's speed; that it is kept does not.
#[test]
fn a_time_budget_plans_the_run_and_a_resume_keeps_the_plan() -> Result<()> {
    let config = TrainConfig {
        epochs: 16,
        warmup_steps: 40,
        save_every: Some(45),
        // The plan reserves 2 s for each epoch's checkpoint: 16 epochs' do not fit in
        // half a minute, so the budget, not the epochs, ends the run (after about 80
        // steps, mid-epoch as a rule); the steps themselves take a few seconds.
        time_budget_minutes: Some(0.5),
        ..tiny_config()
    };
    let planned = |checkpoint: &Path| -> Result<(u64, Option<u64>)> {
        let text = std::fs::read_to_string(checkpoint.join(checkpoint::STATE_FILE))?;
        let state: checkpoint::RunState = serde_json::from_str(&text)?;
        Ok((state.step, state.planned_steps))
    };
    let last = |run_dir: &Path| -> Result<PathBuf> {
        common::runs::checkpoints(run_dir)
            .into_iter()
            .filter(|c| {
                c.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("epoch-")
            })
            .max_by_key(|c| planned(c).map(|(step, _)| step).unwrap_or(0))
            .ok_or_else(|| anyhow::anyhow!("no epoch checkpoint"))
    };

    let whole = tempfile::tempdir()?;
    let (outcome, records) = run(whole.path(), None, &config, None)?;
    assert!(matches!(outcome, Outcome::Finished { .. }), "{outcome:?}");
    let (step, plan) = planned(&last(whole.path())?)?;
    let plan = plan.expect("the plan is saved");
    // 48 images in batches of 8: 6 steps an epoch, 96 at most; the plan is made after
    // step 40 and keeps those.
    assert!((40..=96).contains(&plan), "{plan}");
    assert_eq!(step, plan);
    let Some(Record::Epoch { step, .. }) = records.last() else {
        panic!("the run ended without an epoch record")
    };
    assert_eq!(*step, plan);

    let parts = tempfile::tempdir()?;
    let (outcome, _) = run(parts.path(), None, &config, Some(46))?;
    let Outcome::Interrupted { checkpoint } = outcome else {
        panic!("expected an interruption, got {outcome:?}")
    };
    let (_, saved_plan) = planned(&checkpoint)?;
    let saved_plan = saved_plan.expect("the plan is saved in the interrupted run's checkpoint");
    let (outcome, _) = run(parts.path(), Some(&checkpoint), &config, None)?;
    assert!(matches!(outcome, Outcome::Finished { .. }), "{outcome:?}");
    assert_eq!(
        planned(&last(parts.path())?)?,
        (saved_plan, Some(saved_plan))
    );
    Ok(())
}

/// Makes every step after the plan slow (as a machine that slows down mid-run), and
/// notes what the run says of its budget.
#[derive(Default)]
struct SlowAfterPlan {
    planned: Option<u64>,
    out_of_time: Option<(u64, u64)>,
    records: Vec<Record>,
}

impl Observer for SlowAfterPlan {
    fn step(&mut self, _epoch: usize, _batch: usize, _batches: usize, _loss: Option<f64>) {
        if self.planned.is_some() {
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn planned(&mut self, steps: u64, _step_seconds: f64) {
        self.planned = Some(steps);
    }

    fn out_of_time(&mut self, step: u64, planned: u64) {
        self.out_of_time = Some((step, planned));
    }

    fn record(&mut self, record: &Record) {
        self.records.push(record.clone());
    }
}

/// Steps that turn slower than those timed do not make the run overrun its budget: it
/// ends at its deadline, before its planned steps, says so, and evaluates and saves
/// there as at a planned end.
#[test]
fn a_run_whose_steps_slow_down_ends_within_its_budget() -> Result<()> {
    let config = TrainConfig {
        // 24 steps an epoch, 72 at most: all of them fit in the plan, made after
        // step 40. The 32 after it take at least 16 s once slowed, past the deadline
        // (15 s less the last evaluation and checkpoint, 2 s of them).
        batch_size: 2,
        epochs: 3,
        warmup_steps: 40,
        time_budget_minutes: Some(0.25),
        ..tiny_config()
    };
    let run_dir = tempfile::tempdir()?;
    let stop = AtomicBool::new(false);
    let mut observer = SlowAfterPlan::default();
    let outcome = training::train(
        &Device::cpu(),
        &tiny_data(),
        run_dir.path(),
        None,
        &config,
        &stop,
        &mut observer,
    )?;
    assert!(matches!(outcome, Outcome::Finished { .. }), "{outcome:?}");
    let planned = observer.planned.expect("the run made a plan");
    let (step, of) = observer.out_of_time.expect("the run ran out of time");
    assert_eq!(of, planned);
    assert!(step < planned, "{step} of {planned}");
    let Some(Record::Epoch { step: last, .. }) = observer.records.last() else {
        panic!("the run ended without an epoch record")
    };
    assert_eq!(*last, step);
    Ok(())
}

#[test]
fn interrupted_and_resumed_run_ends_bit_identical() -> Result<()> {
    let config = tiny_config();
    let whole = tempfile::tempdir()?;
    run(whole.path(), None, &config, None)?;

    let parts = tempfile::tempdir()?;
    // Step 4 is inside the first epoch; the checkpoint holds the epoch's position.
    let (outcome, _) = run(parts.path(), None, &config, Some(4))?;
    let Outcome::Interrupted { checkpoint } = outcome else {
        panic!("expected an interruption, got {outcome:?}")
    };
    assert!(
        checkpoint.ends_with("step-00000004"),
        "{}",
        checkpoint.display()
    );
    let (outcome, _) = run(parts.path(), Some(&checkpoint), &config, None)?;
    assert!(matches!(outcome, Outcome::Finished { .. }), "{outcome:?}");

    assert_eq!(
        final_weights(whole.path(), 2),
        final_weights(parts.path(), 2)
    );
    let optimizer = |dir: &Path| {
        std::fs::read(
            dir.join("checkpoints/epoch-2")
                .join(checkpoint::OPTIMIZER_FILE),
        )
        .unwrap()
    };
    assert_eq!(optimizer(whole.path()), optimizer(parts.path()));
    Ok(())
}

/// A checkpoint's `state.json` as `train` wrote it on 2026-12-07, before the settings
/// with a fixed set of names became enums (`tests/fixtures/state-2026-12-07.json`, from
/// `train --preset quick --epochs 2 --train-limit 64 --test-limit 32 --image-size 16
/// --save-every 2`): it loads; the same run today writes that very file; and a run
/// resumed from it ends bit-identical to the run that was not interrupted.
#[test]
fn checkpoints_written_before_typed_settings_load_and_resume() -> Result<()> {
    let fixture = include_str!("fixtures/state-2026-12-07.json");
    let old: serde_json::Value = serde_json::from_str(fixture)?;
    let state: checkpoint::RunState = serde_json::from_str(fixture)?;
    assert_eq!(serde_json::to_value(&state)?, old);
    // Every name the string settings took then.
    for (field, names) in [
        ("preset", &["tutorial", "recommended", "quick"][..]),
        ("init", &["pytorch", "kaiming"]),
        ("schedule", &["constant", "cosine"]),
        ("precision", &["f32", "tf32", "bf16"]),
    ] {
        for name in names {
            let mut value = old.clone();
            value["config"][field] = serde_json::json!(name);
            let state: checkpoint::RunState = serde_json::from_value(value.clone())?;
            assert_eq!(serde_json::to_value(&state)?, value, "{field} {name}");
        }
    }

    // The fixture's run on crafted data of its sizes: its epoch-1 state is the fixture.
    let data = DataSet {
        train: band_split(64, 0),
        test: band_split(32, 1),
        ..tiny_data()
    };
    let whole = tempfile::tempdir()?;
    run_on(&data, whole.path(), None, &state.config, None)?;
    let epoch_1 = whole.path().join("checkpoints/epoch-1");
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        epoch_1.join(checkpoint::STATE_FILE),
    )?)?;
    assert_eq!(written, old);

    let resumed = tempfile::tempdir()?;
    let from = resumed.path().join("checkpoints/epoch-1");
    std::fs::create_dir_all(&from)?;
    for file in [checkpoint::MODEL_FILE, checkpoint::OPTIMIZER_FILE] {
        std::fs::copy(epoch_1.join(file), from.join(file))?;
    }
    std::fs::write(from.join(checkpoint::STATE_FILE), fixture)?;
    let (outcome, _) = run_on(&data, resumed.path(), Some(&from), &state.config, None)?;
    assert!(matches!(outcome, Outcome::Finished { .. }), "{outcome:?}");
    assert_eq!(
        final_weights(whole.path(), 2),
        final_weights(resumed.path(), 2)
    );
    Ok(())
}

#[test]
fn checkpoint_round_trip_gives_the_same_logits() -> Result<()> {
    let device = Device::cpu();
    let (net, params) =
        GoogLeNet::new(&device, GoogLeNetConfig::default(), Init::KaimingNormal, 5)?;
    let adam = Adam::new(&params, 1e-3)?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("ckpt");
    checkpoint::save(&dir, &params, &adam, "{}")?;

    let (_, mut loaded) =
        GoogLeNet::new(&device, GoogLeNetConfig::default(), Init::PyTorchDefault, 6)?;
    checkpoint::load_weights(&dir, &mut loaded)?;
    let images = common::random_tensor(&device, &[2, 1, 32, 32], 0.0, 1.0, 1)?;
    let logits = |p| -> Result<Vec<f32>> {
        net.forward(&mut Tape::no_grad(), p, &images, Mode::Eval)?
            .value
            .to_vec()
    };
    assert_eq!(logits(&params)?, logits(&loaded)?);
    Ok(())
}

#[test]
fn checkpoint_writes_replace_atomically() -> Result<()> {
    let device = Device::cpu();
    let (_, params) = GoogLeNet::new(&device, GoogLeNetConfig::default(), Init::PyTorchDefault, 0)?;
    let adam = Adam::new(&params, 1e-3)?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("step-1");
    checkpoint::save(&dir, &params, &adam, "first")?;
    checkpoint::save(&dir, &params, &adam, "second")?;
    assert_eq!(
        std::fs::read_to_string(dir.join(checkpoint::STATE_FILE))?,
        "second"
    );
    let names: Vec<String> = std::fs::read_dir(tmp.path())?
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["step-1"], "no temporary directory is left behind");

    // A write that cannot complete (its temporary name is taken by a file) fails
    // and leaves the previous checkpoint whole.
    std::fs::write(tmp.path().join(".step-1.tmp"), b"in the way")?;
    assert!(checkpoint::save(&dir, &params, &adam, "third").is_err());
    assert_eq!(
        std::fs::read_to_string(dir.join(checkpoint::STATE_FILE))?,
        "second"
    );
    let (_, mut loaded) =
        GoogLeNet::new(&device, GoogLeNetConfig::default(), Init::PyTorchDefault, 1)?;
    checkpoint::load_weights(&dir, &mut loaded)?;
    Ok(())
}

#[test]
fn divergence_stops_and_keeps_the_last_good_checkpoint() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let config = TrainConfig {
        lr: googlenet::training::settings::MAX_LR,
        epochs: 3,
        ..tiny_config()
    };
    let (outcome, _) = run(tmp.path(), None, &config, None)?;
    let Outcome::Diverged {
        loss,
        last_checkpoint,
        ..
    } = outcome
    else {
        panic!("expected divergence, got {outcome:?}")
    };
    assert!(!loss.is_finite());
    if let Some(path) = last_checkpoint {
        assert!(path.join(checkpoint::MODEL_FILE).exists());
    }
    Ok(())
}

fn program(name: &str) -> Command {
    let exe = match name {
        "train" => env!("CARGO_BIN_EXE_train"),
        _ => env!("CARGO_BIN_EXE_eval"),
    };
    let mut cmd = Command::new(exe);
    cmd.env_remove("FASHION_MNIST_DIR");
    cmd
}

fn output_of(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("program runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

const TINY_FLAGS: [&str; 8] = [
    "--preset",
    "quick",
    "--image-size",
    "16",
    "--batch-size",
    "8",
    "--no-verify",
    "--device=cpu",
];

#[test]
fn train_and_eval_programs_end_to_end() {
    let data = tiny_data_dir();
    let out = tempfile::tempdir().unwrap();
    let run_dir = out.path().join("run");
    let (ok, text) = output_of(
        program("train")
            .args(TINY_FLAGS)
            .args(["--epochs", "1", "--log-every", "2"])
            .arg("--data-dir")
            .arg(data.path())
            .arg("--run-dir")
            .arg(&run_dir),
    );
    assert!(ok, "{text}");
    for needle in [
        "preset: quick (chosen with --preset)",
        "epoch 1 batch     2",
        "loss",
        "epoch 1 done: train loss",
        "test accuracy",
        "finished: test accuracy",
        "best test accuracy",
        "total time",
        "best checkpoint: ",
        "plot: ",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    for file in [
        "metrics.jsonl",
        "curves.png",
        "checkpoints/epoch-1/model.safetensors",
        "checkpoints/epoch-1/optimizer.safetensors",
        "checkpoints/epoch-1/state.json",
    ] {
        assert!(run_dir.join(file).exists(), "{file} missing");
    }
    let best = format!(
        "best checkpoint: {}",
        run_dir.join("checkpoints/epoch-1").display()
    );
    assert!(text.contains(&best), "missing {best:?} in:\n{text}");

    let checkpoint = run_dir.join("checkpoints/epoch-1");
    let (ok, text) = output_of(
        program("eval")
            .arg(&checkpoint)
            .arg("--data-dir")
            .arg(data.path())
            .args(["--no-verify", "--device=cpu"]),
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("test accuracy")
            && text.contains("Ankle boot")
            && text.contains("images 16x16"),
        "{text}"
    );
    assert!(checkpoint.join("confusion.png").exists(), "{text}");
    let elsewhere = out.path().join("matrix.png");
    let (ok, text) = output_of(
        program("eval")
            .arg(&checkpoint)
            .arg("--data-dir")
            .arg(data.path())
            .args(["--no-verify", "--device=cpu", "--out"])
            .arg(&elsewhere),
    );
    assert!(ok && elsewhere.exists(), "{text}");
}

#[test]
fn eval_refuses_a_file_of_another_model() -> Result<()> {
    let device = Device::cpu();
    let five_classes = GoogLeNetConfig {
        classes: 5,
        ..GoogLeNetConfig::default()
    };
    let (_, params) = GoogLeNet::new(&device, five_classes, Init::PyTorchDefault, 0)?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("other");
    checkpoint::save(&dir, &params, &Adam::new(&params, 1e-3)?, "{}")?;
    let (ok, text) = output_of(
        program("eval")
            .arg(dir.join(checkpoint::MODEL_FILE))
            .arg("--device=cpu"),
    );
    assert!(!ok);
    assert!(
        text.contains("is not a checkpoint of this model")
            && text.contains("fc.weight has shape [5, 1024], expected [10, 1024]"),
        "{text}"
    );

    std::fs::write(tmp.path().join("notes.txt"), "not a tensor file")?;
    let (ok, text) = output_of(
        program("eval")
            .arg(tmp.path().join("notes.txt"))
            .arg("--device=cpu"),
    );
    assert!(
        !ok && text.contains("notes.txt is not a safetensors file"),
        "{text}"
    );
    Ok(())
}

#[test]
fn summary_prints_stage_shapes() {
    let (ok, text) =
        output_of(program("train").args(["--summary", "--preset", "tutorial", "--device=cpu"]));
    assert!(ok, "{text}");
    assert!(text.contains("on 1x224x224 inputs"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("inception_4e")
            && l.contains("832x14x14")
            && l.contains("868352")),
        "{text}"
    );
    assert!(text.contains("5977530"), "{text}");
}

/// The CPU's matrix multiply is chosen by an environment variable (to compare the two
/// on one machine); a bad value is refused by name before anything runs.
#[test]
fn a_bad_cpu_matrix_multiply_is_named() {
    let (ok, text) = output_of(program("train").env("GOOGLENET_CPU_GEMM", "blas").args([
        "--device",
        "cpu",
        "--summary",
    ]));
    assert!(
        !ok && text.contains("GOOGLENET_CPU_GEMM=\"blas\" is unknown"),
        "{text}"
    );
}

#[test]
fn bad_flags_are_named() {
    for (flags, needle) in [
        (vec!["--batch-size", "0"], "--batch-size must be at least 1"),
        (
            vec!["--preset", "fast"],
            "invalid value 'fast' for '--preset",
        ),
        (vec!["--device", "tpu"], "--device \"tpu\" is unknown"),
        (
            vec!["--init", "xavier"],
            "invalid value 'xavier' for '--init",
        ),
        (vec!["--image-size", "4"], "--image-size must be at least 8"),
        (
            vec!["--schedule", "linear"],
            "invalid value 'linear' for '--schedule",
        ),
        (
            vec!["--min-lr-fraction", "2"],
            "--min-lr-fraction must be in [0, 1]",
        ),
        (
            vec!["--label-smoothing", "1"],
            "--label-smoothing must be in [0, 1)",
        ),
        (
            vec!["--time-budget", "0"],
            "--time-budget must be more than 0",
        ),
        (
            vec!["--time-budget", "5", "--warmup-steps", "10"],
            "needs --warmup-steps of at least 40 (got 10)",
        ),
    ] {
        let (ok, text) = output_of(program("train").args(&flags).arg("--summary"));
        assert!(!ok && text.contains(needle), "{flags:?}: {text}");
    }
    let (ok, text) =
        output_of(program("train").args(["--resume", "/nonexistent/checkpoint", "--device=cpu"]));
    assert!(!ok && text.contains("/nonexistent/checkpoint"), "{text}");
}

#[test]
fn ctrl_c_writes_a_checkpoint_and_says_how_to_resume() {
    let data = tiny_data_dir();
    let out = tempfile::tempdir().unwrap();
    let run_dir = out.path().join("run");
    let mut child = program("train")
        .args(TINY_FLAGS)
        .args(["--epochs", "50", "--log-every", "1"])
        .arg("--data-dir")
        .arg(data.path())
        .arg("--run-dir")
        .arg(&run_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once training is under way (its first log line is in the metrics file).
    let deadline = Instant::now() + Duration::from_secs(120);
    while !googlenet::training::run_dir::metrics_path(&run_dir).exists() {
        assert!(Instant::now() < deadline, "training did not start");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("train exited early with {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(130), "{text}");
    let resume_line = text
        .lines()
        .find(|l| l.contains("--resume"))
        .unwrap_or_else(|| panic!("no resume command in:\n{text}"));
    let path = resume_line.rsplit(' ').next().unwrap();
    assert!(
        Path::new(path).join(checkpoint::STATE_FILE).exists(),
        "{resume_line}"
    );
}

/// The CUDA kernels (on the emulator) train like the CPU device: same weights, same
/// batches, five steps. The kernels sum in other orders than the CPU's GEMM, and Adam
/// divides by √v, which magnifies those differences once v is tiny; the losses stay
/// within 1e-5 relative (observed: 1e-7, a float's last bit).
#[test]
fn emulated_kernels_train_like_the_cpu() -> Result<()> {
    let losses = |device: Device| -> Result<Vec<f32>> {
        let data = tiny_data();
        let config = tiny_config();
        let (net, mut params) =
            GoogLeNet::new(&device, GoogLeNetConfig::default(), Init::KaimingNormal, 9)?;
        let mut adam = Adam::new(&params, config.lr)?;
        let images = googlenet::ByteImages::new(
            &device,
            data.train.images.clone(),
            data.train.len(),
            SIDE,
            SIDE,
        )?;
        let mut out = Vec::new();
        for step in 0..5u32 {
            let indices: Vec<u32> = (0..8).map(|i| (step * 8 + i) % 48).collect();
            let batch = images.resize_batch_normalized(
                &indices,
                16,
                googlenet::Normalize::FASHION_MNIST,
            )?;
            let labels: Vec<u32> = indices
                .iter()
                .map(|&i| data.train.labels[i as usize] as u32)
                .collect();
            let labels = googlenet::Labels::new(&device, &labels, 10)?;
            out.push(
                googlenet::training::step::train_step(
                    &net,
                    &mut params,
                    &mut adam,
                    &batch,
                    &labels,
                    step as u64,
                )?
                .loss,
            );
        }
        Ok(out)
    };
    let (cpu, emu) = (
        losses(Device::cpu())?,
        losses(Device::emu_at(googlenet::Precision::F32))?,
    );
    eprintln!("cpu {cpu:?}\nemu {emu:?}");
    common::assert_close(&emu, &cpu, 0.0, 1e-5, "losses");
    Ok(())
}

#[test]
fn train_program_runs_on_the_emulator() {
    let data = tiny_data_dir();
    let out = tempfile::tempdir().unwrap();
    let (ok, text) = output_of(
        program("train")
            .args([
                "--preset",
                "quick",
                "--image-size",
                "16",
                "--batch-size",
                "8",
                "--no-verify",
            ])
            .args([
                "--device",
                "emu",
                "--epochs",
                "1",
                "--train-limit",
                "16",
                "--test-limit",
                "8",
                "--log-every",
                "1",
            ])
            .arg("--data-dir")
            .arg(data.path())
            .arg("--run-dir")
            .arg(out.path().join("run")),
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("device: emu") && text.contains("finished: test accuracy"),
        "{text}"
    );
}

/// `--precision` is the device's: the CPU refuses tf32 and bf16 by the flag's name; on
/// the emulator the run records it, and a resumed run adopts it, or refuses another.
#[test]
fn precision_is_recorded_adopted_on_resume_and_refused_on_the_cpu() {
    let data = tiny_data_dir();
    let out = tempfile::tempdir().unwrap();
    for name in ["train", "eval"] {
        let mut cmd = program(name);
        if name == "eval" {
            cmd.arg(out.path().join("none"));
        }
        let (ok, text) = output_of(cmd.args(["--device", "cpu", "--precision", "bf16"]));
        assert!(
            !ok && text.contains("--precision bf16") && text.contains("f32 only"),
            "{name}: {text}"
        );
    }
    let (ok, text) = output_of(program("train").args(["--precision", "fp16"]));
    assert!(
        !ok && text.contains("invalid value 'fp16' for '--precision"),
        "{text}"
    );

    let run_dir = out.path().join("run");
    let emu_run = |extra: &[&str]| {
        output_of(
            program("train")
                .args(&TINY_FLAGS[..7])
                .args(["--device", "emu", "--train-limit", "8", "--test-limit", "8"])
                .args(extra)
                .arg("--data-dir")
                .arg(data.path())
                .arg("--run-dir")
                .arg(&run_dir),
        )
    };
    let (ok, text) = emu_run(&["--epochs", "1", "--precision", "bf16"]);
    assert!(ok && text.contains("precision bf16"), "{text}");
    let checkpoint = run_dir.join("checkpoints/epoch-1");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(checkpoint.join("state.json")).unwrap())
            .unwrap();
    assert_eq!(state["config"]["precision"], "bf16", "{state}");

    let resume = ["--resume", checkpoint.to_str().unwrap(), "--epochs", "2"];
    let (ok, text) = emu_run(&[&resume[..], &["--precision", "tf32"]].concat());
    assert!(
        !ok && text.contains("--precision tf32 (the checkpoint has bf16)"),
        "{text}"
    );
    let (ok, text) = emu_run(&resume);
    assert!(ok && text.contains("precision bf16"), "{text}");
}
