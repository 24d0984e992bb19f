//! Training a model on data held in memory, with no files: the library's entry point for a
//! custom dataset (the `train` command adds files, progress, resume points and pictures).

use crate::checkpoint::{Checkpoint, Metadata};
use crate::data::Dataset;
use crate::gpu::Gpu;
use crate::model::{ModelConfig, Variant};
use crate::network::{learning_rate, Evaluator, TrainOptions, Trainer};
use crate::preprocess::{batch_count, epoch_order, make_batch, Batch, Preprocess};
use anyhow::{bail, Result};

/// How `fit` trains: the network, epochs, batch, peak learning rate (see `learning_rate_at`),
/// seed and the optimiser's settings.
#[derive(Clone, Debug)]
pub struct FitOptions {
    pub version: Variant,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    pub seed: u64,
    pub optimiser: TrainOptions,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions { version: Variant::S2P6, epochs: 5, batch: 32, lr: 0.02, seed: 1, optimiser: TrainOptions::default() }
    }
}

/// Train a fresh model on `train` (images normalised by its mean and std, random crops of 2
/// pixels), evaluating on `test` after every epoch: the trained checkpoint (its metadata says
/// how to preprocess, so `classify` and `spgnet infer` can use it) and each epoch's test accuracy.
pub async fn fit(gpu: &Gpu, train: &Dataset, test: &Dataset, o: &FitOptions) -> Result<(Checkpoint, Vec<f64>)> {
    if train.is_empty() || test.is_empty() || o.batch < 2 || o.batch > train.len() || o.epochs == 0 {
        bail!("fit needs images to train and test on, at least 1 epoch and a batch from 2 to the {} training images", train.len());
    }
    if (train.channels, train.h, train.w, &train.classes) != (test.channels, test.h, test.w, &test.classes) || train.h != train.w {
        bail!("fit: training and test images must be square, of one size, channels and class list");
    }
    let (mean, std) = train.mean_std();
    let pre = Preprocess { mean: mean.clone(), std: std.clone(), pad: 2, flip: false };
    let eval_pre = Preprocess { pad: 0, ..pre.clone() };
    let ck = Checkpoint::initialized(ModelConfig::new(o.version, train.channels, train.classes.len()), o.seed);
    let size = (train.h, train.w);
    let trainer = Trainer::new(gpu, &ck, o.batch, size, o.optimiser)?;
    let evaluator = Evaluator::new(gpu, &trainer.state, o.batch.min(test.len()).max(2), size, o.optimiser.label_smoothing)?;
    let steps = batch_count(train.len(), o.batch, true);
    let mut accuracy = Vec::with_capacity(o.epochs);
    for epoch in 0..o.epochs {
        let order = epoch_order(train.len(), o.seed, epoch, true);
        for b in 0..steps {
            let step = epoch * steps + b;
            let batch = make_batch(train, &pre, &order, o.batch, (o.seed, epoch, b), true);
            train_step(gpu, &trainer, &batch, learning_rate_at(o.lr, step, steps, steps * o.epochs), o.seed, step).await?;
        }
        evaluator.weights_changed();
        accuracy.push(evaluate(gpu, &evaluator, test, &eval_pre).await?.1);
    }
    let meta = Metadata {
        input_size: Some(train.h),
        classes: Some(train.classes.clone()),
        mean: Some(mean),
        std: Some(std),
        dataset: Some(train.name.clone()),
    };
    Ok((trainer.state.to_checkpoint(gpu, meta).await?, accuracy))
}

/// The learning rate of step `step` of `total` in a run without a schedule of its own (`fit`, the
/// web page): a linear warm-up over the first epoch's steps, up to 50 (from scratch, BatchNorm's
/// first steps diverge at the full rate), then a cosine to 0.
pub fn learning_rate_at(base: f32, step: usize, steps_per_epoch: usize, total: usize) -> f32 {
    learning_rate(base, step, steps_per_epoch.min(50), total)
}

/// Training step `step` (0-based) on `batch` at learning rate `lr`: its (loss, correct answers),
/// once the GPU has finished it; a loss that is not finite is an error.
pub async fn train_step(gpu: &Gpu, trainer: &Trainer, batch: &Batch, lr: f32, seed: u64, step: usize) -> Result<(f32, f32)> {
    trainer.step(gpu, &batch.input, &batch.labels, lr, (seed as u32).wrapping_add(step as u32))?;
    let (loss, right) = trainer.metrics(gpu).await?;
    if !loss.is_finite() {
        bail!("the loss became {loss} at step {}: try a smaller learning rate", step + 1);
    }
    Ok((loss, right))
}

/// (mean loss, accuracy) of `eval`'s weights on all of `ds`, preprocessed by `pre` (no
/// augmentation; the last batch padded). Whoever changed the weights since its last pass calls
/// `Evaluator::weights_changed` first.
pub async fn evaluate(gpu: &Gpu, eval: &Evaluator, ds: &Dataset, pre: &Preprocess) -> Result<(f64, f64)> {
    let order = epoch_order(ds.len(), 0, 0, false);
    let (mut loss, mut correct, mut n) = (0f64, 0f64, 0usize);
    for b in 0..batch_count(ds.len(), eval.batch(), false) {
        let batch = make_batch(ds, pre, &order, eval.batch(), (0, 0, b), false);
        let (l, c, _) = eval.evaluate(gpu, &batch.input, &batch.labels).await?;
        loss += l[..batch.valid].iter().map(|&v| v as f64).sum::<f64>();
        correct += c[..batch.valid].iter().map(|&v| v as f64).sum::<f64>();
        n += batch.valid;
    }
    Ok((loss / n as f64, correct / n as f64))
}
