#!/usr/bin/python3
"""safetensors interop check, independent of hippo's C++ reader (numpy + struct + json only).

  safetensors_interop.py write FILE   write the fixture read by tests/test_safetensors.cpp
  safetensors_interop.py check FILE   read a file (e.g. one hippo wrote), validate it, print it
"""
import json, struct, sys
import numpy as np

NP = {"BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "I16": np.int16, "U16": np.uint16,
      "F16": np.float16, "BF16": np.uint16, "I32": np.int32, "U32": np.uint32, "F32": np.float32,
      "F64": np.float64, "I64": np.int64, "U64": np.uint64, "F8_E4M3": np.uint8, "F8_E5M2": np.uint8}


def write(path):
    tensors = {  # laid out in this order
        "layer.0.weight": ("F32", (np.arange(12, dtype=np.float32) * 0.25 - 1).reshape(3, 4)),
        "token_ids": ("I64", np.array([0, 1, -1, 1 << 40, -(1 << 63)], dtype=np.int64)),
        "half": ("F16", np.array([[1.0, -2.0], [0.5, 65504.0]], dtype=np.float16)),
        "scale": ("F32", np.array(3.0, dtype=np.float32)),  # rank 0
    }
    header, blobs, off = {"__metadata__": {"format": "pt", "writer": "scripts/safetensors_interop.py"}}, [], 0
    for name, (dt, a) in tensors.items():
        b = a.astype(np.dtype(NP[dt]).newbyteorder("<")).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-(8 + len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def check(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    assert 8 + n <= len(data) and data[8:9] == b"{", "bad header length"
    header = json.loads(data[8:8 + n].decode("utf-8"))
    buf = data[8 + n:]
    meta = header.pop("__metadata__", {})
    print(f"{path}: header {n} bytes (data starts at {8 + n}, {'8-byte aligned' if (8 + n) % 8 == 0 else 'unaligned'}), "
          f"{len(buf)} data bytes, {len(header)} tensors, metadata {meta}")
    end = 0
    for name, e in sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"])):
        b0, b1 = e["data_offsets"]
        assert b0 == end, f"{name}: hole or overlap at {b0} (expected {end})"
        a = np.frombuffer(buf[b0:b1], dtype=np.dtype(NP[e["dtype"]]).newbyteorder("<"))
        a = a.reshape(e["shape"])  # raises if the size does not match the shape
        if e["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        end = b1
        print(f"  {name!r:24} {e['dtype']:5} {str(e['shape']):12} [{b0}, {b1}) {np.array2string(a.ravel()[:8], precision=4, max_line_width=10**6)}")
    assert end == len(buf), f"{len(buf) - end} trailing bytes belong to no tensor"
    print("OK")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "check"):
        sys.exit(__doc__)
    {"write": write, "check": check}[sys.argv[1]](sys.argv[2])
