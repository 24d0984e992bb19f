//! The GEMMs: transposes, the scalar and vec4 matrix products, the linear layer.

use super::*;
use spgnet::ops::{dense, gemm, linear};
use spgnet::reference as cpu;

#[test]
fn transpose_in_4x4_blocks() {
    // Dense forwards read their weight transposed. A small non-square matrix, and one of
    // 524,800 blocks: more than 65535 workgroups of 8 lanes, so the grid has a second row.
    let g = gpu();
    for (rows, cols) in [(12, 8), (4, 4), (8, 2_099_200)] {
        let a: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let t = g.zeros(&[cols, rows], "t");
        let l = gemm::transpose(g, (rows, cols), &up(&a, &[rows, cols]), &t);
        assert_eq!(l.workgroups[1] > 1, rows * cols > 65535 * 8 * 16, "grid {:?}", l.workgroups);
        g.run(&[l]).unwrap();
        let expected: Vec<f64> = (0..cols * rows).map(|i| a[(i % rows) * cols + i / rows] as f64).collect();
        assert_close(&format!("transpose {rows}x{cols}"), &read(&t), &expected, 0.0);
    }
    // Each image of an NCHW tensor on its own ([c, hw] -> [hw, c]), as the 1x1 weight gradient
    // does; rows in fours over planes that are not (7x7 maps: 4x1 blocks per lane, ragged
    // last workgroup) -- and over a plane too wide for one grid row of those (one value per
    // lane instead); and sizes not in fours (one value per lane), as conv weights
    // [co][ci][tap] need.
    for (count, rows, cols) in [(3, 12, 20), (5, 3, 9), (3, 8, 49), (2, 96, 9), (1, 4, 1), (1, 4, 524_289)] {
        let a: Vec<f32> = (0..count * rows * cols).map(|i| i as f32).collect();
        let t = g.zeros(&[count, cols, rows], "t");
        g.run(&[gemm::transpose_each(g, (count, rows, cols), &up(&a, &[count, rows, cols]), &t)]).unwrap();
        let expected: Vec<f64> = (0..count * cols * rows)
            .map(|i| {
                let (z, r) = (i / (rows * cols), i % (rows * cols));
                a[z * rows * cols + (r % rows) * cols + r / rows] as f64
            })
            .collect();
        assert_close(&format!("transpose each of {count} {rows}x{cols}"), &read(&t), &expected, 0.0);
    }
}

#[test]
fn linear_layer() {
    let g = gpu();
    let mut r = rng(700);
    // inputs in fours take the vec4 dense kernels, the others the conv kernels; outputs in
    // fours or not, ragged batches
    for (batch, fin, fout) in [(5, 37, 13), (1, 1024, 10), (64, 256, 130), (3, 3, 1), (7, 20, 9), (37, 12, 50), (7, 44, 12), (64, 128, 256)]
    {
        let x = random(&mut r, batch * fin);
        let w = random(&mut r, fout * fin);
        let dy = random(&mut r, batch * fout);
        let (xt, wt, dyt) = (up(&x, &[batch, fin]), up(&w, &[fout, fin]), up(&dy, &[batch, fout]));
        let (y, dx, dw) = (g.zeros(&[batch, fout], "y"), g.zeros(&[batch, fin], "dx"), g.zeros(&[fout, fin], "dw"));
        let mut l = [linear::forward(g, &xt, &wt, &y), linear::backward_data(g, &dyt, &wt, &dx)].into_iter().flatten().collect::<Vec<_>>();
        l.extend(linear::backward_weight(g, &dyt, &xt, &dw));
        g.run(&l).unwrap();
        let (x64, w64, dy64) = (f64s(&x), f64s(&w), f64s(&dy));
        let what = format!("linear {batch}x{fin}->{fout}");
        assert_close(&format!("{what} forward"), &read(&y), &cpu::linear_forward(batch, fin, fout, &x64, &w64), REDUCTION_TOL);
        let (dx_ref, dw_ref) = cpu::linear_backward(batch, fin, fout, &dy64, &x64, &w64);
        assert_close(&format!("{what} dx"), &read(&dx), &dx_ref, REDUCTION_TOL);
        assert_close(&format!("{what} dw"), &read(&dw), &dw_ref, REDUCTION_TOL);
    }
}

#[test]
fn plain_matmul_with_transposed_operands() {
    let g = gpu();
    let mut r = rng(750);
    for (m, n, k) in [
        (5, 37, 13),
        (64, 130, 256),
        (1, 9, 1024),
        (17, 4, 3),
        (13, 20, 12),
        (9, 68, 5),
        (36, 68, 5),
        (12, 8, 33),
        (20, 36, 44),
        (48, 64, 96),
    ] {
        let a = random(&mut r, m * k);
        let b = random(&mut r, k * n);
        let (a64, b64) = (f64s(&a), f64s(&b));
        let want = cpu::matmul(m, n, k, &a64, &b64);
        // a row-major, b row-major; then both given as transposes of row-major storage.
        let (at, bt) = (up(&a, &[m, k]), up(&b, &[k, n]));
        let a_t: Vec<f32> = cpu::transpose(m, k, &a64).iter().map(|&v| v as f32).collect();
        let b_t: Vec<f32> = cpu::transpose(k, n, &b64).iter().map(|&v| v as f32).collect();
        let (att, btt) = (up(&a_t, &[k, m]), up(&b_t, &[n, k]));
        let (c1, c2) = (g.zeros(&[m, n], "c1"), g.zeros(&[m, n], "c2"));
        g.run(&[
            gemm::matmul(g, (m, n, k), (&at, gemm::Strides::rows(k)), (&bt, gemm::Strides::rows(n)), &c1),
            gemm::matmul(g, (m, n, k), (&att, gemm::Strides::transposed(m)), (&btt, gemm::Strides::transposed(k)), &c2),
        ])
        .unwrap();
        assert_close(&format!("matmul {m}x{n}x{k}"), &read(&c1), &want, REDUCTION_TOL);
        assert_close(&format!("matmul transposed {m}x{n}x{k}"), &read(&c2), &want, REDUCTION_TOL);
        // the vec4 kernels where their layout allows, with every tile shape the benches try
        for tile in [
            dense::DENSE_TILE,
            gemm::Tile { tm: 4, nv: 1, wg: 8 },
            gemm::Tile { tm: 8, nv: 2, wg: 8 },
            gemm::Tile { tm: 16, nv: 2, wg: 8 },
            gemm::SG_TALL_TILE,
            gemm::Tile { tm: 32, nv: 1, wg: 8 },
        ] {
            if n % 4 == 0 {
                let c = g.zeros(&[m, n], "c_nn4");
                g.run(&[gemm::matmul_nn4(g, tile, (m, n, k), (&at, gemm::Strides::rows(k)), &bt, gemm::Columns::matrix(n), &c)]).unwrap();
                assert_close(&format!("matmul_nn4 {m}x{n}x{k} {tile:?}"), &read(&c), &want, REDUCTION_TOL);
                // A given transposed: matmul_tn4 (vec4s of four rows) where m comes in fours
                let c = g.zeros(&[m, n], "c_tn4");
                g.run(&[gemm::matmul_nn4(g, tile, (m, n, k), (&att, gemm::Strides::transposed(m)), &bt, gemm::Columns::matrix(n), &c)])
                    .unwrap();
                assert_close(&format!("matmul_nn4 with A transposed {m}x{n}x{k} {tile:?}"), &read(&c), &want, REDUCTION_TOL);
            }
            if k % 4 == 0 {
                let c = g.zeros(&[m, n], "c_nt4");
                g.run(&[gemm::matmul_nt4(g, tile, (m, n, k), &at, &btt, &c)]).unwrap();
                assert_close(&format!("matmul_nt4 {m}x{n}x{k} {tile:?}"), &read(&c), &want, REDUCTION_TOL);
            }
        }
    }
}
