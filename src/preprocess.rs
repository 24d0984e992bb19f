//! Host-side preprocessing: images brought to the model's size and channels once, then per
//! batch random crop with zero padding, horizontal flip and normalisation. Every random choice
//! derives from (seed, epoch, batch index), so an epoch replays identically after a resume.

use crate::data::{to_planes, Dataset};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// The dataset with every image at `channels` x `size` x `size` (converted and resized).
pub fn conform(ds: &Dataset, channels: usize, size: usize) -> Dataset {
    if ds.channels == channels && ds.h == size && ds.w == size {
        return ds.clone();
    }
    let mut images = Vec::with_capacity(ds.len() * channels * size * size);
    for i in 0..ds.len() {
        let src = ds.image(i);
        let img: image::DynamicImage = if ds.channels == 1 {
            image::GrayImage::from_raw(ds.w as u32, ds.h as u32, src.to_vec()).unwrap().into()
        } else {
            let plane = ds.h * ds.w;
            let rgb: Vec<u8> = (0..plane).flat_map(|p| [src[p], src[plane + p], src[2 * plane + p]]).collect();
            image::RgbImage::from_raw(ds.w as u32, ds.h as u32, rgb).unwrap().into()
        };
        images.extend(to_planes(&img, channels, size));
    }
    Dataset { images, channels, h: size, w: size, ..ds.clone() }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Random crop of the original size from the image zero-padded by this much (0: none).
    pub pad: usize,
    pub flip: bool,
}

impl Preprocess {
    /// Normalise one u8 image [c, s, s] into `out`, with crop and flip when `rng` is given.
    pub fn apply(&self, src: &[u8], c: usize, s: usize, out: &mut [f32], rng: Option<&mut rand::rngs::StdRng>) {
        let (dy, dx, flip) = match rng {
            Some(r) => {
                let p = self.pad as i64;
                let dy = if p > 0 { r.random_range(-p..=p) as isize } else { 0 };
                let dx = if p > 0 { r.random_range(-p..=p) as isize } else { 0 };
                (dy, dx, self.flip && r.random_bool(0.5))
            }
            None => (0, 0, false),
        };
        for ch in 0..c {
            let (m, sd) = (self.mean[ch], self.std[ch]);
            for y in 0..s {
                for x in 0..s {
                    let sx = if flip { s - 1 - x } else { x } as isize + dx;
                    let sy = y as isize + dy;
                    let v = if sy >= 0 && sx >= 0 && (sy as usize) < s && (sx as usize) < s {
                        src[(ch * s + sy as usize) * s + sx as usize]
                    } else {
                        0
                    };
                    out[(ch * s + y) * s + x] = (v as f32 / 255.0 - m) / sd;
                }
            }
        }
    }
}

/// A batch ready for upload: inputs [n, c, s, s], labels, and how many are real (the rest pad
/// an evaluation's last batch).
pub struct Batch {
    pub index: usize,
    pub input: Vec<f32>,
    pub labels: Vec<u32>,
    pub valid: usize,
}

/// Deterministic per-(seed, epoch, batch) random state.
pub fn batch_rng(seed: u64, epoch: usize, batch: usize) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((epoch as u64) << 32) ^ batch as u64)
}

/// The order of an epoch: shuffled for training, in order for evaluation.
pub fn epoch_order(n: usize, seed: u64, epoch: usize, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed ^ 0x5EED_0000 ^ epoch as u64));
    }
    order
}

/// Batch `b` of an epoch whose image order is `order`: `batch` images (an evaluation's last
/// batch is padded by repeating its first image), augmented when `train`.
pub fn make_batch(
    ds: &Dataset,
    pre: &Preprocess,
    order: &[usize],
    batch: usize,
    (seed, epoch, b): (u64, usize, usize),
    train: bool,
) -> Batch {
    let (c, s) = (ds.channels, ds.h);
    let per = c * s * s;
    let idx = &order[b * batch..((b + 1) * batch).min(order.len())];
    let mut input = vec![0f32; batch * per];
    let mut labels = vec![0u32; batch];
    let mut rng = batch_rng(seed, epoch, b);
    for slot in 0..batch {
        let i = idx[if slot < idx.len() { slot } else { 0 }];
        pre.apply(ds.image(i), c, s, &mut input[slot * per..(slot + 1) * per], if train { Some(&mut rng) } else { None });
        labels[slot] = ds.labels[i];
    }
    Batch { index: b, input, labels, valid: idx.len() }
}

/// Batches in an epoch: training drops the last incomplete batch, evaluation pads it.
pub fn batch_count(n: usize, batch: usize, train: bool) -> usize {
    if train {
        n / batch
    } else {
        n.div_ceil(batch)
    }
}
