//! SGD with momentum and weight decay over a parameter arena (shaders/sgd.wgsl).

use crate::gpu::{f, grid_1d, Access, Gpu, KernelSpec, Launch, Tensor};
use Access::{Read, ReadWrite};

const SOURCE: &str = include_str!("../../shaders/sgd.wgsl");

fn spec(entry: &'static str) -> KernelSpec {
    KernelSpec::new("sgd.wgsl", SOURCE, entry, &[Read, ReadWrite, ReadWrite])
}

fn ema_spec(entry: &'static str) -> KernelSpec {
    KernelSpec::new("sgd.wgsl", SOURCE, entry, &[Read, ReadWrite])
}

/// vec4s per lane in step4 and ema4 (PER_LANE in the shader).
const PER_LANE: usize = 4;

pub fn kernels() -> Vec<KernelSpec> {
    vec![spec("step"), spec("step4"), ema_spec("ema"), ema_spec("ema4")]
}

/// The grid of a vec4 kernel over `len` values (PER_LANE vec4s per lane), if there are any.
fn vec4_grid(len: usize) -> Option<[u32; 3]> {
    (len >= 4).then(|| grid_1d((len / 4).div_ceil(PER_LANE), 64))
}

/// shadow = decay * shadow + (1 - decay) * value (an exponential moving average of weights):
/// the vec4s, then the len % 4 values after them. The launches share one uniform that holds
/// decay: change it per step by writing at EMA_DECAY_OFFSET.
pub fn ema(gpu: &Gpu, value: &Tensor, shadow: &Tensor, decay: f32) -> Vec<Launch> {
    let p = gpu.params(&[value.len() as u32, f(decay), 0, 0]);
    let mut v: Vec<Launch> = vec4_grid(value.len()).map(|g| gpu.launch("sgd.ema", &ema_spec("ema4"), &p, &[value, shadow], g)).into_iter().collect();
    if value.len() % 4 != 0 {
        v.push(gpu.launch("sgd.ema", &ema_spec("ema"), &p, &[value, shadow], grid_1d(value.len() % 4, 64)));
    }
    v
}

/// One update of every value of `param` (v = mu v + g + wd p; p -= lr v): the vec4s, then
/// the len % 4 values after them when there are any. The launches share one uniform that
/// holds lr: change it per step by writing at LR_OFFSET.
pub fn step(gpu: &Gpu, grad: &Tensor, param: &Tensor, velocity: &Tensor, lr: f32, momentum: f32, weight_decay: f32) -> Vec<Launch> {
    let p = gpu.params(&[param.len() as u32, f(lr), f(momentum), f(weight_decay)]);
    let mut v: Vec<Launch> = vec4_grid(param.len()).map(|g| gpu.launch("sgd.step", &spec("step4"), &p, &[grad, param, velocity], g)).into_iter().collect();
    if param.len() % 4 != 0 {
        v.push(gpu.launch("sgd.step", &spec("step"), &p, &[grad, param, velocity], grid_1d(param.len() % 4, 64)));
    }
    v
}

/// Byte offset of lr in the step's parameters.
pub const LR_OFFSET: u64 = 4;

/// Byte offset of decay in the EMA's parameters.
pub const EMA_DECAY_OFFSET: u64 = 4;

/// The EMA decay for update `t` (0 for the first) with warm-up: min(decay, (1 + t) / (10 + t)),
/// as TensorFlow's ExponentialMovingAverage with num_updates. A fixed decay of 0.999 from the
/// first step leaves 39% of the initialisation in the average after 936 updates, and its BN
/// statistics do not fit the trained weights (a from-scratch run read 10% test accuracy for
/// epochs); warmed up, the average follows the weights early and reaches the full decay at
/// t = 8991 for 0.999.
pub fn ema_decay(decay: f32, t: usize) -> f32 {
    decay.min((1 + t) as f32 / (10 + t) as f32)
}
