#!/usr/bin/env python3
"""Lists the longest functions under the given source folders, by lines from `fn` to its
closing brace (braces in string literals and comments are skipped; `tests.rs` files and
`#[cfg(test)] mod tests` blocks are left out).

    scripts/fn_lengths.py crates/keepwire/src crates/keepwire-cli/src      # top 15
    scripts/fn_lengths.py --max 80 crates/keepwire/src crates/keepwire-cli/src

With --max N it exits 1 when any function is longer than N lines (.ci/run uses 80: the
project's rule that no library or CLI function grows past about 80 lines)."""
import os
import re
import sys

FN = re.compile(r'\s*(pub(\([a-z]+\))? )?(async )?(const )?(unsafe )?fn (\w+)')


def lengths(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        if re.match(r"\s*#\[cfg\(test\)\]", lines[i]) and i + 1 < len(lines) \
                and "mod tests" in lines[i + 1]:
            return
        m = FN.match(lines[i])
        if m:
            depth, started, j = 0, False, i
            while j < len(lines):
                s = re.sub(r'"(\\.|[^"\\])*"', "", lines[j])
                s = re.sub(r"'.'", "", s).split("//")[0]
                if not started and ";" in s and "{" not in s:
                    break
                depth += s.count("{") - s.count("}")
                started = started or "{" in s
                if started and depth <= 0:
                    break
                j += 1
            if started:
                yield j - i + 1, i + 1, m.group(6)
        i += 1


def main(argv):
    limit = None
    if argv[:1] == ["--max"]:
        limit, argv = int(argv[1]), argv[2:]
    found = []
    for root in argv:
        for dirpath, _, files in os.walk(root):
            for f in files:
                if f.endswith(".rs") and f != "tests.rs":
                    p = os.path.join(dirpath, f)
                    found += [(n, f"{p}:{line}", name) for n, line, name in lengths(p)]
    found.sort(reverse=True)
    shown = [x for x in found if limit is not None and x[0] > limit] if limit else found[:15]
    for n, where, name in shown:
        print(f"{n:4} {where} {name}")
    if limit is not None and shown:
        print(f"{len(shown)} function(s) over {limit} lines", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
