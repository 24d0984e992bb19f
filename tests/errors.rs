//! Bad input through the binary: one line on stderr starting with `error:` that names the file
//! or flag and what is wrong, exit code 1 (2 for usage errors, from clap), never a panic.

use std::path::Path;
use std::process::Command;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spgnet"));
    c.args(args).env("XDG_RUNTIME_DIR", std::env::temp_dir());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).to_string())
}

/// Exit code 1 and an `error:` line containing every `needles`.
fn fails(args: &[&str], needles: &[&str]) {
    let (code, err) = run(args, &[]);
    let line = err.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("{args:?}: no error line in {err}"));
    assert_eq!(code, 1, "{args:?}: {err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{args:?} panicked: {err}");
    for n in needles {
        assert!(line.contains(n), "{args:?}: '{line}' lacks '{n}'");
    }
}

fn png_with_size(path: &Path, w: u32, h: u32) {
    // A valid PNG header claiming w x h pixels, with no image data behind it.
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    let mut crc = flate2::Crc::new();
    crc.update(&ihdr);
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend(13u32.to_be_bytes());
    bytes.extend(&ihdr);
    bytes.extend(crc.sum().to_be_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn bad_images() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n).to_str().unwrap().to_string();
    let model = spgnet::infer::default_weights();
    let w = model.to_str().unwrap();
    fails(&["infer", "--weights", w, &p("missing.png")], &["missing.png", "cannot read"]);
    std::fs::write(p("empty.png"), b"").unwrap();
    fails(&["infer", "--weights", w, &p("empty.png")], &["empty.png", "not a readable image"]);
    image::RgbImage::new(30, 30).save(p("full.png")).unwrap();
    let bytes = std::fs::read(p("full.png")).unwrap();
    std::fs::write(p("truncated.png"), &bytes[..bytes.len() / 2]).unwrap();
    fails(&["infer", "--weights", w, &p("truncated.png")], &["truncated.png", "not a readable image"]);
    std::fs::write(p("text.jpg"), b"this is not a picture").unwrap();
    fails(&["infer", "--weights", w, &p("text.jpg")], &["text.jpg", "not a readable image"]);
    png_with_size(&d.path().join("bomb.png"), 100_000, 100_000);
    fails(&["infer", "--weights", w, &p("bomb.png")], &["bomb.png", "not a readable image"]);
    std::fs::create_dir(p("no_images")).unwrap();
    fails(&["infer", "--weights", w, &p("no_images")], &["no_images", "holds no images"]);
}

#[test]
fn bad_weights() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n).to_str().unwrap().to_string();
    image::GrayImage::new(28, 28).save(p("x.png")).unwrap();
    let good = std::fs::read(spgnet::infer::default_weights()).unwrap();
    std::fs::write(p("truncated.safetensors"), &good[..good.len() - 1000]).unwrap();
    fails(&["infer", "--weights", &p("truncated.safetensors"), &p("x.png")], &["truncated.safetensors", "not a valid safetensors file"]);
    let mut huge = good.clone();
    huge[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(p("oversized.safetensors"), &huge).unwrap();
    fails(&["infer", "--weights", &p("oversized.safetensors"), &p("x.png")], &["oversized.safetensors", "not a valid safetensors file"]);
    let mut garbled = good.clone();
    garbled[8..20].copy_from_slice(b"{{{{{{{{{{{{");
    std::fs::write(p("garbled.safetensors"), &garbled).unwrap();
    fails(&["infer", "--weights", &p("garbled.safetensors"), &p("x.png")], &["garbled.safetensors", "not a valid safetensors file"]);
    fails(&["infer", "--weights", &p("none.safetensors"), &p("x.png")], &["none.safetensors", "cannot read"]);
    fails(&["infer", "--weights", d.path().to_str().unwrap(), &p("x.png")], &["is a folder"]);
}

#[test]
fn bad_datasets_and_flags() {
    let d = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let out = d.path().join("run");
    let o = out.to_str().unwrap();
    fails(&["train", "--dataset", "fashion-mnist", "--data", dir, "--out", o], &["missing train-images-idx3-ubyte"]);
    fails(&["train", "--dataset", "cifar10", "--data", dir, "--out", o], &["missing data_batch_1.bin"]);
    fails(&["train", "--dataset", "folder", "--data", dir, "--out", o], &["no class sub-folders"]);
    fails(&["train", "--dataset", "imagenet", "--data", dir], &["unknown dataset 'imagenet'"]);
    fails(&["train", "--dataset", "cifar10"], &["--data is required"]);
    fails(&["train", "--dataset", "fashion-mnist", "--epochs", "0", "--out", o], &["--epochs", "between 1 and"]);
    fails(&["train", "--dataset", "fashion-mnist", "--lr=-1", "--out", o], &["--lr"]);
    fails(&["train", "--dataset", "fashion-mnist", "--batch", "0", "--out", o], &["--batch"]);
    fails(&["train", "--dataset", "fashion-mnist", "--momentum", "1.5", "--out", o], &["--momentum"]);
    fails(
        &["train", "--dataset", "fashion-mnist", "--limit", "100", "--batch", "512", "--out", o],
        &["--batch 512 is larger than the training set (100 images)"],
    );
    fails(&["train", "--version", "s2p5", "--dataset", "fashion-mnist"], &["unknown SPGNet version 's2p5'"]);
    fails(&["train", "--resume", dir], &["nothing to resume"]);
    fails(&["summary", "--size", "0"], &["must be positive"]);
    // Too big for the adapter's per-binding limit: said before any step, with the tensor, the
    // limit and the batch that fits it.
    fails(
        &["bench", "--batch", "300", "--size", "224", "--steps", "1"],
        &[
            "batch 300 at 224x224 does not fit this adapter: a tensor of shape [300, 3, 224, 224] needs",
            "x this adapter's limit of",
            "use --batch",
            "or less",
        ],
    );
    // Usage errors are clap's: exit code 2.
    let (code, err) = run(&["train", "--epochs", "many"], &[]);
    assert_eq!(code, 2, "{err}");
    let (code, _) = run(&["no-such-command"], &[]);
    assert_eq!(code, 2);
}

#[test]
fn bad_picture_paths_are_refused_before_any_work() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("no-such-folder").join("grid.png");
    let text = d.path().join("cm.txt");
    let cases: [(&[&str], &[&str]); 2] = [
        (&["grid", "--dataset", "fashion-mnist", "--out", missing.to_str().unwrap()], &["grid.png", "no-such-folder does not exist"]),
        (&["eval", "--dataset", "fashion-mnist", "--plot", text.to_str().unwrap()], &["cm.txt", ".png, .jpg or .bmp"]),
    ];
    for (args, needles) in cases {
        fails(args, needles);
        let (_, err) = run(args, &[]);
        assert!(!err.contains("adapter:"), "{args:?}: the path was checked only after opening the GPU: {err}");
    }
    assert!(!text.exists());
}

#[test]
fn no_adapter_says_how_to_get_one() {
    // Linux has no Metal: asking for it is the same as having no adapter at all.
    let (code, err) = run(&["bench", "--backend", "metal"], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no GPU adapter found") && err.contains("mesa-vulkan-drivers"), "{err}");
    let (code, err) = run(&["bench"], &[("WGPU_ADAPTER_NAME", "no-such-gpu")]);
    assert_eq!(code, 1);
    assert!(err.contains("WGPU_ADAPTER_NAME='no-such-gpu' matches no adapter"), "{err}");
    let (code, err) = run(&["bench", "--backend", "quantum"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown backend 'quantum'"), "{err}");
}

#[test]
fn a_batch_too_large_for_the_adapter_says_which_batch_fits() {
    // 4096 images of 224x224: the input alone is 18x the adapter's largest binding (lavapipe)
    fails(
        &["bench", "--batch", "4096", "--size", "224", "--steps", "1"],
        &["batch 4096 at 224x224 does not fit this adapter", "use --batch", "or less"],
    );
    let (_, err) = run(&["bench", "--batch", "4096", "--size", "224", "--steps", "1"], &[]);
    assert!(!err.contains("Validation Error"), "a plain message, not wgpu's: {err}");
}
