//! `Backend` on the CPU: each op delegates to its family's file.

use anyhow::{bail, ensure, Result};

use super::{adam, conv, elementwise, fresh, linear, loss, pool, resize};
use crate::engine::device::geometry::{
    AdamScalars, AdamStep, ConvGeometry, LinearGeometry, PoolGeometry,
};
use crate::engine::device::{
    Backend, Buffer, ConvOutput, ConvOutputGrad, ImageShape, Normalize, Words,
};

pub struct CpuBackend;

/// mimalloc v3's `mi_option_purge_delay` (mimalloc.h's `mi_option_e`; the sys crate
/// does not name it), whose default there is 1000 ms (options.c).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells the allocator to keep the memory that ops free instead of handing it back to
/// the kernel. An op's output is a fresh vector; mimalloc returns freed pages to the
/// kernel after a delay shorter than a 224x224 step, so each step's outputs were fresh
/// pages again, which the kernel zeroes on first touch: 87,600 page faults in one
/// warm-up and three 224x224 steps (800 with this), and 18.4 s of CPU time against
/// 14.1 s. The cost: memory the allocator keeps but cannot reuse for a request of
/// another size; the peak of a 128x128 `quick` run rose from 493 to 559-619 MiB, which
/// `memory::estimate` allows for by adding the training step's and evaluation's needs.
pub fn keep_freed_memory() {
    // SAFETY: plain calls into mimalloc's option table. The value is checked against
    // the default first, so a mimalloc whose table differs is left alone.
    unsafe {
        if libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) == 1000 {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        }
    }
}

/// The host data of a buffer; other devices' buffers are refused.
fn host<T>(buffer: &Buffer<T>) -> Result<&[T]> {
    match buffer {
        Buffer::Host(v) => Ok(v),
        _ => bail!("a GPU buffer was passed to a CPU op"),
    }
}

/// The words `w` names, checked to lie in their buffer.
fn words<'a>(w: Words<'a>, what: &str) -> Result<&'a [u32]> {
    w.check(what)?;
    Ok(&host(w.buffer)?[w.at..w.at + w.len])
}

fn host_mut<T>(buffer: &mut Buffer<T>) -> Result<&mut [T]> {
    match buffer {
        Buffer::Host(v) => Ok(v),
        _ => bail!("a GPU buffer was passed to a CPU op"),
    }
}

fn part_grads<'a>(grads: &[ConvOutputGrad<'a>]) -> Result<Vec<conv::PartGrad<'a>>> {
    grads
        .iter()
        .map(|gr| {
            Ok(conv::PartGrad {
                dy: host(gr.dy)?,
                relu_y: gr.relu_y.map(host).transpose()?,
                view: gr.view,
            })
        })
        .collect()
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn upload_f32(&self, data: Vec<f32>) -> Result<Buffer<f32>> {
        Ok(Buffer::Host(data))
    }

    fn upload_u32(&self, data: Vec<u32>) -> Result<Buffer<u32>> {
        Ok(Buffer::Host(data))
    }

    fn upload_u8(&self, data: Vec<u8>) -> Result<Buffer<u8>> {
        Ok(Buffer::Host(data))
    }

    fn download_f32(&self, buffer: &Buffer<f32>) -> Result<Vec<f32>> {
        Ok(host(buffer)?.to_vec())
    }

    fn download_u32(&self, buffer: &Buffer<u32>) -> Result<Vec<u32>> {
        Ok(host(buffer)?.to_vec())
    }

    fn fill_zeros_u32(&self, buffer: &mut Buffer<u32>) -> Result<()> {
        host_mut(buffer)?.fill(0);
        Ok(())
    }

    fn write_u32(&self, buffer: &mut Buffer<u32>, data: &[u32]) -> Result<()> {
        let buffer = host_mut(buffer)?;
        ensure!(
            buffer.len() == data.len(),
            "{} elements written to a buffer of {}",
            data.len(),
            buffer.len()
        );
        buffer.copy_from_slice(data);
        Ok(())
    }

    fn full_f32(&self, len: usize, value: f32) -> Result<Buffer<f32>> {
        Ok(Buffer::Host(vec![value; len]))
    }

    fn add(&self, a: &Buffer<f32>, b: &Buffer<f32>) -> Result<Buffer<f32>> {
        Ok(Buffer::Host(elementwise::add(host(a)?, host(b)?)))
    }

    fn alloc_f32(&self, len: usize) -> Result<Buffer<f32>> {
        Ok(Buffer::Host(fresh::zeros(len)))
    }

    fn conv2d_fwd(
        &self,
        x: &Buffer<f32>,
        parts: &mut [ConvOutput],
        g: &ConvGeometry,
        relu: bool,
    ) -> Result<()> {
        let mut parts = parts
            .iter_mut()
            .map(|p| {
                Ok(conv::Part {
                    w: host(p.w)?,
                    b: host(p.b)?,
                    y: host_mut(p.y)?,
                    view: p.view,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        conv::forward(host(x)?, &mut parts, g, relu);
        Ok(())
    }

    fn conv2d_bwd_data(
        &self,
        grads: &[ConvOutputGrad],
        w: &[&Buffer<f32>],
        g: &ConvGeometry,
        into: Option<Buffer<f32>>,
    ) -> Result<Buffer<f32>> {
        let w = w.iter().map(|w| host(w)).collect::<Result<Vec<_>>>()?;
        let into = match into {
            None => None,
            Some(Buffer::Host(v)) => Some(v),
            Some(_) => bail!("a GPU buffer was passed to a CPU op"),
        };
        Ok(Buffer::Host(conv::backward_data(
            &part_grads(grads)?,
            &w,
            g,
            into,
        )))
    }

    fn conv2d_bwd_filter(
        &self,
        x: &Buffer<f32>,
        grads: &[ConvOutputGrad],
        g: &ConvGeometry,
    ) -> Result<Vec<(Buffer<f32>, Buffer<f32>)>> {
        let grads = conv::backward_filter(host(x)?, &part_grads(grads)?, g);
        Ok(grads
            .into_iter()
            .map(|(dw, db)| (Buffer::Host(dw), Buffer::Host(db)))
            .collect())
    }

    fn relu_fwd(&self, x: &Buffer<f32>) -> Result<Buffer<f32>> {
        Ok(Buffer::Host(elementwise::relu_forward(host(x)?)))
    }

    fn relu_bwd(&self, y: &Buffer<f32>, dy: &Buffer<f32>) -> Result<Buffer<f32>> {
        Ok(Buffer::Host(elementwise::relu_backward(
            host(y)?,
            host(dy)?,
        )))
    }

    fn max_pool_fwd(
        &self,
        x: &Buffer<f32>,
        g: &PoolGeometry,
    ) -> Result<(Buffer<f32>, Buffer<u32>)> {
        let (y, argmax) = pool::max_forward(host(x)?, g);
        Ok((Buffer::Host(y), Buffer::Host(argmax)))
    }

    fn max_pool_bwd(
        &self,
        dy: &Buffer<f32>,
        argmax: &Buffer<u32>,
        g: &PoolGeometry,
    ) -> Result<Buffer<f32>> {
        Ok(Buffer::Host(pool::max_backward(
            host(dy)?,
            host(argmax)?,
            g,
        )))
    }

    fn avg_pool_fwd(&self, x: &Buffer<f32>, g: &PoolGeometry) -> Result<Buffer<f32>> {
        Ok(Buffer::Host(pool::avg_forward(host(x)?, g)))
    }

    fn avg_pool_bwd(&self, dy: &Buffer<f32>, g: &PoolGeometry) -> Result<Buffer<f32>> {
        Ok(Buffer::Host(pool::avg_backward(host(dy)?, g)))
    }

    fn dropout(&self, x: &Buffer<f32>, p: f32, seed: Words) -> Result<Buffer<f32>> {
        let seed = match *words(seed, "dropout seed")? {
            [low, high] => u64::from(low) | u64::from(high) << 32,
            _ => bail!("dropout: the seed must be two words, got {}", seed.len),
        };
        Ok(Buffer::Host(elementwise::dropout(host(x)?, p, seed)))
    }

    fn linear_fwd(
        &self,
        x: &Buffer<f32>,
        w: &Buffer<f32>,
        b: &Buffer<f32>,
        g: &LinearGeometry,
    ) -> Result<Buffer<f32>> {
        Ok(Buffer::Host(linear::forward(
            host(x)?,
            host(w)?,
            host(b)?,
            g,
        )))
    }

    fn linear_bwd_data(
        &self,
        dy: &Buffer<f32>,
        w: &Buffer<f32>,
        g: &LinearGeometry,
    ) -> Result<Buffer<f32>> {
        Ok(Buffer::Host(linear::backward_data(host(dy)?, host(w)?, g)))
    }

    fn linear_bwd_weight(
        &self,
        x: &Buffer<f32>,
        dy: &Buffer<f32>,
        g: &LinearGeometry,
    ) -> Result<(Buffer<f32>, Buffer<f32>)> {
        let (dw, db) = linear::backward_weight(host(x)?, host(dy)?, g);
        Ok((Buffer::Host(dw), Buffer::Host(db)))
    }

    fn cross_entropy_fwd(
        &self,
        logits: &Buffer<f32>,
        labels: &Buffer<u32>,
        _n: usize,
        classes: usize,
        smoothing: f32,
    ) -> Result<(Buffer<f32>, Buffer<f32>)> {
        let (loss, probs) =
            loss::cross_entropy_forward(host(logits)?, host(labels)?, classes, smoothing);
        Ok((Buffer::Host(vec![loss]), Buffer::Host(probs)))
    }

    fn cross_entropy_bwd(
        &self,
        probs: &Buffer<f32>,
        labels: &Buffer<u32>,
        dloss: &Buffer<f32>,
        _n: usize,
        classes: usize,
        smoothing: f32,
    ) -> Result<Buffer<f32>> {
        let dloss = host(dloss)?[0];
        Ok(Buffer::Host(loss::cross_entropy_backward(
            host(probs)?,
            host(labels)?,
            dloss,
            classes,
            smoothing,
        )))
    }

    fn correct_count(
        &self,
        logits: &Buffer<f32>,
        labels: &Buffer<u32>,
        _n: usize,
        classes: usize,
    ) -> Result<usize> {
        Ok(loss::correct_count(host(logits)?, host(labels)?, classes))
    }

    fn record_step(
        &self,
        loss: &Buffer<f32>,
        logits: &Buffer<f32>,
        labels: &Buffer<u32>,
        _n: usize,
        classes: usize,
        cursor: &mut Buffer<u32>,
        losses: &mut Buffer<f32>,
        correct: &mut Buffer<u32>,
        diverged: &mut Buffer<u32>,
    ) -> Result<()> {
        let value = host(loss)?[0];
        let count = loss::correct_count(host(logits)?, host(labels)?, classes);
        if !value.is_finite() {
            host_mut(diverged)?[0] = 1;
        }
        let cursor = &mut host_mut(cursor)?[0];
        let slot = *cursor as usize;
        let losses = host_mut(losses)?;
        let correct = host_mut(correct)?;
        if slot < losses.len() && slot < correct.len() {
            (losses[slot], correct[slot]) = (value, count as u32);
            *cursor += 1;
        }
        Ok(())
    }

    fn gather_labels(&self, labels: &Buffer<u32>, indices: Words) -> Result<Buffer<u32>> {
        let labels = host(labels)?;
        let gathered = words(indices, "gather_labels")?
            .iter()
            .map(|&i| labels.get(i as usize).copied())
            .collect::<Option<Vec<u32>>>();
        match gathered {
            Some(out) => Ok(Buffer::Host(out)),
            None => bail!(
                "gather_labels: an index is outside the {} labels",
                labels.len()
            ),
        }
    }

    fn resize_images(
        &self,
        images: &Buffer<u8>,
        shape: ImageShape,
        indices: Words,
        views: Words,
        size: usize,
        norm: Normalize,
    ) -> Result<Buffer<f32>> {
        let (indices, views) = (words(indices, "resize")?, words(views, "resize")?);
        ensure!(
            views.len() == indices.len(),
            "resize: {} views for {} images",
            views.len(),
            indices.len()
        );
        Ok(Buffer::Host(resize::resize(
            host(images)?,
            shape,
            indices,
            views,
            size,
            norm,
        )))
    }

    fn adam_step(
        &self,
        params: &mut [&mut Buffer<f32>],
        grads: &[&Buffer<f32>],
        m: &mut [&mut Buffer<f32>],
        v: &mut [&mut Buffer<f32>],
        hyper: &AdamStep,
        scalars: Words,
        skip: Option<&Buffer<u32>>,
    ) -> Result<()> {
        let Some(scalars) = AdamScalars::from_words(words(scalars, "adam")?) else {
            bail!(
                "adam: the step's scalars must be two words, got {}",
                scalars.len
            );
        };
        if let Some(skip) = skip {
            if host(skip)?.iter().any(|&flag| flag != 0) {
                return Ok(());
            }
        }
        if params.len() != grads.len() || params.len() != m.len() || params.len() != v.len() {
            bail!("adam: parameter, gradient and state lists differ in length");
        }
        for (((p, g), m), v) in params.iter_mut().zip(grads).zip(m).zip(v) {
            adam::step(
                host_mut(p)?,
                host(g)?,
                host_mut(m)?,
                host_mut(v)?,
                hyper,
                scalars,
            );
        }
        Ok(())
    }
}
