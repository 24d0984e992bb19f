//! Matrix multiply (shaders/matmul.wgsl, the plain GEMM) and the linear layer.

use super::conv::{self, ConvShape, Tile};
use crate::gpu::{Access, Gpu, KernelSpec, Launch, Tensor};
use Access::{Read, ReadWrite};

const SOURCE: &str = include_str!("../../shaders/matmul.wgsl");
const BINDINGS: &[Access] = &[Read, Read, ReadWrite];

pub fn kernels() -> Vec<KernelSpec> {
    vec![Tile { tm: 4, nv: 1, wg: 8 }.spec("matmul.wgsl", SOURCE, "matmul", BINDINGS)]
}

/// How a matrix operand is addressed: element (r, c) is at r * row + c * col.
#[derive(Clone, Copy, Debug)]
pub struct Strides {
    pub row: usize,
    pub col: usize,
}

impl Strides {
    /// Row-major [rows, cols].
    pub fn rows(cols: usize) -> Strides {
        Strides { row: cols, col: 1 }
    }
    /// The transpose of a row-major [cols, rows] matrix.
    pub fn transposed(rows: usize) -> Strides {
        Strides { row: 1, col: rows }
    }
}

/// c[m, n] (row-major) = a[m, k] * b[k, n], with a given tile (benchmarks try several).
pub fn matmul_tiled(gpu: &Gpu, tile: Tile, (m, n, k): (usize, usize, usize), a: (&Tensor, Strides), b: (&Tensor, Strides), c: &Tensor) -> Launch {
    let v = [m, n, k, a.1.row, a.1.col, b.1.row, b.1.col, 0].map(|x| x as u32);
    let spec = tile.spec("matmul.wgsl", SOURCE, "matmul", BINDINGS);
    let mut l = gpu.launch("matmul", &spec, &gpu.params(&v), &[a.0, b.0, c], tile.grid(m, n, 1));
    l.flops = 2.0 * (m * n * k) as f64;
    l
}

pub fn matmul(gpu: &Gpu, mnk: (usize, usize, usize), a: (&Tensor, Strides), b: (&Tensor, Strides), c: &Tensor) -> Launch {
    matmul_tiled(gpu, Tile::for_gemm(mnk.0, mnk.1), mnk, a, b, c)
}

/// A linear layer is a 1x1 convolution on 1x1 maps: the conv kernels (weights as uniform
/// rows, the batch as columns) run it about twice as fast as the strided matmul on lavapipe.
fn as_conv(batch: usize, fin: usize, fout: usize) -> ConvShape {
    ConvShape { n: batch, cin: fin, h: 1, w: 1, cout: fout, groups: 1, k: 1, stride: 1 }
}

/// y[batch, out] = x[batch, in] * w[out, in]^T  (no bias)
pub fn forward(gpu: &Gpu, x: &Tensor, w: &Tensor, y: &Tensor) -> Launch {
    let s = as_conv(x.shape[0], x.shape[1], w.shape[0]);
    conv::forward(gpu, &s, &x.reshape(&s.input_shape()), &w.reshape(&s.weight_shape()), &y.reshape(&s.output_shape()))
}

/// Eval: y = BN1d(x w^T) (+ ReLU) in one pass (see conv::forward_bn).
pub fn forward_bn(gpu: &Gpu, x: &Tensor, w: &Tensor, bn: &conv::BnEval, y: &Tensor) -> Launch {
    let s = as_conv(x.shape[0], x.shape[1], w.shape[0]);
    let (xs, ws, ys) = (x.reshape(&s.input_shape()), w.reshape(&s.weight_shape()), y.reshape(&s.output_shape()));
    conv::forward_bn(gpu, &s, conv::Slices::whole(&s), &xs, &ws, bn, &ys)
}

/// dx[batch, in] = dy[batch, out] * w[out, in]
pub fn backward_data(gpu: &Gpu, dy: &Tensor, w: &Tensor, dx: &Tensor) -> Launch {
    let s = as_conv(dy.shape[0], w.shape[1], w.shape[0]);
    conv::backward_data(gpu, &s, &dy.reshape(&s.output_shape()), &w.reshape(&s.weight_shape()), &dx.reshape(&s.input_shape()))
}

/// dw[out, in] = dy[batch, out]^T * x[batch, in] (split over the batch when it is long)
pub fn backward_weight(gpu: &Gpu, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Vec<Launch> {
    let s = as_conv(dy.shape[0], x.shape[1], dy.shape[1]);
    conv::backward_weight(gpu, &s, &dy.reshape(&s.output_shape()), &x.reshape(&s.input_shape()), &dw.reshape(&s.weight_shape()))
}
