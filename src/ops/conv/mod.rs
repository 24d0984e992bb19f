//! Grouped 2-D convolution (shaders/conv/). Each direction has one file with the
//! function that chooses its kernel for a shape and the launchers of its candidates:
//! `forward`, `backward_data`, `backward_weight`; 1x1 convs run as GEMMs (`pointwise`),
//! convs on tiny maps as dense products per group (`tiny`), 1x1 convs on 1x1 maps as dense
//! layers (ops::dense), 3x3 depthwise convs on kernels of their own (`depthwise`).

mod backward_data;
mod backward_weight;
mod depthwise;
mod forward;
mod pointwise;
mod tiny;

pub use backward_data::*;
pub use backward_weight::*;
pub use depthwise::*;
pub use forward::*;
pub use pointwise::*;
pub use tiny::*;

use super::batchnorm::EPS;
use super::dense;
use super::gemm::{a_rows_by_subgroup, matmul_nt4_images, tall_tile, tn4_tile, transpose_each, transposed_each, Tile};
use crate::gpu::{grid_1d, Entry, Gpu, KernelSpec, Launch, Source, Tensor};
use std::sync::Arc;

/// The shaders of one direction each, then the declarations they share (common.wgsl) and, for
/// the forward, the BN epilogue it shares with matmul.wgsl (after the file, so line numbers
/// in errors stay true).
const FORWARD_SOURCE: Source = Source {
    file: "conv/forward.wgsl",
    text: concat!(
        include_str!("../../../shaders/conv/forward.wgsl"),
        "\n",
        include_str!("../../../shaders/conv/common.wgsl"),
        "\n",
        include_str!("../../../shaders/bn_epilogue.wgsl")
    ),
};
const BACKWARD_DATA_SOURCE: Source = Source {
    file: "conv/backward_data.wgsl",
    text: concat!(include_str!("../../../shaders/conv/backward_data.wgsl"), "\n", include_str!("../../../shaders/conv/common.wgsl")),
};
const BACKWARD_WEIGHT_SOURCE: Source = Source {
    file: "conv/backward_weight.wgsl",
    text: concat!(include_str!("../../../shaders/conv/backward_weight.wgsl"), "\n", include_str!("../../../shaders/conv/common.wgsl")),
};
const TINY_SOURCE: Source = Source {
    file: "conv/tiny.wgsl",
    text: concat!(include_str!("../../../shaders/conv/tiny.wgsl"), "\n", include_str!("../../../shaders/conv/common.wgsl")),
};

crate::kernel_table! {
    /// The forward kernels: they bind x, w, y (and the *_bn ones, eval's, the running mean,
    /// variance, gamma and beta).
    pub enum ForwardKernel in FORWARD_SOURCE {
        Forward = "forward" [Read, Read, ReadWrite],
        ForwardBn = "forward_bn" [Read, Read, ReadWrite, Read, Read, Read, Read],
        ForwardWt = "forward_wt" [Read, Read, ReadWrite],
        ForwardWtBn = "forward_wt_bn" [Read, Read, ReadWrite, Read, Read, Read, Read],
        ForwardByPixel = "forward_by_pixel" [Read, Read, ReadWrite],
        ForwardByPixelBn = "forward_by_pixel_bn" [Read, Read, ReadWrite, Read, Read, Read, Read],
        ForwardRows = "forward_rows" [Read, Read, ReadWrite],
        ForwardRowsBn = "forward_rows_bn" [Read, Read, ReadWrite, Read, Read, Read, Read],
        ForwardColumn = "forward_column" [Read, Read, ReadWrite],
        ForwardColumnBn = "forward_column_bn" [Read, Read, ReadWrite, Read, Read, Read, Read],
        ForwardRowsS2 = "forward_rows_s2" [Read, Read, ReadWrite],
        ForwardRowsS2Bn = "forward_rows_s2_bn" [Read, Read, ReadWrite, Read, Read, Read, Read],
        ForwardDepthwise = "forward_depthwise" [Read, Read, ReadWrite],
        ForwardDepthwiseBn = "forward_depthwise_bn" [Read, Read, ReadWrite, Read, Read, Read, Read],
    }
}

crate::kernel_table! {
    /// The input-gradient kernels: they bind dy, w (or its copy), dx.
    pub enum BackwardDataKernel in BACKWARD_DATA_SOURCE {
        BackwardData = "backward_data" [Read, Read, ReadWrite],
        BackwardDataWt = "backward_data_wt" [Read, Read, ReadWrite],
        BackwardDataRows = "backward_data_rows" [Read, Read, ReadWrite],
        BackwardDataColumn = "backward_data_column" [Read, Read, ReadWrite],
        BackwardDataRowsS2 = "backward_data_rows_s2" [Read, Read, ReadWrite],
        BackwardDataDepthwise = "backward_data_depthwise" [Read, Read, ReadWrite],
    }
}

crate::kernel_table! {
    /// The weight-gradient kernels: they bind dy, x, dw (or the split partial sums).
    pub enum BackwardWeightKernel in BACKWARD_WEIGHT_SOURCE {
        BackwardWeight = "backward_weight" [Read, Read, ReadWrite],
        BackwardWeightDyt = "backward_weight_dyt" [Read, Read, ReadWrite],
        BackwardWeightNhwc = "backward_weight_nhwc" [Read, Read, ReadWrite],
        BackwardWeightByTap = "backward_weight_by_tap" [Read, Read, ReadWrite],
        BackwardWeight3x3 = "backward_weight_3x3" [Read, Read, ReadWrite],
        BackwardWeightRows = "backward_weight_rows" [Read, Read, ReadWrite],
        BackwardWeightRowsBySlice = "backward_weight_rows_by_slice" [Read, Read, ReadWrite],
        BackwardWeightRowsS2BySlice = "backward_weight_rows_s2_by_slice" [Read, Read, ReadWrite],
        BackwardWeightDepthwise = "backward_weight_depthwise" [Read, Read, ReadWrite],
        /// Adds the split partial sums in a fixed order.
        SumSplits = "sum_splits" [Read, ReadWrite],
    }
}

crate::kernel_table! {
    /// A tiny-map conv's weights as a dense matrix (see tiny::tiny_map), and back.
    pub enum TinyKernel in TINY_SOURCE {
        ExpandTiny = "expand_tiny" [Read, ReadWrite],
        FoldTiny = "fold_tiny" [Read, ReadWrite],
    }
}

/// The shader's `Conv` uniform.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ConvParams {
    n: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    oh: u32,
    ow: u32,
    groups: u32,
    k: u32,
    stride: u32,
    pad: u32,
    cig: u32,
    cog: u32,
    splits: u32,
    n_per_split: u32,
    relu: u32,
    x_channels: u32,
    x_first: u32,
    y_channels: u32,
    y_first: u32,
    eps: f32,
    ky_lo: u32,
    ky_hi: u32,
    kx_lo: u32,
    kx_hi: u32,
    _pad: [u32; 3],
}

fn spec<E: Entry>(tile: Tile, kernel: E) -> KernelSpec {
    tile.spec(kernel)
}

/// The spec of a kernel reading a weight copy, with the copy bound as weight_copy decided.
fn weight_spec<E: Entry>(tile: Tile, kernel: E, uniform: bool) -> KernelSpec {
    let spec = tile.spec(kernel);
    if uniform {
        spec.with_uniform(2)
    } else {
        spec
    }
}

/// Geometry of one convolution; padding is always k / 2 (SPGNet's "same" convs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub groups: usize,
    pub k: usize,
    pub stride: usize,
}

impl ConvShape {
    pub fn pad(&self) -> usize {
        self.k / 2
    }
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad() - self.k) / self.stride + 1
    }
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad() - self.k) / self.stride + 1
    }
    pub fn cig(&self) -> usize {
        self.cin / self.groups
    }
    pub fn cog(&self) -> usize {
        self.cout / self.groups
    }
    /// The kernel rows (or columns) [lo, hi) that touch the image for some output pixel,
    /// along an axis of `size` inputs and `out` outputs; the others only see padding.
    pub fn live_taps(&self, size: usize, out: usize) -> (usize, usize) {
        let (pad, reach) = (self.pad(), (out - 1) * self.stride);
        (pad.saturating_sub(reach), self.k.min(size + pad))
    }
    pub fn input_shape(&self) -> [usize; 4] {
        [self.n, self.cin, self.h, self.w]
    }
    pub fn output_shape(&self) -> [usize; 4] {
        [self.n, self.cout, self.oh(), self.ow()]
    }
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.cout, self.cig(), self.k, self.k]
    }
    /// Multiply-adds of the forward pass (each direction costs the same).
    pub fn macs(&self) -> f64 {
        (self.n * self.cout * self.oh() * self.ow() * self.cig() * self.k * self.k) as f64
    }
    pub fn validate(&self) {
        assert!(
            self.groups > 0 && self.cin.is_multiple_of(self.groups) && self.cout.is_multiple_of(self.groups),
            "{self:?}: groups must divide channels"
        );
        assert!(self.k % 2 == 1 && self.stride >= 1, "{self:?}: odd kernel and stride >= 1 expected");
    }
}

/// The tensor for a relaid copy of `len` weight values (the *_wt kernels read it four
/// channels per vec4) and whether it is bound uniform: where the whole copy fits one uniform
/// binding (Access::Uniform; it is then padded to that binding's size), lavapipe reads it
/// 1.5x faster than from storage (benches/tiles.rs fwd_wt, 96->96 g6 on 8x8 maps).
fn weight_copy(gpu: &Gpu, len: usize, label: &str) -> (Tensor, bool) {
    let uniform = gpu.uniform_fits(len);
    (if uniform { gpu.zeros_with_uniform_room(len, 0, label) } else { gpu.zeros(&[len], label) }, uniform)
}

/// Which channels of wider tensors a forward conv reads and writes: x holds `x_channels`
/// channels and the conv reads `cin` of them from `x_first`; likewise y from `y_first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slices {
    pub x_channels: usize,
    pub x_first: usize,
    pub y_channels: usize,
    pub y_first: usize,
}

impl Slices {
    /// Plain tensors: x has exactly cin channels and y exactly cout.
    pub fn whole(s: &ConvShape) -> Slices {
        Slices { x_channels: s.cin, x_first: 0, y_channels: s.cout, y_first: 0 }
    }
}

fn params(gpu: &Gpu, s: &ConvShape, splits: usize, n_per_split: usize) -> Arc<wgpu::Buffer> {
    params_with(gpu, s, splits, n_per_split, false, Slices::whole(s))
}

fn params_with(gpu: &Gpu, s: &ConvShape, splits: usize, n_per_split: usize, relu: bool, sl: Slices) -> Arc<wgpu::Buffer> {
    s.validate();
    assert!(sl.x_first + s.cin <= sl.x_channels && sl.y_first + s.cout <= sl.y_channels, "{s:?}: slices {sl:?} out of range");
    let (ky, kx) = (s.live_taps(s.h, s.oh()), s.live_taps(s.w, s.ow()));
    let u = |x: usize| x as u32;
    gpu.params(&ConvParams {
        n: u(s.n),
        cin: u(s.cin),
        h: u(s.h),
        w: u(s.w),
        cout: u(s.cout),
        oh: u(s.oh()),
        ow: u(s.ow()),
        groups: u(s.groups),
        k: u(s.k),
        stride: u(s.stride),
        pad: u(s.pad()),
        cig: u(s.cig()),
        cog: u(s.cog()),
        splits: u(splits),
        n_per_split: u(n_per_split),
        relu: relu as u32,
        x_channels: u(sl.x_channels),
        x_first: u(sl.x_first),
        y_channels: u(sl.y_channels),
        y_first: u(sl.y_first),
        eps: EPS,
        ky_lo: u(ky.0),
        ky_hi: u(ky.1),
        kx_lo: u(kx.0),
        kx_hi: u(kx.1),
        _pad: [0; 3],
    })
}

/// A 1x1 conv on 1x1 maps without groups is a dense layer ([n, c] rows): the vec4 GEMMs of
/// ops::linear run it when the input channels come in fours.
fn dense(s: &ConvShape) -> Option<(usize, usize, usize)> {
    (s.k == 1 && s.h == 1 && s.w == 1 && s.groups == 1 && s.cin.is_multiple_of(4)).then_some((s.n, s.cin, s.cout))
}

/// A 1x1 conv (stride 1, no groups) on maps of a multiple of 4 pixels: a GEMM whose columns
/// are the pixels of each image, read as vec4 by ops::gemm::matmul_nn4.
fn pointwise(s: &ConvShape) -> Option<usize> {
    let hw = s.h * s.w;
    (s.k == 1 && s.stride == 1 && s.groups == 1 && hw.is_multiple_of(4)).then_some(hw)
}

/// One value (or one channel pair) per lane, 64 lanes a workgroup, over a flat grid: the tile
/// of sum_splits, expand_tiny and fold_tiny.
const FLAT_TILE: Tile = Tile { tm: 1, nv: 1, wg: 64 };

/// What a training forward re-laid out of its weights that the input gradient reads too:
/// valid until the weights change, so within one step (built after its forward, run after it).
#[derive(Default)]
pub struct SharedLayout(Option<Tensor>);

/// Rows per lane of the kernels that read a weight copy four rows per load, where `rows`
/// channels per group are the tile's rows: 12 for the stem's 12 and 24 channels (no lane
/// computes rows past the end, as 8 or 16 would: first_conv.0's forward 5.1-8.5 -> 4.3-5.9
/// ms, first_conv.1's forward and input gradient 6.6-9.4 -> 5.2-6.0 ms at 56x56, batch 64,
/// three profiled pairs); 16 where the copy is in a uniform binding (loads cheap enough for
/// the larger tile), else 8, or 4 for fewer channels.
fn rows_per_lane(gpu: &Gpu, rows: usize, s: &ConvShape) -> u32 {
    match rows {
        12 | 24 => 12,
        c if c >= 16 && gpu.uniform_fits(s.weight_shape().iter().product()) => 16,
        c if c >= 8 => 8,
        _ => 4,
    }
}

/// The weights transposed per group to [g][ci][tap][co] for forward_wt (see weight_copy):
/// a `weight_layout` launch (eval graphs run it once per change of the weights).
fn weights_by_input(gpu: &Gpu, s: &ConvShape, w: &Tensor) -> (Tensor, bool, Launch) {
    let (wt, uniform) = weight_copy(gpu, w.len(), "conv weight transposed");
    let mut l = transpose_each(gpu, (s.groups, s.cog(), s.cig() * s.k * s.k), w, &wt);
    l.weight_layout = true;
    (wt, uniform, l)
}

/// The weights transposed to [g][co][tap][ci] for the input-gradient kernels that read four
/// input channels per load (backward_data_wt, backward_data_rows): a `weight_layout` launch.
fn weights_by_output(gpu: &Gpu, s: &ConvShape, w: &Tensor) -> (Tensor, bool, Launch) {
    let (wt, uniform) = weight_copy(gpu, w.len(), "conv weight transposed");
    let mut l = transpose_each(gpu, (s.cout, s.cig(), s.k * s.k), w, &wt);
    l.weight_layout = true;
    (wt, uniform, l)
}

/// Whether the row-run kernels (forward_rows, backward_data_rows, backward_weight_rows) take
/// this conv: 3x3, stride 1 with the width in fours, or stride 2 on an input twice as wide
/// as the output (the width in eights: their *_s2 kernels).
fn row_runs(s: &ConvShape) -> bool {
    s.k == 3 && ((s.stride == 1 && s.w.is_multiple_of(4)) || (s.stride == 2 && s.w.is_multiple_of(8)))
}

/// The grid of the row-run forward and input-gradient kernels: a lane per tile.nv runs of four
/// output pixels (for a stride-1 input gradient, the same as the input's; for a stride-2 one,
/// as many as its lanes of two input rows by eight columns), `rows` channels per group in
/// tiles of tile.tm, the groups.
fn rows_grid(s: &ConvShape, tile: Tile, rows: usize) -> [u32; 3] {
    let nv = tile.nv as usize;
    assert!(
        (s.ow() / 4).is_multiple_of(nv) || (s.ow() == 4 && s.oh().is_multiple_of(nv)),
        "row runs: {nv} runs per lane divide neither a row nor the rows of {s:?}"
    );
    [((s.n * s.oh() * s.ow() / 4 / tile.nv as usize) as u32).div_ceil(tile.wg), (rows as u32).div_ceil(tile.tm), s.groups as u32]
}

/// Runs per lane of the row-run kernels: two where they divide a row (benches/shares.rs,
/// 96->96 g6 on 8x8 maps, 16 rows: forward 23.9 -> 35.6 GFLOP/s, input gradient 24.2 -> 35.3:
/// the weights' loads serve twice the FMAs and neighbouring runs share their edge values).
fn runs_per_lane(s: &ConvShape) -> u32 {
    if s.stride == 1 && s.ow() == 4 {
        return column_rows(s.oh());
    }
    if (s.ow() / 4).is_multiple_of(2) {
        2
    } else {
        1
    }
}

/// Rows per lane of the column kernels (maps four pixels wide, a row one run: forward_column,
/// backward_data_column): all of a 4x4 plane, or two or one rows where four do not divide them.
fn column_rows(h: usize) -> u32 {
    [4, 2, 1].into_iter().find(|&r| h.is_multiple_of(r as usize)).unwrap_or(1)
}

/// Whether a row-run tile takes several rows of a map one run wide (the column kernels).
fn by_column(s: &ConvShape, tile: Tile) -> bool {
    s.stride == 1 && s.ow() == 4 && tile.nv > 1
}

/// forward_rows' tile where it runs this conv. benches/shares.rs, 96->96 g6 on 8x8 maps: 16
/// output channels per lane (weights in a uniform binding) 1.5x forward_wt's best, 8 1.3x, 4 1.05x.
/// The column kernels (maps four pixels wide) hold channels x rows x 4 pixels per lane: at most
/// 64 accumulators, 4 channels by a whole 4x4 plane (96->96 g6 at 4x4, batch 64: forward and
/// input gradient 0.60 against 2.96 ms with 16 channels, 0.73 with 8 channels by 2 rows;
/// 48->48: 0.185 against 0.215 with 8 by 4).
fn rows_tile(gpu: &Gpu, s: &ConvShape) -> Option<Tile> {
    let mut tile = Tile { tm: rows_per_lane(gpu, s.cog(), s), nv: runs_per_lane(s), wg: 8 };
    if by_column(s, tile) {
        tile.tm = tile.tm.min(16 / tile.nv);
    }
    let fits = row_runs(s) && rows_grid(s, tile, s.cog())[0] <= gpu.limits.max_compute_workgroups_per_dimension;
    (by_rows(s) && fits).then_some(tile)
}

/// Whether forward_rows runs this conv: row runs, output channels per group in fours.
fn by_rows(s: &ConvShape) -> bool {
    row_runs(s) && s.cog().is_multiple_of(4)
}
