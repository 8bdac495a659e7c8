#!/usr/bin/env python3
"""Generate single_include/ckpt/ckpt.hpp from include/ (stdlib only).

Starting at include/ckpt/ckpt.hpp, every `#include <ckpt/...>` is replaced by the contents of
that header the first time it is seen (recursively, in order of first inclusion) and dropped
after that. `#pragma once` is removed from inlined headers; the umbrella keeps its include
guard. Every other include (std, cereal, Eigen, xxHash, RapidJSON) is left as it is. The output
is deterministic: LF line endings, no timestamps, no formatting pass.

A header's -inl.hpp file (its non-template definitions) is included by the header inside
`#ifdef CKPT_DEFINITIONS`, so its text lands inside that block; a ckpt header first reached from
an -inl file would be invisible to CKPT_COMPILED translation units, and is an error.

    tools/amalgamate.py                       write single_include/ckpt/ckpt.hpp
    tools/amalgamate.py --output PATH         write PATH instead
    tools/amalgamate.py --check [--output P]  regenerate (to P, or a temporary file) and exit 1
                                              if the committed single header differs from it
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UMBRELLA = "ckpt/ckpt.hpp"
SINGLE_HEADER = Path("single_include") / "ckpt" / "ckpt.hpp"

INCLUDE_RE = re.compile(r"^\s*#\s*include\s*<(ckpt/[^>]+)>")
INL_RE = re.compile(r"-inl\.hpp$")
PRAGMA_ONCE_RE = re.compile(r"^\s*#\s*pragma\s+once\b")
VERSION_RE = re.compile(r"^#define CKPT_VERSION_(MAJOR|MINOR|PATCH) +([0-9]+)", re.MULTILINE)


class AmalgamationError(Exception):
    pass


def read_lines(path: Path) -> list[str]:
    # Universal newlines: CRLF sources still give LF output.
    with path.open("r", encoding="utf-8", newline=None) as f:
        return f.read().splitlines()


def version(include_dir: Path) -> str:
    text = (include_dir / "ckpt" / "version.hpp").read_text(encoding="utf-8")
    parts = dict(VERSION_RE.findall(text))
    try:
        return f"{parts['MAJOR']}.{parts['MINOR']}.{parts['PATCH']}"
    except KeyError as missing:
        raise AmalgamationError(
            f"include/ckpt/version.hpp: CKPT_VERSION_{missing.args[0]} not found") from None


def expand(include_dir: Path, name: str, seen: set[str], stack: list[str], out: list[str]) -> None:
    """Append the lines of header `name` (relative to include/) to `out`, inlining ckpt headers."""
    path = include_dir / name
    if not path.is_file():
        where = f" (included from {stack[-1]})" if stack else ""
        raise AmalgamationError(f"include/{name} not found{where}")
    is_root = not stack
    stack.append(name)
    for line in read_lines(path):
        if not is_root and PRAGMA_ONCE_RE.match(line):
            continue
        match = INCLUDE_RE.match(line)
        if not match:
            out.append(line)
            continue
        child = match.group(1)
        if child in seen:
            continue
        if INL_RE.search(name) and not INL_RE.search(child):
            # An -inl file is inlined inside `#ifdef CKPT_DEFINITIONS`: a header first reached
            # from there would be missing from a declarations-only (CKPT_COMPILED) file.
            raise AmalgamationError(
                f"include/{child} is first included by include/{name}: include it from the "
                f"header that includes {name.rsplit('/', 1)[-1]}, so that CKPT_COMPILED "
                f"translation units see it too")
        seen.add(child)
        out.append(f"// begin {child}")
        expand(include_dir, child, seen, stack, out)
        out.append(f"// end {child}")
    stack.pop()


def amalgamate(root: Path) -> str:
    include_dir = root / "include"
    lines = [
        "// DO NOT EDIT: generated from include/ by tools/amalgamate.py",
        f"// ckpt {version(include_dir)}",
        "// SPDX-License-Identifier: MIT",
        "",
    ]
    expand(include_dir, UMBRELLA, {UMBRELLA}, [], lines)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def write_if_changed(path: Path, text: str) -> bool:
    data = text.encode("utf-8")
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="fail if the committed single header is stale")
    parser.add_argument("--output", type=Path,
                        help="where to write (default: single_include/ckpt/ckpt.hpp; "
                             "with --check: a temporary file)")
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="repository root (default: the parent of tools/)")
    args = parser.parse_args(argv)
    root = args.root.resolve()

    try:
        text = amalgamate(root)
    except AmalgamationError as error:
        print(f"amalgamate.py: error: {error}", file=sys.stderr)
        return 2

    if not args.check:
        output = args.output if args.output else root / SINGLE_HEADER
        changed = write_if_changed(output, text)
        print(f"{output}: {'written' if changed else 'unchanged'}")
        return 0

    if args.output:
        generated = args.output
    else:
        fd, name = tempfile.mkstemp(prefix="ckpt-amalgamated-", suffix=".hpp")
        os.close(fd)
        generated = Path(name)
    generated.parent.mkdir(parents=True, exist_ok=True)
    generated.write_bytes(text.encode("utf-8"))

    committed = root / SINGLE_HEADER
    up_to_date = committed.is_file() and committed.read_bytes() == generated.read_bytes()
    if not args.output:
        generated.unlink()
    if not up_to_date:
        print(f"{SINGLE_HEADER.as_posix()} is stale: run tools/amalgamate.py", file=sys.stderr)
        if args.output:
            print(f"(freshly generated: {args.output})", file=sys.stderr)
        return 1
    print(f"{SINGLE_HEADER.as_posix()} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
