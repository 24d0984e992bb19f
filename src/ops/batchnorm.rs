//! BatchNorm 2-D / 1-D with optional fused ReLU (shaders/batchnorm.wgsl).

use crate::gpu::{f, Access, Gpu, KernelSpec, Launch, Tensor};
use std::sync::Arc;
use Access::{Read, ReadWrite};

const SOURCE: &str = include_str!("../../shaders/batchnorm.wgsl");
pub const EPS: f32 = 1e-5;
pub const MOMENTUM: f32 = 0.1;

/// Data laid out [n, c, hw]; hw = 1 for BatchNorm1d.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnShape {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
}

impl BnShape {
    pub fn len(&self) -> usize {
        self.n * self.c * self.hw
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Activations are read 4 pixels at a time when every plane holds a multiple of 4 pixels.
fn vector_width(s: &BnShape) -> u32 {
    if s.hw % 4 == 0 { 4 } else { 1 }
}

fn spec(entry: &'static str, vw: u32) -> KernelSpec {
    let bindings: &'static [Access] = match entry {
        "forward_train" | "forward_train_by_channel" => &[Read, ReadWrite, ReadWrite, ReadWrite, Read, Read, ReadWrite],
        "apply_eval" => &[Read, Read, Read, Read, Read, ReadWrite],
        "backward" | "backward_by_channel" => &[Read, Read, Read, Read, Read, ReadWrite, ReadWrite, ReadWrite],
        _ => unreachable!("no batchnorm kernel {entry}"),
    };
    let (ty, total) = match vw {
        4 => ("vec4<f32>", "v.x + v.y + v.z + v.w"),
        _ => ("f32", "v"),
    };
    KernelSpec::new("batchnorm.wgsl", SOURCE, entry, bindings)
        .with_const("VW", vw)
        .with_decl(&format!("alias V = {ty};\nfn total(v: V) -> f32 {{ return {total}; }}"))
}

pub fn kernels() -> Vec<KernelSpec> {
    let entries = ["forward_train", "forward_train_by_channel", "apply_eval", "backward", "backward_by_channel"];
    [1, 4].into_iter().flat_map(|vw| entries.into_iter().map(move |e| spec(e, vw))).collect()
}

/// Grid of the elementwise kernels: lanes over images (workgroups of 8), y over channels.
fn per_image_grid(s: &BnShape) -> [u32; 3] {
    [(s.n as u32).div_ceil(8), s.c as u32, 1]
}

pub fn params(gpu: &Gpu, s: &BnShape, relu: bool) -> Arc<wgpu::Buffer> {
    gpu.params(&[s.n as u32, s.c as u32, s.hw as u32, relu as u32, f(EPS), f(MOMENTUM), 0, 0])
}

/// Training forward: batch statistics into `saved` ([2, c]: mean, 1/std), the running
/// statistics updated, and the normalisation (one launch: a workgroup per channel).
pub fn forward_train(
    gpu: &Gpu,
    p: &Arc<wgpu::Buffer>,
    s: &BnShape,
    x: &Tensor,
    saved: &Tensor,
    running: (&Tensor, &Tensor),
    affine: (&Tensor, &Tensor),
    y: &Tensor,
) -> Vec<Launch> {
    let bindings = [x, saved, running.0, running.1, affine.0, affine.1, y];
    let (entry, grid) = layout("forward_train", s);
    vec![gpu.launch("bn.forward_train", &spec(entry, vector_width(s)), p, &bindings, grid)]
}

/// Which of a training kernel's two layouts runs `s`: a workgroup per channel (a tree
/// reduction over its lanes), or a lane per channel, eight channels to a workgroup, when
/// a channel holds at most BY_CHANNEL_MAX values (per-workgroup cost dominates there).
pub const BY_CHANNEL_MAX: usize = 1024;

fn layout(entry: &'static str, s: &BnShape) -> (&'static str, [u32; 3]) {
    if s.n * s.hw <= BY_CHANNEL_MAX {
        let by_channel = if entry == "backward" { "backward_by_channel" } else { "forward_train_by_channel" };
        (by_channel, [(s.c as u32).div_ceil(8), 1, 1])
    } else {
        (entry, [s.c as u32, 1, 1])
    }
}

/// Eval forward with the running statistics.
pub fn forward_eval(gpu: &Gpu, p: &Arc<wgpu::Buffer>, s: &BnShape, x: &Tensor, running: (&Tensor, &Tensor), affine: (&Tensor, &Tensor), y: &Tensor) -> Launch {
    gpu.launch("bn.apply_eval", &spec("apply_eval", vector_width(s)), p, &[x, running.0, running.1, affine.0, affine.1, y], per_image_grid(s))
}

/// Backward of the training forward (through the ReLU when fused): dgamma, dbeta, then dx
/// (one launch: a workgroup per channel).
pub fn backward(
    gpu: &Gpu,
    p: &Arc<wgpu::Buffer>,
    s: &BnShape,
    dy: &Tensor,
    x: &Tensor,
    saved: &Tensor,
    affine: (&Tensor, &Tensor),
    grads: (&Tensor, &Tensor),
    dx: &Tensor,
) -> Vec<Launch> {
    let (gamma, beta) = affine;
    let (dgamma, dbeta) = grads;
    let (entry, grid) = layout("backward", s);
    vec![gpu.launch("bn.backward", &spec(entry, vector_width(s)), p, &[dy, x, saved, gamma, beta, dgamma, dbeta, dx], grid)]
}
