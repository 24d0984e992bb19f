//! Grouped 2-D convolution (shaders/conv2d.wgsl): forward, backward_data, backward_weight.

use crate::gpu::{Access, Gpu, KernelSpec, Launch, Tensor};
use std::sync::Arc;
use Access::{Read, ReadWrite};

/// The file, then the BN epilogue its *_bn entries share with matmul.wgsl (after it, so line
/// numbers in errors stay true).
const SOURCE: &str = concat!(include_str!("../../shaders/conv2d.wgsl"), "\n", include_str!("../../shaders/bn_epilogue.wgsl"));
const BINDINGS: &[Access] = &[Read, Read, ReadWrite];
const FORWARD_BN_BINDINGS: &[Access] = &[Read, Read, ReadWrite, Read, Read, Read, Read];
/// The same with the weights (binding 2) in a uniform binding (see weight_copy).
const UNIFORM_W_BINDINGS: &[Access] = &[Read, Access::Uniform, ReadWrite];
const UNIFORM_W_FORWARD_BN_BINDINGS: &[Access] = &[Read, Access::Uniform, ReadWrite, Read, Read, Read, Read];

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
        assert!(self.groups > 0 && self.cin % self.groups == 0 && self.cout % self.groups == 0, "{self:?}: groups must divide channels");
        assert!(self.k % 2 == 1 && self.stride >= 1, "{self:?}: odd kernel and stride >= 1 expected");
    }
}

/// Register tile of one invocation: `tm` rows x `4 * nv` columns, workgroups of `wg` lanes.
#[derive(Clone, Copy, Debug)]
pub struct Tile {
    pub tm: u32,
    pub nv: u32,
    pub wg: u32,
}

impl Tile {
    /// The tile for a GEMM with `rows` rows and `cols` columns: the biggest that the rows fill.
    pub fn for_gemm(rows: usize, cols: usize) -> Tile {
        let tm = match rows {
            r if r >= 8 => 8,
            r if r >= 4 => 4,
            r if r >= 2 => 2,
            _ => 1,
        };
        let nv = if cols >= 64 { 2 } else { 1 };
        Tile { tm, nv, wg: 8 }
    }
    /// The tiles of the kernels that read the row operand one row per load (where rows do
    /// not come in fours; the *_wt / *_dyt kernels have their own), measured on lavapipe over
    /// SPGNet's shapes (benches/tiles.rs): the forward wants at most 4 rows (4 x 8 beat 8 x 8 by 1.1-2x on every 3x3
    /// shape, the stem's included), the input gradient 8 x 8 wherever there are 8 rows; the
    /// weight gradient wants 16 x 8 once there are 16 rows, 8 x 4 below.
    pub fn for_forward(rows: usize, cols: usize) -> Tile {
        let t = Self::for_gemm(rows, cols);
        Tile { tm: t.tm.min(4), ..t }
    }
    pub fn for_backward_data(rows: usize, cols: usize) -> Tile {
        Self::for_gemm(rows, cols)
    }
    pub fn for_backward_weight(rows: usize, cols: usize) -> Tile {
        if rows >= 16 && cols >= 32 { Tile { tm: 16, nv: 2, wg: 8 } } else { Tile { nv: 1, ..Self::for_gemm(rows, cols) } }
    }
    pub fn cols(&self) -> u32 {
        4 * self.nv
    }
    pub fn spec(&self, file: &'static str, source: &'static str, entry: &'static str, bindings: &'static [Access]) -> KernelSpec {
        KernelSpec::new(file, source, entry, bindings)
            .with_const("TM", self.tm)
            .with_const("NV", self.nv)
            .with_const("WG", self.wg)
    }
    /// Grid for `rows` x `cols` with `z` in the third dimension.
    pub fn grid(&self, rows: usize, cols: usize, z: usize) -> [u32; 3] {
        let col_tiles = (cols as u32).div_ceil(self.cols());
        [col_tiles.div_ceil(self.wg), (rows as u32).div_ceil(self.tm), z as u32]
    }
}

fn spec(tile: Tile, entry: &'static str) -> KernelSpec {
    let bindings: &'static [Access] = match entry {
        "sum_splits" | "expand_tiny" | "fold_tiny" => &[Read, ReadWrite],
        "forward_bn" | "forward_wt_bn" | "forward_by_pixel_bn" | "forward_rows_bn" => FORWARD_BN_BINDINGS,
        _ => BINDINGS,
    };
    tile.spec("conv2d.wgsl", SOURCE, entry, bindings)
}

/// The spec of a *_wt kernel, with its weight copy bound as weight_copy decided.
fn weight_spec(tile: Tile, entry: &'static str, uniform: bool) -> KernelSpec {
    match (uniform, entry) {
        (false, _) => spec(tile, entry),
        (true, "forward_wt_bn" | "forward_rows_bn") => tile.spec("conv2d.wgsl", SOURCE, entry, UNIFORM_W_FORWARD_BN_BINDINGS),
        (true, _) => tile.spec("conv2d.wgsl", SOURCE, entry, UNIFORM_W_BINDINGS),
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

pub fn kernels() -> Vec<KernelSpec> {
    let t = Tile { tm: 4, nv: 1, wg: 8 };
    ["forward", "forward_wt", "forward_by_pixel", "forward_bn", "forward_wt_bn", "forward_by_pixel_bn", "forward_rows", "forward_rows_bn", "backward_data_rows", "backward_data", "backward_data_wt", "backward_weight", "backward_weight_dyt", "backward_weight_nhwc", "backward_weight_by_tap", "backward_weight_3x3", "backward_weight_rows", "sum_splits", "expand_tiny", "fold_tiny"].iter().map(|e| spec(t, e)).collect()
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
    let v = [
        s.n, s.cin, s.h, s.w, s.cout, s.oh(), s.ow(), s.groups, s.k, s.stride, s.pad(), s.cig(), s.cog(), splits, n_per_split, relu as usize,
        sl.x_channels, sl.x_first, sl.y_channels, sl.y_first,
    ];
    let mut v: Vec<u32> = v.iter().map(|&x| x as u32).collect();
    let (ky, kx) = (s.live_taps(s.h, s.oh()), s.live_taps(s.w, s.ow()));
    v.extend([crate::gpu::f(super::batchnorm::EPS), ky.0 as u32, ky.1 as u32, kx.0 as u32, kx.1 as u32, 0, 0, 0]);
    gpu.params(&v)
}

/// BatchNorm in eval mode folded into a conv's epilogue: the running statistics and affine.
pub struct BnEval<'a> {
    pub mean: &'a Tensor,
    pub var: &'a Tensor,
    pub gamma: &'a Tensor,
    pub beta: &'a Tensor,
    pub relu: bool,
}

/// A 1x1 conv on 1x1 maps without groups is a dense layer ([n, c] rows): the vec4 GEMMs of
/// ops::linear run it when the input channels come in fours.
fn dense(s: &ConvShape) -> Option<(usize, usize, usize)> {
    (s.k == 1 && s.h == 1 && s.w == 1 && s.groups == 1 && s.cin % 4 == 0).then_some((s.n, s.cin, s.cout))
}

/// A 1x1 conv (stride 1, no groups) on maps of a multiple of 4 pixels: a GEMM whose columns
/// are the pixels of each image, read as vec4 by ops::linear::matmul_nn4.
fn pointwise(s: &ConvShape) -> Option<usize> {
    let hw = s.h * s.w;
    (s.k == 1 && s.stride == 1 && s.groups == 1 && hw % 4 == 0).then_some(hw)
}

/// benches/tiles.rs pw_*: 8 rows x 8 pixels per lane was the best of seven tiles for the
/// 1x1 convs of stages 1 and 2 (1.2-1.6x over the scalar conv kernels' best there).
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

fn pointwise_forward_launches(gpu: &Gpu, s: &ConvShape, tile: Tile, x: &Tensor, w: &Tensor, bn: Option<&BnEval>, y: &Tensor) -> Vec<Launch> {
    use super::linear::{a_rows_by_subgroup, matmul_nn4, matmul_nn4_bn, transposed_weight, Batches, Columns, Strides};
    let hw = s.h * s.w;
    let cols = Columns { hw, b_row: hw, b_img: s.cin * hw, c_row: hw, c_img: s.cout * hw };
    let mnk = (s.cout, s.n * hw, s.cin);
    let mut launches = vec![];
    // matmul_nn4_sg reads w's rows as vec4s along k as cheaply as matmul_tn4 reads the copy
    let by_subgroup = a_rows_by_subgroup(gpu, tile, s.cin, Strides::rows(s.cin), Batches::one());
    let wt = (s.cin % 4 == 0 && s.cout % 4 == 0 && !by_subgroup).then(|| {
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
    use super::linear::{matmul_nn4, Columns, Strides};
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
    use super::linear::{by_uniform_k_chunks, matmul_nn4, transpose_each, transposed_each, Columns, Strides};
    let hw = s.h * s.w;
    if hw % 4 == 0 {
        let mut l = super::linear::matmul_nt4_images(gpu, POINTWISE_TILE, (s.cout, s.cin, s.n, hw), dy, x, dw);
        l.label = "conv1x1.backward_weight".into();
        return vec![l];
    }
    let len = s.n * hw * s.cout;
    let dyt = gpu.zeros_with_uniform_room(len, len, "1x1 conv output gradient, NHWC");
    let ldy = transpose_each(gpu, (s.n, s.cout, hw), dy, &dyt);
    let (xt, lx) = transposed_each(gpu, (s.n, s.cin, hw), x, "1x1 conv input, NHWC");
    let mnk = (s.cout, s.cin, s.n * hw);
    let mut gemm = by_uniform_k_chunks(gpu, POINTWISE_TILE, mnk, &dyt, &xt, dw)
        .unwrap_or_else(|| vec![matmul_nn4(gpu, POINTWISE_TILE, mnk, (&dyt, Strides::transposed(s.cout)), &xt, Columns::matrix(s.cin), dw)]);
    for l in &mut gemm {
        l.label = "conv1x1.backward_weight".into();
    }
    [vec![ldy, lx], gemm].concat()
}

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
fn tiny_input_pixel(s: &ConvShape, op: usize, t: usize) -> Option<usize> {
    let qy = ((op / s.ow()) * s.stride + t / s.k) as isize - s.pad() as isize;
    let qx = ((op % s.ow()) * s.stride + t % s.k) as isize - s.pad() as isize;
    // then, not then_some: the index of a padding tap would overflow (a panic in debug builds)
    (qy >= 0 && qy < s.h as isize && qx >= 0 && qx < s.w as isize).then(|| qy as usize * s.w + qx as usize)
}

/// Tiles of the tiny-map GEMMs (64 x 64 x 64 per group in stage 2 at batch 64), the best of
/// six tried on that shape in benches/kernels.rs (16x8 was 1.2-1.6x slower in every direction).
pub const TINY_FORWARD_TILE: Tile = Tile { tm: 8, nv: 2, wg: 8 };
pub const TINY_GRADIENT_TILE: Tile = Tile { tm: 4, nv: 2, wg: 8 };

/// One value (or one channel pair) per lane, 64 lanes a workgroup, over a flat grid: the tile
/// of sum_splits, expand_tiny and fold_tiny.
const FLAT_TILE: Tile = Tile { tm: 1, nv: 1, wg: 64 };

/// The sizes of a tiny-map conv's Wt: pixels in (hw) and out (ohw), and rows (cog * ohw) and
/// columns (cig * hw) of each group's block.
struct TinyDims {
    hw: usize,
    ohw: usize,
    rows: usize,
    cols: usize,
}

fn tiny_dims(s: &ConvShape) -> TinyDims {
    let (hw, ohw) = (s.h * s.w, s.oh() * s.ow());
    TinyDims { hw, ohw, rows: s.cog() * ohw, cols: s.cig() * hw }
}

/// Wt (see tiny_map) of one layer, expanded from w by the returned launch.
fn expand_tiny(gpu: &Gpu, s: &ConvShape, w: &Tensor) -> (Tensor, Launch) {
    let d = tiny_dims(s);
    let wt = gpu.zeros(&[s.groups * d.rows, d.cols], "conv weights as a matrix (tiny map)");
    let mut l = gpu.launch("conv.expand_tiny", &spec(FLAT_TILE, "expand_tiny"), &params(gpu, s, 1, s.n), &[w, &wt], crate::gpu::grid_1d(s.cout * s.cig(), FLAT_TILE.wg));
    l.weight_layout = true; // eval graphs expand once per change of the weights
    (wt, l)
}

/// The tiny-map forward: y[n, (g, co, op)] = sum over (ci, q) of Wt[(g, co, op), (ci, q)]
/// x[n, (g, ci, q)], an nt4 GEMM per group with the images as rows; BN in the epilogue in eval.
pub fn forward_tiny(gpu: &Gpu, s: &ConvShape, sl: Slices, x: &Tensor, w: &Tensor, bn: Option<&BnEval>, y: &Tensor) -> Vec<Launch> {
    forward_tiny_sharing(gpu, s, sl, x, w, bn, y).0
}

/// forward_tiny, also returning its Wt for the input gradient of the same step.
fn forward_tiny_sharing(gpu: &Gpu, s: &ConvShape, sl: Slices, x: &Tensor, w: &Tensor, bn: Option<&BnEval>, y: &Tensor) -> (Vec<Launch>, Tensor) {
    use super::linear::{matmul_nt4_strided, Batches};
    let TinyDims { hw, ohw, rows, cols } = tiny_dims(s);
    let (wt, expand) = expand_tiny(gpu, s, w);
    let z = Batches { count: s.groups, a_z: cols, b_z: rows * cols, c_z: rows, a_off: sl.x_first * hw, c_off: sl.y_first * ohw, accumulate: false };
    let bn = bn.map(|bn| (bn, ohw));
    let mut l = matmul_nt4_strided(gpu, TINY_FORWARD_TILE, (s.n, rows, cols), (x, sl.x_channels * hw), (&wt, cols), (y, sl.y_channels * ohw), z, bn);
    l.label = if bn.is_some() { "conv.tiny.forward_bn" } else { "conv.tiny.forward" }.into();
    l.flops = 2.0 * s.macs();
    (vec![expand, l], wt)
}

/// The tiny-map input gradient: dx[n, (g, ci, q)] = sum over (co, op) of
/// dy[n, (g, co, op)] Wt[(g, co, op), (ci, q)], an nn4 GEMM per group. Reads `shared` (the
/// Wt that this step's forward expanded, see forward_sharing) where given, else expands w.
pub fn backward_data_tiny(gpu: &Gpu, s: &ConvShape, dy: &Tensor, w: &Tensor, shared: Option<&Tensor>, dx: &Tensor) -> Vec<Launch> {
    use super::linear::{matmul_nn4_batched, Batches, Columns, Strides};
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
    // 8 rows where dy's rows come through subgroup broadcasts (matmul_nn4_sg): 6.7 -> 4.9 ms
    // per profiled step for stage 2's input gradients, two pairs
    let a = Strides::rows(s.cout * ohw);
    let sg_tile = Tile { tm: 8, ..TINY_GRADIENT_TILE };
    let tile = if super::linear::a_rows_by_subgroup(gpu, sg_tile, rows, a, z) { sg_tile } else { TINY_GRADIENT_TILE };
    let mut l = matmul_nn4_batched(gpu, tile, (s.n, cols, rows), (dy, a), &wt, layout, z, dx);
    l.label = "conv.tiny.backward_data".into();
    l.flops = 2.0 * s.macs();
    expand.into_iter().chain([l]).collect()
}

/// The tiny-map weight gradient: dWt[(g, co, op), (ci, q)] = sum over the batch of
/// dy[n, (g, co, op)] x[n, (g, ci, q)] (an nn4 GEMM per group), folded onto the taps.
pub fn backward_weight_tiny(gpu: &Gpu, s: &ConvShape, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Vec<Launch> {
    use super::linear::{matmul_nn4_batched, Batches, Columns, Strides};
    let TinyDims { hw, ohw, rows, cols } = tiny_dims(s);
    let dwt = gpu.zeros(&[s.groups * rows, cols], "conv weight gradient as a matrix (tiny map)");
    let z = Batches { count: s.groups, a_z: rows, b_z: cols, c_z: rows * cols, a_off: 0, c_off: 0, accumulate: false };
    let layout = Columns { hw: cols, b_row: s.cin * hw, b_img: 0, c_row: cols, c_img: 0 };
    let mut l = matmul_nn4_batched(gpu, TINY_GRADIENT_TILE, (rows, cols, s.n), (dy, Strides::transposed(s.cout * ohw)), x, layout, z, &dwt);
    l.label = "conv.tiny.backward_weight".into();
    l.flops = 2.0 * s.macs();
    let fold = gpu.launch("conv.fold_tiny", &spec(FLAT_TILE, "fold_tiny"), &params(gpu, s, 1, s.n), &[&dwt, dw], crate::gpu::grid_1d(s.cout * s.cig(), FLAT_TILE.wg));
    vec![l, fold]
}

/// y[n, cout, oh, ow] = conv(x[n, cin, h, w], w[cout, cin/groups, k, k])
pub fn forward(gpu: &Gpu, s: &ConvShape, x: &Tensor, w: &Tensor, y: &Tensor) -> Vec<Launch> {
    forward_sharing(gpu, s, x, w, y).0
}

/// What a training forward re-laid out of its weights that the input gradient reads too:
/// valid until the weights change, so within one step (built after its forward, run after it).
#[derive(Default)]
pub struct SharedLayout(Option<Tensor>);

/// forward, also returning what backward_data_sharing can reuse (the tiny-map Wt: one
/// expand_tiny per step instead of two).
pub fn forward_sharing(gpu: &Gpu, s: &ConvShape, x: &Tensor, w: &Tensor, y: &Tensor) -> (Vec<Launch>, SharedLayout) {
    let unshared = |launches| (launches, SharedLayout(None));
    if let Some(d) = dense(s) {
        return unshared(super::linear::dense_forward(gpu, d, x, w, y));
    }
    if pointwise(s).is_some() {
        return unshared(forward_pointwise(gpu, s, POINTWISE_TILE, x, w, y));
    }
    if let Some(tile) = by_pixel(s) {
        return unshared(vec![forward_by_pixel(gpu, s, tile, x, w, y)]);
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
    unshared(vec![forward_tiled(gpu, s, Tile::for_forward(s.cog(), s.n * s.oh() * s.ow()), x, w, y)])
}

/// Whether the forward can read its weights transposed as vec4s of four output channels
/// (the shader's forward_tile_wt): output channels per group and tile rows in fours.
fn weights_in_row_fours(s: &ConvShape, tile: Tile) -> bool {
    s.cog() % 4 == 0 && tile.tm % 4 == 0
}

/// The tile of forward_wt where it applies: benches/tiles.rs fwd_wt. With the weights in
/// storage, 8 rows x 4 columns per lane was the best of seven tiles on every 3x3 shape of
/// SPGNet with more than one output pixel (1.3-2.2x over the best tile of the scalar-weight
/// kernel); with the weights in a uniform binding (weight_copy), 16 x 4 wherever there are 16
/// output channels per group (1.2x over 8 x 4 on 96->96 in 6 groups, 12->24 and 2x2 maps).
/// On 1x1 output maps (one live tap) the scalar kernel stays faster. Where 4 columns per
/// lane would need more workgroups than the adapter allows in x (large images at large
/// batches), 8 columns per lane halve the grid.
fn forward_wt_tile(gpu: &Gpu, s: &ConvShape) -> Option<Tile> {
    let mut tile = Tile { tm: rows_per_lane(gpu, s.cog(), s), nv: 1, wg: 8 };
    if tile.grid(s.cog(), s.n * s.oh() * s.ow(), 1)[0] > gpu.limits.max_compute_workgroups_per_dimension {
        tile.nv = 2;
    }
    (s.oh() * s.ow() > 1 && weights_in_row_fours(s, tile)).then_some(tile)
}

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
    let mut l = super::linear::transpose_each(gpu, (s.groups, s.cog(), s.cig() * s.k * s.k), w, &wt);
    l.weight_layout = true;
    (wt, uniform, l)
}

/// The weights transposed to [g][co][tap][ci] for the input-gradient kernels that read four
/// input channels per load (backward_data_wt, backward_data_rows): a `weight_layout` launch.
fn weights_by_output(gpu: &Gpu, s: &ConvShape, w: &Tensor) -> (Tensor, bool, Launch) {
    let (wt, uniform) = weight_copy(gpu, w.len(), "conv weight transposed");
    let mut l = super::linear::transpose_each(gpu, (s.cout, s.cig(), s.k * s.k), w, &wt);
    l.weight_layout = true;
    (wt, uniform, l)
}

/// The forward reading transposed weights, four output channels per load (see
/// weights_in_row_fours): lavapipe pays per load, so this cuts the weight loads by 4x.
pub fn forward_wt(gpu: &Gpu, s: &ConvShape, tile: Tile, x: &Tensor, w: &Tensor, y: &Tensor) -> Vec<Launch> {
    assert!(weights_in_row_fours(s, tile), "forward_wt: {s:?} with {tile:?} is not in fours");
    let (wt, uniform, lw) = weights_by_input(gpu, s, w);
    let (rows, cols) = (s.cog(), s.n * s.oh() * s.ow());
    let mut l = gpu.launch("conv.forward", &weight_spec(tile, "forward_wt", uniform), &params(gpu, s, 1, s.n), &[x, &wt, y], tile.grid(rows, cols, s.groups));
    l.flops = 2.0 * s.macs();
    vec![lw, l]
}

/// Whether the row-run kernels (forward_rows, backward_data_rows, backward_weight_rows) take
/// this conv: 3x3, stride 1, the width in fours.
fn row_runs(s: &ConvShape) -> bool {
    s.k == 3 && s.stride == 1 && s.w % 4 == 0
}

/// Whether forward_rows runs this conv: row runs, output channels per group in fours.
fn by_rows(s: &ConvShape) -> bool {
    row_runs(s) && s.cog() % 4 == 0
}

/// The grid of forward_rows and backward_data_rows: a lane per run of four pixels, `rows`
/// channels per group in tiles of tile.tm, the groups.
fn rows_grid(s: &ConvShape, tile: Tile, rows: usize) -> [u32; 3] {
    assert!((s.w / 4) % tile.nv as usize == 0, "row runs: {} runs per lane do not divide a row of {s:?}", tile.nv);
    [((s.n * s.h * s.w / 4 / tile.nv as usize) as u32).div_ceil(tile.wg), (rows as u32).div_ceil(tile.tm), s.groups as u32]
}

/// Runs per lane of the row-run kernels: two where they divide a row (benches/shares.rs,
/// 96->96 g6 on 8x8 maps, 16 rows: forward 23.9 -> 35.6 GFLOP/s, input gradient 24.2 -> 35.3:
/// the weights' loads serve twice the FMAs and neighbouring runs share their edge values).
fn runs_per_lane(s: &ConvShape) -> u32 {
    if (s.w / 4) % 2 == 0 { 2 } else { 1 }
}

/// forward_rows' tile where it runs this conv. benches/shares.rs, 96->96 g6 on 8x8 maps: 16
/// output channels per lane (weights in a uniform binding) 1.5x forward_wt's best, 8 1.3x, 4 1.05x.
fn rows_tile(gpu: &Gpu, s: &ConvShape) -> Option<Tile> {
    let tile = Tile { tm: rows_per_lane(gpu, s.cog(), s), nv: runs_per_lane(s), wg: 8 };
    let fits = row_runs(s) && rows_grid(s, tile, s.cog())[0] <= gpu.limits.max_compute_workgroups_per_dimension;
    (by_rows(s) && fits).then_some(tile)
}

/// The 3x3 stride-1 forward over runs of four pixels (the shader's forward_rows), tile.tm
/// output channels per lane (in fours); with `bn`, the eval epilogue (forward_rows_bn).
#[allow(clippy::too_many_arguments)]
pub fn forward_rows(gpu: &Gpu, s: &ConvShape, sl: Slices, tile: Tile, x: &Tensor, w: &Tensor, bn: Option<&BnEval>, y: &Tensor) -> Vec<Launch> {
    assert!(by_rows(s) && tile.tm % 4 == 0, "forward_rows: {s:?} with {tile:?} is not 3x3, stride 1, in fours");
    let (wt, uniform, lw) = weights_by_input(gpu, s, w);
    let grid = rows_grid(s, tile, s.cog());
    let mut l = match bn {
        None => gpu.launch("conv.forward", &weight_spec(tile, "forward_rows", uniform), &params_with(gpu, s, 1, s.n, false, sl), &[x, &wt, y], grid),
        Some(bn) => {
            let p = params_with(gpu, s, 1, s.n, bn.relu, sl);
            gpu.launch("conv.forward_bn", &weight_spec(tile, "forward_rows_bn", uniform), &p, &[x, &wt, y, bn.mean, bn.var, bn.gamma, bn.beta], grid)
        }
    };
    l.flops = 2.0 * s.macs();
    vec![lw, l]
}

pub fn forward_tiled(gpu: &Gpu, s: &ConvShape, tile: Tile, x: &Tensor, w: &Tensor, y: &Tensor) -> Launch {
    let (rows, cols) = (s.cog(), s.n * s.oh() * s.ow());
    let mut l = gpu.launch("conv.forward", &spec(tile, "forward"), &params(gpu, s, 1, s.n), &[x, w, y], tile.grid(rows, cols, s.groups));
    l.flops = 2.0 * s.macs();
    l
}

/// benches/tiles.rs: 1x1 convs with 96 or more output channels run 1.2-1.5x faster with
/// lanes over output channels and the pixels uniform (the shader's forward_by_pixel).
fn by_pixel(s: &ConvShape) -> Option<Tile> {
    (s.k == 1 && s.cog() >= 96).then_some(Tile { tm: 8, nv: 2, wg: 8 })
}

/// The forward with lanes over output channels and the pixels uniform.
pub fn forward_by_pixel(gpu: &Gpu, s: &ConvShape, tile: Tile, x: &Tensor, w: &Tensor, y: &Tensor) -> Launch {
    let mut l = gpu.launch("conv.forward", &spec(tile, "forward_by_pixel"), &params(gpu, s, 1, s.n), &[x, w, y], by_pixel_grid(s, tile));
    l.flops = 2.0 * s.macs();
    l
}

fn by_pixel_grid(s: &ConvShape, tile: Tile) -> [u32; 3] {
    let (rows, cols) = (s.cog(), s.n * s.oh() * s.ow());
    [(rows as u32).div_ceil(tile.tm * tile.wg), (cols as u32).div_ceil(tile.cols()), s.groups as u32]
}

/// Eval: y = BN(conv(x, w)) (+ ReLU) in one pass, reading and writing channel slices.
pub fn forward_bn(gpu: &Gpu, s: &ConvShape, sl: Slices, x: &Tensor, w: &Tensor, bn: &BnEval, y: &Tensor) -> Vec<Launch> {
    if let (Some(d), true) = (dense(s), sl == Slices::whole(s)) {
        return super::linear::dense_forward_bn(gpu, d, x, w, bn, y);
    }
    if let (Some(_), true) = (pointwise(s), sl == Slices::whole(s)) {
        return forward_pointwise_bn(gpu, s, POINTWISE_TILE, x, w, bn, y);
    }
    if tiny_map(s) {
        return forward_tiny(gpu, s, sl, x, w, Some(bn), y);
    }
    if let Some(tile) = rows_tile(gpu, s) {
        return forward_rows(gpu, s, sl, tile, x, w, Some(bn), y);
    }
    let (rows, cols) = (s.cog(), s.n * s.oh() * s.ow());
    let wt_tile = forward_wt_tile(gpu, s).filter(|_| by_pixel(s).is_none());
    let tile = wt_tile.unwrap_or(Tile::for_forward(rows, cols));
    let mut launches = vec![];
    let wt = wt_tile.map(|_| {
        let (wt, uniform, l) = weights_by_input(gpu, s, w);
        launches.push(l);
        (wt, uniform)
    });
    let (spec, grid, w) = match (by_pixel(s), &wt) {
        (Some(tile), _) => (spec(tile, "forward_by_pixel_bn"), by_pixel_grid(s, tile), w),
        (None, Some((wt, uniform))) => (weight_spec(tile, "forward_wt_bn", *uniform), tile.grid(rows, cols, s.groups), wt),
        (None, None) => (spec(tile, "forward_bn"), tile.grid(rows, cols, s.groups), w),
    };
    let p = params_with(gpu, s, 1, s.n, bn.relu, sl);
    let mut l = gpu.launch("conv.forward_bn", &spec, &p, &[x, w, y, bn.mean, bn.var, bn.gamma, bn.beta], grid);
    l.flops = 2.0 * s.macs();
    launches.push(l);
    launches
}

/// dx[n, cin, h, w] from dy[n, cout, oh, ow] and the weights.
pub fn backward_data(gpu: &Gpu, s: &ConvShape, dy: &Tensor, w: &Tensor, dx: &Tensor) -> Vec<Launch> {
    backward_data_sharing(gpu, s, dy, w, &SharedLayout::default(), dx)
}

/// backward_data reading what this step's forward_sharing laid out, where it did.
pub fn backward_data_sharing(gpu: &Gpu, s: &ConvShape, dy: &Tensor, w: &Tensor, shared: &SharedLayout, dx: &Tensor) -> Vec<Launch> {
    if let Some(d) = dense(s) {
        return super::linear::dense_backward_data(gpu, d, dy, w, dx);
    }
    if pointwise(s).is_some() {
        return vec![backward_data_pointwise(gpu, s, POINTWISE_TILE, dy, w, dx)];
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
    if s.cig() % 4 == 0 && s.oh() * s.ow() > 1 {
        return backward_data_wt(gpu, s, Tile { tm: rows_per_lane(gpu, s.cig(), s), nv: 2, wg: 8 }, dy, w, dx);
    }
    vec![backward_data_tiled(gpu, s, Tile::for_backward_data(s.cig(), backward_data_columns(s).0), dy, w, dx)]
}

/// The columns (input pixels) one launch of backward_data covers, and the parity classes
/// per group: stride 2 splits the pixels by (row, column) parity, see the shader.
fn backward_data_columns(s: &ConvShape) -> (usize, usize) {
    if s.stride == 2 { (s.n * s.h.div_ceil(2) * s.w.div_ceil(2), 4) } else { (s.n * s.h * s.w, 1) }
}

/// The input gradient reading the weights transposed to [g][co][tap][ci], four input
/// channels per load (the shader's backward_data_wt; input channels per group and tile rows
/// in fours). The transpose is a `weight_layout` launch.
pub fn backward_data_wt(gpu: &Gpu, s: &ConvShape, tile: Tile, dy: &Tensor, w: &Tensor, dx: &Tensor) -> Vec<Launch> {
    assert!(s.cig() % 4 == 0 && tile.tm % 4 == 0, "backward_data_wt: {s:?} with {tile:?} is not in fours");
    let (wt, uniform, lw) = weights_by_output(gpu, s, w);
    let (cols, classes) = backward_data_columns(s);
    let mut l = gpu.launch("conv.backward_data", &weight_spec(tile, "backward_data_wt", uniform), &params(gpu, s, 1, s.n), &[dy, &wt, dx], tile.grid(s.cig(), cols, s.groups * classes));
    l.flops = 2.0 * s.macs();
    vec![lw, l]
}

/// backward_data_rows' tile where it runs this conv: as rows_tile with the roles of the
/// channels swapped (input channels per group in fours).
fn backward_rows_tile(gpu: &Gpu, s: &ConvShape) -> Option<Tile> {
    let swapped = ConvShape { cin: s.cout, cout: s.cin, ..*s };
    rows_tile(gpu, &swapped)
}

/// The 3x3 stride-1 input gradient over runs of four pixels (the shader's backward_data_rows):
/// the forward_rows tile with the kernel flipped, reading the weights as backward_data_wt
/// does; tile.tm input channels per lane (in fours).
pub fn backward_data_rows(gpu: &Gpu, s: &ConvShape, tile: Tile, dy: &Tensor, w: &Tensor, dx: &Tensor) -> Vec<Launch> {
    assert!(row_runs(s) && s.cig() % 4 == 0 && tile.tm % 4 == 0, "backward_data_rows: {s:?} with {tile:?} is not 3x3, stride 1, in fours");
    let (wt, uniform, lw) = weights_by_output(gpu, s, w);
    let grid = rows_grid(s, tile, s.cig());
    let mut l = gpu.launch("conv.backward_data", &weight_spec(tile, "backward_data_rows", uniform), &params(gpu, s, 1, s.n), &[dy, &wt, dx], grid);
    l.flops = 2.0 * s.macs();
    vec![lw, l]
}

pub fn backward_data_tiled(gpu: &Gpu, s: &ConvShape, tile: Tile, dy: &Tensor, w: &Tensor, dx: &Tensor) -> Launch {
    let (cols, classes) = backward_data_columns(s);
    let grid = tile.grid(s.cig(), cols, s.groups * classes);
    let mut l = gpu.launch("conv.backward_data", &spec(tile, "backward_data"), &params(gpu, s, 1, s.n), &[dy, w, dx], grid);
    l.flops = 2.0 * s.macs();
    l
}

/// How many batch slices the weight gradient's reduction is split into: enough invocations
/// to fill the device, each slice still a long reduction.
pub fn weight_grad_splits(s: &ConvShape) -> usize {
    weight_grad_splits_for(s, Tile::for_backward_weight(s.cog(), s.cig() * s.k * s.k))
}

fn weight_grad_splits_for(s: &ConvShape, tile: Tile) -> usize {
    splits_to_fill(s, tile, tile.grid(s.cog(), s.cig() * s.k * s.k, s.groups))
}

/// The batch slices that bring a weight-gradient launch whose unsplit grid is `grid` to about
/// 512 invocations, each slice still summing over 256 pixels or more.
fn splits_to_fill(s: &ConvShape, tile: Tile, grid: [u32; 3]) -> usize {
    let invocations = (grid[0] * tile.wg * grid[1] * grid[2]) as usize;
    let max_by_work = (s.n * s.oh() * s.ow() / 256).max(1);
    (512 / invocations.max(1)).clamp(1, s.n).min(max_by_work)
}

/// dw[cout, cin/groups, k, k] = sum over the batch of dy * x. When the reduction is split,
/// partial sums go to a scratch tensor (allocated here, kept alive by the launches' bind
/// groups) and a second launch adds them in a fixed order.
pub fn backward_weight(gpu: &Gpu, s: &ConvShape, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Vec<Launch> {
    if let Some(d) = dense(s) {
        return vec![super::linear::dense_backward_weight(gpu, d, dy, x, dw)];
    }
    if pointwise(s).is_some() && s.cin % 4 == 0 && s.cout % 4 == 0 {
        return backward_weight_pointwise(gpu, s, dy, x, dw);
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
    if s.cog() % 4 == 0 && s.cog() >= 8 {
        if s.cig() % 4 == 0 && (s.stride == 1 || s.groups == 1) {
            return backward_weight_nhwc(gpu, s, Tile { tm: 8, nv: 2, wg: 8 }, dy, x, dw);
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
    let grid_for = |splits: usize| [(s.cog() as u32).div_ceil(tile.tm * tile.wg), (kk * s.cig().div_ceil(tile.cols() as usize)) as u32, (s.groups * splits) as u32];
    let splits = splits_to_fill(s, tile, grid_for(1));
    split_weight_grad(gpu, s, "backward_weight_by_tap", tile, splits, grid_for, dy, x, dw)
}

/// The weight gradient of a 3x3 conv with all nine taps in each lane (see the shader's
/// backward_weight_3x3); tile.tm output channels per lane, 4 * tile.nv input channels per workgroup.
pub fn backward_weight_3x3(gpu: &Gpu, s: &ConvShape, tile: Tile, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Vec<Launch> {
    assert_eq!(s.k, 3, "backward_weight_3x3 on a {0}x{0} kernel", s.k);
    let grid_for = |splits: usize| [(s.cog() as u32).div_ceil(tile.tm * tile.wg), s.cig().div_ceil(tile.cols() as usize) as u32, (s.groups * splits) as u32];
    let splits = splits_to_fill(s, tile, grid_for(1));
    split_weight_grad(gpu, s, "backward_weight_3x3", tile, splits, grid_for, dy, x, dw)
}

/// The weight gradient of a 3x3 stride-1 conv on maps whose width comes in fours, straight
/// from NCHW (the shader's backward_weight_rows): tile.tm output channels x tile.nv input
/// channels x nine taps per lane.
pub fn backward_weight_rows(gpu: &Gpu, s: &ConvShape, tile: Tile, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Vec<Launch> {
    assert!(row_runs(s), "backward_weight_rows: {s:?} is not 3x3, stride 1, width in fours");
    let grid_for = |splits: usize| [(s.cig() as u32).div_ceil(tile.nv).div_ceil(tile.wg), (s.cog() as u32).div_ceil(tile.tm), (s.groups * splits) as u32];
    let splits = splits_to_fill(s, tile, grid_for(1));
    split_weight_grad(gpu, s, "backward_weight_rows", tile, splits, grid_for, dy, x, dw)
}

/// The weight gradient reading dy transposed image by image to [n][pixel][cout], four
/// output channels per load (the shader's backward_weight_dyt; output channels per group and
/// tile rows in fours).
pub fn backward_weight_dyt(gpu: &Gpu, s: &ConvShape, tile: Tile, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Vec<Launch> {
    assert!(s.cog() % 4 == 0 && tile.tm % 4 == 0, "backward_weight_dyt: {s:?} with {tile:?} is not in fours");
    let (dyt, transpose) = super::linear::transposed_each(gpu, (s.n, s.cout, s.oh() * s.ow()), dy, "conv output gradient, NHWC");
    let (rows, cols) = (s.cog(), s.cig() * s.k * s.k);
    let mut launches = vec![transpose];
    launches.extend(split_weight_grad(gpu, s, "backward_weight_dyt", tile, weight_grad_splits_for(s, tile), |splits| tile.grid(rows, cols, s.groups * splits), &dyt, x, dw));
    launches
}

/// The weight gradient reading both dy and x in NHWC, four channels per load each (the
/// shader's backward_weight_nhwc; output and input channels per group and tile rows in fours).
pub fn backward_weight_nhwc(gpu: &Gpu, s: &ConvShape, tile: Tile, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Vec<Launch> {
    assert!(s.cog() % 4 == 0 && s.cig() % 4 == 0 && tile.tm % 4 == 0, "backward_weight_nhwc: {s:?} with {tile:?} is not in fours");
    let (dyt, ldy) = super::linear::transposed_each(gpu, (s.n, s.cout, s.oh() * s.ow()), dy, "conv output gradient, NHWC");
    let (xt, lx) = super::linear::transposed_each(gpu, (s.n, s.cin, s.h * s.w), x, "conv input, NHWC");
    let (rows, cols) = (s.cog(), s.cig() * s.k * s.k);
    let mut launches = vec![ldy, lx];
    launches.extend(split_weight_grad(gpu, s, "backward_weight_nhwc", tile, weight_grad_splits_for(s, tile), |splits| tile.grid(rows, cols, s.groups * splits), &dyt, &xt, dw));
    launches
}

pub fn backward_weight_tiled(gpu: &Gpu, s: &ConvShape, tile: Tile, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Vec<Launch> {
    let (rows, cols) = (s.cog(), s.cig() * s.k * s.k);
    split_weight_grad(gpu, s, "backward_weight", tile, weight_grad_splits_for(s, tile), |splits| tile.grid(rows, cols, s.groups * splits), dy, x, dw)
}

/// The weight-gradient launch over `splits` batch slices, plus the fixed-order sum of the
/// partial results when there is more than one.
#[allow(clippy::too_many_arguments)]
fn split_weight_grad(gpu: &Gpu, s: &ConvShape, entry: &'static str, tile: Tile, splits: usize, grid_for: impl Fn(usize) -> [u32; 3], dy: &Tensor, x: &Tensor, dw: &Tensor) -> Vec<Launch> {
    let n_per = s.n.div_ceil(splits);
    let splits = s.n.div_ceil(n_per);
    let p = params(gpu, s, splits, n_per);
    let grid = grid_for(splits);
    if splits == 1 {
        let mut l = gpu.launch("conv.backward_weight", &spec(tile, entry), &p, &[dy, x, dw], grid);
        l.flops = 2.0 * s.macs();
        return vec![l];
    }
    let partial = gpu.zeros(&[splits, dw.len()], "conv.weight_grad_partial");
    let mut l = gpu.launch("conv.backward_weight", &spec(tile, entry), &p, &[dy, x, &partial], grid);
    l.flops = 2.0 * s.macs();
    let sum = gpu.launch("conv.sum_splits", &spec(FLAT_TILE, "sum_splits"), &p, &[&partial, dw], crate::gpu::grid_1d(dw.len(), FLAT_TILE.wg));
    vec![l, sum]
}
