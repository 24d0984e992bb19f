//! Global average pooling and k x k max / average pooling (shaders/pool.wgsl).

use crate::gpu::{grid_1d, Access, Gpu, KernelSpec, Launch, Tensor};
use Access::{Read, ReadWrite};

const SOURCE: &str = include_str!("../../shaders/pool.wgsl");

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

fn spec(entry: &'static str) -> KernelSpec {
    let bindings: &'static [Access] = match entry {
        "gap_forward" | "gap_backward" | "avgpool_forward" | "avgpool_backward" => &[Read, ReadWrite],
        "maxpool_forward" => &[Read, ReadWrite, ReadWrite],
        "maxpool_backward" => &[Read, Read, ReadWrite],
        _ => unreachable!("no pool kernel {entry}"),
    };
    KernelSpec::new("pool.wgsl", SOURCE, entry, bindings)
}

pub fn kernels() -> Vec<KernelSpec> {
    ["gap_forward", "gap_backward", "maxpool_forward", "maxpool_backward", "avgpool_forward", "avgpool_backward"]
        .into_iter()
        .map(spec)
        .collect()
}

fn launch(gpu: &Gpu, entry: &'static str, s: &PoolShape, tensors: &[&Tensor], len: usize) -> Launch {
    let (oh, ow) = if s.k == 0 { (1, 1) } else { (s.oh(), s.ow()) };
    let v = [s.n, s.c, s.h, s.w, oh, ow, s.k, s.stride, s.pad, 0, 0, 0].map(|x| x as u32);
    gpu.launch(entry, &spec(entry), &gpu.params(&v), tensors, grid_1d(len, 64))
}

/// y[n, c] = mean of x[n, c, :, :]
pub fn gap_forward(gpu: &Gpu, s: &PoolShape, x: &Tensor, y: &Tensor) -> Launch {
    launch(gpu, "gap_forward", s, &[x, y], s.n * s.c)
}

pub fn gap_backward(gpu: &Gpu, s: &PoolShape, dy: &Tensor, dx: &Tensor) -> Launch {
    launch(gpu, "gap_backward", s, &[dy, dx], s.n * s.c * s.h * s.w)
}

/// Max pooling; `argmax` (u32 plane index per output) is kept for the backward pass.
pub fn maxpool_forward(gpu: &Gpu, s: &PoolShape, x: &Tensor, y: &Tensor, argmax: &Tensor) -> Launch {
    launch(gpu, "maxpool_forward", s, &[x, y, argmax], s.n * s.c * s.oh() * s.ow())
}

pub fn maxpool_backward(gpu: &Gpu, s: &PoolShape, dy: &Tensor, argmax: &Tensor, dx: &Tensor) -> Launch {
    launch(gpu, "maxpool_backward", s, &[dy, argmax, dx], s.n * s.c * s.h * s.w)
}

/// Average pooling, padding counted in the divisor (PyTorch's count_include_pad=True).
pub fn avgpool_forward(gpu: &Gpu, s: &PoolShape, x: &Tensor, y: &Tensor) -> Launch {
    launch(gpu, "avgpool_forward", s, &[x, y], s.n * s.c * s.oh() * s.ow())
}

pub fn avgpool_backward(gpu: &Gpu, s: &PoolShape, dy: &Tensor, dx: &Tensor) -> Launch {
    launch(gpu, "avgpool_backward", s, &[dy, dx], s.n * s.c * s.h * s.w)
}
