//! SPGNet's architecture as data: variants, layers and the tensors they own, with the
//! released PyTorch names and layouts and the official initialisation. No GPU here.

use anyhow::{bail, Result};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

pub const BLOCKS_PER_STAGE: [usize; 3] = [4, 8, 3];
pub const HEAD_WIDTH: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    S2P6,
    S2P7,
    S2P8,
    S2P9,
}

impl Variant {
    pub const ALL: [Variant; 4] = [Variant::S2P6, Variant::S2P7, Variant::S2P8, Variant::S2P9];

    pub fn name(self) -> &'static str {
        match self {
            Variant::S2P6 => "s2p6",
            Variant::S2P7 => "s2p7",
            Variant::S2P8 => "s2p8",
            Variant::S2P9 => "s2p9",
        }
    }

    pub fn parse(s: &str) -> Result<Variant> {
        match Self::ALL.into_iter().find(|v| v.name() == s.to_ascii_lowercase()) {
            Some(v) => Ok(v),
            None => bail!("unknown SPGNet version '{s}': use s2p6, s2p7, s2p8 or s2p9"),
        }
    }

    /// Parallel groups G of the 3x3 convs; every width below is a multiple of it.
    pub fn groups(self) -> usize {
        match self {
            Variant::S2P6 => 6,
            Variant::S2P7 => 7,
            Variant::S2P8 => 8,
            Variant::S2P9 => 9,
        }
    }

    /// Stem widths (c0, c1) = (2G, 4G); stage widths (16G, 32G, 64G).
    pub fn stem_widths(self) -> [usize; 2] {
        [2 * self.groups(), 4 * self.groups()]
    }
    pub fn stage_widths(self) -> [usize; 3] {
        let g = self.groups();
        [16 * g, 32 * g, 64 * g]
    }

    /// The variant whose first stem conv has `c0` output channels.
    pub fn from_stem_width(c0: usize) -> Option<Variant> {
        Self::ALL.into_iter().find(|v| v.stem_widths()[0] == c0)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub variant: Variant,
    pub in_channels: usize,
    pub num_classes: usize,
    /// Dropout before the final linear layer (0 disables it).
    pub dropout: f32,
}

impl ModelConfig {
    pub fn new(variant: Variant, in_channels: usize, num_classes: usize) -> ModelConfig {
        ModelConfig { variant, in_channels, num_classes, dropout: 0.0 }
    }
}

/// ConvX: conv (no bias) -> BatchNorm -> optional ReLU. `weight` and `bn` are tensor-name
/// prefixes (they differ for the skip path, whose BN is a sibling of its conv).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvBnDef {
    pub weight: String,
    pub bn: String,
    pub cin: usize,
    pub cout: usize,
    pub groups: usize,
    pub k: usize,
    pub stride: usize,
    pub relu: bool,
}

impl ConvBnDef {
    fn convx(prefix: &str, cin: usize, cout: usize, groups: usize, k: usize, stride: usize, relu: bool) -> Self {
        ConvBnDef { weight: format!("{prefix}.conv.weight"), bn: format!("{prefix}.bn"), cin, cout, groups, k, stride, relu }
    }
    pub fn out_size(&self, size: usize) -> usize {
        (size + 2 * (self.k / 2) - self.k) / self.stride + 1
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Skip {
    Identity,
    /// stride 2, cin != cout: depthwise 3x3 stride 2 -> BN -> 1x1 -> BN, no ReLU inside.
    Downsample(ConvBnDef, ConvBnDef),
    /// stride 1, cin != cout: 1x1 -> BN (no SPGNet config uses it).
    Project(ConvBnDef),
}

/// SPG block: conv_in (1x1, half width) -> conv1 (3x3 grouped, stride) -> conv2 (3x3 grouped),
/// conv_out(concat(conv1, conv2)) + skip, then ReLU.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockDef {
    pub name: String,
    pub cin: usize,
    pub cout: usize,
    pub stride: usize,
    pub conv_in: ConvBnDef,
    pub conv1: ConvBnDef,
    pub conv2: ConvBnDef,
    pub conv_out: ConvBnDef,
    pub skip: Skip,
}

impl BlockDef {
    fn new(index: usize, cin: usize, cout: usize, stride: usize, groups: usize) -> BlockDef {
        let name = format!("layers.{index}");
        let mid = cout / 2;
        let skip = if stride == 1 && cin == cout {
            Skip::Identity
        } else if stride == 1 {
            Skip::Project(ConvBnDef {
                weight: format!("{name}.skip.0.weight"),
                bn: format!("{name}.skip.1"),
                cin,
                cout,
                groups: 1,
                k: 1,
                stride: 1,
                relu: false,
            })
        } else {
            Skip::Downsample(
                ConvBnDef {
                    weight: format!("{name}.skip.0.weight"),
                    bn: format!("{name}.skip.1"),
                    cin,
                    cout: cin,
                    groups: cin,
                    k: 3,
                    stride,
                    relu: false,
                },
                ConvBnDef {
                    weight: format!("{name}.skip.2.weight"),
                    bn: format!("{name}.skip.3"),
                    cin,
                    cout,
                    groups: 1,
                    k: 1,
                    stride: 1,
                    relu: false,
                },
            )
        };
        BlockDef {
            conv_in: ConvBnDef::convx(&format!("{name}.conv_in"), cin, mid, 1, 1, 1, true),
            conv1: ConvBnDef::convx(&format!("{name}.conv1"), mid, mid, groups, 3, stride, true),
            conv2: ConvBnDef::convx(&format!("{name}.conv2"), mid, mid, groups, 3, 1, true),
            conv_out: ConvBnDef::convx(&format!("{name}.conv_out"), cout, cout, 1, 1, 1, false),
            name,
            cin,
            cout,
            stride,
            skip,
        }
    }

    /// Every ConvX of the block in forward order.
    pub fn convs(&self) -> Vec<&ConvBnDef> {
        let mut v = vec![&self.conv_in, &self.conv1, &self.conv2, &self.conv_out];
        match &self.skip {
            Skip::Identity => {}
            Skip::Downsample(a, b) => v.extend([a, b]),
            Skip::Project(a) => v.push(a),
        }
        v
    }
}

/// The whole network: stem, stages of SPG blocks, conv_last, head (pool, fc, bn, relu, dropout, linear).
#[derive(Clone, Debug, PartialEq)]
pub struct Architecture {
    pub config: ModelConfig,
    pub stem: [ConvBnDef; 2],
    pub blocks: Vec<BlockDef>,
    pub conv_last: ConvBnDef,
}

/// How a tensor starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    Normal { std: f32 },
    Constant(f32),
}

#[derive(Clone, Debug, PartialEq)]
pub struct TensorDef {
    pub name: String,
    pub shape: Vec<usize>,
    /// Trained by SGD (else a BN running statistic).
    pub trainable: bool,
    /// A conv or linear weight (the ImageNet recipe decays only these).
    pub is_weight: bool,
    pub init: Init,
}

impl TensorDef {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Architecture {
    pub fn new(config: ModelConfig) -> Architecture {
        let v = config.variant;
        let [c0, c1] = v.stem_widths();
        let stem = [
            ConvBnDef::convx("first_conv.0", config.in_channels, c0, 1, 3, 2, true),
            ConvBnDef::convx("first_conv.1", c0, c1, 1, 3, 2, true),
        ];
        let mut blocks = Vec::new();
        let mut cin = c1;
        for (&cout, &count) in v.stage_widths().iter().zip(&BLOCKS_PER_STAGE) {
            for i in 0..count {
                blocks.push(BlockDef::new(blocks.len(), cin, cout, if i == 0 { 2 } else { 1 }, v.groups()));
                cin = cout;
            }
        }
        let conv_last = ConvBnDef::convx("conv_last", cin, HEAD_WIDTH, 1, 1, 1, true);
        Architecture { config, stem, blocks, conv_last }
    }

    /// Every ConvX in forward order.
    pub fn convs(&self) -> Vec<&ConvBnDef> {
        let mut v: Vec<&ConvBnDef> = self.stem.iter().collect();
        for b in &self.blocks {
            v.extend(b.convs());
        }
        v.push(&self.conv_last);
        v
    }

    /// Every state tensor: trainable ones and BN running statistics, in state-dict order.
    pub fn tensors(&self) -> Vec<TensorDef> {
        let mut out = Vec::new();
        let weight = |name: String, shape: Vec<usize>, std: f32| TensorDef {
            name,
            shape,
            trainable: true,
            is_weight: true,
            init: Init::Normal { std },
        };
        let bn = |out: &mut Vec<TensorDef>, prefix: &str, c: usize| {
            for (field, trainable, value) in
                [("weight", true, 1.0), ("bias", true, 1e-4), ("running_mean", false, 0.0), ("running_var", false, 1.0)]
            {
                out.push(TensorDef {
                    name: format!("{prefix}.{field}"),
                    shape: vec![c],
                    trainable,
                    is_weight: false,
                    init: Init::Constant(value),
                });
            }
        };
        for c in self.convs() {
            let fan_in = c.cin / c.groups;
            // Released init: std = 1 / (fan-in per group); the stem uses 0.01.
            let std = if c.weight.starts_with("first_conv") { 0.01 } else { 1.0 / fan_in as f32 };
            out.push(weight(c.weight.clone(), vec![c.cout, fan_in, c.k, c.k], std));
            bn(&mut out, &c.bn, c.cout);
        }
        out.push(weight("fc.weight".into(), vec![HEAD_WIDTH, HEAD_WIDTH], 0.01));
        bn(&mut out, "bn", HEAD_WIDTH);
        out.push(weight("linear.weight".into(), vec![self.config.num_classes, HEAD_WIDTH], 0.01));
        out
    }

    /// Number of trainable values (conv and linear weights, BN gamma and beta).
    pub fn trainable_count(&self) -> usize {
        self.tensors().iter().filter(|t| t.trainable).map(|t| t.len()).sum()
    }

    /// Number of values in the state dict: trainable ones plus BN running statistics.
    pub fn state_count(&self) -> usize {
        self.tensors().iter().map(|t| t.len()).sum()
    }

    /// Feature-map side after the stem and each stage for a given input side.
    pub fn feature_sizes(&self, size: usize) -> Vec<usize> {
        let mut s = size;
        let mut out = Vec::new();
        for c in &self.stem {
            s = c.out_size(s);
            out.push(s);
        }
        for b in &self.blocks {
            if b.stride != 1 {
                s = b.conv1.out_size(s);
                out.push(s);
            }
        }
        out
    }

    /// Initial values of every tensor (official init), reproducible from `seed`.
    pub fn init(&self, seed: u64) -> Vec<(TensorDef, Vec<f32>)> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        self.tensors()
            .into_iter()
            .map(|t| {
                let values = match t.init {
                    Init::Constant(c) => vec![c; t.len()],
                    Init::Normal { std } => {
                        let d = Normal::new(0.0f32, std).expect("positive std");
                        (0..t.len()).map(|_| d.sample(&mut rng)).collect()
                    }
                };
                (t, values)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_counts_of_every_variant() {
        // The spec's 3,287,500 for s2p6 (10 classes, 3 channels) counts every state value: it is
        // what the golden weights file holds. Of it, 3,266,004 are trainable (conv and linear
        // weights, BN gamma and beta) and 21,496 are BN running statistics. The trainable
        // counts below were read off the independent Paddle reference (sum of its parameters).
        let arch = |v, ch, classes| Architecture::new(ModelConfig::new(v, ch, classes));
        assert_eq!(arch(Variant::S2P6, 3, 10).state_count(), 3_287_500);
        let s2p6 = arch(Variant::S2P6, 3, 10);
        let (params, macs) = crate::summary::totals(&s2p6, 32);
        assert_eq!(params, s2p6.trainable_count(), "the summary counts what the model holds");
        // The spec: about 7.0 M multiply-adds per 32x32 image, 294 M per 224x224 image.
        assert!((macs as f64 / 1e6 - 7.0).abs() < 0.1, "{macs} multiply-adds at 32x32");
        let (_, macs224) = crate::summary::totals(&s2p6, 224);
        assert!((macs224 as f64 / 1e6 - 294.0).abs() < 3.0, "{macs224} multiply-adds at 224x224");
        for (v, ch, classes, trainable) in [
            (Variant::S2P6, 3, 10, 3_266_004),
            (Variant::S2P6, 1, 10, 3_265_788),
            (Variant::S2P6, 3, 100, 3_358_164),
            (Variant::S2P7, 3, 10, 3_868_218),
            (Variant::S2P7, 1, 10, 3_867_966),
            (Variant::S2P8, 3, 10, 4_537_584),
            (Variant::S2P8, 3, 100, 4_629_744),
            (Variant::S2P9, 3, 10, 5_274_102),
            (Variant::S2P9, 1, 10, 5_273_778),
        ] {
            assert_eq!(arch(v, ch, classes).trainable_count(), trainable, "{v:?} {ch} channels {classes} classes");
        }
    }

    #[test]
    fn names_follow_the_released_state_dict() {
        let a = Architecture::new(ModelConfig::new(Variant::S2P6, 3, 10));
        let names: Vec<String> = a.tensors().into_iter().map(|t| t.name).collect();
        for n in [
            "first_conv.0.conv.weight",
            "first_conv.1.bn.running_var",
            "layers.0.skip.0.weight",
            "layers.0.skip.3.bias",
            "layers.14.conv_out.conv.weight",
            "conv_last.bn.weight",
            "fc.weight",
            "bn.running_mean",
            "linear.weight",
        ] {
            assert!(names.iter().any(|x| x == n), "missing {n}");
        }
        assert!(!names.iter().any(|x| x == "layers.1.skip.0.weight"), "identity blocks have no skip tensors");
        assert_eq!(a.blocks.len(), 15);
        assert_eq!(a.feature_sizes(32), vec![16, 8, 4, 2, 1]);
        assert_eq!(a.feature_sizes(28), vec![14, 7, 4, 2, 1]);
        assert_eq!(a.feature_sizes(224), vec![112, 56, 28, 14, 7]);
    }

    #[test]
    fn init_is_seeded_and_matches_the_released_std() {
        let a = Architecture::new(ModelConfig::new(Variant::S2P6, 3, 10));
        let (x, y) = (a.init(5), a.init(5));
        assert_eq!(x, y);
        let find = |name: &str| x.iter().find(|(t, _)| t.name == name).unwrap().1.clone();
        let std = |v: &[f32]| (v.iter().map(|a| (*a as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        assert!((std(&find("layers.3.conv_in.conv.weight")) - 1.0 / 96.0).abs() < 1e-3);
        assert!((std(&find("first_conv.1.conv.weight")) - 0.01).abs() < 1e-3);
        assert!((std(&find("layers.0.skip.0.weight")) - 1.0).abs() < 0.1);
        assert_eq!(find("layers.0.conv1.bn.bias")[0], 1e-4);
        assert_eq!(find("bn.running_var")[5], 1.0);
    }
}
