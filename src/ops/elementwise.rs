//! ReLU and its backward (also of a two-term gradient), eval's residual add + ReLU, dropout
//! (shaders/elementwise.wgsl).

use crate::gpu::{grid_1d, Gpu, KernelSpec, Launch, Source, Tensor};
use std::mem::offset_of;
use std::sync::Arc;

const SOURCE: Source = Source {
    file: "elementwise.wgsl",
    text: concat!(include_str!("../../shaders/elementwise.wgsl"), "\n", include_str!("../../shaders/flat.wgsl")),
};

crate::kernel_table! {
    /// The entry points of elementwise.wgsl.
    pub enum Kernel in SOURCE {
        /// Tests only: the network fuses its ReLUs into BatchNorm and add_relu.
        ReluForward = "relu_forward" [Read, ReadWrite],
        ReluBackward = "relu_backward" [Read, Read, ReadWrite],
        ReluBackwardSum = "relu_backward_sum" [Read, Read, Read, ReadWrite],
        AddRelu = "add_relu" [Read, Read, ReadWrite],
        CopyChannels = "copy_channels" [Read, ReadWrite],
        Dropout = "dropout" [Read, ReadWrite],
        /// Tests only: the keep-mask that dropout applies.
        DropoutMask = "dropout_mask" [Read, ReadWrite],
    }
}

/// The shader's `Ew` uniform.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct EwParams {
    len: u32,
    seed: u32,
    run: u32,
    src_image: u32,
    src_first: u32,
    _pad: [u32; 3],
    drop_p: f32,
    scale: f32,
    _pad2: [u32; 2],
}

/// The kernel reading and writing V, `vec4<f32>` (vw = 4) or f32 (vw = 1): see the shader.
pub fn spec(kernel: Kernel, vw: usize) -> KernelSpec {
    let ty = if vw == 4 { "vec4<f32>" } else { "f32" };
    KernelSpec::of(kernel).with_const("VW", vw as u32).with_decl(&format!("alias V = {ty};"))
}

/// Values per lane in the vectorised kernels (PER_LANE in the shader).
const PER_LANE: usize = 4;
/// Lanes per workgroup of the flat kernels (EW in flat.wgsl).
const EW: u32 = 64;

/// The vectorised kernels; the others take V = f32 only.
pub const VECTORISED: [Kernel; 4] = [Kernel::ReluBackward, Kernel::ReluBackwardSum, Kernel::AddRelu, Kernel::CopyChannels];

fn len_params(gpu: &Gpu, len: usize) -> Arc<wgpu::Buffer> {
    gpu.params(&EwParams { len: len as u32, ..Default::default() })
}

fn flat(gpu: &Gpu, label: &str, kernel: Kernel, p: &Arc<wgpu::Buffer>, tensors: &[&Tensor]) -> Launch {
    let len = tensors.last().unwrap().len();
    gpu.launch(label, &spec(kernel, 1), p, tensors, grid_1d(len, EW))
}

/// A vectorised flat kernel: PER_LANE values of vec4 (or f32 when len % 4 != 0) per lane.
fn flat_v(gpu: &Gpu, label: &str, kernel: Kernel, tensors: &[&Tensor]) -> Launch {
    let len = tensors.last().unwrap().len();
    let vw = if len.is_multiple_of(4) { 4 } else { 1 };
    gpu.launch(label, &spec(kernel, vw), &len_params(gpu, len), tensors, grid_1d((len / vw).div_ceil(PER_LANE), EW))
}

/// y = max(x, 0).
#[cfg(any(test, feature = "testing"))]
pub fn relu_forward(gpu: &Gpu, x: &Tensor, y: &Tensor) -> Launch {
    flat(gpu, "relu_forward", Kernel::ReluForward, &len_params(gpu, y.len()), &[x, y])
}

/// dx = dy where y > 0; y is the ReLU's output (or input).
pub fn relu_backward(gpu: &Gpu, dy: &Tensor, y: &Tensor, dx: &Tensor) -> Launch {
    flat_v(gpu, "relu_backward", Kernel::ReluBackward, &[dy, y, dx])
}

/// dx = dy_a + dy_b where y > 0: relu_backward of a gradient that arrives as two terms (an
/// SPG block's input gradient: its main path's and its skip's), without adding them first.
pub fn relu_backward_sum(gpu: &Gpu, dy: (&Tensor, &Tensor), y: &Tensor, dx: &Tensor) -> Launch {
    flat_v(gpu, "relu_backward_sum", Kernel::ReluBackwardSum, &[dy.0, dy.1, y, dx])
}

/// out = relu(a + b); its backward is `relu_backward` with out as the mask.
pub fn add_relu(gpu: &Gpu, a: &Tensor, b: &Tensor, out: &Tensor) -> Launch {
    flat_v(gpu, "add_relu", Kernel::AddRelu, &[a, b, out])
}

/// out[n, c, ...] = src[n, first + c, ...]: channels first.. of `src` ([n, channels, h, w]) into
/// `out` ([n, c, h, w]), four values per load where the runs come in fours.
pub fn copy_channels(gpu: &Gpu, src: &Tensor, first: usize, out: &Tensor) -> Launch {
    let (n, c) = (out.shape[0], out.shape[1]);
    let hw: usize = out.shape[2..].iter().product();
    let (src_channels, src_hw): (usize, usize) = (src.shape[1], src.shape[2..].iter().product());
    assert!(
        src.shape[0] == n && src_hw == hw && first + c <= src_channels,
        "copy_channels: {:?} from channel {first} of {:?}",
        out.shape,
        src.shape
    );
    let vw = if [c * hw, src_channels * hw, first * hw].iter().all(|v| v % 4 == 0) { 4 } else { 1 };
    let p = gpu.params(&EwParams {
        len: out.len() as u32,
        run: (c * hw / vw) as u32,
        src_image: (src_channels * hw / vw) as u32,
        src_first: (first * hw / vw) as u32,
        ..Default::default()
    });
    gpu.launch("copy_channels", &spec(Kernel::CopyChannels, vw), &p, &[src, out], grid_1d((out.len() / vw).div_ceil(PER_LANE), EW))
}

/// Parameters of a dropout layer; forward and backward share them (and so the mask).
/// Rewrite the seed each step with `set_dropout_seed`.
pub fn dropout_params(gpu: &Gpu, len: usize, p: f32, seed: u32) -> Arc<wgpu::Buffer> {
    let scale = if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 };
    gpu.params(&EwParams { len: len as u32, seed, drop_p: p, scale, ..Default::default() })
}

pub fn set_dropout_seed(gpu: &Gpu, params: &wgpu::Buffer, seed: u32) {
    gpu.write_param(params, offset_of!(EwParams, seed), seed);
}

/// out = input * mask / (1 - p); the same call on gradients is the backward pass.
pub fn dropout(gpu: &Gpu, params: &Arc<wgpu::Buffer>, input: &Tensor, out: &Tensor) -> Launch {
    flat(gpu, "dropout", Kernel::Dropout, params, &[input, out])
}

/// The keep-mask (1 kept, 0 dropped) the same parameters produce, for checking on the host.
#[cfg(any(test, feature = "testing"))]
pub fn dropout_mask(gpu: &Gpu, params: &Arc<wgpu::Buffer>, scratch_in: &Tensor, mask: &Tensor) -> Launch {
    flat(gpu, "dropout_mask", Kernel::DropoutMask, params, &[scratch_in, mask])
}
