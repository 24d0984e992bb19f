//! Softmax cross-entropy with label smoothing, SGD with momentum and weight decay, the EMA.

use super::*;
use rand::Rng;
use spgnet::ops::{loss, sgd};
use spgnet::reference as cpu;

#[test]
fn softmax_cross_entropy() {
    let g = gpu();
    let mut r = rng(800);
    for (n, classes, smoothing) in [(5, 10, 0.1f32), (130, 7, 0.0), (1, 1000, 0.1), (64, 100, 0.2)] {
        let logits: Vec<f32> = random(&mut r, n * classes).iter().map(|v| 8.0 * v).collect();
        let labels: Vec<u32> = (0..n).map(|_| r.random_range(0..classes as u32)).collect();
        let lt = up(&logits, &[n, classes]);
        let labt = g.upload_u32(&labels, "labels");
        let (dl, per, out) = (g.zeros(&[n, classes], "dl"), g.zeros(&[2, n], "per"), g.zeros(&[2], "out"));
        g.run(&loss::softmax_xent(g, smoothing, &lt, &labt, &dl, &per, &out)).unwrap();
        let l64 = f64s(&logits);
        let lab: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
        let (loss_ref, grad_ref) = cpu::softmax_xent(classes, &l64, &lab, smoothing as f64);
        let correct = (0..n)
            .filter(|&i| {
                let row = &logits[i * classes..(i + 1) * classes];
                let arg = (0..classes).fold(0, |b, k| if row[k] > row[b] { k } else { b });
                arg == lab[i]
            })
            .count();
        let got = read(&out);
        assert_close(&format!("loss n={n} classes={classes}"), &got[..1], &[loss_ref], REDUCTION_TOL);
        assert_eq!(got[1] as usize, correct, "correct count");
        assert_close(&format!("dlogits n={n} classes={classes}"), &read(&dl), &grad_ref, REDUCTION_TOL);
    }
}

#[test]
fn sgd_momentum_weight_decay_and_ema() {
    let g = gpu();
    let mut r = rng(900);
    // vec4s and a tail of 3; vec4s only; a tail only; many workgroups (512 vec4s each) and
    // part of one, with a tail; whole workgroups only
    for len in [10_007, 10_000, 3, 3 * 16_384 + 4_099, 4 * 16_384] {
        let p0 = random(&mut r, len);
        let v0 = random(&mut r, len);
        let grad = random(&mut r, len);
        let (pt, vt, gt) = (up(&p0, &[len]), up(&v0, &[len]), up(&grad, &[len]));
        let step = sgd::step(g, &gt, &pt, &vt, 0.1, 0.9, 5e-4);
        assert_eq!(step.len(), (len >= 4) as usize + (len % 4 != 0) as usize);
        let (mut p, mut v) = (f64s(&p0), f64s(&v0));
        for lr in [0.1f32, 0.05, 0.01] {
            sgd::set_learning_rate(g, &step, lr);
            g.run(&step).unwrap();
            cpu::sgd_step(&mut p, &f64s(&grad), &mut v, lr as f64, 0.9, 5e-4);
        }
        assert_close(&format!("sgd params, {len} values"), &read(&pt), &p, ELEMENTWISE_TOL);
        assert_close(&format!("sgd velocity, {len} values"), &read(&vt), &v, ELEMENTWISE_TOL);
        // The weight EMA over the same lengths: shadow = d * shadow + (1 - d) * value.
        let shadow0 = random(&mut r, len);
        let shadow = up(&shadow0, &[len]);
        // built with one decay, run with another: set_ema_decay rewrites what the launches read
        let ema = sgd::ema(g, &pt, &shadow, 0.9);
        sgd::set_ema_decay(g, &ema, 0.8);
        g.run(&ema).unwrap();
        let d = 0.8f32 as f64;
        let want: Vec<f64> = f64s(&shadow0).iter().zip(&p).map(|(s, v)| d * s + (1.0 - d) * v).collect();
        assert_close(&format!("ema, {len} values"), &read(&shadow), &want, ELEMENTWISE_TOL);
    }
}
