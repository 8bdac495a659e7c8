#!/usr/bin/env python3
"""Extracts the C++ blocks of README.md into programs that CTest compiles and runs.

Usage: readme_snippets.py README.md OUTPUT_DIR

Every ```cpp block of the README is one of these, said by an HTML comment on the line just
before its opening fence (a comment GitHub does not show):

  (no comment)                        a complete program: it has `int main()`, which is
                                      called as a function (and returns 0 when it says nothing).
  <!-- snippet: fragment -->          statements: they run as the body of main(), with
                                      <ckpt/ckpt.hpp> included and tests/readme/prelude.hpp's
                                      placeholders in scope (`state`, `train_one_step`, ...:
                                      the names the README's sketches leave to the reader).
  <!-- snippet: declarations -->      types and functions: compiled at namespace scope; running
                                      it only checks that the program starts.
  <!-- snippet: skip (reason) -->     not compiled; the reason is required (MPI, a file that is
                                      not a program). Keep these few.

A block that runs may add `; file NAME=PATH` to its comment (a program's comment is then
`<!-- snippet: program; file ... -->`): PATH, relative to the README, is copied as NAME into
the block's folder before it runs.

Each block becomes OUTPUT_DIR/readme-line-<N>.cpp, N being the line of its opening fence: its
code in a namespace of its own (readme_line_<N>), with #line directives so that the compiler's
messages name README.md and the line, and a function run_readme_line_<N>() that runs it. Also
written: readme-blocks.hpp (the dispatcher's table, included by tests/readme/main.cpp) and
readme-blocks.cmake (the lines, for tests/readme/CMakeLists.txt). A file is only rewritten when
its content changes, so that a rebuild compiles only what changed; files of blocks that are gone
are removed. A block without a comment that is not a complete program, a comment with no block
after it or an unknown kind is an error naming the README's line (exit status 1).
"""

import re
import sys
from dataclasses import dataclass
from pathlib import Path

MARKER = re.compile(r"^\s*<!--\s*snippet:\s*(\w+)\s*(?:\((.*)\))?\s*((?:;\s*file\s+\S+=\S+\s*)*)-->\s*$")
FILE_OPTION = re.compile(r"file\s+(\S+?)=(\S+)")
FENCE = re.compile(r"^(\s*)```\s*(\S*)\s*$")
MAIN = re.compile(r"^\s*int\s+main\s*\(\s*\)", re.MULTILINE)
KINDS = ("program", "fragment", "declarations", "skip")


@dataclass
class Block:
    line: int  # of the opening fence, from 1
    kind: str  # one of KINDS
    code: str
    reason: str = ""  # why a block is skipped
    files: tuple = ()  # (NAME, PATH) pairs


def parse(readme: Path):
    """The README's cpp blocks, or SystemExit naming the first line that breaks the rules."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    blocks, errors = [], []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            after = FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
            if lines[i].lstrip().startswith("<!-- snippet:") and not (
                    after and after.group(2) == "cpp"):
                errors.append(f"{readme}:{i + 1}: a snippet comment must be on the line just "
                              "before a ```cpp fence")
            i += 1
            continue
        indent, language, start = fence.group(1), fence.group(2), i
        i += 1
        code = []
        while i < len(lines) and lines[i].strip() != "```":
            code.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1  # the closing fence
        if language != "cpp":
            continue
        line = start + 1
        text = "\n".join(code) + "\n"
        marker = MARKER.match(lines[start - 1]) if start > 0 else None
        if marker is None and start > 0 and lines[start - 1].lstrip().startswith("<!--"):
            errors.append(f"{readme}:{start}: unreadable snippet comment (see "
                          "tools/readme_snippets.py)")
            continue
        kind = marker.group(1) if marker else "program"
        reason = (marker.group(2) or "").strip() if marker else ""
        files = tuple(FILE_OPTION.findall(marker.group(3))) if marker else ()
        has_main = bool(MAIN.search(text))
        if kind not in KINDS:
            errors.append(f"{readme}:{start}: unknown snippet kind '{kind}' "
                          f"(one of {', '.join(KINDS)})")
        elif kind == "skip" and not reason:
            errors.append(f"{readme}:{start}: a skipped block needs a reason: "
                          "<!-- snippet: skip (why) -->")
        elif kind == "program" and not has_main:
            errors.append(f"{readme}:{line}: this cpp block is not a complete program (no "
                          "`int main()`): mark it on the line before its fence with "
                          "<!-- snippet: fragment -->, <!-- snippet: declarations --> or "
                          "<!-- snippet: skip (reason) --> (see tools/readme_snippets.py)")
        elif kind in ("fragment", "declarations") and has_main:
            errors.append(f"{readme}:{line}: a block with `int main()` is a program, not a "
                          f"{kind}: drop the comment")
        else:
            blocks.append(Block(line, kind, text, reason, files))
    if errors:
        sys.exit("\n".join(errors))
    return blocks


def source(block: Block, readme: Path, path: Path) -> str:
    """The .cpp file of one block, to be written at `path`."""
    name = f"readme_line_{block.line}"
    body = block.code.splitlines()
    # Includes go before the namespace; a blank line keeps the rest on its README line.
    includes = [l.strip() for l in body if l.lstrip().startswith("#include")
                and l.strip() != "#include <ckpt/ckpt.hpp>"]
    body = ["" if l.lstrip().startswith("#include") else l for l in body]
    body = MAIN.sub(lambda m: m.group(0).replace("int", "auto", 1), "\n".join(body), 1)
    body = body.splitlines()
    out = [f"// Generated by tools/readme_snippets.py from {readme.name}, line {block.line}: "
           "do not edit.", "#include <ckpt/ckpt.hpp>", "#include <type_traits>", *includes]
    if block.kind == "fragment":
        out += ['#include "prelude.hpp"', "", f"namespace {name} {{", "using namespace readme;",
                "int main() {"]
    else:
        out += ["", f"namespace {name} {{"]
    # The compiler names README.md and its lines for the block's code, this file for the rest.
    out += [f'#line {block.line + 1} "{readme.as_posix()}"', *body]
    out += [f'#line {len(out) + 2} "{path.resolve().as_posix()}"']
    if block.kind == "fragment":
        out += ["    return 0;", "}"]
    if block.kind == "declarations":
        out += ["inline int main() { return 0; }"]
    # A main() outside the global namespace returns nothing unless it says so: it is declared
    # `auto`, and a main() that returns nothing has succeeded when it returns.
    out += [f"}} // namespace {name}", "", f"int run_{name}() {{",
            "    const auto run = [](auto f) -> int {",
            "        if constexpr (std::is_void_v<decltype(f())>) {",
            "            f();", "            return 0;", "        } else {",
            "            return f();", "        }", "    };",
            f"    return run([] {{ return {name}::main(); }});", "}", ""]
    return "\n".join(out)


def table(blocks, readme: Path) -> str:
    """readme-blocks.hpp: every block's line, function and files, for tests/readme/main.cpp."""
    out = [f"// Generated by tools/readme_snippets.py from {readme.name}: do not edit.",
           "// Included by tests/readme/main.cpp, after readme::block.", "#pragma once", ""]
    out += [f"int run_readme_line_{b.line}();" for b in blocks]
    out += ["", "inline const std::vector<readme::block> readme_blocks = {"]
    for b in blocks:
        files = ", ".join(f'{{"{name}", "{(readme.parent / path).as_posix()}"}}'
                          for name, path in b.files)
        out.append(f"    {{{b.line}, &run_readme_line_{b.line}, {{{files}}}}},")
    out += ["};", ""]
    return "\n".join(out)


def write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    readme, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    blocks = parse(readme)
    for b in blocks:
        if b.kind == "skip":
            print(f"{readme.name}:{b.line}: skipped ({b.reason})")
        for _, path in b.files:
            if not (readme.parent / path).is_file():
                sys.exit(f"{readme}:{b.line - 1}: no file {path}")
    run = [b for b in blocks if b.kind != "skip"]
    out.mkdir(parents=True, exist_ok=True)
    wanted = {f"readme-line-{b.line}.cpp" for b in run}
    for old in out.glob("readme-line-*.cpp"):
        if old.name not in wanted:
            old.unlink()
    for b in run:
        path = out / f"readme-line-{b.line}.cpp"
        write_if_changed(path, source(b, readme, path))
    write_if_changed(out / "readme-blocks.hpp", table(run, readme))
    lines = " ".join(str(b.line) for b in run)
    write_if_changed(out / "readme-blocks.cmake", f"set(readme_block_lines {lines})\n")


if __name__ == "__main__":
    main()
