#!/usr/bin/env python3
"""Validate a KCIDB document (runner export kcidb) with kcidb-io, the KCIDB project's own
schema library, and print what it holds.

usage: kcidb-validate.py FILE
"""
import json
import sys

import kcidb_io


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        data = json.load(f)
    schema = kcidb_io.schema.LATEST
    # Raises jsonschema.ValidationError with the offending path on failure.
    schema.validate(data)
    if not schema.is_compatible_exactly(data):
        sys.exit(f"{sys.argv[1]}: valid, but not exactly schema v{schema.major}.{schema.minor}")
    statuses = {}
    for t in data.get("tests", []):
        statuses[t.get("status")] = statuses.get(t.get("status"), 0) + 1
    print(f"{sys.argv[1]}: valid KCIDB v{schema.major}.{schema.minor}: "
          f"{len(data.get('checkouts', []))} checkout(s), {len(data.get('builds', []))} build(s), "
          f"{len(data.get('tests', []))} test(s) {dict(sorted(statuses.items()))}")


if __name__ == "__main__":
    main()
