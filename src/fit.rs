//! Training a model on data held in memory, with no files: the library's entry point for a
//! custom dataset (the `train` command adds files, progress, resume points and pictures).

use crate::checkpoint::{Checkpoint, Metadata};
use crate::data::Dataset;
use crate::gpu::Gpu;
use crate::model::{ModelConfig, Variant};
use crate::network::{learning_rate, Evaluator, TrainOptions, Trainer};
use crate::preprocess::{batch_count, epoch_order, make_batch, Preprocess};
use anyhow::{bail, Result};

/// How `fit` trains: the network, epochs, batch, peak learning rate (linear warm-up over the
/// first epoch's steps up to 50, then a cosine), seed and the optimiser's settings.
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
            let lr = learning_rate(o.lr, step, steps.min(50), steps * o.epochs);
            trainer.step(gpu, &batch.input, &batch.labels, lr, (o.seed as u32).wrapping_add(step as u32))?;
            let (loss, _) = trainer.metrics(gpu).await?;
            if !loss.is_finite() {
                bail!("the loss became {loss} at epoch {} step {}: try a smaller learning rate", epoch + 1, b + 1);
            }
        }
        evaluator.weights_changed();
        let (order, mut right) = (epoch_order(test.len(), 0, 0, false), 0.0);
        for b in 0..batch_count(test.len(), evaluator.batch(), false) {
            let batch = make_batch(test, &eval_pre, &order, evaluator.batch(), (0, 0, b), false);
            let (_, correct, _) = evaluator.evaluate(gpu, &batch.input, &batch.labels).await?;
            right += correct[..batch.valid].iter().map(|&c| c as f64).sum::<f64>();
        }
        accuracy.push(right / test.len() as f64);
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
