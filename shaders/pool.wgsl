// Pooling over NCHW: global average, and k x k max / average pooling with stride and padding.
// Backward passes gather (each input pixel sums the windows that cover it) so no two
// invocations write the same value and no atomics are needed.

struct Pool {
    n: u32, c: u32, h: u32, w: u32,
    oh: u32, ow: u32, k: u32, stride: u32,
    pad: u32, _a: u32, _b: u32, _c: u32,
}

@group(0) @binding(0) var<uniform> p: Pool;

// gap_forward: y[n, c] = mean over h, w of x[n, c]
@group(0) @binding(1) var<storage, read> gf_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> gf_y: array<f32>;

@compute @workgroup_size(EW, 1, 1)
fn gap_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n * p.c) { return; }
    let hw = p.h * p.w;
    var s = 0.0;
    for (var j = 0u; j < hw; j++) {
        s += gf_x[i * hw + j];
    }
    gf_y[i] = s / f32(hw);
}

// gap_backward: dx[n, c, h, w] = dy[n, c] / (h * w)
@group(0) @binding(1) var<storage, read> gb_dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> gb_dx: array<f32>;

@compute @workgroup_size(EW, 1, 1)
fn gap_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let hw = p.h * p.w;
    if (i >= p.n * p.c * hw) { return; }
    gb_dx[i] = gb_dy[i / hw] / f32(hw);
}

// maxpool_forward: y = max over the window (padding never wins), argmax = h * w index in the plane.
@group(0) @binding(1) var<storage, read> mf_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> mf_y: array<f32>;
@group(0) @binding(3) var<storage, read_write> mf_argmax: array<u32>;

@compute @workgroup_size(EW, 1, 1)
fn maxpool_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let ohw = p.oh * p.ow;
    if (i >= p.n * p.c * ohw) { return; }
    let plane = (i / ohw) * p.h * p.w;
    let r = i % ohw;
    let y0 = i32((r / p.ow) * p.stride) - i32(p.pad);
    let x0 = i32((r % p.ow) * p.stride) - i32(p.pad);
    var best = -3.402823e38;
    var best_at = 0u;
    var found = false;
    for (var ky = 0u; ky < p.k; ky++) {
        for (var kx = 0u; kx < p.k; kx++) {
            let yy = y0 + i32(ky);
            let xx = x0 + i32(kx);
            if (yy >= 0 && yy < i32(p.h) && xx >= 0 && xx < i32(p.w)) {
                let at = u32(yy) * p.w + u32(xx);
                let v = mf_x[plane + at];
                if (!found || v > best) {
                    best = v;
                    best_at = at;
                    found = true;
                }
            }
        }
    }
    mf_y[i] = best;
    mf_argmax[i] = best_at;
}

// Range of output positions along one axis whose window covers input position t.
fn covering(t: u32, out_len: u32) -> vec2<u32> {
    let a = i32(t) + i32(p.pad) - i32(p.k) + 1;
    let lo = select(0, (a + i32(p.stride) - 1) / i32(p.stride), a > 0);
    let hi = min((i32(t) + i32(p.pad)) / i32(p.stride) + 1, i32(out_len));
    return vec2<u32>(u32(lo), u32(max(hi, lo)));
}

// maxpool_backward: dx[pixel] = sum of dy over windows whose argmax is this pixel.
@group(0) @binding(1) var<storage, read> mb_dy: array<f32>;
@group(0) @binding(2) var<storage, read> mb_argmax: array<u32>;
@group(0) @binding(3) var<storage, read_write> mb_dx: array<f32>;

@compute @workgroup_size(EW, 1, 1)
fn maxpool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let hw = p.h * p.w;
    if (i >= p.n * p.c * hw) { return; }
    let plane = (i / hw) * p.oh * p.ow;
    let at = i % hw;
    let ys = covering(at / p.w, p.oh);
    let xs = covering(at % p.w, p.ow);
    var s = 0.0;
    for (var oy = ys.x; oy < ys.y; oy++) {
        for (var ox = xs.x; ox < xs.y; ox++) {
            let o = plane + oy * p.ow + ox;
            if (mb_argmax[o] == at) {
                s += mb_dy[o];
            }
        }
    }
    mb_dx[i] = s;
}

// avgpool_forward: y = sum over the window / (k * k) (padding counts, as PyTorch's default).
@group(0) @binding(1) var<storage, read> af_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> af_y: array<f32>;

@compute @workgroup_size(EW, 1, 1)
fn avgpool_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let ohw = p.oh * p.ow;
    if (i >= p.n * p.c * ohw) { return; }
    let plane = (i / ohw) * p.h * p.w;
    let r = i % ohw;
    let y0 = i32((r / p.ow) * p.stride) - i32(p.pad);
    let x0 = i32((r % p.ow) * p.stride) - i32(p.pad);
    var s = 0.0;
    for (var ky = 0u; ky < p.k; ky++) {
        for (var kx = 0u; kx < p.k; kx++) {
            let yy = y0 + i32(ky);
            let xx = x0 + i32(kx);
            if (yy >= 0 && yy < i32(p.h) && xx >= 0 && xx < i32(p.w)) {
                s += af_x[plane + u32(yy) * p.w + u32(xx)];
            }
        }
    }
    af_y[i] = s / f32(p.k * p.k);
}

// avgpool_backward: dx[pixel] = sum of dy / (k * k) over the windows covering the pixel.
@group(0) @binding(1) var<storage, read> ab_dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> ab_dx: array<f32>;

@compute @workgroup_size(EW, 1, 1)
fn avgpool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let hw = p.h * p.w;
    if (i >= p.n * p.c * hw) { return; }
    let plane = (i / hw) * p.oh * p.ow;
    let at = i % hw;
    let ys = covering(at / p.w, p.oh);
    let xs = covering(at % p.w, p.ow);
    var s = 0.0;
    for (var oy = ys.x; oy < ys.y; oy++) {
        for (var ox = xs.x; ox < xs.y; ox++) {
            s += ab_dy[plane + oy * p.ow + ox];
        }
    }
    ab_dx[i] = s / f32(p.k * p.k);
}
