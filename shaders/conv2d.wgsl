// 2-D convolution, NCHW, any groups, odd square kernel k, stride s, padding p, no bias.
// Each direction is an implicit GEMM per group (the group is gid.z, never a host loop):
//   forward          rows = output channels of the group, columns = output pixels of the batch,
//                    reduction over (input channel, ky, kx)
//   backward_data    rows = input channels of the group,  columns = input pixels of the batch,
//                    reduction over (output channel, ky, kx)
//   backward_weight  rows = output channels of the group, columns = (input channel, ky, kx),
//                    reduction over the pixels of a slice of the batch (split-K, summed by sum_splits)
// Register tiling: an invocation owns TM rows x (4 * NV) columns, held as vec4 accumulators.
// lavapipe runs invocations as SIMD lanes and pays per loaded element, so large tiles and
// no workgroup memory win there (see docs); real GPUs are fine with the same shape.
// Rows and groups come from workgroup_id (workgroups are WG x 1 x 1), so their index
// arithmetic and bounds tests are uniform. lavapipe (Mesa 25.0, GALLIVM_DEBUG=ir) still
// issues every load inside a loop lane by lane, uniform address or not, so what counts is
// the number of load instructions: the *_wt and *_dyt kernels read the row operand
// (weights, or dy transposed to NHWC) as vec4s of four rows.
// TM, NV and WG are appended by the host as consts.

// The forward passes read x and write y as channel slices of possibly wider tensors:
// x_channels / y_channels are the tensors' channel counts, x_first / y_first the slice's first
// channel (eval writes conv1 and conv2 straight into their concat buffer). Plain tensors
// have x_channels = cin, y_channels = cout and first = 0.
struct Conv {
    n: u32, cin: u32, h: u32, w: u32,
    cout: u32, oh: u32, ow: u32, groups: u32,
    k: u32, stride: u32, pad: u32, cig: u32,
    cog: u32, splits: u32, n_per_split: u32, relu: u32,
    x_channels: u32, x_first: u32, y_channels: u32, y_first: u32,
    eps: f32, ky_lo: u32, ky_hi: u32, kx_lo: u32,
    kx_hi: u32, _a: u32, _b: u32, _c: u32,
}
// Taps outside [ky_lo, ky_hi) x [kx_lo, kx_hi) only ever see padding (on 1x1 maps all but
// the centre), so the forward and input-gradient loops skip them.

const TN: u32 = 4u * NV;

@group(0) @binding(0) var<uniform> p: Conv;

// forward: y = conv(x, w); forward_bn (eval): y = BN(conv(x, w)) with the running
// statistics, then ReLU when p.relu, in the epilogue (no intermediate tensor, no extra pass).
// x is binding 1, read through gather_tap (below).
@group(0) @binding(2) var<storage, read> fwd_w: array<f32>;
@group(0) @binding(3) var<storage, read_write> fwd_y: array<f32>;
// forward_bn binds the running statistics at 4-7 (bn_epilogue.wgsl, appended).

// The kernels that read their row operand as vec4s of four rows (*_wt, *_dyt, *_nhwc; TM
// and the rows in fours): where, after `first`, the vec4 of rows row0 + 4q.. lies (clamped
// to the last of `rows` rows; those lanes are never stored) ...
fn row_quads(first: u32, row0: u32, rows: u32) -> array<u32, (TM + 3u) / 4u> {
    var r: array<u32, (TM + 3u) / 4u>;  // sized for any TM: the module is built for every tile
    for (var q = 0u; q < TM / 4u; q++) {
        r[q] = first + min(row0 / 4u + q, rows / 4u - 1u);
    }
    return r;
}

// ... and the FMAs of one such vec4 (rows 4q..4q+3) with a lane's columns.
fn fma_rows4(acc: ptr<function, array<vec4<f32>, TM * NV>>, q: u32, rows: vec4<f32>, cols: array<vec4<f32>, NV>) {
    for (var e = 0u; e < 4u; e++) {
        let r = vec4<f32>(rows[e]);
        for (var v = 0u; v < NV; v++) {
            (*acc)[(4u * q + e) * NV + v] = fma(r, cols[v], (*acc)[(4u * q + e) * NV + v]);
        }
    }
}

// Per column of a forward tile: where its receptive field starts. Columns past the end are
// clamped to the last one (loads stay in bounds) and never stored.
struct FwdColumns {
    x_base: array<u32, TN>,
    y0: array<i32, TN>,
    x0: array<i32, TN>,
}

fn forward_columns(g: u32, col0: u32) -> FwdColumns {
    let ohw = p.oh * p.ow;
    let ncol = p.n * ohw;
    var f: FwdColumns;
    for (var j = 0u; j < TN; j++) {
        let c = min(col0 + j, ncol - 1u);
        let n = c / ohw;
        let r = c % ohw;
        f.y0[j] = i32((r / p.ow) * p.stride) - i32(p.pad);
        f.x0[j] = i32((r % p.ow) * p.stride) - i32(p.pad);
        f.x_base[j] = (n * p.x_channels + p.x_first + g * p.cig) * p.h * p.w;
    }
    return f;
}

// Where each column reads x through tap (ky, kx) of input channel 0 (0 with inside false
// where that is padding).
struct FwdTap {
    off: array<u32, TN>,
    inside: array<bool, TN>,
}

fn forward_tap(f: FwdColumns, ky: u32, kx: u32) -> FwdTap {
    var t: FwdTap;
    for (var j = 0u; j < TN; j++) {
        let yy = f.y0[j] + i32(ky);
        let xx = f.x0[j] + i32(kx);
        t.inside[j] = yy >= 0 && yy < i32(p.h) && xx >= 0 && xx < i32(p.w);
        t.off[j] = select(0u, f.x_base[j] + u32(yy) * p.w + u32(xx), t.inside[j]);
    }
    return t;
}

// The forward and the input gradient gather the same way from binding 1 (x, or dy): the TN
// values of a tap in the channel plane at `plane`, as NV vec4s.
@group(0) @binding(1) var<storage, read> gather_src: array<f32>;

fn gather_tap(t: FwdTap, plane: u32) -> array<vec4<f32>, NV> {
    var g: array<vec4<f32>, NV>;
    for (var v = 0u; v < NV; v++) {
        let j = 4u * v;
        g[v] = vec4<f32>(
            select(0.0, gather_src[t.off[j] + plane], t.inside[j]),
            select(0.0, gather_src[t.off[j + 1u] + plane], t.inside[j + 1u]),
            select(0.0, gather_src[t.off[j + 2u] + plane], t.inside[j + 2u]),
            select(0.0, gather_src[t.off[j + 3u] + plane], t.inside[j + 3u]));
    }
    return g;
}

// The accumulators of one invocation's tile: rows row0.. of group g, columns col0..
fn forward_tile(g: u32, row0: u32, col0: u32) -> array<vec4<f32>, TM * NV> {
    let hw = p.h * p.w;
    let kk = p.k * p.k;
    let f = forward_columns(g, col0);
    var w_base: array<u32, TM>;
    for (var i = 0u; i < TM; i++) {
        w_base[i] = (g * p.cog + min(row0 + i, p.cog - 1u)) * p.cig * kk;
    }
    var acc: array<vec4<f32>, TM * NV>;
    for (var ky = p.ky_lo; ky < p.ky_hi; ky++) {
        for (var kx = p.kx_lo; kx < p.kx_hi; kx++) {
            let t = forward_tap(f, ky, kx);
            let tap = ky * p.k + kx;
            for (var ci = 0u; ci < p.cig; ci++) {
                let xv = gather_tap(t, ci * hw);
                for (var i = 0u; i < TM; i++) {
                    let wv = vec4<f32>(fwd_w[w_base[i] + ci * kk + tap]);
                    for (var v = 0u; v < NV; v++) {
                        acc[i * NV + v] = fma(wv, xv[v], acc[i * NV + v]);
                    }
                }
            }
        }
    }
    return acc;
}

// forward_tile with the weights transposed per group to [g][ci][tap][co] (conv.rs) and
// read as vec4s of four output channels: TM / 4 loads per (ci, tap) instead of TM, and
// lavapipe pays per load. Needs TM and cog in fours.
@group(0) @binding(2) var<storage, read> fwd_wt4: array<vec4<f32>>;

fn forward_tile_wt(g: u32, row0: u32, col0: u32) -> array<vec4<f32>, TM * NV> {
    let hw = p.h * p.w;
    let kk = p.k * p.k;
    let cogq = p.cog / 4u;
    let f = forward_columns(g, col0);
    let w_q = row_quads(g * p.cig * kk * cogq, row0, p.cog);
    var acc: array<vec4<f32>, TM * NV>;
    for (var ky = p.ky_lo; ky < p.ky_hi; ky++) {
        for (var kx = p.kx_lo; kx < p.kx_hi; kx++) {
            let t = forward_tap(f, ky, kx);
            let tap = ky * p.k + kx;
            for (var ci = 0u; ci < p.cig; ci++) {
                let xv = gather_tap(t, ci * hw);
                let w_row = (ci * kk + tap) * cogq;
                for (var q = 0u; q < TM / 4u; q++) {
                    let w4 = fwd_wt4[w_q[q] + w_row];
                    fma_rows4(&acc, q, w4, xv);
                }
            }
        }
    }
    return acc;
}

// Where column c of group g's first row lands in y.
fn y_index(g: u32, c: u32) -> u32 {
    let ohw = p.oh * p.ow;
    return ((c / ohw) * p.y_channels + p.y_first + g * p.cog) * ohw + c % ohw;
}

// Stores an invocation's tile (rows past cog and columns past the batch are skipped).
fn store_tile(g: u32, row0: u32, col0: u32, acc: array<vec4<f32>, TM * NV>) {
    let ohw = p.oh * p.ow;
    let ncol = p.n * ohw;
    for (var i = 0u; i < TM; i++) {
        let row = row0 + i;
        if (row >= p.cog) { break; }
        for (var j = 0u; j < TN; j++) {
            if (col0 + j < ncol) {
                fwd_y[y_index(g, col0 + j) + row * ohw] = acc[i * NV + j / 4u][j % 4u];
            }
        }
    }
}

// The same with BatchNorm (running statistics) and the optional ReLU applied first.
fn store_tile_bn(g: u32, row0: u32, col0: u32, acc: array<vec4<f32>, TM * NV>) {
    let ohw = p.oh * p.ow;
    let ncol = p.n * ohw;
    for (var i = 0u; i < TM; i++) {
        let row = row0 + i;
        if (row >= p.cog) { break; }
        let q = bn_channel(g * p.cog + row, p.eps);
        for (var j = 0u; j < TN; j++) {
            if (col0 + j < ncol) {
                fwd_y[y_index(g, col0 + j) + row * ohw] = bn_apply(acc[i * NV + j / 4u][j % 4u], q, p.relu);
            }
        }
    }
}

// forward and forward_bn: lanes over output pixels, the rows (output channels) from
// workgroup_id, so the weights' addresses are uniform.
@compute @workgroup_size(WG, 1, 1)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let col0 = gid.x * TN;
    if (col0 >= p.n * p.oh * p.ow) { return; }
    store_tile(wid.z, wid.y * TM, col0, forward_tile(wid.z, wid.y * TM, col0));
}

@compute @workgroup_size(WG, 1, 1)
fn forward_bn(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let col0 = gid.x * TN;
    if (col0 >= p.n * p.oh * p.ow) { return; }
    store_tile_bn(wid.z, wid.y * TM, col0, forward_tile(wid.z, wid.y * TM, col0));
}

// forward_wt and forward_wt_bn: forward and forward_bn reading transposed weights.
@compute @workgroup_size(WG, 1, 1)
fn forward_wt(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let col0 = gid.x * TN;
    if (col0 >= p.n * p.oh * p.ow) { return; }
    store_tile(wid.z, wid.y * TM, col0, forward_tile_wt(wid.z, wid.y * TM, col0));
}

@compute @workgroup_size(WG, 1, 1)
fn forward_wt_bn(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let col0 = gid.x * TN;
    if (col0 >= p.n * p.oh * p.ow) { return; }
    store_tile_bn(wid.z, wid.y * TM, col0, forward_tile_wt(wid.z, wid.y * TM, col0));
}

// forward_rows, forward_rows_bn, backward_data_rows: 3x3 stride-1 convs on maps whose width
// comes in fours, the source (x, or dy) read straight from NCHW as aligned vec4s. A lane owns
// TM output channels x one run of four pixels in a row: per source channel and kernel row,
// the run's vec4 and the two neighbouring runs' end values (0 past the row's ends) give all
// three kx shifts, so 3 loads feed 3 TM vec4 FMAs where forward_wt gathers 12 values.
// Weights as the *_wt kernels read them, four output channels per load: [g][ci][tap][co]
// for the forward, [g][co][tap][ci] for the input gradient, which is the forward with the
// roles of the channels swapped and the kernel flipped (tap t -> 8 - t).
@group(0) @binding(1) var<storage, read> rows_src4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> rows_w4: array<vec4<f32>>;
// The output as vec4s: a run's four pixels are one aligned vec4 (the width comes in fours),
// and lavapipe stores lane by lane, so one vec4 store costs what a scalar one does.
@group(0) @binding(3) var<storage, read_write> rows_y4: array<vec4<f32>>;

// The tile: `src` is the vec4 index of the group's first source plane in the image, `n_in`
// and `n_out` the channels per group on each side, `w_first` the group's first weight vec4.
// A lane owns NV neighbouring runs of a row from run q on (the host makes NV divide the
// runs per row): their NV vec4s and the two end values outside them give all 3 NV shifted
// vec4s, so NV + 2 loads feed 3 NV TM vec4 FMAs (the weights' 3 TM / 4 loads are shared).
fn rows_tile(src: u32, n_in: u32, n_out: u32, w_first: u32, row0: u32, oy: u32, q: u32, flip: bool) -> array<vec4<f32>, TM * NV> {
    let hwq = p.h * p.w / 4u;
    let wq = p.w / 4u;
    let outq = n_out / 4u;
    let w_q = row_quads(w_first, row0, n_out);
    let has_left = q > 0u;
    let has_right = q + NV < wq;
    var acc: array<vec4<f32>, TM * NV>;
    for (var ky = 0u; ky < 3u; ky++) {
        let iy = i32(oy + ky) - 1;
        let row_ok = iy >= 0 && iy < i32(p.h);
        let run = src + select(0u, u32(iy) * wq + q, row_ok);
        // Source columns -1, 0, +1 meet taps kx = 0, 1, 2 of kernel row ky (flipped: 8 - t).
        let ta = select(3u * ky, 8u - 3u * ky, flip);
        let tb = select(3u * ky + 1u, 7u - 3u * ky, flip);
        let tc = select(3u * ky + 2u, 6u - 3u * ky, flip);
        for (var c = 0u; c < n_in; c++) {
            let o = run + c * hwq;
            var m: array<vec4<f32>, NV>;
            for (var v = 0u; v < NV; v++) {
                m[v] = select(vec4<f32>(0.0), rows_src4[o + v], row_ok);
            }
            let left = select(0.0, rows_src4[select(o, o - 1u, has_left)].w, row_ok && has_left);
            let right = select(0.0, rows_src4[select(o, o + NV, has_right)].x, row_ok && has_right);
            var l: array<vec4<f32>, NV>;
            var r: array<vec4<f32>, NV>;
            for (var v = 0u; v < NV; v++) {
                let before = select(left, m[max(v, 1u) - 1u].w, v > 0u);
                let after = select(right, m[min(v + 1u, NV - 1u)].x, v + 1u < NV);
                l[v] = vec4<f32>(before, m[v].x, m[v].y, m[v].z);
                r[v] = vec4<f32>(m[v].y, m[v].z, m[v].w, after);
            }
            let w_row = c * 9u * outq;
            for (var qq = 0u; qq < TM / 4u; qq++) {
                let w0 = rows_w4[w_q[qq] + w_row + ta * outq];
                let w1 = rows_w4[w_q[qq] + w_row + tb * outq];
                let w2 = rows_w4[w_q[qq] + w_row + tc * outq];
                for (var e = 0u; e < 4u; e++) {
                    let i = 4u * qq + e;
                    for (var v = 0u; v < NV; v++) {
                        acc[i * NV + v] = fma(vec4<f32>(w0[e]), l[v], fma(vec4<f32>(w1[e]), m[v], fma(vec4<f32>(w2[e]), r[v], acc[i * NV + v])));
                    }
                }
            }
        }
    }
    return acc;
}

// Lane gid.x's first run: image, row and run in the row (NV runs per lane).
fn rows_run(lane: u32) -> vec3<u32> {
    let lanes_per_row = p.w / 4u / NV;
    return vec3<u32>(lane / (p.h * lanes_per_row), (lane / lanes_per_row) % p.h, (lane % lanes_per_row) * NV);
}

fn rows_lanes() -> u32 {
    return p.n * p.h * (p.w / 4u / NV);
}

// The forward's tile for run r (rows_run) of workgroup wid.
fn forward_rows_acc(r: vec3<u32>, wid: vec3<u32>) -> array<vec4<f32>, TM * NV> {
    let src = (r.x * p.x_channels + p.x_first + wid.z * p.cig) * (p.h * p.w / 4u);
    return rows_tile(src, p.cig, p.cog, wid.z * p.cig * 9u * (p.cog / 4u), wid.y * TM, r.y, r.z, false);
}

// Where row `row` of run r lands in y (first of four).
fn forward_rows_out(r: vec3<u32>, g: u32, row: u32) -> u32 {
    return (r.x * p.y_channels + p.y_first + g * p.cog + row) * p.h * p.w + r.y * p.w + 4u * r.z;
}

@compute @workgroup_size(WG, 1, 1)
fn forward_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    if (gid.x >= rows_lanes()) { return; }
    let r = rows_run(gid.x);
    let acc = forward_rows_acc(r, wid);
    for (var i = 0u; i < TM; i++) {
        let row = wid.y * TM + i;
        if (row >= p.cog) { break; }
        let o = forward_rows_out(r, wid.z, row) / 4u;
        for (var v = 0u; v < NV; v++) {
            rows_y4[o + v] = acc[i * NV + v];
        }
    }
}

@compute @workgroup_size(WG, 1, 1)
fn forward_rows_bn(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    if (gid.x >= rows_lanes()) { return; }
    let r = rows_run(gid.x);
    let acc = forward_rows_acc(r, wid);
    for (var i = 0u; i < TM; i++) {
        let row = wid.y * TM + i;
        if (row >= p.cog) { break; }
        let bq = bn_channel(wid.z * p.cog + row, p.eps);
        let o = forward_rows_out(r, wid.z, row) / 4u;
        for (var v = 0u; v < NV; v++) {
            let t = acc[i * NV + v];
            rows_y4[o + v] = vec4<f32>(bn_apply(t.x, bq, p.relu), bn_apply(t.y, bq, p.relu), bn_apply(t.z, bq, p.relu), bn_apply(t.w, bq, p.relu));
        }
    }
}

@compute @workgroup_size(WG, 1, 1)
fn backward_data_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    if (gid.x >= rows_lanes()) { return; }
    let r = rows_run(gid.x);
    let hw = p.h * p.w;
    let g = wid.z;
    let row0 = wid.y * TM;
    let acc = rows_tile((r.x * p.cout + g * p.cog) * (hw / 4u), p.cog, p.cig, g * p.cog * 9u * (p.cig / 4u), row0, r.y, r.z, true);
    for (var i = 0u; i < TM; i++) {
        let row = row0 + i;
        if (row >= p.cig) { break; }
        let o = ((r.x * p.cin + g * p.cig + row) * hw + r.y * p.w + 4u * r.z) / 4u;
        for (var v = 0u; v < NV; v++) {
            rows_y4[o + v] = acc[i * NV + v];
        }
    }
}

// forward_by_pixel, forward_by_pixel_bn: the same two passes with the roles turned around,
// for 1x1 convs with many output channels: lanes own TM output channels each (weights are
// gathered), while the TN pixels come from workgroup_id, so x is read by scalar loads and
// the bounds tests are uniform. Same tile code: which operand is uniform follows from
// where row0 and col0 come from.
@compute @workgroup_size(WG, 1, 1)
fn forward_by_pixel(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = gid.x * TM;
    if (row0 >= p.cog) { return; }
    store_tile(wid.z, row0, wid.y * TN, forward_tile(wid.z, row0, wid.y * TN));
}

@compute @workgroup_size(WG, 1, 1)
fn forward_by_pixel_bn(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = gid.x * TM;
    if (row0 >= p.cog) { return; }
    store_tile_bn(wid.z, row0, wid.y * TN, forward_tile(wid.z, row0, wid.y * TN));
}

// backward_data: dx = conv_transpose(dy, w)
// dy is binding 1, read through gather_tap as the forward reads x.
@group(0) @binding(2) var<storage, read> bwd_w: array<f32>;
@group(0) @binding(3) var<storage, read_write> bwd_dx: array<f32>;

// Stride 2: the input pixels are split into 4 parity classes (z = group * 4 + class).
// In class (py, px) only taps with ky = py + pad, kx = px + pad (mod 2) reach an output
// pixel, so each class walks just those taps instead of masking 3/4 of the work away.
struct BwdColumns {
    g: u32,
    col0: u32,
    ncol: u32,
    step: u32,
    ky_first: u32,
    kx_first: u32,
    dy_base: array<u32, TN>,
    ty0: array<i32, TN>,
    tx0: array<i32, TN>,
    dx_index: array<u32, TN>,
}

fn backward_data_columns(gid: vec3<u32>, wid: vec3<u32>) -> BwdColumns {
    let parity = p.stride == 2u;
    var b: BwdColumns;
    b.g = wid.z;
    var py = 0u;
    var px = 0u;
    b.step = 1u;
    if (parity) {
        b.g = wid.z / 4u;
        py = (wid.z / 2u) % 2u;
        px = wid.z % 2u;
        b.step = 2u;
    }
    // This class's pixels: rows py, py + step, ... and columns px, px + step, ...
    let ch = (p.h - py + b.step - 1u) / b.step;
    let cw = (p.w - px + b.step - 1u) / b.step;
    b.col0 = gid.x * TN;
    b.ncol = p.n * ch * cw;
    let hw = p.h * p.w;
    let ohw = p.oh * p.ow;
    for (var j = 0u; j < TN; j++) {
        let c = min(b.col0 + j, b.ncol - 1u);
        let n = c / (ch * cw);
        let r = c % (ch * cw);
        let iy = py + b.step * (r / cw);
        let ix = px + b.step * (r % cw);
        b.ty0[j] = i32(iy + p.pad);
        b.tx0[j] = i32(ix + p.pad);
        b.dy_base[j] = (n * p.cout + b.g * p.cog) * ohw;
        b.dx_index[j] = (n * p.cin + b.g * p.cig) * hw + iy * p.w + ix;
    }
    // First live tap of the class's parity (every tap when not split by parity).
    b.ky_first = p.ky_lo;
    b.kx_first = p.kx_lo;
    if (parity) {
        b.ky_first += (p.ky_lo + py + p.pad) % 2u;
        b.kx_first += (p.kx_lo + px + p.pad) % 2u;
    }
    return b;
}

// Where each column reads dy through tap (ky, kx) of output channel 0 (FwdTap's layout).
fn backward_data_tap(b: BwdColumns, ky: u32, kx: u32) -> FwdTap {
    // Output pixel (oy, ox) saw this input pixel through tap (ky, kx) when
    // oy * s = iy + pad - ky, which must divide evenly and land inside the output.
    // Strides 1 and 2 avoid the per-lane division (scalarised on CPU adapters).
    let s = i32(p.stride);
    var t: FwdTap;
    for (var j = 0u; j < TN; j++) {
        let ty = b.ty0[j] - i32(ky);
        let tx = b.tx0[j] - i32(kx);
        var oy = ty;
        var ox = tx;
        var even = true;
        if (p.stride == 2u) {
            // even by the choice of class and taps
            oy = ty >> 1u;
            ox = tx >> 1u;
        } else if (s != 1) {
            oy = ty / s;
            ox = tx / s;
            even = oy * s == ty && ox * s == tx;
        }
        t.inside[j] = ty >= 0 && tx >= 0 && even && oy < i32(p.oh) && ox < i32(p.ow);
        t.off[j] = select(0u, b.dy_base[j] + u32(oy) * p.ow + u32(ox), t.inside[j]);
    }
    return t;
}

fn backward_data_store(b: BwdColumns, row0: u32, acc: array<vec4<f32>, TM * NV>) {
    let hw = p.h * p.w;
    for (var i = 0u; i < TM; i++) {
        let row = row0 + i;
        if (row >= p.cig) { break; }
        for (var j = 0u; j < TN; j++) {
            if (b.col0 + j < b.ncol) {
                bwd_dx[b.dx_index[j] + row * hw] = acc[i * NV + j / 4u][j % 4u];
            }
        }
    }
}

@compute @workgroup_size(WG, 1, 1)
fn backward_data(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let b = backward_data_columns(gid, wid);
    if (b.col0 >= b.ncol) { return; }
    let row0 = wid.y * TM;
    let ohw = p.oh * p.ow;
    let kk = p.k * p.k;
    var w_base: array<u32, TM>;
    for (var i = 0u; i < TM; i++) {
        w_base[i] = b.g * p.cog * p.cig * kk + min(row0 + i, p.cig - 1u) * kk;
    }
    var acc: array<vec4<f32>, TM * NV>;
    for (var ky = b.ky_first; ky < p.ky_hi; ky += b.step) {
        for (var kx = b.kx_first; kx < p.kx_hi; kx += b.step) {
            let t = backward_data_tap(b, ky, kx);
            let tap = ky * p.k + kx;
            for (var co = 0u; co < p.cog; co++) {
                let dv = gather_tap(t, co * ohw);
                let w_co = co * p.cig * kk + tap;
                for (var i = 0u; i < TM; i++) {
                    let wv = vec4<f32>(bwd_w[w_base[i] + w_co]);
                    for (var v = 0u; v < NV; v++) {
                        acc[i * NV + v] = fma(wv, dv[v], acc[i * NV + v]);
                    }
                }
            }
        }
    }
    backward_data_store(b, row0, acc);
}

// backward_data_wt: the weights transposed to [g][co][tap][ci] (conv.rs) and read as vec4s
// of four input channels, as forward_wt does for output channels. Needs TM and cig in fours.
@group(0) @binding(2) var<storage, read> bwd_wt4: array<vec4<f32>>;

@compute @workgroup_size(WG, 1, 1)
fn backward_data_wt(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let b = backward_data_columns(gid, wid);
    if (b.col0 >= b.ncol) { return; }
    let row0 = wid.y * TM;
    let ohw = p.oh * p.ow;
    let kk = p.k * p.k;
    let cigq = p.cig / 4u;
    let w_q = row_quads(b.g * p.cog * kk * cigq, row0, p.cig);
    var acc: array<vec4<f32>, TM * NV>;
    for (var ky = b.ky_first; ky < p.ky_hi; ky += b.step) {
        for (var kx = b.kx_first; kx < p.kx_hi; kx += b.step) {
            let t = backward_data_tap(b, ky, kx);
            let tap = ky * p.k + kx;
            for (var co = 0u; co < p.cog; co++) {
                let dv = gather_tap(t, co * ohw);
                let w_row = (co * kk + tap) * cigq;
                for (var q = 0u; q < TM / 4u; q++) {
                    let w4 = bwd_wt4[w_q[q] + w_row];
                    fma_rows4(&acc, q, w4, dv);
                }
            }
        }
    }
    backward_data_store(b, row0, acc);
}

// backward_weight: dw[s] = sum over the pixels of batch slice s of dy * x (s = split index).
// The images [x, y) that split `split` of a weight-gradient launch sums over.
fn split_images(split: u32) -> vec2<u32> {
    let begin = split * p.n_per_split;
    return vec2<u32>(begin, min(begin + p.n_per_split, p.n));
}

@group(0) @binding(1) var<storage, read> wg_dy: array<f32>;
@group(0) @binding(2) var<storage, read> wg_x: array<f32>;
@group(0) @binding(3) var<storage, read_write> wg_dw: array<f32>;

// Per column (input channel, tap) of a weight-gradient tile: its input plane and tap offset.
struct WgColumns {
    x_plane: array<u32, TN>,
    ky: array<i32, TN>,
    kx: array<i32, TN>,
}

fn weight_grad_columns(g: u32, col0: u32) -> WgColumns {
    let kk = p.k * p.k;
    let ncol = p.cig * kk;
    let hw = p.h * p.w;
    var f: WgColumns;
    for (var j = 0u; j < TN; j++) {
        let c = min(col0 + j, ncol - 1u);
        let tap = c % kk;
        f.x_plane[j] = (g * p.cig + c / kk) * hw;
        f.ky[j] = i32(tap / p.k) - i32(p.pad);
        f.kx[j] = i32(tap % p.k) - i32(p.pad);
    }
    return f;
}

// The TN x values the columns see from input pixel (iy, ix) of the image at x_img.
fn weight_grad_x(f: WgColumns, x_img: u32, iy: i32, ix: i32) -> array<vec4<f32>, NV> {
    var xv: array<vec4<f32>, NV>;
    for (var v = 0u; v < NV; v++) {
        var q: vec4<f32>;
        for (var e = 0u; e < 4u; e++) {
            let j = 4u * v + e;
            let yy = iy + f.ky[j];
            let xx = ix + f.kx[j];
            let inside = yy >= 0 && yy < i32(p.h) && xx >= 0 && xx < i32(p.w);
            let o = select(0u, x_img + f.x_plane[j] + u32(yy) * p.w + u32(xx), inside);
            q[e] = select(0.0, wg_x[o], inside);
        }
        xv[v] = q;
    }
    return xv;
}

fn weight_grad_store(g: u32, split: u32, row0: u32, col0: u32, acc: array<vec4<f32>, TM * NV>) {
    let ncol = p.cig * p.k * p.k;
    let total = p.cout * ncol;
    for (var i = 0u; i < TM; i++) {
        let row = row0 + i;
        if (row >= p.cog) { break; }
        for (var j = 0u; j < TN; j++) {
            if (col0 + j < ncol) {
                wg_dw[split * total + (g * p.cog + row) * ncol + col0 + j] = acc[i * NV + j / 4u][j % 4u];
            }
        }
    }
}

@compute @workgroup_size(WG, 1, 1)
fn backward_weight(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let g = wid.z % p.groups;
    let split = wid.z / p.groups;
    let row0 = wid.y * TM;
    let col0 = gid.x * TN;
    if (col0 >= p.cig * p.k * p.k) { return; }
    let hw = p.h * p.w;
    let ohw = p.oh * p.ow;
    let images = split_images(split);
    let f = weight_grad_columns(g, col0);
    let dy_plane = output_planes(g, row0, ohw);
    var acc: array<vec4<f32>, TM * NV>;
    for (var n = images.x; n < images.y; n++) {
        let dy_img = n * p.cout * ohw;
        let x_img = n * p.cin * hw;
        for (var oy = 0u; oy < p.oh; oy++) {
            for (var ox = 0u; ox < p.ow; ox++) {
                let xv = weight_grad_x(f, x_img, i32(oy * p.stride), i32(ox * p.stride));
                let pix = dy_img + oy * p.ow + ox;
                for (var i = 0u; i < TM; i++) {
                    let dv = vec4<f32>(wg_dy[dy_plane[i] + pix]);
                    for (var v = 0u; v < NV; v++) {
                        acc[i * NV + v] = fma(dv, xv[v], acc[i * NV + v]);
                    }
                }
            }
        }
    }
    weight_grad_store(g, split, row0, col0, acc);
}

// backward_weight_dyt: dy transposed image by image to [n][pixel][cout] (conv.rs) and read
// as vec4s of four output channels: TM / 4 loads per pixel instead of TM. Needs TM and cog
// in fours.
@group(0) @binding(1) var<storage, read> wg_dyt4: array<vec4<f32>>;

// The FMAs of one pixel's dy (a lane's rows, TM / 4 vec4 loads from `pix`) with its columns.
fn fma_dy_rows(acc: ptr<function, array<vec4<f32>, TM * NV>>, pix: u32, dy_q: array<u32, (TM + 3u) / 4u>, cols: array<vec4<f32>, NV>) {
    for (var q = 0u; q < TM / 4u; q++) {
        fma_rows4(acc, q, wg_dyt4[pix + dy_q[q]], cols);
    }
}

@compute @workgroup_size(WG, 1, 1)
fn backward_weight_dyt(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let g = wid.z % p.groups;
    let split = wid.z / p.groups;
    let row0 = wid.y * TM;
    let col0 = gid.x * TN;
    if (col0 >= p.cig * p.k * p.k) { return; }
    let hw = p.h * p.w;
    let ohw = p.oh * p.ow;
    let coutq = p.cout / 4u;
    let images = split_images(split);
    let f = weight_grad_columns(g, col0);
    let dy_q = row_quads((g * p.cog) / 4u, row0, p.cog);
    var acc: array<vec4<f32>, TM * NV>;
    for (var n = images.x; n < images.y; n++) {
        let x_img = n * p.cin * hw;
        for (var oy = 0u; oy < p.oh; oy++) {
            for (var ox = 0u; ox < p.ow; ox++) {
                let xv = weight_grad_x(f, x_img, i32(oy * p.stride), i32(ox * p.stride));
                let pix = (n * ohw + oy * p.ow + ox) * coutq;
                fma_dy_rows(&acc, pix, dy_q, xv);
            }
        }
    }
    weight_grad_store(g, split, row0, col0, acc);
}

// backward_weight_nhwc: backward_weight_dyt with x in NHWC as well, and the columns ordered
// (tap, input channel): each vec4 of a lane's columns is four input channels of one tap, so
// its x values are one vec4 load with one bounds test. TM / 4 + NV loads per pixel instead of
// TM / 4 + 4 * NV. Needs TM, cog and cig in fours; the store puts column (tap, ci) at
// dw[..][ci][tap].
@group(0) @binding(2) var<storage, read> wg_xt4: array<vec4<f32>>;

@compute @workgroup_size(WG, 1, 1)
fn backward_weight_nhwc(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let g = wid.z % p.groups;
    let split = wid.z / p.groups;
    let row0 = wid.y * TM;
    let col0 = gid.x * TN;
    let kk = p.k * p.k;
    let ncol = p.cig * kk;
    if (col0 >= ncol) { return; }
    let ohw = p.oh * p.ow;
    let coutq = p.cout / 4u;
    let cinq = p.cin / 4u;
    let images = split_images(split);
    let dy_q = row_quads((g * p.cog) / 4u, row0, p.cog);
    var ky: array<i32, NV>;
    var kx: array<i32, NV>;
    var x_q: array<u32, NV>;
    for (var v = 0u; v < NV; v++) {
        let c = min(col0 + 4u * v, ncol - 4u);
        let tap = c / p.cig;
        ky[v] = i32(tap / p.k) - i32(p.pad);
        kx[v] = i32(tap % p.k) - i32(p.pad);
        x_q[v] = (g * p.cig + c % p.cig) / 4u;
    }
    var acc: array<vec4<f32>, TM * NV>;
    for (var n = images.x; n < images.y; n++) {
        for (var oy = 0u; oy < p.oh; oy++) {
            for (var ox = 0u; ox < p.ow; ox++) {
                var xv: array<vec4<f32>, NV>;
                for (var v = 0u; v < NV; v++) {
                    let yy = i32(oy * p.stride) + ky[v];
                    let xx = i32(ox * p.stride) + kx[v];
                    let inside = yy >= 0 && yy < i32(p.h) && xx >= 0 && xx < i32(p.w);
                    let o = select(0u, ((n * p.h + u32(yy)) * p.w + u32(xx)) * cinq + x_q[v], inside);
                    xv[v] = select(vec4<f32>(0.0), wg_xt4[o], inside);
                }
                let pix = (n * ohw + oy * p.ow + ox) * coutq;
                fma_dy_rows(&acc, pix, dy_q, xv);
            }
        }
    }
    let total = p.cout * ncol;
    for (var i = 0u; i < TM; i++) {
        let row = row0 + i;
        if (row >= p.cog) { break; }
        for (var v = 0u; v < NV; v++) {
            let c = col0 + 4u * v;
            if (c >= ncol) { break; }
            let tap = c / p.cig;
            let ci = c % p.cig;
            for (var e = 0u; e < 4u; e++) {
                wg_dw[split * total + (g * p.cog + row) * ncol + (ci + e) * kk + tap] = acc[i * NV + v][e];
            }
        }
    }
}

// The weight-gradient kernels with lanes over output channels: where, within an image, the
// planes of input channels c0.. and output channels row0.. of group g start (clamped to the
// group's last channel; those lanes are never stored).
fn input_planes(g: u32, c0: u32, hw: u32) -> array<u32, TN> {
    var x_plane: array<u32, TN>;
    for (var j = 0u; j < TN; j++) {
        x_plane[j] = (g * p.cig + min(c0 + j, p.cig - 1u)) * hw;
    }
    return x_plane;
}
fn output_planes(g: u32, row0: u32, ohw: u32) -> array<u32, TM> {
    var dy_plane: array<u32, TM>;
    for (var i = 0u; i < TM; i++) {
        dy_plane[i] = (g * p.cog + min(row0 + i, p.cog - 1u)) * ohw;
    }
    return dy_plane;
}

// backward_weight_by_tap: the same sums with the roles turned around for layers with many
// output channels per group: lanes own TM output channels each, while the tap and a block
// of 4 * NV input channels come from workgroup_id. The input pixel a tap reads, its bounds
// test and its TC values are then uniform (one scalar load each, padding skipped by a
// uniform branch); only dy is gathered per lane.
@compute @workgroup_size(WG, 1, 1)
fn backward_weight_by_tap(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let g = wid.z % p.groups;
    let split = wid.z / p.groups;
    let kk = p.k * p.k;
    let tap = wid.y % kk;
    let c0 = (wid.y / kk) * TN;
    let row0 = gid.x * TM;
    if (row0 >= p.cog) { return; }
    let ky = i32(tap / p.k) - i32(p.pad);
    let kx = i32(tap % p.k) - i32(p.pad);
    let hw = p.h * p.w;
    let ohw = p.oh * p.ow;
    let images = split_images(split);

    let x_plane = input_planes(g, c0, hw);
    let dy_plane = output_planes(g, row0, ohw);

    var acc: array<vec4<f32>, TM * NV>;
    for (var n = images.x; n < images.y; n++) {
        let dy_img = n * p.cout * ohw;
        let x_img = n * p.cin * hw;
        for (var oy = 0u; oy < p.oh; oy++) {
            let yy = i32(oy * p.stride) + ky;
            if (yy < 0 || yy >= i32(p.h)) { continue; }
            for (var ox = 0u; ox < p.ow; ox++) {
                let xx = i32(ox * p.stride) + kx;
                if (xx < 0 || xx >= i32(p.w)) { continue; }
                let at = x_img + u32(yy) * p.w + u32(xx);
                var xv: array<vec4<f32>, NV>;
                for (var v = 0u; v < NV; v++) {
                    let j = 4u * v;
                    xv[v] = vec4<f32>(wg_x[at + x_plane[j]], wg_x[at + x_plane[j + 1u]],
                                      wg_x[at + x_plane[j + 2u]], wg_x[at + x_plane[j + 3u]]);
                }
                let pix = dy_img + oy * p.ow + ox;
                for (var i = 0u; i < TM; i++) {
                    let dv = vec4<f32>(wg_dy[dy_plane[i] + pix]);
                    for (var v = 0u; v < NV; v++) {
                        acc[i * NV + v] = fma(dv, xv[v], acc[i * NV + v]);
                    }
                }
            }
        }
    }
    let total = p.cout * p.cig * kk;
    for (var i = 0u; i < TM; i++) {
        let row = row0 + i;
        if (row >= p.cog) { break; }
        for (var j = 0u; j < TN; j++) {
            if (c0 + j < p.cig) {
                wg_dw[split * total + ((g * p.cog + row) * p.cig + c0 + j) * kk + tap] = acc[i * NV + j / 4u][j % 4u];
            }
        }
    }
}

// backward_weight_3x3: backward_weight_by_tap's layout with all nine taps of a 3x3 kernel in
// each lane: the dy values a lane gathers for a pixel feed 9 * TM * NV vec4 FMAs instead of
// TM * NV (the x values are uniform scalar loads either way). The tap loop has a constant
// bound, so it unrolls and the accumulators stay in registers.
@compute @workgroup_size(WG, 1, 1)
fn backward_weight_3x3(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let g = wid.z % p.groups;
    let split = wid.z / p.groups;
    let c0 = wid.y * TN;
    let row0 = gid.x * TM;
    if (row0 >= p.cog) { return; }
    let hw = p.h * p.w;
    let ohw = p.oh * p.ow;
    let images = split_images(split);

    let x_plane = input_planes(g, c0, hw);
    let dy_plane = output_planes(g, row0, ohw);

    var acc: array<vec4<f32>, 9u * TM * NV>;
    for (var n = images.x; n < images.y; n++) {
        let dy_img = n * p.cout * ohw;
        let x_img = n * p.cin * hw;
        for (var oy = 0u; oy < p.oh; oy++) {
            for (var ox = 0u; ox < p.ow; ox++) {
                let pix = dy_img + oy * p.ow + ox;
                var dv: array<vec4<f32>, TM>;
                for (var i = 0u; i < TM; i++) {
                    dv[i] = vec4<f32>(wg_dy[dy_plane[i] + pix]);
                }
                for (var t = 0u; t < 9u; t++) {
                    let yy = i32(oy * p.stride + t / 3u) - i32(p.pad);
                    let xx = i32(ox * p.stride + t % 3u) - i32(p.pad);
                    if (yy < 0 || yy >= i32(p.h) || xx < 0 || xx >= i32(p.w)) { continue; }
                    let at = x_img + u32(yy) * p.w + u32(xx);
                    for (var v = 0u; v < NV; v++) {
                        let j = 4u * v;
                        let xv = vec4<f32>(wg_x[at + x_plane[j]], wg_x[at + x_plane[j + 1u]],
                                           wg_x[at + x_plane[j + 2u]], wg_x[at + x_plane[j + 3u]]);
                        for (var i = 0u; i < TM; i++) {
                            acc[(t * TM + i) * NV + v] = fma(dv[i], xv, acc[(t * TM + i) * NV + v]);
                        }
                    }
                }
            }
        }
    }
    let total = p.cout * p.cig * 9u;
    for (var i = 0u; i < TM; i++) {
        let row = row0 + i;
        if (row >= p.cog) { break; }
        for (var j = 0u; j < TN; j++) {
            if (c0 + j < p.cig) {
                for (var t = 0u; t < 9u; t++) {
                    wg_dw[split * total + ((g * p.cog + row) * p.cig + c0 + j) * 9u + t] = acc[(t * TM + i) * NV + j / 4u][j % 4u];
                }
            }
        }
    }
}

// backward_weight_rows: the weight gradient of a 3x3 stride-1 conv straight from NCHW on maps
// whose width comes in fours (no copies). A lane owns TM output channels x NV input channels
// x all nine taps and walks each image's rows in runs of four pixels: per run, dy is one vec4
// per output channel, and x one vec4 per input channel and input row (ky) -- its kx = 0 and
// 2 shifts take their end values from the previous and next runs, which the walk keeps. So
// TM + 3 NV loads feed 9 TM NV dot products, and every bounds test (top and bottom rows, the
// ends of a row) is uniform. Columns are input channels (NV per lane), not (channel, tap).
@group(0) @binding(1) var<storage, read> wr_dy4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> wr_x4: array<vec4<f32>>;

@compute @workgroup_size(WG, 1, 1)
fn backward_weight_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let g = wid.z % p.groups;
    let split = wid.z / p.groups;
    let row0 = wid.y * TM;
    let c0 = gid.x * NV;
    if (c0 >= p.cig) { return; }
    let hwq = p.h * p.w / 4u;
    let wq = p.w / 4u;
    let images = split_images(split);
    var x_plane: array<u32, NV>;
    for (var c = 0u; c < NV; c++) {
        x_plane[c] = (g * p.cig + min(c0 + c, p.cig - 1u)) * hwq;
    }
    var dy_plane: array<u32, TM>;
    for (var i = 0u; i < TM; i++) {
        dy_plane[i] = (g * p.cog + min(row0 + i, p.cog - 1u)) * hwq;
    }
    var acc: array<f32, 9u * TM * NV>;
    for (var n = images.x; n < images.y; n++) {
        let x_img = n * p.cin * hwq;
        let dy_img = n * p.cout * hwq;
        for (var oy = 0u; oy < p.h; oy++) {
            // x rows oy - 1, oy, oy + 1 (ky = 0, 1, 2): the run before, at and after the walk.
            var prev: array<vec4<f32>, 3u * NV>;
            var cur: array<vec4<f32>, 3u * NV>;
            var next: array<vec4<f32>, 3u * NV>;
            for (var ky = 0u; ky < 3u; ky++) {
                let iy = i32(oy + ky) - 1;
                if (iy < 0 || iy >= i32(p.h)) { continue; }
                for (var c = 0u; c < NV; c++) {
                    cur[ky * NV + c] = wr_x4[x_img + x_plane[c] + u32(iy) * wq];
                }
            }
            for (var q = 0u; q < wq; q++) {
                for (var ky = 0u; ky < 3u; ky++) {
                    let iy = i32(oy + ky) - 1;
                    for (var c = 0u; c < NV; c++) {
                        next[ky * NV + c] = vec4<f32>(0.0);
                    }
                    if (iy < 0 || iy >= i32(p.h) || q + 1u >= wq) { continue; }
                    for (var c = 0u; c < NV; c++) {
                        next[ky * NV + c] = wr_x4[x_img + x_plane[c] + u32(iy) * wq + q + 1u];
                    }
                }
                var dv: array<vec4<f32>, TM>;
                for (var i = 0u; i < TM; i++) {
                    dv[i] = wr_dy4[dy_img + dy_plane[i] + oy * wq + q];
                }
                for (var ky = 0u; ky < 3u; ky++) {
                    for (var c = 0u; c < NV; c++) {
                        let m = cur[ky * NV + c];
                        let l = vec4<f32>(prev[ky * NV + c].w, m.x, m.y, m.z);
                        let r = vec4<f32>(m.y, m.z, m.w, next[ky * NV + c].x);
                        for (var i = 0u; i < TM; i++) {
                            let a = ((3u * ky) * TM + i) * NV + c;
                            acc[a] += dot(dv[i], l);
                            acc[a + TM * NV] += dot(dv[i], m);
                            acc[a + 2u * TM * NV] += dot(dv[i], r);
                        }
                    }
                }
                prev = cur;
                cur = next;
            }
        }
    }
    let total = p.cout * p.cig * 9u;
    for (var i = 0u; i < TM; i++) {
        let row = row0 + i;
        if (row >= p.cog) { break; }
        for (var c = 0u; c < NV; c++) {
            if (c0 + c >= p.cig) { break; }
            for (var t = 0u; t < 9u; t++) {
                wg_dw[split * total + ((g * p.cog + row) * p.cig + c0 + c) * 9u + t] = acc[(t * TM + i) * NV + c];
            }
        }
    }
}

// sum_splits: dw[i] = sum over s of partial[s][i], in a fixed order (deterministic, no atomics).
@group(0) @binding(1) var<storage, read> ss_partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> ss_dw: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn sum_splits(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let total = p.cout * p.cig * p.k * p.k;
    if (i >= total) { return; }
    var s = 0.0;
    for (var k = 0u; k < p.splits; k++) {
        s += ss_partial[k * total + i];
    }
    ss_dw[i] = s;
}

// expand_tiny, fold_tiny: a conv on a tiny map as one dense matrix per group (conv.rs,
// tiny_map): Wt[(g * cog + co) * ohw + op][ci * hw + q] = w[g * cog + co][ci][tap] for the
// tap that joins output pixel op to input pixel q, 0 where none does. expand_tiny builds Wt
// from w; fold_tiny sums the gradient of Wt back onto the taps (in a fixed order). One
// invocation per (output channel, input channel of its group), loops over pixels and taps:
// no per-lane divisions (scalarised on CPU adapters).
@group(0) @binding(1) var<storage, read> tiny_src: array<f32>;
@group(0) @binding(2) var<storage, read_write> tiny_dst: array<f32>;

// Where Wt[(co, output pixel (oy, ox)), (ci, input pixel (qy, qx))] lies (co counted over all groups).
fn tiny_wt_index(co: u32, oy: u32, ox: u32, ci: u32, qy: u32, qx: u32) -> u32 {
    let row = (co * p.oh + oy) * p.ow + ox;
    return ((row * p.cig + ci) * p.h + qy) * p.w + qx;
}

@compute @workgroup_size(WG, 1, 1)
fn expand_tiny(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.cout * p.cig) { return; }
    let co = i / p.cig;
    let ci = i % p.cig;
    let w0 = i * p.k * p.k;
    for (var oy = 0u; oy < p.oh; oy++) {
        for (var ox = 0u; ox < p.ow; ox++) {
            for (var qy = 0u; qy < p.h; qy++) {
                // The tap from (oy, ox)'s receptive field to (qy, qx); may lie outside the kernel.
                let ky = i32(qy + p.pad) - i32(oy * p.stride);
                for (var qx = 0u; qx < p.w; qx++) {
                    let kx = i32(qx + p.pad) - i32(ox * p.stride);
                    let live = ky >= 0 && ky < i32(p.k) && kx >= 0 && kx < i32(p.k);
                    let tap = select(0u, u32(ky) * p.k + u32(kx), live);
                    tiny_dst[tiny_wt_index(co, oy, ox, ci, qy, qx)] = select(0.0, tiny_src[w0 + tap], live);
                }
            }
        }
    }
}

@compute @workgroup_size(WG, 1, 1)
fn fold_tiny(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.cout * p.cig) { return; }
    let co = i / p.cig;
    let ci = i % p.cig;
    for (var ky = 0u; ky < p.k; ky++) {
        for (var kx = 0u; kx < p.k; kx++) {
            var s = 0.0;
            for (var oy = 0u; oy < p.oh; oy++) {
                let qy = i32(oy * p.stride + ky) - i32(p.pad);
                if (qy < 0 || qy >= i32(p.h)) { continue; }
                for (var ox = 0u; ox < p.ow; ox++) {
                    let qx = i32(ox * p.stride + kx) - i32(p.pad);
                    if (qx < 0 || qx >= i32(p.w)) { continue; }
                    s += tiny_src[tiny_wt_index(co, oy, ox, ci, u32(qy), u32(qx))];
                }
            }
            tiny_dst[(i * p.k + ky) * p.k + kx] = s;
        }
    }
}
