//! 1x1 convs (stride 1, no groups) as GEMMs whose columns are the pixels of each image: the
//! forward, input gradient and weight gradient, read as vec4s by ops::gemm.

use super::*;
use crate::ops::batchnorm::BnEval;

/// Without subgroups (benches/tiles.rs pw_*): 8 rows x 8 pixels per lane was the best of
/// seven tiles for the 1x1 convs of stages 1 and 2 (1.2-1.6x over the scalar conv kernels'
/// best there). With subgroups the forward and weight gradient take gemm::tall_tile, the input
/// gradient (the weights read as row quads over the cin rows) gemm::tn4_tile.
pub const POINTWISE_TILE: Tile = Tile { tm: 8, nv: 2, wg: 8 };

/// The pointwise forward: y[n, co, p] = sum over ci of w[co, ci] x[n, ci, p]. With channels
/// in fours it reads a transposed copy of w (matmul_tn4: 4x fewer loads of the weights); the
/// transpose is a `weight_layout` launch, which eval graphs run once per change of the weights.
pub fn forward_pointwise(gpu: &Gpu, s: &ConvShape, tile: Tile, x: &Tensor, w: &Tensor, y: &Tensor) -> Vec<Launch> {
    pointwise_forward_launches(gpu, s, tile, x, w, None, y)
}

/// Eval: the pointwise forward with BN (+ ReLU) applied per output channel.
pub fn forward_pointwise_bn(gpu: &Gpu, s: &ConvShape, tile: Tile, x: &Tensor, w: &Tensor, bn: &BnEval, y: &Tensor) -> Vec<Launch> {
    pointwise_forward_launches(gpu, s, tile, x, w, Some(bn), y)
}

pub(super) fn pointwise_forward_launches(
    gpu: &Gpu,
    s: &ConvShape,
    tile: Tile,
    x: &Tensor,
    w: &Tensor,
    bn: Option<&BnEval>,
    y: &Tensor,
) -> Vec<Launch> {
    use super::super::gemm::{a_rows_by_subgroup, matmul_nn4, matmul_nn4_bn, transposed_weight, Batches, Columns, Strides};
    let hw = s.h * s.w;
    let cols = Columns { hw, b_row: hw, b_img: s.cin * hw, c_row: hw, c_img: s.cout * hw };
    let mnk = (s.cout, s.n * hw, s.cin);
    let mut launches = vec![];
    // matmul_nn4_sg reads w's rows as vec4s along k as cheaply as matmul_tn4 reads the copy
    let by_subgroup = a_rows_by_subgroup(gpu, tile, s.cin, Strides::rows(s.cin), Batches::one());
    let wt = (s.cin.is_multiple_of(4) && s.cout.is_multiple_of(4) && !by_subgroup).then(|| {
        let (wt, l) = transposed_weight(gpu, (s.cout, s.cin), w);
        launches.push(l);
        wt
    });
    let a = match &wt {
        Some(wt) => (wt, Strides::transposed(s.cout)),
        None => (w, Strides::rows(s.cin)),
    };
    let mut l = match bn {
        None => matmul_nn4(gpu, tile, mnk, a, x, cols, y),
        Some(bn) => matmul_nn4_bn(gpu, tile, mnk, a, x, cols, bn, y),
    };
    l.label = if bn.is_some() { "conv1x1.forward_bn" } else { "conv1x1.forward" }.into();
    launches.push(l);
    launches
}

/// The pointwise input gradient: dx[n, ci, p] = sum over co of w[co, ci] dy[n, co, p].
pub fn backward_data_pointwise(gpu: &Gpu, s: &ConvShape, tile: Tile, dy: &Tensor, w: &Tensor, dx: &Tensor) -> Launch {
    use super::super::gemm::{matmul_nn4, Columns, Strides};
    let hw = s.h * s.w;
    let cols = Columns { hw, b_row: hw, b_img: s.cout * hw, c_row: hw, c_img: s.cin * hw };
    let mut l = matmul_nn4(gpu, tile, (s.cin, s.n * hw, s.cout), (w, Strides::transposed(s.cin)), dy, cols, dx);
    l.label = "conv1x1.backward_data".into();
    l
}

/// The pointwise weight gradient dw[co, ci] = sum over (n, p) of dy[n, co, p] x[n, ci, p]:
/// with pixels in fours straight from NCHW (matmul_nt4_images, four pixels per load);
/// otherwise dy and x transposed image by image to [n, p, channel], then matmul_tn4 over
/// k = (n, p) reading both four channels per load (the conv kernel's gathers cost 1.5-2x more).
pub fn backward_weight_pointwise(gpu: &Gpu, s: &ConvShape, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Vec<Launch> {
    use super::super::gemm::{by_uniform_k_chunks, matmul_nn4, transpose_each, transposed_each, Columns, Strides};
    let hw = s.h * s.w;
    if hw.is_multiple_of(4) {
        let mut l = matmul_nt4_images(gpu, tall_tile(gpu, POINTWISE_TILE), (s.cout, s.cin, s.n, hw), dy, x, dw);
        l.label = "conv1x1.backward_weight".into();
        return vec![l];
    }
    let len = s.n * hw * s.cout;
    let dyt = gpu.zeros_with_uniform_room(len, len, "1x1 conv output gradient, NHWC");
    let ldy = transpose_each(gpu, (s.n, s.cout, hw), dy, &dyt);
    let (xt, lx) = transposed_each(gpu, (s.n, s.cin, hw), x, "1x1 conv input, NHWC");
    let mnk = (s.cout, s.cin, s.n * hw);
    let mut gemm = by_uniform_k_chunks(gpu, POINTWISE_TILE, mnk, &dyt, &xt, dw).unwrap_or_else(|| {
        vec![matmul_nn4(gpu, POINTWISE_TILE, mnk, (&dyt, Strides::transposed(s.cout)), &xt, Columns::matrix(s.cin), dw)]
    });
    for l in &mut gemm {
        l.label = "conv1x1.backward_weight".into();
    }
    [vec![ldy, lx], gemm].concat()
}
