// Flat elementwise kernels: ReLU and its backward, the residual add + ReLU of eval, dropout.
// Grids may be 2-D when a tensor has more than 65535 * EW values.

struct Ew {
    len: u32, seed: u32, run: u32, src_image: u32,
    src_first: u32, _d: u32, _e: u32, _f: u32,
    drop_p: f32, scale: f32, _g: u32, _h: u32,
}

@group(0) @binding(0) var<uniform> p: Ew;

// relu_forward: y = max(x, 0)
@group(0) @binding(1) var<storage, read> rf_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> rf_y: array<f32>;

@compute @workgroup_size(EW, 1, 1)
fn relu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    rf_y[i] = max(rf_x[i], 0.0);
}

// relu_backward(_sum) and add_relu read and write V: vec4<f32> when the length is a multiple
// of 4 (VW = 4), else f32 (VW = 1); the host
// appends V and VW. Each lane handles PER_LANE values of V: lavapipe pays per workgroup and per
// loaded element (a vec4 load costs what a scalar one does), so fewer, wider lanes win.
const PER_LANE: u32 = 4u;

// The first of the PER_LANE consecutive V a lane owns, and how many V there are.
fn first_v(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return flat(gid, nwg) * PER_LANE;
}
fn len_v() -> u32 {
    return p.len / VW;
}

// relu_backward: dx = dy where y > 0 (y may be the ReLU's input or output: same sign)
@group(0) @binding(1) var<storage, read> rb_dy: array<V>;
@group(0) @binding(2) var<storage, read> rb_y: array<V>;
@group(0) @binding(3) var<storage, read_write> rb_dx: array<V>;

@compute @workgroup_size(EW, 1, 1)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i0 = first_v(gid, nwg);
    for (var i = i0; i < min(i0 + PER_LANE, len_v()); i++) {
        rb_dx[i] = select(V(0.0), rb_dy[i], rb_y[i] > V(0.0));
    }
}

// relu_backward_sum: dx = dy_a + dy_b where y > 0 (a gradient that arrives as two terms)
@group(0) @binding(1) var<storage, read> rs_dy_a: array<V>;
@group(0) @binding(2) var<storage, read> rs_dy_b: array<V>;
@group(0) @binding(3) var<storage, read> rs_y: array<V>;
@group(0) @binding(4) var<storage, read_write> rs_dx: array<V>;

@compute @workgroup_size(EW, 1, 1)
fn relu_backward_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i0 = first_v(gid, nwg);
    for (var i = i0; i < min(i0 + PER_LANE, len_v()); i++) {
        rs_dx[i] = select(V(0.0), rs_dy_a[i] + rs_dy_b[i], rs_y[i] > V(0.0));
    }
}

// add_relu: out = max(a + b, 0) (the end of a residual block in eval; training does it in
// conv_out's BatchNorm)
@group(0) @binding(1) var<storage, read> ad_a: array<V>;
@group(0) @binding(2) var<storage, read> ad_b: array<V>;
@group(0) @binding(3) var<storage, read_write> ad_out: array<V>;

@compute @workgroup_size(EW, 1, 1)
fn add_relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i0 = first_v(gid, nwg);
    for (var i = i0; i < min(i0 + PER_LANE, len_v()); i++) {
        ad_out[i] = max(ad_a[i] + ad_b[i], V(0.0));
    }
}

// copy_channels: out[n, c, pixel] = src[n, first + c, pixel], a channel slice of a wider tensor
// copied out whole. Eval reads conv1's output from the concat buffer this way: WebGPU forbids a
// dispatch to read and write overlapping ranges of one buffer, so conv2 cannot read it in place.
// In units of V: run = the slice's values per image, src_image = the source's values per image,
// src_first = where the slice starts in an image.
@group(0) @binding(1) var<storage, read> cc_src: array<V>;
@group(0) @binding(2) var<storage, read_write> cc_out: array<V>;

@compute @workgroup_size(EW, 1, 1)
fn copy_channels(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i0 = first_v(gid, nwg);
    // one division a lane (lavapipe runs a lane's integer division as a scalar loop), then
    // the image and the place in its run stepped along
    var image = i0 / p.run;
    var j = i0 % p.run;
    for (var i = i0; i < min(i0 + PER_LANE, len_v()); i++) {
        cc_out[i] = cc_src[image * p.src_image + p.src_first + j];
        j += 1u;
        let wrap = j == p.run;
        j = select(j, 0u, wrap);
        image = select(image, image + 1u, wrap);
    }
}

// dropout: out = in * keep(seed, i) / (1 - drop_p). The mask is a hash of (seed, index), so the
// backward pass is the same kernel with the same seed applied to the gradient.
fn hash(v: u32) -> u32 {
    // PCG output permutation (Jarzynski & Olano, "Hash Functions for GPU Rendering").
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

fn keep(i: u32) -> bool {
    let u = f32(hash(i ^ hash(p.seed)) >> 8u) * (1.0 / 16777216.0);
    return u >= p.drop_p;
}

@group(0) @binding(1) var<storage, read> dr_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> dr_out: array<f32>;

@compute @workgroup_size(EW, 1, 1)
fn dropout(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    dr_out[i] = select(0.0, dr_in[i] * p.scale, keep(i));
}

// dropout_mask: out = 1 where dropout keeps index i, else 0 (lets the host reproduce the mask).
@compute @workgroup_size(EW, 1, 1)
fn dropout_mask(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    dr_out[i] = select(0.0, 1.0, keep(i));
}
