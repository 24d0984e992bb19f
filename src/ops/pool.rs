//! Global average pooling and k x k max / average pooling (shaders/pool.wgsl).

use crate::gpu::{grid_1d, Gpu, KernelSpec, Launch, Source, Tensor};

const SOURCE: Source =
    Source { file: "pool.wgsl", text: concat!(include_str!("../../shaders/pool.wgsl"), "\n", include_str!("../../shaders/flat.wgsl")) };

crate::kernel_table! {
    /// The entry points of pool.wgsl. SPGNet pools globally; the windowed pools are kept
    /// (tested against the reference) for the models that use them, not launched by the network.
    pub enum Kernel in SOURCE {
        GapForward = "gap_forward" [Read, ReadWrite],
        GapBackward = "gap_backward" [Read, ReadWrite],
        MaxpoolForward = "maxpool_forward" [Read, ReadWrite, ReadWrite],
        MaxpoolBackward = "maxpool_backward" [Read, Read, ReadWrite],
        AvgpoolForward = "avgpool_forward" [Read, ReadWrite],
        AvgpoolBackward = "avgpool_backward" [Read, ReadWrite],
    }
}

/// The shader's `Pool` uniform.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PoolParams {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    k: u32,
    stride: u32,
    pad: u32,
    _pad: [u32; 3],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolShape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl PoolShape {
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    /// Global pooling: one window over the whole map.
    pub fn global(n: usize, c: usize, h: usize, w: usize) -> PoolShape {
        PoolShape { n, c, h, w, k: 0, stride: 1, pad: 0 }
    }
}

fn launch(gpu: &Gpu, kernel: Kernel, s: &PoolShape, tensors: &[&Tensor], len: usize) -> Launch {
    let (oh, ow) = if s.k == 0 { (1, 1) } else { (s.oh(), s.ow()) };
    let [n, c, h, w, oh, ow, k, stride, pad] = [s.n, s.c, s.h, s.w, oh, ow, s.k, s.stride, s.pad].map(|x| x as u32);
    let p = gpu.params(&PoolParams { n, c, h, w, oh, ow, k, stride, pad, _pad: [0; 3] });
    gpu.launch(format!("pool.{}", crate::gpu::Entry::name(kernel)), &KernelSpec::of(kernel), &p, tensors, grid_1d(len, 64))
}

/// y[n, c] = mean of x[n, c, :, :]
pub fn gap_forward(gpu: &Gpu, s: &PoolShape, x: &Tensor, y: &Tensor) -> Launch {
    launch(gpu, Kernel::GapForward, s, &[x, y], s.n * s.c)
}

pub fn gap_backward(gpu: &Gpu, s: &PoolShape, dy: &Tensor, dx: &Tensor) -> Launch {
    launch(gpu, Kernel::GapBackward, s, &[dy, dx], s.n * s.c * s.h * s.w)
}

/// Max pooling; `argmax` (u32 plane index per output) is kept for the backward pass.
#[cfg(any(test, feature = "testing"))]
pub fn maxpool_forward(gpu: &Gpu, s: &PoolShape, x: &Tensor, y: &Tensor, argmax: &Tensor) -> Launch {
    launch(gpu, Kernel::MaxpoolForward, s, &[x, y, argmax], s.n * s.c * s.oh() * s.ow())
}

#[cfg(any(test, feature = "testing"))]
pub fn maxpool_backward(gpu: &Gpu, s: &PoolShape, dy: &Tensor, argmax: &Tensor, dx: &Tensor) -> Launch {
    launch(gpu, Kernel::MaxpoolBackward, s, &[dy, argmax, dx], s.n * s.c * s.h * s.w)
}

/// Average pooling, padding counted in the divisor (PyTorch's count_include_pad=True).
#[cfg(any(test, feature = "testing"))]
pub fn avgpool_forward(gpu: &Gpu, s: &PoolShape, x: &Tensor, y: &Tensor) -> Launch {
    launch(gpu, Kernel::AvgpoolForward, s, &[x, y], s.n * s.c * s.oh() * s.ow())
}

#[cfg(any(test, feature = "testing"))]
pub fn avgpool_backward(gpu: &Gpu, s: &PoolShape, dy: &Tensor, dx: &Tensor) -> Launch {
    launch(gpu, Kernel::AvgpoolBackward, s, &[dy, dx], s.n * s.c * s.h * s.w)
}
