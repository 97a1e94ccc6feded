//! Our half of `scripts/pytorch_peer.py --check`: one forward/backward of a checkpoint on
//! a given batch, written out for PyTorch to compare.
//!
//! ```sh
//! cargo run --release --example dump_step -- \
//!     --checkpoint runs/<run>/checkpoints/epoch-1 --batch batch.safetensors --out ours.safetensors
//! ```
//!
//! The batch file holds `images` (f32 `[N, 1, S, S]`) and `labels` (i64 or i32 `[N]`),
//! as `pytorch_peer.py --write-batch` makes it. The output holds `logits` (`[N, 10]`),
//! `loss` (a scalar: the mean cross-entropy) and `grad.<name>` for every parameter, all
//! f32. Dropout is off (evaluation mode) so the step is deterministic; the peer script
//! runs PyTorch's model in `eval()` mode to match.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use googlenet::training::checkpoint;
use googlenet::{Device, GoogLeNet, GoogLeNetConfig, Init, Labels, Mode, Tape, Tensor};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

#[derive(Parser)]
#[command(about = "Logits, loss and gradients of one batch, as safetensors")]
struct Args {
    /// A checkpoint directory (or its model.safetensors).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Safetensors file with `images` [N, 1, S, S] f32 and `labels` [N] i64 or i32.
    #[arg(long)]
    batch: PathBuf,
    /// Where to write `logits`, `loss` and `grad.<name>`.
    #[arg(long)]
    out: PathBuf,
    /// The device to run on.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// The batch file's images and labels.
fn read_batch(device: &Device, bytes: &[u8]) -> Result<(Tensor, Vec<u32>)> {
    let file = SafeTensors::deserialize(bytes).context("the batch is not a safetensors file")?;
    let images = file.tensor("images").context("the batch has no `images`")?;
    ensure!(
        images.dtype() == Dtype::F32 && images.shape().len() == 4 && images.shape()[1] == 1,
        "`images` must be f32 [N, 1, S, S], got {:?} {:?}",
        images.dtype(),
        images.shape()
    );
    let pixels: Vec<f32> = images
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let labels = file.tensor("labels").context("the batch has no `labels`")?;
    let values: Vec<i64> = match labels.dtype() {
        Dtype::I64 => labels
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect(),
        Dtype::I32 => labels
            .data()
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")) as i64)
            .collect(),
        other => bail!("`labels` must be i64 or i32, got {other:?}"),
    };
    ensure!(
        labels.shape() == [images.shape()[0]],
        "`labels` has shape {:?}, expected [{}]",
        labels.shape(),
        images.shape()[0]
    );
    let labels = values
        .into_iter()
        .map(|l| u32::try_from(l).with_context(|| format!("label {l} is negative")))
        .collect::<Result<_>>()?;
    Ok((Tensor::from_vec(device, images.shape(), pixels)?, labels))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = Device::parse(&args.device)?;
    let (net, mut params) =
        GoogLeNet::new(&device, GoogLeNetConfig::default(), Init::PyTorchDefault, 0)?;
    checkpoint::load_weights(&args.checkpoint, &mut params)?;
    let bytes =
        fs::read(&args.batch).with_context(|| format!("cannot read {}", args.batch.display()))?;
    let (images, labels) = read_batch(&device, &bytes)?;
    let labels = Labels::new(&device, &labels, net.config().classes)?;

    let mut tape = Tape::new();
    let logits = net.forward(&mut tape, &params, &images, Mode::Eval)?;
    let loss = tape.cross_entropy(&logits, &labels)?;
    let grads = tape.backward(&loss, &params)?;

    let mut out: Vec<(String, Vec<usize>, Vec<f32>)> = vec![
        (
            "logits".into(),
            logits.value.shape().to_vec(),
            logits.value.to_vec()?,
        ),
        ("loss".into(), vec![], loss.value.to_vec()?),
    ];
    for (p, g) in params.iter().zip(&grads.0) {
        let g = g
            .as_ref()
            .with_context(|| format!("{} got no gradient", p.name))?;
        out.push((format!("grad.{}", p.name), g.shape().to_vec(), g.to_vec()?));
    }
    let views = out
        .iter()
        .map(|(name, shape, data)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(data))?;
            Ok((name.as_str(), view))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = HashMap::from([
        (
            "checkpoint".to_string(),
            args.checkpoint.display().to_string(),
        ),
        ("device".to_string(), device.name()),
    ]);
    let bytes = safetensors::serialize(views, Some(metadata))?;
    fs::write(&args.out, bytes).with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "{}: logits {:?}, loss {}, {} gradients (on {})",
        args.out.display(),
        logits.value.shape(),
        loss.value.scalar()?,
        grads.0.len(),
        device.name()
    );
    Ok(())
}
