// The eval-mode BatchNorm (+ ReLU) epilogue of the fused GEMMs in conv/forward.wgsl and matmul.wgsl
// (appended to both by their launchers). Their *_bn entries bind the output channels' running
// statistics at 4-7 and apply them with the same arithmetic, in the same order, as
// batchnorm.wgsl's apply_eval, so a fused layer rounds exactly as the unfused pair does.
@group(0) @binding(4) var<storage, read> bn_mean: array<f32>;
@group(0) @binding(5) var<storage, read> bn_var: array<f32>;
@group(0) @binding(6) var<storage, read> bn_gamma: array<f32>;
@group(0) @binding(7) var<storage, read> bn_beta: array<f32>;

struct BnChannel { mean: f32, invstd: f32, gamma: f32, beta: f32 }

fn bn_channel(c: u32, eps: f32) -> BnChannel {
    return BnChannel(bn_mean[c], 1.0 / sqrt(bn_var[c] + eps), bn_gamma[c], bn_beta[c]);
}

fn bn_apply(x: f32, q: BnChannel, relu: u32) -> f32 {
    let y = (x - q.mean) * q.invstd * q.gamma + q.beta;
    return select(y, max(y, 0.0), relu != 0u);
}
