// Variants of matmul.wgsl's kernels (appended after this file, with its uniform and bindings)
// for adapters with subgroups of 8 or more lanes (naga takes subgroup builtins without an
// `enable subgroups;`, which it does not parse yet), run with workgroups of 8 (one subgroup).
// lavapipe executes a load lane by lane even when every lane reads the same address, so the
// TM "uniform rows" of A (rows from workgroup_id) that each lane of a GEMM tile loads per
// step of k cost TM / 4 or TM lane-by-lane loops. Here lane l loads its own part of A (row l,
// or one step of k) and subgroupBroadcast hands it to every lane: a register move, not a
// memory access, so 8 parts cost one load. No lane leaves early: a broadcast reads the lanes
// past the last column too.

// The 8 rows of A that lane `mine` of a subgroup loaded, in every lane.
fn rows_of_subgroup(mine: vec4<f32>) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(
        subgroupBroadcast(mine, 0u), subgroupBroadcast(mine, 1u), subgroupBroadcast(mine, 2u), subgroupBroadcast(mine, 3u),
        subgroupBroadcast(mine, 4u), subgroupBroadcast(mine, 5u), subgroupBroadcast(mine, 6u), subgroupBroadcast(mine, 7u));
}

// matmul_nt4_images (see matmul.wgsl) with A's TM rows (8 or 16) from subgroup broadcasts,
// 8 rows per load: lane l loads row 8 r + l in round r.
@compute @workgroup_size(WG, 1, 1)
fn matmul_nt4_images_sg(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    const R = TM / 8u;
    let row0 = wid.y * TM;
    let col0 = gid.x * TN;
    let hwq = p.hw / 4u;
    var a_mine: array<u32, (TM + 7u) / 8u>;  // sized for every TM the module is built with
    for (var r = 0u; r < R; r++) {
        a_mine[r] = (min(row0 + 8u * r + lane % 8u, p.m - 1u) * p.a_row) / 4u;
    }
    let b_base = nt4_b_rows(col0, 0u);
    var acc: array<f32, TM * TN>;
    var w = ImageQuads(0u, 0u, 0u);
    for (var t = 0u; t < p.k * hwq; t++) {
        var bv: array<vec4<f32>, TN>;
        for (var j = 0u; j < TN; j++) {
            bv[j] = b4[w.b + b_base[j]];
        }
        for (var r = 0u; r < R; r++) {
            var av = rows_of_subgroup(a4[w.a + a_mine[r]]);
            for (var i = 0u; i < 8u; i++) {
                for (var j = 0u; j < TN; j++) {
                    acc[(8u * r + i) * TN + j] += dot(av[i], bv[j]);
                }
            }
        }
        w = image_quads_step(w, hwq);
    }
    if (col0 >= p.n) { return; }
    store_nt4(acc, row0, col0, 0u);
}

// matmul_tn4's tile (see tn4_tile) with A's rows from subgroup broadcasts. Its TM rows are
// Q = TM / 4 vec4s per step of k, so the 8 lanes load the rows of S = 8 / Q steps at once:
// lane l the vec4 of row quad l % Q at step l / Q (zero past the end of k, where B's row is
// clamped to a real one). TM is 4, 8, 16 or 32.
fn tn4_tile_sg(row0: u32, col0: u32, z: u32, lane: u32) -> array<vec4<f32>, TM * NV> {
    const Q = TM / 4u;
    const S = 8u / Q;
    let a_mine = (p.a_off + z * p.a_z) / 4u + min(row0 / 4u + lane % Q, p.m / 4u - 1u);
    let step_mine = lane / Q;
    let b_off = nn4_b_offsets(col0, z);
    let b_rowq = p.b_row / 4u;
    let a_colq = p.a_col / 4u;
    var acc: array<vec4<f32>, TM * NV>;
    for (var k0 = 0u; k0 < p.k; k0 += S) {
        let ka = k0 + step_mine;
        var rows = rows_of_subgroup(select(vec4<f32>(0.0), a4[min(ka, p.k - 1u) * a_colq + a_mine], ka < p.k));
        for (var s = 0u; s < S; s++) {
            let kk = min(k0 + s, p.k - 1u);
            var bv: array<vec4<f32>, NV>;
            for (var v = 0u; v < NV; v++) {
                bv[v] = b4[kk * b_rowq + b_off[v]];
            }
            for (var q = 0u; q < Q; q++) {
                let a_rows = rows[s * Q + q];
                for (var e = 0u; e < 4u; e++) {
                    let av = vec4<f32>(a_rows[e]);
                    for (var v = 0u; v < NV; v++) {
                        acc[(4u * q + e) * NV + v] = fma(av, bv[v], acc[(4u * q + e) * NV + v]);
                    }
                }
            }
        }
    }
    return acc;
}

@compute @workgroup_size(WG, 1, 1)
fn matmul_tn4_sg(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let row0 = wid.y * TM;
    let col0 = gid.x * TN;
    let acc = tn4_tile_sg(row0, col0, wid.z, lane);
    if (col0 >= p.n) { return; }
    store_nn4(acc, row0, col0, wid.z, false);
}

@compute @workgroup_size(WG, 1, 1)
fn matmul_tn4_add_sg(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let row0 = wid.y * TM;
    let col0 = gid.x * TN;
    let acc = tn4_tile_sg(row0, col0, wid.z, lane);
    if (col0 >= p.n) { return; }
    store_nn4(acc, row0, col0, wid.z, true);
}

// matmul_nt4's tile (see nt4_tile) with A's TM rows (8 or 16) from subgroup broadcasts, 8
// rows per load: lane l loads row 8 r + l in round r.
fn nt4_tile_sg(row0: u32, col0: u32, z: u32, lane: u32) -> array<f32, TM * TN> {
    const R = TM / 8u;
    let kq = p.k / 4u;
    var a_mine: array<u32, (TM + 7u) / 8u>;  // sized for every TM the module is built with
    for (var r = 0u; r < R; r++) {
        a_mine[r] = (p.a_off + z * p.a_z + min(row0 + 8u * r + lane % 8u, p.m - 1u) * p.a_row) / 4u;
    }
    let b_base = nt4_b_rows(col0, z * p.b_z);
    var acc: array<f32, TM * TN>;
    for (var q = 0u; q < kq; q++) {
        var bv: array<vec4<f32>, TN>;
        for (var j = 0u; j < TN; j++) {
            bv[j] = b4[b_base[j] + q];
        }
        for (var r = 0u; r < R; r++) {
            var av = rows_of_subgroup(a4[a_mine[r] + q]);
            for (var i = 0u; i < 8u; i++) {
                for (var j = 0u; j < TN; j++) {
                    acc[(8u * r + i) * TN + j] += dot(av[i], bv[j]);
                }
            }
        }
    }
    return acc;
}

@compute @workgroup_size(WG, 1, 1)
fn matmul_nt4_sg(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let row0 = wid.y * TM;
    let col0 = gid.x * TN;
    let acc = nt4_tile_sg(row0, col0, wid.z, lane);
    if (col0 >= p.n) { return; }
    store_nt4(acc, row0, col0, wid.z);
}

@compute @workgroup_size(WG, 1, 1)
fn matmul_nt4_bn_sg(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let row0 = wid.y * TM;
    let col0 = gid.x * TN;
    let acc = nt4_tile_sg(row0, col0, wid.z, lane);
    if (col0 >= p.n) { return; }
    store_nt4_bn(acc, row0, col0, wid.z);
}

// matmul_nn4's tile (see nn4_tile) for A row-major (a_col == 1) with its rows read as vec4s
// along k through broadcasts: lane l loads four values of k of row 8 r + l in round r, so
// A needs no transposed copy (a 1x1 conv's weights, a dense layer's output gradient). Needs
// k, a_row, a_z and a_off in fours; TM is 8 or 16.
fn nn4_tile_sg(row0: u32, col0: u32, z: u32, lane: u32) -> array<vec4<f32>, TM * NV> {
    const R = TM / 8u;
    var a_mine: array<u32, (TM + 7u) / 8u>;  // sized for every TM the module is built with
    for (var r = 0u; r < R; r++) {
        a_mine[r] = (p.a_off + z * p.a_z + min(row0 + 8u * r + lane % 8u, p.m - 1u) * p.a_row) / 4u;
    }
    let b_off = nn4_b_offsets(col0, z);
    let b_rowq = p.b_row / 4u;
    var acc: array<vec4<f32>, TM * NV>;
    for (var kq = 0u; kq < p.k / 4u; kq++) {
        var bv: array<vec4<f32>, 4u * NV>;
        for (var s = 0u; s < 4u; s++) {
            for (var v = 0u; v < NV; v++) {
                bv[s * NV + v] = b4[(4u * kq + s) * b_rowq + b_off[v]];
            }
        }
        for (var r = 0u; r < R; r++) {
            var av = rows_of_subgroup(a4[a_mine[r] + kq]);
            for (var i = 0u; i < 8u; i++) {
                let a_k = av[i];
                for (var s = 0u; s < 4u; s++) {
                    let a_s = vec4<f32>(a_k[s]);
                    for (var v = 0u; v < NV; v++) {
                        acc[(8u * r + i) * NV + v] = fma(a_s, bv[s * NV + v], acc[(8u * r + i) * NV + v]);
                    }
                }
            }
        }
    }
    return acc;
}

@compute @workgroup_size(WG, 1, 1)
fn matmul_nn4_sg(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let row0 = wid.y * TM;
    let col0 = gid.x * TN;
    let acc = nn4_tile_sg(row0, col0, wid.z, lane);
    if (col0 >= p.n) { return; }
    store_nn4(acc, row0, col0, wid.z, false);
}

// Eval: matmul_nn4_bn on nn4_tile_sg, the tile's rows' BatchNorm channels loaded a row per
// lane and broadcast (each lane would otherwise load all TM rows' four values: as many loads
// as three or four steps of a short k loop).
@compute @workgroup_size(WG, 1, 1)
fn matmul_nn4_bn_sg(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let row0 = wid.y * TM;
    let col0 = gid.x * TN;
    let acc = nn4_tile_sg(row0, col0, 0u, lane);
    var bn: array<BnChannel, TM>;
    for (var r = 0u; r < TM / 8u; r++) {
        let q = bn_channel(min(row0 + 8u * r + lane % 8u, p.m - 1u), p.eps);
        let rows = rows_of_subgroup(vec4<f32>(q.mean, q.invstd, q.gamma, q.beta));
        for (var i = 0u; i < 8u; i++) {
            bn[8u * r + i] = BnChannel(rows[i].x, rows[i].y, rows[i].z, rows[i].w);
        }
    }
    if (col0 >= p.n) { return; }
    store_nn4_bn_rows(acc, row0, col0, bn);
}
