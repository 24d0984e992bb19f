// Convolution weight gradient: dw summed over (slices of) the batch, and the fixed-order sum
// of the slices' partial results. Shared declarations are in common.wgsl, appended by the host.

// backward_weight: dw[s] = sum over the pixels of batch slice s of dy * x (s = split index).
// The images [x, y) that split `split` of a weight-gradient launch sums over.
fn split_images(split: u32) -> vec2<u32> {
    let begin = split * p.n_per_split;
    return vec2<u32>(begin, min(begin + p.n_per_split, p.n));
}

@group(0) @binding(1) var<storage, read> wgrad_dy: array<f32>;
@group(0) @binding(2) var<storage, read> wgrad_x: array<f32>;
@group(0) @binding(3) var<storage, read_write> wgrad_dw: array<f32>;

// Per column (input channel, tap) of a weight-gradient tile: its input plane and tap offset.
struct WgradColumns {
    x_plane: array<u32, TN>,
    ky: array<i32, TN>,
    kx: array<i32, TN>,
}

fn weight_grad_columns(g: u32, col0: u32) -> WgradColumns {
    let kk = p.k * p.k;
    let ncol = p.cig * kk;
    let hw = p.h * p.w;
    var f: WgradColumns;
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
fn weight_grad_x(f: WgradColumns, x_img: u32, iy: i32, ix: i32) -> array<vec4<f32>, NV> {
    var xv: array<vec4<f32>, NV>;
    for (var v = 0u; v < NV; v++) {
        var q: vec4<f32>;
        for (var e = 0u; e < 4u; e++) {
            let j = 4u * v + e;
            let yy = iy + f.ky[j];
            let xx = ix + f.kx[j];
            let inside = yy >= 0 && yy < i32(p.h) && xx >= 0 && xx < i32(p.w);
            let o = select(0u, x_img + f.x_plane[j] + u32(yy) * p.w + u32(xx), inside);
            q[e] = select(0.0, wgrad_x[o], inside);
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
                wgrad_dw[split * total + (g * p.cog + row) * ncol + col0 + j] = acc[i * NV + j / 4u][j % 4u];
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
                    let dv = vec4<f32>(wgrad_dy[dy_plane[i] + pix]);
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
@group(0) @binding(1) var<storage, read> wgrad_dyt4: array<vec4<f32>>;

// The FMAs of one pixel's dy (a lane's rows, TM / 4 vec4 loads from `pix`) with its columns.
fn fma_dy_rows(acc: ptr<function, array<vec4<f32>, TM * NV>>, pix: u32, dy_q: array<u32, (TM + 3u) / 4u>, cols: array<vec4<f32>, NV>) {
    for (var q = 0u; q < TM / 4u; q++) {
        fma_rows4(acc, q, wgrad_dyt4[pix + dy_q[q]], cols);
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
@group(0) @binding(2) var<storage, read> wgrad_xt4: array<vec4<f32>>;

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
                    xv[v] = select(vec4<f32>(0.0), wgrad_xt4[o], inside);
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
                wgrad_dw[split * total + (g * p.cog + row) * ncol + (ci + e) * kk + tap] = acc[i * NV + v][e];
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
                    xv[v] = vec4<f32>(wgrad_x[at + x_plane[j]], wgrad_x[at + x_plane[j + 1u]],
                                      wgrad_x[at + x_plane[j + 2u]], wgrad_x[at + x_plane[j + 3u]]);
                }
                let pix = dy_img + oy * p.ow + ox;
                for (var i = 0u; i < TM; i++) {
                    let dv = vec4<f32>(wgrad_dy[dy_plane[i] + pix]);
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
                wgrad_dw[split * total + ((g * p.cog + row) * p.cig + c0 + j) * kk + tap] = acc[i * NV + j / 4u][j % 4u];
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
                    dv[i] = vec4<f32>(wgrad_dy[dy_plane[i] + pix]);
                }
                for (var t = 0u; t < 9u; t++) {
                    let yy = i32(oy * p.stride + t / 3u) - i32(p.pad);
                    let xx = i32(ox * p.stride + t % 3u) - i32(p.pad);
                    if (yy < 0 || yy >= i32(p.h) || xx < 0 || xx >= i32(p.w)) { continue; }
                    let at = x_img + u32(yy) * p.w + u32(xx);
                    for (var v = 0u; v < NV; v++) {
                        let j = 4u * v;
                        let xv = vec4<f32>(wgrad_x[at + x_plane[j]], wgrad_x[at + x_plane[j + 1u]],
                                           wgrad_x[at + x_plane[j + 2u]], wgrad_x[at + x_plane[j + 3u]]);
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
                    wgrad_dw[split * total + ((g * p.cog + row) * p.cig + c0 + j) * 9u + t] = acc[(t * TM + i) * NV + j / 4u][j % 4u];
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
    let c0 = gid.x * NV;
    if (c0 >= p.cig) { return; }
    rows_dw_s1(wid.z / p.groups, wid.z % p.groups, wid.y * TM, c0);
}

// The lanes of backward_weight_rows*_by_slice run over batch slices (gid.x, one partial sum
// each), the tile (TM output x NV input channels of group g) uniform from wid.y and wid.z:
// where a group has fewer than 8 NV input channels, lanes over channels would leave a
// workgroup's lanes idle (stage 1's 8 per group: half; the stem's 3: three quarters).
struct SliceTile {
    split: u32,
    g: u32,
    row0: u32,
    c0: u32,
    live: bool,
}

fn slice_tile(gid: vec3<u32>, wid: vec3<u32>) -> SliceTile {
    let channel_tiles = (p.cig + NV - 1u) / NV;
    return SliceTile(gid.x, wid.z / channel_tiles, wid.y * TM, (wid.z % channel_tiles) * NV, gid.x < p.splits);
}

@compute @workgroup_size(WG, 1, 1)
fn backward_weight_rows_by_slice(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = slice_tile(gid, wid);
    if (!t.live) { return; }
    rows_dw_s1(t.split, t.g, t.row0, t.c0);
}

// A row-run weight gradient lane's place in its walk over run q of output row oy of image n:
// one loop stepped with selects, where nested loops (images, rows, runs) cost lavapipe their
// mask bookkeeping and the masked stores of the accumulators at every level, about a fifth of
// the kernel on 4x4 maps.
struct RunWalk {
    n: u32, oy: u32, q: u32,
}

fn run_walk_step(w: RunWalk, runs: u32, rows: u32) -> RunWalk {
    let row_end = w.q + 1u == runs;
    let oy = select(w.oy, w.oy + 1u, row_end);
    let image_end = row_end && oy == rows;
    return RunWalk(select(w.n, w.n + 1u, image_end), select(oy, 0u, image_end), select(w.q + 1u, 0u, row_end));
}

// backward_weight_rows' walk over split `split`'s images for the tile (row0.., c0..) of group g.
fn rows_dw_s1(split: u32, g: u32, row0: u32, c0: u32) {
    let hwq = p.h * p.w / 4u;
    let wq = p.w / 4u;
    let images = split_images(split);
    let x_plane = rows_input_planes(g, c0, hwq);
    let dy_plane = output_planes(g, row0, hwq);
    var acc: array<f32, 9u * TM * NV>;
    // x rows oy - 1, oy, oy + 1 (ky = 0, 1, 2): the run before, at and after the walk's,
    // zero at each row's start (rows outside the map and the left edge read as padding).
    // Zeroed by explicit initializers: Chromium's compiler (Tint, then SwiftShader) zeroes
    // a loop's `var` without one only once, on the first iteration.
    var prev = array<vec4<f32>, 3u * NV>();
    var cur = array<vec4<f32>, 3u * NV>();
    var w = RunWalk(images.x, 0u, 0u);
    for (var trip = 0u; trip < (images.y - images.x) * p.h * wq; trip++) {
        let x_img = w.n * p.cin * hwq;
        let dy_img = w.n * p.cout * hwq;
        let oy = w.oy;
        let q = w.q;
        if (q == 0u) {
            prev = array<vec4<f32>, 3u * NV>();
            cur = array<vec4<f32>, 3u * NV>();
            for (var ky = 0u; ky < 3u; ky++) {
                let iy = i32(oy + ky) - 1;
                if (iy < 0 || iy >= i32(p.h)) { continue; }
                for (var c = 0u; c < NV; c++) {
                    cur[ky * NV + c] = wr_x4[x_img + x_plane[c] + u32(iy) * wq];
                }
            }
        }
        var next = array<vec4<f32>, 3u * NV>();
        for (var ky = 0u; ky < 3u; ky++) {
            let iy = i32(oy + ky) - 1;
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
        w = run_walk_step(w, wq, p.h);
    }
    store_rows_dw(split, g, row0, c0, acc);
}

// input_planes for a row-run lane's NV input channels (planes in vec4s): input_planes' TN
// entries in their place cost the stride-1 weight gradient a sixth of its speed (benches/shares.rs).
fn rows_input_planes(g: u32, c0: u32, hwq: u32) -> array<u32, NV> {
    var x_plane: array<u32, NV>;
    for (var c = 0u; c < NV; c++) {
        x_plane[c] = (g * p.cig + min(c0 + c, p.cig - 1u)) * hwq;
    }
    return x_plane;
}

// Stores a row-run lane's nine taps of TM output x NV input channels (to its split's partials).
fn store_rows_dw(split: u32, g: u32, row0: u32, c0: u32, acc: array<f32, 9u * TM * NV>) {
    let total = p.cout * p.cig * 9u;
    for (var i = 0u; i < TM; i++) {
        let row = row0 + i;
        if (row >= p.cog) { break; }
        for (var c = 0u; c < NV; c++) {
            if (c0 + c >= p.cig) { break; }
            for (var t = 0u; t < 9u; t++) {
                wgrad_dw[split * total + ((g * p.cog + row) * p.cig + c0 + c) * 9u + t] = acc[(t * TM + i) * NV + c];
            }
        }
    }
}

// backward_weight_rows_s2: the same with stride 2, where the input is exactly twice as wide
// as the output (width in eights). Output run q of row oy meets input columns 8q - 1 .. 8q + 7
// of rows 2 oy - 1 .. 2 oy + 1: per input channel and kernel row, two aligned vec4s and the
// last value of the previous run's give the three kx taps' columns (every other one), so
// TM + 6 NV loads feed 9 TM NV dot products. Stride 2 leaves few channels, so its lanes always
// run over batch slices (see slice_tile).
@compute @workgroup_size(WG, 1, 1)
fn backward_weight_rows_s2_by_slice(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = slice_tile(gid, wid);
    if (!t.live) { return; }
    rows_dw_s2(t.split, t.g, t.row0, t.c0);
}

// backward_weight_rows_s2's walk over split `split`'s images (see rows_dw_s1).
fn rows_dw_s2(split: u32, g: u32, row0: u32, c0: u32) {
    let x_hwq = p.h * p.w / 4u;
    let wq = p.w / 4u;
    let dy_hwq = p.oh * p.ow / 4u;
    let dy_wq = p.ow / 4u;
    let images = split_images(split);
    let x_plane = rows_input_planes(g, c0, x_hwq);
    let dy_plane = output_planes(g, row0, dy_hwq);
    var acc: array<f32, 9u * TM * NV>;
    // per kernel row and input channel, the value left of the run (padding at a row's start;
    // explicit initializers, see rows_dw_s1)
    var left = array<f32, 3u * NV>();
    var w = RunWalk(images.x, 0u, 0u);
    for (var trip = 0u; trip < (images.y - images.x) * p.oh * dy_wq; trip++) {
        let x_img = w.n * p.cin * x_hwq;
        let dy_img = w.n * p.cout * dy_hwq;
        let oy = w.oy;
        let q = w.q;
        if (q == 0u) {
            left = array<f32, 3u * NV>();
        }
        var dv: array<vec4<f32>, TM>;
        for (var i = 0u; i < TM; i++) {
            dv[i] = wr_dy4[dy_img + dy_plane[i] + oy * dy_wq + q];
        }
        for (var ky = 0u; ky < 3u; ky++) {
            let iy = i32(2u * oy + ky) - 1;
            if (iy < 0 || iy >= i32(p.h)) { continue; }
            for (var c = 0u; c < NV; c++) {
                let at = x_img + x_plane[c] + u32(iy) * wq + 2u * q;
                let a = wr_x4[at];
                let b = wr_x4[at + 1u];
                let t0 = vec4<f32>(left[ky * NV + c], a.y, a.w, b.y);
                let t1 = vec4<f32>(a.x, a.z, b.x, b.z);
                let t2 = vec4<f32>(a.y, a.w, b.y, b.w);
                left[ky * NV + c] = b.w;
                for (var i = 0u; i < TM; i++) {
                    let t = ((3u * ky) * TM + i) * NV + c;
                    acc[t] += dot(dv[i], t0);
                    acc[t + TM * NV] += dot(dv[i], t1);
                    acc[t + 2u * TM * NV] += dot(dv[i], t2);
                }
            }
        }
        w = run_walk_step(w, dy_wq, p.oh);
    }
    store_rows_dw(split, g, row0, c0, acc);
}

// backward_weight_depthwise: the weight gradient of a 3x3 depthwise conv, stride 1 or 2
// (see forward_depthwise): a lane per channel with its nine taps' sums in registers, over
// the images of batch slice wid.z; the pixels and taps are uniform across lanes.
@compute @workgroup_size(WG, 1, 1)
fn backward_weight_depthwise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.cout) { return; }
    let images = split_images(wid.z);
    var acc: array<f32, 9>;
    for (var n = images.x; n < images.y; n++) {
        let dy_plane = (n * p.cout + c) * p.oh * p.ow;
        let x_plane = (n * p.cin + c) * p.h * p.w;
        for (var oy = 0u; oy < p.oh; oy++) {
            for (var ox = 0u; ox < p.ow; ox++) {
                let d = wgrad_dy[dy_plane + oy * p.ow + ox];
                for (var ky = 0u; ky < 3u; ky++) {
                    let iy = oy * p.stride + ky;
                    if (iy < p.pad || iy >= p.h + p.pad) { continue; }
                    for (var kx = 0u; kx < 3u; kx++) {
                        let ix = ox * p.stride + kx;
                        if (ix < p.pad || ix >= p.w + p.pad) { continue; }
                        acc[ky * 3u + kx] += d * wgrad_x[x_plane + (iy - p.pad) * p.w + ix - p.pad];
                    }
                }
            }
        }
    }
    for (var t = 0u; t < 9u; t++) {
        wgrad_dw[wid.z * p.cout * 9u + c * 9u + t] = acc[t];
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
