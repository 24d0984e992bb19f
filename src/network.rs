//! SPGNet on the GPU. The model state lives in arenas (one buffer each for parameters,
//! gradients, momentum and running statistics) so one SGD dispatch updates everything.
//! A graph is built once per (batch, input size, mode): every layer allocates what it keeps
//! and records its launches; a step only replays them. Backward is explicit: each layer's
//! `backward` mirrors its `forward`, in the spirit of hand-written training code.

use crate::checkpoint::{Checkpoint, Metadata};
use crate::gpu::{Gpu, Launch, Tensor};
use crate::model::{Architecture, BlockDef, ConvBnDef, Skip, HEAD_WIDTH};
use crate::ops::batchnorm::{self, BnIo, BnParams, BnShape};
use crate::ops::conv::{self, ConvShape};
use crate::ops::pool::{self, PoolShape};
use crate::ops::{elementwise, linear, loss, sgd};
use anyhow::{anyhow, bail, Result};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Clone, Debug)]
struct Slot {
    trainable: bool,
    offset: usize,
    shape: Vec<usize>,
}

/// Model state on the GPU.
pub struct DeviceState {
    pub arch: Architecture,
    pub params: Tensor,
    pub grads: Tensor,
    pub velocity: Tensor,
    pub stats: Tensor,
    /// Parameters [0, weights_len) are conv and linear weights; the rest BN gamma and beta.
    pub weights_len: usize,
    slots: HashMap<String, Slot>,
    order: Vec<String>,
}

impl DeviceState {
    pub fn new(gpu: &Gpu, ck: &Checkpoint) -> Result<DeviceState> {
        let arch = Architecture::new(ck.config.clone());
        let align = (gpu.limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
        let mut defs = arch.tensors();
        let order: Vec<String> = defs.iter().map(|t| t.name.clone()).collect();
        // Weights first, so weight decay can be limited to them with one split point.
        defs.sort_by_key(|t| (!t.trainable, !t.is_weight));
        let (mut slots, mut sizes, mut weights_len) = (HashMap::new(), [0usize; 2], 0);
        for t in &defs {
            let arena = if t.trainable { 0 } else { 1 };
            if t.trainable && t.is_weight {
                weights_len = sizes[0] + t.len();
            }
            slots.insert(t.name.clone(), Slot { trainable: t.trainable, offset: sizes[arena], shape: t.shape.clone() });
            sizes[arena] += t.len().div_ceil(align) * align;
        }
        let max = gpu.limits.max_storage_buffer_binding_size as usize;
        if sizes[0] * 4 > max {
            bail!("the model's {} parameters exceed this adapter's storage binding limit of {max} bytes", sizes[0]);
        }
        let mut host = [vec![0f32; sizes[0]], vec![0f32; sizes[1]]];
        for t in &defs {
            let v = ck.tensors.get(&t.name).ok_or_else(|| anyhow!("checkpoint has no tensor '{}'", t.name))?;
            let s = &slots[&t.name];
            host[!s.trainable as usize][s.offset..s.offset + v.len()].copy_from_slice(v);
        }
        Ok(DeviceState {
            params: gpu.upload(&host[0], &[sizes[0]], "params"),
            grads: gpu.zeros(&[sizes[0]], "grads"),
            velocity: gpu.zeros(&[sizes[0]], "velocity"),
            stats: gpu.upload(&host[1], &[sizes[1]], "running_stats"),
            arch,
            weights_len,
            slots,
            order,
        })
    }

    fn view(&self, arena: &Tensor, name: &str) -> Tensor {
        let s = self.slots.get(name).unwrap_or_else(|| panic!("no tensor {name}"));
        Tensor { buffer: arena.buffer.clone(), offset: s.offset as u64 * 4, shape: s.shape.clone() }
    }
    pub fn param(&self, name: &str) -> Tensor {
        self.view(&self.params, name)
    }
    pub fn grad(&self, name: &str) -> Tensor {
        self.view(&self.grads, name)
    }
    pub fn stat(&self, name: &str) -> Tensor {
        self.view(&self.stats, name)
    }

    /// Names of trainable tensors, in state-dict order.
    pub fn trainable_names(&self) -> Vec<String> {
        self.order.iter().filter(|n| self.slots[*n].trainable).cloned().collect()
    }

    fn unpack(&self, gpu: &Gpu, arena: &Tensor, trainable: bool) -> Result<BTreeMap<String, Vec<f32>>> {
        let all = gpu.read(arena)?;
        Ok(self
            .order
            .iter()
            .filter(|n| self.slots[*n].trainable == trainable)
            .map(|n| {
                let s = &self.slots[n];
                let len: usize = s.shape.iter().product();
                (n.clone(), all[s.offset..s.offset + len].to_vec())
            })
            .collect())
    }

    /// Every state tensor read back, as a checkpoint.
    pub fn to_checkpoint(&self, gpu: &Gpu, meta: Metadata) -> Result<Checkpoint> {
        let mut tensors = self.unpack(gpu, &self.params, true)?;
        tensors.extend(self.unpack(gpu, &self.stats, false)?);
        Ok(Checkpoint { config: self.arch.config.clone(), tensors, meta })
    }

    /// A second state with copies of the parameters and running statistics (for a weight EMA);
    /// gradients and momentum are shared, as the copy is only evaluated.
    pub fn shadow(&self, gpu: &Gpu) -> DeviceState {
        let copy = |t: &Tensor, label: &str| {
            let c = gpu.zeros(&t.shape, label);
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            enc.copy_buffer_to_buffer(&t.buffer, t.offset, &c.buffer, 0, t.bytes());
            gpu.queue.submit([enc.finish()]);
            c
        };
        DeviceState {
            arch: self.arch.clone(),
            params: copy(&self.params, "ema.params"),
            grads: self.grads.clone(),
            velocity: self.velocity.clone(),
            stats: copy(&self.stats, "ema.stats"),
            weights_len: self.weights_len,
            slots: self.slots.clone(),
            order: self.order.clone(),
        }
    }

    /// Launches that move this (shadow) state towards `live` by an EMA step.
    pub fn ema_from(&self, gpu: &Gpu, live: &DeviceState, decay: f32) -> Vec<Launch> {
        [sgd::ema(gpu, &live.params, &self.params, decay), sgd::ema(gpu, &live.stats, &self.stats, decay)].into_iter().flatten().collect()
    }

    /// Momentum buffers by tensor name (saved for resuming).
    pub fn read_velocity(&self, gpu: &Gpu) -> Result<BTreeMap<String, Vec<f32>>> {
        self.unpack(gpu, &self.velocity, true)
    }

    pub fn write_velocity(&self, gpu: &Gpu, values: &BTreeMap<String, Vec<f32>>) -> Result<()> {
        let mut host = vec![0f32; self.velocity.len()];
        for name in self.trainable_names() {
            let s = &self.slots[&name];
            let v = values.get(&name).ok_or_else(|| anyhow!("optimizer state has no momentum for '{name}'"))?;
            let len: usize = s.shape.iter().product();
            if v.len() != len {
                bail!("optimizer state: momentum of '{name}' has {} values, expected {len}", v.len());
            }
            host[s.offset..s.offset + len].copy_from_slice(v);
        }
        gpu.write(&self.velocity, &host);
        Ok(())
    }

    /// The gradients of the last step, by tensor name.
    pub fn read_grads(&self, gpu: &Gpu) -> Result<BTreeMap<String, Vec<f32>>> {
        self.unpack(gpu, &self.grads, true)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics, running statistics updated, dropout on, backward recorded.
    Train,
    /// Running statistics, no dropout, forward only.
    Eval,
}

/// Records launches and owns every tensor a graph allocates.
struct Builder<'a> {
    gpu: &'a Gpu,
    state: &'a DeviceState,
    mode: Mode,
    forward: Vec<Launch>,
    backward: Vec<Launch>,
}

impl Builder<'_> {
    /// Names the launches recorded since `mark()` that have no layer yet as `layer`'s (inner
    /// layers tag theirs first, the enclosing block or head takes the rest).
    fn tag(&mut self, since: (usize, usize), layer: &str) {
        for l in self.forward[since.0..].iter_mut().chain(&mut self.backward[since.1..]) {
            if l.layer.is_empty() {
                l.layer = layer.to_string();
            }
        }
    }
    fn mark(&self) -> (usize, usize) {
        (self.forward.len(), self.backward.len())
    }
    /// A graph tensor; the launches' bind groups keep its buffer alive.
    fn alloc(&self, shape: &[usize], label: &str) -> Tensor {
        self.gpu.zeros(shape, label)
    }
}

fn dims4(t: &Tensor) -> [usize; 4] {
    [t.shape[0], t.shape[1], t.shape[2], t.shape[3]]
}

/// ConvX: conv -> BN -> optional ReLU (fused into the BN kernels).
struct ConvBn {
    def: ConvBnDef,
    conv: ConvShape,
    bn: BnShape,
    bn_params: BnParams,
    x: Tensor,
    z: Tensor,
    saved: Option<Tensor>,
    /// The output; where the BN writes a slice of a wider buffer without a whole copy
    /// (conv2 in training, conv1 and conv2 in eval), that buffer.
    y: Tensor,
    /// Weights the forward re-laid out that the input gradient reads too (training).
    layout: conv::SharedLayout,
}

impl ConvBn {
    fn name(def: &ConvBnDef) -> &str {
        def.weight.strip_suffix(".conv.weight").or(def.weight.strip_suffix(".weight")).unwrap_or(&def.weight)
    }

    /// The conv of `def` on the images of x (x may hold more channels than it reads: a slice).
    fn shape(def: &ConvBnDef, x: &Tensor) -> ConvShape {
        let [n, _, h, w] = dims4(x);
        ConvShape { n, cin: def.cin, h, w, cout: def.cout, groups: def.groups, k: def.k, stride: def.stride }
    }

    fn forward(b: &mut Builder, def: &ConvBnDef, x: &Tensor) -> ConvBn {
        Self::forward_into(b, def, x, None, None)
    }

    /// Training: the BN writes channels `io.first..` of `out` (the fused concat, see BnIo), and
    /// with `io.y_copy` its own output too; `io.dy_sum`: the backward gets a second gradient;
    /// `io.residual`: y = relu(BN + shortcut), the end of an SPG block.
    fn forward_into(b: &mut Builder, def: &ConvBnDef, x: &Tensor, io: Option<(&Tensor, BnIo)>, shortcut: Option<&Tensor>) -> ConvBn {
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
        let bn_eval = conv::BnEval { mean: &mean, var: &var, gamma: &gamma, beta: &beta, relu: def.relu };
        b.forward.extend(conv::forward_bn(b.gpu, &conv, slices, x.0, &st.param(&def.weight), &bn_eval, y.0));
        let bn = BnShape { n, c: def.cout, hw: conv.oh() * conv.ow() };
        let bn_params = batchnorm::params(b.gpu, &bn, def.relu);
        ConvBn { def: def.clone(), conv, bn, bn_params, x: x.0.clone(), z: y.0.clone(), saved: None, y: y.0.clone(), layout: Default::default() }
    }

    /// Gradients of the conv weight and BN affine into the gradient arena; dx when asked.
    /// dy is laid out as the forward's output was (the concat buffer for conv1 and conv2);
    /// dy2 is the second term of a BnIo::dy_sum gradient.
    fn backward(&self, b: &mut Builder, dy: &Tensor, dy2: Option<&Tensor>, need_dx: bool) -> Option<Tensor> {
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
struct Block {
    conv_in: ConvBn,
    conv1: ConvBn,
    conv2: ConvBn,
    conv_out: ConvBn,
    /// Empty for the identity skip.
    skip: Vec<ConvBn>,
    y: Tensor,
}

impl Block {
    fn forward(b: &mut Builder, def: &BlockDef, x: &Tensor) -> Block {
        let conv_in = ConvBn::forward(b, &def.conv_in, x);
        let (conv1, conv2, cat) = if b.mode == Mode::Eval {
            // No concat copies: conv1 writes the first half of the concat buffer, conv2 reads
            // it there and writes the second half (gpu.rs binds that buffer read-write twice).
            let s1 = ConvBn::shape(&def.conv1, &conv_in.y);
            let mid = s1.cout;
            let cat = b.alloc(&[s1.n, 2 * mid, s1.oh(), s1.ow()], "concat");
            let conv1 = ConvBn::forward_eval(b, &def.conv1, (&conv_in.y, 0), (&cat, 0));
            let conv2 = ConvBn::forward_eval(b, &def.conv2, (&cat, 0), (&cat, mid));
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
            ConvBn::forward_into(b, &def.conv_out, &cat, Some((&y, BnIo { residual: true, ..BnIo::whole(def.conv_out.cout) })), Some(&shortcut))
        };
        Block { conv_in, conv1, conv2, conv_out, skip, y }
    }

    /// The block's input gradient, as its main path's and its skip's terms (the consumer
    /// sums them as it reads).
    fn backward(&self, b: &mut Builder, dy: &Grad) -> Grad {
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
enum Grad {
    One(Tensor),
    Sum(Tensor, Tensor),
}

/// Global average pool -> fc -> BatchNorm1d + ReLU -> dropout -> linear.
struct Head {
    pool: PoolShape,
    pooled: Tensor,
    fc_out: Tensor,
    bn: BnShape,
    bn_params: BnParams,
    saved: Option<Tensor>,
    act: Tensor,
    dropout: Option<Arc<wgpu::Buffer>>,
    dropped: Tensor,
    logits: Tensor,
}

impl Head {
    fn forward(b: &mut Builder, x: &Tensor, dropout: f32) -> Head {
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
                let bn_eval = conv::BnEval { mean: running.0, var: running.1, gamma: affine.0, beta: affine.1, relu: true };
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

    fn backward(&self, b: &mut Builder, dlogits: &Tensor) -> Tensor {
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

/// A recorded forward (and in training, backward) pass for one batch size and input size.
pub struct Graph {
    pub mode: Mode,
    pub input: Tensor,
    pub logits: Tensor,
    /// Eval graphs: launches that only re-lay out weights (Launch::weight_layout), to run
    /// before the forward whenever the weights have changed; training graphs keep them in
    /// `forward`, since every step changes the weights.
    pub prepare: Vec<Launch>,
    pub forward: Vec<Launch>,
    pub backward: Vec<Launch>,
    /// Gradient of the loss with respect to the logits (training graphs).
    pub dlogits: Option<Tensor>,
    dropout: Option<Arc<wgpu::Buffer>>,
}

impl Graph {
    /// Build the graph of `state`'s network for `batch` images of `size` (height, width).
    pub fn build(gpu: &Gpu, state: &DeviceState, mode: Mode, batch: usize, size: (usize, usize), dropout: f32) -> Result<Graph> {
        let cfg = &state.arch.config;
        if batch == 0 || size.0 == 0 || size.1 == 0 {
            bail!("batch and input size must be positive");
        }
        if mode == Mode::Train && batch < 2 {
            let sizes = state.arch.feature_sizes(size.0.min(size.1));
            if sizes.last() == Some(&1) {
                bail!("batch 1 cannot train at {}x{}: the last stage's maps are 1x1, so BatchNorm would see one value per channel; use a batch of at least 2", size.0, size.1);
            }
        }
        let mut b = Builder { gpu, state, mode, forward: Vec::new(), backward: Vec::new() };
        let input = b.alloc(&[batch, cfg.in_channels, size.0, size.1], "input");
        let arch = &state.arch;
        let stem0 = ConvBn::forward(&mut b, &arch.stem[0], &input);
        // The first block's input gradient comes back as two terms, which stem1's BN sums.
        let stem1 = match mode {
            Mode::Train => {
                let def = &arch.stem[1];
                let stem_out = b.alloc(&ConvBn::shape(def, &stem0.y).output_shape(), &def.bn);
                ConvBn::forward_into(&mut b, def, &stem0.y, Some((&stem_out, BnIo { dy_sum: true, ..BnIo::whole(def.cout) })), None)
            }
            Mode::Eval => ConvBn::forward(&mut b, &arch.stem[1], &stem0.y),
        };
        let mut blocks: Vec<Block> = Vec::new();
        for def in &arch.blocks {
            let x = blocks.last().map_or(stem1.y.clone(), |blk| blk.y.clone());
            let m = b.mark();
            blocks.push(Block::forward(&mut b, def, &x));
            b.tag(m, &def.name);
        }
        let conv_last = ConvBn::forward(&mut b, &arch.conv_last, &blocks.last().unwrap().y);
        let m = b.mark();
        let head = Head::forward(&mut b, &conv_last.y, dropout);
        b.tag(m, "head");
        let mut dlogits = None;
        if mode == Mode::Train {
            let d = b.alloc(&head.logits.shape, "dlogits");
            let m = b.mark();
            let mut dy = head.backward(&mut b, &d);
            b.tag(m, "head");
            dy = conv_last.backward(&mut b, &dy, None, true).unwrap();
            let mut grad = Grad::One(dy);
            for (blk, def) in blocks.iter().zip(&arch.blocks).rev() {
                let m = b.mark();
                grad = blk.backward(&mut b, &grad);
                b.tag(m, &def.name);
            }
            let Grad::Sum(main, skip) = grad else { bail!("{:?}: a network without SPG blocks", cfg.variant) };
            let dy = stem1.backward(&mut b, &main, Some(&skip), true).unwrap();
            stem0.backward(&mut b, &dy, None, false); // the image needs no gradient
            dlogits = Some(d);
        }
        // Problems too big for the adapter (grid or binding limits) surface here, before any step.
        gpu.check().map_err(|e| anyhow!("batch {batch} at {}x{}: {e}", size.0, size.1))?;
        let (prepare, forward) = match mode {
            Mode::Eval => b.forward.into_iter().partition(|l| l.weight_layout),
            Mode::Train => (Vec::new(), b.forward),
        };
        Ok(Graph {
            mode,
            input,
            logits: head.logits.clone(),
            prepare,
            forward,
            backward: b.backward,
            dlogits,
            dropout: head.dropout.clone(),
        })
    }

    /// Dropout draws a new mask each step from this seed.
    pub fn set_dropout_seed(&self, gpu: &Gpu, seed: u32) {
        if let Some(p) = &self.dropout {
            elementwise::set_dropout_seed(gpu, p, seed);
        }
    }
}

/// Hyper-parameters of the optimiser and loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainOptions {
    pub momentum: f32,
    pub weight_decay: f32,
    /// Decay BN gamma/beta too (the CIFAR notebook); the ImageNet recipe decays weights only.
    pub decay_bn: bool,
    pub label_smoothing: f32,
    pub dropout: f32,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions { momentum: 0.9, weight_decay: 5e-4, decay_bn: true, label_smoothing: 0.1, dropout: 0.0 }
    }
}

/// A training step: forward, loss, backward and SGD in one command buffer.
pub struct Trainer {
    pub state: DeviceState,
    pub graph: Graph,
    labels: Tensor,
    metrics: Tensor,
    loss: Vec<Launch>,
    sgd: Vec<Launch>,
    batch: usize,
}

impl Trainer {
    pub fn new(gpu: &Gpu, ck: &Checkpoint, batch: usize, size: (usize, usize), opts: TrainOptions) -> Result<Trainer> {
        let state = DeviceState::new(gpu, ck)?;
        let graph = Graph::build(gpu, &state, Mode::Train, batch, size, opts.dropout)?;
        let labels = gpu.zeros(&[batch], "labels");
        let per_sample = gpu.zeros(&[2, batch], "per_sample");
        let metrics = gpu.zeros(&[2], "metrics");
        let dlogits = graph.dlogits.as_ref().unwrap();
        let loss = loss::softmax_xent(gpu, opts.label_smoothing, &graph.logits, &labels, dlogits, &per_sample, &metrics);
        // Two SGD launches over the arena: weights, then BN affine (decayed or not).
        let w = state.weights_len;
        let split = |t: &Tensor, from: usize, to: usize| t.slice(from, to - from);
        let total = state.params.len();
        let align = (gpu.limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
        let w_end = w.div_ceil(align) * align;
        let mut sgd = sgd::step(gpu, &split(&state.grads, 0, w), &split(&state.params, 0, w), &split(&state.velocity, 0, w), 0.0, opts.momentum, opts.weight_decay);
        if w_end < total {
            let wd = if opts.decay_bn { opts.weight_decay } else { 0.0 };
            sgd.extend(sgd::step(gpu, &split(&state.grads, w_end, total), &split(&state.params, w_end, total), &split(&state.velocity, w_end, total), 0.0, opts.momentum, wd));
        }
        Ok(Trainer { state, graph, labels, metrics, loss, sgd, batch })
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Upload a batch and submit one full training step with learning rate `lr`.
    /// Returns at once; `metrics` waits for it.
    pub fn step(&self, gpu: &Gpu, input: &[f32], labels: &[u32], lr: f32, seed: u32) -> Result<()> {
        if input.len() != self.graph.input.len() || labels.len() != self.batch {
            bail!("training step: expected {} inputs and {} labels, got {} and {}", self.graph.input.len(), self.batch, input.len(), labels.len());
        }
        let classes = self.state.arch.config.num_classes as u32;
        if let Some(l) = labels.iter().find(|&&l| l >= classes) {
            bail!("label {l} is out of range for {classes} classes");
        }
        gpu.write(&self.graph.input, input);
        gpu.queue.write_buffer(&self.labels.buffer, 0, bytemuck::cast_slice(labels));
        for l in &self.sgd {
            gpu.queue.write_buffer(&l.params, sgd::LR_OFFSET, bytemuck::bytes_of(&lr));
        }
        self.graph.set_dropout_seed(gpu, seed);
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for part in [&self.graph.forward, &self.loss, &self.graph.backward, &self.sgd] {
                Gpu::record(&mut pass, part);
            }
        }
        gpu.queue.submit([enc.finish()]);
        Ok(())
    }

    /// (mean loss, number correct) of the last step; waits for the GPU.
    pub fn metrics(&self, gpu: &Gpu) -> Result<(f32, f32)> {
        let m = gpu.read(&self.metrics)?;
        Ok((m[0], m[1]))
    }

    /// Every launch of a step, in order (for per-layer timing).
    pub fn launches(&self) -> impl Iterator<Item = &Launch> {
        self.graph.forward.iter().chain(&self.loss).chain(&self.graph.backward).chain(&self.sgd)
    }
}

/// Forward passes in eval mode (running statistics, no dropout), with the loss per sample.
/// Whoever changes the weights it reads (a training step, an EMA update) calls
/// `weights_changed` before its next pass, which then re-lays them out (Graph::prepare).
pub struct Evaluator {
    pub graph: Graph,
    labels: Tensor,
    per_sample: Tensor,
    loss: Vec<Launch>,
    batch: usize,
    stale: std::cell::Cell<bool>,
}

impl Evaluator {
    pub fn new(gpu: &Gpu, state: &DeviceState, batch: usize, size: (usize, usize), label_smoothing: f32) -> Result<Evaluator> {
        let graph = Graph::build(gpu, state, Mode::Eval, batch, size, 0.0)?;
        let labels = gpu.zeros(&[batch], "labels");
        let per_sample = gpu.zeros(&[2, batch], "per_sample");
        let dlogits = gpu.zeros(&graph.logits.shape, "unused_dlogits");
        let metrics = gpu.zeros(&[2], "metrics");
        let loss = loss::softmax_xent(gpu, label_smoothing, &graph.logits, &labels, &dlogits, &per_sample, &metrics);
        Ok(Evaluator { graph, labels, per_sample, loss, batch, stale: std::cell::Cell::new(true) })
    }

    /// The weights were written since the last pass: the next one re-lays them out first.
    pub fn weights_changed(&self) {
        self.stale.set(true);
    }

    /// Runs Graph::prepare when the weights changed since it last ran.
    fn prepare(&self, gpu: &Gpu) {
        if self.stale.replace(false) {
            gpu.submit(&self.graph.prepare);
        }
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Logits [batch, classes] of a full batch of inputs.
    pub fn logits(&self, gpu: &Gpu, input: &[f32]) -> Result<Vec<f32>> {
        if input.len() != self.graph.input.len() {
            bail!("evaluation: expected {} input values, got {}", self.graph.input.len(), input.len());
        }
        gpu.write(&self.graph.input, input);
        self.prepare(gpu);
        gpu.submit(&self.graph.forward);
        gpu.read(&self.graph.logits)
    }

    /// (loss, 1 if correct else 0) per sample, and the logits, of a full batch.
    pub fn evaluate(&self, gpu: &Gpu, input: &[f32], labels: &[u32]) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        if input.len() != self.graph.input.len() || labels.len() != self.batch {
            bail!("evaluation: expected {} inputs and {} labels", self.graph.input.len(), self.batch);
        }
        gpu.write(&self.graph.input, input);
        gpu.queue.write_buffer(&self.labels.buffer, 0, bytemuck::cast_slice(labels));
        self.prepare(gpu);
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            Gpu::record(&mut pass, &self.graph.forward);
            Gpu::record(&mut pass, &self.loss);
        }
        gpu.queue.submit([enc.finish()]);
        let per = gpu.read(&self.per_sample)?;
        let logits = gpu.read(&self.graph.logits)?;
        Ok((per[..self.batch].to_vec(), per[self.batch..].to_vec(), logits))
    }
}
