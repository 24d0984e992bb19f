//! The GEMMs every op shares (shaders/matmul.wgsl, and matmul_subgroup.wgsl where the adapter
//! has subgroups): register tiles, operand layouts, the vec4 matrix products with their BN
//! epilogues, and transposes. conv and dense build on these; nothing here knows of layers.

use super::batchnorm::{BnEval, EPS};
use crate::gpu::{grid_1d, Entry, Gpu, KernelSpec, Launch, Source, Tensor, UNIFORM_VEC4S};
use std::sync::Arc;

/// The file, then the BN epilogue its *_bn entries share with conv/forward.wgsl (after it, so line
/// numbers in errors stay true).
const SOURCE: Source = Source {
    file: "matmul.wgsl",
    text: concat!(include_str!("../../shaders/matmul.wgsl"), "\n", include_str!("../../shaders/bn_epilogue.wgsl")),
};
/// The subgroup variants (Gpu::subgroups) with matmul.wgsl after them: their file first, so
/// that its line numbers stay true.
const SUBGROUP_SOURCE: Source = Source {
    file: "matmul_subgroup.wgsl",
    text: concat!(
        include_str!("../../shaders/matmul_subgroup.wgsl"),
        "\n",
        include_str!("../../shaders/matmul.wgsl"),
        "\n",
        include_str!("../../shaders/bn_epilogue.wgsl")
    ),
};

crate::kernel_table! {
    /// The entry points of matmul.wgsl. A GEMM binds A, B and C; the *_bn epilogues also the
    /// running mean, variance, gamma and beta; the transposes bind their input twice.
    pub enum Matmul in SOURCE {
        /// Tests and benches only: the scalar GEMM over any strides.
        Scalar = "matmul" [Read, Read, ReadWrite],
        Nn4 = "matmul_nn4" [Read, Read, ReadWrite],
        Tn4 = "matmul_tn4" [Read, Read, ReadWrite],
        Tn4Add = "matmul_tn4_add" [Read, Read, ReadWrite],
        Nt4 = "matmul_nt4" [Read, Read, ReadWrite],
        Nt4Images = "matmul_nt4_images" [Read, Read, ReadWrite],
        Nt4Bn = "matmul_nt4_bn" [Read, Read, ReadWrite, Read, Read, Read, Read],
        Nn4Bn = "matmul_nn4_bn" [Read, Read, ReadWrite, Read, Read, Read, Read],
        Tn4Bn = "matmul_tn4_bn" [Read, Read, ReadWrite, Read, Read, Read, Read],
        Nn4BnCols = "matmul_nn4_bn_cols" [Read, Read, ReadWrite, Read, Read, Read, Read],
        Tn4BnCols = "matmul_tn4_bn_cols" [Read, Read, ReadWrite, Read, Read, Read, Read],
        Transpose4 = "transpose4" [Read, Read, ReadWrite],
        Transpose1 = "transpose1" [Read, Read, ReadWrite],
        TransposeRows4 = "transpose_rows4" [Read, Read, ReadWrite],
    }
}

crate::kernel_table! {
    /// The entry points of matmul_subgroup.wgsl: subgroup twins of matmul.wgsl's tiles.
    pub enum MatmulSubgroup in SUBGROUP_SOURCE {
        Nt4ImagesSg = "matmul_nt4_images_sg" [Read, Read, ReadWrite],
        Tn4Sg = "matmul_tn4_sg" [Read, Read, ReadWrite],
        Tn4AddSg = "matmul_tn4_add_sg" [Read, Read, ReadWrite],
        Nt4Sg = "matmul_nt4_sg" [Read, Read, ReadWrite],
        Nn4Sg = "matmul_nn4_sg" [Read, Read, ReadWrite],
        Nt4BnSg = "matmul_nt4_bn_sg" [Read, Read, ReadWrite, Read, Read, Read, Read],
        Nn4BnSg = "matmul_nn4_bn_sg" [Read, Read, ReadWrite, Read, Read, Read, Read],
    }
}

/// The shader's `Mm` uniform: sizes, A's and B's strides, the BN epilogue's ReLU flag and eps,
/// matmul_nn4's column layout and the batch offsets.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MmParams {
    m: u32,
    n: u32,
    k: u32,
    a_row: u32,
    a_col: u32,
    b_row: u32,
    b_col: u32,
    relu: u32,
    eps: f32,
    hw: u32,
    b_img: u32,
    c_img: u32,
    c_row: u32,
    a_z: u32,
    b_z: u32,
    c_z: u32,
    a_off: u32,
    c_off: u32,
    _pad: [u32; 2],
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
        if rows >= 16 && cols >= 32 {
            Tile { tm: 16, nv: 2, wg: 8 }
        } else {
            Tile { nv: 1, ..Self::for_gemm(rows, cols) }
        }
    }
    pub fn cols(&self) -> u32 {
        4 * self.nv
    }
    /// `kernel` compiled for this tile (the TM, NV and WG constants of the tiled shaders).
    pub fn spec<E: Entry>(&self, kernel: E) -> KernelSpec {
        KernelSpec::of(kernel).with_const("TM", self.tm).with_const("NV", self.nv).with_const("WG", self.wg)
    }
    /// Grid for `rows` x `cols` with `z` in the third dimension.
    pub fn grid(&self, rows: usize, cols: usize, z: usize) -> [u32; 3] {
        let col_tiles = (cols as u32).div_ceil(self.cols());
        [col_tiles.div_ceil(self.wg), (rows as u32).div_ceil(self.tm), z as u32]
    }
}

/// The tile of the subgroup kernels: 8 rows (one per lane of an 8-lane subgroup) x 8 columns.
pub const SUBGROUP_TILE: Tile = Tile { tm: 8, nv: 2, wg: 8 };

/// The spec of `entry`, or of its subgroup variant (`entry`_sg in matmul_subgroup.wgsl) where
/// the adapter has subgroups (Gpu::subgroups), the workgroup is one 8-lane subgroup and the
/// tile's rows are ones the variant handles (`rows`).
fn spec_sg(gpu: &Gpu, tile: Tile, kernel: Matmul, kernel_sg: MatmulSubgroup, rows: &[u32]) -> KernelSpec {
    match by_subgroup(gpu, tile, rows) {
        true => tile.spec(kernel_sg),
        false => tile.spec(kernel),
    }
}

/// Whether a subgroup variant that handles `rows` rows per tile runs `tile` on this adapter.
pub fn by_subgroup(gpu: &Gpu, tile: Tile, rows: &[u32]) -> bool {
    gpu.subgroups && tile.wg == SUBGROUP_TILE.wg && rows.contains(&tile.tm)
}

/// The tiles of the subgroup GEMMs on this adapter's cost model: a load of A through
/// broadcasts serves eight rows, while every column is a vec4 load of the lane's own, so tall,
/// narrow tiles win. 16 rows x 4 columns for matmul_nn4_sg, matmul_nt4_sg and
/// matmul_nt4_images_sg (32 x 4 spills there: 2-8x slower); for matmul_tn4_sg 32 x 4 where
/// the rows come in 32s, else 16 x 8 where they come in 16s. Against the 8 x 8 tile on
/// SPGNet's 1x1 convs and dense layers (docs/benchmarks.md): 1.1-1.8x.
pub const SG_TALL_TILE: Tile = Tile { tm: 16, nv: 1, wg: 8 };

/// The tile of a GEMM that runs on matmul_nn4_sg, matmul_nt4_sg or matmul_nt4_images_sg where
/// the adapter has subgroups: SG_TALL_TILE there, else `plain` (the plain kernels' own).
pub fn tall_tile(gpu: &Gpu, plain: Tile) -> Tile {
    if gpu.subgroups {
        SG_TALL_TILE
    } else {
        plain
    }
}

/// matmul_tn4's tile for `rows` rows: with subgroups 32 x 4 where they come in 32s, 16 x 8
/// in 16s (see SG_TALL_TILE); else, and without subgroups, `plain`.
pub fn tn4_tile(gpu: &Gpu, rows: usize, plain: Tile) -> Tile {
    match rows {
        r if gpu.subgroups && r % 32 == 0 => Tile { tm: 32, nv: 1, wg: 8 },
        r if gpu.subgroups && r % 16 == 0 => Tile { tm: 16, nv: 2, wg: 8 },
        _ => plain,
    }
}

/// Row counts per tile that the subgroup variants handle: tn4_tile_sg's, nt4_tile_sg's and
/// nn4_tile_sg's.
pub const TN4_SG_ROWS: &[u32] = &[4, 8, 16, 32];
pub const NT4_SG_ROWS: &[u32] = &[8, 16];
pub const NN4_SG_ROWS: &[u32] = &[8, 16];

/// How matmul_nn4's n columns lie in memory: images of `hw` pixels each; column (image,
/// pixel) of B in row k is at image * b_img + k * b_row + pixel, of C in row r at
/// r * c_row + image * c_img + pixel. A 1x1 conv over NCHW tensors is such a GEMM.
#[derive(Clone, Copy, Debug)]
pub struct Columns {
    pub hw: usize,
    pub b_row: usize,
    pub b_img: usize,
    pub c_row: usize,
    pub c_img: usize,
}

impl Columns {
    /// Plain row-major B [k, n] and C [m, n].
    pub fn matrix(n: usize) -> Columns {
        Columns { hw: n, b_row: n, b_img: 0, c_row: n, c_img: 0 }
    }
}

/// The vec4 GEMMs batched over workgroup_id.z (the groups of a grouped conv): batch z reads
/// A, B and writes C at z * a_z, z * b_z, z * c_z floats further on; a_off and c_off shift A
/// and C once (channel slices of wider tensors). `Batches::one()` is a plain GEMM.
#[derive(Clone, Copy, Debug)]
pub struct Batches {
    pub count: usize,
    pub a_z: usize,
    pub b_z: usize,
    pub c_z: usize,
    pub a_off: usize,
    pub c_off: usize,
    /// Add into C instead of overwriting it (matmul_tn4_add; A read as vec4s of rows only).
    pub accumulate: bool,
}

impl Batches {
    pub fn one() -> Batches {
        Batches { count: 1, a_z: 0, b_z: 0, c_z: 0, a_off: 0, c_off: 0, accumulate: false }
    }
}

/// The GEMM uniform (MmParams) of a product of `mnk` with these layouts.
fn gemm_params(
    gpu: &Gpu,
    (m, n, k): (usize, usize, usize),
    a: Strides,
    b: Strides,
    relu: bool,
    cols: Columns,
    z: Batches,
) -> Arc<wgpu::Buffer> {
    let u = |x: usize| x as u32;
    gpu.params(&MmParams {
        m: u(m),
        n: u(n),
        k: u(k),
        a_row: u(a.row),
        a_col: u(a.col),
        b_row: u(b.row),
        b_col: u(b.col),
        relu: relu as u32,
        eps: EPS,
        hw: u(cols.hw),
        b_img: u(cols.b_img),
        c_img: u(cols.c_img),
        c_row: u(cols.c_row),
        a_z: u(z.a_z),
        b_z: u(z.b_z),
        c_z: u(z.c_z),
        a_off: u(z.a_off),
        c_off: u(z.c_off),
        _pad: [0; 2],
    })
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

/// c[m, n] (row-major) = a[m, k] * b[k, n] through the scalar kernel, with a given tile
/// (tests and benches: the layers use the vec4 GEMMs).
#[cfg(any(test, feature = "testing"))]
pub fn matmul_tiled(
    gpu: &Gpu,
    tile: Tile,
    (m, n, k): (usize, usize, usize),
    a: (&Tensor, Strides),
    b: (&Tensor, Strides),
    c: &Tensor,
) -> Launch {
    let spec = tile.spec(Matmul::Scalar);
    let mut l = gpu.launch(
        "matmul",
        &spec,
        &gemm_params(gpu, (m, n, k), a.1, b.1, false, Columns::matrix(n), Batches::one()),
        &[a.0, b.0, c],
        tile.grid(m, n, 1),
    );
    l.flops = 2.0 * (m * n * k) as f64;
    l
}

/// c[m, n] = a[m, k] * b[k, n] with b's columns laid out as `cols` says, in fours (b read
/// as vec4); a is addressed through strides (uniform rows; read as vec4s of four rows by
/// matmul_tn4 where a is stored transposed, see a_in_row_fours).
pub fn matmul_nn4(
    gpu: &Gpu,
    tile: Tile,
    mnk: (usize, usize, usize),
    a: (&Tensor, Strides),
    b: &Tensor,
    cols: Columns,
    c: &Tensor,
) -> Launch {
    nn4_launch(gpu, tile, mnk, a, b, cols, Batches::one(), None, c)
}

/// matmul_nn4 for each of `z.count` batches (see Batches).
pub fn matmul_nn4_batched(
    gpu: &Gpu,
    tile: Tile,
    mnk: (usize, usize, usize),
    a: (&Tensor, Strides),
    b: &Tensor,
    cols: Columns,
    z: Batches,
    c: &Tensor,
) -> Launch {
    nn4_launch(gpu, tile, mnk, a, b, cols, z, None, c)
}

/// Eval: c = BN(a b) (+ ReLU) with the running statistics per row (output channel).
pub fn matmul_nn4_bn(
    gpu: &Gpu,
    tile: Tile,
    mnk: (usize, usize, usize),
    a: (&Tensor, Strides),
    b: &Tensor,
    cols: Columns,
    bn: &BnEval,
    c: &Tensor,
) -> Launch {
    nn4_launch(gpu, tile, mnk, a, b, cols, Batches::one(), Some(bn), c)
}

/// Whether matmul_nn4's A can be read as vec4s of four rows (matmul_tn4): A stored
/// transposed (rows contiguous) with rows, tile rows, k stride and batch offsets in fours.
/// lavapipe pays per load instruction, so this reads A with 4x fewer loads (1.3-1.6x on the
/// GEMM, benches/tiles.rs).
fn a_in_row_fours(tile: Tile, m: usize, a: Strides, z: Batches) -> bool {
    a.row == 1 && [tile.tm as usize, m, a.col, z.a_z, z.a_off].iter().all(|v| v % 4 == 0)
}

/// Whether matmul_nn4_sg runs this GEMM: subgroups, A row-major with k, its rows and batch
/// offsets in fours (read as vec4s along k), 8 or 16 rows per tile.
pub fn a_rows_by_subgroup(gpu: &Gpu, tile: Tile, k: usize, a: Strides, z: Batches) -> bool {
    by_subgroup(gpu, tile, NN4_SG_ROWS) && a.col == 1 && [k, a.row, z.a_z, z.a_off].iter().all(|v| v % 4 == 0)
}

/// `spec` with A (binding 1) in a uniform binding where `uniform` (see a_uniform).
fn a_binding(spec: KernelSpec, uniform: bool) -> KernelSpec {
    if uniform {
        spec.with_uniform(1)
    } else {
        spec
    }
}

/// Whether matmul_tn4 can read A from a uniform binding (Access::Uniform: lavapipe loads
/// it branch-free, 1.2-1.5x faster; benches/tiles.rs): all of A's values lie in one (a small
/// weight, or a weight's transposed copy, which transposed_weight pads for this).
fn a_uniform(gpu: &Gpu, (m, k): (usize, usize), a: (&Tensor, Strides), z: Batches) -> bool {
    let extent = z.a_off + z.count.saturating_sub(1) * z.a_z + (m.max(1) - 1) * a.1.row + (k.max(1) - 1) * a.1.col + 1;
    gpu.uniform_view(a.0, extent)
}

pub(crate) fn nn4_launch(
    gpu: &Gpu,
    tile: Tile,
    (m, n, k): (usize, usize, usize),
    a: (&Tensor, Strides),
    b: &Tensor,
    cols: Columns,
    z: Batches,
    bn: Option<&BnEval>,
    c: &Tensor,
) -> Launch {
    let fours = [n, cols.hw, cols.b_row, cols.b_img, z.b_z].iter().all(|v| v % 4 == 0);
    assert!(fours && n % cols.hw == 0, "matmul_nn4: {n} columns of {cols:?} are not in fours");
    assert!(bn.is_none() || z.count == 1, "matmul_nn4_bn is not batched");
    let c_fours = [cols.c_row, cols.c_img, z.c_z, z.c_off].iter().all(|v| v % 4 == 0);
    assert!(c_fours, "matmul_nn4: C ({cols:?}, {z:?}) is not in fours (it is written as vec4s)");
    assert!(!z.accumulate || (bn.is_none() && a_in_row_fours(tile, m, a.1, z)), "only matmul_tn4 adds into C");
    let p = gemm_params(gpu, (m, n, k), a.1, Strides { row: cols.b_row, col: 1 }, bn.is_some_and(|bn| bn.relu), cols, z);
    let tn4 = a_in_row_fours(tile, m, a.1, z);
    let rows_sg = !tn4 && a_rows_by_subgroup(gpu, tile, k, a.1, z);
    let uniform = (tn4 || rows_sg) && a_uniform(gpu, (m, k), a, z);
    // With A in a uniform binding the loads are cheap enough for 16 x 8 tiles: 12.3 against
    // 10.2 GFLOP/s for 8 x 8 (64x4096x256 on lavapipe), where the rows fill them.
    let tile = if uniform && m % 16 == 0 && tile.tm == 8 { Tile { tm: 16, ..tile } } else { tile };
    let mut l = match bn {
        None if tn4 => {
            // With subgroups A's rows come from broadcasts (matmul_subgroup.wgsl), A in a uniform
            // binding or not: benches/shares.rs, 192->96 1x1 (A in storage) 21 -> 27 GFLOP/s,
            // the best GEMM (A uniform) 28 -> 30.
            let spec = match z.accumulate {
                true => spec_sg(gpu, tile, Matmul::Tn4Add, MatmulSubgroup::Tn4AddSg, TN4_SG_ROWS),
                false => spec_sg(gpu, tile, Matmul::Tn4, MatmulSubgroup::Tn4Sg, TN4_SG_ROWS),
            };
            gpu.launch("gemm.tn4", &a_binding(spec, uniform), &p, &[a.0, b, c], tile.grid(m, n, z.count))
        }
        None if rows_sg => {
            gpu.launch("gemm.nn4", &a_binding(tile.spec(MatmulSubgroup::Nn4Sg), uniform), &p, &[a.0, b, c], tile.grid(m, n, z.count))
        }
        None => gpu.launch("gemm.nn4", &tile.spec(Matmul::Nn4), &p, &[a.0, b, c], tile.grid(m, n, z.count)),
        Some(bn) => {
            let (label, spec) = match (tn4, rows_sg) {
                (true, _) => ("gemm.tn4_bn", tile.spec(Matmul::Tn4Bn)),
                (false, true) => ("gemm.nn4_bn", tile.spec(MatmulSubgroup::Nn4BnSg)),
                (false, false) => ("gemm.nn4_bn", tile.spec(Matmul::Nn4Bn)),
            };
            gpu.launch(label, &a_binding(spec, uniform), &p, &[a.0, b, c, bn.mean, bn.var, bn.gamma, bn.beta], tile.grid(m, n, 1))
        }
    };
    l.flops = 2.0 * (m * n * k * z.count) as f64;
    l
}

/// c[m, n] = a[m, k] * b[n, k]^T, both row-major with k % 4 == 0 (both read as vec4).
pub fn matmul_nt4(gpu: &Gpu, tile: Tile, (m, n, k): (usize, usize, usize), a: &Tensor, b: &Tensor, c: &Tensor) -> Launch {
    assert!(a.len() >= m * k && b.len() >= n * k, "matmul_nt4: operands too short");
    matmul_nt4_strided(gpu, tile, (m, n, k), (a, k), (b, k), (c, n), Batches::one(), None)
}

/// Eval: c = BN(a b^T) (+ ReLU) with the running statistics per column (output channel).
pub fn matmul_nt4_bn(gpu: &Gpu, tile: Tile, (m, n, k): (usize, usize, usize), a: &Tensor, b: &Tensor, bn: &BnEval, c: &Tensor) -> Launch {
    assert!(a.len() >= m * k && b.len() >= n * k, "matmul_nt4_bn: operands too short");
    matmul_nt4_strided(gpu, tile, (m, n, k), (a, k), (b, k), (c, n), Batches::one(), Some((bn, 1)))
}

/// c[m, n] = a[m, k] * b[n, k]^T for each of `z.count` batches, each operand given with the
/// distance between its rows; with `bn = Some((bn, hw))` BN (+ ReLU) is applied per column
/// group of hw columns (one output channel's pixels).
pub fn matmul_nt4_strided(
    gpu: &Gpu,
    tile: Tile,
    (m, n, k): (usize, usize, usize),
    a: (&Tensor, usize),
    b: (&Tensor, usize),
    c: (&Tensor, usize),
    z: Batches,
    bn: Option<(&BnEval, usize)>,
) -> Launch {
    let fours = [k, a.1, b.1, z.a_z, z.b_z, z.a_off].iter().all(|v| v % 4 == 0);
    assert!(fours, "matmul_nt4: k = {k}, row strides and batch offsets must be multiples of 4");
    let cols = Columns { hw: bn.map_or(1, |b| b.1), c_row: c.1, ..Columns::matrix(n) };
    let p = gemm_params(gpu, (m, n, k), Strides::rows(a.1), Strides::transposed(b.1), bn.is_some_and(|b| b.0.relu), cols, z);
    let grid = tile.grid(m, n, z.count);
    let mut l = match bn {
        None => gpu.launch("gemm.nt4", &spec_sg(gpu, tile, Matmul::Nt4, MatmulSubgroup::Nt4Sg, NT4_SG_ROWS), &p, &[a.0, b.0, c.0], grid),
        Some((bn, _)) => {
            let spec = spec_sg(gpu, tile, Matmul::Nt4Bn, MatmulSubgroup::Nt4BnSg, NT4_SG_ROWS);
            gpu.launch("gemm.nt4_bn", &spec, &p, &[a.0, b.0, c.0, bn.mean, bn.var, bn.gamma, bn.beta], grid)
        }
    };
    l.flops = 2.0 * (m * n * k * z.count) as f64;
    l
}

/// t[cols, rows] = a[rows, cols]^T, both dimensions multiples of 4.
pub fn transpose(gpu: &Gpu, (rows, cols): (usize, usize), a: &Tensor, t: &Tensor) -> Launch {
    transpose_each(gpu, (1, rows, cols), a, t)
}

/// t[z, cols, rows] = a[z, rows, cols]^T for z < count (an NCHW tensor's images to NHWC):
/// 4x4 blocks per lane where both sizes come in fours, 4x1 where the rows do (channels, over
/// planes of 49 pixels), else one value per lane.
pub fn transpose_each(gpu: &Gpu, (count, rows, cols): (usize, usize, usize), a: &Tensor, t: &Tensor) -> Launch {
    let len = count * rows * cols;
    assert!(a.len() >= len && t.len() >= len, "transpose: tensors shorter than {count} x {rows} x {cols}");
    let tile = Tile { tm: 1, nv: 1, wg: 8 };
    let p = gemm_params(gpu, (rows, cols, count), Strides::rows(cols), Strides::rows(rows), false, Columns::matrix(cols), Batches::one());
    let (kernel, grid) = if rows % 4 == 0 && cols % 4 == 0 {
        (Matmul::Transpose4, grid_1d(len / 16, tile.wg))
    } else if rows % 4 == 0
        && [cols.div_ceil(tile.wg as usize), rows / 4, count].iter().all(|&g| g <= gpu.limits.max_compute_workgroups_per_dimension as usize)
    {
        (Matmul::TransposeRows4, [(cols as u32).div_ceil(tile.wg), (rows / 4) as u32, count as u32])
    } else {
        (Matmul::Transpose1, grid_1d(len, tile.wg))
    };
    gpu.launch("transpose", &tile.spec(kernel), &p, &[a, a, t], grid)
}

/// A new tensor holding a[rows, cols]^T, and the launch that fills it.
pub fn transposed(gpu: &Gpu, (rows, cols): (usize, usize), a: &Tensor, label: &str) -> (Tensor, Launch) {
    transposed_each(gpu, (1, rows, cols), a, label)
}

/// A new tensor holding each of a's `count` [rows, cols] matrices transposed, and its launch.
pub fn transposed_each(gpu: &Gpu, (count, rows, cols): (usize, usize, usize), a: &Tensor, label: &str) -> (Tensor, Launch) {
    let t = gpu.zeros(&[count, cols, rows], label);
    let l = transpose_each(gpu, (count, rows, cols), a, &t);
    (t, l)
}

/// A weight's transposed copy: its launch is marked `weight_layout`, so eval graphs run it
/// once per change of the weights (training runs it at every step, before the forward).
/// The copy is padded to a uniform binding where it fits one (a_uniform).
pub fn transposed_weight(gpu: &Gpu, (rows, cols): (usize, usize), w: &Tensor) -> (Tensor, Launch) {
    let len = rows * cols;
    let t = if gpu.uniform_fits(len) {
        gpu.zeros_with_uniform_room(len, 0, "weight transposed")
    } else {
        gpu.zeros(&[len], "weight transposed")
    };
    let mut l = transpose(gpu, (rows, cols), w, &t);
    l.weight_layout = true;
    (t, l)
}

/// c[m, n] = a[m, k] b[k, n] (a row-major) as matmul_tn4 launches that read A from uniform
/// bindings (Access::Uniform; 1.2-1.4x on lavapipe): A is transposed block by block to
/// `[m / r][k][r]`, r rows per block where r * k values fill at most one uniform binding, and
/// each block is one launch over its r rows. None where no r (a multiple of 4 dividing m,
/// 8 or more) fits.
pub fn by_uniform_row_blocks(
    gpu: &Gpu,
    tile: Tile,
    (m, n, k): (usize, usize, usize),
    a: &Tensor,
    b: &Tensor,
    cols: Columns,
    c: &Tensor,
) -> Option<Vec<Launch>> {
    if k % 4 != 0 || n % 4 != 0 {
        return None;
    }
    let align = (gpu.limits.min_uniform_buffer_offset_alignment as usize / 4).max(1);
    let r = (8..=m).rev().find(|&r| r % 4 == 0 && m % r == 0 && gpu.uniform_fits(r * k) && (r * k) % align == 0)?;
    let block_len = r * k;
    let blocks = gpu.zeros_with_uniform_room(m * k, m * k - block_len, "row blocks transposed");
    let mut launches = vec![transpose_each(gpu, (m / r, r, k), a, &blocks)];
    for i in 0..m / r {
        let block = blocks.slice(i * block_len, block_len);
        let z = Batches { c_off: i * r * cols.c_row, ..Batches::one() };
        launches.push(nn4_launch(gpu, tile, (r, n, k), (&block, Strides::transposed(r)), b, cols, z, None, c));
    }
    Some(launches)
}

/// c[m, n] = sum over k of at[k, m] b[k, n] (at and b row-major, as NHWC copies are) where
/// at's rows do not all fit one uniform binding: k is cut into chunks whose rows of at do,
/// each chunk one matmul_tn4 reading at through a uniform binding and adding into c (the
/// first overwriting it; chunk by chunk, so the sum's order is fixed). `at` must leave a
/// uniform binding's room after its last row (`Gpu::zeros_with_uniform_room`). None where
/// that would take more than 16 chunks or the columns are too few to pay a launch a chunk.
pub fn by_uniform_k_chunks(
    gpu: &Gpu,
    tile: Tile,
    (m, n, k): (usize, usize, usize),
    at: &Tensor,
    b: &Tensor,
    c: &Tensor,
) -> Option<Vec<Launch>> {
    let kc = (UNIFORM_VEC4S * 4 / m.max(1)) / 8 * 8;
    let chunks = k.div_ceil(kc.max(1));
    let room = at.buffer.size() >= at.offset + 4 * (m * k + UNIFORM_VEC4S * 4) as u64;
    if kc == 0 || !(2..=16).contains(&chunks) || n < 32 || m % 4 != 0 || n % 4 != 0 || !room {
        return None;
    }
    let launches = (0..chunks)
        .map(|i| {
            let (k0, kn) = (i * kc, kc.min(k - i * kc));
            let z = Batches { accumulate: i > 0, ..Batches::one() };
            nn4_launch(
                gpu,
                tile,
                (m, n, kn),
                (&at.slice(k0 * m, kn * m), Strides::transposed(m)),
                &b.slice(k0 * n, kn * n),
                Columns::matrix(n),
                z,
                None,
                c,
            )
        })
        .collect();
    Some(launches)
}

/// `c[m, n]` = sum over `images` of `a[i][m][hw] b[i][n][hw]^T`: a 1x1 conv's weight gradient
/// from NCHW dy and x (rows of hw pixels, hw % 4 == 0) without the NHWC copies that
/// matmul_tn4 needs. benches/shares.rs: 1.13x the copies plus matmul_tn4 on 192->96 at 4x4,
/// batch 64, with 8 x 8 tiles; larger tiles, and A in uniform windows of whole images, lose.
pub fn matmul_nt4_images(
    gpu: &Gpu,
    tile: Tile,
    (m, n, images, hw): (usize, usize, usize, usize),
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
) -> Launch {
    assert!(
        hw % 4 == 0 && a.len() >= images * m * hw && b.len() >= images * n * hw,
        "matmul_nt4_images: operands of {images} x {m} / {n} x {hw} not in fours or too short"
    );
    let z = Batches { a_z: m * hw, b_z: n * hw, ..Batches::one() };
    let cols = Columns { hw, b_row: 0, b_img: 0, c_row: n, c_img: 0 };
    let p = gemm_params(gpu, (m, n, images), Strides { row: hw, col: 1 }, Strides { row: 1, col: hw }, false, cols, z);
    let spec = spec_sg(gpu, tile, Matmul::Nt4Images, MatmulSubgroup::Nt4ImagesSg, NT4_SG_ROWS);
    let mut l = gpu.launch("gemm.nt4_images", &spec, &p, &[a, b, c], tile.grid(m, n, 1));
    l.flops = 2.0 * (m * n * images * hw) as f64;
    l
}

/// Eval: c[m, n] = BN(a[m, k] b[k, n]) (+ ReLU) with BN per column (a dense layer's output
/// channel), b = w^T row-major; a read as vec4s of four rows (matmul_tn4_bn_cols) when given
/// transposed, else row by row (matmul_nn4_bn_cols).
pub fn matmul_bn_cols(
    gpu: &Gpu,
    tile: Tile,
    (m, n, k): (usize, usize, usize),
    a: (&Tensor, Strides),
    b: &Tensor,
    bn: &BnEval,
    c: &Tensor,
) -> Launch {
    let kernel = if a.1.row == 1 { Matmul::Tn4BnCols } else { Matmul::Nn4BnCols };
    let p = gemm_params(gpu, (m, n, k), a.1, Strides { row: n, col: 1 }, bn.relu, Columns::matrix(n), Batches::one());
    let mut l = gpu.launch("gemm.bn_cols", &tile.spec(kernel), &p, &[a.0, b, c, bn.mean, bn.var, bn.gamma, bn.beta], tile.grid(m, n, 1));
    l.flops = 2.0 * (m * n * k) as f64;
    l
}

/// c = a b through the scalar kernel with the default tile (tests).
#[cfg(any(test, feature = "testing"))]
pub fn matmul(gpu: &Gpu, mnk: (usize, usize, usize), a: (&Tensor, Strides), b: (&Tensor, Strides), c: &Tensor) -> Launch {
    matmul_tiled(gpu, Tile::for_gemm(mnk.0, mnk.1), mnk, a, b, c)
}
