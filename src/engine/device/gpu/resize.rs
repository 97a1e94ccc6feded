//! Batch assembly: gather u8 images by index, apply each one's augmentation view,
//! bilinear resize, normalise (kernels/resize.cu), one thread per output pixel. The
//! indices and views are read from device memory (`Words`: in training, the step
//! parameters), so a replayed step gathers the batch written for it.

use anyhow::{ensure, Result};

use super::launch::{int, per_element};
use super::{Arg, Driver};
use crate::engine::device::Normalize;
use crate::engine::device::{Buffer, Words};

#[allow(clippy::too_many_arguments)]
pub(super) fn resize<D: Driver>(
    d: &D,
    images: &Buffer<u8>,
    h: usize,
    w: usize,
    indices: Words,
    views: Words,
    size: usize,
    norm: Normalize,
) -> Result<Buffer<f32>> {
    ensure!(
        h > 0 && w > 0 && size > 0,
        "resize: empty images ({h}x{w}) or size {size}"
    );
    ensure!(
        images.len().is_multiple_of(h * w),
        "resize: {} bytes are not whole {h}x{w} images",
        images.len()
    );
    let batch = indices.len;
    ensure!(
        views.len == batch,
        "resize: {} views for {batch} images",
        views.len
    );
    let len = batch * size * size;
    int(h * w, "image size")?;
    int(len, "resized batch length")?;
    let mut out = d.alloc_f32(len)?;
    if len > 0 {
        // Indices are checked against the image count by the caller (ops::ByteImages).
        d.launch(
            "resize_fwd_f32",
            per_element(len),
            &mut [
                Arg::U8s(images),
                Arg::words(indices, "resize indices")?,
                Arg::words(views, "resize views")?,
                Arg::OutF32(&mut out),
                Arg::I32(int(batch, "batch")?),
                Arg::I32(int(h, "image height")?),
                Arg::I32(int(w, "image width")?),
                Arg::I32(int(size, "output size")?),
                Arg::Float(norm.mean),
                Arg::Float(norm.std),
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
