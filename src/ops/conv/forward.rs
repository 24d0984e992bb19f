//! The forward y = conv(x, w) (and eval's y = BN(conv(x, w)) + ReLU): which kernel runs a
//! shape (`forward_sharing`, `forward_bn`) and the launcher of each candidate.

use super::*;
use crate::ops::batchnorm::BnEval;

/// y[n, cout, oh, ow] = conv(x[n, cin, h, w], w[cout, cin/groups, k, k])
pub fn forward(gpu: &Gpu, s: &ConvShape, x: &Tensor, w: &Tensor, y: &Tensor) -> Vec<Launch> {
    forward_sharing(gpu, s, x, w, y).0
}

/// forward, also returning what backward_data_sharing can reuse (the tiny-map Wt: one
/// expand_tiny per step instead of two).
pub fn forward_sharing(gpu: &Gpu, s: &ConvShape, x: &Tensor, w: &Tensor, y: &Tensor) -> (Vec<Launch>, SharedLayout) {
    let unshared = |launches| (launches, SharedLayout(None));
    if let Some(d) = dense(s) {
        return unshared(dense::forward(gpu, d, x, w, y));
    }
    if pointwise(s).is_some() {
        return unshared(forward_pointwise(gpu, s, tall_tile(gpu, POINTWISE_TILE), x, w, y));
    }
    if depthwise(s) {
        return unshared(vec![forward_depthwise(gpu, s, Slices::whole(s), x, w, None, y)]);
    }
    if tiny_map(s) {
        let (launches, wt) = forward_tiny_sharing(gpu, s, Slices::whole(s), x, w, None, y);
        return (launches, SharedLayout(Some(wt)));
    }
    if let Some(tile) = rows_tile(gpu, s) {
        return unshared(forward_rows(gpu, s, Slices::whole(s), tile, x, w, None, y));
    }
    if let Some(tile) = forward_wt_tile(gpu, s) {
        return unshared(forward_wt(gpu, s, tile, x, w, y));
    }
    if let Some(tile) = by_pixel(s) {
        return unshared(vec![forward_by_pixel(gpu, s, tile, x, w, y)]);
    }
    unshared(vec![forward_tiled(gpu, s, Tile::for_forward(s.cog(), s.n * s.oh() * s.ow()), x, w, y)])
}

/// Eval: y = BN(conv(x, w)) (+ ReLU) in one pass, reading and writing channel slices.
pub fn forward_bn(gpu: &Gpu, s: &ConvShape, sl: Slices, x: &Tensor, w: &Tensor, bn: &BnEval, y: &Tensor) -> Vec<Launch> {
    if let (Some(d), true) = (dense(s), sl == Slices::whole(s)) {
        return dense::forward_bn(gpu, d, x, w, bn, y);
    }
    if let (Some(_), true) = (pointwise(s), sl == Slices::whole(s)) {
        return forward_pointwise_bn(gpu, s, tall_tile(gpu, POINTWISE_TILE), x, w, bn, y);
    }
    if depthwise(s) {
        return vec![forward_depthwise(gpu, s, sl, x, w, Some(bn), y)];
    }
    if tiny_map(s) {
        return forward_tiny(gpu, s, sl, x, w, Some(bn), y);
    }
    if let Some(tile) = rows_tile(gpu, s) {
        return forward_rows(gpu, s, sl, tile, x, w, Some(bn), y);
    }
    let (rows, cols) = (s.cog(), s.n * s.oh() * s.ow());
    let wt_tile = forward_wt_tile(gpu, s);
    let tile = wt_tile.unwrap_or(Tile::for_forward(rows, cols));
    let mut launches = vec![];
    let wt = wt_tile.map(|_| {
        let (wt, uniform, l) = weights_by_input(gpu, s, w);
        launches.push(l);
        (wt, uniform)
    });
    let (spec, grid, w) = match (&wt, by_pixel(s)) {
        (Some((wt, uniform)), _) => (weight_spec(tile, ForwardKernel::ForwardWtBn, *uniform), tile.grid(rows, cols, s.groups), wt),
        (None, Some(tile)) => (spec(tile, ForwardKernel::ForwardByPixelBn), by_pixel_grid(s, tile), w),
        (None, None) => (spec(tile, ForwardKernel::ForwardBn), tile.grid(rows, cols, s.groups), w),
    };
    let p = params_with(gpu, s, 1, s.n, bn.relu, sl);
    let mut l = gpu.launch("conv.forward_bn", &spec, &p, &[x, w, y, bn.mean, bn.var, bn.gamma, bn.beta], grid);
    l.flops = 2.0 * s.macs();
    launches.push(l);
    launches
}

/// Whether the forward can read its weights transposed as vec4s of four output channels
/// (the shader's forward_tile_wt): output channels per group and tile rows in fours.
pub(super) fn weights_in_row_fours(s: &ConvShape, tile: Tile) -> bool {
    s.cog().is_multiple_of(4) && tile.tm.is_multiple_of(4)
}

/// The tile of forward_wt where it applies: benches/tiles.rs fwd_wt. With the weights in
/// storage, 8 rows x 4 columns per lane was the best of seven tiles on every 3x3 shape of
/// SPGNet with more than one output pixel (1.3-2.2x over the best tile of the scalar-weight
/// kernel); with the weights in a uniform binding (weight_copy), 16 x 4 wherever there are 16
/// output channels per group (1.2x over 8 x 4 on 96->96 in 6 groups, 12->24 and 2x2 maps).
/// On 1x1 output maps (one live tap) the scalar kernel stays faster. Where 4 columns per
/// lane would need more workgroups than the adapter allows in x (large images at large
/// batches), 8 columns per lane halve the grid.
pub(super) fn forward_wt_tile(gpu: &Gpu, s: &ConvShape) -> Option<Tile> {
    let mut tile = Tile { tm: rows_per_lane(gpu, s.cog(), s), nv: 1, wg: 8 };
    if tile.grid(s.cog(), s.n * s.oh() * s.ow(), 1)[0] > gpu.limits.max_compute_workgroups_per_dimension {
        tile.nv = 2;
    }
    (s.oh() * s.ow() > 1 && weights_in_row_fours(s, tile)).then_some(tile)
}

/// The forward reading transposed weights, four output channels per load (see
/// weights_in_row_fours): lavapipe pays per load, so this cuts the weight loads by 4x.
pub fn forward_wt(gpu: &Gpu, s: &ConvShape, tile: Tile, x: &Tensor, w: &Tensor, y: &Tensor) -> Vec<Launch> {
    assert!(weights_in_row_fours(s, tile), "forward_wt: {s:?} with {tile:?} is not in fours");
    let (wt, uniform, lw) = weights_by_input(gpu, s, w);
    let (rows, cols) = (s.cog(), s.n * s.oh() * s.ow());
    let mut l = gpu.launch(
        "conv.forward",
        &weight_spec(tile, ForwardKernel::ForwardWt, uniform),
        &params(gpu, s, 1, s.n),
        &[x, &wt, y],
        tile.grid(rows, cols, s.groups),
    );
    l.flops = 2.0 * s.macs();
    vec![lw, l]
}

/// The 3x3 forward over runs of four output pixels (the shader's forward_rows, or
/// forward_rows_s2 for stride 2), tile.tm output channels per lane (in fours); with `bn`, the
/// eval epilogue (forward_rows_bn, forward_rows_s2_bn).
pub fn forward_rows(
    gpu: &Gpu,
    s: &ConvShape,
    sl: Slices,
    tile: Tile,
    x: &Tensor,
    w: &Tensor,
    bn: Option<&BnEval>,
    y: &Tensor,
) -> Vec<Launch> {
    assert!(by_rows(s) && tile.tm.is_multiple_of(4), "forward_rows: {s:?} with {tile:?} is not 3x3 on row runs, in fours");
    let (wt, uniform, lw) = weights_by_input(gpu, s, w);
    let grid = rows_grid(s, tile, s.cog());
    let (plain, with_bn) = match (s.stride, by_column(s, tile)) {
        (1, false) => (ForwardKernel::ForwardRows, ForwardKernel::ForwardRowsBn),
        (1, true) => (ForwardKernel::ForwardColumn, ForwardKernel::ForwardColumnBn),
        _ => (ForwardKernel::ForwardRowsS2, ForwardKernel::ForwardRowsS2Bn),
    };
    let mut l = match bn {
        None => gpu.launch("conv.forward", &weight_spec(tile, plain, uniform), &params_with(gpu, s, 1, s.n, false, sl), &[x, &wt, y], grid),
        Some(bn) => {
            let p = params_with(gpu, s, 1, s.n, bn.relu, sl);
            gpu.launch("conv.forward_bn", &weight_spec(tile, with_bn, uniform), &p, &[x, &wt, y, bn.mean, bn.var, bn.gamma, bn.beta], grid)
        }
    };
    l.flops = 2.0 * s.macs();
    vec![lw, l]
}

pub fn forward_tiled(gpu: &Gpu, s: &ConvShape, tile: Tile, x: &Tensor, w: &Tensor, y: &Tensor) -> Launch {
    let (rows, cols) = (s.cog(), s.n * s.oh() * s.ow());
    let mut l = gpu.launch(
        "conv.forward",
        &spec(tile, ForwardKernel::Forward),
        &params(gpu, s, 1, s.n),
        &[x, w, y],
        tile.grid(rows, cols, s.groups),
    );
    l.flops = 2.0 * s.macs();
    l
}

/// benches/tiles.rs: 1x1 convs with 96 or more output channels run 1.2-1.5x faster with
/// lanes over output channels and the pixels uniform (the shader's forward_by_pixel) than on
/// the scalar-weight kernel; where forward_wt takes them (output channels in fours, maps of
/// more than one pixel) its 16 x 4 tile is faster still: on 7x7 maps (56x56 input), batch 64,
/// 96->96 4.3 against 6.3-6.4 ms, 24->96 1.7 against 3.1.
pub(super) fn by_pixel(s: &ConvShape) -> Option<Tile> {
    (s.k == 1 && s.cog() >= 96).then_some(Tile { tm: 8, nv: 2, wg: 8 })
}

/// The forward with lanes over output channels and the pixels uniform.
pub fn forward_by_pixel(gpu: &Gpu, s: &ConvShape, tile: Tile, x: &Tensor, w: &Tensor, y: &Tensor) -> Launch {
    let mut l =
        gpu.launch("conv.forward", &spec(tile, ForwardKernel::ForwardByPixel), &params(gpu, s, 1, s.n), &[x, w, y], by_pixel_grid(s, tile));
    l.flops = 2.0 * s.macs();
    l
}

pub(super) fn by_pixel_grid(s: &ConvShape, tile: Tile) -> [u32; 3] {
    let (rows, cols) = (s.cog(), s.n * s.oh() * s.ow());
    [(rows as u32).div_ceil(tile.tm * tile.wg), (cols as u32).div_ceil(tile.cols()), s.groups as u32]
}
