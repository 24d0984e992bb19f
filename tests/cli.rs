//! The binary's commands on real inputs: images of every format and colour type, folders,
//! JSON output parsed back, summary totals, eval, grid and bench.

mod common;
use spgnet::checkpoint::{self, Checkpoint, Metadata};
use spgnet::model::{ModelConfig, Variant};
use std::path::{Path, PathBuf};
use std::process::Command;

fn spgnet(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_spgnet")).args(args).env("XDG_RUNTIME_DIR", std::env::temp_dir()).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
}

fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l} ({e})"))).collect()
}

/// A randomly initialised Fashion-MNIST-shaped model with full metadata.
fn test_model(dir: &Path) -> PathBuf {
    let mut ck = Checkpoint::initialized(ModelConfig::new(Variant::S2P6, 1, 10), 5);
    ck.meta = Metadata {
        input_size: Some(28),
        classes: Some(spgnet::data::FASHION_CLASSES.iter().map(|s| s.to_string()).collect()),
        mean: Some(vec![0.286]),
        std: Some(vec![0.353]),
        dataset: Some("fashion-mnist".into()),
    };
    let p = dir.join("model.safetensors");
    checkpoint::save(&p, &ck).unwrap();
    p
}

/// One image per format and colour type, of assorted sizes.
fn write_images(dir: &Path) -> Vec<PathBuf> {
    use image::{DynamicImage, ImageBuffer, Luma, LumaA, Rgb, Rgba};
    let g = ImageBuffer::from_fn(28, 28, |x, y| Luma([((x * 9 + y * 3) % 256) as u8]));
    let g16: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_fn(40, 30, |x, y| Luma([(x * 1000 + y * 50) as u16]));
    let ga = ImageBuffer::from_fn(28, 28, |x, _| LumaA([x as u8 * 9, 200]));
    let rgb = ImageBuffer::from_fn(100, 60, |x, y| Rgb([x as u8, y as u8 * 4, 90]));
    let rgba = ImageBuffer::from_fn(17, 33, |x, y| Rgba([x as u8 * 15, y as u8 * 7, 30, 255]));
    let cases: Vec<(&str, DynamicImage)> = vec![
        ("gray.png", g.clone().into()),
        ("gray16.png", g16.into()),
        ("gray_alpha.png", ga.into()),
        ("rgb.jpg", rgb.clone().into()),
        ("rgba.png", rgba.clone().into()),
        ("rgb.bmp", rgb.clone().into()),
        ("rgba.webp", rgba.into()),
        ("rgb.gif", rgb.into()),
        ("gray.tif", g.into()),
    ];
    cases
        .into_iter()
        .filter(|(n, _)| !n.ends_with(".tif"))
        .map(|(name, img)| {
            let p = dir.join(name);
            img.save(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
            p
        })
        .collect()
}

#[test]
fn infer_reads_every_format_and_colour_type() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let imgs = dir.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    let files = write_images(&imgs);
    let mut args = vec!["infer", "--weights", model.to_str().unwrap(), "--json", "--top", "3"];
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(names.iter().map(|s| s.as_str()));
    let (ok, out, err) = spgnet(&args);
    assert!(ok, "{err}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), files.len());
    for (l, f) in lines.iter().zip(&names) {
        assert_eq!(l["image"].as_str().unwrap(), f);
        let top = l["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        let probs: Vec<f64> = top.iter().map(|t| t["prob"].as_f64().unwrap()).collect();
        assert!(probs.windows(2).all(|w| w[0] >= w[1]) && probs.iter().sum::<f64>() <= 1.0 + 1e-5, "{probs:?}");
        let class = top[0]["class"].as_u64().unwrap() as usize;
        assert_eq!(top[0]["name"].as_str().unwrap(), spgnet::data::FASHION_CLASSES[class]);
    }
    // A folder means every image in it, in name order; the text table names each image.
    let (ok, out, err) = spgnet(&["infer", "--weights", model.to_str().unwrap(), "--json", imgs.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(json_lines(&out).len(), files.len());
    // Text: one line per image (path, top classes with probabilities), then a summary line.
    let (ok, out, _) = spgnet(&["infer", "--weights", model.to_str().unwrap(), "--top", "2", &names[0]]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(ok && lines.len() == 2 && lines[0].starts_with(&format!("{}  ", names[0])) && lines[0].matches('%').count() == 2, "{out}");
    assert!(lines[1].starts_with("1 image in ") && lines[1].contains("img/s"), "{out}");
    let (ok, out, _) = spgnet(&["infer", "--weights", model.to_str().unwrap(), imgs.to_str().unwrap()]);
    assert!(ok && out.lines().count() == files.len() + 1 && out.lines().all(|l| l.matches('%').count() <= 1), "{out}");
}

/// `spgnet summary | head -1`: a reader that stops early is not an error (exit 0, nothing said).
#[test]
fn closed_stdout_ends_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_spgnet")).arg("summary").stdout(writer).output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
}

#[test]
fn summary_totals() {
    let (ok, out, _) = spgnet(&["summary"]);
    assert!(ok);
    assert!(out.contains("layers.14.conv_out"), "{out}");
    let total = out.lines().last().unwrap();
    assert!(
        total.contains("3266004 trainable values")
            && total.contains("21496 BN running statistics")
            && total.contains("7.02 M multiply-adds per 32x32"),
        "{total}"
    );
    let (ok, out, _) = spgnet(&["summary", "--version", "s2p9", "--size", "224", "--classes", "1000"]);
    assert!(ok && out.lines().last().unwrap().contains("per 224x224"));
}

#[test]
fn eval_grid_and_bench_on_real_data() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    // The picture's format follows its extension (a JPEG here).
    let plot = dir.path().join("cm.jpg");
    let (ok, out, err) = spgnet(&[
        "eval",
        "--dataset",
        "fashion-mnist",
        "--weights",
        model.to_str().unwrap(),
        "--limit",
        "40",
        "--batch",
        "16",
        "--json",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let j = &json_lines(&out)[0];
    assert_eq!(j["images"].as_u64(), Some(40));
    let acc = j["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc) && j["top5"].as_f64().unwrap() >= acc && j["img_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(image::ImageReader::open(&plot).unwrap().with_guessed_format().unwrap().format(), Some(image::ImageFormat::Jpeg));
    assert!(image::open(&plot).is_ok());
    let (ok, out, _) = spgnet(&["eval", "--dataset", "fashion-mnist", "--weights", model.to_str().unwrap(), "--limit", "20"]);
    assert!(ok && out.contains("confusion matrix") && out.contains("Ankle boot"), "{out}");
    let grid = dir.path().join("grid.png");
    let (ok, out, err) = spgnet(&[
        "grid",
        "--dataset",
        "fashion-mnist",
        "--weights",
        model.to_str().unwrap(),
        "--out",
        grid.to_str().unwrap(),
        "--count",
        "12",
    ]);
    assert!(ok && out.contains("12 test images"), "{err}");
    assert_eq!(image::open(&grid).unwrap().width(), 8 * 136 + 10);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");
    let (ok, out, err) = spgnet(&["bench", "--batch", "2", "--size", "32", "--steps", "1", "--json"]);
    assert!(ok, "{err}");
    let b = &json_lines(&out)[0];
    assert!(b["train_img_per_s"].as_f64().unwrap() > 0.0 && b["infer_img_per_s"].as_f64().unwrap() > 0.0);
    assert!(b["adapter"].as_str().unwrap().len() > 3);
    assert_eq!(b["buffers_after_first_step"], b["buffers_after_last_step"], "a training step must create no buffers");
    // --profile: every kernel's time, share and GFLOP/s, for the training step and for inference
    let (ok, out, err) = spgnet(&["bench", "--batch", "2", "--size", "32", "--steps", "1", "--profile"]);
    assert!(ok, "{err}");
    for title in ["kernel (training step)", "kernel (inference pass)"] {
        let table: Vec<&str> =
            out.lines().skip_while(|l| !l.starts_with(title)).skip(1).take_while(|l| !l.trim().is_empty() && !l.starts_with('(')).collect();
        let shares: f64 =
            table.iter().map(|l| l.split_whitespace().rev().nth(1).unwrap().trim_end_matches('%').parse::<f64>().unwrap()).sum();
        assert!((shares - 100.0).abs() < 2.0, "{title}: shares add up to {shares}\n{out}");
        assert!(
            table.iter().any(|l| l.starts_with("conv.tiny.forward")),
            "{title}: stage 2's convs should run on the tiny-map GEMMs\n{out}"
        );
    }
    // the footnote: the submit cost taken off each dispatch, and what the kernels sum to
    let note = out.lines().find(|l| l.starts_with("(each dispatch")).unwrap_or_else(|| panic!("no footnote\n{out}"));
    let numbers: Vec<f64> = note.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert_eq!(numbers.len(), 5, "{note}");
    assert!(numbers.iter().all(|&x| x >= 0.0) && numbers[1] > 0.0 && numbers[3] > 0.0, "{note}");
    // --profile --json: one JSON line with every row of the tables (none cut off)
    let (ok, out, err) = spgnet(&["bench", "--batch", "2", "--size", "32", "--steps", "1", "--profile", "--json"]);
    assert!(ok, "{err}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "one JSON line, no tables:\n{out}");
    let p = &lines[0]["profile"];
    let rows = |key: &str| p[key].as_array().unwrap_or_else(|| panic!("profile.{key} missing:\n{out}")).clone();
    let (kernels, pairs) = (rows("train_kernels"), rows("train_layer_kernels"));
    let ms = |rows: &[serde_json::Value]| rows.iter().map(|k| k["ms"].as_f64().unwrap()).sum::<f64>();
    assert!(pairs.len() > 40, "every (layer, kernel) row: {}", pairs.len());
    assert!((ms(&kernels) - ms(&pairs)).abs() < 1e-6 * ms(&kernels).max(1.0), "the layer-kernel rows sum to the kernels'");
    assert!(rows("infer_kernels").iter().any(|k| k["label"] == "conv.tiny.forward_bn" && k["gflops"].as_f64().unwrap() > 0.0));
    assert!(p["submit_ms"].as_f64().unwrap() >= 0.0 && p["train_step_ms"].as_f64().unwrap() > 0.0);
}
