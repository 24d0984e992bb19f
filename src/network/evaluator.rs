//! Forward passes in eval mode (running statistics, no dropout), with the loss per sample.

use super::{DeviceState, Graph, Mode};
use crate::gpu::{record, Gpu, Launch, Tensor};
use crate::ops::loss;
use anyhow::{bail, Result};

/// Forward passes in eval mode (running statistics, no dropout), with the loss per sample.
/// Whoever changes the weights it reads (a training step, an EMA update) calls
/// `weights_changed` before its next pass, which then re-lays them out (Graph::prepare).
pub struct Evaluator {
    pub graph: Graph,
    labels: Tensor,
    per_sample: Tensor,
    loss: Vec<Launch>,
    batch: usize,
    stale: std::cell::Cell<bool>,
}

impl Evaluator {
    pub fn new(gpu: &Gpu, state: &DeviceState, batch: usize, size: (usize, usize), label_smoothing: f32) -> Result<Evaluator> {
        let graph = Graph::build(gpu, state, Mode::Eval, batch, size, 0.0)?;
        let labels = gpu.zeros(&[batch], "labels");
        let per_sample = gpu.zeros(&[2, batch], "per_sample");
        let dlogits = gpu.zeros(&graph.logits.shape, "unused_dlogits");
        let metrics = gpu.zeros(&[2], "metrics");
        let loss = loss::softmax_xent(gpu, label_smoothing, &graph.logits, &labels, &dlogits, &per_sample, &metrics);
        Ok(Evaluator { graph, labels, per_sample, loss, batch, stale: std::cell::Cell::new(true) })
    }

    /// The weights were written since the last pass: the next one re-lays them out first.
    pub fn weights_changed(&self) {
        self.stale.set(true);
    }

    /// Runs Graph::prepare when the weights changed since it last ran.
    fn prepare(&self, gpu: &Gpu) {
        if self.stale.replace(false) {
            gpu.submit(&self.graph.prepare);
        }
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Logits [batch, classes] of a full batch of inputs.
    pub async fn logits(&self, gpu: &Gpu, input: &[f32]) -> Result<Vec<f32>> {
        if input.len() != self.graph.input.len() {
            bail!("evaluation: expected {} input values, got {}", self.graph.input.len(), input.len());
        }
        gpu.write(&self.graph.input, input);
        self.prepare(gpu);
        gpu.submit(&self.graph.forward);
        gpu.read_async(&self.graph.logits).await
    }

    /// (loss, 1 if correct else 0) per sample, and the logits, of a full batch.
    pub async fn evaluate(&self, gpu: &Gpu, input: &[f32], labels: &[u32]) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        if input.len() != self.graph.input.len() || labels.len() != self.batch {
            bail!("evaluation: expected {} inputs and {} labels", self.graph.input.len(), self.batch);
        }
        gpu.write(&self.graph.input, input);
        gpu.queue.write_buffer(&self.labels.buffer, 0, bytemuck::cast_slice(labels));
        self.prepare(gpu);
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            record(&mut pass, &self.graph.forward);
            record(&mut pass, &self.loss);
        }
        gpu.queue.submit([enc.finish()]);
        let per = gpu.read_async(&self.per_sample).await?;
        let logits = gpu.read_async(&self.graph.logits).await?;
        Ok((per[..self.batch].to_vec(), per[self.batch..].to_vec(), logits))
    }
}
