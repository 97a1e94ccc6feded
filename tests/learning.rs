//! The whole GoogLeNet learns a small task with a learnable signal.
//!
//! Class k's 32x32 images carry a bright horizontal band at rows 3k..3k+2 over dim
//! noise. PyTorch's identical model (PyTorch init, dropout off, batch 32, Adam lr
//! 0.001) needs 388 steps to bring a batch's loss below 0.05; we allow twice that.

mod common;

use anyhow::Result;
use googlenet::train::train_step;
use googlenet::{Adam, Device, GoogLeNet, GoogLeNetConfig, Init, Labels, Mode, Tape, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SIZE: usize = 32;
const BATCH: usize = 32;
const TARGET_LOSS: f32 = 0.05;
const MAX_STEPS: usize = 800;

fn band_batch(device: &Device, rng: &mut StdRng) -> Result<(Tensor, Labels)> {
    let mut pixels = vec![0.0f32; BATCH * SIZE * SIZE];
    let mut labels = Vec::with_capacity(BATCH);
    for image in pixels.chunks_mut(SIZE * SIZE) {
        let class = rng.gen_range(0..10u32);
        for (i, p) in image.iter_mut().enumerate() {
            let row = i / SIZE;
            let in_band = row / 3 == class as usize && row < 30;
            *p = if in_band {
                0.8 + rng.gen_range(0.0..0.2)
            } else {
                rng.gen_range(0.0..0.3)
            };
        }
        labels.push(class);
    }
    Ok((
        Tensor::from_vec(device, &[BATCH, 1, SIZE, SIZE], pixels)?,
        Labels::new(device, &labels, 10)?,
    ))
}

fn googlenet_learns_bands(device: Device) -> Result<()> {
    let config = GoogLeNetConfig {
        dropout: 0.0,
        ..GoogLeNetConfig::default()
    };
    let (net, mut params) = GoogLeNet::new(&device, config, Init::PyTorchDefault, 1)?;
    let mut adam = Adam::new(&params, 1e-3)?;
    let mut rng = StdRng::seed_from_u64(2);
    let mut reached = None;
    for step in 1..=MAX_STEPS {
        let (images, labels) = band_batch(&device, &mut rng)?;
        let value = train_step(&net, &mut params, &mut adam, &images, &labels, step as u64)?.loss;
        assert!(value.is_finite(), "loss became {value} at step {step}");
        if step % 50 == 0 {
            eprintln!("step {step}: loss {value:.4}");
        }
        if value < TARGET_LOSS {
            reached = Some(step);
            break;
        }
    }
    let step = reached
        .unwrap_or_else(|| panic!("loss did not fall below {TARGET_LOSS} in {MAX_STEPS} steps"));
    eprintln!("loss below {TARGET_LOSS} after {step} steps");

    let (images, labels) = band_batch(&device, &mut rng)?;
    let logits = net.forward(&mut Tape::no_grad(), &params, &images, Mode::Eval)?;
    let correct = googlenet::ops::correct_count(&logits.value, &labels)?;
    assert!(
        correct >= BATCH * 9 / 10,
        "held-out accuracy {correct}/{BATCH}"
    );
    Ok(())
}

// The emulator runs the kernels some hundred times slower than the CPU device:
// hundreds of GoogLeNet steps are out of its reach.
device_tests!(on [cpu, cuda]: googlenet_learns_bands);
