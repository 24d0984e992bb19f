//! Classifying images with a trained model: the model's input (size, channels,
//! normalisation, class names) from its metadata, batched eval passes, top-k probabilities.

use crate::checkpoint::{self, Checkpoint, TensorFile};
use crate::data;
use crate::gpu::Gpu;
use crate::network::{DeviceState, Evaluator};
use crate::preprocess::Preprocess;
use anyhow::Result;

/// A checkpoint with everything inference needs resolved.
pub struct Model {
    pub ck: Checkpoint,
    pub size: usize,
    pub classes: Vec<String>,
    pub pre: Preprocess,
}

impl Model {
    /// What a checkpoint's metadata says about its input (defaults where it says nothing).
    pub fn new(ck: Checkpoint) -> Model {
        let c = ck.config.in_channels;
        let classes = ck.meta.classes.clone().unwrap_or_else(|| (0..ck.config.num_classes).map(|i| format!("class {i}")).collect());
        let mean = ck.meta.mean.clone().filter(|m| m.len() == c).unwrap_or_else(|| vec![0.0; c]);
        let std = ck.meta.std.clone().filter(|s| s.len() == c).unwrap_or_else(|| vec![1.0; c]);
        // Without metadata (a converted PyTorch file) the ImageNet recipe's 224 is the best guess.
        let size = ck.meta.input_size.unwrap_or(224);
        Model { size, classes, pre: Preprocess { mean, std, pad: 0, flip: false }, ck }
    }

    /// A model from safetensors bytes; `label` names them in messages.
    pub fn from_bytes(label: &str, bytes: Vec<u8>) -> Result<Model> {
        Ok(Model::new(checkpoint::from_file(&TensorFile::from_bytes(label.to_string(), bytes)?)?))
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

/// The `k` most probable classes of one image's logits: (class, name, probability).
pub fn top_k(model: &Model, logits: &[f32], k: usize) -> Vec<(usize, String, f32)> {
    let p = softmax(logits);
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|a, b| p[*b].total_cmp(&p[*a]));
    order.into_iter().take(k.max(1)).map(|c| (c, model.classes[c].clone(), p[c])).collect()
}

/// Batched forward passes over preprocessed images [n, c, s, s]; returns logits per image.
pub async fn forward_all(
    gpu: &Gpu,
    model: &Model,
    state: &DeviceState,
    images: &[u8],
    n: usize,
    max_batch: usize,
) -> Result<Vec<Vec<f32>>> {
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
        let logits = eval.logits(gpu, &input).await?;
        out.extend((0..end - start).map(|k| logits[k * classes..(k + 1) * classes].to_vec()));
    }
    Ok(out)
}

/// Classify decoded images (any size and colour type): their logits, in batches of up to 64.
pub async fn classify(gpu: &Gpu, model: &Model, images: &[image::DynamicImage]) -> Result<Vec<Vec<f32>>> {
    let (c, s) = (model.channels(), model.size);
    let mut planes = Vec::with_capacity(images.len() * c * s * s);
    for img in images {
        planes.extend(data::to_planes(img, c, s));
    }
    let state = DeviceState::new(gpu, &model.ck)?;
    forward_all(gpu, model, &state, &planes, images.len(), 64).await
}
