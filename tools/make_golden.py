"""Run ../shared/reference/make_golden.py with C-contiguous tensors.

make_golden.py stores the linear-layer gradients as `g.T` (a Fortran-ordered view), and
safetensors.numpy.save_file writes such arrays' raw buffers: grad.fc.weight and
grad.linear.weight come out with [in, out] data under an [out, in] shape. This wrapper
makes every array contiguous before saving and otherwise runs the generator unchanged.

usage: python tools/make_golden.py OUT_DIR [make_golden.py options...]
"""
import os, runpy, sys
import numpy as np
import safetensors.numpy as stn

_save = stn.save_file


def save_contiguous(tensors, path, metadata=None):
    # The marker tells spgnet's golden test that this file's linear gradients are not scrambled.
    if os.path.basename(path).startswith("expected"):
        metadata = dict(metadata or {}, **{"spgnet.contiguous": "1"})
    _save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, path, metadata=metadata)


stn.save_file = save_contiguous
reference = os.environ.get("SPGNET_REFERENCE", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "reference"))
script = os.path.join(reference, "make_golden.py")
sys.argv = [script] + sys.argv[1:]
runpy.run_path(script, run_name="__main__")
