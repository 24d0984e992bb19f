//! ONNX export: a trained model as a standard ONNX graph (opset 17) that ONNX Runtime, TensorRT
//! or OpenVINO run as is. Grouped `Conv` (with `group`), `BatchNormalization` (or folded into
//! the convs' weights and a bias), `Relu`, `Concat`, `Add`, `GlobalAveragePool`, `Flatten`,
//! `Gemm`; the input's size, normalisation and the class names go in `metadata_props`.

pub mod proto;

use crate::classify::Model;
use crate::model::{Architecture, ConvBnDef, Skip};
use anyhow::{anyhow, Result};
use prost::Message;
use proto::*;

/// The operator set the graph is written for (every op it uses is unchanged since opset 15).
pub const OPSET: i64 = 17;
/// ONNX IR version 8: what opset 17 ships with, read by every runtime since ONNX Runtime 1.12.
pub const IR_VERSION: i64 = 8;
/// BatchNorm's epsilon (spgnet's and PyTorch's).
const BN_EPS: f64 = 1e-5;
pub const INPUT: &str = "input";
pub const OUTPUT: &str = "logits";

/// The batch dimension of the exported graph's input and output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batch {
    /// A named dimension ("batch"): any batch size at run time.
    Dynamic,
    Fixed(usize),
}

impl Batch {
    /// "dynamic" or a positive number.
    pub fn parse(s: &str) -> Result<Batch> {
        match s {
            "dynamic" => Ok(Batch::Dynamic),
            _ => match s.parse::<usize>() {
                Ok(n) if n > 0 => Ok(Batch::Fixed(n)),
                _ => Err(anyhow!("--batch '{s}': use 'dynamic' or a positive number of images")),
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportOptions {
    pub batch: Batch,
    /// Fold every BatchNorm into the weights (and a bias) of the conv or linear layer before it.
    pub fold_bn: bool,
}

/// The model as a serialized ONNX ModelProto. Input `input` [batch, channels, size, size] in
/// NCHW, already normalised ((pixel / 255 - mean) / std); output `logits` [batch, classes].
pub fn export(model: &Model, options: ExportOptions) -> Result<Vec<u8>> {
    let ck = &model.ck;
    let arch = Architecture::new(ck.config.clone());
    let mut g = GraphBuilder { model, fold_bn: options.fold_bn, nodes: Vec::new(), initializers: Vec::new() };
    let mut x = INPUT.to_string();
    for c in &arch.stem {
        x = g.conv_bn(c, &x)?;
    }
    for b in &arch.blocks {
        let a = g.conv_bn(&b.conv_in, &x)?;
        let o1 = g.conv_bn(&b.conv1, &a)?;
        let o2 = g.conv_bn(&b.conv2, &o1)?;
        let cat = g.node("Concat", &[&o1, &o2], &format!("{}.concat", b.name), vec![int("axis", 1)]);
        let out = g.conv_bn(&b.conv_out, &cat)?;
        let skip = match &b.skip {
            Skip::Identity => x.clone(),
            Skip::Downsample(dw, pw) => {
                let s = g.conv_bn(dw, &x)?;
                g.conv_bn(pw, &s)?
            }
            Skip::Project(p) => g.conv_bn(p, &x)?,
        };
        let sum = g.node("Add", &[&out, &skip], &format!("{}.add", b.name), vec![]);
        x = g.node("Relu", &[&sum], &format!("{}.relu", b.name), vec![]);
    }
    x = g.conv_bn(&arch.conv_last, &x)?;
    let pooled = g.node("GlobalAveragePool", &[&x], "pool", vec![]);
    let flat = g.node("Flatten", &[&pooled], "flatten", vec![int("axis", 1)]);
    let fc = g.linear("fc.weight", Some("bn"), &flat)?;
    let relu = g.node("Relu", &[&fc], "head.relu", vec![]);
    // Dropout is the identity at inference: no node.
    let logits = g.linear("linear.weight", None, &relu)?;
    g.rename_output(&logits, OUTPUT);

    let batch = match options.batch {
        Batch::Dynamic => Dim::Param("batch"),
        Batch::Fixed(n) => Dim::Value(n),
    };
    let (c, s, classes) = (ck.config.in_channels, model.size, ck.config.num_classes);
    let graph = GraphProto {
        node: g.nodes,
        name: Some(format!("spgnet-{}", ck.config.variant.name())),
        initializer: g.initializers,
        doc_string: None,
        input: vec![value_info(INPUT, &[batch, Dim::Value(c), Dim::Value(s), Dim::Value(s)])],
        output: vec![value_info(OUTPUT, &[batch, Dim::Value(classes)])],
    };
    let model_proto = ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
        producer_name: Some("spgnet".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        domain: None,
        model_version: Some(1),
        doc_string: Some(format!(
            "SPGNet {} ({} input channels, {} classes). Input '{INPUT}': [batch, {c}, {s}, {s}] NCHW float32, \
             (pixel / 255 - mean) / std per channel (metadata 'mean', 'std'); output '{OUTPUT}': [batch, {classes}].",
            ck.config.variant.name(),
            c,
            classes
        )),
        graph: Some(graph),
        metadata_props: metadata(model, options.batch),
    };
    Ok(model_proto.encode_to_vec())
}

/// What a user needs to feed the model and read its output, as JSON strings.
fn metadata(model: &Model, batch: Batch) -> Vec<StringStringEntryProto> {
    let ck = &model.ck;
    let (c, s) = (ck.config.in_channels, model.size);
    let n = match batch {
        Batch::Dynamic => "\"batch\"".to_string(),
        Batch::Fixed(n) => n.to_string(),
    };
    // Serialized from the typed values, so f32s print as written ("0.286", not its f64 widening);
    // lists of strings and floats always serialize.
    let mut props = vec![
        ("classes", serde_json::to_string(&model.classes).unwrap_or_default()),
        ("mean", serde_json::to_string(&model.pre.mean).unwrap_or_default()),
        ("std", serde_json::to_string(&model.pre.std).unwrap_or_default()),
        ("input_name", INPUT.to_string()),
        ("input_shape", format!("[{n},{c},{s},{s}]")),
        ("output_name", OUTPUT.to_string()),
        ("input_size", model.size.to_string()),
        ("input_channels", ck.config.in_channels.to_string()),
        ("input_layout", "NCHW".to_string()),
        ("input_scale", "pixel / 255, then (x - mean) / std".to_string()),
        ("spgnet.version", ck.config.variant.name().to_string()),
    ];
    if let Some(d) = &ck.meta.dataset {
        props.push(("dataset", d.clone()));
    }
    props.into_iter().map(|(k, v)| StringStringEntryProto { key: Some(k.into()), value: Some(v) }).collect()
}

struct GraphBuilder<'a> {
    model: &'a Model,
    fold_bn: bool,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl GraphBuilder<'_> {
    fn tensor(&self, name: &str) -> Result<&[f32]> {
        self.model.ck.tensors.get(name).map(Vec::as_slice).ok_or_else(|| anyhow!("the checkpoint has no tensor '{name}'"))
    }

    fn initializer(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), values.len());
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(FLOAT),
            name: Some(name.to_string()),
            raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        });
        name.to_string()
    }

    /// Appends a node whose single output (and name) is `output`; returns `output`.
    fn node(&mut self, op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> String {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: Some(output.to_string()),
            op_type: Some(op.to_string()),
            attribute,
        });
        output.to_string()
    }

    /// The last node's output becomes the graph's output name.
    fn rename_output(&mut self, from: &str, to: &str) {
        let last = self.nodes.last_mut().expect("a graph with nodes");
        debug_assert_eq!(last.output[0], from);
        last.output[0] = to.to_string();
    }

    /// BN's per-channel affine map in eval mode: y = scale * x + shift.
    fn bn_affine(&self, bn: &str) -> Result<(Vec<f64>, Vec<f64>)> {
        let [gamma, beta, mean, var] = ["weight", "bias", "running_mean", "running_var"].map(|f| self.tensor(&format!("{bn}.{f}")));
        let (gamma, beta, mean, var) = (gamma?, beta?, mean?, var?);
        let scale: Vec<f64> = gamma.iter().zip(var).map(|(&g, &v)| g as f64 / (v as f64 + BN_EPS).sqrt()).collect();
        let shift = beta.iter().zip(mean).zip(&scale).map(|((&b, &m), &s)| b as f64 - m as f64 * s).collect();
        Ok((scale, shift))
    }

    /// A BatchNormalization node with the checkpoint's four tensors.
    fn batch_norm(&mut self, bn: &str, input: &str) -> Result<String> {
        let mut inputs = vec![input.to_string()];
        for f in ["weight", "bias", "running_mean", "running_var"] {
            let name = format!("{bn}.{f}");
            let values = self.tensor(&name)?.to_vec();
            inputs.push(self.initializer(&name, &[values.len()], &values));
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(self.node("BatchNormalization", &refs, bn, vec![float("epsilon", BN_EPS as f32)]))
    }

    /// Rows of a [rows, per_row] weight scaled by `scale` (BN folded into the layer before it).
    fn fold(&self, weight: &[f32], scale: &[f64]) -> Vec<f32> {
        let per_row = weight.len() / scale.len();
        weight.iter().enumerate().map(|(i, &w)| (w as f64 * scale[i / per_row]) as f32).collect()
    }

    /// ConvX: Conv (k x k, stride, padding k/2, groups) -> BatchNorm -> optional Relu.
    fn conv_bn(&mut self, c: &ConvBnDef, input: &str) -> Result<String> {
        let dims = [c.cout, c.cin / c.groups, c.k, c.k];
        let pad = (c.k / 2) as i64;
        let attrs = vec![
            ints("kernel_shape", &[c.k as i64, c.k as i64]),
            ints("strides", &[c.stride as i64, c.stride as i64]),
            ints("pads", &[pad, pad, pad, pad]),
            ints("dilations", &[1, 1]),
            int("group", c.groups as i64),
        ];
        let weight = self.tensor(&c.weight)?.to_vec();
        let conv_out = c.weight.trim_end_matches(".weight");
        let normed = if self.fold_bn {
            let (scale, shift) = self.bn_affine(&c.bn)?;
            let w = self.initializer(&c.weight, &dims, &self.fold(&weight, &scale));
            let b = self.initializer(&format!("{conv_out}.bias"), &[c.cout], &shift.iter().map(|&v| v as f32).collect::<Vec<_>>());
            self.node("Conv", &[input, &w, &b], conv_out, attrs)
        } else {
            let w = self.initializer(&c.weight, &dims, &weight);
            let y = self.node("Conv", &[input, &w], conv_out, attrs);
            self.batch_norm(&c.bn, &y)?
        };
        Ok(if c.relu { self.node("Relu", &[&normed], &format!("{}.relu", c.bn), vec![]) } else { normed })
    }

    /// Gemm with the [out, in] weight (transB), followed by BatchNorm when `bn` is given.
    fn linear(&mut self, weight: &str, bn: Option<&str>, input: &str) -> Result<String> {
        let values = self.tensor(weight)?.to_vec();
        let out = values.len() / crate::model::HEAD_WIDTH;
        let dims = [out, crate::model::HEAD_WIDTH];
        let name = weight.trim_end_matches(".weight");
        let attrs = vec![int("transB", 1)];
        match bn {
            Some(bn) if self.fold_bn => {
                let (scale, shift) = self.bn_affine(bn)?;
                let w = self.initializer(weight, &dims, &self.fold(&values, &scale));
                let b = self.initializer(&format!("{name}.bias"), &[out], &shift.iter().map(|&v| v as f32).collect::<Vec<_>>());
                Ok(self.node("Gemm", &[input, &w, &b], name, attrs))
            }
            _ => {
                let w = self.initializer(weight, &dims, &values);
                let y = self.node("Gemm", &[input, &w], name, attrs);
                match bn {
                    Some(bn) => self.batch_norm(bn, &y),
                    None => Ok(y),
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Dim {
    Value(usize),
    Param(&'static str),
}

fn value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    use tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match *d {
                Dim::Value(v) => Value::DimValue(v as i64),
                Dim::Param(p) => Value::DimParam(p.to_string()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(FLOAT),
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
    }
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Int as i32), i: Some(i), ..Default::default() }
}

fn float(name: &str, f: f32) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Float as i32), f: Some(f), ..Default::default() }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Ints as i32), ints: v.to_vec(), ..Default::default() }
}
