//! Dataset readers on files written here in each exact format, augmentation and the schedule.

use spgnet::augment;
use spgnet::data::{self, Kind};
use spgnet::datasets;
use spgnet::preprocess::{self, Preprocess};
use spgnet::train::learning_rate;
use std::io::Write;
use std::path::Path;

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn write_mnist(dir: &Path, n_train: usize, n_test: usize, gzip: bool) {
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
        let images: Vec<u8> = (0..n * 28 * 28).map(|i| (i % 251) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let (img, lab) = (idx_bytes(&[n as u32, 28, 28], &images), idx_bytes(&[n as u32], &labels));
        let (suffix, img, lab) = if gzip { (".gz", gz(&img), gz(&lab)) } else { ("", img, lab) };
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte{suffix}")), img).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte{suffix}")), lab).unwrap();
    }
}

fn load_err(kind: Kind, path: &Path) -> String {
    match datasets::load(kind, path, 0.1, 0) {
        Ok(_) => panic!("loading {} should fail", path.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn mnist_idx_gzipped_or_not() {
    for gzip in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        write_mnist(dir.path(), 12, 5, gzip);
        let s = datasets::load(Kind::FashionMnist, dir.path(), 0.1, 0).unwrap();
        assert_eq!((s.train.len(), s.test.len()), (12, 5));
        assert_eq!((s.train.channels, s.train.h, s.train.w), (1, 28, 28));
        assert_eq!(s.train.labels[..4], [0, 1, 2, 3]);
        assert_eq!(s.train.image(1)[..3], [(784 % 251) as u8, (785 % 251) as u8, (786 % 251) as u8]);
        assert_eq!(s.train.classes[9], "Ankle boot");
        let m = datasets::load(Kind::Mnist, dir.path(), 0.1, 0).unwrap();
        assert_eq!(m.test.classes[3], "3");
    }
}

#[test]
fn mnist_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_mnist(dir.path(), 4, 4, false);
    let p = |n: &str| dir.path().join(n);
    // Wrong magic number.
    std::fs::write(p("t10k-labels-idx1-ubyte"), idx_bytes(&[4, 1], &[0; 4])).unwrap();
    let e = load_err(Kind::FashionMnist, dir.path());
    assert!(e.contains("t10k-labels-idx1-ubyte") && e.contains("bad magic"), "{e}");
    // Truncated data.
    std::fs::write(p("t10k-labels-idx1-ubyte"), idx_bytes(&[9], &[0; 4])).unwrap();
    let e = load_err(Kind::FashionMnist, dir.path());
    assert!(e.contains("truncated"), "{e}");
    // Label out of range.
    std::fs::write(p("t10k-labels-idx1-ubyte"), idx_bytes(&[4], &[0, 1, 12, 3])).unwrap();
    let e = load_err(Kind::FashionMnist, dir.path());
    assert!(e.contains("label 12 is out of range"), "{e}");
    // Count mismatch between images and labels.
    std::fs::write(p("t10k-labels-idx1-ubyte"), idx_bytes(&[3], &[0, 1, 2])).unwrap();
    assert!(load_err(Kind::FashionMnist, dir.path()).contains("4 images but"));
    // Missing file, missing folder, broken gzip.
    std::fs::remove_file(p("t10k-labels-idx1-ubyte")).unwrap();
    assert!(load_err(Kind::FashionMnist, dir.path()).contains("missing t10k-labels-idx1-ubyte"));
    assert!(load_err(Kind::FashionMnist, &p("nowhere")).contains("no such file or folder"));
    std::fs::write(p("t10k-labels-idx1-ubyte.gz"), [0x1f, 0x8b, 1, 2, 3]).unwrap();
    assert!(load_err(Kind::FashionMnist, dir.path()).contains("broken gzip"));
}

/// CIFAR records: label byte(s) then R, G, B planes of 32x32.
fn cifar_records(n: usize, label_bytes: usize, classes: u8, salt: u8) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..n {
        if label_bytes == 2 {
            v.push((i % 20) as u8); // coarse label
        }
        v.push((i as u8).wrapping_add(salt) % classes);
        for c in 0..3 {
            v.extend(std::iter::repeat_n((c * 80 + i) as u8, 1024));
        }
    }
    v
}

#[test]
fn cifar10_from_folder_and_tar_gz() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&bin).unwrap();
    let mut files = Vec::new();
    for k in 1..=5 {
        files.push((format!("data_batch_{k}.bin"), cifar_records(3, 1, 10, k as u8)));
    }
    files.push(("test_batch.bin".to_string(), cifar_records(4, 1, 10, 7)));
    files.push(("batches.meta.txt".to_string(), spgnet::data::CIFAR10_CLASSES.join("\n").into_bytes()));
    for (n, b) in &files {
        std::fs::write(bin.join(n), b).unwrap();
    }
    let check = |s: data::Splits| {
        assert_eq!((s.train.len(), s.test.len()), (15, 4));
        assert_eq!((s.train.channels, s.train.h), (3, 32));
        assert_eq!(s.train.labels[..3], [1, 2, 3]);
        let img = s.train.image(1);
        assert_eq!((img[0], img[1024], img[2048]), (1, 81, 161), "R, G, B planes in order");
        assert_eq!(s.test.classes[0], "airplane");
    };
    check(datasets::load(Kind::Cifar10, dir.path(), 0.1, 0).unwrap());
    check(datasets::load(Kind::Cifar10, &bin, 0.1, 0).unwrap());
    // The archive as downloaded.
    let tgz = dir.path().join("cifar-10-binary.tar.gz");
    {
        let mut t = tar::Builder::new(flate2::write::GzEncoder::new(std::fs::File::create(&tgz).unwrap(), flate2::Compression::fast()));
        for (n, b) in &files {
            let mut h = tar::Header::new_gnu();
            h.set_size(b.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            t.append_data(&mut h, format!("cifar-10-batches-bin/{n}"), &b[..]).unwrap();
        }
        t.into_inner().unwrap().finish().unwrap();
    }
    check(datasets::load(Kind::Cifar10, &tgz, 0.1, 0).unwrap());
    // Truncated record, bad label, missing batch.
    std::fs::write(bin.join("test_batch.bin"), &files[5].1[..3000]).unwrap();
    assert!(load_err(Kind::Cifar10, &bin).contains("not a whole number of 3073-byte CIFAR records"));
    let mut bad = cifar_records(2, 1, 10, 0);
    bad[3073] = 10;
    std::fs::write(bin.join("test_batch.bin"), bad).unwrap();
    assert!(load_err(Kind::Cifar10, &bin).contains("label 10 is out of range for 10 classes"));
    std::fs::remove_file(bin.join("data_batch_3.bin")).unwrap();
    assert!(load_err(Kind::Cifar10, &bin).contains("missing data_batch_3.bin"));
    std::fs::write(dir.path().join("junk.tar.gz"), b"not an archive").unwrap();
    assert!(load_err(Kind::Cifar10, &dir.path().join("junk.tar.gz")).contains("archive"));
}

#[test]
fn cifar100_uses_fine_labels() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("train.bin"), cifar_records(5, 2, 100, 90)).unwrap();
    std::fs::write(dir.path().join("test.bin"), cifar_records(2, 2, 100, 0)).unwrap();
    let s = datasets::load(Kind::Cifar100, dir.path(), 0.1, 0).unwrap();
    assert_eq!(s.train.labels, vec![90, 91, 92, 93, 94]);
    assert_eq!(s.train.classes.len(), 100);
    assert_eq!(s.train.image(0)[1024], 80);
}

fn save_image(path: &Path, w: u32, h: u32, gray: bool, seed: u8) {
    if gray {
        image::GrayImage::from_fn(w, h, |x, y| image::Luma([(x + y) as u8 ^ seed])).save(path).unwrap();
    } else {
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, seed])).save(path).unwrap();
    }
}

#[test]
fn image_folder_with_split_and_with_train_val() {
    let dir = tempfile::tempdir().unwrap();
    for (class, n) in [("cat", 6), ("dog", 4)] {
        let d = dir.path().join(class);
        std::fs::create_dir(&d).unwrap();
        for i in 0..n {
            let ext = if i % 2 == 0 { "png" } else { "jpg" };
            save_image(&d.join(format!("{i}.{ext}")), 20 + i, 30, i % 3 == 0, i as u8);
        }
        std::fs::write(d.join("notes.txt"), "not an image").unwrap();
    }
    let s = datasets::load(Kind::Folder, dir.path(), 0.2, 1).unwrap();
    assert_eq!(s.train.classes, vec!["cat", "dog"]);
    assert_eq!((s.train.len(), s.test.len()), (8, 2));
    assert_eq!((s.train.channels, s.train.h, s.train.w), (3, datasets::FOLDER_SIZE, datasets::FOLDER_SIZE));
    // train/ and val/ sub-folders are used as given.
    let tv = tempfile::tempdir().unwrap();
    for split in ["train", "val"] {
        for class in ["a", "b", "c"] {
            let d = tv.path().join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            save_image(&d.join("x.png"), 8, 8, false, 3);
        }
    }
    let s = datasets::load(Kind::Folder, tv.path(), 0.2, 1).unwrap();
    assert_eq!((s.train.len(), s.test.len(), s.train.classes.len()), (3, 3, 3));
    // Errors: no class folders, class folders without images, a broken image.
    let empty = tempfile::tempdir().unwrap();
    assert!(load_err(Kind::Folder, empty.path()).contains("no class sub-folders"));
    std::fs::create_dir(empty.path().join("cls")).unwrap();
    assert!(load_err(Kind::Folder, empty.path()).contains("hold no images"));
    std::fs::write(empty.path().join("cls").join("bad.png"), b"\x89PNG garbage").unwrap();
    let e = load_err(Kind::Folder, empty.path());
    assert!(e.contains("bad.png") && e.contains("not a readable image"), "{e}");
}

#[test]
fn preprocessing_normalises_crops_flips_and_converts() {
    let s = 6;
    let src: Vec<u8> = (0..s * s).map(|i| (i * 7) as u8).collect();
    let pre = Preprocess { mean: vec![0.5], std: vec![0.25], pad: 0, flip: false };
    let mut out = vec![0f32; s * s];
    pre.apply(&src, 1, s, &mut out, None);
    for i in 0..s * s {
        assert!((out[i] - (src[i] as f32 / 255.0 - 0.5) / 0.25).abs() < 1e-6);
    }
    // With padding and flips, every output is a shifted (possibly mirrored) copy or the padding value.
    let pre = Preprocess { mean: vec![0.0], std: vec![1.0], pad: 2, flip: true };
    let (mut shifted, mut flipped) = (false, false);
    for b in 0..40 {
        let mut rng = preprocess::batch_rng(3, 0, b);
        pre.apply(&src, 1, s, &mut out, Some(&mut rng));
        let found = (-2isize..=2).flat_map(|dy| (-2isize..=2).map(move |dx| (dy, dx))).flat_map(|d| [(d, false), (d, true)]).find(
            |&((dy, dx), f)| {
                (0..s).all(|y| {
                    (0..s).all(|x| {
                        let sx = if f { s - 1 - x } else { x } as isize + dx;
                        let sy = y as isize + dy;
                        let v = if sy >= 0 && sx >= 0 && (sy as usize) < s && (sx as usize) < s {
                            src[sy as usize * s + sx as usize]
                        } else {
                            0
                        };
                        (out[y * s + x] - v as f32 / 255.0).abs() < 1e-6
                    })
                })
            },
        );
        let ((dy, dx), f) = found.expect("output is a crop of the padded image");
        shifted |= dy != 0 || dx != 0;
        flipped |= f;
    }
    assert!(shifted && flipped, "crops and flips should both occur");
    // Same seed, epoch and batch: same augmentation.
    let (mut a, mut b) = (vec![0f32; s * s], vec![0f32; s * s]);
    pre.apply(&src, 1, s, &mut a, Some(&mut preprocess::batch_rng(9, 2, 5)));
    pre.apply(&src, 1, s, &mut b, Some(&mut preprocess::batch_rng(9, 2, 5)));
    assert_eq!(a, b);
    // Gray to RGB copies; RGB to gray uses luminance; sizes are brought to the model's.
    let gray = data::Dataset { name: "t".into(), images: src.clone(), labels: vec![0], channels: 1, h: s, w: s, classes: vec!["x".into()] };
    let rgb = preprocess::conform(&gray, 3, s);
    assert_eq!(&rgb.images[..s * s], &rgb.images[s * s..2 * s * s]);
    assert_eq!(&rgb.images[..s * s], &src[..]);
    let back = preprocess::conform(&rgb, 1, 12);
    assert_eq!((back.channels, back.h, back.images.len()), (1, 12, 144));
}

#[test]
fn batches_drop_or_pad_and_cover_the_data() {
    let ds = std::sync::Arc::new(data::Dataset {
        name: "t".into(),
        images: (0..10u8).flat_map(|i| [i; 4]).collect(),
        labels: (0..10).collect(),
        channels: 1,
        h: 2,
        w: 2,
        classes: (0..10).map(|i| i.to_string()).collect(),
    });
    let pre = std::sync::Arc::new(Preprocess { mean: vec![0.0], std: vec![1.0], pad: 0, flip: false });
    let train: Vec<_> = augment::batches(ds.clone(), pre.clone(), 4, 1, 0, true).unwrap().into_iter().collect();
    assert_eq!(train.len(), 2, "the last incomplete batch is dropped in training");
    let mut seen: Vec<u32> = train.iter().flat_map(|b| b.labels.clone()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 8, "no image twice in an epoch");
    let eval: Vec<_> = augment::batches(ds, pre, 4, 1, 0, false).unwrap().into_iter().collect();
    assert_eq!(eval.iter().map(|b| b.valid).collect::<Vec<_>>(), vec![4, 4, 2]);
    assert_eq!(eval[2].labels[..2], [8, 9]);
    assert_ne!(preprocess::epoch_order(10, 1, 0, true), preprocess::epoch_order(10, 1, 1, true), "each epoch reshuffles");
}

#[test]
fn cosine_schedule_per_step_with_warmup() {
    assert_eq!(learning_rate(0.1, 0, 0, 100), 0.1);
    assert!((learning_rate(0.1, 50, 0, 100) - 0.05).abs() < 1e-7);
    assert!(learning_rate(0.1, 99, 0, 100) < 1e-4);
    // Warm-up rises linearly to the peak, then the cosine starts from it.
    assert!((learning_rate(0.1, 0, 10, 110) - 0.01).abs() < 1e-7);
    assert!((learning_rate(0.1, 9, 10, 110) - 0.1).abs() < 1e-7);
    assert_eq!(learning_rate(0.1, 10, 10, 110), 0.1);
    assert!((learning_rate(0.1, 60, 10, 110) - 0.05).abs() < 1e-7);
    let mut prev = f32::MAX;
    for s in 10..110 {
        let lr = learning_rate(0.1, s, 10, 110);
        assert!(lr <= prev);
        prev = lr;
    }
}
