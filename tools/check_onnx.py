"""Runs spgnet's exported ONNX models in ONNX Runtime (CPU) and compares the logits with spgnet's.

Usage: check_onnx.py MANIFEST.json, written by tests/onnx.rs: a list of cases, each with the
model file, its input (raw float32, NCHW), the logits spgnet computed for it (raw float32) and
the metadata the model must carry. Every model must pass onnx.checker (full check, with shape
inference), and every image's logits must agree within `tolerance` of that image's largest
logit. Prints one line per case; exits 1 if any fails.
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


def check(case, root):
    model_path = root / case["onnx"]
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    for key, want in case["metadata"].items():
        if meta.get(key) != want:
            return f"metadata {key!r} is {meta.get(key)!r}, expected {want!r}"
    x = np.fromfile(root / case["input"], dtype="<f4").reshape(case["input_shape"])
    want = np.fromfile(root / case["logits"], dtype="<f4").reshape(x.shape[0], -1)
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    if (inp.name, out.name) != ("input", "logits"):
        return f"input/output named {inp.name!r}/{out.name!r}"
    batch = case["batch"]
    if batch == "dynamic":
        got = session.run(None, {"input": x})[0]
    else:
        got = np.concatenate([session.run(None, {"input": x[i : i + batch]})[0] for i in range(0, len(x), batch)])
    if got.shape != want.shape:
        return f"logits shape {got.shape}, expected {want.shape}"
    scale = np.maximum(np.abs(want).max(axis=1, keepdims=True), 1e-6)
    rel = float((np.abs(got.astype(np.float64) - want) / scale).max())
    same_top1 = int((got.argmax(1) == want.argmax(1)).sum())
    print(f"{case['name']}: {len(x)} images, worst |ORT - spgnet| / max|logit| = {rel:.2e}, top-1 agrees on {same_top1}/{len(x)}")
    if not rel <= case["tolerance"]:
        return f"logits differ by {rel:.3e} relative (tolerance {case['tolerance']})"
    return None


def main():
    manifest = Path(sys.argv[1])
    cases = json.loads(manifest.read_text())
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}")
    failed = 0
    for case in cases:
        error = check(case, manifest.parent)
        if error:
            print(f"FAIL {case['name']}: {error}")
            failed += 1
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
