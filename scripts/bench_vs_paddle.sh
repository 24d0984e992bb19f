#!/usr/bin/env bash
# Side-by-side throughput of spgnet and the PaddlePaddle reference on this machine:
# ROUNDS alternating runs of each (the machine's speed drifts, so never compare runs made
# minutes apart), then the medians and the ratios spgnet / Paddle.
# usage: scripts/bench_vs_paddle.sh [ROUNDS] [BATCH] [SIZE]
# needs: target/release/spgnet, and Paddle in a venv (PADDLE_PY, default /tmp/pd/bin/python:
#   python3 -m venv /tmp/pd && /tmp/pd/bin/pip install paddlepaddle safetensors numpy)
set -euo pipefail
rounds=${1:-3} batch=${2:-64} size=${3:-32}
py=${PADDLE_PY:-/tmp/pd/bin/python}
ref=${PADDLE_BENCH:-../shared/reference/bench_paddle.py}
bin=${SPGNET:-target/release/spgnet}
out=$(mktemp)
for i in $(seq "$rounds"); do
  "$bin" bench --batch "$batch" --size "$size" --steps 5 --json 2>/dev/null | tail -1 | sed 's/^/spgnet /' >> "$out"
  "$py" "$ref" --batch "$batch" --size "$size" --steps 5 2>/dev/null | tail -1 | sed 's/^/paddle /' >> "$out"
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = {"spgnet": [], "paddle": []}
for line in open(sys.argv[1]):
    who, js = line.split(" ", 1)
    runs[who].append(json.loads(js))
med = {w: {k: statistics.median(r[k] for r in rs) for k in ("train_img_per_s", "infer_img_per_s")} for w, rs in runs.items()}
for w, rs in runs.items():
    print(f"{w:7} train " + " ".join(f"{r['train_img_per_s']:6.1f}" for r in rs) + "   infer " + " ".join(f"{r['infer_img_per_s']:6.1f}" for r in rs))
t = med["spgnet"]["train_img_per_s"] / med["paddle"]["train_img_per_s"]
i = med["spgnet"]["infer_img_per_s"] / med["paddle"]["infer_img_per_s"]
print(json.dumps({"rounds": len(runs["spgnet"]), "spgnet": med["spgnet"], "paddle": med["paddle"], "train_ratio": round(t, 3), "infer_ratio": round(i, 3)}))
PY
rm -f "$out"
