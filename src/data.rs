//! Datasets held in memory as u8 images, and the formats they come in, parsed from bytes:
//! IDX (MNIST, Fashion-MNIST), CIFAR binary records, any image the `image` crate decodes.
//! Every parser says which input is wrong and how (reading files: `datasets`).

use anyhow::{anyhow, bail, Result};
use std::path::Path;

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
    /// A dataset of `n` images made by `image(i)`: its u8 pixels (`channels` planes of `size` x
    /// `size`, one plane after the other) and its label, an index into `classes`.
    pub fn from_fn(
        n: usize,
        channels: usize,
        size: usize,
        classes: &[&str],
        mut image: impl FnMut(usize) -> (Vec<u8>, u32),
    ) -> Result<Dataset> {
        let mut d = Dataset {
            name: "custom".into(),
            images: Vec::new(),
            labels: Vec::new(),
            channels,
            h: size,
            w: size,
            classes: classes.iter().map(|c| c.to_string()).collect(),
        };
        for i in 0..n {
            let (pixels, label) = image(i);
            if pixels.len() != channels * size * size || label as usize >= classes.len() {
                bail!(
                    "image {i}: {} values and label {label}, expected {} values and a label below {}",
                    pixels.len(),
                    channels * size * size,
                    classes.len()
                );
            }
            d.images.extend(pixels);
            d.labels.push(label);
        }
        Ok(d)
    }

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

pub const FASHION_CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];
pub const CIFAR10_CLASSES: [&str; 10] = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// Train and test splits of a dataset.
pub struct Splits {
    pub train: Dataset,
    pub test: Dataset,
}

/// `bytes` gunzipped when they are gzip data (the IDX files come either way), else as they are.
pub fn gunzip_if_gzipped(name: &str, bytes: Vec<u8>) -> Result<Vec<u8>> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut out)
        .map_err(|e| anyhow!("{name}: broken gzip data ({e})"))?;
    Ok(out)
}

/// The classes of an IDX dataset: Fashion-MNIST's names, or the ten digits.
pub fn idx_classes(kind: Kind) -> Vec<String> {
    match kind {
        Kind::FashionMnist => FASHION_CLASSES.iter().map(|s| s.to_string()).collect(),
        _ => (0..10).map(|d| d.to_string()).collect(),
    }
}

/// One split of an IDX dataset from its images file and labels file (each gzipped or not, and
/// named by the path or label given for messages), checked against each other and `classes`.
pub fn idx_dataset(
    name: &str,
    (images_at, images): (&Path, Vec<u8>),
    (labels_at, labels): (&Path, Vec<u8>),
    classes: &[String],
) -> Result<Dataset> {
    let (idims, images) = parse_idx(images_at, &gunzip_if_gzipped(&images_at.display().to_string(), images)?, 3)?;
    let (ldims, labels) = parse_idx(labels_at, &gunzip_if_gzipped(&labels_at.display().to_string(), labels)?, 1)?;
    if idims[0] != ldims[0] {
        bail!("{}: {} images but {} has {} labels", images_at.display(), idims[0], labels_at.display(), ldims[0]);
    }
    if idims[0] == 0 {
        bail!("{}: holds no images", images_at.display());
    }
    if let Some(l) = labels.iter().find(|&&l| l as usize >= classes.len()) {
        bail!("{}: label {l} is out of range for {} classes", labels_at.display(), classes.len());
    }
    let labels = labels.into_iter().map(u32::from).collect();
    Ok(Dataset { name: name.into(), images, labels, channels: 1, h: idims[1], w: idims[2], classes: classes.to_vec() })
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
    let dims: Vec<usize> =
        (0..rank as usize).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
    let count =
        dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| anyhow!("{shown}: IDX dimensions {dims:?} overflow"))?;
    if bytes.len() - header < count {
        bail!("{shown}: truncated: dimensions {dims:?} need {count} bytes of data, the file has {}", bytes.len() - header);
    }
    Ok((dims, bytes[header..header + count].to_vec()))
}

const CIFAR_IMAGE: usize = 3 * 32 * 32;

/// Parse CIFAR binary records: `label_bytes` label bytes (the last one is used: CIFAR-100's
/// fine label) then 3072 bytes of R, G, B planes.
pub fn parse_cifar(name: &str, bytes: &[u8], label_bytes: usize, classes: usize, into: &mut Dataset) -> Result<()> {
    let record = label_bytes + CIFAR_IMAGE;
    if bytes.is_empty() || !bytes.len().is_multiple_of(record) {
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

/// One split of a CIFAR dataset (32x32 RGB) from its binary files, (name, bytes) each.
pub fn cifar_dataset(name: &str, files: &[(String, &[u8])], label_bytes: usize, classes: &[String]) -> Result<Dataset> {
    let mut d = Dataset { name: name.into(), images: vec![], labels: vec![], channels: 3, h: 32, w: 32, classes: classes.to_vec() };
    for (file, bytes) in files {
        parse_cifar(file, bytes, label_bytes, classes.len(), &mut d)?;
    }
    Ok(d)
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
