//! Batch assembly: gather u8 images (1 to 3 channel planes each) by index, apply each
//! one's augmentation view, bilinear resize, normalise per channel (kernels/resize.cu),
//! one thread per output pixel of each plane. The
//! indices and views are read from device memory (`Words`: in training, the step
//! parameters), so a replayed step gathers the batch written for it.

use anyhow::{ensure, Result};

use super::launch::{int, per_element};
use super::{Arg, Driver};
use crate::engine::device::{Buffer, ImageShape, Normalize, Words, MAX_CHANNELS};

pub(super) fn resize<D: Driver>(
    d: &D,
    images: &Buffer<u8>,
    shape: ImageShape,
    indices: Words,
    views: Words,
    size: usize,
    norm: Normalize,
) -> Result<Buffer<f32>> {
    let (channels, h, w) = (shape.channels, shape.height, shape.width);
    ensure!(
        h > 0 && w > 0 && size > 0,
        "resize: empty images ({h}x{w}) or size {size}"
    );
    ensure!(
        (1..=MAX_CHANNELS).contains(&channels),
        "resize: {channels} channels; the kernel takes 1 to {MAX_CHANNELS}"
    );
    ensure!(
        images.len().is_multiple_of(shape.image_bytes()),
        "resize: {} bytes are not whole {channels}x{h}x{w} images",
        images.len()
    );
    let batch = indices.len;
    ensure!(
        views.len == batch,
        "resize: {} views for {batch} images",
        views.len
    );
    let len = batch * channels * size * size;
    int(h * w, "image size")?;
    int(len, "resized batch length")?;
    let mut out = d.alloc_f32(len)?;
    if len > 0 {
        // Indices are checked against the image count by the caller (ops::ByteImages).
        let [m0, m1, m2] = norm.mean;
        let [s0, s1, s2] = norm.std;
        d.launch(
            "resize_fwd_f32",
            per_element(len),
            &mut [
                Arg::U8s(images),
                Arg::words(indices, "resize indices")?,
                Arg::words(views, "resize views")?,
                Arg::OutF32(&mut out),
                Arg::I32(int(batch, "batch")?),
                Arg::I32(int(channels, "channels")?),
                Arg::I32(int(h, "image height")?),
                Arg::I32(int(w, "image width")?),
                Arg::I32(int(size, "output size")?),
                Arg::Float(m0),
                Arg::Float(m1),
                Arg::Float(m2),
                Arg::Float(s0),
                Arg::Float(s1),
                Arg::Float(s2),
            ],
        )?;
    }
    Ok(out)
}

pub(super) fn gather_labels<D: Driver>(
    d: &D,
    labels: &Buffer<u32>,
    indices: Words,
) -> Result<Buffer<u32>> {
    // Indices are checked against the split's size by the caller (batch::DeviceSet).
    let batch = indices.len;
    let mut out = d.alloc_u32(batch)?;
    if batch > 0 {
        int(labels.len(), "label count")?;
        d.launch(
            "gather_labels_u32",
            per_element(batch),
            &mut [
                Arg::U32s(labels),
                Arg::words(indices, "label indices")?,
                Arg::OutU32s(&mut out),
                Arg::I32(int(batch, "batch")?),
            ],
        )?;
    }
    Ok(out)
}
