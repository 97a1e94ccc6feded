//! The fuzz targets (`googlenet::fuzz_targets`) on stable: a bounded, seeded run over
//! mutations of real files (flipped bytes, truncations, huge counts and lengths, wrong
//! dtypes and shapes), and a replay of the corpus in `fuzz/corpus/<target>/`, where
//! inputs that once broke something are kept. 0 panics, no call slower than a
//! watchdog's bound, the process's peak memory bounded.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use googlenet::data::DataDescription;
use googlenet::fuzz_targets::{checkpoint_tensors_of, small_model, TARGETS};
use googlenet::training::checkpoint;
use googlenet::training::checkpoint::start_state;
use googlenet::training::settings::Channels;
use googlenet::training::{preset, Preset, TrainConfig};
use googlenet::{Adam, Device, GoogLeNet, GoogLeNetConfig, Init};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Mutated inputs per seed file.
const MUTATIONS: usize = 300;
/// No single call may take this long (a hang aborts the test process, naming it).
const CALL_LIMIT: Duration = Duration::from_secs(20);
/// The test process's peak resident memory after all of it.
const PEAK_LIMIT: u64 = 2 << 30;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// A watchdog that aborts the process when a call runs past `CALL_LIMIT`.
struct Watchdog {
    /// Milliseconds since `start` when the current call began; 0 when idle.
    began: Arc<AtomicU64>,
    start: Instant,
}

impl Watchdog {
    fn new(what: &'static str) -> Watchdog {
        let began = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let seen = began.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(200));
            let at = seen.load(Ordering::SeqCst);
            // The call may have begun after `at` was read: saturate, never wrap.
            let running = (start.elapsed().as_millis() as u64).saturating_sub(at);
            if at != 0 && running > CALL_LIMIT.as_millis() as u64 {
                // Straight to stderr: the test harness's capture dies with the abort.
                let message = format!("HANG: a {what} call ran past {CALL_LIMIT:?}\n");
                let _ = std::io::Write::write_all(&mut std::io::stderr(), message.as_bytes());
                std::process::abort();
            }
        });
        Watchdog { began, start }
    }

    /// Runs `f` on `input`; true when it panicked.
    fn call(&self, f: &dyn Fn(&[u8]), input: &[u8]) -> bool {
        self.began.store(
            self.start.elapsed().as_millis() as u64 + 1,
            Ordering::SeqCst,
        );
        let panicked = catch_unwind(AssertUnwindSafe(|| f(input))).is_err();
        self.began.store(0, Ordering::SeqCst);
        panicked
    }
}

/// One mutation of `seed`: the kinds a hostile or damaged file shows.
fn mutate(seed: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let mut b = seed.to_vec();
    // Most of what parsers look at is near the start (headers).
    let near_start = |rng: &mut StdRng, len: usize| rng.gen_range(0..len.clamp(1, 256));
    match rng.gen_range(0..7) {
        0 => {
            for _ in 0..rng.gen_range(1..8) {
                if b.is_empty() {
                    break;
                }
                let i = if rng.gen_bool(0.7) {
                    near_start(rng, b.len())
                } else {
                    rng.gen_range(0..b.len())
                };
                b[i] ^= 1 << rng.gen_range(0..8);
            }
        }
        1 => b.truncate(rng.gen_range(0..=b.len())),
        2 => {
            // A huge or odd count or length, big- or little-endian, at a header word.
            let values = [u32::MAX, 0x7fff_ffff, 0x8000_0000, 0, 1, 0x0100_0000];
            let v = values[rng.gen_range(0..values.len())];
            let at = near_start(rng, b.len().saturating_sub(4)).min(b.len().saturating_sub(4));
            if b.len() >= 4 {
                let bytes = if rng.gen_bool(0.5) {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                };
                b[at..at + 4].copy_from_slice(&bytes);
            }
        }
        3 => {
            let at = rng.gen_range(0..=b.len());
            let junk: Vec<u8> = (0..rng.gen_range(1..64)).map(|_| rng.gen()).collect();
            b.splice(at..at, junk);
        }
        4 => {
            let start = rng.gen_range(0..=b.len());
            let end = rng.gen_range(start..=b.len().min(start + 64));
            b.drain(start..end);
        }
        _ => {
            // Edits of the JSON inside safetensors headers and of state.json: other
            // dtypes, shapes, offsets and numbers.
            let swaps: [(&[u8], &[u8]); 14] = [
                (b"F32", b"F16"),
                (b"F32", b"I64"),
                (b"F32", b"BOOL"),
                (b"[4,1,3,3]", b"[4294967296,1,3,3]"),
                (b"[10,4]", b"[4,10]"),
                (b"[10]", b"[]"),
                (
                    b"data_offsets\":[",
                    b"data_offsets\":[18446744073709551615,",
                ),
                (b"\"image_size\": ", b"\"image_size\": 1"),
                (b"\"batch_size\": ", b"\"batch_size\": 99999999999"),
                (b"\"epochs\": ", b"\"epochs\": -"),
                (b"\"lr\": ", b"\"lr\": 1e309"),
                (b": 0", b": 18446744073709551616"),
                (b"null", b"0"),
                (b"\"", b""),
            ];
            let (from, to) = swaps[rng.gen_range(0..swaps.len())];
            let found: Vec<usize> = (0..b.len().saturating_sub(from.len() - 1))
                .filter(|&i| b[i..].starts_with(from))
                .collect();
            if found.is_empty() {
                b.push(rng.gen());
            } else {
                let at = found[rng.gen_range(0..found.len())];
                b.splice(at..at + from.len(), to.iter().copied());
            }
        }
    }
    b
}

/// Real files to mutate, per target: the installed Fashion-MNIST's (cut to fewer
/// images) when there is one, crafted IDX files otherwise, and checkpoints as
/// `checkpoint::save` writes them.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let installed = Path::new("/usr/share/datasets/fashion-mnist");
    let real = |name: &str| {
        let bytes = std::fs::read(installed.join(format!("{name}.gz"))).ok()?;
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut content)
            .ok()?;
        Some(content)
    };
    let (images, labels) = match (
        real("t10k-images-idx3-ubyte"),
        real("t10k-labels-idx1-ubyte"),
    ) {
        (Some(mut images), Some(mut labels)) => {
            // The first 20 images and labels, the counts in the headers to match.
            images.truncate(16 + 20 * 784);
            images[4..8].copy_from_slice(&20u32.to_be_bytes());
            labels.truncate(8 + 20);
            labels[4..8].copy_from_slice(&20u32.to_be_bytes());
            (images, labels)
        }
        _ => {
            eprintln!("no installed Fashion-MNIST: mutating crafted IDX files instead");
            (
                common::idx::images_idx(20, 28),
                common::idx::labels_idx(&(0..20).map(|i| i % 10).collect::<Vec<u8>>()),
            )
        }
    };
    match target {
        "idx_raw" => vec![images, labels],
        "idx_gzip" => vec![common::idx::gz(&images), common::idx::gz(&labels)],
        "checkpoint_tensors" | "state_json" => {
            let dir = tempfile::tempdir().unwrap();
            let params = small_model().unwrap();
            let state = serde_json::to_string_pretty(&start_state(
                &preset(Preset::Quick),
                &DataDescription::fashion_mnist(),
            ))
            .unwrap();
            checkpoint::save(
                dir.path(),
                &params,
                &Adam::new(&params, 1e-3).unwrap(),
                &state,
            )
            .unwrap();
            let files: &[&str] = if target == "state_json" {
                &[checkpoint::STATE_FILE]
            } else {
                &[checkpoint::MODEL_FILE, checkpoint::OPTIMIZER_FILE]
            };
            let mut seeds: Vec<Vec<u8>> = files
                .iter()
                .map(|f| std::fs::read(dir.path().join(f)).unwrap())
                .collect();
            if target == "state_json" {
                // A run on a folder: its settings and its data set's description.
                let config = TrainConfig {
                    data: "/data/leaves".parse().unwrap(),
                    test_fraction: Some(0.1),
                    store_size: Some(32),
                    channels: Some(Channels::Rgb),
                    skip_bad_images: true,
                    ..preset(Preset::Quick)
                };
                let data = DataDescription {
                    classes: vec!["oak".into(), "ash".into(), "elm".into()],
                    channels: 3,
                    store_side: 32,
                    mean: vec![0.41, 0.5, 0.33],
                    std: vec![0.2, 0.21, 0.19],
                };
                let state = start_state(&config, &data);
                seeds.push(serde_json::to_vec_pretty(&state).unwrap());
            }
            seeds
        }
        "predict_image" => {
            // A small picture, light object on a dark ground, in the formats predict
            // reads most.
            let picture = image::RgbImage::from_fn(20, 16, |x, y| {
                let v = if (4..16).contains(&x) && (3..13).contains(&y) {
                    200
                } else {
                    20
                };
                image::Rgb([v, (v + x as u8 * 3) % 255, v / 2])
            });
            [
                image::ImageFormat::Png,
                image::ImageFormat::Jpeg,
                image::ImageFormat::Bmp,
                image::ImageFormat::Gif,
            ]
            .into_iter()
            .map(|format| {
                let mut bytes = std::io::Cursor::new(Vec::new());
                image::DynamicImage::ImageRgb8(picture.clone())
                    .write_to(&mut bytes, format)
                    .unwrap();
                bytes.into_inner()
            })
            .collect()
        }
        "folder_image" => {
            // The modes a folder of user images holds: grey, RGB, RGBA, 16-bit grey
            // and RGB, as PNG; RGB as JPEG, GIF (a palette), BMP, TIFF and WebP.
            let modes = [
                image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(9, 7, |x, y| {
                    image::Luma([(x * 20 + y) as u8])
                })),
                image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(9, 7, |x, y| {
                    image::Rgb([x as u8 * 9, y as u8 * 30, 77])
                })),
                image::DynamicImage::ImageRgba8(image::RgbaImage::from_fn(5, 8, |x, y| {
                    image::Rgba([x as u8, 200, y as u8, 128])
                })),
                image::DynamicImage::ImageLuma16(image::ImageBuffer::from_fn(6, 6, |x, y| {
                    image::Luma([(x * 9000 + y) as u16])
                })),
                image::DynamicImage::ImageRgb16(image::ImageBuffer::from_fn(4, 6, |x, y| {
                    image::Rgb([x as u16 * 999, 0, y as u16 * 4000])
                })),
            ];
            let encode = |image: &image::DynamicImage, format| {
                let mut bytes = std::io::Cursor::new(Vec::new());
                image.write_to(&mut bytes, format).unwrap();
                bytes.into_inner()
            };
            let mut seeds: Vec<Vec<u8>> = modes
                .iter()
                .map(|m| encode(m, image::ImageFormat::Png))
                .collect();
            for format in [
                image::ImageFormat::Jpeg,
                image::ImageFormat::Gif,
                image::ImageFormat::Bmp,
                image::ImageFormat::Tiff,
                image::ImageFormat::WebP,
            ] {
                seeds.push(encode(&modes[1], format));
            }
            seeds
        }
        "folder_scan" => {
            // Trees of the layouts `--data` reads, with a loop, a file of another
            // kind, an empty class and a link to a class folder.
            use googlenet::fuzz_targets::{tree_bytes, TreeEntry};
            let png = |value: u8| {
                let mut bytes = std::io::Cursor::new(Vec::new());
                image::DynamicImage::ImageLuma8(image::GrayImage::from_pixel(
                    3,
                    2,
                    image::Luma([value]),
                ))
                .write_to(&mut bytes, image::ImageFormat::Png)
                .unwrap();
                bytes.into_inner()
            };
            let file = |path: &str, value| TreeEntry::File(path.to_string(), png(value));
            let flat = vec![
                file("a/1.png", 10),
                file("a/2.png", 20),
                file("a/sub/3.png", 30),
                file("b/1.png", 40),
                file("b/2.png", 50),
                TreeEntry::File("b/notes.txt".to_string(), b"notes".to_vec()),
                TreeEntry::Link("b/loop".to_string(), ".".to_string()),
            ];
            let split = vec![
                file("train/a/1.png", 1),
                file("train/a/2.png", 2),
                file("train/b/1.png", 3),
                file("test/b/1.png", 4),
                TreeEntry::Folder("train/c".to_string()),
                TreeEntry::Link("train/d".to_string(), "a".to_string()),
            ];
            vec![
                tree_bytes(&flat),
                tree_bytes(&flat[..5]),
                tree_bytes(&split),
            ]
        }
        other => panic!("no seeds for {other}"),
    }
}

fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Every target over its seeds' mutations and its corpus.
#[test]
fn fuzz_targets_never_panic_hang_or_balloon() {
    let mut rng = StdRng::seed_from_u64(0x13);
    let mut report = Vec::new();
    for (name, target) in TARGETS {
        let watchdog = Watchdog::new(name);
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        let corpus = corpus_dir(name);
        let mut replayed = 0;
        for entry in
            std::fs::read_dir(&corpus).unwrap_or_else(|e| panic!("{}: {e}", corpus.display()))
        {
            inputs.push(std::fs::read(entry.unwrap().path()).unwrap());
            replayed += 1;
        }
        for seed in seeds(name) {
            inputs.push(seed.clone());
            inputs.extend((0..MUTATIONS).map(|_| mutate(&seed, &mut rng)));
        }
        if name == "idx_gzip" {
            // Mutations of the content too (huge counts in the header, truncations),
            // compressed intact, so that they reach the IDX header check.
            for seed in seeds("idx_raw") {
                inputs.extend((0..MUTATIONS).map(|_| common::idx::gz(&mutate(&seed, &mut rng))));
            }
        }
        let panics: Vec<&Vec<u8>> = inputs
            .iter()
            .filter(|input| watchdog.call(&target, input))
            .collect();
        for input in &panics {
            let path = std::env::temp_dir().join(format!("{name}-crash-{}", input.len()));
            std::fs::write(&path, input).unwrap();
            eprintln!(
                "{name}: panicked on {} (saved for the corpus)",
                path.display()
            );
        }
        assert!(panics.is_empty(), "{name}: {} panics", panics.len());
        report.push(format!(
            "{name}: {} inputs ({replayed} from the corpus)",
            inputs.len()
        ));
    }

    // The whole model's checkpoint files, a few mutations each (they are 24 and 48 MB).
    let (_, params) = GoogLeNet::new(
        &Device::cpu(),
        GoogLeNetConfig::default(),
        Init::PyTorchDefault,
        0,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    checkpoint::save(
        dir.path(),
        &params,
        &Adam::new(&params, 1e-3).unwrap(),
        "{}",
    )
    .unwrap();
    let watchdog = Watchdog::new("GoogLeNet checkpoint");
    let load = |bytes: &[u8]| checkpoint_tensors_of(&params, bytes);
    for file in [checkpoint::MODEL_FILE, checkpoint::OPTIMIZER_FILE] {
        let seed = std::fs::read(dir.path().join(file)).unwrap();
        for _ in 0..8 {
            let input = mutate(&seed, &mut rng);
            assert!(!watchdog.call(&load, &input), "{file}: a mutation panicked");
        }
    }
    let peak = peak_rss();
    eprintln!("{}; peak memory {} MiB", report.join("; "), peak >> 20);
    assert!(peak < PEAK_LIMIT, "peak memory {peak} bytes");
}
