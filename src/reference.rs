//! Plain CPU reference of every op, in f64, kept small and obviously correct.
//! Used only to check the WGSL kernels (and proven itself by finite differences below).

use crate::ops::batchnorm::BnShape;
use crate::ops::conv::ConvShape;
use crate::ops::pool::PoolShape;

fn pad_index(s: &ConvShape, oy: usize, ky: usize, ox: usize, kx: usize) -> Option<(usize, usize)> {
    let y = (oy * s.stride + ky) as isize - s.pad() as isize;
    let x = (ox * s.stride + kx) as isize - s.pad() as isize;
    (y >= 0 && x >= 0 && (y as usize) < s.h && (x as usize) < s.w).then_some((y as usize, x as usize))
}

/// Visits every (output index, input index, weight index) triple of a convolution.
fn conv_taps(s: &ConvShape, mut visit: impl FnMut(usize, usize, usize)) {
    let (oh, ow, cig, cog, k) = (s.oh(), s.ow(), s.cig(), s.cog(), s.k);
    for n in 0..s.n {
        for co in 0..s.cout {
            let g = co / cog;
            for oy in 0..oh {
                for ox in 0..ow {
                    let o = ((n * s.cout + co) * oh + oy) * ow + ox;
                    for ci in 0..cig {
                        for ky in 0..k {
                            for kx in 0..k {
                                if let Some((y, x)) = pad_index(s, oy, ky, ox, kx) {
                                    let i = ((n * s.cin + g * cig + ci) * s.h + y) * s.w + x;
                                    let wi = ((co * cig + ci) * k + ky) * k + kx;
                                    visit(o, i, wi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn conv_forward(s: &ConvShape, x: &[f64], w: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; s.output_shape().iter().product()];
    conv_taps(s, |o, i, wi| y[o] += x[i] * w[wi]);
    y
}

pub fn conv_backward_data(s: &ConvShape, dy: &[f64], w: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; s.input_shape().iter().product()];
    conv_taps(s, |o, i, wi| dx[i] += dy[o] * w[wi]);
    dx
}

pub fn conv_backward_weight(s: &ConvShape, dy: &[f64], x: &[f64]) -> Vec<f64> {
    let mut dw = vec![0.0; s.weight_shape().iter().product()];
    conv_taps(s, |o, i, wi| dw[wi] += dy[o] * x[i]);
    dw
}

fn channel_of(s: &BnShape, i: usize) -> usize {
    (i / s.hw) % s.c
}

/// Per-channel mean and biased variance.
pub fn bn_stats(s: &BnShape, x: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let m = (s.n * s.hw) as f64;
    let mut mean = vec![0.0; s.c];
    for (i, v) in x.iter().enumerate() {
        mean[channel_of(s, i)] += v / m;
    }
    let mut var = vec![0.0; s.c];
    for (i, v) in x.iter().enumerate() {
        let c = channel_of(s, i);
        var[c] += (v - mean[c]).powi(2) / m;
    }
    (mean, var)
}

/// y = (x - mean) / sqrt(var + eps) * gamma + beta with the given statistics.
pub fn bn_normalize(s: &BnShape, x: &[f64], mean: &[f64], var: &[f64], gamma: &[f64], beta: &[f64], eps: f64) -> Vec<f64> {
    x.iter()
        .enumerate()
        .map(|(i, v)| {
            let c = channel_of(s, i);
            (v - mean[c]) / (var[c] + eps).sqrt() * gamma[c] + beta[c]
        })
        .collect()
}

/// PyTorch's running-statistics update (unbiased variance).
pub fn bn_running_update(s: &BnShape, running: (&mut [f64], &mut [f64]), mean: &[f64], var: &[f64], momentum: f64) {
    let m = (s.n * s.hw) as f64;
    let unbiased = if m > 1.0 { m / (m - 1.0) } else { 1.0 };
    for c in 0..s.c {
        running.0[c] = (1.0 - momentum) * running.0[c] + momentum * mean[c];
        running.1[c] = (1.0 - momentum) * running.1[c] + momentum * var[c] * unbiased;
    }
}

/// Backward of the training-mode normalisation: (dx, dgamma, dbeta).
pub fn bn_backward(s: &BnShape, dy: &[f64], x: &[f64], gamma: &[f64], eps: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let m = (s.n * s.hw) as f64;
    let (mean, var) = bn_stats(s, x);
    let invstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let xhat = |i: usize| (x[i] - mean[channel_of(s, i)]) * invstd[channel_of(s, i)];
    let (mut dgamma, mut dbeta) = (vec![0.0; s.c], vec![0.0; s.c]);
    for (i, d) in dy.iter().enumerate().take(x.len()) {
        let c = channel_of(s, i);
        dgamma[c] += d * xhat(i);
        dbeta[c] += d;
    }
    let dx = (0..x.len())
        .map(|i| {
            let c = channel_of(s, i);
            gamma[c] * invstd[c] / m * (m * dy[i] - dbeta[c] - xhat(i) * dgamma[c])
        })
        .collect();
    (dx, dgamma, dbeta)
}

pub fn relu(x: &[f64]) -> Vec<f64> {
    x.iter().map(|v| v.max(0.0)).collect()
}

/// dx = dy where x > 0.
pub fn relu_backward(dy: &[f64], x: &[f64]) -> Vec<f64> {
    dy.iter().zip(x).map(|(d, v)| if *v > 0.0 { *d } else { 0.0 }).collect()
}

pub fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// Concatenate [n, ca, hw] and [n, cb, hw] along channels.
pub fn concat(n: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
    let (pa, pb) = (a.len() / n, b.len() / n);
    (0..n).flat_map(|i| a[i * pa..(i + 1) * pa].iter().chain(&b[i * pb..(i + 1) * pb]).copied()).collect()
}

/// Inverse of `concat`: the first `ca_len` values of each image go to a, the rest to b.
pub fn split(n: usize, ab: &[f64], per_image_a: usize) -> (Vec<f64>, Vec<f64>) {
    let per = ab.len() / n;
    let mut a = Vec::new();
    let mut b = Vec::new();
    for img in ab.chunks(per) {
        a.extend_from_slice(&img[..per_image_a]);
        b.extend_from_slice(&img[per_image_a..]);
    }
    (a, b)
}

pub fn gap_forward(s: &PoolShape, x: &[f64]) -> Vec<f64> {
    let hw = s.h * s.w;
    x.chunks(hw).map(|c| c.iter().sum::<f64>() / hw as f64).collect()
}

pub fn gap_backward(s: &PoolShape, dy: &[f64]) -> Vec<f64> {
    let hw = s.h * s.w;
    dy.iter().flat_map(|d| std::iter::repeat_n(d / hw as f64, hw)).collect()
}

/// Visits (output index, input index or None for padding) over every window of a pooling.
fn pool_windows(s: &PoolShape, mut visit: impl FnMut(usize, Option<usize>)) {
    let (oh, ow) = (s.oh(), s.ow());
    for plane in 0..s.n * s.c {
        for oy in 0..oh {
            for ox in 0..ow {
                let o = (plane * oh + oy) * ow + ox;
                for ky in 0..s.k {
                    for kx in 0..s.k {
                        let y = (oy * s.stride + ky) as isize - s.pad as isize;
                        let x = (ox * s.stride + kx) as isize - s.pad as isize;
                        let inside = y >= 0 && x >= 0 && (y as usize) < s.h && (x as usize) < s.w;
                        visit(o, inside.then(|| (plane * s.h + y as usize) * s.w + x as usize));
                    }
                }
            }
        }
    }
}

/// (y, argmax as an index into x): the first maximum of each window.
pub fn maxpool_forward(s: &PoolShape, x: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let len = s.n * s.c * s.oh() * s.ow();
    let mut y = vec![f64::NEG_INFINITY; len];
    let mut arg = vec![usize::MAX; len];
    pool_windows(s, |o, i| {
        if let Some(i) = i {
            if arg[o] == usize::MAX || x[i] > y[o] {
                y[o] = x[i];
                arg[o] = i;
            }
        }
    });
    (y, arg)
}

pub fn maxpool_backward(s: &PoolShape, dy: &[f64], argmax: &[usize]) -> Vec<f64> {
    let mut dx = vec![0.0; s.n * s.c * s.h * s.w];
    for (o, &i) in argmax.iter().enumerate() {
        dx[i] += dy[o];
    }
    dx
}

pub fn avgpool_forward(s: &PoolShape, x: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; s.n * s.c * s.oh() * s.ow()];
    let div = (s.k * s.k) as f64;
    pool_windows(s, |o, i| y[o] += i.map_or(0.0, |i| x[i]) / div);
    y
}

pub fn avgpool_backward(s: &PoolShape, dy: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; s.n * s.c * s.h * s.w];
    let div = (s.k * s.k) as f64;
    pool_windows(s, |o, i| {
        if let Some(i) = i {
            dx[i] += dy[o] / div
        }
    });
    dx
}

/// c[m, n] = a[m, k] b[k, n], all row-major.
pub fn matmul(m: usize, n: usize, k: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for kk in 0..k {
            for j in 0..n {
                c[i * n + j] += a[i * k + kk] * b[kk * n + j];
            }
        }
    }
    c
}

pub fn transpose(rows: usize, cols: usize, a: &[f64]) -> Vec<f64> {
    (0..cols * rows).map(|i| a[(i % rows) * cols + i / rows]).collect()
}

/// y = x w^T for x [batch, fin], w [fout, fin].
pub fn linear_forward(batch: usize, fin: usize, fout: usize, x: &[f64], w: &[f64]) -> Vec<f64> {
    matmul(batch, fout, fin, x, &transpose(fout, fin, w))
}

/// (dx, dw) of `linear_forward`.
pub fn linear_backward(batch: usize, fin: usize, fout: usize, dy: &[f64], x: &[f64], w: &[f64]) -> (Vec<f64>, Vec<f64>) {
    (matmul(batch, fin, fout, dy, w), matmul(fout, fin, batch, &transpose(batch, fout, dy), x))
}

/// Mean label-smoothed cross-entropy and its gradient with respect to the logits.
pub fn softmax_xent(classes: usize, logits: &[f64], labels: &[usize], smoothing: f64) -> (f64, Vec<f64>) {
    let n = labels.len();
    let mut loss = 0.0;
    let mut grad = vec![0.0; logits.len()];
    for (i, &label) in labels.iter().enumerate() {
        let row = &logits[i * classes..(i + 1) * classes];
        let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let log_z = row.iter().map(|v| (v - mx).exp()).sum::<f64>().ln() + mx;
        for (k, v) in row.iter().enumerate() {
            let target = smoothing / classes as f64 + if k == label { 1.0 - smoothing } else { 0.0 };
            loss -= target * (v - log_z) / n as f64;
            grad[i * classes + k] = ((v - log_z).exp() - target) / n as f64;
        }
    }
    (loss, grad)
}

/// In place: v = mu v + g + wd p; p -= lr v.
pub fn sgd_step(p: &mut [f64], g: &[f64], v: &mut [f64], lr: f64, momentum: f64, weight_decay: f64) {
    for i in 0..p.len() {
        v[i] = momentum * v[i] + g[i] + weight_decay * p[i];
        p[i] -= lr * v[i];
    }
}

/// Dropout with a given keep-mask (1 or 0 per value).
pub fn dropout(x: &[f64], mask: &[f64], p: f64) -> Vec<f64> {
    x.iter().zip(mask).map(|(v, m)| v * m / (1.0 - p)).collect()
}

#[cfg(test)]
mod finite_difference {
    //! Each backward of the reference against central differences of its forward, in f64:
    //! L(x) = sum(r * f(x)) for a random r, so dL/dx is the backward applied to dy = r.
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(rng: &mut rand::rngs::StdRng, n: usize) -> Vec<f64> {
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// Checks `analytic` = d/dx sum(r * f(x)) at every coordinate of x (relative 1e-6).
    fn check(name: &str, x: &[f64], r: &[f64], f: impl Fn(&[f64]) -> Vec<f64>, analytic: &[f64]) {
        let h = 1e-6;
        let mut worst: f64 = 0.0;
        let scale = analytic.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
        for i in 0..x.len() {
            let mut xp = x.to_vec();
            xp[i] += h;
            let mut xm = x.to_vec();
            xm[i] -= h;
            let numeric = (dot(r, &f(&xp)) - dot(r, &f(&xm))) / (2.0 * h);
            worst = worst.max((numeric - analytic[i]).abs() / scale);
        }
        assert!(worst < 1e-6, "{name}: finite-difference mismatch {worst:.2e} (relative to max |grad|)");
    }

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    #[test]
    fn conv_gradients() {
        let mut g = rng();
        for s in [
            ConvShape { n: 2, cin: 4, h: 5, w: 5, cout: 6, groups: 2, k: 3, stride: 2 },
            ConvShape { n: 1, cin: 3, h: 4, w: 3, cout: 3, groups: 3, k: 3, stride: 1 },
            ConvShape { n: 2, cin: 2, h: 3, w: 3, cout: 4, groups: 1, k: 1, stride: 1 },
        ] {
            let x = random(&mut g, s.input_shape().iter().product());
            let w = random(&mut g, s.weight_shape().iter().product());
            let r = random(&mut g, s.output_shape().iter().product());
            check("conv input", &x, &r, |x| conv_forward(&s, x, &w), &conv_backward_data(&s, &r, &w));
            check("conv weight", &w, &r, |w| conv_forward(&s, &x, w), &conv_backward_weight(&s, &r, &x));
        }
    }

    #[test]
    fn batchnorm_gradients() {
        let mut g = rng();
        for s in [BnShape { n: 3, c: 2, hw: 5 }, BnShape { n: 4, c: 3, hw: 1 }] {
            let x = random(&mut g, s.len());
            let gamma = random(&mut g, s.c);
            let beta = random(&mut g, s.c);
            let r = random(&mut g, s.len());
            let fwd = |x: &[f64], gamma: &[f64], beta: &[f64]| {
                let (m, v) = bn_stats(&s, x);
                bn_normalize(&s, x, &m, &v, gamma, beta, 1e-5)
            };
            let (dx, dgamma, dbeta) = bn_backward(&s, &r, &x, &gamma, 1e-5);
            check("bn input", &x, &r, |x| fwd(x, &gamma, &beta), &dx);
            check("bn gamma", &gamma, &r, |gm| fwd(&x, gm, &beta), &dgamma);
            check("bn beta", &beta, &r, |b| fwd(&x, &gamma, b), &dbeta);
        }
    }

    #[test]
    fn pooling_and_elementwise_gradients() {
        let mut g = rng();
        let s = PoolShape { n: 2, c: 2, h: 5, w: 4, k: 3, stride: 2, pad: 1 };
        let x = random(&mut g, s.n * s.c * s.h * s.w);
        let r = random(&mut g, s.n * s.c * s.oh() * s.ow());
        let (_, arg) = maxpool_forward(&s, &x);
        check("maxpool", &x, &r, |x| maxpool_forward(&s, x).0, &maxpool_backward(&s, &r, &arg));
        check("avgpool", &x, &r, |x| avgpool_forward(&s, x), &avgpool_backward(&s, &r));
        let gs = PoolShape::global(2, 3, 3, 2);
        let xg = random(&mut g, 36);
        let rg = random(&mut g, 6);
        check("global avg pool", &xg, &rg, |x| gap_forward(&gs, x), &gap_backward(&gs, &rg));
        let rx = random(&mut g, x.len());
        check("relu", &x, &rx, relu, &relu_backward(&rx, &x));
        let (a, b) = (random(&mut g, 12), random(&mut g, 8));
        let rc = random(&mut g, 20);
        let (da, db) = split(2, &rc, 6);
        check("concat a", &a, &rc, |a| concat(2, a, &b), &da);
        check("concat b", &b, &rc, |b| concat(2, &a, b), &db);
        let mask: Vec<f64> = (0..x.len()).map(|i| (i % 3 != 0) as u8 as f64).collect();
        check("dropout", &x, &rx, |x| dropout(x, &mask, 0.3), &dropout(&rx, &mask, 0.3));
    }

    #[test]
    fn linear_and_loss_gradients() {
        let mut g = rng();
        let (batch, fin, fout) = (3, 5, 4);
        let x = random(&mut g, batch * fin);
        let w = random(&mut g, fout * fin);
        let r = random(&mut g, batch * fout);
        let (dx, dw) = linear_backward(batch, fin, fout, &r, &x, &w);
        check("linear input", &x, &r, |x| linear_forward(batch, fin, fout, x, &w), &dx);
        check("linear weight", &w, &r, |w| linear_forward(batch, fin, fout, &x, w), &dw);
        let logits = random(&mut g, 3 * 7);
        let labels = [2, 0, 6];
        let (_, grad) = softmax_xent(7, &logits, &labels, 0.1);
        check("softmax cross-entropy", &logits, &[1.0], |l| vec![softmax_xent(7, l, &labels, 0.1).0], &grad);
    }
}
