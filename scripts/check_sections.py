#!/usr/bin/env python3
"""Fails when a Catch2 SECTION is written inside a loop body in the tests.

Catch2 v2 runs a SECTION inside a loop on the loop's first pass only: the other iterations are
silently never tested. Use DYNAMIC_SECTION, GENERATE, or a plain loop with INFO instead.

Usage: check_sections.py [files...]   (default: tests/**/*.cpp, tests/**/*.hpp)
"""
import pathlib
import re
import sys


def strip(code):
    """Comments and string/char literals blanked out, newlines kept (so line numbers hold)."""
    pattern = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)
    return pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), code)


def matching_paren(code, i):
    depth = 0
    for j in range(i, len(code)):
        if code[j] == "(":
            depth += 1
        elif code[j] == ")":
            depth -= 1
            if depth == 0:
                return j
    return len(code) - 1


def check(path):
    code = strip(pathlib.Path(path).read_text())
    problems = []
    stack = []          # one entry per open brace: True if it opens a loop body
    pending_loop = False
    braceless = []      # depth at which a braceless loop body ends (at its ';')
    token = re.compile(r"\b(for|while|do)\b|\bSECTION\s*\(|[{};]")
    i = 0
    while True:
        m = token.search(code, i)
        if not m:
            break
        t = m.group(0)
        if m.group(1) in ("for", "while"):
            close = matching_paren(code, code.index("(", m.end()))
            rest = code[close + 1:].lstrip()
            if rest.startswith(";"):  # the `while (...);` of a do-while
                i = close + 1
                continue
            if rest.startswith("{"):
                pending_loop = True
            else:
                braceless.append(len(stack))
            i = close + 1
            continue
        if m.group(1) == "do":
            pending_loop = True
            i = m.end()
            continue
        if t.startswith("SECTION"):
            if any(stack) or braceless:
                line = code.count("\n", 0, m.start()) + 1
                problems.append(f"{path}:{line}: SECTION inside a loop body (runs on the first pass only; "
                                f"use DYNAMIC_SECTION, GENERATE or INFO)")
            i = m.end()
            continue
        if t == "{":
            stack.append(pending_loop)
            pending_loop = False
        elif t == "}":
            if stack:
                stack.pop()
            while braceless and braceless[-1] > len(stack):
                braceless.pop()
            while braceless and braceless[-1] == len(stack) and not stack[-1:] == [True]:
                braceless.pop()
        elif t == ";":
            while braceless and braceless[-1] == len(stack):
                braceless.pop()
        i = m.end()
    return problems


def main():
    files = sys.argv[1:] or sorted(str(p) for p in pathlib.Path("tests").rglob("*") if p.suffix in (".cpp", ".hpp"))
    problems = [p for f in files for p in check(f)]
    for p in problems:
        print(p)
    print(f"check_sections: {len(files)} files, {len(problems)} SECTION(s) inside loops")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
