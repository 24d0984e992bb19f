//! Inference on image files, evaluation on a test split (accuracy, loss, confusion matrix,
//! throughput) and the notebook's grid of predictions.

use crate::augment::{self, Preprocess};
use crate::checkpoint::{self, Checkpoint};
use crate::data::{self, Dataset, Kind};
use crate::gpu::Gpu;
use crate::network::{DeviceState, Evaluator};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The model the project trained and ships (s2p6 on Fashion-MNIST).
pub fn default_weights() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/spgnet-s2p6-fashion-mnist.safetensors")
}

/// A checkpoint with everything inference needs resolved.
pub struct Model {
    pub ck: Checkpoint,
    pub size: usize,
    pub classes: Vec<String>,
    pub pre: Preprocess,
}

impl Model {
    pub fn load(weights: Option<&Path>) -> Result<Model> {
        let path = weights.map(Path::to_path_buf).unwrap_or_else(default_weights);
        if weights.is_none() && !path.exists() {
            bail!("no shipped weights at {}: pass --weights FILE.safetensors", path.display());
        }
        let ck = checkpoint::load(&path)?;
        let c = ck.config.in_channels;
        let classes = ck.meta.classes.clone().unwrap_or_else(|| (0..ck.config.num_classes).map(|i| format!("class {i}")).collect());
        let mean = ck.meta.mean.clone().filter(|m| m.len() == c).unwrap_or_else(|| vec![0.0; c]);
        let std = ck.meta.std.clone().filter(|s| s.len() == c).unwrap_or_else(|| vec![1.0; c]);
        // Without metadata (a converted PyTorch file) the ImageNet recipe's 224 is the best guess.
        let size = ck.meta.input_size.unwrap_or(224);
        Ok(Model { size, classes, pre: Preprocess { mean, std, pad: 0, flip: false }, ck })
    }

    pub fn channels(&self) -> usize {
        self.ck.config.in_channels
    }
}

/// Top-k classes of one image.
#[derive(Clone, Debug)]
pub struct Prediction {
    pub image: String,
    pub top: Vec<(usize, String, f32)>,
}

pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = logits.iter().map(|&v| ((v - m) as f64).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| (v / s) as f32).collect()
}

/// Image files named on the command line; a folder means every image in it.
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let found = data::images_in(p)?;
            if found.is_empty() {
                bail!("{}: the folder holds no images (png, jpg, bmp, webp, gif)", p.display());
            }
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    if files.is_empty() {
        bail!("no images given");
    }
    Ok(files)
}

/// Batched forward passes over preprocessed images [n, c, s, s]; returns logits per image.
fn forward_all(gpu: &Gpu, model: &Model, state: &DeviceState, images: &[u8], n: usize, max_batch: usize) -> Result<Vec<Vec<f32>>> {
    let (c, s) = (model.channels(), model.size);
    let per = c * s * s;
    let batch = n.clamp(1, max_batch);
    let eval = Evaluator::new(gpu, state, batch, (s, s), 0.0)?;
    let classes = model.ck.config.num_classes;
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(batch) {
        let end = (start + batch).min(n);
        let mut input = vec![0f32; batch * per];
        for (slot, i) in (start..end).enumerate() {
            model.pre.apply(&images[i * per..(i + 1) * per], c, s, &mut input[slot * per..(slot + 1) * per], None);
        }
        let logits = eval.logits(gpu, &input)?;
        out.extend((0..end - start).map(|k| logits[k * classes..(k + 1) * classes].to_vec()));
    }
    Ok(out)
}

/// Classify image files (any size and colour type), `top` classes each, in one or more batches.
pub fn predict(gpu: &Gpu, model: &Model, files: &[PathBuf], top: usize) -> Result<Vec<Prediction>> {
    let (c, s) = (model.channels(), model.size);
    let mut images = Vec::with_capacity(files.len() * c * s * s);
    for f in files {
        images.extend(data::to_planes(&data::read_image(f)?, c, s));
    }
    let state = DeviceState::new(gpu, &model.ck)?;
    let logits = forward_all(gpu, model, &state, &images, files.len(), 64)?;
    Ok(files
        .iter()
        .zip(logits)
        .map(|(f, l)| {
            let p = softmax(&l);
            let mut order: Vec<usize> = (0..p.len()).collect();
            order.sort_by(|a, b| p[*b].partial_cmp(&p[*a]).unwrap());
            let top = order.into_iter().take(top.max(1)).map(|k| (k, model.classes[k].clone(), p[k])).collect();
            Prediction { image: f.display().to_string(), top }
        })
        .collect())
}

/// Test-split results of a checkpoint.
pub struct EvalReport {
    pub images: usize,
    pub accuracy: f64,
    pub top5: Option<f64>,
    pub loss: f64,
    pub img_per_s: f64,
    /// confusion[true][predicted]
    pub confusion: Vec<Vec<usize>>,
    pub classes: Vec<String>,
}

/// The test split of a dataset brought to the model's channels and input size.
pub fn test_split(model: &Model, kind: Kind, path: &Path, limit: Option<usize>) -> Result<Dataset> {
    let mut test = data::load(kind, path, 0.1, 42)?.test;
    if let Some(n) = limit {
        test.truncate(n);
    }
    if test.classes.len() != model.ck.config.num_classes {
        bail!("{}: the dataset has {} classes but the model {}", path.display(), test.classes.len(), model.ck.config.num_classes);
    }
    Ok(augment::conform(&test, model.channels(), model.size))
}

pub fn evaluate(gpu: &Gpu, model: &Model, test: Dataset, batch: usize) -> Result<EvalReport> {
    if batch == 0 {
        bail!("--batch must be positive");
    }
    let state = DeviceState::new(gpu, &model.ck)?;
    let n = test.len();
    let k = model.ck.config.num_classes;
    let eval = Evaluator::new(gpu, &state, batch.min(n).max(1), (model.size, model.size), 0.0)?;
    let test = Arc::new(test);
    // Warm-up batch: compiles the pipelines outside the timing, as a benchmark would.
    let first = augment::batches(test.clone(), Arc::new(model.pre.clone()), eval.batch(), 0, 0, false)?.recv()?;
    eval.logits(gpu, &first.input)?;
    let (mut correct, mut top5, mut loss) = (0usize, 0usize, 0f64);
    let mut confusion = vec![vec![0usize; k]; k];
    let t0 = Instant::now();
    for b in augment::batches(test.clone(), Arc::new(model.pre.clone()), eval.batch(), 0, 0, false)? {
        let (l, _, logits) = eval.evaluate(gpu, &b.input, &b.labels)?;
        for i in 0..b.valid {
            let row = &logits[i * k..(i + 1) * k];
            let truth = b.labels[i] as usize;
            let mut order: Vec<usize> = (0..k).collect();
            order.sort_by(|a, c| row[*c].partial_cmp(&row[*a]).unwrap());
            correct += (order[0] == truth) as usize;
            top5 += order.iter().take(5).any(|&c| c == truth) as usize;
            confusion[truth][order[0]] += 1;
            loss += l[i] as f64;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(EvalReport {
        images: n,
        accuracy: correct as f64 / n as f64,
        top5: (k > 5).then(|| top5 as f64 / n as f64),
        loss: loss / n as f64,
        img_per_s: n as f64 / secs,
        confusion,
        classes: model.classes.clone(),
    })
}

/// Predictions of the first `count` test images: (image index, predicted class).
pub fn predict_dataset(gpu: &Gpu, model: &Model, test: &Dataset, count: usize) -> Result<Vec<usize>> {
    let n = count.min(test.len());
    let per = test.channels * test.h * test.w;
    let state = DeviceState::new(gpu, &model.ck)?;
    let logits = forward_all(gpu, model, &state, &test.images[..n * per], n, 64)?;
    Ok(logits.iter().map(|l| (0..l.len()).fold(0, |b, k| if l[k] > l[b] { k } else { b })).collect())
}
