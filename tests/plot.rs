//! `plot_metrics` writes a PNG of the expected size, and copes with odd input.

use std::path::Path;

use googlenet::training::metrics::Record;
use googlenet::training::metrics::{plot_metrics, SIZE};

fn log(epoch: usize, step: u64, loss: f64, accuracy: f64) -> Record {
    Record::Log {
        epoch,
        batch: step as usize,
        step,
        loss,
        accuracy,
        elapsed_s: step as f64 * 0.1,
        lr: Some(1e-3 * (1.0 + (step as f64 / 200.0).cos()) / 2.0),
    }
}

fn epoch(epoch: usize, step: u64, train_loss: f64, train_accuracy: f64, test: f64) -> Record {
    Record::Epoch {
        epoch,
        step,
        train_loss,
        train_accuracy,
        test_accuracy: test,
        epoch_time_s: 60.0,
        images_per_s: 1000.0,
    }
}

/// Three epochs of 200 steps, logged every 20 steps: loss falls, accuracy rises.
fn training_run() -> Vec<Record> {
    let mut records = Vec::new();
    for e in 1..=3 {
        for b in 1..=10u64 {
            let step = (e as u64 - 1) * 200 + b * 20;
            let t = step as f64 / 600.0;
            let wiggle = 0.05 * (step as f64 * 0.37).sin();
            let loss = 0.3 + 2.0 * (-4.0 * t).exp() + wiggle;
            let accuracy = 0.92 - 0.8 * (-5.0 * t).exp() + 0.3 * wiggle;
            records.push(log(e, step, loss, accuracy));
        }
        let t = e as f64 / 3.0;
        records.push(epoch(
            e,
            e as u64 * 200,
            0.3 + 2.0 * (-4.0 * t).exp() + 0.1,
            0.9 - 0.8 * (-5.0 * t).exp() - 0.03,
            0.88 - 0.8 * (-5.0 * t).exp(),
        ));
    }
    records
}

/// Width and height from a PNG file's signature and IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.len() > 24,
        "{} is too short for a PNG",
        path.display()
    );
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR", "first chunk is not IHDR");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

fn plot_ok(records: &[Record], name: &str) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join(name);
    plot_metrics(records, &png, "GoogLeNet on Fashion-MNIST").unwrap();
    assert_eq!(png_size(&png), SIZE);
    assert_eq!(SIZE, (1650, 500));
    std::fs::metadata(&png).unwrap().len()
}

#[test]
fn training_run_gives_png_of_expected_size() {
    let bytes = plot_ok(&training_run(), "metrics.png");
    // A white image of this size packs into a few KB; text and curves add much more.
    assert!(bytes > 20_000, "suspiciously small PNG: {bytes} bytes");
}

#[test]
fn no_records_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("empty.png");
    let err = plot_metrics(&[], &png, "empty").unwrap_err();
    assert!(err.to_string().contains("no metrics records"), "{err:#}");
    assert!(!png.exists());
}

#[test]
fn name_must_end_in_png() {
    let dir = tempfile::tempdir().unwrap();
    let err = plot_metrics(&training_run(), &dir.path().join("plot.jpg"), "t").unwrap_err();
    assert!(err.to_string().contains(".png"), "{err:#}");
}

#[test]
fn missing_directory_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("no/such/dir/plot.png");
    assert!(plot_metrics(&training_run(), &png, "t").is_err());
}

#[test]
fn nan_and_infinite_values_are_skipped() {
    let mut records = training_run();
    records[2] = log(1, 60, f64::NAN, 0.5);
    records[3] = log(1, 80, f64::INFINITY, f64::NAN);
    records[4] = log(1, 100, 1.0, f64::NEG_INFINITY);
    records.push(epoch(4, 800, f64::NAN, f64::INFINITY, f64::NAN));
    plot_ok(&records, "nan.png");

    // Nothing finite at all: empty axes, still no error.
    let all_nan = vec![
        log(1, 10, f64::NAN, f64::NAN),
        epoch(1, 20, f64::NAN, f64::INFINITY, f64::NEG_INFINITY),
    ];
    plot_ok(&all_nan, "all_nan.png");
}

#[test]
fn single_records_and_flat_values() {
    plot_ok(&[log(1, 1, 2.3, 0.1)], "one_log.png");
    plot_ok(&[epoch(1, 0, 0.5, 0.8, 0.75)], "one_epoch_at_step_0.png");
    let flat: Vec<Record> = (1..=5).map(|s| log(1, s * 10, 0.7, 0.5)).collect();
    plot_ok(&flat, "flat.png");
    let zeros: Vec<Record> = (1..=5).map(|s| log(1, s * 10, 0.0, 0.0)).collect();
    plot_ok(&zeros, "zeros.png");
}

#[test]
fn appended_runs_where_the_step_goes_back() {
    let mut records = training_run();
    records.extend(training_run());
    plot_ok(&records, "two_runs.png");
}

/// Pixels of the line colour (31, 119, 180) in the right third: the rate's panel.
fn lr_panel_line_pixels(records: &[Record]) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("lr.png");
    plot_metrics(records, &png, "t").unwrap();
    let image = image::open(&png).unwrap().to_rgb8();
    image
        .enumerate_pixels()
        .filter(|(x, _, p)| *x > 2 * SIZE.0 / 3 && p.0 == [31, 119, 180])
        .count()
}

#[test]
fn the_learning_rate_has_its_own_panel() {
    let with_rate = lr_panel_line_pixels(&training_run());
    assert!(with_rate > 500, "{with_rate} line pixels in the rate panel");
    // Files from before the rate was recorded: that panel stays empty.
    let without: Vec<Record> = training_run()
        .into_iter()
        .map(|mut r| {
            if let Record::Log { lr, .. } = &mut r {
                *lr = None;
            }
            r
        })
        .collect();
    assert_eq!(lr_panel_line_pixels(&without), 0);
}

#[test]
fn confusion_matrix_png() {
    use googlenet::data::CLASS_NAMES;
    use googlenet::training::metrics::{plot_confusion, CONFUSION_SIZE};
    let mut confusion = vec![[0u64; 10]; 10];
    for (i, row) in confusion.iter_mut().enumerate() {
        row[i] = 900;
        row[(i + 1) % 10] = 100;
    }
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("confusion.png");
    plot_confusion(&confusion, &CLASS_NAMES, &png, "confusion").unwrap();
    assert_eq!(png_size(&png), CONFUSION_SIZE);
    // The diagonal cells are dark (90% of their row), the empty ones white.
    let image = image::open(&png).unwrap().to_rgb8();
    let dark = image
        .pixels()
        .filter(|p| p.0[0] < 80 && p.0[2] > 120)
        .count();
    assert!(dark > 10 * 50 * 50, "{dark} dark pixels");
    let err = plot_confusion(&confusion, &CLASS_NAMES, &dir.path().join("c.jpg"), "c");
    assert!(err.unwrap_err().to_string().contains(".png"));
}
