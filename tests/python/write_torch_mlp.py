#!/usr/bin/env python3
"""Writes the weights of a small PyTorch MLP as safetensors files, with the standard library only.

    write_torch_mlp.py OUT_DIR

The model is torch.nn.Sequential(Linear(4, 8), ReLU(), Linear(8, 3)): its state_dict names are
0.weight [8, 4], 0.bias [8], 2.weight [3, 8] and 2.bias [3]. Each file follows the safetensors
specification as huggingface/safetensors writes it: an 8-byte little-endian header length, a
JSON header with {"__metadata__": {"format": "pt"}} padded with spaces to a multiple of 8, the
tensors sorted by alignment then name, each row-major (C order) and little-endian, with no gap.

One file per dtype: mlp.F32, mlp.F16, mlp.BF16 and mlp.F64 (.safetensors). The weights are
fixed doubles from a linear congruential generator; each file holds them rounded to its dtype
(F16 with struct's "e" format, BF16 by rounding the float's bits to nearest even here).

Beside each, mlp.<DTYPE>.txt holds what the C++ side checks, one item per line:
    tensor NAME COUNT V...     the values the file holds, as exact decimal doubles
    inexact N                  how many of those values a float cannot hold exactly
    inputs ROWS COLS V...      a batch of inputs
    outputs ROWS COLS V...     the model's outputs for them, computed here in double precision
"""

import json
import os
import struct
import sys

SIZES = [4, 8, 3]
BATCH = 5


def lcg(seed):
    state = seed
    while True:
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        # 53 random bits to a double in [-1, 1)
        yield (state >> 11) / 2**52 - 1.0


def to_f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def to_f16(x):
    return struct.unpack("<e", struct.pack("<e", x))[0]


def bf16_bits(x):
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF


def to_bf16(x):
    return struct.unpack("<f", struct.pack("<I", bf16_bits(x) << 16))[0]


ROUND = {"F64": lambda x: x, "F32": to_f32, "F16": to_f16, "BF16": to_bf16}
ALIGN = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}


def pack(dtype, values):
    if dtype == "F64":
        return struct.pack("<%dd" % len(values), *values)
    if dtype == "F32":
        return struct.pack("<%df" % len(values), *values)
    if dtype == "F16":
        return struct.pack("<%de" % len(values), *values)
    return struct.pack("<%dH" % len(values), *[bf16_bits(v) for v in values])


def model_weights():
    gen = lcg(20261206)
    tensors = {}
    for i in range(len(SIZES) - 1):
        fan_in, fan_out = SIZES[i], SIZES[i + 1]
        layer = 2 * i  # Sequential index: Linear, ReLU, Linear
        tensors["%d.weight" % layer] = ([fan_out, fan_in],
                                        [next(gen) / fan_in**0.5 for _ in range(fan_out * fan_in)])
        tensors["%d.bias" % layer] = ([fan_out], [next(gen) * 0.1 for _ in range(fan_out)])
    return tensors


def safetensors_bytes(tensors, dtype):
    """tensors: name -> (shape, values already rounded to dtype)."""
    order = sorted(tensors, key=lambda name: (-ALIGN[dtype], name))
    header = {"__metadata__": {"format": "pt"}}
    data = b""
    for name in order:
        shape, values = tensors[name]
        blob = pack(dtype, values)
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def forward(tensors, inputs):
    a = inputs
    layers = (len(SIZES) - 1)
    for i in range(layers):
        (out_n, in_n), w = tensors["%d.weight" % (2 * i)]
        _, b = tensors["%d.bias" % (2 * i)]
        z = [[sum(row[k] * w[o * in_n + k] for k in range(in_n)) + b[o] for o in range(out_n)]
             for row in a]
        a = [[max(v, 0.0) for v in row] for row in z] if i + 1 < layers else z
    return a


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    exact = model_weights()
    gen = lcg(7)
    inputs = [[next(gen) * 2.0 for _ in range(SIZES[0])] for _ in range(BATCH)]
    for dtype, rounding in ROUND.items():
        tensors = {name: (shape, [rounding(v) for v in values])
                   for name, (shape, values) in exact.items()}
        with open(os.path.join(out, "mlp.%s.safetensors" % dtype), "wb") as f:
            f.write(safetensors_bytes(tensors, dtype))
        lines = []
        inexact = 0
        for name in sorted(tensors):
            values = tensors[name][1]
            inexact += sum(1 for v in values if to_f32(v) != v)
            lines.append("tensor %s %d %s" % (name, len(values), " ".join(repr(v) for v in values)))
        lines.append("inexact %d" % inexact)
        flat = [v for row in inputs for v in row]
        lines.append("inputs %d %d %s" % (BATCH, SIZES[0], " ".join(repr(v) for v in flat)))
        outputs = forward(tensors, inputs)
        flat = [v for row in outputs for v in row]
        lines.append("outputs %d %d %s" % (BATCH, SIZES[-1], " ".join(repr(v) for v in flat)))
        with open(os.path.join(out, "mlp.%s.txt" % dtype), "w") as f:
            f.write("\n".join(lines) + "\n")
    print("wrote mlp.{F32,F16,BF16,F64}.safetensors to %s" % out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
