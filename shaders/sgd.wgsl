// SGD with momentum and weight decay, PyTorch's formulation:
//   v = momentum * v + (g + weight_decay * p);  p = p - lr * v
// Run once over the whole parameter arena (all trainable tensors in one buffer), so one
// dispatch updates the model. lr changes every step: it lives in the uniform, rewritten per step.

struct Sgd {
    len: u32, lr: f32, momentum: f32, weight_decay: f32,
}

const EW: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Sgd;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> velocity: array<f32>;

// step updates the values past the last whole vec4 (len % 4 of them); step4 the vec4s
// before, PER_LANE of them per lane (lavapipe pays per load instruction and per workgroup,
// so four values per load run ~2x faster, and fewer lanes cost less: 8 vec4s a lane ran the
// update 10% faster than 4, 16 no faster than 8).
// Both read the same uniform, so one write changes lr for both.
const PER_LANE: u32 = 8u;
@compute @workgroup_size(EW, 1, 1)
fn step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = (p.len / 4u) * 4u + gid.x + gid.y * nwg.x * EW;
    if (i >= p.len) { return; }
    let w = param[i];
    let v = p.momentum * velocity[i] + grad[i] + p.weight_decay * w;
    velocity[i] = v;
    param[i] = w - p.lr * v;
}

@group(0) @binding(1) var<storage, read> grad4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> param4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> velocity4: array<vec4<f32>>;

@compute @workgroup_size(EW, 1, 1)
fn step4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i0 = (gid.x + gid.y * nwg.x * EW) * PER_LANE;
    for (var i = i0; i < min(i0 + PER_LANE, p.len / 4u); i++) {
        let w = param4[i];  // once: the store to velocity4 before its use would force a reload
        let v = p.momentum * velocity4[i] + grad4[i] + p.weight_decay * w;
        velocity4[i] = v;
        param4[i] = w - p.lr * v;
    }
}

// ema: shadow = decay * shadow + (1 - decay) * value, over a whole arena (weight EMA).
struct Ema {
    len: u32, decay: f32, _a: u32, _b: u32,
}

@group(0) @binding(0) var<uniform> e: Ema;
@group(0) @binding(1) var<storage, read> ema_value: array<f32>;
@group(0) @binding(2) var<storage, read_write> ema_shadow: array<f32>;

// ema covers the values past the last whole vec4, ema4 the vec4s before (as step / step4).
@compute @workgroup_size(EW, 1, 1)
fn ema(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = (e.len / 4u) * 4u + gid.x + gid.y * nwg.x * EW;
    if (i >= e.len) { return; }
    ema_shadow[i] = e.decay * ema_shadow[i] + (1.0 - e.decay) * ema_value[i];
}

@group(0) @binding(1) var<storage, read> ema_value4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> ema_shadow4: array<vec4<f32>>;

@compute @workgroup_size(EW, 1, 1)
fn ema4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i0 = (gid.x + gid.y * nwg.x * EW) * PER_LANE;
    for (var i = i0; i < min(i0 + PER_LANE, e.len / 4u); i++) {
        ema_shadow4[i] = e.decay * ema_shadow4[i] + (1.0 - e.decay) * ema_value4[i];
    }
}
