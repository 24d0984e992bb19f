//! Matrix multiply and the linear layer built on it (shaders/matmul.wgsl).

use super::conv::Tile;
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

/// y[batch, out] = x[batch, in] * w[out, in]^T  (no bias)
pub fn forward(gpu: &Gpu, x: &Tensor, w: &Tensor, y: &Tensor) -> Launch {
    let (batch, fin, fout) = (x.shape[0], x.shape[1], w.shape[0]);
    matmul(gpu, (batch, fout, fin), (x, Strides::rows(fin)), (w, Strides::transposed(fin)), y)
}

/// dx[batch, in] = dy[batch, out] * w[out, in]
pub fn backward_data(gpu: &Gpu, dy: &Tensor, w: &Tensor, dx: &Tensor) -> Launch {
    let (batch, fout, fin) = (dy.shape[0], w.shape[0], w.shape[1]);
    matmul(gpu, (batch, fin, fout), (dy, Strides::rows(fout)), (w, Strides::rows(fin)), dx)
}

/// dw[out, in] = dy[batch, out]^T * x[batch, in]
pub fn backward_weight(gpu: &Gpu, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Launch {
    let (batch, fout, fin) = (dy.shape[0], dy.shape[1], x.shape[1]);
    matmul(gpu, (fout, fin, batch), (dy, Strides::transposed(fout)), (x, Strides::rows(fin)), dw)
}
