// BatchNorm over NCHW (2-D) or NC (1-D, hw = 1), with an optional fused ReLU.
// Statistics and gradient sums are per-channel tree reductions in one workgroup per
// channel (WebGPU has no float atomics), which then applies them to its channel; eval's
// apply is a flat grid.
// Semantics follow PyTorch: normalise with the biased batch variance, running_var gets the
// unbiased one, running = (1 - momentum) * running + momentum * batch.
// Fused concat (training): the forward's y and the backward's dy may be a channel slice of a
// wider buffer (io_total channels per image, this BN's first at io_first: conv1 and conv2 of
// an SPG block write and read the concat buffer in place). With y_copy the forward also
// writes y whole to ft_y2 (conv1's output, which conv2 reads); with dy_sum the backward adds
// bw_dy2 (whole) to dy (a gradient that arrives as two terms, summed as it is read). With
// residual the forward ends an SPG block: y = relu(BN(x) + ft_res), the shortcut added before
// the ReLU (which the BN's own relu flag then leaves off, so its backward takes dy as given).

struct Bn {
    n: u32, c: u32, hw: u32, relu: u32,
    eps: f32, momentum: f32, io_total: u32, io_first: u32,
    y_copy: u32, dy_sum: u32, residual: u32, _b: u32,
}

// Activations are read as V: vec4<f32> when a plane's pixel count is a multiple of 4 (VW = 4,
// a quarter of the per-lane loads that lavapipe issues one lane at a time), else f32
// (VW = 1). The host appends V, VW and total() (the sum of a V's components).
// Every kernel indexes channel c uniformly (from workgroup_id, so per-channel values are one
// scalar load on lavapipe) and walks images n and pixels p with loops, never dividing a flat
// index (a per-lane integer division is scalarised on the CPU adapter).
const RW: u32 = 16u;  // reduction workgroup width: lanes take images n = lid, lid + RW, ...
const EW: u32 = 8u;   // elementwise workgroup width: one lane per image, a loop over pixels

@group(0) @binding(0) var<uniform> p: Bn;

var<workgroup> red_a: array<f32, RW>;
var<workgroup> red_b: array<f32, RW>;

// Sums red_a and red_b over the workgroup into element 0 (ends with a barrier).
fn reduce_pair(lid: u32) {
    for (var s = RW / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (lid < s) {
            red_a[lid] += red_a[lid + s];
            red_b[lid] += red_b[lid + s];
        }
    }
    workgroupBarrier();
}

// First V of image n's plane of channel c, and the plane's length in V: PLANE_V where the
// host knew it when it built the pipeline (short planes, see PLANE_V_MAX), so that the loops over a
// plane have a constant trip count and are unrolled (lavapipe then carries no value through
// them: no per-trip mask bookkeeping or masked stores); else from the uniform.
fn plane(n: u32, c: u32) -> u32 {
    return (n * p.c + c) * plane_len();
}
fn plane_len() -> u32 {
    if (PLANE_V > 0u) {
        return PLANE_V;
    }
    return p.hw / VW;
}
// The same plane in the (possibly wider) buffer of the forward's y or the backward's dy.
fn io_plane(n: u32, c: u32) -> u32 {
    return (n * p.io_total + p.io_first + c) * plane_len();
}

// forward_train: y = act((x - mean) * invstd * gamma + beta) with the batch statistics, which
// go to saved = [mean; 1/sqrt(var + eps)] (for the backward), and the running statistics
// updated. One workgroup per channel reduces, then normalises the same channel: one dispatch,
// and the channel's values are still in cache for the second pass.
@group(0) @binding(1) var<storage, read> ft_x: array<V>;
@group(0) @binding(2) var<storage, read_write> ft_saved: array<f32>;
@group(0) @binding(3) var<storage, read_write> ft_running_mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> ft_running_var: array<f32>;
@group(0) @binding(5) var<storage, read> ft_gamma: array<f32>;
@group(0) @binding(6) var<storage, read> ft_beta: array<f32>;
@group(0) @binding(7) var<storage, read_write> ft_y: array<V>;
@group(0) @binding(8) var<storage, read_write> ft_y2: array<V>;
@group(0) @binding(9) var<storage, read> ft_res: array<V>;

// Normalises the V at x index i into y index o (and y2, see Bn.y_copy; Bn.residual).
fn normalise_at(i: u32, o: u32, mean: f32, invstd: f32, gamma: f32, beta: f32) {
    var y = (ft_x[i] - V(mean)) * invstd * gamma + V(beta);
    if (p.residual != 0u) {
        y = max(y + ft_res[i], V(0.0));
    } else {
        y = activate(y);
    }
    ft_y[o] = y;
    if (p.y_copy != 0u) {
        ft_y2[i] = y;
    }
}

// Normalises image n's plane of channel c.
fn normalise_plane(n: u32, c: u32, mean: f32, invstd: f32, gamma: f32, beta: f32) {
    let b = plane(n, c);
    let o = io_plane(n, c);
    for (var j = 0u; j < plane_len(); j++) {
        normalise_at(b + j, o + j, mean, invstd, gamma, beta);
    }
}

// Both statistics come from one pass over the values less a shift K, the mean of channel
// c's first V: var = E[(x - K)^2] - E[x - K]^2 loses only about eps (K - mean)^2 / var to
// cancellation (K is one of the values, so near the mean next to the spread; a value six
// standard deviations out costs 36 eps), where E[x^2] - E[x]^2 of the raw values would lose
// eps mean^2 / var. The second pass this saves was 15% of the forward (benches/kernels.rs).
fn channel_shift(c: u32) -> f32 {
    return total(ft_x[plane(0u, c)]) / f32(VW);
}

@compute @workgroup_size(RW, 1, 1)
fn forward_train(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let c = wid.x;
    let lid = lid3.x;
    let m = p.n * p.hw;
    let shift = channel_shift(c);
    var s = V(0.0);
    var q = V(0.0);
    for (var n = lid; n < p.n; n += RW) {
        let b = plane(n, c);
        for (var i = b; i < b + plane_len(); i++) {
            let d = ft_x[i] - V(shift);
            s += d;
            q += d * d;
        }
    }
    red_a[lid] = total(s);
    red_b[lid] = total(q);
    reduce_pair(lid);
    let ds = red_a[0] / f32(m);
    let mean = ds + shift;
    let var_b = max(red_b[0] / f32(m) - ds * ds, 0.0);
    let invstd = 1.0 / sqrt(var_b + p.eps);
    if (lid == 0u) {
        ft_saved[c] = mean;
        ft_saved[p.c + c] = invstd;
        let unbiased = select(var_b, var_b * f32(m) / f32(m - 1u), m > 1u);
        ft_running_mean[c] = (1.0 - p.momentum) * ft_running_mean[c] + p.momentum * mean;
        ft_running_var[c] = (1.0 - p.momentum) * ft_running_var[c] + p.momentum * unbiased;
    }
    let gamma = ft_gamma[c];
    let beta = ft_beta[c];
    for (var n = lid; n < p.n; n += RW) {
        normalise_plane(n, c, mean, invstd, gamma, beta);
    }
}

// forward_train_by_channel: the same with one lane per channel and no workgroup memory: each
// lane sums its channel image by image (a V per plane, then the planes in order). Layers with
// many channels and small planes (stage 3's 1x1 maps) are dominated by per-workgroup cost
// (barriers, launch) in forward_train; here eight channels share a workgroup without barriers.
@compute @workgroup_size(EW, 1, 1)
fn forward_train_by_channel(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.c) { return; }
    let m = p.n * p.hw;
    let shift = channel_shift(c);
    var s = 0.0;
    var q = 0.0;
    for (var n = 0u; n < p.n; n++) {
        let b = plane(n, c);
        var plane_s = V(0.0);
        var plane_q = V(0.0);
        for (var j = 0u; j < plane_len(); j++) {
            let d = ft_x[b + j] - V(shift);
            plane_s += d;
            plane_q += d * d;
        }
        s += total(plane_s);
        q += total(plane_q);
    }
    let ds = s / f32(m);
    let mean = ds + shift;
    let var_b = max(q / f32(m) - ds * ds, 0.0);
    let invstd = 1.0 / sqrt(var_b + p.eps);
    ft_saved[c] = mean;
    ft_saved[p.c + c] = invstd;
    let unbiased = select(var_b, var_b * f32(m) / f32(m - 1u), m > 1u);
    ft_running_mean[c] = (1.0 - p.momentum) * ft_running_mean[c] + p.momentum * mean;
    ft_running_var[c] = (1.0 - p.momentum) * ft_running_var[c] + p.momentum * unbiased;
    let gamma = ft_gamma[c];
    let beta = ft_beta[c];
    for (var n = 0u; n < p.n; n++) {
        normalise_plane(n, c, mean, invstd, gamma, beta);
    }
}

fn activate(z: V) -> V {
    return select(z, max(z, V(0.0)), p.relu != 0u);
}

// apply_eval: y = act((x - running_mean) / sqrt(running_var + eps) * gamma + beta).
@group(0) @binding(1) var<storage, read> ev_x: array<V>;
@group(0) @binding(2) var<storage, read> ev_running_mean: array<f32>;
@group(0) @binding(3) var<storage, read> ev_running_var: array<f32>;
@group(0) @binding(4) var<storage, read> ev_gamma: array<f32>;
@group(0) @binding(5) var<storage, read> ev_beta: array<f32>;
@group(0) @binding(6) var<storage, read_write> ev_y: array<V>;

@compute @workgroup_size(EW, 1, 1)
fn apply_eval(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let n = gid.x;
    let c = wid.y;
    if (n >= p.n) { return; }
    let mean = ev_running_mean[c];
    let invstd = 1.0 / sqrt(ev_running_var[c] + p.eps);
    let gamma = ev_gamma[c];
    let beta = ev_beta[c];
    let b = plane(n, c);
    for (var i = b; i < b + plane_len(); i++) {
        ev_y[i] = activate((ev_x[i] - V(mean)) * invstd * gamma + beta);
    }
}

// The incoming gradient with the ReLU mask applied (the mask is recomputed from x).
fn masked_grad(dy: V, xhat: V, gamma: f32, beta: f32) -> V {
    let dead = xhat * gamma + beta <= V(0.0);
    return select(dy, select(dy, V(0.0), dead), p.relu != 0u);
}

// backward: dgamma = sum(g * xhat), dbeta = sum(g) (g the masked gradient), then
// dx = gamma * invstd / m * (m * g - dbeta - xhat * dgamma), in one workgroup per channel.
@group(0) @binding(1) var<storage, read> bw_dy: array<V>;
@group(0) @binding(2) var<storage, read> bw_x: array<V>;
@group(0) @binding(3) var<storage, read> bw_saved: array<f32>;
@group(0) @binding(4) var<storage, read> bw_gamma: array<f32>;
@group(0) @binding(5) var<storage, read> bw_beta: array<f32>;
@group(0) @binding(6) var<storage, read_write> bw_dgamma: array<f32>;
@group(0) @binding(7) var<storage, read_write> bw_dbeta: array<f32>;
@group(0) @binding(8) var<storage, read_write> bw_dx: array<V>;
@group(0) @binding(9) var<storage, read> bw_dy2: array<V>;

// The incoming gradient at V j of image n's plane of channel c (see Bn.io_total, Bn.dy_sum).
fn incoming(n: u32, c: u32, j: u32) -> V {
    let g = bw_dy[io_plane(n, c) + j];
    if (p.dy_sum != 0u) {
        return g + bw_dy2[plane(n, c) + j];
    }
    return g;
}

@compute @workgroup_size(RW, 1, 1)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let c = wid.x;
    let lid = lid3.x;
    let mean = bw_saved[c];
    let invstd = bw_saved[p.c + c];
    let gamma = bw_gamma[c];
    let beta = bw_beta[c];
    var s1 = V(0.0);
    var s2 = V(0.0);
    for (var n = lid; n < p.n; n += RW) {
        let b = plane(n, c);
        for (var j = 0u; j < plane_len(); j++) {
            let xhat = (bw_x[b + j] - V(mean)) * invstd;
            let g = masked_grad(incoming(n, c, j), xhat, gamma, beta);
            s1 += g;
            s2 += g * xhat;
        }
    }
    red_a[lid] = total(s1);
    red_b[lid] = total(s2);
    reduce_pair(lid);
    let dbeta = red_a[0];
    let dgamma = red_b[0];
    if (lid == 0u) {
        bw_dbeta[c] = dbeta;
        bw_dgamma[c] = dgamma;
    }
    let m = f32(p.n * p.hw);
    for (var n = lid; n < p.n; n += RW) {
        let b = plane(n, c);
        for (var j = 0u; j < plane_len(); j++) {
            let xhat = (bw_x[b + j] - V(mean)) * invstd;
            let g = masked_grad(incoming(n, c, j), xhat, gamma, beta);
            bw_dx[b + j] = gamma * invstd / m * (m * g - V(dbeta) - xhat * dgamma);
        }
    }
}

// backward_by_channel: backward with one lane per channel (see forward_train_by_channel).
@compute @workgroup_size(EW, 1, 1)
fn backward_by_channel(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.c) { return; }
    let mean = bw_saved[c];
    let invstd = bw_saved[p.c + c];
    let gamma = bw_gamma[c];
    let beta = bw_beta[c];
    var dbeta = 0.0;
    var dgamma = 0.0;
    for (var n = 0u; n < p.n; n++) {
        let b = plane(n, c);
        var plane_g = V(0.0);
        var plane_gx = V(0.0);
        for (var j = 0u; j < plane_len(); j++) {
            let xhat = (bw_x[b + j] - V(mean)) * invstd;
            let g = masked_grad(incoming(n, c, j), xhat, gamma, beta);
            plane_g += g;
            plane_gx += g * xhat;
        }
        dbeta += total(plane_g);
        dgamma += total(plane_gx);
    }
    bw_dbeta[c] = dbeta;
    bw_dgamma[c] = dgamma;
    let m = f32(p.n * p.hw);
    for (var n = 0u; n < p.n; n++) {
        let b = plane(n, c);
        for (var j = 0u; j < plane_len(); j++) {
            let xhat = (bw_x[b + j] - V(mean)) * invstd;
            let g = masked_grad(incoming(n, c, j), xhat, gamma, beta);
            bw_dx[b + j] = gamma * invstd / m * (m * g - V(dbeta) - xhat * dgamma);
        }
    }
}

// forward_train_quads, backward_quads: BatchNorm1d (hw = 1: stage 3 at 32x32, conv_last, the
// head) with a lane per four channels, read as the vec4 of an image's four neighbouring
// channels: a quarter of the lanes and of the load instructions that a lane per channel
// issues. Needs c, io_total and io_first in fours; the host compiles them with V = vec4 (the
// module is built for V = f32 too, where v4 and from_v4 keep them well-typed, never run).
// Every formula is forward_train_by_channel's and backward_by_channel's, component-wise.
@compute @workgroup_size(EW, 1, 1)
fn forward_train_quads(@builtin(global_invocation_id) gid: vec3<u32>) {
    let q = gid.x;
    let quads = p.c / 4u;
    if (q >= quads) { return; }
    let c0 = 4u * q;
    let m = f32(p.n);
    let shift = v4(ft_x[q]);  // image 0's values (see channel_shift)
    var s = vec4<f32>(0.0);
    var sq = vec4<f32>(0.0);
    for (var n = 0u; n < p.n; n++) {
        let d = v4(ft_x[n * quads + q]) - shift;
        s += d;
        sq += d * d;
    }
    let ds = s / m;
    let mean = ds + shift;
    let var_b = max(sq / m - ds * ds, vec4<f32>(0.0));
    let invstd = 1.0 / sqrt(var_b + p.eps);
    for (var e = 0u; e < 4u; e++) {
        let c = c0 + e;
        ft_saved[c] = mean[e];
        ft_saved[p.c + c] = invstd[e];
        let unbiased = select(var_b[e], var_b[e] * m / (m - 1.0), p.n > 1u);
        ft_running_mean[c] = (1.0 - p.momentum) * ft_running_mean[c] + p.momentum * mean[e];
        ft_running_var[c] = (1.0 - p.momentum) * ft_running_var[c] + p.momentum * unbiased;
    }
    let gamma = vec4<f32>(ft_gamma[c0], ft_gamma[c0 + 1u], ft_gamma[c0 + 2u], ft_gamma[c0 + 3u]);
    let beta = vec4<f32>(ft_beta[c0], ft_beta[c0 + 1u], ft_beta[c0 + 2u], ft_beta[c0 + 3u]);
    for (var n = 0u; n < p.n; n++) {
        let i = n * quads + q;
        var y = (v4(ft_x[i]) - mean) * invstd * gamma + beta;
        if (p.residual != 0u) {
            y = max(y + v4(ft_res[i]), vec4<f32>(0.0));
        } else if (p.relu != 0u) {
            y = max(y, vec4<f32>(0.0));
        }
        ft_y[n * (p.io_total / 4u) + p.io_first / 4u + q] = from_v4(y);
        if (p.y_copy != 0u) {
            ft_y2[i] = from_v4(y);
        }
    }
}

@compute @workgroup_size(EW, 1, 1)
fn backward_quads(@builtin(global_invocation_id) gid: vec3<u32>) {
    let q = gid.x;
    let quads = p.c / 4u;
    if (q >= quads) { return; }
    let c0 = 4u * q;
    let mean = vec4<f32>(bw_saved[c0], bw_saved[c0 + 1u], bw_saved[c0 + 2u], bw_saved[c0 + 3u]);
    let invstd = vec4<f32>(bw_saved[p.c + c0], bw_saved[p.c + c0 + 1u], bw_saved[p.c + c0 + 2u], bw_saved[p.c + c0 + 3u]);
    let gamma = vec4<f32>(bw_gamma[c0], bw_gamma[c0 + 1u], bw_gamma[c0 + 2u], bw_gamma[c0 + 3u]);
    let beta = vec4<f32>(bw_beta[c0], bw_beta[c0 + 1u], bw_beta[c0 + 2u], bw_beta[c0 + 3u]);
    var dbeta = vec4<f32>(0.0);
    var dgamma = vec4<f32>(0.0);
    for (var n = 0u; n < p.n; n++) {
        let xhat = (v4(bw_x[n * quads + q]) - mean) * invstd;
        let g = masked_grad_quad(incoming_quad(n, q), xhat, gamma, beta);
        dbeta += g;
        dgamma += g * xhat;
    }
    for (var e = 0u; e < 4u; e++) {
        bw_dbeta[c0 + e] = dbeta[e];
        bw_dgamma[c0 + e] = dgamma[e];
    }
    let m = f32(p.n);
    for (var n = 0u; n < p.n; n++) {
        let xhat = (v4(bw_x[n * quads + q]) - mean) * invstd;
        let g = masked_grad_quad(incoming_quad(n, q), xhat, gamma, beta);
        bw_dx[n * quads + q] = from_v4(gamma * invstd / m * (m * g - dbeta - xhat * dgamma));
    }
}

// masked_grad and incoming for image n's channels 4q.. .
fn masked_grad_quad(dy: vec4<f32>, xhat: vec4<f32>, gamma: vec4<f32>, beta: vec4<f32>) -> vec4<f32> {
    return select(dy, select(dy, vec4<f32>(0.0), xhat * gamma + beta <= vec4<f32>(0.0)), p.relu != 0u);
}

fn incoming_quad(n: u32, q: u32) -> vec4<f32> {
    let g = v4(bw_dy[n * (p.io_total / 4u) + p.io_first / 4u + q]);
    if (p.dy_sum != 0u) {
        return g + v4(bw_dy2[n * (p.c / 4u) + q]);
    }
    return g;
}
