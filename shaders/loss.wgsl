// Softmax cross-entropy with label smoothing, fused with its gradient, and the batch mean.
// target = (1 - eps) * onehot(label) + eps / classes;  loss = -sum target * log_softmax;
// dlogits = (softmax - target) / n  (the mean over the batch).

struct Loss {
    n: u32, classes: u32, smoothing: f32, _a: u32,
}

const RW: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Loss;

// softmax_xent: per_sample[i] = loss of sample i, per_sample[n + i] = 1 if argmax == label.
@group(0) @binding(1) var<storage, read> sx_logits: array<f32>;
@group(0) @binding(2) var<storage, read> sx_labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> sx_dlogits: array<f32>;
@group(0) @binding(4) var<storage, read_write> sx_per_sample: array<f32>;

@compute @workgroup_size(RW, 1, 1)
fn softmax_xent(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.n) { return; }
    let base = i * p.classes;
    let label = sx_labels[i];
    var mx = sx_logits[base];
    var arg = 0u;
    for (var k = 1u; k < p.classes; k++) {
        let v = sx_logits[base + k];
        if (v > mx) { mx = v; arg = k; }
    }
    var z = 0.0;
    for (var k = 0u; k < p.classes; k++) {
        z += exp(sx_logits[base + k] - mx);
    }
    let log_z = log(z) + mx;
    let off = p.smoothing / f32(p.classes);
    var loss = 0.0;
    for (var k = 0u; k < p.classes; k++) {
        let logit = sx_logits[base + k];
        let wanted = select(off, 1.0 - p.smoothing + off, k == label);
        loss -= wanted * (logit - log_z);
        sx_dlogits[base + k] = (exp(logit - log_z) - wanted) / f32(p.n);
    }
    sx_per_sample[i] = loss;
    sx_per_sample[p.n + i] = select(0.0, 1.0, arg == label);
}

// batch_mean: out = [mean loss, number correct], summed in a fixed tree order.
@group(0) @binding(1) var<storage, read> bm_per_sample: array<f32>;
@group(0) @binding(2) var<storage, read_write> bm_out: array<f32>;

var<workgroup> red_a: array<f32, RW>;
var<workgroup> red_b: array<f32, RW>;

@compute @workgroup_size(RW, 1, 1)
fn batch_mean(@builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    var s = 0.0;
    var c = 0.0;
    for (var i = lid; i < p.n; i += RW) {
        s += bm_per_sample[i];
        c += bm_per_sample[p.n + i];
    }
    red_a[lid] = s;
    red_b[lid] = c;
    for (var w = RW / 2u; w > 0u; w >>= 1u) {
        workgroupBarrier();
        if (lid < w) {
            red_a[lid] += red_a[lid + w];
            red_b[lid] += red_b[lid + w];
        }
    }
    if (lid == 0u) {
        bm_out[0] = red_a[0] / f32(p.n);
        bm_out[1] = red_b[0];
    }
}
