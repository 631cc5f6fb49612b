#!/usr/bin/env python3
"""Parse a run's KTAP report with the kernel's own parser and compare its counts with
results.json: pass, fail (fail + broken: KTAP has no "broken") and skip must match.

usage: ktap-check.py RESULTS.KTAP RESULTS.JSON KUNIT_DIR
KUNIT_DIR holds kunit_parser.py (tools/testing/kunit of a linux-source tree).
"""
import inspect
import io
import json
import sys


def main():
    ktap, results, kunit_dir = sys.argv[1:4]
    sys.path.insert(0, kunit_dir)
    import kunit_parser  # noqa: E402  (the kernel's, from KUNIT_DIR)
    import kunit_printer  # noqa: E402

    with open(ktap, encoding="utf-8") as f:
        lines = f.readlines()
    # The parser prints kunit.py's progress view while it parses; keep it out of the way.
    # Before 6.14 it always printed to kunit_printer.stdout; later ones take a printer
    # (kunit_printer.null_printer prints nothing).
    if "printer" in inspect.signature(kunit_parser.parse_run_tests).parameters:
        test = kunit_parser.parse_run_tests(lines, kunit_printer.null_printer)
    else:
        kunit_printer.stdout._output = io.StringIO()
        test = kunit_parser.parse_run_tests(lines)
    c = test.counts
    got = {"pass": c.passed, "fail": c.failed + c.crashed, "skip": c.skipped, "errors": c.errors}
    with open(results, encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    want = {"pass": 0, "fail": 0, "skip": 0, "errors": 0}
    for case in cases:
        s = case["status"]
        want["fail" if s == "broken" else s] += 1
    print(f"kunit_parser: {got}; results.json: {want}; parser status {test.status.name}")
    if got != want:
        sys.exit(1)


if __name__ == "__main__":
    main()
