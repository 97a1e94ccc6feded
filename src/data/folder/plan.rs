//! A folder data set from its files to its decoded splits, in two steps, so that a
//! set too big for memory is refused before any image is decoded:
//!   `Plan::new`  walks the folder (scan.rs), reads every image's header in parallel
//!                (size and colour, no pixels), sets bad files aside or refuses them,
//!                picks the channels and holds out the test split (holdout.rs);
//!   `Plan::load` decodes every image in parallel, once, to `channels` planes of
//!                `store_side x store_side` (image_file.rs), and measures the
//!                training split's per-channel mean and std.
//! Bad files (not images, damaged, too large, unreadable) are an error naming the
//! first few, or, with `skip_bad_images`, left out and reported; a class left with no
//! training image is an error either way.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Result};
use rayon::prelude::*;

use super::holdout::hold_out;
use super::image_file::{self, Header, MAX_SIDE};
use super::progress::Progress;
use super::scan::{scan, BadFile, Sample};
use crate::data::{DataDescription, DataSet, Split};

/// How many bad files an error or report names.
const NAMED: usize = 5;

/// What to read and how.
#[derive(Clone, Debug, PartialEq)]
pub struct FolderOptions {
    pub dir: PathBuf,
    /// Of each class's images, held out for testing when the folder has no test split.
    pub test_fraction: f64,
    /// The run's seed: picks the held-out images.
    pub seed: u64,
    /// The side images are decoded to.
    pub store_side: usize,
    /// 1 or 3; None: 3 if any training image has colour, else 1.
    pub channels: Option<usize>,
    /// Leave out files that are not readable images instead of refusing the set.
    pub skip_bad_images: bool,
}

/// Where the test split comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum TestSource {
    /// Held out of the training images: this fraction of each class.
    HeldOut(f64),
    /// The folder's `test/` or `val/`.
    Folder(PathBuf),
}

/// Why the images have the channels they have.
#[derive(Clone, Debug, PartialEq)]
pub enum ChannelsChosen {
    Given,
    /// This training image has colour.
    Colour(PathBuf),
    /// No training image has colour.
    AllGrey,
}

/// How many images of one mode there are, and the first.
#[derive(Clone, Debug, PartialEq)]
pub struct ModeCount {
    pub mode: &'static str,
    pub count: usize,
    pub first: PathBuf,
}

/// A folder data set scanned and checked, not yet decoded.
#[derive(Clone, Debug)]
pub struct Plan {
    pub root: PathBuf,
    pub classes: Vec<String>,
    pub train: Vec<Sample>,
    pub test: Vec<Sample>,
    pub test_source: TestSource,
    pub channels: usize,
    pub channels_chosen: ChannelsChosen,
    pub store_side: usize,
    /// Of every image, training and test, most frequent first.
    pub modes: Vec<ModeCount>,
    /// Files left out for their extension.
    pub ignored: Vec<PathBuf>,
    /// Bad files left out (`skip_bad_images`).
    pub skipped: Vec<BadFile>,
    skip_bad_images: bool,
}

/// A finished decode: the data set, the files that failed to decode and were left
/// out (`skip_bad_images`), and the seconds it took.
pub struct Loaded {
    pub data: DataSet,
    pub skipped: Vec<BadFile>,
    pub seconds: f64,
}

impl Plan {
    /// Scans `options.dir` and reads every image's header (see the module comment).
    pub fn new(options: &FolderOptions) -> Result<Plan> {
        ensure!(
            options.test_fraction > 0.0 && options.test_fraction < 1.0,
            "--test-fraction must be between 0 and 1 (exclusive), got {}",
            options.test_fraction
        );
        ensure!(
            options.store_side >= 1 && options.store_side as u32 <= MAX_SIDE,
            "--store-size must be from 1 to {MAX_SIDE}, got {}",
            options.store_side
        );
        if let Some(c) = options.channels {
            ensure!(c == 1 || c == 3, "--channels must be 1 or 3, got {c}");
        }
        let found = scan(&options.dir)?;
        let given_test = found.test.clone();
        let all: Vec<&Sample> = found
            .train
            .iter()
            .chain(given_test.iter().flat_map(|(_, t)| t))
            .collect();
        let headers: Vec<Result<Header>> = all
            .par_iter()
            .map(|s| image_file::read_header(image_file::open(&s.path)?, MAX_SIDE))
            .collect();
        let colour = all
            .iter()
            .zip(&headers)
            .take(found.train.len())
            .find(|(_, h)| h.as_ref().is_ok_and(Header::has_colour))
            .map(|(s, _)| s.path.clone());
        let (channels, channels_chosen) = match (options.channels, colour) {
            (Some(c), _) => (c, ChannelsChosen::Given),
            (None, Some(path)) => (3, ChannelsChosen::Colour(path)),
            (None, None) => (1, ChannelsChosen::AllGrey),
        };
        let side = options.store_side as u32;
        let headers = headers.into_iter().map(|header| {
            let header = header?;
            image_file::check_fit(header.width, header.height, channels, side)?;
            Ok(header)
        });
        let (mut bad, modes) = survey(&all, headers);
        bad.splice(0..0, found.unreadable.iter().cloned());
        if !bad.is_empty() && !options.skip_bad_images {
            bail!(refusal(&found.root, &bad));
        }
        let bad_paths: HashSet<&Path> = bad.iter().map(|b| b.path.as_path()).collect();
        let good = |samples: &[Sample]| -> Vec<Sample> {
            samples
                .iter()
                .filter(|s| !bad_paths.contains(s.path.as_path()))
                .cloned()
                .collect()
        };
        let (train, test, test_source) = match &given_test {
            Some((name, test)) => (
                good(&found.train),
                good(test),
                TestSource::Folder(found.root.join(name)),
            ),
            None => {
                let (train, test) =
                    hold_out(&good(&found.train), options.test_fraction, options.seed);
                (train, test, TestSource::HeldOut(options.test_fraction))
            }
        };
        let labels: Vec<u8> = train.iter().map(|s| s.label).collect();
        every_class_trains(
            &train_dir(&found.root, &test_source),
            &found.classes,
            &labels,
        )?;
        match &test_source {
            _ if !test.is_empty() => {}
            TestSource::HeldOut(fraction) => bail!(
                "{}: no test images: holding out {fraction} of each class's images \
                 (rounded) leaves none; raise --test-fraction, add images, or give train/ \
                 and test/ folders",
                found.root.display()
            ),
            TestSource::Folder(dir) => bail!(
                "{}: no test images could be read (--skip-bad-images left them all out)",
                dir.display()
            ),
        }
        Ok(Plan {
            root: found.root,
            classes: found.classes,
            train,
            test,
            test_source,
            channels,
            channels_chosen,
            store_side: options.store_side,
            modes,
            ignored: found.ignored,
            skipped: bad,
            skip_bad_images: options.skip_bad_images,
        })
    }

    /// The bytes of one decoded image.
    pub fn image_bytes(&self) -> usize {
        self.channels * self.store_side * self.store_side
    }

    /// Lines for the program to print: the split, the channels, the modes and what was
    /// left out.
    pub fn report(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "{} classes: {}",
            self.classes.len(),
            self.classes.join(", ")
        )];
        lines.push(format!(
            "{} training and {} test images ({})",
            self.train.len(),
            self.test.len(),
            match &self.test_source {
                TestSource::HeldOut(f) => format!("the test images held out of each class: {f}"),
                TestSource::Folder(dir) => format!("the test images from {}", dir.display()),
            }
        ));
        let modes = self
            .modes
            .iter()
            .map(|m| format!("{} {} (first: {})", m.count, m.mode, m.first.display()))
            .collect::<Vec<_>>()
            .join(", ");
        let conversion = match self.channels {
            1 => "made grey (colour through ITU-R 601 luma, alpha dropped)",
            _ => "made RGB (grey repeated, alpha dropped)",
        };
        let why = match &self.channels_chosen {
            ChannelsChosen::Given => "--channels".to_string(),
            ChannelsChosen::Colour(path) => format!("{} has colour", path.display()),
            ChannelsChosen::AllGrey => "no training image has colour".to_string(),
        };
        lines.push(format!(
            "images: {modes}; {conversion}: {} channel(s) ({why}), stored at {s}x{s}",
            self.channels,
            s = self.store_side
        ));
        if let Some(first) = self.ignored.first() {
            lines.push(format!(
                "left out {} file(s) that are not images by their extension (first: {})",
                self.ignored.len(),
                first.display()
            ));
        }
        if !self.skipped.is_empty() {
            lines.push(format!(
                "--skip-bad-images: left out {} bad image(s): {}",
                self.skipped.len(),
                named(&self.skipped)
            ));
        }
        lines
    }

    /// Decodes both splits and measures the training split (see the module comment).
    pub fn load(&self) -> Result<Loaded> {
        let started = Instant::now();
        let progress = Progress::start(self.train.len() + self.test.len(), "images");
        let (train, mut skipped) = self.decode(&self.train, &progress);
        let (test, test_skipped) = self.decode(&self.test, &progress);
        progress.finish();
        skipped.extend(test_skipped);
        let seconds = started.elapsed().as_secs_f64();
        if !skipped.is_empty() && !self.skip_bad_images {
            bail!(refusal(&self.root, &skipped));
        }
        every_class_trains(
            &train_dir(&self.root, &self.test_source),
            &self.classes,
            &train.labels,
        )?;
        let description = DataDescription::measure(self.classes.clone(), &train)?;
        Ok(Loaded {
            data: DataSet {
                train,
                test,
                description,
                source: self.root.clone(),
                found_by: "--data".to_string(),
            },
            skipped,
            seconds,
        })
    }

    /// Decodes the test split only (for `eval`, whose normalisation is the
    /// checkpoint's); the files that failed, left out with `skip_bad_images`.
    pub fn load_test(&self) -> Result<(Split, Vec<BadFile>)> {
        let progress = Progress::start(self.test.len(), "test images");
        let (test, skipped) = self.decode(&self.test, &progress);
        progress.finish();
        if !skipped.is_empty() && !self.skip_bad_images {
            bail!(refusal(&self.root, &skipped));
        }
        Ok((test, skipped))
    }

    /// `samples` decoded in parallel into one split; the ones that failed are left out
    /// of it and returned.
    fn decode(&self, samples: &[Sample], progress: &Progress) -> (Split, Vec<BadFile>) {
        let bytes = self.image_bytes();
        let mut images = vec![0u8; samples.len() * bytes];
        let failures: Vec<Option<BadFile>> = images
            .par_chunks_mut(bytes)
            .zip(samples.par_iter())
            .map(|(slot, sample)| {
                let decoded = decode_file(&sample.path, self.channels, self.store_side);
                progress.advance();
                match decoded {
                    Ok(pixels) => {
                        slot.copy_from_slice(&pixels);
                        None
                    }
                    Err(e) => Some(BadFile {
                        path: sample.path.clone(),
                        reason: format!("{e:#}"),
                    }),
                }
            })
            .collect();
        let mut split = Split {
            images: Vec::with_capacity(images.len()),
            labels: Vec::with_capacity(samples.len()),
            channels: self.channels,
            rows: self.store_side,
            cols: self.store_side,
        };
        let mut skipped = Vec::new();
        for ((pixels, sample), failure) in images.chunks(bytes).zip(samples).zip(failures) {
            match failure {
                Some(bad) => skipped.push(bad),
                None => {
                    split.images.extend_from_slice(pixels);
                    split.labels.push(sample.label);
                }
            }
        }
        (split, skipped)
    }
}

/// The file at `path` decoded and fitted (image_file.rs).
fn decode_file(path: &Path, channels: usize, side: usize) -> Result<Vec<u8>> {
    let image = image_file::decode(image_file::open(path)?, MAX_SIDE)?;
    image_file::fit(&image, channels, side as u32)
}

/// The files of `all` whose header is bad (or which cannot be fitted), and the modes
/// of the others.
fn survey(
    all: &[&Sample],
    headers: impl Iterator<Item = Result<Header>>,
) -> (Vec<BadFile>, Vec<ModeCount>) {
    let mut bad = Vec::new();
    let mut modes: Vec<ModeCount> = Vec::new();
    for (sample, header) in all.iter().zip(headers) {
        let header = match header {
            Ok(header) => header,
            Err(e) => {
                bad.push(BadFile {
                    path: sample.path.clone(),
                    reason: format!("{e:#}"),
                });
                continue;
            }
        };
        match modes.iter_mut().find(|m| m.mode == header.mode()) {
            Some(m) => m.count += 1,
            None => modes.push(ModeCount {
                mode: header.mode(),
                count: 1,
                first: sample.path.clone(),
            }),
        }
    }
    modes.sort_by_key(|m| std::cmp::Reverse(m.count));
    (bad, modes)
}

/// The folder the training classes are in.
fn train_dir(root: &Path, test_source: &TestSource) -> PathBuf {
    match test_source {
        TestSource::Folder(_) => root.join("train"),
        TestSource::HeldOut(_) => root.to_path_buf(),
    }
}

/// Fails unless every class has a training image left.
fn every_class_trains(train_dir: &Path, classes: &[String], labels: &[u8]) -> Result<()> {
    for (label, class) in classes.iter().enumerate() {
        if !labels.iter().any(|&l| l as usize == label) {
            bail!(
                "{}: none of the class's images could be read (--skip-bad-images left them \
                 all out), so the class cannot be learned",
                train_dir.join(class).display()
            );
        }
    }
    Ok(())
}

/// The first few of `bad` with their reasons.
fn named(bad: &[BadFile]) -> String {
    let mut text = bad
        .iter()
        .take(NAMED)
        .map(|b| format!("{}: {}", b.path.display(), b.reason))
        .collect::<Vec<_>>()
        .join("; ");
    if bad.len() > NAMED {
        text += &format!("; and {} more", bad.len() - NAMED);
    }
    text
}

/// The error for bad files found without `skip_bad_images`.
fn refusal(root: &Path, bad: &[BadFile]) -> String {
    format!(
        "{}: {} file(s) are not readable images: {}. Fix or remove them, or pass \
         --skip-bad-images to leave them out",
        root.display(),
        bad.len(),
        named(bad)
    )
}
