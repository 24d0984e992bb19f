//! Dense products y[batch, out] = x[batch, in] w[out, in]^T with in % 4 == 0 as vec4 GEMMs:
//! the forward (with eval's BN epilogue), input gradient and weight gradient. The linear head
//! and 1x1 convs on 1x1 maps run through these (ops::conv routes them here).

use super::batchnorm::BnEval;
use super::gemm::{
    a_rows_by_subgroup, by_subgroup, by_uniform_row_blocks, matmul_bn_cols, matmul_nn4, matmul_nt4, matmul_nt4_bn, tall_tile, tn4_tile,
    transposed, transposed_weight, Batches, Columns, Strides, Tile, NT4_SG_ROWS, SG_TALL_TILE,
};
use crate::gpu::{Gpu, Launch, Tensor};

/// The dense kernels' tiles without subgroups (benches/tiles.rs dn_*, the head's 1024x1024
/// and conv_last's 384->1024 at batch 64): the forward (matmul_nt4) wants 16 rows x 8 columns
/// per lane, the two gradients (matmul_nn4) 8 x 8, 1.3-2x faster there than 16 x 8. With
/// subgroups the broadcast GEMMs take tall tiles (gemm::tall_tile, gemm::tn4_tile).
pub const DENSE_TILE: Tile = Tile { tm: 16, nv: 2, wg: 8 };
pub const DENSE_GRADIENT_TILE: Tile = Tile { tm: 8, nv: 2, wg: 8 };

/// A dense layer y[batch, out] = x[batch, in] w[out, in]^T with in % 4 == 0: its forward,
/// input gradient and weight gradient as vec4 GEMMs (a 1x1 conv on 1x1 maps is one too).
/// With subgroups the forward is matmul_nt4_sg and the input gradient matmul_nn4_sg, both
/// reading x, dy and w as they lie. Without, where batch, in and out come in fours, every one
/// of them runs as matmul_tn4 (A read as vec4s of four rows), the forward and input gradient
/// after transposing their operands (4x4-block copies, a few percent of the GEMM); otherwise
/// as matmul_nt4 / matmul_nn4.
pub fn forward(gpu: &Gpu, (batch, fin, fout): (usize, usize, usize), x: &Tensor, w: &Tensor, y: &Tensor) -> Vec<Launch> {
    // With subgroups matmul_nt4 reads x's rows through broadcasts as cheaply as matmul_tn4
    // reads a transposed copy, so no copy is made: the head's 1024 -> 1024 layer (forward and
    // backward) 22.6-30.9 -> 16.1-17.3 ms per step in two profiled pairs.
    if ![batch, fin, fout].iter().all(|v| v % 4 == 0) || by_subgroup(gpu, DENSE_TILE, NT4_SG_ROWS) {
        return vec![matmul_nt4(gpu, tall_tile(gpu, DENSE_TILE), (batch, fout, fin), x, w, y)];
    }
    let (wt, lw) = transposed_weight(gpu, (fout, fin), w);
    if let Some(blocks) = by_uniform_row_blocks(gpu, DENSE_GRADIENT_TILE, (batch, fout, fin), x, &wt, Columns::matrix(fout), y) {
        return [vec![lw], blocks].concat();
    }
    let (xt, lx) = transposed(gpu, (batch, fin), x, "dense input transposed");
    vec![lw, lx, matmul_nn4(gpu, DENSE_GRADIENT_TILE, (batch, fout, fin), (&xt, Strides::transposed(batch)), &wt, Columns::matrix(fout), y)]
}

/// Eval: y = BN(x w^T) (+ ReLU) with BN per output channel (column), reading a transposed
/// copy of w (the transpose is marked `weight_layout`: eval graphs run it once per change of
/// the weights) and, where the batch comes in fours, a transposed x (matmul_tn4_bn_cols);
/// with subgroups neither: matmul_nt4_bn_sg reads x and w as they lie.
pub fn forward_bn(gpu: &Gpu, (batch, fin, fout): (usize, usize, usize), x: &Tensor, w: &Tensor, bn: &BnEval, y: &Tensor) -> Vec<Launch> {
    // as dense_forward: with subgroups x and w are read as they lie (inference +6-12% in three
    // pairs of `spgnet bench`)
    if fout % 4 != 0 || by_subgroup(gpu, DENSE_TILE, NT4_SG_ROWS) {
        return vec![matmul_nt4_bn(gpu, tall_tile(gpu, DENSE_TILE), (batch, fout, fin), x, w, bn, y)];
    }
    let (wt, lw) = transposed_weight(gpu, (fout, fin), w);
    let mut launches = vec![lw];
    let tile = DENSE_GRADIENT_TILE;
    let xt = (batch % 4 == 0).then(|| {
        let (xt, lx) = transposed(gpu, (batch, fin), x, "dense input transposed");
        launches.push(lx);
        xt
    });
    let a = match &xt {
        Some(xt) => (xt, Strides::transposed(batch)),
        None => (x, Strides::rows(fin)),
    };
    launches.push(matmul_bn_cols(gpu, tile, (batch, fout, fin), a, &wt, bn, y));
    launches
}

/// dx[batch, in] = dy[batch, out] w[out, in]
pub fn backward_data(gpu: &Gpu, (batch, fin, fout): (usize, usize, usize), dy: &Tensor, w: &Tensor, dx: &Tensor) -> Vec<Launch> {
    // With subgroups dy's rows are read as they lie (matmul_nn4_sg), without the row blocks'
    // transposed copies: 2-3 ms less per profiled step (dense GEMMs and transposes).
    if fin % 4 == 0 && a_rows_by_subgroup(gpu, SG_TALL_TILE, fout, Strides::rows(fout), Batches::one()) {
        return vec![matmul_nn4(gpu, SG_TALL_TILE, (batch, fin, fout), (dy, Strides::rows(fout)), w, Columns::matrix(fin), dx)];
    }
    if let Some(blocks) = by_uniform_row_blocks(gpu, DENSE_GRADIENT_TILE, (batch, fin, fout), dy, w, Columns::matrix(fin), dx) {
        return blocks;
    }
    if batch % 4 == 0 && fout % 4 == 0 {
        let (dyt, l) = transposed(gpu, (batch, fout), dy, "dense output gradient transposed");
        return vec![
            l,
            matmul_nn4(gpu, DENSE_GRADIENT_TILE, (batch, fin, fout), (&dyt, Strides::transposed(batch)), w, Columns::matrix(fin), dx),
        ];
    }
    vec![matmul_nn4(gpu, DENSE_GRADIENT_TILE, (batch, fin, fout), (dy, Strides::rows(fout)), w, Columns::matrix(fin), dx)]
}

/// dw[out, in] = dy[batch, out]^T x[batch, in]
pub fn backward_weight(gpu: &Gpu, (batch, fin, fout): (usize, usize, usize), dy: &Tensor, x: &Tensor, dw: &Tensor) -> Launch {
    // dy is read as row quads (matmul_tn4)
    matmul_nn4(
        gpu,
        tn4_tile(gpu, fout, DENSE_GRADIENT_TILE),
        (fout, fin, batch),
        (dy, Strides::transposed(fout)),
        x,
        Columns::matrix(fin),
        dw,
    )
}
