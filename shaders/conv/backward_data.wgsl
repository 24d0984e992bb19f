// Convolution input gradient: dx from dy and the weights. Shared declarations are in
// common.wgsl, appended by the host.

@compute @workgroup_size(WG, 1, 1)
fn backward_data_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    if (gid.x >= rows_lanes(p.h, p.w)) { return; }
    let r = rows_run(gid.x, p.h, p.w);
    let g = wid.z;
    let acc = rows_tile(dy_rows_src(r, g), p.cog, p.cig, g * p.cog * 9u * (p.cig / 4u), wid.y * TM, r.y, r.z, true);
    store_rows_dx(r, g, wid.y * TM, acc);
}

// ... on maps four pixels wide (see column_tile).
@compute @workgroup_size(WG, 1, 1)
fn backward_data_column(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    if (gid.x >= rows_lanes(p.h, p.w)) { return; }
    let r = rows_run(gid.x, p.h, p.w);
    let g = wid.z;
    let acc = column_tile(dy_rows_src(r, g), p.cog, p.cig, g * p.cog * 9u * (p.cig / 4u), wid.y * TM, r.y, true);
    store_rows_dx(r, g, wid.y * TM, acc);
}

// The vec4 where group g's first dy plane of run r's image starts.
fn dy_rows_src(r: vec3<u32>, g: u32) -> u32 {
    return (r.x * p.cout + g * p.cog) * (p.h * p.w / 4u);
}

// Stores a lane's TM input channels x NV runs (in a row, or rows on maps one run wide: both
// NV consecutive vec4s).
fn store_rows_dx(r: vec3<u32>, g: u32, row0: u32, acc: array<vec4<f32>, TM * NV>) {
    for (var i = 0u; i < TM; i++) {
        let row = row0 + i;
        if (row >= p.cig) { break; }
        let o = ((r.x * p.cin + g * p.cig + row) * p.h * p.w + r.y * p.w + 4u * r.z) / 4u;
        for (var v = 0u; v < NV; v++) {
            rows_y4[o + v] = acc[i * NV + v];
        }
    }
}


// backward_data_rows_s2: the input gradient of a stride-2 3x3 conv whose input is twice as
// wide as its output (width in eights). A lane owns TM input channels x a pair of input rows
// (2m, 2m + 1) x the eight columns 8j .. 8j + 7. With padding 1, row 2m meets kernel row 1 of
// output row m; row 2m + 1 kernel row 0 of output row m + 1 and kernel row 2 of row m. Column
// 8j + 2e meets kx = 1 of output column 4j + e; column 8j + 2e + 1 kx = 0 of column 4j + e + 1
// and kx = 2 of 4j + e. So per output channel, output columns 4j .. 4j + 3 and the one after
// them in rows m and m + 1 (four loads) feed 9 TM vec4 FMAs into the lane's four quarters
// (row parity x column parity), which the store interleaves. Weights as backward_data_rows.
@compute @workgroup_size(WG, 1, 1)
fn backward_data_rows_s2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let pairs = (p.h + 1u) / 2u;
    let owq = p.ow / 4u;  // the eight-column blocks of a row
    if (gid.x >= p.n * pairs * owq) { return; }
    let n = gid.x / (pairs * owq);
    let m = (gid.x / owq) % pairs;
    let j = gid.x % owq;
    let g = wid.z;
    let row0 = wid.y * TM;
    let inq = p.cig / 4u;
    let w_q = row_quads(g * p.cog * 9u * inq, row0, p.cig);
    let has_next = j + 1u < owq;
    let below = m + 1u < p.oh;
    // [quarter * TM + channel], quarter = 2 x row parity + column parity
    var acc: array<vec4<f32>, 4u * TM>;
    for (var co = 0u; co < p.cog; co++) {
        let at0 = (n * p.cout + g * p.cog + co) * (p.oh * owq) + m * owq + j;
        let at1 = select(at0, at0 + owq, below);
        let a0 = rows_src4[at0];
        let a1 = select(vec4<f32>(0.0), rows_src4[at1], below);
        let n0 = select(0.0, rows_src4[select(at0, at0 + 1u, has_next)].x, has_next);
        let n1 = select(0.0, rows_src4[select(at1, at1 + 1u, has_next)].x, has_next && below);
        // output columns 4j + 1 .. 4j + 4
        let s0 = vec4<f32>(a0.y, a0.z, a0.w, n0);
        let s1 = vec4<f32>(a1.y, a1.z, a1.w, n1);
        for (var qq = 0u; qq < TM / 4u; qq++) {
            let wb = w_q[qq] + co * 9u * inq;
            let w00 = rows_w4[wb];
            let w01 = rows_w4[wb + inq];
            let w02 = rows_w4[wb + 2u * inq];
            let w10 = rows_w4[wb + 3u * inq];
            let w11 = rows_w4[wb + 4u * inq];
            let w12 = rows_w4[wb + 5u * inq];
            let w20 = rows_w4[wb + 6u * inq];
            let w21 = rows_w4[wb + 7u * inq];
            let w22 = rows_w4[wb + 8u * inq];
            for (var e = 0u; e < 4u; e++) {
                let i = 4u * qq + e;
                acc[i] = fma(vec4<f32>(w11[e]), a0, acc[i]);
                acc[TM + i] = fma(vec4<f32>(w10[e]), s0, fma(vec4<f32>(w12[e]), a0, acc[TM + i]));
                acc[2u * TM + i] = fma(vec4<f32>(w01[e]), a1, fma(vec4<f32>(w21[e]), a0, acc[2u * TM + i]));
                acc[3u * TM + i] = fma(vec4<f32>(w00[e]), s1, fma(vec4<f32>(w02[e]), a1,
                    fma(vec4<f32>(w20[e]), s0, fma(vec4<f32>(w22[e]), a0, acc[3u * TM + i]))));
            }
        }
    }
    let wq = p.w / 4u;
    for (var i = 0u; i < TM; i++) {
        let ci = row0 + i;
        if (ci >= p.cig) { break; }
        let o = ((n * p.cin + g * p.cig + ci) * p.h + 2u * m) * wq + 2u * j;
        for (var r = 0u; r < 2u; r++) {
            if (2u * m + r >= p.h) { break; }
            let even = acc[2u * r * TM + i];
            let odd = acc[(2u * r + 1u) * TM + i];
            rows_y4[o + r * wq] = vec4<f32>(even.x, odd.x, even.y, odd.y);
            rows_y4[o + r * wq + 1u] = vec4<f32>(even.z, odd.z, even.w, odd.w);
        }
    }
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

// backward_data_depthwise: the input gradient of a 3x3 depthwise conv, stride 1 or 2 (see
// forward_depthwise): a lane per image, TM channels from wid.y, walking the input pixels and
// the taps that reach them. Tap ky reaches input row iy from output row (iy + pad - ky) / stride
// when that divides; stride 2 tests it with a mask (no per-lane division on the CPU adapter).
@compute @workgroup_size(WG, 1, 1)
fn backward_data_depthwise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let n = gid.x;
    if (n >= p.n) { return; }
    let shift = p.stride - 1u;  // 0 or 1
    for (var c = wid.y * TM; c < min(wid.y * TM + TM, p.cin); c++) {
        let dy_plane = (n * p.cout + c) * p.oh * p.ow;
        let dx_plane = (n * p.cin + c) * p.h * p.w;
        for (var iy = 0u; iy < p.h; iy++) {
            for (var ix = 0u; ix < p.w; ix++) {
                var acc = 0.0;
                for (var ky = 0u; ky < 3u; ky++) {
                    let ty = iy + p.pad;
                    if (ty < ky || ((ty - ky) & shift) != 0u || ((ty - ky) >> shift) >= p.oh) { continue; }
                    let oy = (ty - ky) >> shift;
                    for (var kx = 0u; kx < 3u; kx++) {
                        let tx = ix + p.pad;
                        if (tx < kx || ((tx - kx) & shift) != 0u || ((tx - kx) >> shift) >= p.ow) { continue; }
                        acc += bwd_w[c * 9u + ky * 3u + kx] * gather_src[dy_plane + oy * p.ow + ((tx - kx) >> shift)];
                    }
                }
                bwd_dx[dx_plane + iy * p.w + ix] = acc;
            }
        }
    }
}
