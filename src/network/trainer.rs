//! A training step: forward, loss, backward and SGD in one command buffer.

use super::{DeviceState, Graph, Mode};
use crate::checkpoint::Checkpoint;
use crate::gpu::{record, Gpu, Launch, Tensor};
use crate::ops::{loss, sgd};
use anyhow::{bail, Result};

/// Hyper-parameters of the optimiser and loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainOptions {
    pub momentum: f32,
    pub weight_decay: f32,
    /// Decay BN gamma/beta too (the CIFAR notebook); the ImageNet recipe decays weights only.
    pub decay_bn: bool,
    pub label_smoothing: f32,
    pub dropout: f32,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions { momentum: 0.9, weight_decay: 5e-4, decay_bn: true, label_smoothing: 0.1, dropout: 0.0 }
    }
}

/// A training step: forward, loss, backward and SGD in one command buffer.
pub struct Trainer {
    pub state: DeviceState,
    pub graph: Graph,
    labels: Tensor,
    metrics: Tensor,
    loss: Vec<Launch>,
    sgd: Vec<Launch>,
    batch: usize,
}

impl Trainer {
    pub fn new(gpu: &Gpu, ck: &Checkpoint, batch: usize, size: (usize, usize), opts: TrainOptions) -> Result<Trainer> {
        let state = DeviceState::new(gpu, ck)?;
        let graph = Graph::build(gpu, &state, Mode::Train, batch, size, opts.dropout)?;
        let labels = gpu.zeros(&[batch], "labels");
        let per_sample = gpu.zeros(&[2, batch], "per_sample");
        let metrics = gpu.zeros(&[2], "metrics");
        let dlogits = graph.dlogits.as_ref().unwrap();
        let loss = loss::softmax_xent(gpu, opts.label_smoothing, &graph.logits, &labels, dlogits, &per_sample, &metrics);
        // Two SGD launches over the arena: weights, then BN affine (decayed or not).
        let w = state.weights_len;
        let split = |t: &Tensor, from: usize, to: usize| t.slice(from, to - from);
        let total = state.params.len();
        let align = (gpu.limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
        let w_end = w.div_ceil(align) * align;
        let mut sgd = sgd::step(
            gpu,
            &split(&state.grads, 0, w),
            &split(&state.params, 0, w),
            &split(&state.velocity, 0, w),
            0.0,
            opts.momentum,
            opts.weight_decay,
        );
        if w_end < total {
            let wd = if opts.decay_bn { opts.weight_decay } else { 0.0 };
            sgd.extend(sgd::step(
                gpu,
                &split(&state.grads, w_end, total),
                &split(&state.params, w_end, total),
                &split(&state.velocity, w_end, total),
                0.0,
                opts.momentum,
                wd,
            ));
        }
        Ok(Trainer { state, graph, labels, metrics, loss, sgd, batch })
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Upload a batch and submit one full training step with learning rate `lr`.
    /// Returns at once; `metrics` waits for it.
    pub fn step(&self, gpu: &Gpu, input: &[f32], labels: &[u32], lr: f32, seed: u32) -> Result<()> {
        if input.len() != self.graph.input.len() || labels.len() != self.batch {
            bail!(
                "training step: expected {} inputs and {} labels, got {} and {}",
                self.graph.input.len(),
                self.batch,
                input.len(),
                labels.len()
            );
        }
        let classes = self.state.arch.config.num_classes as u32;
        if let Some(l) = labels.iter().find(|&&l| l >= classes) {
            bail!("label {l} is out of range for {classes} classes");
        }
        gpu.write(&self.graph.input, input);
        gpu.queue.write_buffer(&self.labels.buffer, 0, bytemuck::cast_slice(labels));
        sgd::set_learning_rate(gpu, &self.sgd, lr);
        self.graph.set_dropout_seed(gpu, seed);
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for part in [&self.graph.forward, &self.loss, &self.graph.backward, &self.sgd] {
                record(&mut pass, part);
            }
        }
        gpu.queue.submit([enc.finish()]);
        Ok(())
    }

    /// (mean loss, number correct) of the last step, once the GPU has finished it.
    pub async fn metrics(&self, gpu: &Gpu) -> Result<(f32, f32)> {
        let m = gpu.read_async(&self.metrics).await?;
        Ok((m[0], m[1]))
    }

    /// Every launch of a step, in order (for per-layer timing).
    pub fn launches(&self) -> impl Iterator<Item = &Launch> {
        self.graph.forward.iter().chain(&self.loss).chain(&self.graph.backward).chain(&self.sgd)
    }
}

/// Learning rate at a global step: linear warm-up, then cosine decay to 0 at the last step
/// (PaddlePaddle's CosineAnnealingDecay stepped per batch, as in the notebook).
pub fn learning_rate(base: f32, step: usize, warmup_steps: usize, total_steps: usize) -> f32 {
    if step < warmup_steps {
        return base * (step + 1) as f32 / warmup_steps as f32;
    }
    let span = total_steps.saturating_sub(warmup_steps).max(1) as f64;
    let t = ((step - warmup_steps) as f64 / span).min(1.0);
    (base as f64 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
}
