#!/usr/bin/python3
"""Counts test cases from meson's testlog*.json files (and --extra PASSED FAILED): check suites ("Checks: N, Failures: F,
Errors: E"), Python unittest ("Ran N tests", "FAILED (failures=F, errors=E, skipped=S)"),
and any other test as one case. A skipped case counts as failed (DEVELOPERS.md).
Prints "N passed, N failed"; exits 1 if anything failed."""
import json
import re
import sys

passed = failed = 0
args = sys.argv[1:]
if args[:1] == ['--extra']:
    passed, failed = int(args[1]), int(args[2])
    args = args[3:]
lines = []
for path in args:
    try:
        lines += open(path).readlines()
    except OSError:
        print(f'missing test log {path}: counted as a failure', file=sys.stderr)
        failed += 1
for line in lines:
    t = json.loads(line)
    out = (t.get("stdout") or "") + (t.get("stderr") or "")
    result = t.get("result")
    checks = re.findall(r"Checks: (\d+), Failures: (\d+), Errors: (\d+)", out)
    ran = re.search(r"^Ran (\d+) tests?", out, re.M)
    if checks:
        n, f, e = (sum(int(c[i]) for c in checks) for i in range(3))
        passed += n - f - e
        failed += f + e
        if result not in ("OK",) and f + e == 0:
            failed += 1  # crashed or timed out outside a case
    elif ran:
        n = int(ran.group(1))
        m = re.search(r"FAILED \(([^)]*)\)", out)
        bad = 0
        if m:
            bad = sum(int(x) for x in re.findall(r"(?:failures|errors|skipped|unexpected successes)=(\d+)", m.group(1)))
        skipped = re.search(r"OK \(skipped=(\d+)\)", out)
        if skipped:
            bad += int(skipped.group(1))
        passed += n - bad
        failed += bad
        if result != "OK" and bad == 0:
            failed += 1
    else:
        if result == "OK":
            passed += 1
        else:
            failed += 1
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
