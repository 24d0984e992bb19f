//! Layers only point down: every module of src/ refers (through `crate::` or `super::`) only to
//! modules listed before it here, so the portable core never reaches into the native commands
//! and the engine never into the kernels. docs/design.md describes the same list.

use std::path::{Path, PathBuf};

/// From the bottom layer up.
const LAYERS: &[&str] = &[
    "kernel_table", // the macro the op modules declare their kernels with (gpu::kernel)
    "gpu",
    "files", // atomic writes (native): a leaf that checkpoint's file functions use
    "ops::batchnorm",
    "ops::elementwise",
    "ops::pool",
    "ops::loss",
    "ops::sgd",
    "ops::gemm",
    "ops::dense",
    "ops::conv",
    "ops::linear",
    "ops",
    "model",
    "checkpoint",
    "network",
    "data",
    "preprocess",
    "classify",
    "onnx",
    "fit",
    "debug_step",
    "bench",
    "summary",
    "reference",
    "datasets",
    "augment",
    "plot",
    "infer",
    "train",
];

/// The layer a `::`-path within the crate names: the longest entry of LAYERS it starts with.
fn layer_of(path: &str) -> Option<usize> {
    (0..LAYERS.len()).filter(|&i| path == LAYERS[i] || path.starts_with(&format!("{}::", LAYERS[i]))).max_by_key(|&i| LAYERS[i].len())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file under src/: "ops::conv" for src/ops/conv/mod.rs, "ops::conv::forward"
/// for src/ops/conv/forward.rs (whose layer is ops::conv's).
fn module_of(rel: &Path) -> String {
    let parts: Vec<String> = rel.with_extension("").iter().map(|s| s.to_string_lossy().to_string()).collect();
    let parts = if parts.last().is_some_and(|l| l == "mod") { &parts[..parts.len() - 1] } else { &parts[..] };
    parts.join("::")
}

/// Every crate path a file refers to, `super::` resolved against its module, `{a, b}` expanded.
fn references(text: &str, module: &str) -> Vec<String> {
    let mut out = Vec::new();
    // unit tests (a file's `#[cfg(test)]` module, at its end) may use anything
    let text = text.split("#[cfg(test)]").next().unwrap_or(text);
    let code: String = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    for (i, _) in code.match_indices("crate::").chain(code.match_indices("super::")) {
        if i > 0 && (code.as_bytes()[i - 1].is_ascii_alphanumeric() || code.as_bytes()[i - 1] == b'$') {
            continue;
        }
        let rest = &code[i..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '{' || c == '}' || c == ',' || c == ' '))
            .unwrap_or(rest.len());
        let mut path = rest[..end].trim().to_string();
        // resolve super:: chains against the file's module
        let mut base: Vec<&str> = module.split("::").collect();
        if path.starts_with("crate::") {
            path = path["crate::".len()..].to_string();
        } else {
            while let Some(r) = path.strip_prefix("super::") {
                path = r.to_string();
                base.pop();
            }
            if path == "*" || path.is_empty() || path.starts_with('*') {
                // `use super::*` of an inline `mod tests` names the file's own module
                path = if base.is_empty() { module.to_string() } else { base.join("::") };
            } else {
                path = if base.is_empty() { path } else { format!("{}::{path}", base.join("::")) };
            }
        }
        if let Some((head, group)) = path.split_once("::{") {
            for name in group.trim_end_matches('}').split(',') {
                let name = name.trim().split("::").next().unwrap_or("").trim();
                if !name.is_empty() && name != "self" {
                    out.push(format!("{head}::{name}"));
                } else if name == "self" {
                    out.push(head.to_string());
                }
            }
        } else {
            out.push(path.trim_end_matches("::").to_string());
        }
    }
    out
}

#[test]
fn modules_only_refer_to_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        if rel == Path::new("main.rs") || rel == Path::new("lib.rs") {
            continue; // the top: the command line and the crate root see everything
        }
        let module = module_of(rel);
        let me = layer_of(&module).unwrap_or_else(|| panic!("{}: module {module} is not in LAYERS", rel.display()));
        for r in references(&std::fs::read_to_string(f).unwrap(), &module) {
            let Some(them) = layer_of(&r) else { panic!("{}: refers to crate::{r}, which is not in LAYERS", rel.display()) };
            if them > me {
                wrong.push(format!("{} ({module}) refers to {r}, a layer above it", rel.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
