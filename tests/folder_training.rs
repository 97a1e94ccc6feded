//! Training on a folder of class folders (`train --data DIR`), end to end:
//! - Fashion-MNIST written as PNGs into class folders trains bit-identically to its
//!   IDX files, once the IDX images are put in the folder's order and labels;
//! - a task only colour separates is learnt by a 3-channel model on the CPU and on
//!   the emulator, and not by a 1-channel model of the same images;
//! - a run resumes bit-identically, and refuses a folder that changed since;
//! - eval and predict speak the class names; PyTorch loads a 3-channel, 5-class
//!   checkpoint strictly (where it is installed).

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use common::images;
use common::runs::output_of;
use common::system_data::{self, SYSTEM_DIR};
use googlenet::data::folder::Plan;
use googlenet::data::{self, epoch_order, DataSet, Split, CLASS_NAMES};
use googlenet::engine::device::View;
use googlenet::training::checkpoint;
use googlenet::training::metrics::Record;
use googlenet::training::recipe::batch_views;
use googlenet::training::settings::{Channels, DataSource};
use googlenet::training::source::folder_options;
use googlenet::training::step::DeviceSplit;
use googlenet::training::{self, preset, Observer, Outcome, Preset, TrainConfig};
use googlenet::{Device, Precision};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Keeps the records of a run; raises `stop` after step `stop_after`.
struct Records<'a> {
    records: Vec<Record>,
    steps: u64,
    stop_after: Option<u64>,
    stop: &'a AtomicBool,
}

impl Observer for Records<'_> {
    fn step(&mut self, _epoch: usize, _batch: usize, _batches: usize, _loss: Option<f64>) {
        self.steps += 1;
        if Some(self.steps) == self.stop_after {
            self.stop.store(true, Ordering::SeqCst);
        }
    }

    fn record(&mut self, record: &Record) {
        self.records.push(record.clone());
    }
}

/// Trains `config` on `data` on `device` from the start (or from `resume`), in
/// `run_dir`.
fn train_on(
    device: &Device,
    data: &DataSet,
    run_dir: &Path,
    resume: Option<&Path>,
    config: &TrainConfig,
) -> Result<(Outcome, Vec<Record>)> {
    train_until(device, data, run_dir, resume, config, None)
}

/// `train_on`, interrupted after step `stop_after` (None: never).
fn train_until(
    device: &Device,
    data: &DataSet,
    run_dir: &Path,
    resume: Option<&Path>,
    config: &TrainConfig,
    stop_after: Option<u64>,
) -> Result<(Outcome, Vec<Record>)> {
    let stop = AtomicBool::new(false);
    let mut records = Records {
        records: Vec::new(),
        steps: 0,
        stop_after,
        stop: &stop,
    };
    let outcome = training::train(device, data, run_dir, resume, config, &stop, &mut records)?;
    Ok((outcome, records.records))
}

/// What a run computed, without its timings.
fn results(records: &[Record]) -> Vec<[f64; 3]> {
    records
        .iter()
        .map(|r| match *r {
            Record::Log {
                step,
                loss,
                accuracy,
                ..
            } => [step as f64, loss, accuracy],
            Record::Epoch {
                train_loss,
                train_accuracy,
                test_accuracy,
                ..
            } => [train_loss, train_accuracy, test_accuracy],
        })
        .collect()
}

fn model_bytes(run_dir: &Path, epoch: usize) -> Vec<u8> {
    let dir = run_dir.join(format!("checkpoints/epoch-{epoch}"));
    std::fs::read(dir.join(checkpoint::MODEL_FILE)).unwrap()
}

/// The first `n` images of `split` as the folder holds them: class by class, the
/// classes in `rank` order (label `l` becomes `rank[l]`), each class's in file order.
fn in_folder_order(split: &Split, n: usize, rank: &[u8; 10]) -> Split {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| rank[split.labels[i] as usize]);
    let bytes = split.shape().image_bytes();
    Split {
        images: order
            .iter()
            .flat_map(|&i| split.images[i * bytes..(i + 1) * bytes].to_vec())
            .collect(),
        labels: order
            .iter()
            .map(|&i| rank[split.labels[i] as usize])
            .collect(),
        ..split.clone()
    }
}

/// 2,000 training and 500 test images of Fashion-MNIST, written as 28x28 grey PNGs
/// into train/<class>/ and test/<class>/ (named by their index, so a class's files
/// keep the IDX order), read back at store side 28: the same bytes in the folder's
/// order and labels; then batches (augmented) and a run of the quick recipe are bit
/// for bit the IDX images' in that order.
#[test]
fn fashion_mnist_as_pngs_trains_bit_identically_to_its_idx_files() -> Result<()> {
    if !system_data::present() {
        return Ok(());
    }
    let idx = data::load_dir(Path::new(SYSTEM_DIR), true)?;
    let (n_train, n_test) = (2000, 500);
    // Folder names cannot hold '/': "T-shirt/top" becomes "T-shirt_top".
    let names: Vec<String> = CLASS_NAMES.iter().map(|n| n.replace('/', "_")).collect();
    let dir = tempfile::tempdir()?;
    for (part, split, n) in [("train", &idx.train, n_train), ("test", &idx.test, n_test)] {
        for i in 0..n {
            let pixels = split.images[i * 784..(i + 1) * 784].to_vec();
            let name = &names[split.labels[i] as usize];
            let path = dir.path().join(part).join(name).join(format!("{i:05}.png"));
            images::save(
                &path,
                &image::DynamicImage::ImageLuma8(
                    image::GrayImage::from_raw(28, 28, pixels).unwrap(),
                ),
            );
        }
    }
    // The quick recipe on the folder, as `train --data DIR --store-size 28
    // --image-size 16 --epochs 1 --augment true` sets it.
    let config = TrainConfig {
        epochs: 1,
        image_size: 16,
        batch_size: 16,
        log_every: 25,
        warmup_steps: 20,
        augment: true,
        store_size: Some(28),
        ..folder_config(dir.path(), None)
    };
    let plan = Plan::new(&folder_options(&config).unwrap())?;
    assert_eq!(plan.channels, 1, "grey PNGs give one channel");
    let folder = plan.load()?.data;

    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(folder.description.classes, sorted);
    let rank: [u8; 10] =
        std::array::from_fn(|l| sorted.iter().position(|s| *s == names[l]).unwrap() as u8);
    let expected = DataSet {
        train: in_folder_order(&idx.train, n_train, &rank),
        test: in_folder_order(&idx.test, n_test, &rank),
        // The folder's measured mean and std: the runs below normalise alike.
        description: folder.description.clone(),
        source: idx.source.clone(),
        found_by: "IDX files".to_string(),
    };
    assert!(
        folder.train == expected.train,
        "the training images or labels differ"
    );
    assert!(
        folder.test == expected.test,
        "the test images or labels differ"
    );

    // The measured statistics are the pixels' own.
    let pixels = &expected.train.images;
    let mean = pixels.iter().map(|&p| p as f64).sum::<f64>() / pixels.len() as f64 / 255.0;
    let var = pixels
        .iter()
        .map(|&p| (p as f64 / 255.0 - mean).powi(2))
        .sum::<f64>()
        / pixels.len() as f64;
    assert!((folder.description.mean[0] as f64 - mean).abs() < 1e-6);
    assert!((folder.description.std[0] as f64 - var.sqrt()).abs() < 1e-6);
    eprintln!(
        "2,000 images: mean {mean:.4}, std {:.4} (Fashion-MNIST's: 0.2860, 0.3530)",
        var.sqrt()
    );

    let device = Device::cpu();
    let norm = config.normalization(&folder.description)?;
    let splits =
        [&folder.train, &expected.train].map(|s| DeviceSplit::upload(&device, s, None, 10));
    let [from_folder, from_idx] = splits;
    let (from_folder, from_idx) = (from_folder?, from_idx?);
    let order = epoch_order(n_train, config.seed, 0);
    for (step, indices) in order.chunks(16).take(5).enumerate() {
        let views = batch_views(config.seed, step as u64, indices.len());
        let identity = vec![View::IDENTITY; indices.len()];
        for views in [&views, &identity] {
            let a = from_folder
                .batch(indices, views, 16, norm, 0.1)?
                .0
                .to_vec()?;
            let b = from_idx.batch(indices, views, 16, norm, 0.1)?.0.to_vec()?;
            assert!(a == b, "batch {step} differs");
        }
    }
    let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (_, folder_records) = train_on(&device, &folder, a.path(), None, &config)?;
    let (_, idx_records) = train_on(&device, &expected, b.path(), None, &config)?;
    assert_eq!(results(&folder_records), results(&idx_records));
    assert_eq!(model_bytes(a.path(), 1), model_bytes(b.path(), 1));
    eprintln!("losses and accuracies: {:?}", results(&folder_records));
    Ok(())
}

/// A pixel offset whose ITU-R 601 luma is zero in PIL's fixed point: `(57, -10, -98)`
/// adds `57·19595 - 10·38470 - 98·7471 = 57` to `65536·L`, below the rounding's half.
const HUE: [i32; 3] = [57, -10, -98];

/// Two classes that only colour tells apart: every pixel is a grey `g` (uniform in
/// 98..=157, independent per pixel) plus `HUE` (class `plus`) or minus it (`minus`).
/// As grey, both classes are the same noise: `L = g` exactly.
fn colour_task(root: &Path, train: usize, test: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for (part, count) in [("train", train), ("test", test)] {
        for (class, sign) in [("minus", -1), ("plus", 1)] {
            for i in 0..count {
                let image = image::RgbImage::from_fn(12, 12, |_, _| {
                    let g: i32 = rng.gen_range(98..=157);
                    image::Rgb(HUE.map(|d| (g + sign * d) as u8))
                });
                let path = root.join(part).join(class).join(format!("{i:03}.png"));
                images::save(&path, &image::DynamicImage::ImageRgb8(image));
            }
        }
    }
}

/// A short run of the quick recipe at 12x12 on the folder `dir`, as `train --data
/// DIR` sets it (with `channels`, or those it would choose).
fn folder_config(dir: &Path, channels: Option<Channels>) -> TrainConfig {
    TrainConfig {
        epochs: 2,
        image_size: 12,
        batch_size: 16,
        log_every: 100,
        warmup_steps: 3,
        lr: 0.001,
        time_budget_minutes: None,
        data: DataSource::Folder(dir.to_path_buf()),
        channels,
        ..preset(Preset::Quick)
    }
    .with_folder_defaults()
}

/// The data set `config` names, read.
fn read(config: &TrainConfig) -> Result<DataSet> {
    Ok(Plan::new(&folder_options(config).unwrap())?.load()?.data)
}

/// Test accuracy on the colour task of a model of `channels` channels, on `device`.
fn colour_accuracy(device: &Device, root: &Path, channels: Channels) -> Result<f64> {
    let config = folder_config(root, Some(channels));
    let data = read(&config)?;
    let run = tempfile::tempdir()?;
    let (outcome, _) = train_on(device, &data, run.path(), None, &config)?;
    match outcome {
        Outcome::Finished { test_accuracy } => Ok(test_accuracy),
        other => panic!("the run did not finish: {other:?}"),
    }
}

/// The colour task: a 3-channel model learns it (test accuracy at least 0.9 over 100
/// images); a 1-channel model of the same images cannot (both classes are the same
/// grey noise), so it stays at chance: within 0.5 ± 0.2 (four standard deviations).
fn colour_is_learnt_only_with_three_channels(device: Device) -> Result<()> {
    let dir = tempfile::tempdir()?;
    colour_task(dir.path(), 48, 50, 11);
    let rgb = colour_accuracy(&device, dir.path(), Channels::Rgb)?;
    let grey = colour_accuracy(&device, dir.path(), Channels::Grey)?;
    eprintln!(
        "{}: colour task, test accuracy 3 channels {rgb}, 1 channel {grey}",
        device.name()
    );
    assert!(rgb >= 0.9, "3 channels: test accuracy {rgb}");
    assert!(
        (0.3..=0.7).contains(&grey),
        "1 channel: test accuracy {grey}"
    );
    Ok(())
}

device_tests!(colour_is_learnt_only_with_three_channels);

/// A folder run stopped after its third step (inside its first epoch) and resumed ends
/// bit-identical to the run that was not; a folder that changed since is refused by
/// what changed.
#[test]
fn a_folder_run_resumes_bit_identically_and_refuses_a_changed_folder() -> Result<()> {
    let dir = tempfile::tempdir()?;
    colour_task(dir.path(), 32, 4, 5);
    let config = TrainConfig {
        epochs: 2,
        augment: true,
        ..folder_config(dir.path(), Some(Channels::Rgb))
    };
    let data = read(&config)?;
    let device = Device::cpu();
    let whole = tempfile::tempdir()?;
    train_on(&device, &data, whole.path(), None, &config)?;

    let parts = tempfile::tempdir()?;
    let (outcome, _) = train_until(&device, &data, parts.path(), None, &config, Some(3))?;
    let Outcome::Interrupted { checkpoint: from } = outcome else {
        panic!("expected an interruption, got {outcome:?}")
    };
    assert!(from.ends_with("step-00000003"), "{}", from.display());
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(from.join(checkpoint::STATE_FILE))?)?;
    assert_eq!(
        state["data"]["classes"],
        serde_json::json!(["minus", "plus"])
    );
    assert_eq!(state["data"]["channels"], 3);
    assert_eq!(state["config"]["channels"], 3);
    let (outcome, _) = train_on(&device, &data, parts.path(), Some(&from), &config)?;
    assert!(matches!(outcome, Outcome::Finished { .. }), "{outcome:?}");
    assert_eq!(model_bytes(whole.path(), 2), model_bytes(parts.path(), 2));

    // One image more: other statistics.
    let from = parts.path().join("checkpoints/epoch-1");
    images::save(
        &dir.path().join("train/plus/extra.png"),
        &images::rgb(12, 12, [180, 110, 30]),
    );
    let changed = read(&config)?;
    let elsewhere = tempfile::tempdir()?;
    let err = train_on(&device, &changed, elsewhere.path(), Some(&from), &config).unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("the data set is not the one the run trained on")
            && err.contains("the training images changed"),
        "{err}"
    );
    // A class renamed.
    std::fs::remove_file(dir.path().join("train/plus/extra.png"))?;
    std::fs::rename(dir.path().join("train/plus"), dir.path().join("train/pink"))?;
    std::fs::rename(dir.path().join("test/plus"), dir.path().join("test/pink"))?;
    let renamed = read(&config)?;
    let err = format!(
        "{:#}",
        train_on(&device, &renamed, elsewhere.path(), Some(&from), &config).unwrap_err()
    );
    assert!(
        err.contains("classes [\"minus\", \"pink\"] (the checkpoint has [\"minus\", \"plus\"])"),
        "{err}"
    );
    Ok(())
}

/// Five classes of colour, 3 channels, through the programs: `train --data`, a resume
/// that finds the folder by itself (and refuses other channels), `eval` with the class
/// names, `predict` naming the top three, and PyTorch's strict load of the checkpoint.
#[test]
fn the_programs_train_evaluate_and_predict_with_class_names() {
    let dir = tempfile::tempdir().unwrap();
    let colours = [
        ("amber", [255, 190, 0]),
        ("cobalt", [0, 70, 170]),
        ("jade", [0, 168, 107]),
        ("plum", [142, 69, 133]),
        ("rust", [183, 65, 14]),
    ];
    let mut rng = StdRng::seed_from_u64(3);
    for (class, colour) in colours {
        for i in 0..10 {
            let image = image::RgbImage::from_fn(20 + i, 14, |_, _| {
                image::Rgb(colour.map(|c: i32| (c + rng.gen_range(-20..=20)).clamp(0, 255) as u8))
            });
            images::save(
                &dir.path().join(class).join(format!("{i}.png")),
                &image::DynamicImage::ImageRgb8(image),
            );
        }
    }
    let out = tempfile::tempdir().unwrap();
    let run_dir = out.path().join("run");
    let train = |extra: &[&str]| {
        output_of(
            Command::new(env!("CARGO_BIN_EXE_train"))
                .args([
                    "--device=cpu",
                    "--preset=quick",
                    "--image-size=16",
                    "--batch-size=8",
                ])
                .args(["--test-fraction=0.2", "--log-every=2"])
                .args(extra)
                .arg("--run-dir")
                .arg(&run_dir),
        )
    };
    let (ok, text) = train(&["--epochs=1", "--data", dir.path().to_str().unwrap()]);
    assert!(ok, "{text}");
    for needle in [
        "data: 5 classes: amber, cobalt, jade, plum, rust",
        "data: 40 training and 10 test images",
        "50 RGB",
        "3 channel(s)",
        "stored at 16x16",
        "data: decoded 50 images in",
        "finished: test accuracy",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    let checkpoint = run_dir.join("checkpoints/epoch-1");

    // A resume reads the folder the checkpoint names; other channels are refused.
    let resume = ["--resume", checkpoint.to_str().unwrap(), "--epochs=2"];
    let (ok, text) = train(&[&resume[..], &["--channels=1"]].concat());
    assert!(
        !ok && text.contains("--channels 1 (the checkpoint has 3)"),
        "{text}"
    );
    let (ok, text) = train(&resume);
    assert!(
        ok && text.contains("data: 5 classes") && text.contains("epoch 2 done"),
        "{text}"
    );
    let checkpoint = run_dir.join("checkpoints/epoch-2");

    let (ok, text) = output_of(
        Command::new(env!("CARGO_BIN_EXE_eval"))
            .arg(&checkpoint)
            .arg("--device=cpu"),
    );
    assert!(ok, "{text}");
    for needle in [
        "5 classes, 3 channel(s)",
        "10 test images",
        "0 amber",
        "4 rust",
        "recall",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(checkpoint.join("confusion.png").exists());
    // The folder moved: --data finds it; a folder of other classes is refused.
    let moved = out.path().join("moved");
    std::fs::rename(dir.path(), &moved).unwrap();
    let eval_on = |folder: &Path| {
        output_of(
            Command::new(env!("CARGO_BIN_EXE_eval"))
                .arg(&checkpoint)
                .arg("--device=cpu")
                .arg("--data")
                .arg(folder),
        )
    };
    let (ok, text) = eval_on(&moved);
    assert!(ok && text.contains("test accuracy"), "{text}");
    let other = tempfile::tempdir().unwrap();
    images::class_folders(other.path(), &["amber", "cobalt"], 5);
    let (ok, text) = eval_on(other.path());
    assert!(!ok && text.contains("are not the checkpoint's"), "{text}");

    let (ok, text) = output_of(
        Command::new(env!("CARGO_BIN_EXE_predict"))
            .arg(&checkpoint)
            .arg("--device=cpu")
            .arg("--json")
            .arg(moved.join("jade/3.png"))
            .arg(moved.join("amber/0.png")),
    );
    assert!(ok, "{text}");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let names: Vec<&str> = colours.iter().map(|(n, _)| *n).collect();
    for entry in doc.as_array().unwrap() {
        let top = entry["top"].as_array().unwrap();
        assert_eq!(top.len(), 3, "{entry}");
        for t in top {
            let class = t["class"].as_u64().unwrap() as usize;
            assert_eq!(t["name"], names[class], "{entry}");
        }
        assert_eq!(entry["inverted"], false);
    }
    let (ok, text) = output_of(
        Command::new(env!("CARGO_BIN_EXE_predict"))
            .arg(&checkpoint)
            .args(["--device=cpu", "--invert=yes"])
            .arg(moved.join("jade/3.png")),
    );
    assert!(
        !ok && text.contains("--invert applies to Fashion-MNIST checkpoints"),
        "{text}"
    );

    pytorch_loads_strictly(&checkpoint);
}

/// `scripts/pytorch_model.py` loads the checkpoint with `strict=True`, its channels
/// and classes taken from the checkpoint, where a Python with torch and safetensors
/// is found (`$PYTORCH_PYTHON`, `.venv-torch/bin/python`, or `python3`); SKIPPED
/// otherwise.
fn pytorch_loads_strictly(checkpoint: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var("PYTORCH_PYTHON").ok(),
        Some(root.join(".venv-torch/bin/python").display().to_string()),
        Some("python3".to_string()),
    ];
    let python = candidates.into_iter().flatten().find(|python| {
        Command::new(python)
            .args(["-c", "import torch, safetensors"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(python) = python else {
        eprintln!(
            "SKIPPED: PyTorch's strict load: no Python with torch and safetensors (set \
             PYTORCH_PYTHON)"
        );
        return;
    };
    let (ok, text) = output_of(
        Command::new(&python)
            .arg(root.join("scripts/pytorch_model.py"))
            .arg(checkpoint)
            .args(["--image-size", "16"]),
    );
    assert!(ok, "{python}: {text}");
    for needle in [
        "with strict=True (116 tensors)",
        "3 channel(s), 5 classes: amber, cobalt, jade, plum, rust",
        "GoogLeNet on 3x16x16 inputs",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    eprintln!("PyTorch ({python}) loaded the 3-channel, 5-class checkpoint strictly");
}

/// The emulator runs a folder's RGB batches like the CPU, step for step (f32).
#[test]
fn emulated_kernels_train_a_folder_like_the_cpu() -> Result<()> {
    let dir = tempfile::tempdir()?;
    colour_task(dir.path(), 16, 2, 9);
    let config = TrainConfig {
        epochs: 1,
        log_every: 1,
        augment: true,
        ..folder_config(dir.path(), Some(Channels::Rgb))
    };
    let data = read(&config)?;
    let losses = |device: Device| -> Result<Vec<f64>> {
        let run = tempfile::tempdir()?;
        let (_, records) = train_on(&device, &data, run.path(), None, &config)?;
        Ok(records
            .iter()
            .filter_map(|r| match r {
                Record::Log { loss, .. } => Some(*loss),
                Record::Epoch { .. } => None,
            })
            .collect())
    };
    let cpu = losses(Device::cpu())?;
    let emu = losses(Device::emu_at(Precision::F32))?;
    eprintln!("cpu {cpu:?}\nemu {emu:?}");
    assert_eq!(cpu.len(), 2);
    let emu32: Vec<f32> = emu.iter().map(|&l| l as f32).collect();
    let cpu32: Vec<f32> = cpu.iter().map(|&l| l as f32).collect();
    common::assert_close(&emu32, &cpu32, 0.0, 1e-5, "losses");
    Ok(())
}
