#!/usr/bin/env bash
# Side-by-side throughput of spgnet and a peer framework on this machine: ROUNDS alternating runs
# of each (the machine's speed drifts, so never compare runs made minutes apart), then each
# side's runs, the medians, and the ratios spgnet / peer per round (median, min-max spread).
# usage: scripts/bench_peer.sh NAME PYTHON SCRIPT [ROUNDS] [BATCH] [SIZE]
# (scripts/bench_vs_torch.sh and scripts/bench_vs_paddle.sh call it with their peer).
set -euo pipefail
name=$1 py=$2 ref=$3
rounds=${4:-3} batch=${5:-64} size=${6:-32}
bin=${SPGNET:-target/release/spgnet}
[ -x "$bin" ] || { echo "$bin is missing: cargo build --release" >&2; exit 1; }
[ -x "$py" ] || { echo "$py is missing: see the usage lines of scripts/bench_vs_$name.sh" >&2; exit 1; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for i in $(seq "$rounds"); do
  "$bin" bench --batch "$batch" --size "$size" --steps 5 --json 2>/dev/null | tail -1 | sed 's/^/spgnet /' >> "$out"
  "$py" "$ref" --batch "$batch" --size "$size" --steps 5 2>/dev/null | tail -1 | sed "s/^/$name /" >> "$out"
done
python3 - "$out" "$name" "$batch" "$size" <<'PY'
import json, statistics, sys
path, peer, batch, size = sys.argv[1:]
runs = {"spgnet": [], peer: []}
for line in open(path):
    who, js = line.split(" ", 1)
    runs[who].append(json.loads(js))
keys = ["train_img_per_s", "infer_img_per_s"]
if all("ort_img_per_s" in r for r in runs[peer]):
    keys.append("ort_img_per_s")
print(f"s2p6, {size}x{size}, batch {batch}, {len(runs['spgnet'])} alternating rounds")
for who, rs in runs.items():
    for k in keys:
        if k in rs[0]:
            print(f"  {who:7} {k[:-10]:6} img/s " + " ".join(f"{r[k]:7.1f}" for r in rs))
result = {"rounds": len(runs["spgnet"]), "batch": int(batch), "size": int(size)}
for who, rs in runs.items():
    result[who] = {k: statistics.median(r[k] for r in rs) for k in keys if k in rs[0]}
pairs = [("train", "train_img_per_s", "train_img_per_s"), ("infer", "infer_img_per_s", "infer_img_per_s")]
if "ort_img_per_s" in keys:
    pairs.append(("infer_vs_onnxruntime", "infer_img_per_s", "ort_img_per_s"))
for label, ours, theirs in pairs:
    ratios = [a[ours] / b[theirs] for a, b in zip(runs["spgnet"], runs[peer])]
    result[f"{label}_ratio"] = {"median": round(statistics.median(ratios), 3), "min": round(min(ratios), 3), "max": round(max(ratios), 3)}
    print(f"  spgnet / {peer} {label}: {statistics.median(ratios):.2f}x (rounds {min(ratios):.2f}-{max(ratios):.2f}x)")
print(json.dumps(result))
PY
