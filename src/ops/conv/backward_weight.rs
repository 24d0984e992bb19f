//! The weight gradient dw from dy and x, summed over the batch (split into slices where that
//! fills the device): which kernel runs a shape (`backward_weight`) and the launcher of each.

use super::*;

/// How many batch slices the weight gradient's reduction is split into: enough invocations
/// to fill the device, each slice still a long reduction.
pub fn weight_grad_splits(s: &ConvShape) -> usize {
    weight_grad_splits_for(s, Tile::for_backward_weight(s.cog(), s.cig() * s.k * s.k))
}

pub(super) fn weight_grad_splits_for(s: &ConvShape, tile: Tile) -> usize {
    splits_to_fill(s, tile, tile.grid(s.cog(), s.cig() * s.k * s.k, s.groups))
}

/// The batch slices that bring a weight-gradient launch whose unsplit grid is `grid` to about
/// 512 invocations, each slice still summing over 256 pixels or more.
pub(super) fn splits_to_fill(s: &ConvShape, tile: Tile, grid: [u32; 3]) -> usize {
    let invocations = (grid[0] * tile.wg * grid[1] * grid[2]) as usize;
    let max_by_work = (s.n * s.oh() * s.ow() / 256).max(1);
    (512 / invocations.max(1)).clamp(1, s.n).min(max_by_work)
}

/// dw[cout, cin/groups, k, k] = sum over the batch of dy * x. When the reduction is split,
/// partial sums go to a scratch tensor (allocated here, kept alive by the launches' bind
/// groups) and a second launch adds them in a fixed order.
pub fn backward_weight(gpu: &Gpu, s: &ConvShape, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Vec<Launch> {
    if let Some(d) = dense(s) {
        return vec![dense::backward_weight(gpu, d, dy, x, dw)];
    }
    if pointwise(s).is_some() && s.cin.is_multiple_of(4) && s.cout.is_multiple_of(4) {
        return backward_weight_pointwise(gpu, s, dy, x, dw);
    }
    if depthwise(s) {
        return backward_weight_depthwise(gpu, s, dy, x, dw);
    }
    if tiny_map(s) {
        return backward_weight_tiny(gpu, s, dy, x, dw);
    }
    // benches/tiles.rs: with 16 or more output channels per group, turning the roles around
    // (lanes over output channels) wins on maps of up to 4 output pixels (2.3x at 1x1 with
    // all nine taps per lane, 1.4x at 2x2 with one), loses on larger maps (8x8: 16 x 8 tiles
    // of the plain kernel are 1.3x faster) and for 1x1 convs.
    if s.k > 1 && s.cog() >= 16 && s.oh() * s.ow() <= 4 {
        if s.k == 3 {
            return backward_weight_3x3(gpu, s, Tile { tm: 4, nv: 1, wg: 8 }, dy, x, dw);
        }
        return backward_weight_by_tap(gpu, s, Tile { tm: 2, nv: 2, wg: 8 }, dy, x, dw);
    }
    // benches/shares.rs: 3x3 stride 1 on maps whose width comes in fours runs straight from
    // NCHW in four-pixel runs at 2x the NHWC kernel below (with its copies) on 96->96 g6 at
    // 8x8, as fast as the best GEMM; 4 x 2 per lane beats 8 x 1 (0.95x), 5 x 2 (0.88x), 4 x 3
    // (0.8x) and 8 x 2 (0.4x: too many accumulators).
    if row_runs(s) {
        return backward_weight_rows(gpu, s, Tile { tm: 4, nv: 2, wg: 8 }, dy, x, dw);
    }
    // benches/tiles.rs bwd_w_dyt: with dy transposed (four output channels per load), 8 x 8
    // tiles (8 x 4 below 64 columns) run 1.5-1.9x faster than the plain kernel's default
    // tile on SPGNet's 3x3 shapes with more than 4 output pixels (the stem's first conv, 27
    // columns, about as fast).
    // With x in NHWC as well (four input channels of one tap per load), 8 x 8 tiles gain
    // another 1.2x on the stride-1 shapes and the stem's second conv, but lose on stage 1's
    // grouped stride-2 conv (the x copy is four times the pixels used), which keeps dy alone.
    // 16 x 8 from 16 output channels per group: at 56x56 input, batch 64, the 1x1 convs on 7x7
    // maps 4.25-4.29 -> 3.44-3.61 ms (96->96) and 2.19-2.22 -> 1.85-1.97 (96->48), the stem's
    // second conv 4.7-4.8 -> 4.4-4.5; with 8 per group (stage 1's 3x3) 1.6x slower.
    if s.cog().is_multiple_of(4) && s.cog() >= 8 {
        if s.cig().is_multiple_of(4) && (s.stride == 1 || s.groups == 1) {
            let tm = if s.cog() >= 16 { 16 } else { 8 };
            return backward_weight_nhwc(gpu, s, Tile { tm, nv: 2, wg: 8 }, dy, x, dw);
        }
        let tile = Tile { tm: 8, nv: if s.cig() * s.k * s.k >= 64 { 2 } else { 1 }, wg: 8 };
        return backward_weight_dyt(gpu, s, tile, dy, x, dw);
    }
    backward_weight_tiled(gpu, s, Tile::for_backward_weight(s.cog(), s.cig() * s.k * s.k), dy, x, dw)
}

/// The weight gradient with lanes over output channels and the tap uniform (see the shader's
/// backward_weight_by_tap); tile.tm rows per lane, 4 * tile.nv input channels per workgroup.
pub fn backward_weight_by_tap(gpu: &Gpu, s: &ConvShape, tile: Tile, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Vec<Launch> {
    let kk = s.k * s.k;
    let grid_for = |splits: usize| {
        [(s.cog() as u32).div_ceil(tile.tm * tile.wg), (kk * s.cig().div_ceil(tile.cols() as usize)) as u32, (s.groups * splits) as u32]
    };
    let splits = splits_to_fill(s, tile, grid_for(1));
    split_weight_grad(gpu, s, BackwardWeightKernel::BackwardWeightByTap, tile, splits, grid_for, dy, x, dw)
}

/// The weight gradient of a 3x3 conv with all nine taps in each lane (see the shader's
/// backward_weight_3x3); tile.tm output channels per lane, 4 * tile.nv input channels per workgroup.
pub fn backward_weight_3x3(gpu: &Gpu, s: &ConvShape, tile: Tile, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Vec<Launch> {
    assert_eq!(s.k, 3, "backward_weight_3x3 on a {0}x{0} kernel", s.k);
    let grid_for = |splits: usize| {
        [(s.cog() as u32).div_ceil(tile.tm * tile.wg), s.cig().div_ceil(tile.cols() as usize) as u32, (s.groups * splits) as u32]
    };
    let splits = splits_to_fill(s, tile, grid_for(1));
    split_weight_grad(gpu, s, BackwardWeightKernel::BackwardWeight3x3, tile, splits, grid_for, dy, x, dw)
}

/// The weight gradient of a 3x3 conv on row runs (row_runs: stride 1 with the width in fours,
/// or stride 2 with the input twice as wide as the output), straight from NCHW (the shader's
/// backward_weight_rows*): tile.tm output channels x tile.nv input channels x nine taps per
/// lane. The lanes run over input channels where a group's fill a workgroup's, else (always
/// with stride 2) over batch slices (`by_slice`).
pub fn backward_weight_rows(gpu: &Gpu, s: &ConvShape, tile: Tile, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Vec<Launch> {
    assert!(row_runs(s), "backward_weight_rows: {s:?} is not 3x3 on row runs");
    let (row_tiles, channel_tiles) = ((s.cog() as u32).div_ceil(tile.tm), (s.cig() as u32).div_ceil(tile.nv));
    let by_slice = s.stride == 2 || (channel_tiles < tile.wg && s.n >= tile.wg as usize);
    if by_slice {
        // about 512 lanes, the slices in eights where the batch allows (whole workgroups)
        let tiles = (row_tiles * channel_tiles) as usize * s.groups;
        let splits = (512usize.div_ceil(tiles).next_multiple_of(8)).min(s.n);
        let grid_for = |splits: usize| [(splits as u32).div_ceil(tile.wg), row_tiles, s.groups as u32 * channel_tiles];
        let kernel = match s.stride {
            1 => BackwardWeightKernel::BackwardWeightRowsBySlice,
            _ => BackwardWeightKernel::BackwardWeightRowsS2BySlice,
        };
        return split_weight_grad(gpu, s, kernel, tile, splits, grid_for, dy, x, dw);
    }
    let grid_for = |splits: usize| [channel_tiles.div_ceil(tile.wg), row_tiles, (s.groups * splits) as u32];
    let splits = splits_to_fill(s, tile, grid_for(1));
    split_weight_grad(gpu, s, BackwardWeightKernel::BackwardWeightRows, tile, splits, grid_for, dy, x, dw)
}

/// The weight gradient reading dy transposed image by image to `[n][pixel][cout]`, four
/// output channels per load (the shader's backward_weight_dyt; output channels per group and
/// tile rows in fours).
pub fn backward_weight_dyt(gpu: &Gpu, s: &ConvShape, tile: Tile, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Vec<Launch> {
    assert!(s.cog().is_multiple_of(4) && tile.tm.is_multiple_of(4), "backward_weight_dyt: {s:?} with {tile:?} is not in fours");
    let (dyt, transpose) = transposed_each(gpu, (s.n, s.cout, s.oh() * s.ow()), dy, "conv output gradient, NHWC");
    let (rows, cols) = (s.cog(), s.cig() * s.k * s.k);
    let mut launches = vec![transpose];
    launches.extend(split_weight_grad(
        gpu,
        s,
        BackwardWeightKernel::BackwardWeightDyt,
        tile,
        weight_grad_splits_for(s, tile),
        |splits| tile.grid(rows, cols, s.groups * splits),
        &dyt,
        x,
        dw,
    ));
    launches
}

/// The weight gradient reading both dy and x in NHWC, four channels per load each (the
/// shader's backward_weight_nhwc; output and input channels per group and tile rows in fours).
pub fn backward_weight_nhwc(gpu: &Gpu, s: &ConvShape, tile: Tile, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Vec<Launch> {
    assert!(
        s.cog().is_multiple_of(4) && s.cig().is_multiple_of(4) && tile.tm.is_multiple_of(4),
        "backward_weight_nhwc: {s:?} with {tile:?} is not in fours"
    );
    let (dyt, ldy) = transposed_each(gpu, (s.n, s.cout, s.oh() * s.ow()), dy, "conv output gradient, NHWC");
    let (xt, lx) = transposed_each(gpu, (s.n, s.cin, s.h * s.w), x, "conv input, NHWC");
    let (rows, cols) = (s.cog(), s.cig() * s.k * s.k);
    let mut launches = vec![ldy, lx];
    launches.extend(split_weight_grad(
        gpu,
        s,
        BackwardWeightKernel::BackwardWeightNhwc,
        tile,
        weight_grad_splits_for(s, tile),
        |splits| tile.grid(rows, cols, s.groups * splits),
        &dyt,
        &xt,
        dw,
    ));
    launches
}

pub fn backward_weight_tiled(gpu: &Gpu, s: &ConvShape, tile: Tile, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Vec<Launch> {
    let (rows, cols) = (s.cog(), s.cig() * s.k * s.k);
    split_weight_grad(
        gpu,
        s,
        BackwardWeightKernel::BackwardWeight,
        tile,
        weight_grad_splits_for(s, tile),
        |splits| tile.grid(rows, cols, s.groups * splits),
        dy,
        x,
        dw,
    )
}

/// The weight-gradient launch over `splits` batch slices, plus the fixed-order sum of the
/// partial results when there is more than one.
pub(super) fn split_weight_grad(
    gpu: &Gpu,
    s: &ConvShape,
    kernel: BackwardWeightKernel,
    tile: Tile,
    splits: usize,
    grid_for: impl Fn(usize) -> [u32; 3],
    dy: &Tensor,
    x: &Tensor,
    dw: &Tensor,
) -> Vec<Launch> {
    let n_per = s.n.div_ceil(splits);
    let splits = s.n.div_ceil(n_per);
    let p = params(gpu, s, splits, n_per);
    let grid = grid_for(splits);
    if splits == 1 {
        let mut l = gpu.launch("conv.backward_weight", &spec(tile, kernel), &p, &[dy, x, dw], grid);
        l.flops = 2.0 * s.macs();
        return vec![l];
    }
    let partial = gpu.zeros(&[splits, dw.len()], "conv.weight_grad_partial");
    let mut l = gpu.launch("conv.backward_weight", &spec(tile, kernel), &p, &[dy, x, &partial], grid);
    l.flops = 2.0 * s.macs();
    let sum = gpu.launch(
        "conv.sum_splits",
        &spec(FLAT_TILE, BackwardWeightKernel::SumSplits),
        &p,
        &[&partial, dw],
        grid_1d(dw.len(), FLAT_TILE.wg),
    );
    vec![l, sum]
}
