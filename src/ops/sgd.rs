//! SGD with momentum and weight decay over a parameter arena, and the weight EMA
//! (shaders/sgd.wgsl).

use crate::gpu::{grid_1d, Gpu, KernelSpec, Launch, Source, Tensor};
use std::mem::offset_of;

const SOURCE: Source = Source { file: "sgd.wgsl", text: include_str!("../../shaders/sgd.wgsl") };

crate::kernel_table! {
    /// The entry points of sgd.wgsl.
    pub enum Kernel in SOURCE {
        Step = "step" [Read, ReadWrite, ReadWrite],
        Step4 = "step4" [Read, ReadWrite, ReadWrite],
        Ema = "ema" [Read, ReadWrite],
        Ema4 = "ema4" [Read, ReadWrite],
    }
}

/// The shader's `Sgd` uniform.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SgdParams {
    len: u32,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
}

/// The shader's `Ema` uniform.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct EmaParams {
    len: u32,
    decay: f32,
    _pad: [u32; 2],
}

/// vec4s per lane in step4 and ema4 (PER_LANE in the shader).
const PER_LANE: usize = 8;

/// The grid of a vec4 kernel over `len` values (PER_LANE vec4s per lane), if there are any.
fn vec4_grid(len: usize) -> Option<[u32; 3]> {
    (len >= 4).then(|| grid_1d((len / 4).div_ceil(PER_LANE), 64))
}

/// The vec4 kernel over the vec4s of `len` values, then the scalar one over the len % 4 after them.
fn vec4_then_rest(
    gpu: &Gpu,
    label: &str,
    (vec4, scalar): (Kernel, Kernel),
    p: &std::sync::Arc<wgpu::Buffer>,
    tensors: &[&Tensor],
    len: usize,
) -> Vec<Launch> {
    let mut v: Vec<Launch> = vec4_grid(len).map(|g| gpu.launch(label, &KernelSpec::of(vec4), p, tensors, g)).into_iter().collect();
    if !len.is_multiple_of(4) {
        v.push(gpu.launch(label, &KernelSpec::of(scalar), p, tensors, grid_1d(len % 4, 64)));
    }
    v
}

/// shadow = decay * shadow + (1 - decay) * value (an exponential moving average of weights).
/// The launches share one uniform: change the decay per step with `set_ema_decay`.
pub fn ema(gpu: &Gpu, value: &Tensor, shadow: &Tensor, decay: f32) -> Vec<Launch> {
    let p = gpu.params(&EmaParams { len: value.len() as u32, decay, _pad: [0; 2] });
    vec4_then_rest(gpu, "sgd.ema", (Kernel::Ema4, Kernel::Ema), &p, &[value, shadow], value.len())
}

/// Set the decay of `ema` launches for their next run.
pub fn set_ema_decay(gpu: &Gpu, launches: &[Launch], decay: f32) {
    for l in launches {
        gpu.write_param(&l.params, offset_of!(EmaParams, decay), decay);
    }
}

/// One update of every value of `param` (v = mu v + g + wd p; p -= lr v). The launches share
/// one uniform: change the learning rate per step with `set_learning_rate`.
pub fn step(gpu: &Gpu, grad: &Tensor, param: &Tensor, velocity: &Tensor, lr: f32, momentum: f32, weight_decay: f32) -> Vec<Launch> {
    let p = gpu.params(&SgdParams { len: param.len() as u32, lr, momentum, weight_decay });
    vec4_then_rest(gpu, "sgd.step", (Kernel::Step4, Kernel::Step), &p, &[grad, param, velocity], param.len())
}

/// Set the learning rate of `step` launches for their next run.
pub fn set_learning_rate(gpu: &Gpu, launches: &[Launch], lr: f32) {
    for l in launches {
        gpu.write_param(&l.params, offset_of!(SgdParams, lr), lr);
    }
}

/// The EMA decay for update `t` (0 for the first) with warm-up: min(decay, (1 + t) / (10 + t)),
/// as TensorFlow's ExponentialMovingAverage with num_updates. A fixed decay of 0.999 from the
/// first step leaves 39% of the initialisation in the average after 936 updates, and its BN
/// statistics do not fit the trained weights (a from-scratch run read 10% test accuracy for
/// epochs); warmed up, the average follows the weights early and reaches the full decay at
/// t = 8991 for 0.999.
pub fn ema_decay(decay: f32, t: usize) -> f32 {
    decay.min((1 + t) as f32 / (10 + t) as f32)
}
