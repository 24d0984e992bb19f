"""The memorisation test on the independent Paddle reference (../shared/reference/spgnet_paddle.py):
SPGNet s2p6 trained on the first N Fashion-MNIST training images, no augmentation, no weight
decay or label smoothing, SGD momentum 0.9 with a per-step cosine; prints train accuracy (in
train mode, over each epoch's batches) and test accuracy on the first N test images (eval mode)
per epoch. `--init released` draws the released code's initialisation (docs/spgnet.md), as
spgnet does; `--init default` keeps Paddle's own. Compare with
`spgnet train --dataset fashion-mnist --limit N --epochs E --batch B --lr LR --weight-decay 0
--label-smoothing 0 --crop-pad 0 --flip false`.
usage: /tmp/pd/bin/python tools/paddle_fit_check.py [--n 2000] [--epochs 10] [--lr 0.01]
"""
import os, sys, gzip, time, argparse, numpy as np, paddle
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "reference"))
from spgnet_paddle import SPGNet
ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=2000); ap.add_argument("--epochs", type=int, default=10)
ap.add_argument("--lr", type=float, default=0.01); ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--init", default="released"); ap.add_argument("--size", type=int, default=28)
ap.add_argument("--wd", type=float, default=0.0)
a = ap.parse_args()
paddle.seed(0); np.random.seed(0)
def idx(p, off):
    return np.frombuffer(gzip.open(p).read(), np.uint8, offset=off)
D = "/usr/share/datasets/fashion-mnist/"
xtr = idx(D+"train-images-idx3-ubyte.gz", 16).reshape(-1,1,28,28)[:a.n].astype(np.float32)/255
ytr = idx(D+"train-labels-idx1-ubyte.gz", 8)[:a.n].astype(np.int64)
xte = idx(D+"t10k-images-idx3-ubyte.gz", 16).reshape(-1,1,28,28)[:a.n].astype(np.float32)/255
yte = idx(D+"t10k-labels-idx1-ubyte.gz", 8)[:a.n].astype(np.int64)
m, s = xtr.mean(), xtr.std()
xtr = (xtr-m)/s; xte = (xte-m)/s
if a.size != 28:
    import paddle.nn.functional as F
    up = lambda x: F.interpolate(paddle.to_tensor(x), size=[a.size,a.size], mode="bilinear").numpy()
    xtr, xte = up(xtr), up(xte)
model = SPGNet(10, "s2p6", in_channels=1)
if a.init == "released":
    for name, p in model.named_parameters():
        sh = p.shape
        if "bn" in name or len(sh) == 1 or name.split(".")[-2] in ("1", "3") and "skip" in name:
            if name.endswith("weight"): p.set_value(np.ones(sh, np.float32))
            else: p.set_value(np.full(sh, 1e-4, np.float32))
        elif len(sh) == 4:
            std = 0.01 if name.startswith("first_conv") else 1.0 / sh[1]
            p.set_value(np.random.normal(0, std, sh).astype(np.float32))
        elif len(sh) == 2:
            p.set_value(np.random.normal(0, 0.01, sh).astype(np.float32))
steps = a.epochs * (a.n // a.batch)
sched = paddle.optimizer.lr.CosineAnnealingDecay(a.lr, steps)
opt = paddle.optimizer.Momentum(sched, momentum=0.9, parameters=model.parameters(), weight_decay=a.wd if a.wd else None)
for ep in range(a.epochs):
    model.train(); perm = np.random.permutation(a.n); corr = tot = 0; t0 = time.time()
    for i in range(a.n // a.batch):
        b = perm[i*a.batch:(i+1)*a.batch]
        x = paddle.to_tensor(xtr[b]); y = paddle.to_tensor(ytr[b])
        out = model(x); loss = paddle.nn.functional.cross_entropy(out, y)
        loss.backward(); opt.step(); opt.clear_grad(); sched.step()
        corr += int((out.argmax(1) == y).sum()); tot += len(b)
    model.eval(); c2 = 0
    with paddle.no_grad():
        for i in range(0, a.n, 500):
            c2 += int((model(paddle.to_tensor(xte[i:i+500])).argmax(1) == paddle.to_tensor(yte[i:i+500])).sum())
    print(f"epoch {ep+1}: train acc {corr/tot:.4f} loss {float(loss):.4f} test acc {c2/a.n:.4f} ({time.time()-t0:.0f}s)", flush=True)
