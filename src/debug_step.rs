//! `spgnet debug-step`: N training steps on one batch, dumping what the golden files hold.

use crate::checkpoint::{self, TensorFile};
use crate::gpu::Gpu;
use crate::network::{TrainOptions, Trainer};
use anyhow::{bail, Result};
use std::path::Path;

/// A batch file: `input` [N, C, H, W] f32 and `labels` [N] i64 or i32.
pub struct Batch {
    pub input: Vec<f32>,
    pub shape: [usize; 4],
    pub labels: Vec<u32>,
}

pub fn load_batch(path: &Path, num_classes: usize) -> Result<Batch> {
    let f = TensorFile::open(path)?;
    let p = f.path().to_string();
    let input = f.floats("input")?;
    let [n, c, h, w] = input.shape[..] else {
        bail!("{p}: 'input' must be [N, C, H, W], got {:?}", input.shape);
    };
    let (lshape, labels) = f.integers("labels")?;
    if lshape != [n] {
        bail!("{p}: 'labels' must be [{n}] to match 'input', got {lshape:?}");
    }
    if let Some(l) = labels.iter().find(|&&l| l < 0 || l as usize >= num_classes) {
        bail!("{p}: label {l} is out of range for a model with {num_classes} classes");
    }
    Ok(Batch { input: input.data, shape: [n, c, h, w], labels: labels.iter().map(|&l| l as u32).collect() })
}

/// Run `steps` steps (BN in training mode, dropout off) and return the tensors to write:
/// `logits` and `loss` of the first step, `grad.<name>` at the first step, `after.<name>` at the end.
pub fn run(gpu: &Gpu, weights: &Path, batch: &Path, steps: usize, lr: f32, opts: TrainOptions) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>> {
    if steps == 0 {
        bail!("--steps must be at least 1");
    }
    let ck = checkpoint::load(weights)?;
    let b = load_batch(batch, ck.config.num_classes)?;
    let [n, c, h, w] = b.shape;
    if c != ck.config.in_channels {
        bail!("{}: input has {c} channels but the model takes {}", batch.display(), ck.config.in_channels);
    }
    let trainer = Trainer::new(gpu, &ck, n, (h, w), TrainOptions { dropout: 0.0, ..opts })?;
    let mut out = Vec::new();
    for step in 0..steps {
        trainer.step(gpu, &b.input, &b.labels, lr, step as u32)?;
        if step == 0 {
            let (loss, _) = trainer.metrics(gpu)?;
            let logits = &trainer.graph.logits;
            out.push(("logits".to_string(), logits.shape.clone(), gpu.read(logits)?));
            out.push(("loss".to_string(), vec![1], vec![loss]));
            let grads = trainer.state.read_grads(gpu)?;
            for name in trainer.state.trainable_names() {
                let shape = trainer.state.param(&name).shape.clone();
                out.push((format!("grad.{name}"), shape, grads[&name].clone()));
            }
        }
    }
    let after = trainer.state.to_checkpoint(gpu, Default::default())?;
    for t in trainer.state.arch.tensors() {
        out.push((format!("after.{}", t.name), t.shape.clone(), after.tensors[&t.name].clone()));
    }
    Ok(out)
}
