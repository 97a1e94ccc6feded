//! `predict`: turning user images into Fashion-MNIST's form, and the program.
//!
//! The agreement test trains a short run on the real data set (where it is
//! installed; CI installs it), renders test images as a user might have them
//! (larger, off-centre, inverted, in colour, as PNG, JPEG and BMP) and checks that
//! they are mostly classified as their 28x28 originals are.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

use anyhow::Result;
use common::system_data::{self, SYSTEM_DIR};
use googlenet::data::{self, DataDescription, DataOptions};
use googlenet::training::checkpoint;
use googlenet::training::metrics::Record;
use googlenet::training::predict::{
    class_probabilities, load_image, prepare, top_k, Invert, MAX_SIDE, SIDE,
};
use googlenet::training::{self, Observer, TrainConfig};
use googlenet::training::{preset, Preset};
use googlenet::{Device, GoogLeNet, GoogLeNetConfig, Init, Parameters};
use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, ImageFormat, Luma, Rgb, RgbImage};

/// A dark 20x10 bar on a light 60x40 photo, left of centre.
fn bar_on_white() -> DynamicImage {
    DynamicImage::ImageLuma8(GrayImage::from_fn(60, 40, |x, y| {
        let inside = (5..15).contains(&x) && (10..30).contains(&y);
        Luma([if inside { 30 } else { 250 }])
    }))
}

#[test]
fn a_light_photo_is_inverted_trimmed_and_centred() {
    let (image, inverted) = prepare(&bar_on_white(), Invert::Auto);
    assert!(inverted);
    assert_eq!(image.dimensions(), (SIDE, SIDE));
    // The 10x20 bar fills 28 rows and 14 columns, centred: columns 7..21.
    for (x, y, p) in image.enumerate_pixels() {
        let v = p.0[0];
        if (8..20).contains(&x) && (1..27).contains(&y) {
            assert!(v > 200, "({x}, {y}) = {v}, expected the bar");
        } else if !(6..22).contains(&x) {
            assert_eq!(v, 0, "({x}, {y}) = {v}, expected background");
        }
    }
    // Told not to invert, the light background is the object: nothing to trim.
    let (image, inverted) = prepare(&bar_on_white(), Invert::No);
    assert!(!inverted);
    assert!(image.pixels().all(|p| p.0[0] == 0));
}

#[test]
fn a_blank_image_gives_a_black_canvas() {
    let blank = DynamicImage::ImageLuma8(GrayImage::from_pixel(9, 5, Luma([255])));
    let (image, inverted) = prepare(&blank, Invert::Auto);
    assert!(inverted);
    assert!(image.pixels().all(|p| p.0[0] == 0));
}

#[test]
fn bad_flags_and_files_are_named() -> Result<()> {
    let err = Invert::parse("maybe").unwrap_err().to_string();
    assert!(err.contains("--invert") && err.contains("maybe"), "{err}");

    let tmp = tempfile::tempdir()?;
    let text = tmp.path().join("notes.txt");
    std::fs::write(&text, "not a picture")?;
    let err = format!("{:#}", load_image(&text).unwrap_err());
    assert!(err.contains("not an image"), "{err}");

    let err = format!(
        "{:#}",
        load_image(&tmp.path().join("missing.png")).unwrap_err()
    );
    assert!(err.contains("cannot open"), "{err}");

    let truncated = tmp.path().join("truncated.png");
    let mut png = Vec::new();
    bar_on_white().write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)?;
    std::fs::write(&truncated, &png[..png.len() / 2])?;
    let err = format!("{:#}", load_image(&truncated).unwrap_err());
    assert!(err.contains("damaged"), "{err}");

    let huge = tmp.path().join("huge.bmp");
    std::fs::write(&huge, bmp_header(20_000, 18_000))?;
    let err = format!("{:#}", load_image(&huge).unwrap_err());
    assert!(
        err.contains("20000x18000") && err.contains(&MAX_SIDE.to_string()),
        "{err}"
    );
    Ok(())
}

/// The 54-byte header of a 24-bit BMP of `w x h` pixels, without the pixels: a
/// file whose header promises gigabytes.
fn bmp_header(w: u32, h: u32) -> Vec<u8> {
    let row = (w * 3).div_ceil(4) * 4;
    let size = 54u64 + row as u64 * h as u64;
    let mut b = Vec::new();
    b.extend_from_slice(b"BM");
    b.extend_from_slice(&(size.min(u32::MAX as u64) as u32).to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&54u32.to_le_bytes());
    b.extend_from_slice(&40u32.to_le_bytes());
    b.extend_from_slice(&w.to_le_bytes());
    b.extend_from_slice(&h.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&24u16.to_le_bytes());
    b.extend_from_slice(&[0; 24]);
    b
}

struct Quiet;
impl Observer for Quiet {
    fn record(&mut self, _: &Record) {}
}

/// Test image `i`, as a user might have it, in three forms.
fn renditions(original: &GrayImage, i: usize) -> [(DynamicImage, ImageFormat); 3] {
    // Larger and off-centre on a black canvas.
    let big = image::imageops::resize(original, 84, 84, FilterType::Triangle);
    let mut canvas = GrayImage::new(130, 100);
    image::imageops::replace(&mut canvas, &big, 10 + i as i64 % 20, 6);
    // Inverted (dark on white), at another size.
    let mut inverted = image::imageops::resize(original, 61, 61, FilterType::CatmullRom);
    image::imageops::invert(&mut inverted);
    let mut white = GrayImage::from_pixel(90, 70, Luma([255]));
    image::imageops::replace(&mut white, &inverted, 20, 4);
    // In colour: a brown object on a cream background.
    let scaled = image::imageops::resize(original, 45, 45, FilterType::Triangle);
    let colour = RgbImage::from_fn(55, 50, |x, y| {
        let v = if (5..50).contains(&x) && (3..48).contains(&y) {
            scaled.get_pixel(x - 5, y - 3).0[0] as f32 / 255.0
        } else {
            0.0
        };
        let mix = |bg: f32, fg: f32| (bg + (fg - bg) * v).round() as u8;
        Rgb([mix(250.0, 110.0), mix(245.0, 70.0), mix(230.0, 30.0)])
    });
    [
        (DynamicImage::ImageLuma8(canvas), ImageFormat::Png),
        (DynamicImage::ImageLuma8(white), ImageFormat::Jpeg),
        (DynamicImage::ImageRgb8(colour), ImageFormat::Bmp),
    ]
}

/// A short run on the real data: 300 steps of the quick recipe (warm-up shortened
/// in proportion).
fn short_trained_checkpoint(dir: &Path) -> Result<(PathBuf, TrainConfig)> {
    let data: data::DataSet = data::load(&DataOptions {
        data_dir: Some(SYSTEM_DIR.into()),
        download: false,
        ..DataOptions::default()
    })?
    .into();
    let config = TrainConfig {
        train_limit: Some(4800),
        test_limit: Some(1000),
        epochs: 1,
        warmup_steps: 30,
        // The batch and rate the quick recipe had before its time budget: 300 steps.
        batch_size: 16,
        lr: 0.001,
        time_budget_minutes: None,
        ..preset(Preset::Quick)
    };
    let outcome = training::train(
        &Device::cpu(),
        &data,
        dir,
        None,
        &config,
        &AtomicBool::new(false),
        &mut Quiet,
    )?;
    // This is also the quick recipe, shortened, in CI: it must have learned.
    let training::Outcome::Finished { test_accuracy } = outcome else {
        panic!("the short run did not finish: {outcome:?}")
    };
    eprintln!("300 steps of the quick recipe: test accuracy {test_accuracy} (1000 images)");
    assert!(
        test_accuracy > 0.6,
        "test accuracy {test_accuracy} after 300 steps"
    );
    Ok((dir.join("checkpoints").join("epoch-1"), config))
}

#[test]
fn user_renditions_are_classified_as_the_originals() -> Result<()> {
    if !system_data::present() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let (checkpoint_dir, config) = short_trained_checkpoint(tmp.path())?;
    let device = Device::cpu();
    let (net, mut params): (GoogLeNet, Parameters) =
        GoogLeNet::new(&device, GoogLeNetConfig::default(), Init::PyTorchDefault, 0)?;
    checkpoint::load_weights(&checkpoint_dir, &mut params)?;

    let test = data::load(&DataOptions {
        data_dir: Some(SYSTEM_DIR.into()),
        download: false,
        ..DataOptions::default()
    })?
    .test;
    let count = 60;
    let originals: Vec<GrayImage> = (0..count)
        .map(|i| GrayImage::from_raw(28, 28, test.images[i * 784..(i + 1) * 784].to_vec()).unwrap())
        .collect();
    let fashion = DataDescription::fashion_mnist();
    let pixels = |images: &[GrayImage]| -> Vec<Vec<u8>> {
        images.iter().map(|i| i.as_raw().clone()).collect()
    };
    let reference: Vec<usize> =
        class_probabilities(&net, &params, &config, &fashion, &pixels(&originals))?
            .iter()
            .map(|p| top_k(p, 1)[0].0)
            .collect();

    let files = tmp.path().join("images");
    std::fs::create_dir(&files)?;
    let mut paths = vec![Vec::new(); 3];
    for (i, original) in originals.iter().enumerate() {
        for (form, (image, format)) in renditions(original, i).into_iter().enumerate() {
            let path = files.join(format!("{i}-{form}.{}", format.extensions_str()[0]));
            image.save_with_format(&path, format)?;
            paths[form].push(path);
        }
    }
    for (form, paths) in paths.iter().enumerate() {
        let prepared: Vec<GrayImage> = paths
            .iter()
            .map(|p| Ok(prepare(&load_image(p)?, Invert::Auto).0))
            .collect::<Result<_>>()?;
        let predicted = class_probabilities(&net, &params, &config, &fashion, &pixels(&prepared))?;
        let agree = predicted
            .iter()
            .zip(&reference)
            .filter(|(p, &r)| top_k(p, 1)[0].0 == r)
            .count();
        eprintln!("form {form}: {agree} of {count} agree with the 28x28 originals");
        // Observed: 54, 56 and 52 of 60. A wrong inversion or fit gives far fewer;
        // the short-trained model's borderline images may flip on a re-rendering.
        assert!(
            agree * 100 >= count * 80,
            "form {form}: only {agree} of {count} agree"
        );
    }

    // The program: one good image of each form, a text file and a missing one.
    let notes = files.join("notes.txt");
    std::fs::write(&notes, "hello")?;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_predict"));
    cmd.arg(&checkpoint_dir).arg("--json").arg("--device=cpu");
    cmd.args([
        &paths[0][0],
        &paths[1][0],
        &paths[2][0],
        &notes,
        &files.join("gone.png"),
    ]);
    let out = cmd.output()?;
    assert_eq!(out.status.code(), Some(1), "some files failed: exit code 1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("notes.txt: not an image"), "{stderr}");
    assert!(stderr.contains("gone.png: cannot open"), "{stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let entries = doc.as_array().expect("a JSON array");
    assert_eq!(entries.len(), 5);
    for (entry, inverted) in entries[..3].iter().zip([false, true, true]) {
        assert_eq!(entry["inverted"], inverted, "{entry}");
        let top = entry["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        let p: Vec<f64> = top
            .iter()
            .map(|t| t["probability"].as_f64().unwrap())
            .collect();
        assert!(p[0] >= p[1] && p[1] >= p[2] && p.iter().sum::<f64>() <= 1.0 + 1e-6);
    }
    assert_eq!(entries[0]["top"][0]["class"], reference[0]);
    assert!(entries[3]["error"]
        .as_str()
        .unwrap()
        .contains("not an image"));

    // Text output, all good: exit code 0, names and percentages.
    let out = Command::new(env!("CARGO_BIN_EXE_predict"))
        .arg(&checkpoint_dir)
        .arg(&paths[1][0])
        .arg("--device=cpu")
        .output()?;
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("(90x70, inverted):") && stdout.contains('%'),
        "{stdout}"
    );
    Ok(())
}
