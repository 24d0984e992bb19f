//! Datasets held in memory as u8 images: CIFAR-10/100 binaries (folder or .tar.gz),
//! MNIST / Fashion-MNIST IDX files (gzipped or not), and image folders (one sub-folder per
//! class). Every reader says which file is wrong and how.

use anyhow::{anyhow, bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Images [n, channels, h, w] as u8 with their labels.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub name: String,
    pub images: Vec<u8>,
    pub labels: Vec<u32>,
    pub channels: usize,
    pub h: usize,
    pub w: usize,
    pub classes: Vec<String>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn image(&self, i: usize) -> &[u8] {
        let s = self.channels * self.h * self.w;
        &self.images[i * s..(i + 1) * s]
    }
    /// The first `n` images (all when n >= len).
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.images.truncate(n * self.channels * self.h * self.w);
    }
    /// Per-channel mean and standard deviation of the pixels scaled to [0, 1].
    pub fn mean_std(&self) -> (Vec<f32>, Vec<f32>) {
        let plane = self.h * self.w;
        let mut sum = vec![0f64; self.channels];
        let mut sq = vec![0f64; self.channels];
        for (i, &v) in self.images.iter().enumerate() {
            let c = (i / plane) % self.channels;
            let x = v as f64 / 255.0;
            sum[c] += x;
            sq[c] += x * x;
        }
        let n = (self.len() * plane) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let std = sq.iter().zip(&mean).map(|(q, m)| ((q / n - m * m).max(1e-12)).sqrt() as f32).collect();
        (mean.iter().map(|m| *m as f32).collect(), std)
    }
}

/// The datasets `--dataset` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Cifar10,
    Cifar100,
    Mnist,
    FashionMnist,
    Folder,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Kind> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "cifar10" | "cifar-10" => Kind::Cifar10,
            "cifar100" | "cifar-100" => Kind::Cifar100,
            "mnist" => Kind::Mnist,
            "fashion-mnist" | "fashion_mnist" | "fashionmnist" => Kind::FashionMnist,
            "folder" | "imagefolder" => Kind::Folder,
            _ => bail!("unknown dataset '{s}': use cifar10, cifar100, mnist, fashion-mnist or folder"),
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Kind::Cifar10 => "cifar10",
            Kind::Cifar100 => "cifar100",
            Kind::Mnist => "mnist",
            Kind::FashionMnist => "fashion-mnist",
            Kind::Folder => "folder",
        }
    }
    /// Where Debian's packages put the data, for a missing --data.
    pub fn default_path(self) -> Option<&'static str> {
        match self {
            Kind::FashionMnist => Some("/usr/share/datasets/fashion-mnist"),
            Kind::Mnist => Some("/usr/share/datasets/mnist"),
            _ => None,
        }
    }
    /// Horizontal flips help natural images and hurt digits.
    pub fn flip_by_default(self) -> bool {
        matches!(self, Kind::Cifar10 | Kind::Cifar100 | Kind::Folder)
    }
    /// Normalisation: the notebook's ImageNet statistics for CIFAR, the dataset's own otherwise.
    pub fn fixed_mean_std(self) -> Option<(Vec<f32>, Vec<f32>)> {
        match self {
            Kind::Cifar10 | Kind::Cifar100 => Some((vec![0.485, 0.456, 0.406], vec![0.229, 0.224, 0.225])),
            Kind::FashionMnist => Some((vec![0.2860], vec![0.3530])),
            Kind::Mnist => Some((vec![0.1307], vec![0.3081])),
            Kind::Folder => None,
        }
    }
}

pub const FASHION_CLASSES: [&str; 10] = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];
pub const CIFAR10_CLASSES: [&str; 10] = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// Train and test splits of a dataset.
pub struct Splits {
    pub train: Dataset,
    pub test: Dataset,
}

/// Load `kind` from `path`. `val_fraction` splits an image folder without train/ and val/.
pub fn load(kind: Kind, path: &Path, val_fraction: f32, seed: u64) -> Result<Splits> {
    if !path.exists() {
        bail!("{}: no such file or folder (the {} data)", path.display(), kind.name());
    }
    match kind {
        Kind::Mnist | Kind::FashionMnist => {
            let classes: Vec<String> = if kind == Kind::FashionMnist {
                FASHION_CLASSES.iter().map(|s| s.to_string()).collect()
            } else {
                (0..10).map(|d| d.to_string()).collect()
            };
            Ok(Splits {
                train: load_idx_pair(path, "train", kind.name(), &classes)?,
                test: load_idx_pair(path, "t10k", kind.name(), &classes)?,
            })
        }
        Kind::Cifar10 | Kind::Cifar100 => load_cifar(kind, path),
        Kind::Folder => load_folder_splits(path, val_fraction, seed),
    }
}

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out).map_err(|e| anyhow!("{}: broken gzip data ({e})", path.display()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// The file `stem` (e.g. train-images-idx3-ubyte) in `dir`, gzipped or not.
fn find_idx(dir: &Path, stem: &str) -> Result<PathBuf> {
    for name in [format!("{stem}.gz"), stem.to_string(), stem.replace("-idx", ".idx")] {
        let p = dir.join(&name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{}: missing {stem}[.gz] (expected the MNIST-format IDX files there)", dir.display())
}

/// Parse an IDX file: magic (0, 0, 8 = u8, rank), big-endian dimensions, data.
pub fn parse_idx(path: &Path, bytes: &[u8], rank: u8) -> Result<(Vec<usize>, Vec<u8>)> {
    let shown = path.display();
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 8 || bytes[3] != rank {
        bail!("{shown}: not an IDX file of rank {rank} with u8 data (bad magic number {:02x?})", &bytes[..bytes.len().min(4)]);
    }
    let header = 4 + 4 * rank as usize;
    if bytes.len() < header {
        bail!("{shown}: truncated IDX header");
    }
    let dims: Vec<usize> = (0..rank as usize).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
    let count = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| anyhow!("{shown}: IDX dimensions {dims:?} overflow"))?;
    if bytes.len() - header < count {
        bail!("{shown}: truncated: dimensions {dims:?} need {count} bytes of data, the file has {}", bytes.len() - header);
    }
    Ok((dims, bytes[header..header + count].to_vec()))
}

fn load_idx_pair(dir: &Path, prefix: &str, name: &str, classes: &[String]) -> Result<Dataset> {
    if !dir.is_dir() {
        bail!("{}: expected a folder holding {prefix}-images-idx3-ubyte[.gz] and {prefix}-labels-idx1-ubyte[.gz]", dir.display());
    }
    let ip = find_idx(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let lp = find_idx(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let (idims, images) = parse_idx(&ip, &read_maybe_gz(&ip)?, 3)?;
    let (ldims, labels) = parse_idx(&lp, &read_maybe_gz(&lp)?, 1)?;
    if idims[0] != ldims[0] {
        bail!("{}: {} images but {} has {} labels", ip.display(), idims[0], lp.display(), ldims[0]);
    }
    if idims[0] == 0 {
        bail!("{}: holds no images", ip.display());
    }
    if let Some(l) = labels.iter().find(|&&l| l as usize >= classes.len()) {
        bail!("{}: label {l} is out of range for {} classes", lp.display(), classes.len());
    }
    Ok(Dataset { name: name.into(), images, labels: labels.into_iter().map(u32::from).collect(), channels: 1, h: idims[1], w: idims[2], classes: classes.to_vec() })
}

const CIFAR_IMAGE: usize = 3 * 32 * 32;

/// Parse CIFAR binary records: `label_bytes` label bytes (the last one is used: CIFAR-100's
/// fine label) then 3072 bytes of R, G, B planes.
pub fn parse_cifar(name: &str, bytes: &[u8], label_bytes: usize, classes: usize, into: &mut Dataset) -> Result<()> {
    let record = label_bytes + CIFAR_IMAGE;
    if bytes.is_empty() || bytes.len() % record != 0 {
        bail!("{name}: {} bytes is not a whole number of {record}-byte CIFAR records (truncated or not a CIFAR file)", bytes.len());
    }
    for r in bytes.chunks_exact(record) {
        let label = r[label_bytes - 1] as u32;
        if label as usize >= classes {
            bail!("{name}: label {label} is out of range for {classes} classes");
        }
        into.labels.push(label);
        into.images.extend_from_slice(&r[label_bytes..]);
    }
    Ok(())
}

fn cifar_names(kind: Kind) -> (Vec<&'static str>, Vec<&'static str>, usize, usize) {
    if kind == Kind::Cifar10 {
        (vec!["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"], vec!["test_batch.bin"], 1, 10)
    } else {
        (vec!["train.bin"], vec!["test.bin"], 2, 100)
    }
}

fn load_cifar(kind: Kind, path: &Path) -> Result<Splits> {
    let (train_files, test_files, label_bytes, n_classes) = cifar_names(kind);
    let mut files: std::collections::HashMap<String, Vec<u8>> = Default::default();
    let wanted: Vec<&str> = train_files.iter().chain(&test_files).copied().chain(["batches.meta.txt", "fine_label_names.txt"]).collect();
    if path.is_file() {
        // The .tar.gz as downloaded: read the files we need straight from the archive.
        let raw = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&raw[..]));
        let entries = archive.entries().map_err(|e| anyhow!("{}: not a .tar.gz archive ({e})", path.display()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| anyhow!("{}: broken archive ({e})", path.display()))?;
            let name = entry.path().ok().and_then(|p| p.file_name().map(|f| f.to_string_lossy().to_string())).unwrap_or_default();
            if wanted.contains(&name.as_str()) {
                let mut buf = Vec::new();
                entry.read_to_end(&mut buf).map_err(|e| anyhow!("{}: broken archive entry {name} ({e})", path.display()))?;
                files.insert(name, buf);
            }
        }
    } else {
        // The extracted folder, or the folder holding it.
        let dir = ["cifar-10-batches-bin", "cifar-100-binary"].iter().map(|d| path.join(d)).find(|d| d.is_dir()).unwrap_or(path.to_path_buf());
        for name in &wanted {
            let p = dir.join(name);
            if p.is_file() {
                files.insert(name.to_string(), std::fs::read(&p).with_context(|| format!("{}: cannot read", p.display()))?);
            }
        }
    }
    let mut classes: Vec<String> = match (kind, files.get("batches.meta.txt"), files.get("fine_label_names.txt")) {
        (Kind::Cifar10, Some(t), _) | (Kind::Cifar100, _, Some(t)) => String::from_utf8_lossy(t).lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect(),
        _ => vec![],
    };
    if classes.len() != n_classes {
        classes = if kind == Kind::Cifar10 { CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect() } else { (0..n_classes).map(|i| format!("class{i}")).collect() };
    }
    let split = |names: &[&str]| -> Result<Dataset> {
        let mut d = Dataset { name: kind.name().into(), images: vec![], labels: vec![], channels: 3, h: 32, w: 32, classes: classes.clone() };
        for n in names {
            let bytes = files.get(*n).ok_or_else(|| anyhow!("{}: missing {n} (expected the {} binary version)", path.display(), kind.name()))?;
            parse_cifar(&format!("{}/{n}", path.display()), bytes, label_bytes, n_classes, &mut d)?;
        }
        Ok(d)
    };
    Ok(Splits { train: split(&train_files)?, test: split(&test_files)? })
}

const IMAGE_EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "bmp", "webp", "gif", "tif"];

/// Decode an image of any format and colour type the `image` crate reads, with limits
/// against decompression bombs.
pub fn read_image(path: &Path) -> Result<image::DynamicImage> {
    let shown = path.display();
    if path.is_dir() {
        bail!("{shown}: is a folder, expected an image file");
    }
    let bytes = std::fs::read(path).with_context(|| format!("{shown}: cannot read"))?;
    decode_image(&bytes).map_err(|e| anyhow!("{shown}: {e}"))
}

/// Decode image bytes, refusing more than 16384 pixels a side or 512 MiB of pixels.
pub fn decode_image(bytes: &[u8]) -> Result<image::DynamicImage> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(16384);
    limits.max_image_height = Some(16384);
    limits.max_alloc = Some(512 << 20);
    reader.limits(limits);
    reader.decode().map_err(|e| anyhow!("not a readable image ({e})"))
}

/// An image as u8 planes [channels, size, size]: resized (bilinear) and converted
/// (RGB to gray by luminance, gray to RGB by copying).
pub fn to_planes(img: &image::DynamicImage, channels: usize, size: usize) -> Vec<u8> {
    let resized = if img.width() as usize == size && img.height() as usize == size {
        img.clone()
    } else {
        img.resize_exact(size as u32, size as u32, image::imageops::FilterType::Triangle)
    };
    let plane = size * size;
    if channels == 1 {
        resized.to_luma8().into_raw()
    } else {
        let rgb = resized.to_rgb8();
        let mut out = vec![0u8; 3 * plane];
        for (i, px) in rgb.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = px[c];
            }
        }
        out
    }
}

pub fn is_image(p: &Path) -> bool {
    p.extension().map(|e| IMAGE_EXTENSIONS.contains(&e.to_string_lossy().to_ascii_lowercase().as_str())).unwrap_or(false)
}

/// Image files directly in `dir`, sorted.
pub fn images_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_image(p))
        .collect();
    v.sort();
    Ok(v)
}

/// An ImageFolder: one sub-folder per class (sorted names = class indices).
fn load_folder(root: &Path, channels: usize, size: usize) -> Result<Dataset> {
    let mut classes: Vec<String> = std::fs::read_dir(root)
        .with_context(|| format!("{}: cannot list", root.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    classes.sort();
    if classes.is_empty() {
        bail!("{}: no class sub-folders (expected one folder of images per class)", root.display());
    }
    let mut d = Dataset { name: "folder".into(), images: vec![], labels: vec![], channels, h: size, w: size, classes: classes.clone() };
    for (label, class) in classes.iter().enumerate() {
        for p in images_in(&root.join(class))? {
            d.images.extend(to_planes(&read_image(&p)?, channels, size));
            d.labels.push(label as u32);
        }
    }
    if d.is_empty() {
        bail!("{}: the class folders hold no images ({})", root.display(), IMAGE_EXTENSIONS.join(", "));
    }
    Ok(d)
}

/// Image folders are stored at this size and channel count (the model's input is chosen later).
pub const FOLDER_SIZE: usize = 64;

fn load_folder_splits(root: &Path, val_fraction: f32, seed: u64) -> Result<Splits> {
    if !root.is_dir() {
        bail!("{}: expected a folder with one sub-folder of images per class", root.display());
    }
    let (train_dir, val_dir) = (root.join("train"), ["val", "test"].iter().map(|d| root.join(d)).find(|d| d.is_dir()));
    if let (true, Some(val_dir)) = (train_dir.is_dir(), val_dir) {
        let train = load_folder(&train_dir, 3, FOLDER_SIZE)?;
        let test = load_folder(&val_dir, 3, FOLDER_SIZE)?;
        if train.classes != test.classes {
            bail!("{}: train/ and {}/ have different class folders", root.display(), val_dir.file_name().unwrap().to_string_lossy());
        }
        return Ok(Splits { train, test });
    }
    if !(0.0..1.0).contains(&val_fraction) {
        bail!("--val-split must be in [0, 1), got {val_fraction}");
    }
    let all = load_folder(root, 3, FOLDER_SIZE)?;
    let mut order: Vec<usize> = (0..all.len()).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let n_val = ((all.len() as f32 * val_fraction).round() as usize).clamp(usize::from(val_fraction > 0.0), all.len().saturating_sub(1));
    let pick = |idx: &[usize]| {
        let mut d = Dataset { images: vec![], labels: vec![], ..all.clone() };
        for &i in idx {
            d.images.extend_from_slice(all.image(i));
            d.labels.push(all.labels[i]);
        }
        d
    };
    Ok(Splits { test: pick(&order[..n_val]), train: pick(&order[n_val..]) })
}
