//! `debug-step`: N training steps on one batch, returning what the golden files hold. From
//! bytes to bytes, so the CLI and the browser run the same step.

use crate::checkpoint::{self, Checkpoint, TensorFile};
use crate::gpu::Gpu;
use crate::network::{TrainOptions, Trainer};
use anyhow::{bail, Result};

/// A batch file: `input` `[N, C, H, W]` f32 and `labels` `[N]` i64 or i32.
pub struct Batch {
    pub input: Vec<f32>,
    pub shape: [usize; 4],
    pub labels: Vec<u32>,
}

/// The batch a safetensors file holds, checked against a model with `num_classes` classes.
pub fn parse_batch(f: &TensorFile, num_classes: usize) -> Result<Batch> {
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
pub async fn run(
    gpu: &Gpu,
    ck: &Checkpoint,
    b: &Batch,
    steps: usize,
    lr: f32,
    opts: TrainOptions,
) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>> {
    if steps == 0 {
        bail!("--steps must be at least 1");
    }
    let [n, c, h, w] = b.shape;
    if c != ck.config.in_channels {
        bail!("the batch's input has {c} channels but the model takes {}", ck.config.in_channels);
    }
    let trainer = Trainer::new(gpu, ck, n, (h, w), TrainOptions { dropout: 0.0, ..opts })?;
    let mut out = Vec::new();
    for step in 0..steps {
        trainer.step(gpu, &b.input, &b.labels, lr, step as u32)?;
        if step == 0 {
            let (loss, _) = trainer.metrics(gpu).await?;
            let logits = &trainer.graph.logits;
            out.push(("logits".to_string(), logits.shape.clone(), gpu.read_async(logits).await?));
            out.push(("loss".to_string(), vec![1], vec![loss]));
            let grads = trainer.state.read_grads(gpu).await?;
            for name in trainer.state.trainable_names() {
                let shape = trainer.state.param(&name).shape.clone();
                out.push((format!("grad.{name}"), shape, grads[&name].clone()));
            }
        }
    }
    let after = trainer.state.to_checkpoint(gpu, Default::default()).await?;
    for t in trainer.state.arch.tensors() {
        out.push((format!("after.{}", t.name), t.shape.clone(), after.tensors[&t.name].clone()));
    }
    Ok(out)
}

/// The same from safetensors bytes (weights, batch) to safetensors bytes (the debug-step file).
pub async fn run_bytes(gpu: &Gpu, weights: Vec<u8>, batch: Vec<u8>, steps: usize, lr: f32, opts: TrainOptions) -> Result<Vec<u8>> {
    let ck = checkpoint::from_file(&TensorFile::from_bytes("weights".into(), weights)?)?;
    let b = parse_batch(&TensorFile::from_bytes("batch".into(), batch)?, ck.config.num_classes)?;
    checkpoint::to_bytes(&run(gpu, &ck, &b, steps, lr, opts).await?, Default::default())
}
