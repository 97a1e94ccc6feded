//! The data a run's settings name, read: Fashion-MNIST's files (found, or downloaded,
//! and checked), or a folder of class folders, weighed against the memory the run
//! will have before a single image of it is decoded.

use anyhow::{bail, Result};

use crate::data::folder::{FolderOptions, Plan};
use crate::data::{self, DataDescription, DataOptions, DataSet, Split};
use crate::engine::device::Device;
use crate::engine::nn::{GoogLeNet, Init};
use crate::training::memory;
use crate::training::model::model_config;
use crate::training::run::{data_shape, workload};
use crate::training::settings::{Channels, DataSource, TrainConfig, DEFAULT_TEST_FRACTION};

/// How a folder is read for `config`, with `channels` when known (None: chosen from
/// the images); None for Fashion-MNIST.
pub fn folder_options(config: &TrainConfig) -> Option<FolderOptions> {
    let DataSource::Folder(dir) = &config.data else {
        return None;
    };
    Some(FolderOptions {
        dir: dir.clone(),
        test_fraction: config.test_fraction.unwrap_or(DEFAULT_TEST_FRACTION),
        seed: config.seed,
        store_side: config.store_size.unwrap_or(config.image_size),
        channels: config.channels.map(Channels::count),
        skip_bad_images: config.skip_bad_images,
    })
}

/// The data set `config` trains on. A folder's channels, when chosen from its images,
/// are written into `config`, so that the run records them. `fashion` says where
/// Fashion-MNIST's files are; `say` gets lines for the user.
pub fn load_for_training(
    device: &Device,
    config: &mut TrainConfig,
    fashion: &DataOptions,
    say: &mut dyn FnMut(String),
) -> Result<DataSet> {
    let Some(options) = folder_options(config) else {
        return Ok(data::load(fashion)?.into());
    };
    let plan = Plan::new(&options)?;
    for line in plan.report() {
        say(format!("data: {line}"));
    }
    config.channels = Some(Channels::from_count(plan.channels)?);
    check_memory(device, config, &plan)?;
    let loaded = plan.load()?;
    let images = loaded.data.train.len() + loaded.data.test.len();
    say(format!(
        "data: decoded {images} images in {:.1}s ({:.0} images/s)",
        loaded.seconds,
        images as f64 / loaded.seconds.max(1e-9)
    ));
    if !loaded.skipped.is_empty() {
        say(format!(
            "data: --skip-bad-images: left out {} more image(s) whose data would not \
             decode (first: {}: {})",
            loaded.skipped.len(),
            loaded.skipped[0].path.display(),
            loaded.skipped[0].reason
        ));
    }
    Ok(loaded.data)
}

/// The test split a checkpoint's run (`config`, on `data`) was evaluated on,
/// prepared as it was.
pub fn load_test_split(
    config: &TrainConfig,
    data: &DataDescription,
    fashion: &DataOptions,
    say: &mut dyn FnMut(String),
) -> Result<Split> {
    let Some(mut options) = folder_options(config) else {
        let found = data::load(fashion)?;
        say(format!(
            "data: {} ({})",
            found.source.display(),
            found.found_by
        ));
        return Ok(found.test);
    };
    options.channels = Some(data.channels);
    options.store_side = data.store_side;
    let plan = Plan::new(&options)?;
    if plan.classes != data.classes {
        bail!(
            "{}: its classes {:?} are not the checkpoint's {:?}",
            plan.root.display(),
            plan.classes,
            data.classes
        );
    }
    say(format!(
        "data: {} ({} test images, {})",
        plan.root.display(),
        plan.test.len(),
        match &plan.test_source {
            data::folder::TestSource::HeldOut(f) =>
                format!("held out of each class: {f}, seed {}", config.seed),
            data::folder::TestSource::Folder(dir) => format!("from {}", dir.display()),
        }
    ));
    let (test, skipped) = plan.load_test()?;
    if let Some(first) = plan.skipped.iter().chain(&skipped).next() {
        say(format!(
            "data: --skip-bad-images: left out {} bad image(s) (first: {}: {})",
            plan.skipped.len() + skipped.len(),
            first.path.display(),
            first.reason
        ));
    }
    Ok(test)
}

/// Refuses `plan`'s data set, before it is decoded, when `config`'s run on it would
/// not fit in memory (`memory::check_decoded`).
fn check_memory(device: &Device, config: &TrainConfig, plan: &Plan) -> Result<()> {
    let described = DataDescription {
        classes: plan.classes.clone(),
        channels: plan.channels,
        store_side: plan.store_side,
        mean: vec![0.0; plan.channels],
        std: vec![1.0; plan.channels],
    };
    // The layer geometry only: built on the CPU, whatever the run's device.
    let (net, params) = GoogLeNet::new(
        &Device::cpu(),
        model_config(&described),
        Init::PyTorchDefault,
        0,
    )?;
    let shape = data_shape(
        plan.train.len(),
        plan.test.len(),
        plan.image_bytes(),
        config,
    );
    let w = workload(&net, params.scalar_count(), config, shape, device.is_gpu());
    memory::check_decoded(device, &w, plan.channels, plan.store_side)?;
    Ok(())
}
