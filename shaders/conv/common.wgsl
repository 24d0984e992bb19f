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


// Where each column reads x through tap (ky, kx) of input channel 0 (0 with inside false
// where that is padding).
struct FwdTap {
    off: array<u32, TN>,
    inside: array<bool, TN>,
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

// The weights of kernel row ky's three taps, kx = 0, 1, 2 (flipped: taps 8 - t, as the input
// gradient reads them), each a vec4 of four channels: `w` is their row quad's vec4 index for one
// source channel, taps outq vec4s apart.
fn kernel_row_weights(w: u32, outq: u32, ky: u32, flip: bool) -> array<vec4<f32>, 3> {
    var w4: array<vec4<f32>, 3>;
    for (var kx = 0u; kx < 3u; kx++) {
        w4[kx] = rows_w4[w + select(3u * ky + kx, 8u - 3u * ky - kx, flip) * outq];
    }
    return w4;
}

// acc plus channel e's weights of the three taps times the source vec4s they meet.
fn fma_taps(w4: array<vec4<f32>, 3>, e: u32, kx0: vec4<f32>, kx1: vec4<f32>, kx2: vec4<f32>, acc: vec4<f32>) -> vec4<f32> {
    return fma(vec4<f32>(w4[0][e]), kx0, fma(vec4<f32>(w4[1][e]), kx1, fma(vec4<f32>(w4[2][e]), kx2, acc)));
}

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
        // Source columns -1, 0, +1 meet taps kx = 0, 1, 2 of kernel row ky.
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
                let w4 = kernel_row_weights(w_q[qq] + w_row, outq, ky, flip);
                for (var e = 0u; e < 4u; e++) {
                    let i = 4u * qq + e;
                    for (var v = 0u; v < NV; v++) {
                        acc[i * NV + v] = fma_taps(w4, e, l[v], m[v], r[v], acc[i * NV + v]);
                    }
                }
            }
        }
    }
    return acc;
}

// forward_column*, backward_data_column: the row-run tile on maps four pixels wide (stage 1
// at 32x32), where a row is one run and rows_tile's lane would load two padding values per
// three FMAs: here a lane owns NV rows oy0.. of the plane (NV = 4: all of a 4x4 plane). Per
// source channel the NV + 2 rows that meet them (one aligned vec4 each; the ends of a row are
// padding) and the nine taps' weights feed 9 NV TM vec4 FMAs.
fn column_tile(src: u32, n_in: u32, n_out: u32, w_first: u32, row0: u32, oy0: u32, flip: bool) -> array<vec4<f32>, TM * NV> {
    let outq = n_out / 4u;
    let w_q = row_quads(w_first, row0, n_out);
    var acc: array<vec4<f32>, TM * NV>;
    for (var c = 0u; c < n_in; c++) {
        let o = src + c * p.h;
        var m: array<vec4<f32>, NV + 2u>;
        for (var j = 0u; j < NV + 2u; j++) {
            let iy = i32(oy0 + j) - 1;
            let ok = iy >= 0 && iy < i32(p.h);
            m[j] = select(vec4<f32>(0.0), rows_src4[o + select(0u, u32(iy), ok)], ok);
        }
        let w_row = c * 9u * outq;
        for (var ky = 0u; ky < 3u; ky++) {
            for (var qq = 0u; qq < TM / 4u; qq++) {
                let w4 = kernel_row_weights(w_q[qq] + w_row, outq, ky, flip);
                for (var e = 0u; e < 4u; e++) {
                    let i = 4u * qq + e;
                    for (var v = 0u; v < NV; v++) {
                        let mm = m[v + ky];
                        let l = vec4<f32>(0.0, mm.x, mm.y, mm.z);
                        let r = vec4<f32>(mm.y, mm.z, mm.w, 0.0);
                        acc[i * NV + v] = fma_taps(w4, e, l, mm, r, acc[i * NV + v]);
                    }
                }
            }
        }
    }
    return acc;
}

// Lane gid.x's first run on a map of h x w lanes' pixels (the output's for the forward, the
// input's for the input gradient): image, row and run in the row. A lane takes NV runs in
// a row (NV divides the runs per row) or, on maps one run wide, NV rows (column_tile).
fn rows_run(lane: u32, h: u32, w: u32) -> vec3<u32> {
    let wq = w / 4u;
    let lanes_per_image = h * wq / NV;
    let first = (lane % lanes_per_image) * NV;
    return vec3<u32>(lane / lanes_per_image, first / wq, first % wq);
}

fn rows_lanes(h: u32, w: u32) -> u32 {
    return p.n * (h * (w / 4u) / NV);
}
