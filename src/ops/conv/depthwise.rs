//! 3x3 depthwise convs (groups = channels, stride 1 or 2: SPGNet's strided skip paths): the
//! forward, input gradient and weight gradient with a lane per image (or, for the weight
//! gradient, per channel) and the channel uniform. The implicit-GEMM tiles would keep one
//! live row of TM and pay a weight layout for nine values per channel.

use super::*;
use crate::ops::batchnorm::BnEval;

/// Whether the depthwise kernels run this conv.
pub fn depthwise(s: &ConvShape) -> bool {
    s.groups == s.cin && s.cout == s.cin && s.k == 3 && (s.stride == 1 || s.stride == 2)
}

/// Eight lanes (the CPU adapter's SIMD width), each image's planes of TM = 8 channels per
/// lane in the forward and input gradient (a workgroup per channel spent more on lavapipe's
/// per-workgroup cost than on the nine taps); NV is unused.
const DEPTHWISE_TILE: Tile = Tile { tm: 8, nv: 1, wg: 8 };

/// A lane per image, a workgroup row per TM channels.
fn by_image(s: &ConvShape) -> [u32; 3] {
    [(s.n as u32).div_ceil(DEPTHWISE_TILE.wg), (s.cin as u32).div_ceil(DEPTHWISE_TILE.tm), 1]
}

/// The forward (with `bn`, eval's BatchNorm + ReLU epilogue), reading and writing channel slices.
pub fn forward_depthwise(gpu: &Gpu, s: &ConvShape, sl: Slices, x: &Tensor, w: &Tensor, bn: Option<&BnEval>, y: &Tensor) -> Launch {
    assert!(depthwise(s), "forward_depthwise: {s:?} is not a 3x3 depthwise conv with stride 1 or 2");
    let mut l = match bn {
        None => gpu.launch(
            "conv.forward",
            &spec(DEPTHWISE_TILE, ForwardKernel::ForwardDepthwise),
            &params_with(gpu, s, 1, s.n, false, sl),
            &[x, w, y],
            by_image(s),
        ),
        Some(bn) => gpu.launch(
            "conv.forward_bn",
            &spec(DEPTHWISE_TILE, ForwardKernel::ForwardDepthwiseBn),
            &params_with(gpu, s, 1, s.n, bn.relu, sl),
            &[x, w, y, bn.mean, bn.var, bn.gamma, bn.beta],
            by_image(s),
        ),
    };
    l.flops = 2.0 * s.macs();
    l
}

/// The input gradient.
pub fn backward_data_depthwise(gpu: &Gpu, s: &ConvShape, dy: &Tensor, w: &Tensor, dx: &Tensor) -> Launch {
    assert!(depthwise(s), "backward_data_depthwise: {s:?} is not a 3x3 depthwise conv with stride 1 or 2");
    let spec = spec(DEPTHWISE_TILE, BackwardDataKernel::BackwardDataDepthwise);
    let mut l = gpu.launch("conv.backward_data", &spec, &params(gpu, s, 1, s.n), &[dy, w, dx], by_image(s));
    l.flops = 2.0 * s.macs();
    l
}

/// The weight gradient: a lane per channel, the batch split into slices where that fills the
/// device (summed in a fixed order by split_weight_grad).
pub fn backward_weight_depthwise(gpu: &Gpu, s: &ConvShape, dy: &Tensor, x: &Tensor, dw: &Tensor) -> Vec<Launch> {
    assert!(depthwise(s), "backward_weight_depthwise: {s:?} is not a 3x3 depthwise conv with stride 1 or 2");
    let grid_for = |splits: usize| [(s.cout as u32).div_ceil(DEPTHWISE_TILE.wg), 1, splits as u32];
    let splits = splits_to_fill(s, DEPTHWISE_TILE, grid_for(1));
    split_weight_grad(gpu, s, BackwardWeightKernel::BackwardWeightDepthwise, DEPTHWISE_TILE, splits, grid_for, dy, x, dw)
}
