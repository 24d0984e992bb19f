// C[m, n] = sum_k A[m, k] * B[k, n], with A and B addressed through row/column strides so
// one kernel serves a linear layer's forward (x W^T), input gradient (dy W) and weight
// gradient (dy^T x). Register tiled like the conv kernels (conv/): TM rows x (4 * NV) columns per
// invocation, vec4 accumulators, no workgroup memory. TM, NV, WG are appended by the host.

struct Mm {
    m: u32, n: u32, k: u32, a_row: u32,
    a_col: u32, b_row: u32, b_col: u32, relu: u32,
    eps: f32, hw: u32, b_img: u32, c_img: u32,
    c_row: u32, a_z: u32, b_z: u32, c_z: u32,
    a_off: u32, c_off: u32, _a: u32, _b: u32,
}
// The vec4 GEMMs are batched over workgroup_id.z (the groups of a grouped conv): batch z
// reads A, B and writes C at z * a_z, z * b_z, z * c_z further on (in floats, multiples of
// 4 where read as vec4); a_off and c_off shift A and C once (channel slices).

const TN: u32 = 4u * NV;

@group(0) @binding(0) var<uniform> p: Mm;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn matmul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    // Rows from workgroup_id: uniform across the workgroup (addresses and bounds tests).
    let row0 = wid.y * TM;
    let col0 = gid.x * TN;
    if (col0 >= p.n) { return; }
    var a_base: array<u32, TM>;
    for (var i = 0u; i < TM; i++) {
        a_base[i] = min(row0 + i, p.m - 1u) * p.a_row;
    }
    var b_base: array<u32, TN>;
    for (var j = 0u; j < TN; j++) {
        b_base[j] = min(col0 + j, p.n - 1u) * p.b_col;
    }
    var acc: array<vec4<f32>, TM * NV>;
    for (var kk = 0u; kk < p.k; kk++) {
        let brow = kk * p.b_row;
        var bv: array<vec4<f32>, NV>;
        for (var v = 0u; v < NV; v++) {
            let j = 4u * v;
            bv[v] = vec4<f32>(b[b_base[j] + brow], b[b_base[j + 1u] + brow],
                              b[b_base[j + 2u] + brow], b[b_base[j + 3u] + brow]);
        }
        let acol = kk * p.a_col;
        for (var i = 0u; i < TM; i++) {
            let av = vec4<f32>(a[a_base[i] + acol]);
            for (var v = 0u; v < NV; v++) {
                acc[i * NV + v] = fma(av, bv[v], acc[i * NV + v]);
            }
        }
    }
    for (var i = 0u; i < TM; i++) {
        let row = row0 + i;
        if (row >= p.m) { break; }
        for (var j = 0u; j < TN; j++) {
            if (col0 + j < p.n) {
                c[row * p.n + col0 + j] = acc[i * NV + j / 4u][j % 4u];
            }
        }
    }
}

// Dense layers (a linear layer, or a 1x1 conv on 1x1 maps: [n, c] rows) and 1x1 convs
// read contiguous runs of 4 values as one vec4: lavapipe issues loads lane by lane, so a
// vec4 load costs what a scalar one does. Two layouts cover forward and both gradients:
//   matmul_nn4: C[m, n] = A[m, k] B[k, n] with vec4 along n. The n columns may be images
//     of hw pixels each (a 1x1 conv over NCHW: column (image, pixel) of B is at
//     image * b_img + k * b_row + pixel, of C at row * c_row + image * c_img + pixel);
//     a plain matrix is one image of hw = n pixels. hw, b_row and b_img are multiples of 4.
//   matmul_nt4: C[m, n] = A[m, k] B[n, k]^T with k % 4 == 0 (vec4 along k); rows of A are
//     a_row apart, rows of B b_col apart, rows of C c_row apart (multiples of 4 but c_row).
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;

// Where the vec4 of columns starting at `col` lies in B (in vec4s) and in C (in floats).
fn nn4_offsets(col: u32) -> vec2<u32> {
    let img = col / p.hw;
    let px = col % p.hw;
    return vec2<u32>((img * p.b_img + px) / 4u, img * p.c_img + px);
}

// Where each of a lane's NV vec4s of columns starts in B (in vec4s), batch z (the columns
// past the end clamped to the last vec4: read, never stored).
fn nn4_b_offsets(col0: u32, z: u32) -> array<u32, NV> {
    var b_off: array<u32, NV>;
    for (var v = 0u; v < NV; v++) {
        b_off[v] = (z * p.b_z) / 4u + nn4_offsets(min(col0 + 4u * v, p.n - 4u)).x;
    }
    return b_off;
}

// The accumulators of one lane's TM x TN tile of matmul_nn4.
fn nn4_tile(row0: u32, col0: u32, z: u32) -> array<vec4<f32>, TM * NV> {
    var a_base: array<u32, TM>;
    for (var i = 0u; i < TM; i++) {
        a_base[i] = p.a_off + z * p.a_z + min(row0 + i, p.m - 1u) * p.a_row;
    }
    // Each vec4 of columns lies in one image (hw % 4 == 0).
    let b_off = nn4_b_offsets(col0, z);
    let b_rowq = p.b_row / 4u;
    var acc: array<vec4<f32>, TM * NV>;
    for (var kk = 0u; kk < p.k; kk++) {
        var bv: array<vec4<f32>, NV>;
        for (var v = 0u; v < NV; v++) {
            bv[v] = b4[kk * b_rowq + b_off[v]];
        }
        let acol = kk * p.a_col;
        for (var i = 0u; i < TM; i++) {
            let av = vec4<f32>(a[a_base[i] + acol]);  // uniform rows (still a load per row: see tn4_tile)
            for (var v = 0u; v < NV; v++) {
                acc[i * NV + v] = fma(av, bv[v], acc[i * NV + v]);
            }
        }
    }
    return acc;
}

// The tile of matmul_tn4: A stored transposed (a_row == 1: rows contiguous), read as vec4s
// of four rows. Every load in a loop costs lavapipe a lane-by-lane loop, uniform address or
// not (GALLIVM_DEBUG=ir), so reading TM / 4 vec4s per k instead of TM scalars is what counts.
// Needs TM, m, a_col, a_z and a_off in fours.
fn tn4_tile(row0: u32, col0: u32, z: u32) -> array<vec4<f32>, TM * NV> {
    var a_q: array<u32, (TM + 3u) / 4u>;  // sized for any TM: the module is built for every tile
    for (var q = 0u; q < TM / 4u; q++) {
        a_q[q] = (p.a_off + z * p.a_z) / 4u + min(row0 / 4u + q, p.m / 4u - 1u);
    }
    let b_off = nn4_b_offsets(col0, z);
    let b_rowq = p.b_row / 4u;
    let a_colq = p.a_col / 4u;
    var acc: array<vec4<f32>, TM * NV>;
    for (var kk = 0u; kk < p.k; kk++) {
        var bv: array<vec4<f32>, NV>;
        for (var v = 0u; v < NV; v++) {
            bv[v] = b4[kk * b_rowq + b_off[v]];
        }
        for (var q = 0u; q < TM / 4u; q++) {
            let a_rows = a4[kk * a_colq + a_q[q]];
            for (var e = 0u; e < 4u; e++) {
                let av = vec4<f32>(a_rows[e]);
                for (var v = 0u; v < NV; v++) {
                    acc[(4u * q + e) * NV + v] = fma(av, bv[v], acc[(4u * q + e) * NV + v]);
                }
            }
        }
    }
    return acc;
}

// Writes one lane's tile of matmul_nn4 / matmul_tn4 (columns laid out as nn4_offsets says)
// as vec4 stores: lavapipe stores lane by lane like it loads, so one vec4 store costs what a
// scalar one does (the host checks that C's rows, images, batches and offset are in fours).
fn store_nn4(acc: array<vec4<f32>, TM * NV>, row0: u32, col0: u32, z: u32, add: bool) {
    for (var v = 0u; v < NV; v++) {
        if (col0 + 4u * v >= p.n) { break; }
        let c_off = p.c_off + z * p.c_z + nn4_offsets(col0 + 4u * v).y;
        for (var i = 0u; i < TM; i++) {
            let row = row0 + i;
            if (row >= p.m) { break; }
            let o = (row * p.c_row + c_off) / 4u;
            if (add) {
                c4[o] += acc[i * NV + v];
            } else {
                c4[o] = acc[i * NV + v];
            }
        }
    }
}

@compute @workgroup_size(WG, 1, 1)
fn matmul_nn4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * TM;
    let col0 = gid.x * TN;
    if (col0 >= p.n) { return; }
    store_nn4(nn4_tile(row0, col0, wid.z), row0, col0, wid.z, false);
}

// matmul_tn4: C = A B like matmul_nn4, with A given transposed ([k, m], a_row == 1).
@compute @workgroup_size(WG, 1, 1)
fn matmul_tn4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * TM;
    let col0 = gid.x * TN;
    if (col0 >= p.n) { return; }
    store_nn4(tn4_tile(row0, col0, wid.z), row0, col0, wid.z, false);
}

// matmul_tn4_add: matmul_tn4 adding into C (a GEMM over k in chunks, one launch per chunk).
// store_nn4's `add` is a constant at each call, so the plain entries' stores carry no branch
// once the compiler inlines it.
@compute @workgroup_size(WG, 1, 1)
fn matmul_tn4_add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * TM;
    let col0 = gid.x * TN;
    if (col0 >= p.n) { return; }
    store_nn4(tn4_tile(row0, col0, wid.z), row0, col0, wid.z, true);
}

// matmul_nn4_bn (eval): a 1x1 conv's output with BatchNorm's running statistics, and a
// ReLU when p.relu, per row (output channel) as batchnorm.wgsl's apply_eval does.
@compute @workgroup_size(WG, 1, 1)
fn matmul_nn4_bn(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * TM;
    let col0 = gid.x * TN;
    if (col0 >= p.n) { return; }
    store_nn4_bn(nn4_tile(row0, col0, 0u), row0, col0);
}

// matmul_tn4_bn (eval): matmul_nn4_bn with A given transposed, as matmul_tn4.
@compute @workgroup_size(WG, 1, 1)
fn matmul_tn4_bn(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * TM;
    let col0 = gid.x * TN;
    if (col0 >= p.n) { return; }
    store_nn4_bn(tn4_tile(row0, col0, 0u), row0, col0);
}

fn store_nn4_bn(acc: array<vec4<f32>, TM * NV>, row0: u32, col0: u32) {
    var bn: array<BnChannel, TM>;
    for (var i = 0u; i < TM; i++) {
        bn[i] = bn_channel(min(row0 + i, p.m - 1u), p.eps);
    }
    store_nn4_bn_rows(acc, row0, col0, bn);
}

// store_nn4_bn with the tile's rows' BatchNorm channels given.
fn store_nn4_bn_rows(acc: array<vec4<f32>, TM * NV>, row0: u32, col0: u32, bn: array<BnChannel, TM>) {
    for (var i = 0u; i < TM; i++) {
        let row = row0 + i;
        if (row >= p.m) { break; }
        let q = bn[i];
        for (var v = 0u; v < NV; v++) {
            if (col0 + 4u * v >= p.n) { break; }
            let o = (row * p.c_row + nn4_offsets(col0 + 4u * v).y) / 4u;
            let t = acc[i * NV + v];
            c4[o] = vec4<f32>(bn_apply(t.x, q, p.relu), bn_apply(t.y, q, p.relu), bn_apply(t.z, q, p.relu), bn_apply(t.w, q, p.relu));
        }
    }
}

// matmul_nn4_bn_cols (eval): like matmul_nn4_bn, but BatchNorm per column: a dense layer
// y[batch, out] = x[batch, in] wt[in, out] whose output channels are its columns.
@compute @workgroup_size(WG, 1, 1)
fn matmul_nn4_bn_cols(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * TM;
    let col0 = gid.x * TN;
    if (col0 >= p.n) { return; }
    store_bn_cols(nn4_tile(row0, col0, 0u), row0, col0);
}

// matmul_tn4_bn_cols (eval): matmul_nn4_bn_cols with A (the layer's input) given transposed.
@compute @workgroup_size(WG, 1, 1)
fn matmul_tn4_bn_cols(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * TM;
    let col0 = gid.x * TN;
    if (col0 >= p.n) { return; }
    store_bn_cols(tn4_tile(row0, col0, 0u), row0, col0);
}

fn store_bn_cols(acc: array<vec4<f32>, TM * NV>, row0: u32, col0: u32) {
    for (var v = 0u; v < NV; v++) {
        if (col0 + 4u * v >= p.n) { break; }
        var q: array<BnChannel, 4>;
        for (var e = 0u; e < 4u; e++) {
            q[e] = bn_channel(col0 + 4u * v + e, p.eps);
        }
        for (var i = 0u; i < TM; i++) {
            let row = row0 + i;
            if (row >= p.m) { break; }
            let t = acc[i * NV + v];
            let o = (row * p.c_row + col0 + 4u * v) / 4u;
            c4[o] = vec4<f32>(bn_apply(t.x, q[0], p.relu), bn_apply(t.y, q[1], p.relu), bn_apply(t.z, q[2], p.relu), bn_apply(t.w, q[3], p.relu));
        }
    }
}

// transpose4: c[z, j, i] = a[z, i, j] for p.k row-major [m, n] matrices, m and n multiples of 4; each
// lane moves one 4x4 block as four vec4 loads and four vec4 stores. It gives matmul_tn4 its
// transposed operands (weights, and a dense layer's input or output gradient).
@group(0) @binding(3) var<storage, read_write> c4: array<vec4<f32>>;

@compute @workgroup_size(WG, 1, 1)
fn transpose4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // p.k matrices one after the other (the images of an NCHW tensor: [c, hw] -> [hw, c]).
    let mq = p.m / 4u;
    let nq = p.n / 4u;
    let block = gid.x + gid.y * nwg.x * WG;  // gpu.rs grid_1d
    if (block >= mq * nq * p.k) { return; }
    let base = (block / (mq * nq)) * mq * nq * 4u;
    let bi = (block % (mq * nq)) / nq;
    let bj = block % nq;
    let r0 = a4[base + (4u * bi) * nq + bj];
    let r1 = a4[base + (4u * bi + 1u) * nq + bj];
    let r2 = a4[base + (4u * bi + 2u) * nq + bj];
    let r3 = a4[base + (4u * bi + 3u) * nq + bj];
    c4[base + (4u * bj) * mq + bi] = vec4<f32>(r0.x, r1.x, r2.x, r3.x);
    c4[base + (4u * bj + 1u) * mq + bi] = vec4<f32>(r0.y, r1.y, r2.y, r3.y);
    c4[base + (4u * bj + 2u) * mq + bi] = vec4<f32>(r0.z, r1.z, r2.z, r3.z);
    c4[base + (4u * bj + 3u) * mq + bi] = vec4<f32>(r0.w, r1.w, r2.w, r3.w);
}

// transpose_rows4: transpose4 where only the rows (m) come in fours (an image's [c, hw] with
// hw not in fours, e.g. 7x7 maps): a lane moves a 4 x 1 block (four scalar loads, one vec4
// store), its column, row quad and matrix straight from the grid (x, y, z), so no lane
// divides an index (lavapipe scalarises per-lane division; transpose1 does three per value).
@compute @workgroup_size(WG, 1, 1)
fn transpose_rows4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if (j >= p.n) { return; }
    let bi = gid.y;
    let base = gid.z * p.m * p.n;
    let i = base + 4u * bi * p.n + j;
    c4[(base + j * p.m) / 4u + bi] = vec4<f32>(a[i], a[i + p.n], a[i + 2u * p.n], a[i + 3u * p.n]);
}

// transpose1: transpose4 for any sizes, one value per lane (small tensors: weights).
@compute @workgroup_size(WG, 1, 1)
fn transpose1(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;  // gpu.rs grid_1d
    let per = p.m * p.n;
    if (i >= per * p.k) { return; }
    let r = i % per;
    c[i] = a[i - r + (r % p.m) * p.n + r / p.m];
}

// Where each of a lane's TN rows of B (matmul_nt4's [n, k]) starts, in vec4s, b_first floats
// in (the rows past the end clamped to the last: read, never stored).
fn nt4_b_rows(col0: u32, b_first: u32) -> array<u32, TN> {
    var b_base: array<u32, TN>;
    for (var j = 0u; j < TN; j++) {
        b_base[j] = (b_first + min(col0 + j, p.n - 1u) * p.b_col) / 4u;
    }
    return b_base;
}

// The accumulators of one lane's TM x TN tile of matmul_nt4.
fn nt4_tile(row0: u32, col0: u32, z: u32) -> array<f32, TM * TN> {
    let kq = p.k / 4u;
    var a_base: array<u32, TM>;
    for (var i = 0u; i < TM; i++) {
        a_base[i] = (p.a_off + z * p.a_z + min(row0 + i, p.m - 1u) * p.a_row) / 4u;
    }
    let b_base = nt4_b_rows(col0, z * p.b_z);
    var acc: array<f32, TM * TN>;
    for (var q = 0u; q < kq; q++) {
        var bv: array<vec4<f32>, TN>;
        for (var j = 0u; j < TN; j++) {
            bv[j] = b4[b_base[j] + q];
        }
        for (var i = 0u; i < TM; i++) {
            let av = a4[a_base[i] + q];  // uniform rows
            for (var j = 0u; j < TN; j++) {
                acc[i * TN + j] += dot(av, bv[j]);
            }
        }
    }
    return acc;
}

@compute @workgroup_size(WG, 1, 1)
fn matmul_nt4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * TM;
    let col0 = gid.x * TN;
    if (col0 >= p.n) { return; }
    store_nt4(nt4_tile(row0, col0, wid.z), row0, col0, wid.z);
}

fn store_nt4(acc: array<f32, TM * TN>, row0: u32, col0: u32, z: u32) {
    let c_base = p.c_off + z * p.c_z;
    for (var i = 0u; i < TM; i++) {
        let row = row0 + i;
        if (row >= p.m) { break; }
        for (var j = 0u; j < TN; j++) {
            if (col0 + j < p.n) {
                c[c_base + row * p.c_row + col0 + j] = acc[i * TN + j];
            }
        }
    }
}

// matmul_nt4_bn (eval): a dense layer's output with BatchNorm's running statistics, and a
// ReLU when p.relu, per column as batchnorm.wgsl's apply_eval does. Column col of batch z
// belongs to channel (z * n + col) / hw: a conv on a tiny map (conv.rs, tiny_map) has hw
// output pixels per channel in its columns; a dense layer has hw = 1.
@compute @workgroup_size(WG, 1, 1)
fn matmul_nt4_bn(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * TM;
    let col0 = gid.x * TN;
    if (col0 >= p.n) { return; }
    store_nt4_bn(nt4_tile(row0, col0, wid.z), row0, col0, wid.z);
}

fn store_nt4_bn(acc: array<f32, TM * TN>, row0: u32, col0: u32, z: u32) {
    let c_base = p.c_off + z * p.c_z;
    for (var j = 0u; j < TN; j++) {
        let col = col0 + j;
        if (col >= p.n) { break; }
        let q = bn_channel((z * p.n + col) / p.hw, p.eps);
        for (var i = 0u; i < TM; i++) {
            let row = row0 + i;
            if (row >= p.m) { break; }
            c[c_base + row * p.c_row + col] = bn_apply(acc[i * TN + j], q, p.relu);
        }
    }
}

// A matmul_nt4_images lane's place in its one loop over (image, pixel quad): the quad's vec4
// in A and in B, and its index in the image. A nested loop (images, quads) cost lavapipe a
// mask push and the accumulators' masked stores per inner loop.
struct ImageQuads {
    a: u32, b: u32, q: u32,
}

fn image_quads_step(w: ImageQuads, hwq: u32) -> ImageQuads {
    let wrap = w.q + 1u == hwq;
    return ImageQuads(select(w.a + 1u, w.a + 1u + p.a_z / 4u - hwq, wrap),
                      select(w.b + 1u, w.b + 1u + p.b_z / 4u - hwq, wrap), select(w.q + 1u, 0u, wrap));
}

// matmul_nt4_images: C[m, n] = sum over images i < k of sum over pixels of A[i][m][pixel]
// B[i][n][pixel] -- a 1x1 conv's weight gradient dy x^T straight from NCHW, where the NHWC
// copies that matmul_tn4 needs cost a sixth of its time. A's rows are a_row floats apart,
// B's b_col (runs of hw pixels, in fours), images a_z and b_z apart.
@compute @workgroup_size(WG, 1, 1)
fn matmul_nt4_images(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * TM;
    let col0 = gid.x * TN;
    if (col0 >= p.n) { return; }
    let hwq = p.hw / 4u;
    var a_base: array<u32, TM>;
    for (var i = 0u; i < TM; i++) {
        a_base[i] = (min(row0 + i, p.m - 1u) * p.a_row) / 4u;
    }
    let b_base = nt4_b_rows(col0, 0u);
    var acc: array<f32, TM * TN>;
    var w = ImageQuads(0u, 0u, 0u);
    for (var t = 0u; t < p.k * hwq; t++) {
        var bv: array<vec4<f32>, TN>;
        for (var j = 0u; j < TN; j++) {
            bv[j] = b4[w.b + b_base[j]];
        }
        for (var i = 0u; i < TM; i++) {
            let av = a4[w.a + a_base[i]];  // uniform rows
            for (var j = 0u; j < TN; j++) {
                acc[i * TN + j] += dot(av, bv[j]);
            }
        }
        w = image_quads_step(w, hwq);
    }
    store_nt4(acc, row0, col0, 0u);
}
