//! The CPU device: the reference every other device is tested against, and a
//! reasonably fast one (rayon across images and planes, GEMM from matrixmultiply).

mod adam;
mod conv;
mod elementwise;
mod gemm;
mod linear;
mod loss;
mod pool;
mod resize;

use anyhow::{bail, ensure, Result};

use super::geometry::{AdamStep, ConvGeometry, LinearGeometry, PoolGeometry};
use super::{Backend, Buffer};
use crate::ops::Normalize;

pub struct CpuBackend;

/// The host data of a buffer; other devices' buffers are refused.
fn host<T>(buffer: &Buffer<T>) -> Result<&[T]> {
    match buffer {
        Buffer::Host(v) => Ok(v),
        Buffer::Cuda(_) => bail!("a GPU buffer was passed to a CPU op"),
    }
}

fn host_mut<T>(buffer: &mut Buffer<T>) -> Result<&mut [T]> {
    match buffer {
        Buffer::Host(v) => Ok(v),
        Buffer::Cuda(_) => bail!("a GPU buffer was passed to a CPU op"),
    }
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

    fn add(&self, a: &Buffer<f32>, b: &Buffer<f32>) -> Result<Buffer<f32>> {
        Ok(Buffer::Host(elementwise::add(host(a)?, host(b)?)))
    }

    fn conv2d_fwd(
        &self,
        x: &Buffer<f32>,
        w: &Buffer<f32>,
        b: &Buffer<f32>,
        g: &ConvGeometry,
    ) -> Result<Buffer<f32>> {
        Ok(Buffer::Host(conv::forward(host(x)?, host(w)?, host(b)?, g)))
    }

    fn conv2d_bwd_data(
        &self,
        dy: &Buffer<f32>,
        w: &Buffer<f32>,
        g: &ConvGeometry,
    ) -> Result<Buffer<f32>> {
        Ok(Buffer::Host(conv::backward_data(host(dy)?, host(w)?, g)))
    }

    fn conv2d_bwd_filter(
        &self,
        x: &Buffer<f32>,
        dy: &Buffer<f32>,
        g: &ConvGeometry,
    ) -> Result<(Buffer<f32>, Buffer<f32>)> {
        let (dw, db) = conv::backward_filter(host(x)?, host(dy)?, g);
        Ok((Buffer::Host(dw), Buffer::Host(db)))
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

    fn concat_channels(
        &self,
        parts: &[(&Buffer<f32>, usize)],
        n: usize,
        hw: usize,
    ) -> Result<Buffer<f32>> {
        let parts = parts
            .iter()
            .map(|(b, c)| Ok((host(b)?, *c)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Buffer::Host(elementwise::concat_channels(&parts, n, hw)))
    }

    fn slice_channels(
        &self,
        x: &Buffer<f32>,
        n: usize,
        c: usize,
        hw: usize,
        start: usize,
        len: usize,
    ) -> Result<Buffer<f32>> {
        Ok(Buffer::Host(elementwise::slice_channels(
            host(x)?,
            n,
            c,
            hw,
            start,
            len,
        )))
    }

    fn dropout(&self, x: &Buffer<f32>, p: f32, seed: u64) -> Result<Buffer<f32>> {
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

    fn resize_images(
        &self,
        images: &Buffer<u8>,
        h: usize,
        w: usize,
        indices: &Buffer<u32>,
        views: &Buffer<u32>,
        size: usize,
        norm: Normalize,
    ) -> Result<Buffer<f32>> {
        let (indices, views) = (host(indices)?, host(views)?);
        ensure!(
            views.len() == indices.len(),
            "resize: {} views for {} images",
            views.len(),
            indices.len()
        );
        Ok(Buffer::Host(resize::resize(
            host(images)?,
            h,
            w,
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
    ) -> Result<()> {
        if params.len() != grads.len() || params.len() != m.len() || params.len() != v.len() {
            bail!("adam: parameter, gradient and state lists differ in length");
        }
        for (((p, g), m), v) in params.iter_mut().zip(grads).zip(m).zip(v) {
            adam::step(host_mut(p)?, host(g)?, host_mut(m)?, host_mut(v)?, hyper);
        }
        Ok(())
    }
}
