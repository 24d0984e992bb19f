//! Convs on tiny maps as dense GEMMs per group (see `tiny_map`).

use super::*;
use crate::ops::batchnorm::BnEval;
use crate::ops::gemm::SG_TALL_TILE;

/// Convs on tiny maps (at most 16 input and 4 output pixels: SPGNet's 2x2 stage and the
/// stride-2 convs into 1x1) run as dense GEMMs per group: such a conv is the matrix
/// Wt[(co, op), (ci, q)] = w[co, ci, tap joining output pixel op to input pixel q] (0 where
/// no tap does) applied to each image's (channel, pixel) vector. A small kernel expands Wt
/// from w before each use; the weight gradient is dWt folded back onto the taps. The taps
/// that only see padding (5 of 9 per pixel at 2x2) then cost nothing, and the vec4 GEMMs
/// run near the adapter's best. Used where at least half of Wt is live taps and the
/// channels per group (4 or more) fill the vec4s.
pub fn tiny_map(s: &ConvShape) -> bool {
    let (hw, ohw) = (s.h * s.w, s.oh() * s.ow());
    if s.k == 1 || hw > 16 || ohw > 4 || hw % 4 != 0 || s.cig() < 4 {
        return false;
    }
    let live = (0..ohw).map(|op| (0..s.k * s.k).filter(|&t| tiny_input_pixel(s, op, t).is_some()).count()).sum::<usize>();
    2 * live >= hw * ohw
}

/// The input pixel that tap t of output pixel op reads (None: padding).
pub(super) fn tiny_input_pixel(s: &ConvShape, op: usize, t: usize) -> Option<usize> {
    let qy = ((op / s.ow()) * s.stride + t / s.k) as isize - s.pad() as isize;
    let qx = ((op % s.ow()) * s.stride + t % s.k) as isize - s.pad() as isize;
    // then, not then_some: the index of a padding tap would overflow (a panic in debug builds)
    (qy >= 0 && qy < s.h as isize && qx >= 0 && qx < s.w as isize).then(|| qy as usize * s.w + qx as usize)
}

/// Tiles of the tiny-map GEMMs without subgroups (64 x 64 x 64 per group in stage 2 at batch
/// 64), the best of six tried on that shape in benches/kernels.rs (16x8 was 1.2-1.6x slower
/// in every direction). With subgroups the broadcast GEMMs' tall tiles (gemm::SG_TALL_TILE,
/// gemm::tn4_tile): on stage 2's 96 channels in 6 groups at 2x2, the forward 1.1x, the
/// input gradient 1.3-1.6x, the weight gradient 2x (three runs of each tile).
pub const TINY_FORWARD_TILE: Tile = Tile { tm: 8, nv: 2, wg: 8 };

pub const TINY_GRADIENT_TILE: Tile = Tile { tm: 4, nv: 2, wg: 8 };

/// The sizes of a tiny-map conv's Wt: pixels in (hw) and out (ohw), and rows (cog * ohw) and
/// columns (cig * hw) of each group's block.
pub(super) struct TinyDims {
    hw: usize,
    ohw: usize,
    rows: usize,
    cols: usize,
}

pub(super) fn tiny_dims(s: &ConvShape) -> TinyDims {
    let (hw, ohw) = (s.h * s.w, s.oh() * s.ow());
    TinyDims { hw, ohw, rows: s.cog() * ohw, cols: s.cig() * hw }
}

/// Wt (see tiny_map) of one layer, expanded from w by the returned launch.
pub(super) fn expand_tiny(gpu: &Gpu, s: &ConvShape, w: &Tensor) -> (Tensor, Launch) {
    let d = tiny_dims(s);
    let wt = gpu.zeros(&[s.groups * d.rows, d.cols], "conv weights as a matrix (tiny map)");
    let mut l = gpu.launch(
        "conv.expand_tiny",
        &spec(FLAT_TILE, TinyKernel::ExpandTiny),
        &params(gpu, s, 1, s.n),
        &[w, &wt],
        grid_1d(s.cout * s.cig(), FLAT_TILE.wg),
    );
    l.weight_layout = true; // eval graphs expand once per change of the weights
    (wt, l)
}

/// The tiny-map forward: y[n, (g, co, op)] = sum over (ci, q) of Wt[(g, co, op), (ci, q)]
/// x[n, (g, ci, q)], an nt4 GEMM per group with the images as rows; BN in the epilogue in eval.
pub fn forward_tiny(gpu: &Gpu, s: &ConvShape, sl: Slices, x: &Tensor, w: &Tensor, bn: Option<&BnEval>, y: &Tensor) -> Vec<Launch> {
    forward_tiny_sharing(gpu, s, sl, x, w, bn, y).0
}

/// forward_tiny, also returning its Wt for the input gradient of the same step.
pub(super) fn forward_tiny_sharing(
    gpu: &Gpu,
    s: &ConvShape,
    sl: Slices,
    x: &Tensor,
    w: &Tensor,
    bn: Option<&BnEval>,
    y: &Tensor,
) -> (Vec<Launch>, Tensor) {
    use super::super::gemm::{matmul_nt4_strided, Batches};
    let TinyDims { hw, ohw, rows, cols } = tiny_dims(s);
    let (wt, expand) = expand_tiny(gpu, s, w);
    let z = Batches {
        count: s.groups,
        a_z: cols,
        b_z: rows * cols,
        c_z: rows,
        a_off: sl.x_first * hw,
        c_off: sl.y_first * ohw,
        accumulate: false,
    };
    let bn = bn.map(|bn| (bn, ohw));
    let tile = tall_tile(gpu, TINY_FORWARD_TILE);
    let mut l = matmul_nt4_strided(gpu, tile, (s.n, rows, cols), (x, sl.x_channels * hw), (&wt, cols), (y, sl.y_channels * ohw), z, bn);
    l.label = if bn.is_some() { "conv.tiny.forward_bn" } else { "conv.tiny.forward" }.into();
    l.flops = 2.0 * s.macs();
    (vec![expand, l], wt)
}

/// The tiny-map input gradient: dx[n, (g, ci, q)] = sum over (co, op) of
/// dy[n, (g, co, op)] Wt[(g, co, op), (ci, q)], an nn4 GEMM per group. Reads `shared` (the
/// Wt that this step's forward expanded, see forward_sharing) where given, else expands w.
pub fn backward_data_tiny(gpu: &Gpu, s: &ConvShape, dy: &Tensor, w: &Tensor, shared: Option<&Tensor>, dx: &Tensor) -> Vec<Launch> {
    use super::super::gemm::{matmul_nn4_batched, Batches, Columns, Strides};
    let TinyDims { hw, ohw, rows, cols } = tiny_dims(s);
    let (wt, expand) = match shared {
        Some(wt) => (wt.clone(), None),
        None => {
            let (wt, l) = expand_tiny(gpu, s, w);
            (wt, Some(l))
        }
    };
    let z = Batches { count: s.groups, a_z: rows, b_z: rows * cols, c_z: cols, a_off: 0, c_off: 0, accumulate: false };
    let layout = Columns { hw: cols, b_row: cols, b_img: 0, c_row: s.cin * hw, c_img: 0 };
    // the tall tile where dy's rows come through subgroup broadcasts (matmul_nn4_sg)
    let a = Strides::rows(s.cout * ohw);
    let tile = if a_rows_by_subgroup(gpu, SG_TALL_TILE, rows, a, z) { SG_TALL_TILE } else { TINY_GRADIENT_TILE };
    let mut l = matmul_nn4_batched(gpu, tile, (s.n, cols, rows), (dy, a), &wt, layout, z, dx);
    l.label = "conv.tiny.backward_data".into();
    l.flops = 2.0 * s.macs();
    expand.into_iter().chain([l]).collect()
}

/// The tiny-map weight gradient: dWt[(g, co, op), (ci, q)] = sum over the batch of
/// dy[n, (g, co, op)] x[n, (g, ci, q)] (an nn4 GEMM per group), folded onto the taps.
pub fn backward_weight_tiny(gpu: &Gpu, s: &ConvShape, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Vec<Launch> {
    use super::super::gemm::{matmul_nn4_batched, Batches, Columns, Strides};
    let TinyDims { hw, ohw, rows, cols } = tiny_dims(s);
    let dwt = gpu.zeros(&[s.groups * rows, cols], "conv weight gradient as a matrix (tiny map)");
    let z = Batches { count: s.groups, a_z: rows, b_z: cols, c_z: rows * cols, a_off: 0, c_off: 0, accumulate: false };
    let layout = Columns { hw: cols, b_row: s.cin * hw, b_img: 0, c_row: cols, c_img: 0 };
    // dy read as row quads (matmul_tn4)
    let tile = tn4_tile(gpu, rows, TINY_GRADIENT_TILE);
    let mut l = matmul_nn4_batched(gpu, tile, (rows, cols, s.n), (dy, Strides::transposed(s.cout * ohw)), x, layout, z, &dwt);
    l.label = "conv.tiny.backward_weight".into();
    l.flops = 2.0 * s.macs();
    let fold = gpu.launch(
        "conv.fold_tiny",
        &spec(FLAT_TILE, TinyKernel::FoldTiny),
        &params(gpu, s, 1, s.n),
        &[&dwt, dw],
        grid_1d(s.cout * s.cig(), FLAT_TILE.wg),
    );
    vec![l, fold]
}
