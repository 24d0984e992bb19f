//! ReLU and its backward (also of a two-term gradient), eval's residual add + ReLU, dropout
//! (shaders/elementwise.wgsl).

use crate::gpu::{f, grid_1d, Access, Gpu, KernelSpec, Launch, Tensor};
use std::sync::Arc;
use Access::{Read, ReadWrite};

const SOURCE: &str = include_str!("../../shaders/elementwise.wgsl");

/// The kernels that read V (vec4 or f32, see the shader) take the vector width; the rest 1.
fn spec(entry: &'static str, vw: usize) -> KernelSpec {
    let bindings: &'static [Access] = match entry {
        "relu_forward" | "dropout" | "dropout_mask" => &[Read, ReadWrite],
        "relu_backward" | "add_relu" => &[Read, Read, ReadWrite],
        "relu_backward_sum" => &[Read, Read, Read, ReadWrite],
        _ => unreachable!("no elementwise kernel {entry}"),
    };
    let ty = if vw == 4 { "vec4<f32>" } else { "f32" };
    KernelSpec::new("elementwise.wgsl", SOURCE, entry, bindings).with_const("VW", vw as u32).with_decl(&format!("alias V = {ty};"))
}

/// Values per lane in the vectorised kernels (PER_LANE in the shader).
const PER_LANE: usize = 4;
/// Lanes per workgroup of the flat kernels (EW in the shader).
const EW: u32 = 64;

const VECTORISED: [&str; 3] = ["relu_backward", "relu_backward_sum", "add_relu"];

pub fn kernels() -> Vec<KernelSpec> {
    let scalar = ["relu_forward", "dropout", "dropout_mask"].into_iter().map(|e| spec(e, 1));
    scalar.chain([1, 4].into_iter().flat_map(|vw| VECTORISED.into_iter().map(move |e| spec(e, vw)))).collect()
}

fn len_params(gpu: &Gpu, len: usize) -> Arc<wgpu::Buffer> {
    gpu.params(&[len as u32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
}

fn flat(gpu: &Gpu, entry: &'static str, p: &Arc<wgpu::Buffer>, tensors: &[&Tensor]) -> Launch {
    let len = tensors.last().unwrap().len();
    gpu.launch(entry, &spec(entry, 1), p, tensors, grid_1d(len, EW))
}

/// A vectorised flat kernel: PER_LANE values of vec4 (or f32 when len % 4 != 0) per lane.
fn flat_v(gpu: &Gpu, entry: &'static str, tensors: &[&Tensor]) -> Launch {
    let len = tensors.last().unwrap().len();
    let vw = if len % 4 == 0 { 4 } else { 1 };
    gpu.launch(entry, &spec(entry, vw), &len_params(gpu, len), tensors, grid_1d((len / vw).div_ceil(PER_LANE), EW))
}

pub fn relu_forward(gpu: &Gpu, x: &Tensor, y: &Tensor) -> Launch {
    flat(gpu, "relu_forward", &len_params(gpu, y.len()), &[x, y])
}

/// dx = dy where y > 0; y is the ReLU's output (or input).
pub fn relu_backward(gpu: &Gpu, dy: &Tensor, y: &Tensor, dx: &Tensor) -> Launch {
    flat_v(gpu, "relu_backward", &[dy, y, dx])
}

/// dx = dy_a + dy_b where y > 0: relu_backward of a gradient that arrives as two terms (an
/// SPG block's input gradient: its main path's and its skip's), without adding them first.
pub fn relu_backward_sum(gpu: &Gpu, dy: (&Tensor, &Tensor), y: &Tensor, dx: &Tensor) -> Launch {
    flat_v(gpu, "relu_backward_sum", &[dy.0, dy.1, y, dx])
}

/// out = relu(a + b); its backward is `relu_backward` with out as the mask.
pub fn add_relu(gpu: &Gpu, a: &Tensor, b: &Tensor, out: &Tensor) -> Launch {
    flat_v(gpu, "add_relu", &[a, b, out])
}

/// Parameters of a dropout layer; forward and backward share them (and so the mask).
/// Rewrite the seed each step with `set_dropout_seed`.
pub fn dropout_params(gpu: &Gpu, len: usize, p: f32, seed: u32) -> Arc<wgpu::Buffer> {
    let scale = if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 };
    gpu.params(&[len as u32, seed, 0, 0, 0, 0, 0, 0, f(p), f(scale), 0, 0])
}

pub fn set_dropout_seed(gpu: &Gpu, params: &Arc<wgpu::Buffer>, seed: u32) {
    gpu.queue.write_buffer(params, 4, bytemuck::bytes_of(&seed));
}

/// out = input * mask / (1 - p); the same call on gradients is the backward pass.
pub fn dropout(gpu: &Gpu, params: &Arc<wgpu::Buffer>, input: &Tensor, out: &Tensor) -> Launch {
    flat(gpu, "dropout", params, &[input, out])
}

/// The keep-mask (1 kept, 0 dropped) the same parameters produce, for checking on the host.
pub fn dropout_mask(gpu: &Gpu, params: &Arc<wgpu::Buffer>, scratch_in: &Tensor, mask: &Tensor) -> Launch {
    flat(gpu, "dropout_mask", params, &[scratch_in, mask])
}
