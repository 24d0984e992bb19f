//! BatchNorm 2-D / 1-D with optional fused ReLU (shaders/batchnorm.wgsl).

use crate::gpu::{Gpu, KernelSpec, Launch, Source, Tensor};
use std::sync::Arc;

const SOURCE: Source = Source { file: "batchnorm.wgsl", text: include_str!("../../shaders/batchnorm.wgsl") };
pub const EPS: f32 = 1e-5;
pub const MOMENTUM: f32 = 0.1;

crate::kernel_table! {
    /// The entry points of batchnorm.wgsl: the training kernels each in three layouts (see `layout`).
    pub enum Kernel in SOURCE {
        ForwardTrain = "forward_train" [Read, ReadWrite, ReadWrite, ReadWrite, Read, Read, ReadWrite, ReadWrite, Read],
        ForwardTrainByChannel = "forward_train_by_channel" [Read, ReadWrite, ReadWrite, ReadWrite, Read, Read, ReadWrite, ReadWrite, Read],
        ApplyEval = "apply_eval" [Read, Read, Read, Read, Read, ReadWrite],
        Backward = "backward" [Read, Read, Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, Read],
        BackwardByChannel = "backward_by_channel" [Read, Read, Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, Read],
        ForwardTrainQuads = "forward_train_quads" [Read, ReadWrite, ReadWrite, ReadWrite, Read, Read, ReadWrite, ReadWrite, Read],
        BackwardQuads = "backward_quads" [Read, Read, Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, Read],
    }
}

/// The shader's `Bn` uniform.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct BnUniform {
    n: u32,
    c: u32,
    hw: u32,
    relu: u32,
    eps: f32,
    momentum: f32,
    io_total: u32,
    io_first: u32,
    y_copy: u32,
    dy_sum: u32,
    residual: u32,
    _pad: u32,
}

/// BatchNorm in eval mode folded into a GEMM's or conv's epilogue (shaders/bn_epilogue.wgsl):
/// the running statistics and affine of the layer, and whether a ReLU follows.
pub struct BnEval<'a> {
    pub mean: &'a Tensor,
    pub var: &'a Tensor,
    pub gamma: &'a Tensor,
    pub beta: &'a Tensor,
    pub relu: bool,
}

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
    if s.hw.is_multiple_of(4) {
        4
    } else {
        1
    }
}

/// Planes of up to this many V get their length built into the pipeline (PLANE_V): the
/// kernels' loops over a plane are then unrolled. Against walking (image, V) in one loop,
/// best of six alternating runs at batch 64: stage 1's forward (96 channels of 4x4) 0.136 ->
/// 0.105 ms, backward 0.190 -> 0.176; stage 2's (192 of 2x2) 0.079 -> 0.071 and 0.105 ->
/// 0.102. With the 16 V of an 8x8 plane unrolled the stem's forward was no faster.
const PLANE_V_MAX: usize = 4;

/// PLANE_V for activations of shape `s` read `vw` values per V (0: the plane's length comes
/// from the uniform).
fn plane_v(s: &BnShape, vw: u32) -> u32 {
    let v = s.hw / vw as usize;
    if v <= PLANE_V_MAX {
        v as u32
    } else {
        0
    }
}

/// The kernel reading activations as V: `vec4<f32>` (vw = 4) or f32, summed by `total`, over
/// planes of `plane_v` V (0: any length, see plane_v).
pub fn spec(kernel: Kernel, vw: u32, plane_v: u32) -> KernelSpec {
    let (ty, total, v4, from_v4) = match vw {
        4 => ("vec4<f32>", "v.x + v.y + v.z + v.w", "v", "v"),
        _ => ("f32", "v", "vec4<f32>(v)", "v.x"),
    };
    KernelSpec::of(kernel).with_const("VW", vw).with_const("PLANE_V", plane_v).with_decl(&format!(
        "alias V = {ty};\nfn total(v: V) -> f32 {{ return {total}; }}\n\
         fn v4(v: V) -> vec4<f32> {{ return {v4}; }}\nfn from_v4(v: vec4<f32>) -> V {{ return {from_v4}; }}"
    ))
}

/// Grid of the elementwise kernels: lanes over images (workgroups of 8), y over channels.
fn per_image_grid(s: &BnShape) -> [u32; 3] {
    [(s.n as u32).div_ceil(8), s.c as u32, 1]
}

/// Where a training BN's output y (forward) and incoming gradient dy (backward) live, for
/// the fused concat: channels `first..first + c` of buffers with `total` channels per image
/// (the concat buffer, written by the forward of conv1 and conv2 of an SPG block and read back
/// by their backward). `y_copy`: the forward also writes y whole to a second tensor (conv1's
/// output, which conv2 reads). `dy_sum`: the backward adds a second, whole gradient to dy
/// (conv1's gradient is the concat's plus conv2's; a block's input gradient is its main
/// path's plus its skip's). `residual`: the forward adds a shortcut tensor and applies the ReLU
/// after it, y = relu(BN(x) + shortcut) (conv_out of an SPG block, whose own relu flag is off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnIo {
    pub total: usize,
    pub first: usize,
    pub y_copy: bool,
    pub dy_sum: bool,
    pub residual: bool,
}

impl BnIo {
    /// y and dy are whole tensors of the BN's `channels`, one of each.
    pub fn whole(channels: usize) -> BnIo {
        BnIo { total: channels, first: 0, y_copy: false, dy_sum: false, residual: false }
    }
}

/// A BN layer's uniform parameters, and the layout they give its y and dy (which the launchers
/// check their tensors against).
#[derive(Clone)]
pub struct BnParams {
    pub buffer: Arc<wgpu::Buffer>,
    pub io: BnIo,
}

pub fn params(gpu: &Gpu, s: &BnShape, relu: bool) -> BnParams {
    params_io(gpu, s, relu, BnIo::whole(s.c))
}

/// The parameters of a training BN whose y and dy are laid out as `io` says.
pub fn params_io(gpu: &Gpu, s: &BnShape, relu: bool, io: BnIo) -> BnParams {
    assert!(io.first + s.c <= io.total, "{s:?}: channels {}.. of {} out of range", io.first, io.total);
    assert!(!(io.residual && relu), "{s:?}: a residual BN applies its ReLU after the shortcut, not before");
    let u = BnUniform {
        n: s.n as u32,
        c: s.c as u32,
        hw: s.hw as u32,
        relu: relu as u32,
        eps: EPS,
        momentum: MOMENTUM,
        io_total: io.total as u32,
        io_first: io.first as u32,
        y_copy: io.y_copy as u32,
        dy_sum: io.dy_sum as u32,
        residual: io.residual as u32,
        _pad: 0,
    };
    BnParams { buffer: gpu.params(&u), io }
}

/// The length of y (forward) and dy (backward) under `io`: n images of `total` channels.
fn io_len(s: &BnShape, io: &BnIo) -> usize {
    s.n * io.total * s.hw
}

/// Training forward: batch statistics into `saved` ([2, c]: mean, 1/std), the running
/// statistics updated, and the normalisation (one launch: a workgroup per channel). `y2`:
/// the whole copy of y that parameters with `BnIo::y_copy` write, `shortcut` the tensor that
/// those with `BnIo::residual` add (None otherwise).
pub fn forward_train(
    gpu: &Gpu,
    p: &BnParams,
    s: &BnShape,
    x: &Tensor,
    saved: &Tensor,
    running: (&Tensor, &Tensor),
    affine: (&Tensor, &Tensor),
    y: &Tensor,
    y2: Option<&Tensor>,
    shortcut: Option<&Tensor>,
) -> Vec<Launch> {
    let io = &p.io;
    assert!(
        y.len() == io_len(s, io) && y2.is_some() == io.y_copy && shortcut.is_some() == io.residual,
        "BN forward {s:?} {io:?}: y of {} values, y2 {}, shortcut {}",
        y.len(),
        y2.is_some(),
        shortcut.is_some()
    );
    // Without a second output (or a shortcut) the kernel never touches binding 8 (9): a
    // placeholder (x) stands in for it.
    let unused = gpu.unused();
    let bindings = [x, saved, running.0, running.1, affine.0, affine.1, y, y2.unwrap_or(&unused), shortcut.unwrap_or(x)];
    let (kernel, grid, vw) = layout(Kernel::ForwardTrain, s, io);
    vec![gpu.launch("bn.forward_train", &spec(kernel, vw, plane_v(s, vw)), &p.buffer, &bindings, grid)]
}

/// Which of a training kernel's three layouts runs `s`, and the vector width it reads: a
/// workgroup per channel (a tree reduction over its lanes), or a lane per channel, eight
/// channels to a workgroup, when a channel holds at most BY_CHANNEL_MAX values (per-workgroup
/// cost dominates there), or for BatchNorm1d with its channels in fours (`quads`) a lane per
/// four channels read as one vec4.
pub const BY_CHANNEL_MAX: usize = 1024;

pub fn quads(s: &BnShape, io: &BnIo) -> bool {
    s.hw == 1 && s.n <= BY_CHANNEL_MAX && [s.c, io.total, io.first].iter().all(|v| v % 4 == 0)
}

fn layout(kernel: Kernel, s: &BnShape, io: &BnIo) -> (Kernel, [u32; 3], u32) {
    let backward = kernel == Kernel::Backward;
    if quads(s, io) {
        let k = if backward { Kernel::BackwardQuads } else { Kernel::ForwardTrainQuads };
        (k, [(s.c as u32 / 4).div_ceil(8), 1, 1], 4)
    } else if s.n * s.hw <= BY_CHANNEL_MAX {
        let k = if backward { Kernel::BackwardByChannel } else { Kernel::ForwardTrainByChannel };
        (k, [(s.c as u32).div_ceil(8), 1, 1], vector_width(s))
    } else {
        (kernel, [s.c as u32, 1, 1], vector_width(s))
    }
}

/// Eval forward with the running statistics.
pub fn forward_eval(
    gpu: &Gpu,
    p: &BnParams,
    s: &BnShape,
    x: &Tensor,
    running: (&Tensor, &Tensor),
    affine: (&Tensor, &Tensor),
    y: &Tensor,
) -> Launch {
    let vw = vector_width(s);
    gpu.launch(
        "bn.apply_eval",
        &spec(Kernel::ApplyEval, vw, plane_v(s, vw)),
        &p.buffer,
        &[x, running.0, running.1, affine.0, affine.1, y],
        per_image_grid(s),
    )
}

/// Backward of the training forward (through the ReLU when fused): dgamma, dbeta, then dx
/// (one launch: a workgroup per channel). `dy2`: the second gradient that parameters with
/// `BnIo::dy_sum` add to dy (None otherwise).
pub fn backward(
    gpu: &Gpu,
    p: &BnParams,
    s: &BnShape,
    dy: &Tensor,
    dy2: Option<&Tensor>,
    x: &Tensor,
    saved: &Tensor,
    affine: (&Tensor, &Tensor),
    grads: (&Tensor, &Tensor),
    dx: &Tensor,
) -> Vec<Launch> {
    let (gamma, beta) = affine;
    let (dgamma, dbeta) = grads;
    let io = &p.io;
    assert!(
        dy.len() == io_len(s, io) && dy2.is_some() == io.dy_sum,
        "BN backward {s:?} {io:?}: dy of {} values, dy2 {}",
        dy.len(),
        dy2.is_some()
    );
    let (kernel, grid, vw) = layout(Kernel::Backward, s, io);
    vec![gpu.launch(
        "bn.backward",
        &spec(kernel, vw, plane_v(s, vw)),
        &p.buffer,
        &[dy, x, saved, gamma, beta, dgamma, dbeta, dx, dy2.unwrap_or(dy)],
        grid,
    )]
}
