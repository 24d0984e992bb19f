// Convolution forward passes: y = conv(x, w), and eval's y = BN(conv(x, w)) + ReLU (the epilogue
// in bn_epilogue.wgsl). Shared declarations (the Conv uniform, tiles, gathers, row runs) are in
// common.wgsl, appended by the host with the epilogue.

// forward: y = conv(x, w); forward_bn (eval): y = BN(conv(x, w)) with the running
// statistics, then ReLU when p.relu, in the epilogue (no intermediate tensor, no extra pass).
// x is binding 1, read through gather_tap (below).
@group(0) @binding(2) var<storage, read> fwd_w: array<f32>;
@group(0) @binding(3) var<storage, read_write> fwd_y: array<f32>;
// forward_bn binds the running statistics at 4-7 (bn_epilogue.wgsl, appended).

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

// The forward's tile for run r (rows_run) of workgroup wid: where the group's first input
// plane of the image starts (vec4s), where its weights start.
fn forward_rows_src(r: vec3<u32>, wid: vec3<u32>) -> u32 {
    return (r.x * p.x_channels + p.x_first + wid.z * p.cig) * (p.h * p.w / 4u);
}

fn forward_rows_w(wid: vec3<u32>) -> u32 {
    return wid.z * p.cig * 9u * (p.cog / 4u);
}

fn forward_rows_acc(r: vec3<u32>, wid: vec3<u32>) -> array<vec4<f32>, TM * NV> {
    return rows_tile(forward_rows_src(r, wid), p.cig, p.cog, forward_rows_w(wid), wid.y * TM, r.y, r.z, false);
}

// forward_rows_s2*: the same with stride 2. Output run q of row oy reads input columns
// 8q - 1 .. 8q + 7 of rows 2 oy - 1 .. 2 oy + 1: per input channel and kernel row, the
// run's two aligned vec4s and the value left of them hold the three kx taps' columns (every
// other one), so 2 NV + 1 loads feed 3 NV TM vec4 FMAs, as many per load as stride 1. The
// host runs it where the input is exactly twice as wide as the output (width in eights).
fn forward_rows_s2_acc(r: vec3<u32>, wid: vec3<u32>) -> array<vec4<f32>, TM * NV> {
    let src = forward_rows_src(r, wid);
    let hwq = p.h * p.w / 4u;
    let wq = p.w / 4u;
    let outq = p.cog / 4u;
    let w_q = row_quads(forward_rows_w(wid), wid.y * TM, p.cog);
    let has_left = r.z > 0u;
    var acc: array<vec4<f32>, TM * NV>;
    for (var ky = 0u; ky < 3u; ky++) {
        let iy = i32(2u * r.y + ky) - 1;
        let row_ok = iy >= 0 && iy < i32(p.h);
        let run = src + select(0u, u32(iy) * wq + 2u * r.z, row_ok);
        for (var c = 0u; c < p.cig; c++) {
            let o = run + c * hwq;
            var m: array<vec4<f32>, 2u * NV>;
            for (var v = 0u; v < 2u * NV; v++) {
                m[v] = select(vec4<f32>(0.0), rows_src4[o + v], row_ok);
            }
            let left = select(0.0, rows_src4[select(o, o - 1u, has_left)].w, row_ok && has_left);
            // columns 8q - 1 + kx, 8q + 1 + kx, ... of run v (a, b its two vec4s)
            var t0: array<vec4<f32>, NV>;
            var t1: array<vec4<f32>, NV>;
            var t2: array<vec4<f32>, NV>;
            for (var v = 0u; v < NV; v++) {
                let a = m[2u * v];
                let b = m[2u * v + 1u];
                let before = select(left, m[max(2u * v, 1u) - 1u].w, v > 0u);
                t0[v] = vec4<f32>(before, a.y, a.w, b.y);
                t1[v] = vec4<f32>(a.x, a.z, b.x, b.z);
                t2[v] = vec4<f32>(a.y, a.w, b.y, b.w);
            }
            let w_row = c * 9u * outq;
            for (var qq = 0u; qq < TM / 4u; qq++) {
                let w4 = kernel_row_weights(w_q[qq] + w_row, outq, ky, false);
                for (var e = 0u; e < 4u; e++) {
                    let i = 4u * qq + e;
                    for (var v = 0u; v < NV; v++) {
                        acc[i * NV + v] = fma_taps(w4, e, t0[v], t1[v], t2[v], acc[i * NV + v]);
                    }
                }
            }
        }
    }
    return acc;
}

// Where row `row` of run r lands in y (first of four).
fn forward_rows_out(r: vec3<u32>, g: u32, row: u32) -> u32 {
    return (r.x * p.y_channels + p.y_first + g * p.cog + row) * p.oh * p.ow + r.y * p.ow + 4u * r.z;
}

fn store_rows(r: vec3<u32>, wid: vec3<u32>, acc: array<vec4<f32>, TM * NV>) {
    for (var i = 0u; i < TM; i++) {
        let row = wid.y * TM + i;
        if (row >= p.cog) { break; }
        let o = forward_rows_out(r, wid.z, row) / 4u;
        for (var v = 0u; v < NV; v++) {
            rows_y4[o + v] = acc[i * NV + v];
        }
    }
}

fn store_rows_bn(r: vec3<u32>, wid: vec3<u32>, acc: array<vec4<f32>, TM * NV>) {
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
fn forward_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    if (gid.x >= rows_lanes(p.oh, p.ow)) { return; }
    let r = rows_run(gid.x, p.oh, p.ow);
    store_rows(r, wid, forward_rows_acc(r, wid));
}

@compute @workgroup_size(WG, 1, 1)
fn forward_rows_bn(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    if (gid.x >= rows_lanes(p.oh, p.ow)) { return; }
    let r = rows_run(gid.x, p.oh, p.ow);
    store_rows_bn(r, wid, forward_rows_acc(r, wid));
}

@compute @workgroup_size(WG, 1, 1)
fn forward_column(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    if (gid.x >= rows_lanes(p.oh, p.ow)) { return; }
    let r = rows_run(gid.x, p.oh, p.ow);
    store_rows(r, wid, column_tile(forward_rows_src(r, wid), p.cig, p.cog, forward_rows_w(wid), wid.y * TM, r.y, false));
}

@compute @workgroup_size(WG, 1, 1)
fn forward_column_bn(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    if (gid.x >= rows_lanes(p.oh, p.ow)) { return; }
    let r = rows_run(gid.x, p.oh, p.ow);
    store_rows_bn(r, wid, column_tile(forward_rows_src(r, wid), p.cig, p.cog, forward_rows_w(wid), wid.y * TM, r.y, false));
}

@compute @workgroup_size(WG, 1, 1)
fn forward_rows_s2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    if (gid.x >= rows_lanes(p.oh, p.ow)) { return; }
    let r = rows_run(gid.x, p.oh, p.ow);
    store_rows(r, wid, forward_rows_s2_acc(r, wid));
}

@compute @workgroup_size(WG, 1, 1)
fn forward_rows_s2_bn(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    if (gid.x >= rows_lanes(p.oh, p.ow)) { return; }
    let r = rows_run(gid.x, p.oh, p.ow);
    store_rows_bn(r, wid, forward_rows_s2_acc(r, wid));
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

// forward_depthwise, forward_depthwise_bn: a 3x3 depthwise conv (groups = channels: one
// input and one output channel per group, stride 1 or 2). The tiles above would keep one
// live row of TM; here a lane owns one image's planes of TM channels (from wid.y) and walks
// their output pixels, so the weights and every tap's bounds test are uniform across lanes
// (and a workgroup does enough to outweigh lavapipe's cost per workgroup).
fn depthwise_pixel(x_plane: u32, c: u32, oy: u32, ox: u32) -> f32 {
    var acc = 0.0;
    for (var ky = 0u; ky < 3u; ky++) {
        let iy = oy * p.stride + ky;  // in padded coordinates
        if (iy < p.pad || iy >= p.h + p.pad) { continue; }
        for (var kx = 0u; kx < 3u; kx++) {
            let ix = ox * p.stride + kx;
            if (ix < p.pad || ix >= p.w + p.pad) { continue; }
            acc += fwd_w[c * 9u + ky * 3u + kx] * gather_src[x_plane + (iy - p.pad) * p.w + ix - p.pad];
        }
    }
    return acc;
}

@compute @workgroup_size(WG, 1, 1)
fn forward_depthwise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let n = gid.x;
    if (n >= p.n) { return; }
    for (var c = wid.y * TM; c < min(wid.y * TM + TM, p.cin); c++) {
        let x_plane = (n * p.x_channels + p.x_first + c) * p.h * p.w;
        let y_plane = (n * p.y_channels + p.y_first + c) * p.oh * p.ow;
        for (var oy = 0u; oy < p.oh; oy++) {
            for (var ox = 0u; ox < p.ow; ox++) {
                fwd_y[y_plane + oy * p.ow + ox] = depthwise_pixel(x_plane, c, oy, ox);
            }
        }
    }
}

@compute @workgroup_size(WG, 1, 1)
fn forward_depthwise_bn(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let n = gid.x;
    if (n >= p.n) { return; }
    for (var c = wid.y * TM; c < min(wid.y * TM + TM, p.cin); c++) {
        let q = bn_channel(c, p.eps);
        let x_plane = (n * p.x_channels + p.x_first + c) * p.h * p.w;
        let y_plane = (n * p.y_channels + p.y_first + c) * p.oh * p.ow;
        for (var oy = 0u; oy < p.oh; oy++) {
            for (var ox = 0u; ox < p.ow; ox++) {
                fwd_y[y_plane + oy * p.ow + ox] = bn_apply(depthwise_pixel(x_plane, c, oy, ox), q, p.relu);
            }
        }
    }
}
