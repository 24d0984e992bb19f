//! Datasets and images from files: the (Fashion-)MNIST IDX files (gzipped or not), CIFAR
//! binaries (folder or .tar.gz), image folders (one sub-folder per class). The formats
//! themselves are parsed by `data`.

use crate::data::{cifar_dataset, decode_image, idx_classes, idx_dataset, to_planes, Dataset, Kind, Splits, CIFAR10_CLASSES};
use anyhow::{anyhow, bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Load `kind` from `path`. `val_fraction` splits an image folder without train/ and val/.
pub fn load(kind: Kind, path: &Path, val_fraction: f32, seed: u64) -> Result<Splits> {
    if !path.exists() {
        bail!("{}: no such file or folder (the {} data)", path.display(), kind.name());
    }
    match kind {
        Kind::Mnist | Kind::FashionMnist => {
            let classes = idx_classes(kind);
            Ok(Splits {
                train: load_idx_pair(path, "train", kind.name(), &classes)?,
                test: load_idx_pair(path, "t10k", kind.name(), &classes)?,
            })
        }
        Kind::Cifar10 | Kind::Cifar100 => load_cifar(kind, path),
        Kind::Folder => load_folder_splits(path, val_fraction, seed),
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

fn load_idx_pair(dir: &Path, prefix: &str, name: &str, classes: &[String]) -> Result<Dataset> {
    if !dir.is_dir() {
        bail!("{}: expected a folder holding {prefix}-images-idx3-ubyte[.gz] and {prefix}-labels-idx1-ubyte[.gz]", dir.display());
    }
    let ip = find_idx(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let lp = find_idx(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("{}: cannot read", p.display()));
    idx_dataset(name, (&ip, read(&ip)?), (&lp, read(&lp)?), classes)
}

fn cifar_names(kind: Kind) -> (Vec<&'static str>, Vec<&'static str>, usize, usize) {
    if kind == Kind::Cifar10 {
        (
            vec!["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"],
            vec!["test_batch.bin"],
            1,
            10,
        )
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
        let dir =
            ["cifar-10-batches-bin", "cifar-100-binary"].iter().map(|d| path.join(d)).find(|d| d.is_dir()).unwrap_or(path.to_path_buf());
        for name in &wanted {
            let p = dir.join(name);
            if p.is_file() {
                files.insert(name.to_string(), std::fs::read(&p).with_context(|| format!("{}: cannot read", p.display()))?);
            }
        }
    }
    let mut classes: Vec<String> = match (kind, files.get("batches.meta.txt"), files.get("fine_label_names.txt")) {
        (Kind::Cifar10, Some(t), _) | (Kind::Cifar100, _, Some(t)) => {
            String::from_utf8_lossy(t).lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
        }
        _ => vec![],
    };
    if classes.len() != n_classes {
        classes = if kind == Kind::Cifar10 {
            CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect()
        } else {
            (0..n_classes).map(|i| format!("class{i}")).collect()
        };
    }
    let split = |names: &[&str]| -> Result<Dataset> {
        let named = names
            .iter()
            .map(|n| {
                let bytes = files
                    .get(*n)
                    .ok_or_else(|| anyhow!("{}: missing {n} (expected the {} binary version)", path.display(), kind.name()))?;
                Ok((format!("{}/{n}", path.display()), &bytes[..]))
            })
            .collect::<Result<Vec<_>>>()?;
        cifar_dataset(kind.name(), &named, label_bytes, &classes)
    };
    Ok(Splits { train: split(&train_files)?, test: split(&test_files)? })
}

/// The extensions of the formats spgnet decodes (the image crate's features in Cargo.toml).
const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "webp", "gif"];

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
