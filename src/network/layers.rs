//! The layers of the network as the graph builder records them: ConvX (conv -> BN -> ReLU),
//! the SPG block and the head. Each layer's `backward` mirrors its `forward`, in the spirit of
//! hand-written training code.

use super::{DeviceState, Mode};
use crate::gpu::{Gpu, Launch, Tensor};
use crate::model::{BlockDef, ConvBnDef, Skip, HEAD_WIDTH};
use crate::ops::batchnorm::{self, BnEval, BnIo, BnParams, BnShape};
use crate::ops::conv::{self, ConvShape};
use crate::ops::pool::{self, PoolShape};
use crate::ops::{elementwise, linear};
use std::sync::Arc;

/// Records launches and owns every tensor a graph allocates.
pub(super) struct Builder<'a> {
    pub gpu: &'a Gpu,
    pub state: &'a DeviceState,
    pub mode: Mode,
    pub forward: Vec<Launch>,
    pub backward: Vec<Launch>,
}

impl Builder<'_> {
    /// Names the launches recorded since `mark()` that have no layer yet as `layer`'s (inner
    /// layers tag theirs first, the enclosing block or head takes the rest).
    pub(super) fn tag(&mut self, since: (usize, usize), layer: &str) {
        for l in self.forward[since.0..].iter_mut().chain(&mut self.backward[since.1..]) {
            if l.layer.is_empty() {
                l.layer = layer.to_string();
            }
        }
    }
    pub(super) fn mark(&self) -> (usize, usize) {
        (self.forward.len(), self.backward.len())
    }
    /// A graph tensor; the launches' bind groups keep its buffer alive.
    pub(super) fn alloc(&self, shape: &[usize], label: &str) -> Tensor {
        self.gpu.zeros(shape, label)
    }
}

pub(super) fn dims4(t: &Tensor) -> [usize; 4] {
    [t.shape[0], t.shape[1], t.shape[2], t.shape[3]]
}

/// ConvX: conv -> BN -> optional ReLU (fused into the BN kernels).
pub(super) struct ConvBn {
    def: ConvBnDef,
    conv: ConvShape,
    bn: BnShape,
    bn_params: BnParams,
    x: Tensor,
    z: Tensor,
    saved: Option<Tensor>,
    /// The output; where the BN writes a slice of a wider buffer without a whole copy
    /// (conv2 in training, conv1 and conv2 in eval), that buffer.
    pub(super) y: Tensor,
    /// Weights the forward re-laid out that the input gradient reads too (training).
    layout: conv::SharedLayout,
}

impl ConvBn {
    fn name(def: &ConvBnDef) -> &str {
        def.weight.strip_suffix(".conv.weight").or(def.weight.strip_suffix(".weight")).unwrap_or(&def.weight)
    }

    /// The conv of `def` on the images of x (x may hold more channels than it reads: a slice).
    pub(super) fn shape(def: &ConvBnDef, x: &Tensor) -> ConvShape {
        let [n, _, h, w] = dims4(x);
        ConvShape { n, cin: def.cin, h, w, cout: def.cout, groups: def.groups, k: def.k, stride: def.stride }
    }

    pub(super) fn forward(b: &mut Builder, def: &ConvBnDef, x: &Tensor) -> ConvBn {
        Self::forward_into(b, def, x, None, None)
    }

    /// Training: the BN writes channels `io.first..` of `out` (the fused concat, see BnIo), and
    /// with `io.y_copy` its own output too; `io.dy_sum`: the backward gets a second gradient;
    /// `io.residual`: y = relu(BN + shortcut), the end of an SPG block.
    pub(super) fn forward_into(
        b: &mut Builder,
        def: &ConvBnDef,
        x: &Tensor,
        io: Option<(&Tensor, BnIo)>,
        shortcut: Option<&Tensor>,
    ) -> ConvBn {
        let m = b.mark();
        let c = Self::forward_untagged(b, def, x, io, shortcut);
        b.tag(m, Self::name(def));
        c
    }

    fn forward_untagged(b: &mut Builder, def: &ConvBnDef, x: &Tensor, io: Option<(&Tensor, BnIo)>, shortcut: Option<&Tensor>) -> ConvBn {
        let conv = Self::shape(def, x);
        let n = conv.n;
        if b.mode == Mode::Eval {
            let y = b.alloc(&conv.output_shape(), &def.bn);
            return Self::forward_eval_untagged(b, def, (x, 0), (&y, 0));
        }
        let z = b.alloc(&conv.output_shape(), &def.weight);
        let (launches, layout) = conv::forward_sharing(b.gpu, &conv, x, &b.state.param(&def.weight), &z);
        b.forward.extend(launches);
        let bn = BnShape { n, c: def.cout, hw: conv.oh() * conv.ow() };
        let bn_params = batchnorm::params_io(b.gpu, &bn, def.relu, io.map_or(BnIo::whole(bn.c), |(_, io)| io));
        let st = b.state;
        let affine = (&st.param(&format!("{}.weight", def.bn)), &st.param(&format!("{}.bias", def.bn)));
        let running = (&st.stat(&format!("{}.running_mean", def.bn)), &st.stat(&format!("{}.running_var", def.bn)));
        let saved = b.alloc(&[2, def.cout], "bn.saved");
        let own = || b.alloc(&conv.output_shape(), &def.bn);
        let (y, out, copy) = match io {
            Some((cat, io)) if io.y_copy => {
                let y = own();
                (y.clone(), cat.clone(), Some(y))
            }
            Some((cat, _)) => (cat.clone(), cat.clone(), None),
            None => {
                let y = own();
                (y.clone(), y, None)
            }
        };
        b.forward.extend(batchnorm::forward_train(b.gpu, &bn_params, &bn, &z, &saved, running, affine, &out, copy.as_ref(), shortcut));
        ConvBn { def: def.clone(), conv, bn, bn_params, x: x.clone(), z, saved: Some(saved), y, layout }
    }

    /// Eval: conv, BN with the running statistics and ReLU in one kernel (no intermediate
    /// tensor), writing channels `y.1`.. of `y.0` (the concat buffer for conv2).
    fn forward_eval(b: &mut Builder, def: &ConvBnDef, x: (&Tensor, usize), y: (&Tensor, usize)) -> ConvBn {
        let m = b.mark();
        let c = Self::forward_eval_untagged(b, def, x, y);
        b.tag(m, Self::name(def));
        c
    }

    fn forward_eval_untagged(b: &mut Builder, def: &ConvBnDef, x: (&Tensor, usize), y: (&Tensor, usize)) -> ConvBn {
        let conv = Self::shape(def, x.0);
        let n = conv.n;
        let slices = conv::Slices { x_channels: x.0.shape[1], x_first: x.1, y_channels: y.0.shape[1], y_first: y.1 };
        let st = b.state;
        let (mean, var) = (st.stat(&format!("{}.running_mean", def.bn)), st.stat(&format!("{}.running_var", def.bn)));
        let (gamma, beta) = (st.param(&format!("{}.weight", def.bn)), st.param(&format!("{}.bias", def.bn)));
        let bn_eval = BnEval { mean: &mean, var: &var, gamma: &gamma, beta: &beta, relu: def.relu };
        b.forward.extend(conv::forward_bn(b.gpu, &conv, slices, x.0, &st.param(&def.weight), &bn_eval, y.0));
        let bn = BnShape { n, c: def.cout, hw: conv.oh() * conv.ow() };
        let bn_params = batchnorm::params(b.gpu, &bn, def.relu);
        ConvBn {
            def: def.clone(),
            conv,
            bn,
            bn_params,
            x: x.0.clone(),
            z: y.0.clone(),
            saved: None,
            y: y.0.clone(),
            layout: Default::default(),
        }
    }

    /// Gradients of the conv weight and BN affine into the gradient arena; dx when asked.
    /// dy is laid out as the forward's output was (the concat buffer for conv1 and conv2);
    /// dy2 is the second term of a BnIo::dy_sum gradient.
    pub(super) fn backward(&self, b: &mut Builder, dy: &Tensor, dy2: Option<&Tensor>, need_dx: bool) -> Option<Tensor> {
        let m = b.mark();
        let dx = self.backward_untagged(b, dy, dy2, need_dx);
        b.tag(m, Self::name(&self.def));
        dx
    }

    fn backward_untagged(&self, b: &mut Builder, dy: &Tensor, dy2: Option<&Tensor>, need_dx: bool) -> Option<Tensor> {
        let st = b.state;
        let bn_name = |f: &str| format!("{}.{f}", self.def.bn);
        let dz = b.alloc(&self.z.shape, "dz");
        let saved = self.saved.as_ref().expect("backward needs a training graph");
        b.backward.extend(batchnorm::backward(
            b.gpu,
            &self.bn_params,
            &self.bn,
            dy,
            dy2,
            &self.z,
            saved,
            (&st.param(&bn_name("weight")), &st.param(&bn_name("bias"))),
            (&st.grad(&bn_name("weight")), &st.grad(&bn_name("bias"))),
            &dz,
        ));
        b.backward.extend(conv::backward_weight(b.gpu, &self.conv, &dz, &self.x, &st.grad(&self.def.weight)));
        need_dx.then(|| {
            let dx = b.alloc(&self.x.shape, "dx");
            b.backward.extend(conv::backward_data_sharing(b.gpu, &self.conv, &dz, &st.param(&self.def.weight), &self.layout, &dx));
            dx
        })
    }
}

/// SPG block: conv_in -> conv1 -> conv2, conv_out(concat(conv1, conv2)) + skip, ReLU.
pub(super) struct Block {
    conv_in: ConvBn,
    conv1: ConvBn,
    conv2: ConvBn,
    conv_out: ConvBn,
    /// Empty for the identity skip.
    skip: Vec<ConvBn>,
    pub(super) y: Tensor,
}

impl Block {
    pub(super) fn forward(b: &mut Builder, def: &BlockDef, x: &Tensor) -> Block {
        let conv_in = ConvBn::forward(b, &def.conv_in, x);
        let (conv1, conv2, cat) = if b.mode == Mode::Eval {
            // conv1 writes the first half of the concat buffer, conv2 the second.
            let s1 = ConvBn::shape(&def.conv1, &conv_in.y);
            let mid = s1.cout;
            let cat = b.alloc(&[s1.n, 2 * mid, s1.oh(), s1.ow()], "concat");
            let conv1 = ConvBn::forward_eval(b, &def.conv1, (&conv_in.y, 0), (&cat, 0));
            // conv2 reads conv1's output from a copy: WebGPU forbids one dispatch to read and
            // write overlapping ranges of a buffer, and conv1's channels interleave with conv2's
            let y1 = b.alloc(&[s1.n, mid, s1.oh(), s1.ow()], "conv1 output");
            b.forward.push(elementwise::copy_channels(b.gpu, &cat, 0, &y1));
            let conv2 = ConvBn::forward_eval(b, &def.conv2, (&y1, 0), (&cat, mid));
            (conv1, conv2, cat)
        } else {
            // Fused concat: the BNs of conv1 and conv2 write the two halves of the concat
            // buffer (conv1's also its own output, which conv2 reads), and their backward
            // reads the concat's gradient in place (see batchnorm::BnIo).
            let s1 = ConvBn::shape(&def.conv1, &conv_in.y);
            let mid = s1.cout;
            let cat = b.alloc(&[s1.n, 2 * mid, s1.oh(), s1.ow()], "concat");
            let half = |first, y_copy| BnIo { total: 2 * mid, first, y_copy, dy_sum: y_copy, residual: false };
            let conv1 = ConvBn::forward_into(b, &def.conv1, &conv_in.y, Some((&cat, half(0, true))), None);
            let conv2 = ConvBn::forward_into(b, &def.conv2, &conv1.y, Some((&cat, half(mid, false))), None);
            (conv1, conv2, cat)
        };
        let mut skip: Vec<ConvBn> = Vec::new();
        let skip_defs: Vec<&ConvBnDef> = match &def.skip {
            Skip::Identity => vec![],
            Skip::Downsample(a, c) => vec![a, c],
            Skip::Project(a) => vec![a],
        };
        for d in skip_defs {
            let input = skip.last().map_or(x.clone(), |s| s.y.clone());
            skip.push(ConvBn::forward(b, d, &input));
        }
        let shortcut = skip.last().map_or(x.clone(), |s| s.y.clone());
        let out_shape = ConvBn::shape(&def.conv_out, &cat).output_shape();
        let y = b.alloc(&out_shape, &def.name);
        let conv_out = if b.mode == Mode::Eval {
            let conv_out = ConvBn::forward(b, &def.conv_out, &cat);
            b.forward.push(elementwise::add_relu(b.gpu, &conv_out.y, &shortcut, &y));
            conv_out
        } else {
            // The residual add and the block's ReLU in conv_out's BN: y = relu(BN + shortcut).
            ConvBn::forward_into(
                b,
                &def.conv_out,
                &cat,
                Some((&y, BnIo { residual: true, ..BnIo::whole(def.conv_out.cout) })),
                Some(&shortcut),
            )
        };
        Block { conv_in, conv1, conv2, conv_out, skip, y }
    }

    /// The block's input gradient, as its main path's and its skip's terms (the consumer
    /// sums them as it reads).
    pub(super) fn backward(&self, b: &mut Builder, dy: &Grad) -> Grad {
        let d_sum = b.alloc(&self.y.shape, "d_sum");
        b.backward.push(match dy {
            Grad::One(dy) => elementwise::relu_backward(b.gpu, dy, &self.y, &d_sum),
            Grad::Sum(a, c) => elementwise::relu_backward_sum(b.gpu, (a, c), &self.y, &d_sum),
        });
        let d_cat = self.conv_out.backward(b, &d_sum, None, true).unwrap();
        // conv2's BN reads its half of d_cat; conv1's reads the other half plus conv2's dx.
        let d_o1_via_conv2 = self.conv2.backward(b, &d_cat, None, true).unwrap();
        let d_a = self.conv1.backward(b, &d_cat, Some(&d_o1_via_conv2), true).unwrap();
        let dx_main = self.conv_in.backward(b, &d_a, None, true).unwrap();
        let mut dx_skip = d_sum;
        for s in self.skip.iter().rev() {
            dx_skip = s.backward(b, &dx_skip, None, true).unwrap();
        }
        Grad::Sum(dx_main, dx_skip)
    }
}

/// A gradient that arrives as one tensor or as two terms whose sum it is: an SPG block's
/// input gradient (main path plus skip), which the next kernel back sums as it reads it
/// instead of a separate add.
pub(super) enum Grad {
    One(Tensor),
    Sum(Tensor, Tensor),
}

/// Global average pool -> fc -> BatchNorm1d + ReLU -> dropout -> linear.
pub(super) struct Head {
    pool: PoolShape,
    pooled: Tensor,
    fc_out: Tensor,
    bn: BnShape,
    bn_params: BnParams,
    saved: Option<Tensor>,
    act: Tensor,
    pub(super) dropout: Option<Arc<wgpu::Buffer>>,
    dropped: Tensor,
    pub(super) logits: Tensor,
}

impl Head {
    pub(super) fn forward(b: &mut Builder, x: &Tensor, dropout: f32) -> Head {
        let g = b.gpu;
        let st = b.state;
        let [n, c, h, w] = dims4(x);
        let pool = PoolShape::global(n, c, h, w);
        let pooled = b.alloc(&[n, c], "pooled");
        b.forward.push(pool::gap_forward(g, &pool, x, &pooled));
        let fc_out = b.alloc(&[n, HEAD_WIDTH], "fc");
        if b.mode == Mode::Train {
            b.forward.extend(linear::forward(g, &pooled, &st.param("fc.weight"), &fc_out));
        }
        let bn = BnShape { n, c: HEAD_WIDTH, hw: 1 };
        let bn_params = batchnorm::params(g, &bn, true);
        let act = b.alloc(&[n, HEAD_WIDTH], "bn");
        let affine = (&st.param("bn.weight"), &st.param("bn.bias"));
        let running = (&st.stat("bn.running_mean"), &st.stat("bn.running_var"));
        let saved = match b.mode {
            Mode::Train => {
                let saved = b.alloc(&[2, HEAD_WIDTH], "bn.saved");
                b.forward.extend(batchnorm::forward_train(g, &bn_params, &bn, &fc_out, &saved, running, affine, &act, None, None));
                Some(saved)
            }
            Mode::Eval => {
                let bn_eval = BnEval { mean: running.0, var: running.1, gamma: affine.0, beta: affine.1, relu: true };
                b.forward.extend(linear::forward_bn(g, &pooled, &st.param("fc.weight"), &bn_eval, &act));
                None
            }
        };
        let (dropout, dropped) = if b.mode == Mode::Train && dropout > 0.0 {
            let p = elementwise::dropout_params(g, act.len(), dropout, 0);
            let dropped = b.alloc(&act.shape, "dropout");
            b.forward.push(elementwise::dropout(g, &p, &act, &dropped));
            (Some(p), dropped)
        } else {
            (None, act.clone())
        };
        let classes = st.arch.config.num_classes;
        let logits = b.alloc(&[n, classes], "logits");
        b.forward.extend(linear::forward(g, &dropped, &st.param("linear.weight"), &logits));
        Head { pool, pooled, fc_out, bn, bn_params, saved, act, dropout, dropped, logits }
    }

    pub(super) fn backward(&self, b: &mut Builder, dlogits: &Tensor) -> Tensor {
        let g = b.gpu;
        let st = b.state;
        b.backward.extend(linear::backward_weight(g, dlogits, &self.dropped, &st.grad("linear.weight")));
        let mut d_act = b.alloc(&self.act.shape, "d_dropped");
        b.backward.extend(linear::backward_data(g, dlogits, &st.param("linear.weight"), &d_act));
        if let Some(p) = &self.dropout {
            let d = b.alloc(&self.act.shape, "d_act");
            b.backward.push(elementwise::dropout(g, p, &d_act, &d));
            d_act = d;
        }
        let d_fc = b.alloc(&self.fc_out.shape, "d_fc");
        let saved = self.saved.as_ref().expect("backward needs a training graph");
        b.backward.extend(batchnorm::backward(
            g,
            &self.bn_params,
            &self.bn,
            &d_act,
            None,
            &self.fc_out,
            saved,
            (&st.param("bn.weight"), &st.param("bn.bias")),
            (&st.grad("bn.weight"), &st.grad("bn.bias")),
            &d_fc,
        ));
        b.backward.extend(linear::backward_weight(g, &d_fc, &self.pooled, &st.grad("fc.weight")));
        let d_pooled = b.alloc(&self.pooled.shape, "d_pooled");
        b.backward.extend(linear::backward_data(g, &d_fc, &st.param("fc.weight"), &d_pooled));
        let p = self.pool;
        let dx = b.alloc(&[p.n, p.c, p.h, p.w], "d_conv_last");
        b.backward.push(pool::gap_backward(g, &p, &d_pooled, &dx));
        dx
    }
}
