//! Matrix multiply (shaders/matmul.wgsl, the plain GEMM) and the linear layer.

use super::conv::{self, ConvShape, Tile};
use crate::gpu::{Access, Gpu, KernelSpec, Launch, Tensor};
use Access::{Read, ReadWrite};

/// The file, then the BN epilogue its *_bn entries share with conv2d.wgsl (after it, so line
/// numbers in errors stay true).
const SOURCE: &str = concat!(include_str!("../../shaders/matmul.wgsl"), "\n", include_str!("../../shaders/bn_epilogue.wgsl"));
/// The subgroup variants (Gpu::subgroups) with matmul.wgsl after them: their file first, so
/// that its line numbers stay true.
const SUBGROUP_SOURCE: &str = concat!(include_str!("../../shaders/matmul_subgroup.wgsl"), "\n", include_str!("../../shaders/matmul.wgsl"), "\n", include_str!("../../shaders/bn_epilogue.wgsl"));
const BINDINGS: &[Access] = &[Read, Read, ReadWrite];
const BN_BINDINGS: &[Access] = &[Read, Read, ReadWrite, Read, Read, Read, Read];
/// matmul_tn4's with A (binding 1) in a uniform binding (see a_uniform).
const UNIFORM_A_BINDINGS: &[Access] = &[Access::Uniform, Read, ReadWrite];
const UNIFORM_A_BN_BINDINGS: &[Access] = &[Access::Uniform, Read, ReadWrite, Read, Read, Read, Read];

pub fn kernels() -> Vec<KernelSpec> {
    let t = Tile { tm: 4, nv: 1, wg: 8 };
    let mut v: Vec<KernelSpec> = ["matmul", "matmul_nn4", "matmul_tn4", "matmul_tn4_add", "matmul_nt4", "matmul_nt4_images"].into_iter().map(|e| t.spec("matmul.wgsl", SOURCE, e, BINDINGS)).collect();
    v.push(t.spec("matmul.wgsl", SOURCE, "matmul_nt4_bn", BN_BINDINGS));
    v.push(t.spec("matmul.wgsl", SOURCE, "matmul_nn4_bn", BN_BINDINGS));
    v.push(t.spec("matmul.wgsl", SOURCE, "matmul_tn4_bn", BN_BINDINGS));
    v.push(t.spec("matmul.wgsl", SOURCE, "matmul_nn4_bn_cols", BN_BINDINGS));
    v.push(t.spec("matmul.wgsl", SOURCE, "matmul_tn4_bn_cols", BN_BINDINGS));
    v.push(t.spec("matmul.wgsl", SOURCE, "transpose4", BINDINGS));
    v.push(t.spec("matmul.wgsl", SOURCE, "transpose1", BINDINGS));
    v.push(t.spec("matmul.wgsl", SOURCE, "transpose_rows4", BINDINGS));
    for e in ["matmul_nt4_images_sg", "matmul_tn4_sg", "matmul_tn4_add_sg", "matmul_nt4_sg", "matmul_nn4_sg"] {
        v.push(SUBGROUP_TILE.spec("matmul_subgroup.wgsl", SUBGROUP_SOURCE, e, BINDINGS));
    }
    for e in ["matmul_nt4_bn_sg", "matmul_nn4_bn_sg"] {
        v.push(SUBGROUP_TILE.spec("matmul_subgroup.wgsl", SUBGROUP_SOURCE, e, BN_BINDINGS));
    }
    v
}

/// The tile of the subgroup kernels: 8 rows (one per lane of an 8-lane subgroup) x 8 columns.
const SUBGROUP_TILE: Tile = Tile { tm: 8, nv: 2, wg: 8 };

/// The spec of `entry`, or of its subgroup variant (`entry`_sg in matmul_subgroup.wgsl) where
/// the adapter has subgroups (Gpu::subgroups), the workgroup is one 8-lane subgroup and the
/// tile's rows are ones the variant handles (`rows`).
fn spec_sg(gpu: &Gpu, tile: Tile, entry: &'static str, entry_sg: &'static str, rows: &[u32], bindings: &'static [Access]) -> KernelSpec {
    match by_subgroup(gpu, tile, rows) {
        true => tile.spec("matmul_subgroup.wgsl", SUBGROUP_SOURCE, entry_sg, bindings),
        false => tile.spec("matmul.wgsl", SOURCE, entry, bindings),
    }
}

/// Whether a subgroup variant that handles `rows` rows per tile runs `tile` on this adapter.
fn by_subgroup(gpu: &Gpu, tile: Tile, rows: &[u32]) -> bool {
    gpu.subgroups && tile.wg == SUBGROUP_TILE.wg && rows.contains(&tile.tm)
}

/// Row counts per tile that the subgroup variants handle: tn4_tile_sg's, nt4_tile_sg's and
/// nn4_tile_sg's.
const TN4_SG_ROWS: &[u32] = &[4, 8, 16, 32];
const NT4_SG_ROWS: &[u32] = &[8, 16];
const NN4_SG_ROWS: &[u32] = &[8, 16];

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

/// The GEMM uniform: sizes, A's and B's strides, the BN epilogue's ReLU flag and eps,
/// matmul_nn4's column layout and the batch offsets.
fn gemm_params(gpu: &Gpu, (m, n, k): (usize, usize, usize), a: Strides, b: Strides, relu: bool, cols: Columns, z: Batches) -> std::sync::Arc<wgpu::Buffer> {
    let v = [m, n, k, a.row, a.col, b.row, b.col, relu as usize].map(|x| x as u32);
    let w = [cols.hw, cols.b_img, cols.c_img, cols.c_row, z.a_z, z.b_z, z.c_z, z.a_off, z.c_off, 0, 0].map(|x| x as u32);
    gpu.params(&[&v[..], &[crate::gpu::f(super::batchnorm::EPS)], &w[..]].concat())
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
    let spec = tile.spec("matmul.wgsl", SOURCE, "matmul", BINDINGS);
    let mut l = gpu.launch("matmul", &spec, &gemm_params(gpu, (m, n, k), a.1, b.1, false, Columns::matrix(n), Batches::one()), &[a.0, b.0, c], tile.grid(m, n, 1));
    l.flops = 2.0 * (m * n * k) as f64;
    l
}

/// The dense kernels' tiles (benches/tiles.rs dn_*, the head's 1024x1024 and conv_last's
/// 384->1024 at batch 64): the forward (matmul_nt4) wants 16 rows x 8 columns per lane, the
/// two gradients (matmul_nn4) 8 x 8, 1.3-2x faster there than 16 x 8.
pub const DENSE_TILE: Tile = Tile { tm: 16, nv: 2, wg: 8 };
pub const DENSE_GRADIENT_TILE: Tile = Tile { tm: 8, nv: 2, wg: 8 };

/// c[m, n] = a[m, k] * b[k, n] with b's columns laid out as `cols` says, in fours (b read
/// as vec4); a is addressed through strides (uniform rows; read as vec4s of four rows by
/// matmul_tn4 where a is stored transposed, see a_in_row_fours).
pub fn matmul_nn4(gpu: &Gpu, tile: Tile, mnk: (usize, usize, usize), a: (&Tensor, Strides), b: &Tensor, cols: Columns, c: &Tensor) -> Launch {
    nn4_launch(gpu, tile, mnk, a, b, cols, Batches::one(), None, c)
}

/// matmul_nn4 for each of `z.count` batches (see Batches).
#[allow(clippy::too_many_arguments)]
pub fn matmul_nn4_batched(gpu: &Gpu, tile: Tile, mnk: (usize, usize, usize), a: (&Tensor, Strides), b: &Tensor, cols: Columns, z: Batches, c: &Tensor) -> Launch {
    nn4_launch(gpu, tile, mnk, a, b, cols, z, None, c)
}

/// Eval: c = BN(a b) (+ ReLU) with the running statistics per row (output channel).
pub fn matmul_nn4_bn(gpu: &Gpu, tile: Tile, mnk: (usize, usize, usize), a: (&Tensor, Strides), b: &Tensor, cols: Columns, bn: &conv::BnEval, c: &Tensor) -> Launch {
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

/// Whether matmul_tn4 can read A from a uniform binding (Access::Uniform: lavapipe loads
/// it branch-free, 1.2-1.5x faster; benches/tiles.rs): all of A's values lie in one (a small
/// weight, or a weight's transposed copy, which transposed_weight pads for this).
fn a_uniform(gpu: &Gpu, (m, k): (usize, usize), a: (&Tensor, Strides), z: Batches) -> bool {
    let extent = z.a_off + z.count.saturating_sub(1) * z.a_z + (m.max(1) - 1) * a.1.row + (k.max(1) - 1) * a.1.col + 1;
    gpu.uniform_view(a.0, extent)
}

#[allow(clippy::too_many_arguments)]
fn nn4_launch(gpu: &Gpu, tile: Tile, (m, n, k): (usize, usize, usize), a: (&Tensor, Strides), b: &Tensor, cols: Columns, z: Batches, bn: Option<&conv::BnEval>, c: &Tensor) -> Launch {
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
            let bindings = if uniform { UNIFORM_A_BINDINGS } else { BINDINGS };
            // With subgroups A's rows come from broadcasts (matmul_subgroup.wgsl), A in a uniform
            // binding or not: benches/shares.rs, 192->96 1x1 (A in storage) 21 -> 27 GFLOP/s,
            // the best GEMM (A uniform) 28 -> 30.
            let spec = match z.accumulate {
                true => spec_sg(gpu, tile, "matmul_tn4_add", "matmul_tn4_add_sg", TN4_SG_ROWS, bindings),
                false => spec_sg(gpu, tile, "matmul_tn4", "matmul_tn4_sg", TN4_SG_ROWS, bindings),
            };
            gpu.launch("dense.tn4", &spec, &p, &[a.0, b, c], tile.grid(m, n, z.count))
        }
        None if rows_sg => {
            let spec = tile.spec("matmul_subgroup.wgsl", SUBGROUP_SOURCE, "matmul_nn4_sg", if uniform { UNIFORM_A_BINDINGS } else { BINDINGS });
            gpu.launch("dense.nn4", &spec, &p, &[a.0, b, c], tile.grid(m, n, z.count))
        }
        None => gpu.launch("dense.nn4", &tile.spec("matmul.wgsl", SOURCE, "matmul_nn4", BINDINGS), &p, &[a.0, b, c], tile.grid(m, n, z.count)),
        Some(bn) => {
            let bindings = if uniform { UNIFORM_A_BN_BINDINGS } else { BN_BINDINGS };
            let (entry, spec) = match (tn4, rows_sg) {
                (true, _) => ("matmul_tn4_bn", tile.spec("matmul.wgsl", SOURCE, "matmul_tn4_bn", bindings)),
                (false, true) => ("matmul_nn4_bn", tile.spec("matmul_subgroup.wgsl", SUBGROUP_SOURCE, "matmul_nn4_bn_sg", bindings)),
                (false, false) => ("matmul_nn4_bn", tile.spec("matmul.wgsl", SOURCE, "matmul_nn4_bn", bindings)),
            };
            gpu.launch(entry.replace("matmul_", "dense."), &spec, &p, &[a.0, b, c, bn.mean, bn.var, bn.gamma, bn.beta], tile.grid(m, n, 1))
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
pub fn matmul_nt4_bn(gpu: &Gpu, tile: Tile, (m, n, k): (usize, usize, usize), a: &Tensor, b: &Tensor, bn: &conv::BnEval, c: &Tensor) -> Launch {
    assert!(a.len() >= m * k && b.len() >= n * k, "matmul_nt4_bn: operands too short");
    matmul_nt4_strided(gpu, tile, (m, n, k), (a, k), (b, k), (c, n), Batches::one(), Some((bn, 1)))
}

/// c[m, n] = a[m, k] * b[n, k]^T for each of `z.count` batches, each operand given with the
/// distance between its rows; with `bn = Some((bn, hw))` BN (+ ReLU) is applied per column
/// group of hw columns (one output channel's pixels).
#[allow(clippy::too_many_arguments)]
pub fn matmul_nt4_strided(gpu: &Gpu, tile: Tile, (m, n, k): (usize, usize, usize), a: (&Tensor, usize), b: (&Tensor, usize), c: (&Tensor, usize), z: Batches, bn: Option<(&conv::BnEval, usize)>) -> Launch {
    let fours = [k, a.1, b.1, z.a_z, z.b_z, z.a_off].iter().all(|v| v % 4 == 0);
    assert!(fours, "matmul_nt4: k = {k}, row strides and batch offsets must be multiples of 4");
    let cols = Columns { hw: bn.map_or(1, |b| b.1), c_row: c.1, ..Columns::matrix(n) };
    let p = gemm_params(gpu, (m, n, k), Strides::rows(a.1), Strides::transposed(b.1), bn.is_some_and(|b| b.0.relu), cols, z);
    let grid = tile.grid(m, n, z.count);
    let mut l = match bn {
        None => gpu.launch("dense.nt4", &spec_sg(gpu, tile, "matmul_nt4", "matmul_nt4_sg", NT4_SG_ROWS, BINDINGS), &p, &[a.0, b.0, c.0], grid),
        Some((bn, _)) => {
            let spec = spec_sg(gpu, tile, "matmul_nt4_bn", "matmul_nt4_bn_sg", NT4_SG_ROWS, BN_BINDINGS);
            gpu.launch("dense.nt4_bn", &spec, &p, &[a.0, b.0, c.0, bn.mean, bn.var, bn.gamma, bn.beta], grid)
        }
    };
    l.flops = 2.0 * (m * n * k * z.count) as f64;
    l
}

/// A dense layer y[batch, out] = x[batch, in] w[out, in]^T with in % 4 == 0: its forward,
/// input gradient and weight gradient as vec4 GEMMs (a 1x1 conv on 1x1 maps is one too).
/// With subgroups the forward is matmul_nt4_sg and the input gradient matmul_nn4_sg, both
/// reading x, dy and w as they lie. Without, where batch, in and out come in fours, every one
/// of them runs as matmul_tn4 (A read as vec4s of four rows), the forward and input gradient
/// after transposing their operands (4x4-block copies, a few percent of the GEMM); otherwise
/// as matmul_nt4 / matmul_nn4.
pub fn dense_forward(gpu: &Gpu, (batch, fin, fout): (usize, usize, usize), x: &Tensor, w: &Tensor, y: &Tensor) -> Vec<Launch> {
    // With subgroups matmul_nt4 reads x's rows through broadcasts as cheaply as matmul_tn4
    // reads a transposed copy, so no copy is made: the head's 1024 -> 1024 layer (forward and
    // backward) 22.6-30.9 -> 16.1-17.3 ms per step in two profiled pairs.
    if ![batch, fin, fout].iter().all(|v| v % 4 == 0) || by_subgroup(gpu, DENSE_TILE, NT4_SG_ROWS) {
        return vec![matmul_nt4(gpu, DENSE_TILE, (batch, fout, fin), x, w, y)];
    }
    let (wt, lw) = transposed_weight(gpu, (fout, fin), w);
    if let Some(blocks) = by_uniform_row_blocks(gpu, (batch, fout, fin), x, &wt, Columns::matrix(fout), y) {
        return [vec![lw], blocks].concat();
    }
    let (xt, lx) = transposed(gpu, (batch, fin), x, "dense input transposed");
    vec![lw, lx, matmul_nn4(gpu, DENSE_GRADIENT_TILE, (batch, fout, fin), (&xt, Strides::transposed(batch)), &wt, Columns::matrix(fout), y)]
}

/// Eval: y = BN(x w^T) (+ ReLU) with BN per output channel (column), reading a transposed
/// copy of w (the transpose is marked `weight_layout`: eval graphs run it once per change of
/// the weights) and, where the batch comes in fours, a transposed x (matmul_tn4_bn_cols);
/// with subgroups neither: matmul_nt4_bn_sg reads x and w as they lie.
pub fn dense_forward_bn(gpu: &Gpu, (batch, fin, fout): (usize, usize, usize), x: &Tensor, w: &Tensor, bn: &conv::BnEval, y: &Tensor) -> Vec<Launch> {
    // as dense_forward: with subgroups x and w are read as they lie (inference +6-12% in three
    // pairs of `spgnet bench`)
    if fout % 4 != 0 || by_subgroup(gpu, DENSE_TILE, NT4_SG_ROWS) {
        return vec![matmul_nt4_bn(gpu, DENSE_TILE, (batch, fout, fin), x, w, bn, y)];
    }
    let (wt, lw) = transposed_weight(gpu, (fout, fin), w);
    let mut launches = vec![lw];
    let tile = DENSE_GRADIENT_TILE;
    let xt = (batch % 4 == 0).then(|| {
        let (xt, lx) = transposed(gpu, (batch, fin), x, "dense input transposed");
        launches.push(lx);
        xt
    });
    let (a, entry) = match &xt {
        Some(xt) => ((xt, Strides::transposed(batch)), "matmul_tn4_bn_cols"),
        None => ((x, Strides::rows(fin)), "matmul_nn4_bn_cols"),
    };
    let p = gemm_params(gpu, (batch, fout, fin), a.1, Strides { row: fout, col: 1 }, bn.relu, Columns::matrix(fout), Batches::one());
    let spec = tile.spec("matmul.wgsl", SOURCE, entry, BN_BINDINGS);
    let mut forward = gpu.launch(entry.replace("matmul_", "dense."), &spec, &p, &[a.0, &wt, y, bn.mean, bn.var, bn.gamma, bn.beta], tile.grid(batch, fout, 1));
    forward.flops = 2.0 * (batch * fin * fout) as f64;
    launches.push(forward);
    launches
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
    let (entry, grid) = if rows % 4 == 0 && cols % 4 == 0 {
        ("transpose4", crate::gpu::grid_1d(len / 16, tile.wg))
    } else if rows % 4 == 0 && [cols.div_ceil(tile.wg as usize), rows / 4, count].iter().all(|&g| g <= gpu.limits.max_compute_workgroups_per_dimension as usize) {
        ("transpose_rows4", [(cols as u32).div_ceil(tile.wg), (rows / 4) as u32, count as u32])
    } else {
        ("transpose1", crate::gpu::grid_1d(len, tile.wg))
    };
    gpu.launch("transpose", &tile.spec("matmul.wgsl", SOURCE, entry, BINDINGS), &p, &[a, a, t], grid)
}

/// A new tensor holding a[rows, cols]^T, and the launch that fills it.
fn transposed(gpu: &Gpu, (rows, cols): (usize, usize), a: &Tensor, label: &str) -> (Tensor, Launch) {
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
    let t = if gpu.uniform_fits(len) { gpu.zeros_with_uniform_room(len, 0, "weight transposed") } else { gpu.zeros(&[len], "weight transposed") };
    let mut l = transpose(gpu, (rows, cols), w, &t);
    l.weight_layout = true;
    (t, l)
}

/// c[m, n] = a[m, k] b[k, n] (a row-major) as matmul_tn4 launches that read A from uniform
/// bindings (Access::Uniform; 1.2-1.4x on lavapipe): A is transposed block by block to
/// [m / r][k][r], r rows per block where r * k values fill at most one uniform binding, and
/// each block is one launch over its r rows. None where no r (a multiple of 4 dividing m,
/// 8 or more) fits.
fn by_uniform_row_blocks(gpu: &Gpu, (m, n, k): (usize, usize, usize), a: &Tensor, b: &Tensor, cols: Columns, c: &Tensor) -> Option<Vec<Launch>> {
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
        launches.push(nn4_launch(gpu, DENSE_GRADIENT_TILE, (r, n, k), (&block, Strides::transposed(r)), b, cols, z, None, c));
    }
    Some(launches)
}

/// c[m, n] = sum over k of at[k, m] b[k, n] (at and b row-major, as NHWC copies are) where
/// at's rows do not all fit one uniform binding: k is cut into chunks whose rows of at do,
/// each chunk one matmul_tn4 reading at through a uniform binding and adding into c (the
/// first overwriting it; chunk by chunk, so the sum's order is fixed). `at` must leave a
/// uniform binding's room after its last row (`Gpu::zeros_with_uniform_room`). None where
/// that would take more than 16 chunks or the columns are too few to pay a launch a chunk.
pub fn by_uniform_k_chunks(gpu: &Gpu, tile: Tile, (m, n, k): (usize, usize, usize), at: &Tensor, b: &Tensor, c: &Tensor) -> Option<Vec<Launch>> {
    let kc = (crate::gpu::UNIFORM_VEC4S * 4 / m.max(1)) / 8 * 8;
    let chunks = k.div_ceil(kc.max(1));
    let room = at.buffer.size() >= at.offset + 4 * (m * k + crate::gpu::UNIFORM_VEC4S * 4) as u64;
    if kc == 0 || chunks < 2 || chunks > 16 || n < 32 || m % 4 != 0 || n % 4 != 0 || !room {
        return None;
    }
    let launches = (0..chunks)
        .map(|i| {
            let (k0, kn) = (i * kc, kc.min(k - i * kc));
            let z = Batches { accumulate: i > 0, ..Batches::one() };
            nn4_launch(gpu, tile, (m, n, kn), (&at.slice(k0 * m, kn * m), Strides::transposed(m)), &b.slice(k0 * n, kn * n), Columns::matrix(n), z, None, c)
        })
        .collect();
    Some(launches)
}

/// c[m, n] = sum over `images` of a[i][m][hw] b[i][n][hw]^T: a 1x1 conv's weight gradient
/// from NCHW dy and x (rows of hw pixels, hw % 4 == 0) without the NHWC copies that
/// matmul_tn4 needs. benches/shares.rs: 1.13x the copies plus matmul_tn4 on 192->96 at 4x4,
/// batch 64, with 8 x 8 tiles; larger tiles, and A in uniform windows of whole images, lose.
pub fn matmul_nt4_images(gpu: &Gpu, tile: Tile, (m, n, images, hw): (usize, usize, usize, usize), a: &Tensor, b: &Tensor, c: &Tensor) -> Launch {
    assert!(hw % 4 == 0 && a.len() >= images * m * hw && b.len() >= images * n * hw, "matmul_nt4_images: operands of {images} x {m} / {n} x {hw} not in fours or too short");
    let z = Batches { a_z: m * hw, b_z: n * hw, ..Batches::one() };
    let cols = Columns { hw, b_row: 0, b_img: 0, c_row: n, c_img: 0 };
    let p = gemm_params(gpu, (m, n, images), Strides { row: hw, col: 1 }, Strides { row: 1, col: hw }, false, cols, z);
    // 8 rows: 16 (two broadcast rounds) was no faster in the training step (two profiled pairs)
    let spec = spec_sg(gpu, tile, "matmul_nt4_images", "matmul_nt4_images_sg", &[8], BINDINGS);
    let mut l = gpu.launch("dense.nt4_images", &spec, &p, &[a, b, c], tile.grid(m, n, 1));
    l.flops = 2.0 * (m * n * images * hw) as f64;
    l
}

/// dx[batch, in] = dy[batch, out] w[out, in]
pub fn dense_backward_data(gpu: &Gpu, (batch, fin, fout): (usize, usize, usize), dy: &Tensor, w: &Tensor, dx: &Tensor) -> Vec<Launch> {
    // With subgroups dy's rows are read as they lie (matmul_nn4_sg), without the row blocks'
    // transposed copies: 2-3 ms less per profiled step (dense GEMMs and transposes).
    if fin % 4 == 0 && a_rows_by_subgroup(gpu, DENSE_GRADIENT_TILE, fout, Strides::rows(fout), Batches::one()) {
        return vec![matmul_nn4(gpu, DENSE_GRADIENT_TILE, (batch, fin, fout), (dy, Strides::rows(fout)), w, Columns::matrix(fin), dx)];
    }
    if let Some(blocks) = by_uniform_row_blocks(gpu, (batch, fin, fout), dy, w, Columns::matrix(fin), dx) {
        return blocks;
    }
    if batch % 4 == 0 && fout % 4 == 0 {
        let (dyt, l) = transposed(gpu, (batch, fout), dy, "dense output gradient transposed");
        return vec![l, matmul_nn4(gpu, DENSE_GRADIENT_TILE, (batch, fin, fout), (&dyt, Strides::transposed(batch)), w, Columns::matrix(fin), dx)];
    }
    vec![matmul_nn4(gpu, DENSE_GRADIENT_TILE, (batch, fin, fout), (dy, Strides::rows(fout)), w, Columns::matrix(fin), dx)]
}

/// dw[out, in] = dy[batch, out]^T x[batch, in]
pub fn dense_backward_weight(gpu: &Gpu, (batch, fin, fout): (usize, usize, usize), dy: &Tensor, x: &Tensor, dw: &Tensor) -> Launch {
    matmul_nn4(gpu, DENSE_GRADIENT_TILE, (fout, fin, batch), (dy, Strides::transposed(fout)), x, Columns::matrix(fin), dw)
}

pub fn matmul(gpu: &Gpu, mnk: (usize, usize, usize), a: (&Tensor, Strides), b: (&Tensor, Strides), c: &Tensor) -> Launch {
    matmul_tiled(gpu, Tile::for_gemm(mnk.0, mnk.1), mnk, a, b, c)
}

/// A linear layer is a 1x1 convolution on 1x1 maps: the conv kernels (weights as uniform
/// rows, the batch as columns) run it about twice as fast as the strided matmul on lavapipe.
fn as_conv(batch: usize, fin: usize, fout: usize) -> ConvShape {
    ConvShape { n: batch, cin: fin, h: 1, w: 1, cout: fout, groups: 1, k: 1, stride: 1 }
}

/// y[batch, out] = x[batch, in] * w[out, in]^T  (no bias)
pub fn forward(gpu: &Gpu, x: &Tensor, w: &Tensor, y: &Tensor) -> Vec<Launch> {
    let s = as_conv(x.shape[0], x.shape[1], w.shape[0]);
    conv::forward(gpu, &s, &x.reshape(&s.input_shape()), &w.reshape(&s.weight_shape()), &y.reshape(&s.output_shape()))
}

/// Eval: y = BN1d(x w^T) (+ ReLU) in one pass (see conv::forward_bn).
pub fn forward_bn(gpu: &Gpu, x: &Tensor, w: &Tensor, bn: &conv::BnEval, y: &Tensor) -> Vec<Launch> {
    let s = as_conv(x.shape[0], x.shape[1], w.shape[0]);
    let (xs, ws, ys) = (x.reshape(&s.input_shape()), w.reshape(&s.weight_shape()), y.reshape(&s.output_shape()));
    conv::forward_bn(gpu, &s, conv::Slices::whole(&s), &xs, &ws, bn, &ys)
}

/// dx[batch, in] = dy[batch, out] * w[out, in]
pub fn backward_data(gpu: &Gpu, dy: &Tensor, w: &Tensor, dx: &Tensor) -> Vec<Launch> {
    let s = as_conv(dy.shape[0], w.shape[1], w.shape[0]);
    conv::backward_data(gpu, &s, &dy.reshape(&s.output_shape()), &w.reshape(&s.weight_shape()), &dx.reshape(&s.input_shape()))
}

/// dw[out, in] = dy[batch, out]^T * x[batch, in] (split over the batch when it is long)
pub fn backward_weight(gpu: &Gpu, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Vec<Launch> {
    let s = as_conv(dy.shape[0], x.shape[1], dy.shape[1]);
    conv::backward_weight(gpu, &s, &dy.reshape(&s.output_shape()), &x.reshape(&s.input_shape()), &dw.reshape(&s.weight_shape()))
}
