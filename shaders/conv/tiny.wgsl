// Convolutions on tiny maps as dense GEMMs per group: the weights expanded to that matrix and
// its gradient folded back. The Conv uniform is in common.wgsl, appended by the host.

// expand_tiny, fold_tiny: a conv on a tiny map as one dense matrix per group (conv.rs,
// tiny_map): Wt[(g * cog + co) * ohw + op][ci * hw + q] = w[g * cog + co][ci][tap] for the
// tap that joins output pixel op to input pixel q, 0 where none does. expand_tiny builds Wt
// from w; fold_tiny sums the gradient of Wt back onto the taps (in a fixed order). One
// invocation per (output channel, input channel of its group), loops over pixels and taps:
// no per-lane divisions (scalarised on CPU adapters).
@group(0) @binding(1) var<storage, read> tiny_src: array<f32>;
@group(0) @binding(2) var<storage, read_write> tiny_dst: array<f32>;

// Where Wt[(co, output pixel (oy, ox)), (ci, input pixel (qy, qx))] lies (co counted over all groups).
fn tiny_wt_index(co: u32, oy: u32, ox: u32, ci: u32, qy: u32, qx: u32) -> u32 {
    let row = (co * p.oh + oy) * p.ow + ox;
    return ((row * p.cig + ci) * p.h + qy) * p.w + qx;
}

@compute @workgroup_size(WG, 1, 1)
fn expand_tiny(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.cout * p.cig) { return; }
    let co = i / p.cig;
    let ci = i % p.cig;
    let w0 = i * p.k * p.k;
    for (var oy = 0u; oy < p.oh; oy++) {
        for (var ox = 0u; ox < p.ow; ox++) {
            for (var qy = 0u; qy < p.h; qy++) {
                // The tap from (oy, ox)'s receptive field to (qy, qx); may lie outside the kernel.
                let ky = i32(qy + p.pad) - i32(oy * p.stride);
                for (var qx = 0u; qx < p.w; qx++) {
                    let kx = i32(qx + p.pad) - i32(ox * p.stride);
                    let live = ky >= 0 && ky < i32(p.k) && kx >= 0 && kx < i32(p.k);
                    let tap = select(0u, u32(ky) * p.k + u32(kx), live);
                    tiny_dst[tiny_wt_index(co, oy, ox, ci, qy, qx)] = select(0.0, tiny_src[w0 + tap], live);
                }
            }
        }
    }
}

@compute @workgroup_size(WG, 1, 1)
fn fold_tiny(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.cout * p.cig) { return; }
    let co = i / p.cig;
    let ci = i % p.cig;
    for (var ky = 0u; ky < p.k; ky++) {
        for (var kx = 0u; kx < p.k; kx++) {
            var s = 0.0;
            for (var oy = 0u; oy < p.oh; oy++) {
                let qy = i32(oy * p.stride + ky) - i32(p.pad);
                if (qy < 0 || qy >= i32(p.h)) { continue; }
                for (var ox = 0u; ox < p.ow; ox++) {
                    let qx = i32(ox * p.stride + kx) - i32(p.pad);
                    if (qx < 0 || qx >= i32(p.w)) { continue; }
                    s += tiny_src[tiny_wt_index(co, oy, ox, ci, u32(qy), u32(qx))];
                }
            }
            tiny_dst[(i * p.k + ky) * p.k + kx] = s;
        }
    }
}
