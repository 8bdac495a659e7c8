#!/usr/bin/env python3
"""Generate the single headers in single_include/ from include/ (stdlib only).

single_include/ckpt/ckpt.hpp is everything <ckpt/ckpt.hpp> brings, in one file. An add-on header
that <ckpt/ckpt.hpp> leaves out on purpose, so that only its users pay for it (ADDONS below), is
generated beside it at the same path as in include/, so the include line is the same either way:
it includes "ckpt.hpp" (by a relative path) in place of the ckpt headers the single header
already holds, and inlines the rest.

Starting at include/ckpt/ckpt.hpp, every `#include <ckpt/...>` is replaced by the contents of
that header the first time it is seen (recursively, in order of first inclusion) and dropped
after that. `#pragma once` is removed from inlined headers; the umbrella keeps its include
guard. Every other include (std, cereal, Eigen, xxHash, RapidJSON) is left as it is. The output
is deterministic: LF line endings, no timestamps, no formatting pass.

A header's -inl.hpp file (its non-template definitions) is included by the header inside
`#ifdef CKPT_DEFINITIONS`, so its text lands inside that block; a ckpt header first reached from
an -inl file would be invisible to CKPT_COMPILED translation units, and is an error.

    tools/amalgamate.py                       write single_include/ (only files that changed)
    tools/amalgamate.py --output DIR          write into DIR instead of single_include/
    tools/amalgamate.py --check [--output D]  regenerate (into D, or a temporary directory) and
                                              exit 1 if a committed single header differs
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UMBRELLA = "ckpt/ckpt.hpp"
SINGLE_INCLUDE = Path("single_include")
SINGLE_HEADER = SINGLE_INCLUDE / "ckpt" / "ckpt.hpp"
# Headers of include/ that the umbrella leaves out, each generated as single_include/<same path>.
ADDONS = ["ckpt/types/eigen_tensor.hpp", "ckpt/mpi.hpp"]

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


def banner(include_dir: Path) -> list[str]:
    return [
        "// DO NOT EDIT: generated from include/ by tools/amalgamate.py",
        f"// ckpt {version(include_dir)}",
        "// SPDX-License-Identifier: MIT",
        "",
    ]


def finish(lines: list[str]) -> str:
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def addon(include_dir: Path, name: str, umbrella_seen: set[str]) -> str:
    """The add-on `name`: the single header in place of the ckpt headers it already holds."""
    if name in umbrella_seen:
        raise AmalgamationError(f"include/{name} is part of <{UMBRELLA}>: it is no add-on")
    body: list[str] = []
    seen = {name}
    expand(include_dir, name, seen, [], body)
    # expand() inlines every ckpt header; those the single header holds are dropped again and
    # replaced by one include of it, where the first of them was.
    lines = banner(include_dir)
    relative = "../" * (name.count("/") - 1) + UMBRELLA.rsplit("/", 1)[-1]
    skip: str | None = None
    included = False
    for line in body:
        if skip is None and line.startswith("// begin "):
            child = line[len("// begin "):]
            if child in umbrella_seen:
                skip = child
                if not included:
                    lines.append(f'#include "{relative}" // the single header')
                    included = True
                continue
        if skip is not None:
            if line == f"// end {skip}":
                skip = None
            continue
        lines.append(line)
    return finish(lines)


def amalgamate(root: Path) -> dict[Path, str]:
    """Every single header: its path under single_include/ and its text."""
    include_dir = root / "include"
    lines = banner(include_dir)
    seen = {UMBRELLA}
    expand(include_dir, UMBRELLA, seen, [], lines)
    outputs = {Path(UMBRELLA): finish(lines)}
    for name in ADDONS:
        outputs[Path(name)] = addon(include_dir, name, seen)
    return outputs


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
                        help="fail if a committed single header is stale")
    parser.add_argument("--output", type=Path,
                        help="the directory to write into (default: single_include/; "
                             "with --check: a temporary directory)")
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="repository root (default: the parent of tools/)")
    args = parser.parse_args(argv)
    root = args.root.resolve()

    try:
        outputs = amalgamate(root)
    except AmalgamationError as error:
        print(f"amalgamate.py: error: {error}", file=sys.stderr)
        return 2

    if not args.check:
        into = args.output if args.output else root / SINGLE_INCLUDE
        for name, text in outputs.items():
            changed = write_if_changed(into / name, text)
            print(f"{into / name}: {'written' if changed else 'unchanged'}")
        return 0

    with tempfile.TemporaryDirectory(prefix="ckpt-amalgamated-") as scratch:
        into = args.output if args.output else Path(scratch)
        stale = []
        for name, text in outputs.items():
            write_if_changed(into / name, text)
            committed = root / SINGLE_INCLUDE / name
            if not (committed.is_file() and committed.read_bytes() == text.encode("utf-8")):
                stale.append((SINGLE_INCLUDE / name).as_posix())
    for name in stale:
        print(f"{name} is stale: run tools/amalgamate.py", file=sys.stderr)
    if stale:
        if args.output:
            print(f"(freshly generated in {args.output})", file=sys.stderr)
        return 1
    print(", ".join((SINGLE_INCLUDE / n).as_posix() for n in outputs) + ": up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
