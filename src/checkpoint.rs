//! Weights in safetensors with the released PyTorch names, plus spgnet metadata.
//! Loading checks every name, shape and dtype and says exactly which one is wrong; files
//! without metadata (converted from PyTorch) are recognised from their tensor shapes.
//! Writes are atomic: a temporary file in the same folder, then a rename.

use crate::model::{Architecture, ModelConfig, Variant};
use anyhow::{anyhow, bail, Context, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
#[cfg(feature = "native")]
use std::path::Path;

/// A tensor read from a file, converted to f32 (or kept as integers for labels).
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// What a checkpoint says about the data it was trained on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata {
    pub input_size: Option<usize>,
    pub classes: Option<Vec<String>>,
    pub mean: Option<Vec<f32>>,
    pub std: Option<Vec<f32>>,
    pub dataset: Option<String>,
}

/// A model's full state: configuration, every state tensor by name, metadata.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub config: ModelConfig,
    pub tensors: BTreeMap<String, Vec<f32>>,
    pub meta: Metadata,
}

impl Checkpoint {
    /// The official initialisation of `config`.
    pub fn initialized(config: ModelConfig, seed: u64) -> Checkpoint {
        let arch = Architecture::new(config.clone());
        let tensors = arch.init(seed).into_iter().map(|(t, v)| (t.name, v)).collect();
        Checkpoint { config, tensors, meta: Metadata::default() }
    }
}

fn dtype_name(d: Dtype) -> String {
    format!("{d:?}")
}

/// Values of a float tensor as f32 (F32, F16, BF16 and F64 are accepted).
fn floats(name: &str, view: &safetensors::tensor::TensorView<'_>) -> Result<Vec<f32>> {
    let b = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
        Dtype::F16 => b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => b.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::F64 => b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
        d => bail!("tensor '{name}' has dtype {}, expected a float type (F32, F16, BF16 or F64)", dtype_name(d)),
    })
}

/// Values of an integer tensor (I64, I32, U8...) as i64.
fn integers(name: &str, view: &safetensors::tensor::TensorView<'_>) -> Result<Vec<i64>> {
    let b = view.data();
    Ok(match view.dtype() {
        Dtype::I64 => b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(),
        Dtype::I32 => b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect(),
        Dtype::U32 => b.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap()) as i64).collect(),
        Dtype::U8 => b.iter().map(|&v| v as i64).collect(),
        d => bail!("tensor '{name}' has dtype {}, expected an integer type (I64 or I32)", dtype_name(d)),
    })
}

/// The bytes of a safetensors file with its parsed header.
pub struct TensorFile {
    path: String,
    bytes: Vec<u8>,
}

impl TensorFile {
    #[cfg(feature = "native")]
    pub fn open(path: &Path) -> Result<TensorFile> {
        let shown = path.display().to_string();
        if path.is_dir() {
            bail!("{shown}: is a folder, expected a .safetensors file");
        }
        let bytes = std::fs::read(path).with_context(|| format!("{shown}: cannot read"))?;
        Self::from_bytes(shown, bytes)
    }

    /// Parse bytes already in memory; `label` names them in messages.
    pub fn from_bytes(label: String, bytes: Vec<u8>) -> Result<TensorFile> {
        SafeTensors::deserialize(&bytes).map_err(|e| anyhow!("{label}: not a valid safetensors file ({e})"))?;
        let file = TensorFile { path: label, bytes };
        file.verify_checksum()?;
        Ok(file)
    }

    /// The tensor data against the checksum the file records, where it records one.
    fn verify_checksum(&self) -> Result<()> {
        let Some(want) = self.metadata().remove(CHECKSUM_KEY) else { return Ok(()) };
        let got = checksum(self.parsed().tensors().iter().map(|(n, v)| (n.as_str(), v.data())));
        if got != want {
            bail!("{}: the tensor data is damaged (checksum {got}, the file records {want}); restore it from a copy or retrain", self.path);
        }
        Ok(())
    }

    fn parsed(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("validated in open")
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn metadata(&self) -> HashMap<String, String> {
        SafeTensors::read_metadata(&self.bytes).ok().and_then(|(_, m)| m.metadata().clone()).unwrap_or_default()
    }

    pub fn names(&self) -> Vec<String> {
        self.parsed().names().into_iter().map(String::from).collect()
    }

    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.parsed().tensor(name).ok().map(|v| v.shape().to_vec())
    }

    pub fn floats(&self, name: &str) -> Result<HostTensor> {
        let st = self.parsed();
        let view = st.tensor(name).map_err(|_| anyhow!("{}: no tensor '{name}'", self.path))?;
        let data = floats(name, &view).with_context(|| self.path.clone())?;
        Ok(HostTensor { shape: view.shape().to_vec(), data })
    }

    pub fn integers(&self, name: &str) -> Result<(Vec<usize>, Vec<i64>)> {
        let st = self.parsed();
        let view = st.tensor(name).map_err(|_| anyhow!("{}: no tensor '{name}'", self.path))?;
        let data = integers(name, &view).with_context(|| self.path.clone())?;
        Ok((view.shape().to_vec(), data))
    }
}

/// The configuration a state dict describes: from metadata where present, else from shapes.
fn infer_config(file: &TensorFile) -> Result<ModelConfig> {
    let meta = file.metadata();
    let path = file.path();
    let stem = file
        .shape("first_conv.0.conv.weight")
        .ok_or_else(|| anyhow!("{path}: no tensor 'first_conv.0.conv.weight': not an SPGNet checkpoint"))?;
    let head = file.shape("linear.weight").ok_or_else(|| anyhow!("{path}: no tensor 'linear.weight': not an SPGNet checkpoint"))?;
    if stem.len() != 4 || head.len() != 2 {
        bail!("{path}: 'first_conv.0.conv.weight' must be 4-D and 'linear.weight' 2-D (got {stem:?} and {head:?})");
    }
    let variant = match meta.get("spgnet.version") {
        Some(v) => Variant::parse(v).with_context(|| format!("{path}: metadata spgnet.version"))?,
        None => Variant::from_stem_width(stem[0]).ok_or_else(|| {
            anyhow!("{path}: 'first_conv.0.conv.weight' has {} output channels; no SPGNet variant starts with that", stem[0])
        })?,
    };
    let number = |key: &str, fallback: usize| -> Result<usize> {
        match meta.get(key) {
            Some(v) => v.parse().map_err(|_| anyhow!("{path}: metadata {key} = '{v}' is not a number")),
            None => Ok(fallback),
        }
    };
    Ok(ModelConfig::new(variant, number("spgnet.in_channels", stem[1])?, number("spgnet.num_classes", head[0])?))
}

fn parse_floats(path: &str, key: &str, v: &str) -> Result<Vec<f32>> {
    v.split(',').map(|x| x.trim().parse::<f32>().map_err(|_| anyhow!("{path}: metadata {key} = '{v}' is not a list of numbers"))).collect()
}

fn read_metadata(file: &TensorFile) -> Result<Metadata> {
    let m = file.metadata();
    let path = file.path();
    Ok(Metadata {
        input_size: m
            .get("spgnet.input_size")
            .map(|v| v.parse().map_err(|_| anyhow!("{path}: metadata spgnet.input_size = '{v}' is not a number")))
            .transpose()?,
        classes: m.get("spgnet.classes").map(|v| v.split(',').map(|s| s.to_string()).collect()),
        mean: m.get("spgnet.mean").map(|v| parse_floats(path, "spgnet.mean", v)).transpose()?,
        std: m.get("spgnet.std").map(|v| parse_floats(path, "spgnet.std", v)).transpose()?,
        dataset: m.get("spgnet.dataset").cloned(),
    })
}

/// Load and check a model checkpoint.
#[cfg(feature = "native")]
pub fn load(path: &Path) -> Result<Checkpoint> {
    from_file(&TensorFile::open(path)?)
}

/// Check a parsed file against the architecture its shapes (or metadata) describe.
pub fn from_file(file: &TensorFile) -> Result<Checkpoint> {
    let shown = file.path().to_string();
    let config = infer_config(file)?;
    if config.in_channels == 0 || config.num_classes == 0 {
        bail!("{shown}: a model needs at least one input channel and one class");
    }
    let arch = Architecture::new(config.clone());
    let expected = arch.tensors();
    let known: HashMap<&str, &Vec<usize>> = expected.iter().map(|t| (t.name.as_str(), &t.shape)).collect();
    for name in file.names() {
        if !known.contains_key(name.as_str()) && !name.ends_with(".num_batches_tracked") {
            bail!(
                "{shown}: unexpected tensor '{name}' for SPGNet {} ({} classes, {} input channels)",
                config.variant.name(),
                config.num_classes,
                config.in_channels
            );
        }
    }
    let mut tensors = BTreeMap::new();
    for t in &expected {
        let Some(shape) = file.shape(&t.name) else {
            bail!("{shown}: missing tensor '{}' (SPGNet {})", t.name, config.variant.name());
        };
        if shape != t.shape {
            bail!("{shown}: tensor '{}' has shape {shape:?}, expected {:?}", t.name, t.shape);
        }
        let values = file.floats(&t.name)?.data;
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            bail!("{shown}: tensor '{}' holds a non-finite value ({}) at index {i}", t.name, values[i]);
        }
        tensors.insert(t.name.clone(), values);
    }
    let meta = read_metadata(file)?;
    if let Some(c) = &meta.classes {
        if c.len() != config.num_classes {
            bail!("{shown}: metadata lists {} class names for {} classes", c.len(), config.num_classes);
        }
    }
    Ok(Checkpoint { config, tensors, meta })
}

/// Serialize named f32 tensors with string metadata to safetensors bytes.
pub fn to_bytes(tensors: &[(String, Vec<usize>, Vec<f32>)], metadata: HashMap<String, String>) -> Result<Vec<u8>> {
    to_bytes_as(tensors, metadata, |_| Dtype::F32)
}

/// The same, storing each tensor in the dtype `dtype_of(name)` gives (F32 or F16).
pub fn to_bytes_as(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: HashMap<String, String>,
    dtype_of: impl Fn(&str) -> Dtype,
) -> Result<Vec<u8>> {
    let encoded: Vec<(Dtype, Vec<u8>)> = tensors
        .iter()
        .map(|(name, _, data)| match dtype_of(name) {
            Dtype::F16 => (Dtype::F16, data.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect()),
            _ => (Dtype::F32, bytemuck::cast_slice(data).to_vec()),
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .zip(&encoded)
        .map(|((name, shape, _), (dtype, bytes))| {
            let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes).map_err(|e| anyhow!("tensor '{name}': {e}"))?;
            Ok((name.clone(), view))
        })
        .collect::<Result<_>>()?;
    let mut metadata = metadata;
    metadata
        .insert(CHECKSUM_KEY.into(), checksum(tensors.iter().zip(&encoded).map(|((name, _, _), (_, bytes))| (name.as_str(), &bytes[..]))));
    safetensors::tensor::serialize(views, Some(metadata)).map_err(|e| anyhow!("cannot serialize tensors: {e}"))
}

/// The metadata entry with the CRC-32 of a file's tensor data, checked on every load so that
/// silent corruption (a flipped bit on disk) is caught. Files without it load unchecked.
pub const CHECKSUM_KEY: &str = "spgnet.crc32";

/// CRC-32 over the tensors in name order: each name, a zero byte, then its raw data.
fn checksum<'a>(tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut sorted: Vec<(&str, &[u8])> = tensors.collect();
    sorted.sort_by_key(|(name, _)| *name);
    let mut h = crc32fast::Hasher::new();
    for (name, data) in sorted {
        h.update(name.as_bytes());
        h.update(&[0]);
        h.update(data);
    }
    format!("{:08x}", h.finalize())
}

/// Save a checkpoint with full metadata (atomically: a run that dies leaves the old file).
#[cfg(feature = "native")]
pub fn save(path: &Path, ck: &Checkpoint) -> Result<()> {
    save_as(path, ck, false, HashMap::new())
}

/// Save with conv and linear weights in f16 when `half`, plus extra metadata entries.
#[cfg(feature = "native")]
pub fn save_as(path: &Path, ck: &Checkpoint, half: bool, extra: HashMap<String, String>) -> Result<()> {
    crate::files::write_atomic(path, &to_safetensors(ck, half, extra)?)
}

/// A checkpoint as safetensors bytes with full metadata; conv and linear weights in f16 when
/// `half` (BN tensors stay f32: running variances lose too much in f16), plus `extra` entries.
pub fn to_safetensors(ck: &Checkpoint, half: bool, extra: HashMap<String, String>) -> Result<Vec<u8>> {
    let arch = Architecture::new(ck.config.clone());
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = arch
        .tensors()
        .into_iter()
        .map(|t| {
            let data = ck.tensors.get(&t.name).ok_or_else(|| anyhow!("checkpoint has no tensor '{}'", t.name))?.clone();
            Ok((t.name, t.shape, data))
        })
        .collect::<Result<_>>()?;
    let mut meta = HashMap::new();
    meta.insert("spgnet.version".into(), ck.config.variant.name().into());
    meta.insert("spgnet.num_classes".into(), ck.config.num_classes.to_string());
    meta.insert("spgnet.in_channels".into(), ck.config.in_channels.to_string());
    meta.insert("spgnet.format_version".into(), "1".into());
    let m = &ck.meta;
    if let Some(s) = m.input_size {
        meta.insert("spgnet.input_size".into(), s.to_string());
    }
    if let Some(c) = &m.classes {
        meta.insert("spgnet.classes".into(), c.join(","));
    }
    let join = |v: &Vec<f32>| v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",");
    if let Some(v) = &m.mean {
        meta.insert("spgnet.mean".into(), join(v));
    }
    if let Some(v) = &m.std {
        meta.insert("spgnet.std".into(), join(v));
    }
    if let Some(d) = &m.dataset {
        meta.insert("spgnet.dataset".into(), d.clone());
    }
    meta.extend(extra);
    let weights: std::collections::HashSet<String> = arch.tensors().into_iter().filter(|t| t.is_weight).map(|t| t.name).collect();
    let dtype = |name: &str| if half && weights.contains(name) { Dtype::F16 } else { Dtype::F32 };
    to_bytes_as(&tensors, meta, dtype)
}
