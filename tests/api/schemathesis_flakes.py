#!/usr/bin/env python3
"""Reads a schemathesis report and names the operations that failed only inside the tool.

schemathesis's generator sometimes gives up on a schema ("Inconsistent results", a hypothesis
flake with no request at fault), and CPython 3.11 sometimes fails building an AST inside
hypothesis ("AST constructor recursion depth mismatch", CPython gh-106905) before any request is
sent. Neither says anything about the API.

Prints one operation name ("GET /path") a line and exits 0 when every error in the report is one
of those and no check failed; exits 1 otherwise (a failed check, a network error, a timeout, a
server error, or an error of any other kind), printing nothing.

    schemathesis_flakes.py report.txt
"""

import re
import sys

FLAKE_MARKERS = (
    "Inconsistent results",
    "AST constructor recursion depth mismatch",
)
SECTION = re.compile(r"^=+ ([A-Z ]+?) =+$")
OPERATION = re.compile(r"^_{3,} ([A-Z]+ /\S*) _{3,}$")


def errored_operations(lines):
    """Yields (operation, block lines) for each operation under the ERRORS heading."""
    section = None
    operation = None
    block = []
    for line in lines:
        heading = SECTION.match(line)
        if heading:
            if operation is not None:
                yield operation, block
            section, operation, block = heading.group(1).strip(), None, []
            continue
        if section != "ERRORS":
            continue
        header = OPERATION.match(line)
        if header:
            if operation is not None:
                yield operation, block
            operation, block = header.group(1), []
        else:
            block.append(line)
    if operation is not None:
        yield operation, block


def main(path):
    with open(path, encoding="utf-8", errors="replace") as report:
        lines = report.read().splitlines()
    if any(SECTION.match(line) and "FAILURES" in line for line in lines):
        return 1
    flaky = []
    for operation, block in errored_operations(lines):
        text = "\n".join(block)
        if not any(marker in text for marker in FLAKE_MARKERS):
            return 1
        flaky.append(operation)
    if not flaky:
        return 1
    print("\n".join(flaky))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
