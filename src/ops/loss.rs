//! Softmax cross-entropy with label smoothing, fused with its gradient (shaders/loss.wgsl).

use crate::gpu::{Gpu, KernelSpec, Launch, Source, Tensor};

const SOURCE: Source = Source { file: "loss.wgsl", text: include_str!("../../shaders/loss.wgsl") };

crate::kernel_table! {
    /// The entry points of loss.wgsl.
    pub enum Kernel in SOURCE {
        SoftmaxXent = "softmax_xent" [Read, Read, ReadWrite, ReadWrite],
        BatchMean = "batch_mean" [Read, ReadWrite],
    }
}

/// The shader's `Loss` uniform.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct LossParams {
    n: u32,
    classes: u32,
    smoothing: f32,
    _pad: u32,
}

/// From logits `[n, classes]` and u32 labels `[n]`: dlogits (already divided by n),
/// per_sample `[2, n]` (loss, correct) and out `[2]` = (mean loss, number correct).
pub fn softmax_xent(
    gpu: &Gpu,
    smoothing: f32,
    logits: &Tensor,
    labels: &Tensor,
    dlogits: &Tensor,
    per_sample: &Tensor,
    out: &Tensor,
) -> Vec<Launch> {
    let (n, classes) = (logits.shape[0], logits.shape[1]);
    let p = gpu.params(&LossParams { n: n as u32, classes: classes as u32, smoothing, _pad: 0 });
    vec![
        gpu.launch(
            "loss.softmax_xent",
            &KernelSpec::of(Kernel::SoftmaxXent),
            &p,
            &[logits, labels, dlogits, per_sample],
            [(n as u32).div_ceil(64), 1, 1],
        ),
        gpu.launch("loss.batch_mean", &KernelSpec::of(Kernel::BatchMean), &p, &[per_sample, out], [1, 1, 1]),
    ]
}
