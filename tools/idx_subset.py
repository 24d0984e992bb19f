"""Write the first images of an IDX dataset (MNIST format, gzipped) as a smaller one.

The web page bundles a training subset this way (scripts/build_web.sh): the first TRAIN
training and TEST test images with their labels, gzipped IDX files of the same names.
usage: python3 tools/idx_subset.py SRC_DIR OUT_DIR [--train 2048] [--test 512]
"""
import argparse, gzip, os, struct, sys

ap = argparse.ArgumentParser()
ap.add_argument("src"); ap.add_argument("out")
ap.add_argument("--train", type=int, default=2048); ap.add_argument("--test", type=int, default=512)
a = ap.parse_args()


def read(path):
    for p in (path + ".gz", path):
        if os.path.exists(p):
            with (gzip.open(p) if p.endswith(".gz") else open(p, "rb")) as f:
                return f.read()
    sys.exit(f"{path}[.gz]: missing (install the dataset: apt-get install dataset-fashion-mnist)")


def subset(data, n):
    zero, dtype, rank = data[0:2], data[2], data[3]
    if zero != b"\0\0" or dtype != 8:
        sys.exit("not an IDX file of u8 data")
    dims = list(struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank]))
    n = min(n, dims[0])
    per = 1
    for d in dims[1:]:
        per *= d
    head = data[:4] + struct.pack(">" + "I" * rank, n, *dims[1:])
    return head + data[4 + 4 * rank:4 + 4 * rank + n * per]


os.makedirs(a.out, exist_ok=True)
for prefix, n in (("train", a.train), ("t10k", a.test)):
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        name = f"{prefix}-{kind}"
        with open(os.path.join(a.out, name + ".gz"), "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:  # same bytes on every build
                f.write(subset(read(os.path.join(a.src, name)), n))
