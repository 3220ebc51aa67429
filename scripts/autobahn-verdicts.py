#!/usr/bin/env python3
"""Extract or compare Autobahn verdicts.

usage: autobahn-verdicts.py extract REPORT_DIR AGENT > verdicts.json
       autobahn-verdicts.py compare EXPECTED.json [EXPECTED-DEFLATE.json] ACTUAL.json
       autobahn-verdicts.py split ACTUAL.json EXPECTED.json [EXPECTED-DEFLATE.json]

A verdict file maps each case id to its behavior (OK, NON-STRICT, INFORMATIONAL, ...). `compare` prints every
case whose verdict changed, was added or went missing (the expected files together), and
exits 1 if there is any such case or if any actual verdict is FAILED. `split` writes the
actual verdicts back as expected ones: groups 12 and 13 (permessage-deflate) to the second
file, the rest to the first.
"""
import json
import sys


def case_key(cid):
    return tuple(int(x) for x in cid.split("."))


def extract(report_dir, agent):
    with open(f"{report_dir}/index.json", encoding="utf-8") as f:
        index = json.load(f)
    cases = index.get(agent, {})
    verdicts = {cid: c["behavior"] for cid, c in cases.items()}
    ordered = dict(sorted(verdicts.items(), key=lambda kv: case_key(kv[0])))
    json.dump(ordered, sys.stdout, indent=1)
    print()
    return 0 if ordered else 2


DEFLATE_GROUPS = ("12", "13")


def write(path, verdicts):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(dict(sorted(verdicts.items(), key=lambda kv: case_key(kv[0]))), f, indent=1)
        print(file=f)


def split(actual_path, *expected_paths):
    with open(actual_path, encoding="utf-8") as f:
        actual = json.load(f)
    deflate = {c: v for c, v in actual.items() if c.split(".")[0] in DEFLATE_GROUPS}
    write(expected_paths[0], {c: v for c, v in actual.items() if c not in deflate})
    if len(expected_paths) > 1:
        write(expected_paths[1], deflate)
    return 0


def compare(expected_paths, actual_path):
    expected = {}
    for path in expected_paths:
        with open(path, encoding="utf-8") as f:
            expected.update(json.load(f))
    expected_path = " + ".join(expected_paths)
    with open(actual_path, encoding="utf-8") as f:
        actual = json.load(f)
    problems = []
    for cid in sorted(set(expected) | set(actual), key=case_key):
        want, got = expected.get(cid, "<missing>"), actual.get(cid, "<missing>")
        if want != got:
            problems.append(f"  {cid}: expected {want}, got {got}")
    failed = [cid for cid, v in actual.items() if v not in ("OK", "NON-STRICT", "INFORMATIONAL")]
    for line in problems:
        print(line)
    if failed:
        print(f"  not passing: {','.join(sorted(failed, key=case_key))}")
    print(f"{actual_path}: {len(actual)} cases, {len(problems)} differ from {expected_path}, {len(failed)} not passing")
    return 1 if problems or failed else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) == 3 and args[0] == "extract":
        sys.exit(extract(args[1], args[2]))
    if len(args) in (3, 4) and args[0] == "compare":
        sys.exit(compare(args[1:-1], args[-1]))
    if len(args) in (3, 4) and args[0] == "split":
        sys.exit(split(*args[1:]))
    print(__doc__.strip(), file=sys.stderr)
    sys.exit(2)
