//! `Backend` on a GPU driver: each op delegates to its family's file, which computes
//! the launch configuration and argument list.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Result};

use super::runtime::Graph;
use super::{adam, conv, elementwise, linear, loss, pool, resize};
use super::{Counters, Driver, Runtime};
use crate::engine::device::geometry::{AdamStep, ConvGeometry, LinearGeometry, PoolGeometry};
use crate::engine::device::{Backend, Buffer, ConvOutput, ConvOutputGrad, Precision, Words};
use crate::engine::device::{ImageShape, Normalize};

/// The op set on a GPU driver, counting its launches.
pub struct GpuBackend<D: Driver> {
    pub driver: Runtime<D>,
    /// The recorded steps (`Backend::end_graph`), by id.
    graphs: std::sync::Mutex<std::collections::HashMap<u64, Graph>>,
    next_graph: std::sync::atomic::AtomicU64,
    /// The arithmetic of the conv and linear GEMMs launched from now on. Settable on a
    /// shared device (as PyTorch's `allow_tf32`), so a resumed run can adopt the
    /// precision its checkpoint recorded on the device it already opened.
    precision: Mutex<Precision>,
}

impl<D: Driver> GpuBackend<D> {
    pub fn new(driver: D, precision: Precision) -> GpuBackend<D> {
        GpuBackend {
            driver: Runtime::new(driver),
            graphs: Default::default(),
            next_graph: Default::default(),
            precision: Mutex::new(precision),
        }
    }

    pub fn precision(&self) -> Precision {
        *self.precision.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_precision(&self, precision: Precision) {
        *self.precision.lock().unwrap_or_else(|e| e.into_inner()) = precision;
    }
}

impl<D: Driver> Backend for GpuBackend<D> {
    fn name(&self) -> String {
        self.driver.name()
    }

    fn is_gpu(&self) -> bool {
        self.driver.is_gpu()
    }

    fn precision(&self) -> Precision {
        GpuBackend::precision(self)
    }

    fn set_precision(&self, precision: Precision) -> Result<()> {
        GpuBackend::set_precision(self, precision);
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        self.driver.synchronize()
    }

    fn cuda_stream(&self) -> Option<Arc<cudarc::driver::CudaStream>> {
        self.driver.cuda_stream()
    }

    fn take_counters(&self) -> Option<Counters> {
        Some(self.driver.take_counters())
    }

    fn memory_free(&self) -> Option<Result<u64>> {
        self.driver.memory_free()
    }

    fn upload_f32(&self, data: Vec<f32>) -> Result<Buffer<f32>> {
        self.driver.upload_f32(data)
    }

    fn upload_u32(&self, data: Vec<u32>) -> Result<Buffer<u32>> {
        self.driver.upload_u32(data)
    }

    fn upload_u8(&self, data: Vec<u8>) -> Result<Buffer<u8>> {
        self.driver.upload_u8(data)
    }

    fn download_f32(&self, buffer: &Buffer<f32>) -> Result<Vec<f32>> {
        self.driver.download_f32(buffer)
    }

    fn download_u32(&self, buffer: &Buffer<u32>) -> Result<Vec<u32>> {
        self.driver.download_u32(buffer)
    }

    fn fill_zeros_u32(&self, buffer: &mut Buffer<u32>) -> Result<()> {
        self.driver.fill_zeros_u32(buffer)
    }

    fn write_u32(&self, buffer: &mut Buffer<u32>, data: &[u32]) -> Result<()> {
        self.driver.write_u32(buffer, data)
    }

    fn records_graphs(&self) -> bool {
        self.driver.can_record()
    }

    fn begin_graph(&self) -> Result<()> {
        self.driver.begin_recording()
    }

    fn end_graph(&self) -> Result<u64> {
        let graph = self.driver.end_recording()?;
        let id = self.next_graph.fetch_add(1, Ordering::Relaxed);
        self.graphs.lock().expect("graphs lock").insert(id, graph);
        Ok(id)
    }

    fn replay_graph(&self, id: u64) -> Result<()> {
        let graphs = self.graphs.lock().expect("graphs lock");
        let graph = graphs
            .get(&id)
            .ok_or_else(|| anyhow!("no recorded graph {id} on {}", self.name()))?;
        self.driver.replay(graph)
    }

    fn drop_graph(&self, id: u64) {
        self.graphs.lock().expect("graphs lock").remove(&id);
    }

    fn full_f32(&self, len: usize, value: f32) -> Result<Buffer<f32>> {
        elementwise::fill(&self.driver, len, value)
    }

    fn add(&self, a: &Buffer<f32>, b: &Buffer<f32>) -> Result<Buffer<f32>> {
        elementwise::add(&self.driver, a, b)
    }

    fn alloc_f32(&self, len: usize) -> Result<Buffer<f32>> {
        self.driver.alloc_f32(len)
    }

    fn conv2d_fwd(
        &self,
        x: &Buffer<f32>,
        parts: &mut [ConvOutput],
        g: &ConvGeometry,
        relu: bool,
    ) -> Result<()> {
        conv::forward(&self.driver, self.precision(), x, parts, g, relu)
    }

    fn conv2d_bwd_data(
        &self,
        grads: &[ConvOutputGrad],
        w: &[&Buffer<f32>],
        g: &ConvGeometry,
        into: Option<Buffer<f32>>,
    ) -> Result<Buffer<f32>> {
        conv::backward_data(&self.driver, self.precision(), grads, w, g, into)
    }

    fn conv2d_bwd_filter(
        &self,
        x: &Buffer<f32>,
        grads: &[ConvOutputGrad],
        g: &ConvGeometry,
    ) -> Result<Vec<(Buffer<f32>, Buffer<f32>)>> {
        conv::backward_filter(&self.driver, self.precision(), x, grads, g)
    }

    fn relu_fwd(&self, x: &Buffer<f32>) -> Result<Buffer<f32>> {
        elementwise::relu_fwd(&self.driver, x)
    }

    fn relu_bwd(&self, y: &Buffer<f32>, dy: &Buffer<f32>) -> Result<Buffer<f32>> {
        elementwise::relu_bwd(&self.driver, y, dy)
    }

    fn max_pool_fwd(
        &self,
        x: &Buffer<f32>,
        g: &PoolGeometry,
    ) -> Result<(Buffer<f32>, Buffer<u32>)> {
        pool::max_forward(&self.driver, x, g)
    }

    fn max_pool_bwd(
        &self,
        dy: &Buffer<f32>,
        argmax: &Buffer<u32>,
        g: &PoolGeometry,
    ) -> Result<Buffer<f32>> {
        pool::max_backward(&self.driver, dy, argmax, g)
    }

    fn avg_pool_fwd(&self, x: &Buffer<f32>, g: &PoolGeometry) -> Result<Buffer<f32>> {
        pool::avg_forward(&self.driver, x, g)
    }

    fn avg_pool_bwd(&self, dy: &Buffer<f32>, g: &PoolGeometry) -> Result<Buffer<f32>> {
        pool::avg_backward(&self.driver, dy, g)
    }

    fn dropout(&self, x: &Buffer<f32>, p: f32, seed: Words) -> Result<Buffer<f32>> {
        elementwise::dropout(&self.driver, x, p, seed)
    }

    fn linear_fwd(
        &self,
        x: &Buffer<f32>,
        w: &Buffer<f32>,
        b: &Buffer<f32>,
        g: &LinearGeometry,
    ) -> Result<Buffer<f32>> {
        linear::forward(&self.driver, self.precision(), x, w, b, g)
    }

    fn linear_bwd_data(
        &self,
        dy: &Buffer<f32>,
        w: &Buffer<f32>,
        g: &LinearGeometry,
    ) -> Result<Buffer<f32>> {
        linear::backward_data(&self.driver, self.precision(), dy, w, g)
    }

    fn linear_bwd_weight(
        &self,
        x: &Buffer<f32>,
        dy: &Buffer<f32>,
        g: &LinearGeometry,
    ) -> Result<(Buffer<f32>, Buffer<f32>)> {
        linear::backward_weight(&self.driver, self.precision(), x, dy, g)
    }

    fn cross_entropy_fwd(
        &self,
        logits: &Buffer<f32>,
        labels: &Buffer<u32>,
        n: usize,
        classes: usize,
        smoothing: f32,
    ) -> Result<(Buffer<f32>, Buffer<f32>)> {
        loss::forward(&self.driver, logits, labels, n, classes, smoothing)
    }

    fn cross_entropy_bwd(
        &self,
        probs: &Buffer<f32>,
        labels: &Buffer<u32>,
        dloss: &Buffer<f32>,
        n: usize,
        classes: usize,
        smoothing: f32,
    ) -> Result<Buffer<f32>> {
        loss::backward(&self.driver, probs, labels, dloss, n, classes, smoothing)
    }

    fn correct_count(
        &self,
        logits: &Buffer<f32>,
        labels: &Buffer<u32>,
        n: usize,
        classes: usize,
    ) -> Result<usize> {
        loss::correct_count(&self.driver, logits, labels, n, classes)
    }

    fn record_step(
        &self,
        loss: &Buffer<f32>,
        logits: &Buffer<f32>,
        labels: &Buffer<u32>,
        n: usize,
        classes: usize,
        cursor: &mut Buffer<u32>,
        losses: &mut Buffer<f32>,
        correct: &mut Buffer<u32>,
        diverged: &mut Buffer<u32>,
    ) -> Result<()> {
        let log = loss::StepLog {
            cursor,
            losses,
            correct,
            diverged,
        };
        loss::record_step(&self.driver, loss, logits, labels, n, classes, log)
    }

    fn gather_labels(&self, labels: &Buffer<u32>, indices: Words) -> Result<Buffer<u32>> {
        resize::gather_labels(&self.driver, labels, indices)
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
        resize::resize(&self.driver, images, shape, indices, views, size, norm)
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
        adam::step(&self.driver, params, grads, m, v, hyper, scalars, skip)
    }
}
