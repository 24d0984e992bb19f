"""Convert the released PyTorch SPGNet checkpoint (a .tar/.pth holding a state_dict) to
safetensors that `spgnet` loads.

usage: python3 tools/convert_pytorch.py CHECKPOINT.tar OUT.safetensors [--input-size 224]
       python3 tools/convert_pytorch.py --self-test OUT.safetensors   (no PyTorch needed)

Needs PyTorch to read the checkpoint; writing needs nothing beyond the standard library.
Keys may be wrapped ('state_dict', 'model', 'module.' prefixes from DataParallel); every
tensor is written C-contiguous in its own dtype (f32 weights, i64 num_batches_tracked).
The released ImageNet recipe feeds images in [0, 1] without normalisation at 224x224:
the metadata says so (mean 0, std 1), so `spgnet infer` preprocesses the same way.
"""
import json, struct, sys

DTYPES = {"float32": ("F32", "<f"), "float64": ("F64", "<d"), "float16": ("F16", "<e"), "int64": ("I64", "<q"), "int32": ("I32", "<i")}


def write_safetensors(path, tensors, metadata):
    """tensors: name -> (dtype name, shape, flat list of numbers in C order)."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        dtype, shape, values = tensors[name]
        code, fmt = DTYPES[dtype]
        blob = struct.pack("<%d%s" % (len(values), fmt[1]), *values)
        header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for b in blobs:
            f.write(b)
    import os
    os.replace(tmp, path)


def state_dict_of(obj):
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            return obj[key]
    return obj


def convert(src, dst, input_size):
    import torch
    obj = torch.load(src, map_location="cpu", weights_only=False)
    sd = state_dict_of(obj)
    tensors = {}
    for key, t in sd.items():
        name = key[len("module."):] if key.startswith("module.") else key
        t = t.detach().cpu().contiguous()  # C order: a transposed view would be written scrambled
        dtype = str(t.dtype).replace("torch.", "")
        if dtype not in DTYPES:
            t, dtype = t.float(), "float32"
        tensors[name] = (dtype, tuple(t.shape), t.reshape(-1).tolist())
    channels = tensors["first_conv.0.conv.weight"][1][1]
    meta = {"spgnet.input_size": str(input_size), "spgnet.mean": ",".join(["0"] * channels), "spgnet.std": ",".join(["1"] * channels)}
    write_safetensors(dst, tensors, meta)
    print("wrote %d tensors to %s" % (len(tensors), dst))


def self_test(dst):
    """A state dict of SPGNet s2p6 (3 channels, 10 classes) in PyTorch naming, values i * 1e-3 +
    tensor index, written by this script's writer; spgnet's test loads and checks it."""
    spec = json.load(sys.stdin)  # [[name, shape], ...] in state-dict order
    tensors = {}
    for k, (name, shape) in enumerate(spec):
        n = 1
        for d in shape:
            n *= d
        tensors[name] = ("float32", tuple(shape), [i * 1e-3 + k for i in range(n)])
    tensors["layers.0.conv1.bn.num_batches_tracked"] = ("int64", (), [7])
    write_safetensors(dst, tensors, {"spgnet.input_size": "32"})


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--self-test":
        self_test(args[1])
    elif len(args) in (2, 4) and (len(args) == 2 or args[2] == "--input-size"):
        convert(args[0], args[1], int(args[3]) if len(args) == 4 else 224)
    else:
        sys.exit(__doc__)
