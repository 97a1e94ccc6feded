//! Faults a long run on a shared machine meets, each injected into the real `train`
//! program: out-of-range flags, an IDX header claiming more than fits, a full disk
//! during a save, a second process on the same run directory, a killed save's
//! leftovers, `--resume` with contradicting flags, and SIGKILL at random moments.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::runs::{checkpoints, data_dir, load_step, output_of, resume_path, train_program, TINY};
use googlenet::training::checkpoint;
use googlenet::training::run_dir::checkpoints_dir;
use googlenet::training::run_dir::LOCK_FILE;
use googlenet::training::settings::resume_config;
use googlenet::training::TrainConfig;
use googlenet::training::{preset, Preset};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[test]
fn every_numeric_flag_has_an_upper_bound_named_in_its_error() {
    for (flag, value, needle) in [
        (
            "--epochs",
            "10001",
            "--epochs must be at most 10000, got 10001",
        ),
        ("--batch-size", "4097", "--batch-size must be at most 4096"),
        ("--image-size", "1025", "--image-size must be at most 1024"),
        ("--lr", "11", "--lr must be at most 10"),
        (
            "--train-limit",
            "100000001",
            "--train-limit must be at most 100000000",
        ),
        (
            "--test-limit",
            "100000001",
            "--test-limit must be at most 100000000",
        ),
        (
            "--log-every",
            "1000000001",
            "--log-every must be at most 1000000000",
        ),
        (
            "--save-every",
            "1000000001",
            "--save-every must be at most 1000000000",
        ),
        // Beyond the integer type: clap names the flag.
        ("--seed", "18446744073709551616", "--seed"),
    ] {
        let (ok, text) = output_of(Command::new(env!("CARGO_BIN_EXE_train")).args([
            flag,
            value,
            "--summary",
            "--device=cpu",
        ]));
        assert!(!ok && text.contains(needle), "{flag} {value}: {text}");
    }
}

#[test]
fn an_idx_header_claiming_more_than_fits_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut set = [
        common::idx::images_idx(3, 28),
        common::idx::labels_idx(&[1, 2, 3]),
        common::idx::images_idx(2, 28),
        common::idx::labels_idx(&[4, 5]),
    ];
    // 4,294,967,295 images of 28x28: 3.4 TB, after a 16-byte header and 3 images.
    set[0].splice(4..8, u32::MAX.to_be_bytes());
    common::idx::write_set(dir.path(), &set, true);
    let err = googlenet::data::load_dir(dir.path(), false).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("train-images-idx3-ubyte.gz: its IDX header claims 3367254359296 bytes")
            && text.contains("of memory available"),
        "{text}"
    );
}

/// A tmpfs mounted for the test's life (as root); None, said so, where mounting fails.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status();
        if status.is_ok_and(|s| s.success()) {
            Some(Tmpfs(dir.to_path_buf()))
        } else {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs at {} (needs root)",
                dir.display()
            );
            None
        }
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A disk that fills during the second checkpoint (each is 72 MB; the tmpfs holds 100):
/// a clear error naming the file, the first checkpoint intact, no temporary left, and
/// the resume command printed, which works once there is room.
#[test]
fn a_full_disk_during_a_save_keeps_the_previous_checkpoint() {
    let data = data_dir(16, 8);
    let mount_point = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(mount_point.path(), "100m") else {
        return;
    };
    let run = mount_point.path().join("run");
    let (ok, text) = output_of(
        train_program(data.path())
            .args(TINY)
            .args(["--train-limit", "16", "--epochs", "1", "--save-every", "1"])
            .arg("--run-dir")
            .arg(&run),
    );
    assert!(!ok, "{text}");
    let first = checkpoints_dir(&run).join("step-00000001");
    for needle in [
        format!(
            "cannot write checkpoint {}",
            checkpoints_dir(&run).join("step-00000002").display()
        ),
        ".step-00000002.tmp/optimizer.safetensors".to_string(),
        "No space left on device".to_string(),
        "its temporary files are removed".to_string(),
        format!("the previous checkpoint, {}, is intact", first.display()),
    ] {
        assert!(text.contains(&needle), "missing {needle:?} in:\n{text}");
    }
    let left: Vec<_> = std::fs::read_dir(checkpoints_dir(&run))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["step-00000001"], "{text}");
    assert_eq!(load_step(&first).unwrap(), 1);

    let resume = resume_path(&text).expect("a resume command");
    assert_eq!(resume, first);
    disk.resize("400m");
    let (ok, text) = output_of(train_program(data.path()).arg("--resume").arg(&resume));
    assert!(ok && text.contains("finished: test accuracy"), "{text}");
}

/// Waits until `run`'s lock file holds `pid`: the process owns the directory.
fn wait_for_lock(run: &Path, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let pid = child.id().to_string();
    while std::fs::read_to_string(run.join(LOCK_FILE)).unwrap_or_default() != pid {
        assert!(Instant::now() < deadline, "train never took the lock");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("train exited early with {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_second_process_on_a_run_directory_is_refused_and_a_dead_ones_lock_taken_over() {
    let data = data_dir(16, 8);
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("run");
    let mut first = train_program(data.path())
        .args(TINY)
        .args(["--train-limit", "16", "--epochs", "10000"])
        .arg("--run-dir")
        .arg(&run)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_lock(&run, &mut first);
    let (ok, text) = output_of(
        train_program(data.path())
            .args(TINY)
            .args(["--epochs", "1"])
            .arg("--run-dir")
            .arg(&run),
    );
    let holder = format!("is in use by another train process (pid {})", first.id());
    assert!(
        !ok && text.contains(&holder) && text.contains("--run-dir"),
        "{text}"
    );
    assert!(
        text.contains(&run.join(LOCK_FILE).display().to_string()),
        "{text}"
    );

    first.kill().unwrap();
    first.wait().unwrap();
    let (ok, text) = output_of(
        train_program(data.path())
            .args(TINY)
            .args(["--train-limit", "8", "--epochs", "1"])
            .arg("--run-dir")
            .arg(&run),
    );
    let taken = format!(
        "taking over the lock of process {}, which is no longer running",
        first.id()
    );
    assert!(ok && text.contains(&taken), "{text}");
    // A run that ended leaves the lock empty: the next one finds nothing stale.
    assert_eq!(std::fs::read_to_string(run.join(LOCK_FILE)).unwrap(), "");
}

/// What killed saves leave (a half-written `.NAME.tmp`, a half-removed `.NAME.del`, a
/// checkpoint moved aside as `.NAME.old` for a replacement that never came) is
/// cleared at the next start, which says so.
#[test]
fn leftovers_of_killed_saves_are_cleared_at_the_next_start() {
    let data = data_dir(8, 8);
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("run");
    let tiny_run = |run: &Path| {
        output_of(
            train_program(data.path())
                .args(TINY)
                .args(["--train-limit", "8", "--epochs", "1"])
                .arg("--run-dir")
                .arg(run),
        )
    };
    let (ok, text) = tiny_run(&run);
    assert!(ok, "{text}");
    let dir = checkpoints_dir(&run);
    for leftover in [".step-00000005.tmp", ".step-00000003.del"] {
        std::fs::create_dir(dir.join(leftover)).unwrap();
        std::fs::write(dir.join(leftover).join(checkpoint::MODEL_FILE), b"torn").unwrap();
    }
    std::fs::rename(dir.join("epoch-1"), dir.join(".epoch-1.old")).unwrap();

    let (ok, text) = tiny_run(&run);
    assert!(ok, "{text}");
    for needle in [
        format!(
            "removed {}, left by a checkpoint save",
            dir.join(".step-00000005.tmp").display()
        ),
        format!("removed {}", dir.join(".step-00000003.del").display()),
        format!("restored {}", dir.join("epoch-1").display()),
    ] {
        assert!(text.contains(&needle), "missing {needle:?} in:\n{text}");
    }
    // The second run's epoch-1 replaced the restored one, through `.epoch-1.old`.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["epoch-1"]);
    assert_eq!(load_step(&dir.join("epoch-1")).unwrap(), 2);
}

#[test]
fn resume_refuses_contradicting_flags_and_extends_with_more_epochs() {
    let data = data_dir(8, 8);
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("run");
    let (ok, text) = output_of(
        train_program(data.path())
            .args(TINY)
            .args(["--train-limit", "8", "--epochs", "1"])
            .arg("--run-dir")
            .arg(&run),
    );
    assert!(ok, "{text}");
    let epoch1 = checkpoints_dir(&run).join("epoch-1");
    let resume = |flags: &[&str]| {
        output_of(
            train_program(data.path())
                .arg("--resume")
                .arg(&epoch1)
                .args(flags),
        )
    };

    let (ok, text) = resume(&[
        "--image-size",
        "16",
        "--batch-size",
        "8",
        "--preset",
        "tutorial",
    ]);
    assert!(!ok, "{text}");
    for needle in [
        "--resume: these settings contradict the checkpoint's",
        "--image-size 16 (the checkpoint has 8)",
        "--batch-size 8 (the checkpoint has 4)",
        "--preset tutorial (the checkpoint has quick)",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    let (ok, text) = resume(&["--epochs", "1"]);
    assert!(
        !ok && text.contains("already finished its 1 epochs") && text.contains("larger --epochs"),
        "{text}"
    );

    let (ok, text) = resume(&["--epochs", "2", "--log-every", "1"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("--epochs 2 (the checkpoint has 1): the run is extended to 2 epochs"),
        "{text}"
    );
    assert!(
        text.contains("--log-every 1 (the checkpoint has 100): accepted"),
        "{text}"
    );
    assert!(text.contains("epoch 2 done"), "{text}");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            checkpoints_dir(&run)
                .join("epoch-2")
                .join(checkpoint::STATE_FILE),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(state["config"]["epochs"], 2);
    assert_eq!(state["step"], 4);
}

/// The names of the settings that take one of a fixed set.
const SETTING_NAMES: [&str; 10] = [
    "tutorial",
    "recommended",
    "quick",
    "pytorch",
    "kaiming",
    "constant",
    "cosine",
    "f32",
    "tf32",
    "bf16",
];

/// Every field of the config is compared, whatever its type, so a field added later is
/// covered too: changing any one of them is refused by its flag's name, except the
/// ones that only change reporting, checkpointing and how steps are launched (and a
/// larger --epochs).
#[test]
fn resume_compares_every_config_field() {
    let saved = TrainConfig {
        save_every: Some(5),
        ..preset(Preset::Quick)
    };
    let serde_json::Value::Object(fields) = serde_json::to_value(&saved).unwrap() else {
        panic!("not an object")
    };
    for (field, value) in &fields {
        let changed = match value {
            serde_json::Value::Bool(b) => serde_json::json!(!b),
            serde_json::Value::Number(n) if n.is_f64() => {
                serde_json::json!(n.as_f64().unwrap() * 2.0)
            }
            serde_json::Value::Number(n) => serde_json::json!(n.as_u64().unwrap() + 1),
            // A setting with a fixed set of names: another of its names.
            serde_json::Value::String(_) => SETTING_NAMES
                .iter()
                .map(|name| serde_json::json!(name))
                .find(|name| {
                    let mut requested = fields.clone();
                    requested.insert(field.clone(), name.clone());
                    name != value && serde_json::from_value::<TrainConfig>(requested.into()).is_ok()
                })
                .unwrap_or_else(|| panic!("{field}: no other name for {value}")),
            serde_json::Value::Null => serde_json::json!(7),
            other => panic!("{field}: no mutation for {other}"),
        };
        let mut requested = fields.clone();
        requested.insert(field.clone(), changed);
        let requested: TrainConfig = serde_json::from_value(requested.into()).unwrap();
        let result = resume_config(&saved, &requested);
        let flag = format!("--{}", field.replace('_', "-"));
        match field.as_str() {
            "epochs" | "log_every" | "save_every" | "no_graph" => {
                let (config, notes) = result.unwrap();
                assert_eq!(config, requested);
                assert!(notes.len() == 1 && notes[0].starts_with(&flag), "{notes:?}");
            }
            _ => {
                let err = format!("{:#}", result.unwrap_err());
                assert!(err.contains(&format!("{flag} ")), "{field}: {err}");
            }
        }
    }
    let fewer = TrainConfig {
        epochs: 0,
        ..saved.clone()
    };
    let err = format!("{:#}", resume_config(&saved, &fewer).unwrap_err());
    let expected = format!("--epochs 0 (the checkpoint has {})", saved.epochs);
    assert!(err.contains(&expected), "{err}");
}

/// The newest checkpoint by its step (epoch-N and step-N may both be there).
fn newest(run: &Path) -> Option<(u64, PathBuf)> {
    checkpoints(run)
        .into_iter()
        .map(|c| {
            (
                load_step(&c).unwrap_or_else(|e| panic!("{} does not load: {e:#}", c.display())),
                c,
            )
        })
        .max()
}

/// SIGKILL at random moments of a run that checkpoints every step (so most kills land
/// in a save or a pruning): after each, every checkpoint directory left loads, and the
/// run resumed from the newest one each time ends with exactly the weights of a run
/// never interrupted.
#[test]
fn killed_at_random_moments_every_checkpoint_loads_and_the_newest_resumes() {
    let data = data_dir(24, 8);
    let out = tempfile::tempdir().unwrap();
    let flags = |run: &Path| {
        let mut cmd = train_program(data.path());
        cmd.args(TINY)
            .args(["--train-limit", "24", "--epochs", "2", "--save-every", "1"])
            .arg("--run-dir")
            .arg(run)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    };
    let whole = out.path().join("whole");
    let started = std::time::Instant::now();
    assert!(flags(&whole).status().unwrap().success());
    // Kills land at random moments within the first third of the time the uninterrupted
    // run took, so they fall inside the run however fast this machine is, and a resumed
    // run (shorter than the whole) is still killed a few times before it finishes.
    let run_ms = started.elapsed().as_millis().max(100) as u64;

    let run = out.path().join("killed");
    let mut rng = StdRng::seed_from_u64(13);
    let mut kills = 0;
    let mut mid_saves = 0;
    // The run is done once its last epoch's checkpoint exists: a kill can land after
    // that save but before the process exits, and resuming a finished run is refused.
    let is_final = |run: &Path| checkpoints(run).iter().any(|c| c.ends_with("epoch-2"));
    for _ in 0..8 {
        let mut cmd = flags(&run);
        if is_final(&run) {
            break;
        }
        if let Some((_, newest)) = newest(&run) {
            cmd = train_program(data.path());
            cmd.arg("--resume")
                .arg(&newest)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        }
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(
            rng.gen_range(run_ms / 20..run_ms / 3),
        ));
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "train failed: {status}");
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        // Every checkpoint left loads (`newest` panics on one that does not).
        let progress = newest(&run).map_or(0, |(step, _)| step);
        let mid_save = std::fs::read_dir(checkpoints_dir(&run))
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with('.')
                })
                .count()
            })
            .unwrap_or(0);
        mid_saves += usize::from(mid_save > 0);
        eprintln!("kill {kills}: newest checkpoint at step {progress}, {mid_save} leftover(s)");
    }
    assert!(kills >= 2, "only {kills} kills landed");
    if !is_final(&run) {
        let (_, newest) = newest(&run).expect("a checkpoint after all those steps");
        let (ok, text) = output_of(train_program(data.path()).arg("--resume").arg(&newest));
        assert!(ok, "{text}");
    }
    let weights = |run: &Path| {
        std::fs::read(
            checkpoints_dir(run)
                .join("epoch-2")
                .join(checkpoint::MODEL_FILE),
        )
        .unwrap()
    };
    assert!(
        weights(&run) == weights(&whole),
        "the resumed run's weights differ"
    );
    eprintln!("{kills} kills, {mid_saves} of them in a save or a removal");
}
