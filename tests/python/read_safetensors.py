#!/usr/bin/env python3
"""An independent safetensors reader (standard library only) for ckpt's files.

    read_safetensors.py FILE EXPECTED.json

Validates FILE against the safetensors format as huggingface/safetensors defines it (README
"Format" and the checks of safetensors/src/tensor.rs: SafeTensors::read_metadata and
Metadata::validate), then compares every tensor with EXPECTED.json:

    {"metadata": {"key": "value", ...},                      (optional: must be in __metadata__)
     "tensors": {"name": {"dtype": "F32", "shape": [2, 3], "hex": "<the tensor's bytes>"}, ...}}

The file must hold exactly the expected tensors. Prints "N tensors match" and exits 0, or prints
what is wrong to stderr and exits 1 (2 for a usage error).
"""

import json
import struct
import sys

# safetensors' own cap on the JSON header (tensor.rs MAX_HEADER_SIZE).
MAX_HEADER_SIZE = 100_000_000
USIZE_MAX = 2**64 - 1

# Bits per element of every safetensors dtype (tensor.rs Dtype; the sub-byte and E8M0 / C64 ones
# are the newer additions).
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}


class Invalid(Exception):
    """The file breaks the safetensors format."""


class Mismatch(Exception):
    """The file is valid but does not hold what was expected."""


def _no_duplicates(pairs):
    # README: "Duplicate keys are disallowed."
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise Invalid(f"the header has the key {key!r} twice (duplicate keys are disallowed)")
        seen[key] = value
    return seen


def _no_constant(name):
    # serde_json, which defines the accepted JSON, has no NaN or Infinity.
    raise Invalid(f"the header holds {name}, which is not JSON")


def _check_strings(value, where):
    """Every string must be valid Unicode (Python's json lets lone surrogates through)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise Invalid(f"{where}: a string holds an invalid code point: {e}") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_strings(k, where)
            _check_strings(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_strings(v, f"{where}[{i}]")


def _is_usize(x):
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= USIZE_MAX


def parse(data):
    """Validates a whole file; returns (metadata, {name: (dtype, shape, bytes)})."""
    size = len(data)
    if size < 8:
        raise Invalid(f"the file is {size} bytes long, too short for the 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_SIZE:
        raise Invalid(f"the header declares {n} bytes, more than safetensors' limit of {MAX_HEADER_SIZE}")
    if 8 + n > size:
        raise Invalid(f"the header declares {n} bytes but only {size - 8} follow the length")
    raw = data[8:8 + n]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Invalid(f"the header is not valid UTF-8: {e}") from None
    if not text.startswith("{"):
        raise Invalid(f"the header must start with '{{', it starts with {text[:1]!r}")
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise Invalid(f"the header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise Invalid("the header is not a JSON object")
    _check_strings(header, "header")

    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict):
        raise Invalid("__metadata__ is not an object")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise Invalid(f"__metadata__[{key!r}] is {type(value).__name__}, not a string")

    infos = []
    for name, info in header.items():
        if not isinstance(info, dict):
            raise Invalid(f"tensor {name!r}: the entry is not an object")
        for field in ("dtype", "shape", "data_offsets"):
            if field not in info:
                raise Invalid(f"tensor {name!r}: no {field}")
        extra = sorted(set(info) - {"dtype", "shape", "data_offsets"})
        if extra:
            # The reference implementation ignores unknown fields; say so, do not fail.
            print(f"note: tensor {name!r} has unknown fields {extra}", file=sys.stderr)
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
            raise Invalid(f"tensor {name!r}: unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(_is_usize(d) for d in shape):
            raise Invalid(f"tensor {name!r}: shape {shape!r} is not a list of non-negative integers")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(_is_usize(o) for o in offsets)):
            raise Invalid(f"tensor {name!r}: data_offsets {offsets!r} is not [begin, end]")
        infos.append((name, dtype, shape, offsets[0], offsets[1]))

    # Metadata::validate: by offsets, each tensor starts where the previous one ended (the first
    # at 0), and spans exactly what its dtype and shape need.
    infos.sort(key=lambda t: (t[3], t[4]))
    start = 0
    for name, dtype, shape, begin, end in infos:
        if begin != start or end < begin:
            what = "overlaps the previous tensor" if begin < start else "leaves a gap"
            if end < begin:
                what = "ends before it begins"
            raise Invalid(f"tensor {name!r}: data_offsets [{begin}, {end}] {what} "
                          f"(expected to start at {start})")
        start = end
        count = 1
        for d in shape:
            count *= d
            if count > USIZE_MAX:
                raise Invalid(f"tensor {name!r}: the element count of shape {shape} overflows 64 bits")
        bits = count * DTYPE_BITS[dtype]
        if bits > USIZE_MAX:
            raise Invalid(f"tensor {name!r}: the size of {dtype} {shape} overflows 64 bits")
        if bits % 8 != 0:
            raise Invalid(f"tensor {name!r}: {dtype} {shape} is not a whole number of bytes")
        if end - begin != bits // 8:
            raise Invalid(f"tensor {name!r}: {dtype} {shape} needs {bits // 8} bytes, "
                          f"data_offsets [{begin}, {end}] span {end - begin}")
    # The data section is exactly what the tensors cover: the last one ends at the end of file.
    if 8 + n + start != size:
        raise Invalid(f"the tensors cover {start} bytes of data, but the file holds "
                      f"{size - 8 - n} after the header")

    data_start = 8 + n
    tensors = {name: (dtype, shape, data[data_start + begin:data_start + end])
               for name, dtype, shape, begin, end in infos}
    return metadata, tensors


def compare(metadata, tensors, expected):
    """Raises Mismatch listing every difference; returns the number of tensors compared."""
    problems = []
    for key, value in expected.get("metadata", {}).items():
        if key not in metadata:
            problems.append(f"__metadata__ has no {key!r} (expected {value!r})")
        elif metadata[key] != value:
            problems.append(f"__metadata__[{key!r}] is {metadata[key]!r}, expected {value!r}")

    want = expected["tensors"]
    for name in sorted(set(want) - set(tensors)):
        problems.append(f"tensor {name!r}: expected, but not in the file")
    for name in sorted(set(tensors) - set(want)):
        problems.append(f"tensor {name!r}: in the file, but not expected")
    for name in sorted(set(want) & set(tensors)):
        dtype, shape, got = tensors[name]
        w = want[name]
        if dtype != w["dtype"]:
            problems.append(f"tensor {name!r}: dtype {dtype}, expected {w['dtype']}")
        if shape != w["shape"]:
            problems.append(f"tensor {name!r}: shape {shape}, expected {w['shape']}")
        expected_bytes = bytes.fromhex(w["hex"])
        if got != expected_bytes:
            if len(got) != len(expected_bytes):
                problems.append(f"tensor {name!r}: {len(got)} bytes, expected {len(expected_bytes)}")
            else:
                at = next(i for i in range(len(got)) if got[i] != expected_bytes[i])
                problems.append(f"tensor {name!r}: byte {at} is {got[at]:02x}, "
                                f"expected {expected_bytes[at]:02x}")
    if problems:
        raise Mismatch("\n".join(problems))
    return len(want)


def main(argv):
    if len(argv) != 3:
        print(f"usage: {argv[0]} FILE EXPECTED.json", file=sys.stderr)
        return 2
    path, expected_path = argv[1], argv[2]
    try:
        with open(path, "rb") as f:
            data = f.read()
        with open(expected_path, "rb") as f:
            expected = json.load(f)
        metadata, tensors = parse(data)
        count = compare(metadata, tensors, expected)
    except Invalid as e:
        print(f"{path}: not a valid safetensors file: {e}", file=sys.stderr)
        return 1
    except Mismatch as e:
        print(f"{path}: does not hold the expected tensors:\n{e}", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError) as e:
        print(f"{path}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"{count} tensors match")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
