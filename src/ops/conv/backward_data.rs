//! The input gradient dx from dy and the weights: which kernel runs a shape
//! (`backward_data_sharing`) and the launcher of each candidate.

use super::*;

/// dx[n, cin, h, w] from dy[n, cout, oh, ow] and the weights.
pub fn backward_data(gpu: &Gpu, s: &ConvShape, dy: &Tensor, w: &Tensor, dx: &Tensor) -> Vec<Launch> {
    backward_data_sharing(gpu, s, dy, w, &SharedLayout::default(), dx)
}

/// backward_data reading what this step's forward_sharing laid out, where it did.
pub fn backward_data_sharing(gpu: &Gpu, s: &ConvShape, dy: &Tensor, w: &Tensor, shared: &SharedLayout, dx: &Tensor) -> Vec<Launch> {
    if let Some(d) = dense(s) {
        return dense::backward_data(gpu, d, dy, w, dx);
    }
    if pointwise(s).is_some() {
        return vec![backward_data_pointwise(gpu, s, tn4_tile(gpu, s.cin, POINTWISE_TILE), dy, w, dx)];
    }
    if depthwise(s) {
        return vec![backward_data_depthwise(gpu, s, dy, w, dx)];
    }
    if tiny_map(s) {
        return backward_data_tiny(gpu, s, dy, w, shared.0.as_ref(), dx);
    }
    // benches/tiles.rs bwd_d_wt: with the weights transposed, 8 x 8 was the best tile on
    // SPGNet's 3x3 shapes (1.2-1.9x over the scalar-weight kernel's default tile); with them
    // in a uniform binding (weight_copy), 16 x 8 where there are 16 input channels per group
    // (8.6 and 10.6 against 6.8 and 7.0 GFLOP/s on 96->96 in 6 groups, two runs of ten
    // back-to-back launches). On 1x1 output maps (one live tap) the transpose costs more than
    // it saves.
    if let Some(tile) = backward_rows_tile(gpu, s) {
        return backward_data_rows(gpu, s, tile, dy, w, dx);
    }
    if s.cig().is_multiple_of(4) && s.oh() * s.ow() > 1 {
        return backward_data_wt(gpu, s, Tile { tm: rows_per_lane(gpu, s.cig(), s), nv: 2, wg: 8 }, dy, w, dx);
    }
    vec![backward_data_tiled(gpu, s, Tile::for_backward_data(s.cig(), backward_data_columns(s).0), dy, w, dx)]
}

/// The columns (input pixels) one launch of backward_data covers, and the parity classes
/// per group: stride 2 splits the pixels by (row, column) parity, see the shader.
pub(super) fn backward_data_columns(s: &ConvShape) -> (usize, usize) {
    if s.stride == 2 {
        (s.n * s.h.div_ceil(2) * s.w.div_ceil(2), 4)
    } else {
        (s.n * s.h * s.w, 1)
    }
}

/// The input gradient reading the weights transposed to `[g][co][tap][ci]`, four input
/// channels per load (the shader's backward_data_wt; input channels per group and tile rows
/// in fours). The transpose is a `weight_layout` launch.
pub fn backward_data_wt(gpu: &Gpu, s: &ConvShape, tile: Tile, dy: &Tensor, w: &Tensor, dx: &Tensor) -> Vec<Launch> {
    assert!(s.cig().is_multiple_of(4) && tile.tm.is_multiple_of(4), "backward_data_wt: {s:?} with {tile:?} is not in fours");
    let (wt, uniform, lw) = weights_by_output(gpu, s, w);
    let (cols, classes) = backward_data_columns(s);
    let mut l = gpu.launch(
        "conv.backward_data",
        &weight_spec(tile, BackwardDataKernel::BackwardDataWt, uniform),
        &params(gpu, s, 1, s.n),
        &[dy, &wt, dx],
        tile.grid(s.cig(), cols, s.groups * classes),
    );
    l.flops = 2.0 * s.macs();
    vec![lw, l]
}

/// backward_data_rows' tile where it runs this conv: as rows_tile with the roles of the
/// channels swapped (input channels per group in fours).
pub(super) fn backward_rows_tile(gpu: &Gpu, s: &ConvShape) -> Option<Tile> {
    let swapped = ConvShape { cin: s.cout, cout: s.cin, ..*s };
    rows_tile(gpu, &swapped).map(|tile| if s.stride == 2 { Tile { nv: 1, ..tile } } else { tile })
}

/// The 3x3 input gradient over runs of four pixels, reading the weights as backward_data_wt
/// does; tile.tm input channels per lane (in fours). Stride 1: the forward_rows tile with the
/// kernel flipped (the shader's backward_data_rows); stride 2: a lane per pair of input rows
/// and eight columns (backward_data_rows_s2; tile.nv is 1).
pub fn backward_data_rows(gpu: &Gpu, s: &ConvShape, tile: Tile, dy: &Tensor, w: &Tensor, dx: &Tensor) -> Vec<Launch> {
    assert!(
        row_runs(s) && s.cig().is_multiple_of(4) && tile.tm.is_multiple_of(4) && (s.stride == 1 || tile.nv == 1),
        "backward_data_rows: {s:?} with {tile:?} is not 3x3 on row runs, in fours"
    );
    let (wt, uniform, lw) = weights_by_output(gpu, s, w);
    let kernel = match s.stride {
        1 if by_column(s, tile) => BackwardDataKernel::BackwardDataColumn,
        1 => BackwardDataKernel::BackwardDataRows,
        // a lane per pair of input rows and eight columns: as many as runs of four output pixels
        _ => BackwardDataKernel::BackwardDataRowsS2,
    };
    let grid = rows_grid(s, tile, s.cig());
    let mut l = gpu.launch("conv.backward_data", &weight_spec(tile, kernel, uniform), &params(gpu, s, 1, s.n), &[dy, &wt, dx], grid);
    l.flops = 2.0 * s.macs();
    vec![lw, l]
}

pub fn backward_data_tiled(gpu: &Gpu, s: &ConvShape, tile: Tile, dy: &Tensor, w: &Tensor, dx: &Tensor) -> Launch {
    let (cols, classes) = backward_data_columns(s);
    let grid = tile.grid(s.cig(), cols, s.groups * classes);
    let mut l =
        gpu.launch("conv.backward_data", &spec(tile, BackwardDataKernel::BackwardData), &params(gpu, s, 1, s.n), &[dy, w, dx], grid);
    l.flops = 2.0 * s.macs();
    l
}
