//! `train --data DIR`'s data set: a folder of class folders walked, held out, decoded
//! in every mode to the chosen channels and side, and every bad input refused by name
//! before training starts (or, with --skip-bad-images, left out and counted).

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use common::images::{self, class_folders, options};
use common::runs::output_of;
use googlenet::data::folder::{ChannelsChosen, FolderOptions, Plan, TestSource};
use googlenet::data::DataSet;

fn plan(options: &FolderOptions) -> Plan {
    Plan::new(options).unwrap_or_else(|e| panic!("{e:#}"))
}

fn load(options: &FolderOptions) -> DataSet {
    plan(options)
        .load()
        .unwrap_or_else(|e| panic!("{e:#}"))
        .data
}

/// The error `Plan::new` (scan and headers), or else `load` (decoding), gives.
fn error(options: &FolderOptions) -> String {
    match Plan::new(options) {
        Err(e) => format!("{e:#}"),
        Ok(plan) => match plan.load() {
            Err(e) => format!("{e:#}"),
            Ok(_) => panic!("{} loaded", options.dir.display()),
        },
    }
}

/// Every image's pixels (all alike in `class_folders`' images), each image's first.
fn first_pixels(data: &DataSet, train: bool) -> Vec<u8> {
    let split = if train { &data.train } else { &data.test };
    split
        .images
        .chunks(split.shape().image_bytes())
        .map(|image| image[0])
        .collect()
}

#[test]
fn classes_are_the_sorted_folder_names_and_every_label_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    // Created in this order, so class k's pixels are 40k + 10.
    let made = ["dog", "cat", "Zebra", "ant bear"];
    class_folders(dir.path(), &made, 8);
    // Subfolders count; hidden files and files of other kinds are left out.
    images::save(&dir.path().join("cat/more/x.png"), &images::grey(5, 5, 50));
    images::save(&dir.path().join("cat/.hidden.png"), &images::grey(5, 5, 0));
    std::fs::write(dir.path().join("dog/notes.txt"), "dogs").unwrap();

    let data = load(&options(dir.path()));
    // Python's sort: by code point, capitals first.
    assert_eq!(
        data.description.classes,
        ["Zebra", "ant bear", "cat", "dog"]
    );
    for train in [true, false] {
        let split = if train { &data.train } else { &data.test };
        for (&label, pixel) in split.labels.iter().zip(first_pixels(&data, train)) {
            let class = &data.description.classes[label as usize];
            let k = made.iter().position(|m| m == class).unwrap();
            assert_eq!(
                pixel,
                40 * k as u8 + 10,
                "an image of {class} labelled {label}"
            );
        }
    }
    // 8 images a class (9 for cat), a quarter held out of each.
    assert_eq!((data.train.len(), data.test.len()), (25, 8));
    let plan = plan(&options(dir.path()));
    assert_eq!(plan.ignored, [dir.path().join("dog/notes.txt")]);
    assert!(plan.report().iter().any(|l| l.contains("left out 1 file")));
}

#[test]
fn the_held_out_split_is_stratified_and_seeded() {
    let dir = tempfile::tempdir().unwrap();
    class_folders(dir.path(), &["a", "b", "c"], 1);
    class_folders(dir.path(), &["a", "b"], 10);
    class_folders(&dir.path().join("b"), &["more"], 10);
    // a: 10 images, b: 20, c: 1 (which it keeps for training).
    let at = |fraction: f64, seed: u64| {
        plan(&FolderOptions {
            test_fraction: fraction,
            seed,
            ..options(dir.path())
        })
    };
    let p = at(0.3, 1);
    let count = |samples: &[googlenet::data::folder::Sample], label: u8| {
        samples.iter().filter(|s| s.label == label).count()
    };
    assert_eq!([0, 1, 2].map(|l| count(&p.test, l)), [3, 6, 0]);
    assert_eq!([0, 1, 2].map(|l| count(&p.train, l)), [7, 14, 1]);
    assert_eq!(p.test_source, TestSource::HeldOut(0.3));
    assert_eq!(at(0.3, 1).test, p.test, "the same seed, the same split");
    assert_ne!(at(0.3, 2).test, p.test, "another seed, another split");
    // Both parts keep the scan's order (class by class, paths sorted).
    let mut sorted = p.train.clone();
    sorted.sort_by(|a, b| (a.label, &a.path).cmp(&(b.label, &b.path)));
    assert_eq!(sorted, p.train);
}

#[test]
fn train_and_test_folders_are_used_as_given() {
    let dir = tempfile::tempdir().unwrap();
    class_folders(&dir.path().join("train"), &["a", "b"], 3);
    class_folders(&dir.path().join("val"), &["b"], 2);
    let data = load(&options(dir.path()));
    assert_eq!(data.description.classes, ["a", "b"]);
    assert_eq!(data.test.labels, [1, 1], "val/b is class b of train/");
    assert_eq!(first_pixels(&data, false), [10, 10]);
    assert_eq!(data.train.len(), 6);

    // A test class that is not a training class.
    class_folders(&dir.path().join("val"), &["c"], 1);
    let e = error(&options(dir.path()));
    assert!(
        e.contains("val/c") && e.contains("no class \"c\"") && e.contains("train"),
        "{e}"
    );
    std::fs::remove_dir_all(dir.path().join("val/c")).unwrap();
    // Both test/ and val/.
    class_folders(&dir.path().join("test"), &["a"], 1);
    let e = error(&options(dir.path()));
    assert!(e.contains("both test/ and val/"), "{e}");
    // A folder beside train/.
    std::fs::remove_dir_all(dir.path().join("test")).unwrap();
    class_folders(dir.path(), &["extra"], 1);
    let e = error(&options(dir.path()));
    assert!(e.contains("extra: a folder beside train/"), "{e}");
    // test/ without train/.
    let other = tempfile::tempdir().unwrap();
    class_folders(other.path(), &["a", "b"], 2);
    class_folders(&other.path().join("test"), &["a"], 1);
    let e = error(&options(other.path()));
    assert!(e.contains("test: a test/ folder but no train/"), "{e}");
}

/// Grey, RGB, RGBA, palette (PNG and GIF), 16-bit grey and RGB, JPEG, BMP, TIFF and
/// WebP in one class: each is made RGB as PIL's convert("RGB") does (alpha dropped,
/// grey repeated, 16 bits to 8), or grey as its convert("L").
#[test]
fn every_mode_decodes_to_the_chosen_channels() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("train/a");
    let exact: Vec<(&str, [u8; 3])> = vec![
        ("0-grey.png", [100, 100, 100]),
        ("1-rgb.png", [10, 200, 30]),
        ("2-rgba.png", [50, 60, 70]),
        ("3-palette.png", [200, 100, 0]),
        ("4-grey16.png", [128, 128, 128]),
        ("5-rgb16.tiff", [255, 0, 128]),
        ("6-rgb.bmp", [1, 2, 3]),
        ("7-rgb.webp", [90, 80, 70]),
    ];
    images::save(&a.join(exact[0].0), &images::grey(6, 6, 100));
    images::save(&a.join(exact[1].0), &images::rgb(6, 6, [10, 200, 30]));
    // Fully transparent: PIL's convert("RGB") keeps the colour under it.
    images::save(&a.join(exact[2].0), &images::rgba(6, 6, [50, 60, 70, 0]));
    images::palette_png(
        &a.join(exact[3].0),
        6,
        6,
        &[[9, 9, 9], [200, 100, 0]],
        |_, _| 1,
    );
    images::save(&a.join(exact[4].0), &images::grey16(6, 6, 0x8080));
    let rgb16 = image::ImageBuffer::from_pixel(6, 6, image::Rgb([0xffffu16, 0, 0x8080]));
    images::save(&a.join(exact[5].0), &image::DynamicImage::ImageRgb16(rgb16));
    images::save(&a.join(exact[6].0), &images::rgb(6, 6, [1, 2, 3]));
    images::save(&a.join(exact[7].0), &images::rgb(6, 6, [90, 80, 70]));
    // JPEG is lossy and GIF's encoder quantises its palette: a flat colour comes back
    // within a few levels.
    let near = [
        ("8-rgb.jpg", [150u8, 40, 220]),
        ("9-palette.gif", [0, 0, 255]),
    ];
    for (name, colour) in near {
        images::save(&a.join(name), &images::rgb(8, 8, colour));
    }
    class_folders(&dir.path().join("train"), &["b"], 3);
    class_folders(&dir.path().join("test"), &["b"], 1);
    let whole = FolderOptions {
        store_side: 6,
        ..options(dir.path())
    };

    let plan = plan(&whole);
    assert_eq!(plan.channels, 3);
    assert_eq!(
        plan.channels_chosen,
        ChannelsChosen::Colour(a.join("1-rgb.png"))
    );
    let report = plan.report().join("\n");
    let rgba = format!("RGBA (first: {})", a.join("2-rgba.png").display());
    for needle in [&rgba[..], "16-bit grey", "16-bit RGB", "made RGB"] {
        assert!(report.contains(needle), "{needle:?} missing in {report}");
    }
    let data = plan.load().unwrap().data;
    assert_eq!((data.train.channels, data.train.rows), (3, 6));
    let plane = 36;
    let images: Vec<&[u8]> = data.train.images.chunks(3 * plane).collect();
    for (i, (name, colour)) in exact.iter().enumerate() {
        for (c, &value) in colour.iter().enumerate() {
            let channel = &images[i][c * plane..(c + 1) * plane];
            assert!(
                channel.iter().all(|&v| v == value),
                "{name} channel {c}: {channel:?}"
            );
        }
    }
    for (i, (name, colour)) in near.iter().enumerate() {
        let image = images[exact.len() + i];
        for (c, &value) in colour.iter().enumerate() {
            let channel = &image[c * plane..(c + 1) * plane];
            assert!(
                channel.iter().all(|&v| v.abs_diff(value) <= 4),
                "{name} channel {c}: {channel:?}"
            );
        }
    }

    // Grey, as PIL's convert("L"): L = (19595 R + 38470 G + 7471 B + 2^15) >> 16.
    let data = load(&FolderOptions {
        channels: Some(1),
        ..whole.clone()
    });
    assert_eq!(data.train.channels, 1);
    for (i, (name, [r, g, b])) in exact.iter().enumerate() {
        let luma =
            ((19595 * *r as u32 + 38470 * *g as u32 + 7471 * *b as u32 + 0x8000) >> 16) as u8;
        let image = &data.train.images[i * plane..(i + 1) * plane];
        assert!(
            image.iter().all(|&v| v == luma),
            "{name}: {image:?}, expected {luma}"
        );
    }

    // Without colour in the training images, one channel is chosen.
    let grey = tempfile::tempdir().unwrap();
    class_folders(grey.path(), &["a", "b"], 2);
    images::save(&grey.path().join("a/x.png"), &images::grey16(4, 4, 7));
    let p = self::plan(&options(grey.path()));
    assert_eq!(
        (p.channels, p.channels_chosen),
        (1, ChannelsChosen::AllGrey)
    );
}

/// The shorter side resized to the store side, the centre cropped at
/// `round((long - side) / 2)`, halves to even (as torchvision, in Python).
#[test]
fn images_are_fitted_as_torchvision_s_evaluation_transform() {
    use googlenet::data::folder::image_file::fit;
    // Column x holds 8x; the height is already the side, so nothing is resampled.
    let columns = |w: u32| {
        image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(w, 10, |x, _| {
            image::Luma([8 * x as u8])
        }))
    };
    for (w, first_column) in [(10, 0), (11, 0), (12, 1), (13, 2), (15, 2), (30, 10)] {
        let fitted = fit(&columns(w), 1, 10).unwrap();
        let expected: Vec<u8> = (0..10)
            .flat_map(|_| (0..10).map(move |x| 8 * (x + first_column) as u8))
            .collect();
        assert_eq!(fitted, expected, "{w}x10");
    }
    // A 20x40 image to side 10: 10x20, its middle rows; a flat image stays flat.
    let flat = fit(&images::rgb(20, 40, [7, 8, 9]), 3, 10).unwrap();
    assert_eq!(flat, [[7u8; 100], [8; 100], [9; 100]].concat());
}

#[test]
fn an_empty_class_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    class_folders(dir.path(), &["a", "b"], 2);
    std::fs::create_dir(dir.path().join("c")).unwrap();
    let e = error(&options(dir.path()));
    assert!(e.contains("/c: an empty class folder"), "{e}");
    std::fs::write(dir.path().join("c/readme.md"), "nothing").unwrap();
    let e = error(&options(dir.path()));
    assert!(
        e.contains("/c: an empty class folder") && e.contains("only files of other kinds"),
        "{e}"
    );
}

#[test]
fn a_single_class_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    class_folders(dir.path(), &["only"], 4);
    let e = error(&options(dir.path()));
    assert!(
        e.contains("only one class folder (only)") && e.contains("at least two"),
        "{e}"
    );
}

#[test]
fn no_images_at_all_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = error(&options(dir.path()));
    assert!(e.contains("no class folders"), "{e}");
    let e = error(&options(&dir.path().join("missing")));
    assert!(e.contains("missing: cannot open the data folder"), "{e}");
    std::fs::write(dir.path().join("file"), "x").unwrap();
    let e = error(&options(&dir.path().join("file")));
    assert!(e.contains("file: not a folder"), "{e}");
    // Images, but not in class folders.
    images::save(&dir.path().join("loose.png"), &images::grey(4, 4, 1));
    let e = error(&options(dir.path()));
    assert!(
        e.contains("loose.png: an image outside any class folder"),
        "{e}"
    );
}

/// A file that is not an image, one whose header reads but whose data is damaged, and
/// a broken link: named (the first few) and refused, or left out with
/// --skip-bad-images, the rest labelled as before; a class left with nothing is named.
#[test]
fn files_that_are_not_images_or_are_damaged_are_named_or_left_out() {
    let dir = tempfile::tempdir().unwrap();
    class_folders(dir.path(), &["a", "b"], 4);
    std::fs::write(dir.path().join("a/letter.png"), "Dear ...").unwrap();
    let e = error(&options(dir.path()));
    assert!(
        e.contains("1 file(s) are not readable images")
            && e.contains("a/letter.png: not an image in a known format")
            && e.contains("--skip-bad-images"),
        "{e}"
    );
    // The data cut off after the header.
    let good = std::fs::read(dir.path().join("b/000.png")).unwrap();
    std::fs::write(dir.path().join("b/cut.png"), &good[..good.len() - 20]).unwrap();
    symlink("gone.png", dir.path().join("b/broken.png")).unwrap();

    let skip = FolderOptions {
        skip_bad_images: true,
        ..options(dir.path())
    };
    let plan = plan(&skip);
    assert_eq!(plan.skipped.len(), 2, "{:?}", plan.skipped);
    let report = plan.report().join("\n");
    assert!(
        report.contains("left out 2 bad image(s)")
            && report.contains("broken.png: a broken symbolic link")
            && report.contains("letter.png: not an image"),
        "{report}"
    );
    let loaded = plan.load().unwrap();
    assert_eq!(loaded.skipped.len(), 1);
    assert!(
        loaded.skipped[0].path.ends_with("b/cut.png")
            && loaded.skipped[0].reason.contains("its data is damaged"),
        "{:?}",
        loaded.skipped
    );
    // 4 + 4 good images, none of them mislabelled.
    assert_eq!(loaded.data.train.len() + loaded.data.test.len(), 8);
    for (&label, pixel) in loaded
        .data
        .train
        .labels
        .iter()
        .zip(first_pixels(&loaded.data, true))
    {
        assert_eq!(pixel, 40 * label + 10);
    }
    // Without --skip-bad-images, the damaged data is named too (after the header pass).
    std::fs::remove_file(dir.path().join("a/letter.png")).unwrap();
    std::fs::remove_file(dir.path().join("b/broken.png")).unwrap();
    let e = error(&options(dir.path()));
    assert!(
        e.contains("b/cut.png: not a readable image (its data is damaged"),
        "{e}"
    );

    // A class whose every image is bad.
    let all_bad = tempfile::tempdir().unwrap();
    class_folders(all_bad.path(), &["a"], 3);
    std::fs::create_dir(all_bad.path().join("b")).unwrap();
    std::fs::write(all_bad.path().join("b/x.jpg"), "not a jpeg").unwrap();
    let e = error(&FolderOptions {
        skip_bad_images: true,
        ..options(all_bad.path())
    });
    assert!(
        e.contains("/b: none of the class's images could be read"),
        "{e}"
    );
}

/// Too large on a side, too large decoded, too elongated to resize: each refused from
/// its header, before anything is decoded.
#[test]
fn images_over_the_decoder_s_limits_are_refused_by_their_header() {
    let dir = tempfile::tempdir().unwrap();
    class_folders(dir.path(), &["a", "b"], 2);
    // 16385 pixels wide: over MAX_SIDE.
    images::flat_png(&dir.path().join("a/wide.png"), 16385, 1, 0, 0);
    let e = error(&options(dir.path()));
    assert!(
        e.contains("a/wide.png: the image is 16385x1: larger than 16384 pixels on a side"),
        "{e}"
    );
    std::fs::remove_file(dir.path().join("a/wide.png")).unwrap();
    // 8000x1 at a store side of 1024 would be resized to 8192000x1024 before the crop.
    images::flat_png(&dir.path().join("a/long.png"), 8000, 1, 0, 0);
    let e = error(&FolderOptions {
        store_side: 1024,
        ..options(dir.path())
    });
    assert!(
        e.contains("a/long.png: the image is 8000x1: resizing its shorter side to 1024 would make it 8192000x1024")
            && e.contains("too elongated"),
        "{e}"
    );
    // At a store side of 8 it fits.
    assert!(Plan::new(&options(dir.path())).is_ok());
    std::fs::remove_file(dir.path().join("a/long.png")).unwrap();
    // 11600x11600 RGBA: 538 MB of pixels, over the decoder's 512 MiB, refused before
    // they are allocated.
    images::flat_png(&dir.path().join("b/huge.png"), 11600, 11600, 6, 0);
    let e = error(&options(dir.path()));
    assert!(
        e.contains("b/huge.png: the image is 11600x11600 RGBA: 538240000 bytes decoded")
            && e.contains("over the decoder's limit of 512 MiB"),
        "{e}"
    );
}

#[test]
fn symbolic_link_loops_and_doubled_folders_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    class_folders(dir.path(), &["a", "b"], 2);
    symlink(".", dir.path().join("a/loop")).unwrap();
    let e = error(&options(dir.path()));
    assert!(
        e.contains("a/loop: a symbolic link loop: it leads back to"),
        "{e}"
    );
    std::fs::remove_file(dir.path().join("a/loop")).unwrap();

    // A class folder that is another one, through a link.
    symlink(dir.path().join("a"), dir.path().join("c")).unwrap();
    let e = error(&options(dir.path()));
    assert!(
        e.contains("/c: the same folder as") && e.contains("read twice"),
        "{e}"
    );
    std::fs::remove_file(dir.path().join("c")).unwrap();

    // One file in two classes: its label would be ambiguous.
    symlink(dir.path().join("a/000.png"), dir.path().join("b/same.png")).unwrap();
    let e = error(&options(dir.path()));
    assert!(
        e.contains("b/same.png: the same file as") && e.contains("ambiguous"),
        "{e}"
    );
    std::fs::remove_file(dir.path().join("b/same.png")).unwrap();

    // Links to folders and files elsewhere are followed.
    let elsewhere = tempfile::tempdir().unwrap();
    class_folders(elsewhere.path(), &["d"], 3);
    symlink(elsewhere.path().join("d"), dir.path().join("d")).unwrap();
    let data = load(&options(dir.path()));
    assert_eq!(data.description.classes, ["a", "b", "d"]);
    assert_eq!(data.train.len() + data.test.len(), 7);
}

/// What cannot be read for its permissions: a class folder that cannot be listed is
/// refused; a file that cannot be opened is a bad image. As root, permissions do not
/// bind, so the program runs as `nobody`.
#[test]
fn unreadable_files_and_folders_are_named() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.path().join("data");
    class_folders(&data, &["a", "b", "c"], 3);
    let mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    mode(&data.join("a/001.png"), 0o000);
    mode(&data.join("c"), 0o000);
    // Root runs the program as nobody, who may not reach the checkout (a clone in a
    // `mktemp -d` folder is 0700): a copy beside the data.
    let program = dir.path().join("train");
    std::fs::copy(env!("CARGO_BIN_EXE_train"), &program).unwrap();
    let train = |extra: &[&str]| {
        let mut cmd = Command::new(&program);
        cmd.args([
            "--device=cpu",
            "--preset=quick",
            "--test-fraction=0.4",
            "--data",
        ])
        .arg(&data)
        .args(extra);
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cmd.uid(65534).gid(65534);
        }
        output_of(&mut cmd)
    };
    let (ok, text) = train(&["--summary"]);
    assert!(
        !ok && text.contains("/c: cannot list the folder") && text.contains("ermission denied"),
        "{text}"
    );
    mode(&data.join("c"), 0o755);
    let (ok, text) = train(&["--summary"]);
    assert!(
        !ok && text.contains("a/001.png: cannot open it") && text.contains("ermission denied"),
        "{text}"
    );
    let (ok, text) = train(&["--summary", "--skip-bad-images"]);
    assert!(ok && text.contains("on 1x32x32 inputs"), "{text}");
}

/// Flags that only a folder takes, or that a folder cannot take, by name.
#[test]
fn folder_flags_are_checked_by_name() {
    let dir = tempfile::tempdir().unwrap();
    class_folders(dir.path(), &["a", "b"], 2);
    let folder = dir.path().to_str().unwrap();
    for (flags, needle) in [
        (
            vec!["--store-size", "16"],
            "--store-size applies to --data DIR",
        ),
        (
            vec!["--skip-bad-images"],
            "--skip-bad-images applies to --data DIR",
        ),
        (
            vec!["--data", folder, "--test-fraction", "1"],
            "--test-fraction must be between 0 and 1",
        ),
        (
            vec!["--data", folder, "--store-size", "0"],
            "--store-size must be from 1",
        ),
        (
            vec!["--data", folder, "--channels", "2"],
            "invalid value '2' for '--channels",
        ),
        (
            vec!["--data", folder],
            "no test images: holding out 0.1 of each class's images (rounded) leaves none",
        ),
        (
            vec!["--data", folder, "--data-dir", "/tmp"],
            "--data-dir applies to Fashion-MNIST",
        ),
    ] {
        let (ok, text) = output_of(
            Command::new(env!("CARGO_BIN_EXE_train"))
                .args(["--device=cpu", "--summary"])
                .args(&flags),
        );
        assert!(!ok && text.contains(needle), "{flags:?}: {text}");
    }
    // The summary of a folder's model: its channels in conv1, its classes in fc.
    let (ok, text) = output_of(
        Command::new(env!("CARGO_BIN_EXE_train"))
            .args([
                "--device=cpu",
                "--summary",
                "--preset=quick",
                "--channels=3",
                "--test-fraction=0.5",
                "--data",
            ])
            .arg(folder),
    );
    assert!(ok && text.contains("on 3x32x32 inputs"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("fc ") && l.contains("2050")),
        "{text}"
    );
}

/// A folder whose decoded images cannot fit is refused from its file count and the
/// store side, before anything is decoded, with the --store-size that would fit.
/// 40,000 names of two files (hard links) at 3x1024x1024 are 126 GB decoded, twice that
/// with the run's copy of them: more than a test machine has.
#[test]
fn a_data_set_too_big_to_decode_is_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    class_folders(dir.path(), &["a", "b"], 1);
    for class in ["a", "b"] {
        let original = dir.path().join(class).join("000.png");
        for i in 1..20_000 {
            std::fs::hard_link(
                &original,
                dir.path().join(class).join(format!("{i:05}.png")),
            )
            .unwrap();
        }
    }
    let run = tempfile::tempdir().unwrap();
    let (ok, text) = output_of(
        Command::new(env!("CARGO_BIN_EXE_train"))
            .args([
                "--device=cpu",
                "--preset=quick",
                "--channels=3",
                "--store-size=1024",
            ])
            .arg("--data")
            .arg(dir.path())
            .arg("--run-dir")
            .arg(run.path()),
    );
    assert!(!ok, "{text}");
    for needle in [
        "the data set cannot be decoded into memory: its 40000 images of 3x1024x1024 take 117.2 GiB",
        "not enough memory for this run",
        "--store-size ",
        " would fit",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(!text.contains("data: decoded"), "{text}");
    assert!(!googlenet::training::run_dir::metrics_path(run.path()).exists());
}
