//! Softmax cross-entropy with label smoothing, fused with its gradient (shaders/loss.wgsl).

use crate::gpu::{f, Access, Gpu, KernelSpec, Launch, Tensor};
use Access::{Read, ReadWrite};

const SOURCE: &str = include_str!("../../shaders/loss.wgsl");

fn spec(entry: &'static str) -> KernelSpec {
    let bindings: &'static [Access] = match entry {
        "softmax_xent" => &[Read, Read, ReadWrite, ReadWrite],
        "batch_mean" => &[Read, ReadWrite],
        _ => unreachable!("no loss kernel {entry}"),
    };
    KernelSpec::new("loss.wgsl", SOURCE, entry, bindings)
}

pub fn kernels() -> Vec<KernelSpec> {
    vec![spec("softmax_xent"), spec("batch_mean")]
}

/// From logits [n, classes] and u32 labels [n]: dlogits (already divided by n),
/// per_sample [2, n] (loss, correct) and out [2] = (mean loss, number correct).
pub fn softmax_xent(gpu: &Gpu, smoothing: f32, logits: &Tensor, labels: &Tensor, dlogits: &Tensor, per_sample: &Tensor, out: &Tensor) -> Vec<Launch> {
    let (n, classes) = (logits.shape[0], logits.shape[1]);
    let p = gpu.params(&[n as u32, classes as u32, f(smoothing), 0]);
    vec![
        gpu.launch("loss.softmax_xent", &spec("softmax_xent"), &p, &[logits, labels, dlogits, per_sample], [(n as u32).div_ceil(64), 1, 1]),
        gpu.launch("loss.batch_mean", &spec("batch_mean"), &p, &[per_sample, out], [1, 1, 1]),
    ]
}
