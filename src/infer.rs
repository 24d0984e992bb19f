//! Inference on image files, evaluation on a test split (native: files, timing) (accuracy, loss, confusion matrix,
//! throughput) and the notebook's grid of predictions.

use crate::augment;
use crate::checkpoint;
use crate::classify::{classify, forward_all, top_k};
pub use crate::classify::{softmax, Model, Prediction};
use crate::data::{Dataset, Kind};
use crate::datasets;
use crate::gpu::Gpu;
use crate::network::{DeviceState, Evaluator};
use crate::preprocess::conform;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use web_time::Instant;

/// The model at `weights`, or the shipped one.
pub fn load_model(weights: Option<&Path>) -> Result<Model> {
    let path = weights.map(Path::to_path_buf).unwrap_or_else(default_weights);
    if weights.is_none() && !path.exists() {
        bail!("no shipped weights at {}: pass --weights FILE.safetensors", path.display());
    }
    Ok(Model::new(checkpoint::load(&path)?))
}

/// The model the project trained and ships (s2p6 on Fashion-MNIST).
pub fn default_weights() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/spgnet-s2p6-fashion-mnist.safetensors")
}

/// Image files named on the command line; a folder means every image in it.
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let found = datasets::images_in(p)?;
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

/// Classify image files (any size and colour type), `top` classes each, in one or more batches.
pub fn predict(gpu: &Gpu, model: &Model, files: &[PathBuf], top: usize) -> Result<Vec<Prediction>> {
    let images = files.iter().map(|f| datasets::read_image(f)).collect::<Result<Vec<_>>>()?;
    let logits = pollster::block_on(classify(gpu, model, &images))?;
    Ok(files.iter().zip(logits).map(|(f, l)| Prediction { image: f.display().to_string(), top: top_k(model, &l, top) }).collect())
}

/// Test-split results of a checkpoint.
pub struct EvalReport {
    pub images: usize,
    pub accuracy: f64,
    pub top5: Option<f64>,
    pub loss: f64,
    pub img_per_s: f64,
    /// `confusion[true][predicted]`
    pub confusion: Vec<Vec<usize>>,
    pub classes: Vec<String>,
}

/// The test split of a dataset brought to the model's channels and input size.
pub fn test_split(model: &Model, kind: Kind, path: &Path, limit: Option<usize>) -> Result<Dataset> {
    let mut test = datasets::load(kind, path, 0.1, 42)?.test;
    if let Some(n) = limit {
        test.truncate(n);
    }
    if test.classes.len() != model.ck.config.num_classes {
        bail!("{}: the dataset has {} classes but the model {}", path.display(), test.classes.len(), model.ck.config.num_classes);
    }
    Ok(conform(&test, model.channels(), model.size))
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
    pollster::block_on(eval.logits(gpu, &first.input))?;
    let (mut correct, mut top5, mut loss) = (0usize, 0usize, 0f64);
    let mut confusion = vec![vec![0usize; k]; k];
    let t0 = Instant::now();
    for b in augment::batches(test.clone(), Arc::new(model.pre.clone()), eval.batch(), 0, 0, false)? {
        let (l, _, logits) = pollster::block_on(eval.evaluate(gpu, &b.input, &b.labels))?;
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
    let logits = pollster::block_on(forward_all(gpu, model, &state, &test.images[..n * per], n, 64))?;
    Ok(logits.iter().map(|l| (0..l.len()).fold(0, |b, k| if l[k] > l[b] { k } else { b })).collect())
}
