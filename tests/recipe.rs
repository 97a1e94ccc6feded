//! The training recipe's pieces that are plain functions: the learning-rate
//! schedule and the augmentation views (their effect on images is checked in
//! ops_forward.rs and, against the CPU, in gpu_ops.rs).

use googlenet::engine::device::View;
use googlenet::training::recipe::{batch_views, PAD};
use googlenet::training::recipe::{Schedule, ScheduleKind};
use googlenet::training::{preset, Preset};

#[test]
fn constant_schedule_is_the_rate() {
    let s = Schedule::new(ScheduleKind::Constant, 0, 0.0).unwrap();
    for step in [0, 1, 500, 10_000] {
        assert_eq!(s.lr(1e-3, step, 1000), 1e-3);
    }
}

#[test]
fn cosine_warms_up_then_decays_to_the_floor() {
    // 100 warm-up steps, then 1,001 decay steps: t = (s - 100) / 1000.
    let (lr, total) = (2e-3, 1101);
    let s = Schedule::new(ScheduleKind::Cosine, 100, 0.05).unwrap();
    // Warm-up: lr · (s + 1) / 100.
    assert_eq!(s.lr(lr, 0, total), lr / 100.0);
    assert_eq!(s.lr(lr, 49, total), lr / 2.0);
    assert_eq!(s.lr(lr, 99, total), lr);
    // Peak right after, half way down at the middle of the decay, floor at the end.
    assert_eq!(s.lr(lr, 100, total), lr);
    assert!((s.lr(lr, 600, total) - lr * (0.05 + 0.95 * 0.5)).abs() < 1e-15);
    assert!((s.lr(lr, total - 1, total) - lr * 0.05).abs() < 1e-15);
    // Steps past the end (an extra epoch on resume) stay at the floor.
    assert!((s.lr(lr, total + 10, total) - lr * 0.05).abs() < 1e-15);
    // Never up again after the peak.
    let rates: Vec<f64> = (100..total).map(|step| s.lr(lr, step, total)).collect();
    assert!(rates.windows(2).all(|w| w[1] <= w[0]));
}

#[test]
fn cosine_without_warm_up_starts_at_the_peak() {
    let s = Schedule::new(ScheduleKind::Cosine, 0, 0.0).unwrap();
    assert_eq!(s.lr(1e-3, 0, 10), 1e-3);
    assert!(s.lr(1e-3, 9, 10).abs() < 1e-18);
    // A run of one step is its peak.
    assert_eq!(s.lr(1e-3, 0, 1), 1e-3);
}

#[test]
fn bad_schedules_are_named() {
    // An unknown name is refused where names are read: by the flag's parser (clap,
    // tests/train.rs) and in a saved state.
    let err = serde_json::from_str::<ScheduleKind>("\"linear\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("linear") && err.contains("cosine"), "{err}");
    let err = Schedule::new(ScheduleKind::Cosine, 0, 1.5)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--min-lr-fraction"), "{err}");
}

#[test]
fn the_tutorial_preset_has_no_recipe_extras() {
    let t = preset(Preset::Tutorial);
    assert_eq!(
        (t.schedule, t.augment, t.lr),
        (ScheduleKind::Constant, false, 0.001)
    );
    assert_eq!(t.label_smoothing, 0.0);
}

#[test]
fn view_words_round_trip() {
    for dy in -127..=127 {
        for (dx, flip) in [(-127, true), (0, false), (3, true), (127, false)] {
            let v = View { dy, dx, flip };
            assert_eq!(View::from_word(v.word()), v);
        }
    }
    assert_eq!(View::IDENTITY.word(), 128 | 128 << 8);
}

#[test]
fn views_are_keyed_by_seed_and_step_and_cover_every_shift() {
    let a = batch_views(7, 100, 64);
    assert_eq!(a, batch_views(7, 100, 64), "same key, same views");
    assert_ne!(a, batch_views(7, 101, 64), "another step");
    assert_ne!(a, batch_views(8, 100, 64), "another seed");
    // A shorter batch is a prefix: a view depends on its position only.
    assert_eq!(batch_views(7, 100, 10), a[..10]);

    let many: Vec<View> = (0..200).flat_map(|step| batch_views(1, step, 16)).collect();
    for shift in -PAD..=PAD {
        assert!(many.iter().any(|v| v.dy == shift), "dy {shift} never drawn");
        assert!(many.iter().any(|v| v.dx == shift), "dx {shift} never drawn");
    }
    assert!(many.iter().all(|v| v.dy.abs() <= PAD && v.dx.abs() <= PAD));
    let flipped = many.iter().filter(|v| v.flip).count() as f64 / many.len() as f64;
    assert!((0.45..0.55).contains(&flipped), "{flipped} flipped");
}

#[test]
fn run_directories_are_named_by_local_time_with_a_suffix_on_collision() {
    use googlenet::training::run_dir::create_run_dir;
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (0..3)
        .map(|_| create_run_dir(root.path(), "quick").unwrap())
        .collect();
    let names: Vec<String> = dirs
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    // quick-YYYY-MM-DD_HH-MM-SS: digits where the digits go.
    let stamp = &names[0]["quick-".len()..];
    assert_eq!(stamp.len(), 19, "{stamp}");
    for (i, c) in stamp.chars().enumerate() {
        match i {
            4 | 7 | 13 | 16 => assert_eq!(c, '-', "{stamp}"),
            10 => assert_eq!(c, '_', "{stamp}"),
            _ => assert!(c.is_ascii_digit(), "{stamp}"),
        }
    }
    assert!(dirs.iter().all(|d| d.is_dir()));
    // Three in (most likely) one second: distinct names, the later ones suffixed.
    assert!(names[0] != names[1] && names[1] != names[2]);
    assert!(names[1].ends_with("-2") || names[1][6..25] != names[0][6..25]);
}

#[test]
fn the_summary_takes_the_last_and_the_best_epoch() {
    use googlenet::training::metrics::Record;
    use googlenet::training::metrics::{format_duration, Summary};
    let epoch = |epoch, test_accuracy, epoch_time_s, images_per_s| Record::Epoch {
        epoch,
        step: epoch as u64 * 100,
        train_loss: 0.5,
        train_accuracy: 0.8,
        test_accuracy,
        epoch_time_s,
        images_per_s,
    };
    assert_eq!(Summary::from_records(&[]), None);
    let s = Summary::from_records(&[
        epoch(1, 0.85, 100.0, 300.0),
        epoch(2, 0.91, 100.0, 100.0),
        epoch(3, 0.90, 200.0, 200.0),
    ])
    .unwrap();
    assert_eq!(
        (s.final_test_accuracy, s.best_epoch, s.best_test_accuracy),
        (0.90, 2, 0.91)
    );
    assert_eq!(s.train_seconds, 400.0);
    // 30,000 + 10,000 + 40,000 images in 400 s.
    assert!((s.images_per_s - 200.0).abs() < 1e-9);
    assert_eq!(format_duration(41.4), "41 s");
    assert_eq!(format_duration(572.0), "9 min 32 s");
    assert_eq!(format_duration(7500.0), "2 h 05 min");
}
