//! The linear layer y[batch, out] = x[batch, in] w[out, in]^T (no bias): a 1x1 convolution on
//! 1x1 maps, so ops::conv chooses its kernels (dense GEMMs where `in` comes in fours).

use super::batchnorm::BnEval;
use super::conv::{self, ConvShape};
use crate::gpu::{Gpu, Launch, Tensor};

/// A linear layer is a 1x1 convolution on 1x1 maps: the conv kernels (weights as uniform
/// rows, the batch as columns) run it about twice as fast as the strided matmul on lavapipe.
fn as_conv(batch: usize, fin: usize, fout: usize) -> ConvShape {
    ConvShape { n: batch, cin: fin, h: 1, w: 1, cout: fout, groups: 1, k: 1, stride: 1 }
}

/// y[batch, out] = x[batch, in] * w[out, in]^T  (no bias)
pub fn forward(gpu: &Gpu, x: &Tensor, w: &Tensor, y: &Tensor) -> Vec<Launch> {
    let s = as_conv(x.shape[0], x.shape[1], w.shape[0]);
    conv::forward(gpu, &s, &x.reshape(&s.input_shape()), &w.reshape(&s.weight_shape()), &y.reshape(&s.output_shape()))
}

/// Eval: y = BN1d(x w^T) (+ ReLU) in one pass (see conv::forward_bn).
pub fn forward_bn(gpu: &Gpu, x: &Tensor, w: &Tensor, bn: &BnEval, y: &Tensor) -> Vec<Launch> {
    let s = as_conv(x.shape[0], x.shape[1], w.shape[0]);
    let (xs, ws, ys) = (x.reshape(&s.input_shape()), w.reshape(&s.weight_shape()), y.reshape(&s.output_shape()));
    conv::forward_bn(gpu, &s, conv::Slices::whole(&s), &xs, &ws, bn, &ys)
}

/// dx[batch, in] = dy[batch, out] * w[out, in]
pub fn backward_data(gpu: &Gpu, dy: &Tensor, w: &Tensor, dx: &Tensor) -> Vec<Launch> {
    let s = as_conv(dy.shape[0], w.shape[1], w.shape[0]);
    conv::backward_data(gpu, &s, &dy.reshape(&s.output_shape()), &w.reshape(&s.weight_shape()), &dx.reshape(&s.input_shape()))
}

/// dw[out, in] = dy[batch, out]^T * x[batch, in] (split over the batch when it is long)
pub fn backward_weight(gpu: &Gpu, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Vec<Launch> {
    let s = as_conv(dy.shape[0], x.shape[1], dy.shape[1]);
    conv::backward_weight(gpu, &s, &dy.reshape(&s.output_shape()), &x.reshape(&s.input_shape()), &dw.reshape(&s.weight_shape()))
}
