"""The score of `make mutate`: mutmut's verdicts per module, the survivors with their diffs, and which of them
docs/mutation.md accepts (equivalent mutants, each with its reason).

    python -m local.mutation_score [--min 90]

Run from the directory mutmut ran in (it reads `mutmut results --all true`). Killed, timed out and caught by
the type checker count as killed; survived and "no tests" count against. Exit 1 when a module's score, with
the accepted survivors counted as killed, is under --min.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

ACCEPTED_FILE = Path("docs/mutation.md")
KILLED = {"killed", "timeout", "caught by type check"}
NOT_RUN = {"skipped", "not checked"}
_RESULT_RE = re.compile(r"^\s*(?P<name>[\w.]+__mutmut_\d+): (?P<status>.+?)\s*$")
_ACCEPTED_RE = re.compile(r"`(?P<name>[\w.]+__mutmut_\d+)`")


def module_of(mutant: str) -> str:
    """`shared.core.windows.x_floor__mutmut_3` or `shared.app.lease.xǁLeaseKeeperǁpause__mutmut_1` -> module."""
    parts = mutant.split(".")
    return ".".join(p for p in parts[:-1])


def results(mutmut: str) -> dict[str, str]:
    out = subprocess.run([mutmut, "results", "--all", "true"], check=True, capture_output=True, text=True).stdout
    return {m["name"]: m["status"] for line in out.splitlines() if (m := _RESULT_RE.match(line))}


def accepted() -> set[str]:
    if not ACCEPTED_FILE.exists():
        return set()
    return set(_ACCEPTED_RE.findall(ACCEPTED_FILE.read_text()))


def changed_lines(mutmut: str, name: str) -> list[str]:
    diff = subprocess.run([mutmut, "show", name], capture_output=True, text=True).stdout
    return [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min", type=float, default=90.0, help="lowest acceptable score per module, in percent")
    parser.add_argument("--mutmut", default=str(Path(sys.executable).with_name("mutmut")))
    args = parser.parse_args(argv)

    verdicts = results(args.mutmut)
    ok_anyway = accepted()
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    for name, status in sorted(verdicts.items()):
        module = module_of(name)
        if status in NOT_RUN:
            by_module[module]["not run"] += 1
        elif status in KILLED:
            by_module[module]["killed"] += 1
        elif name in ok_anyway:
            by_module[module]["accepted"] += 1
        else:
            by_module[module]["survived"] += 1
            survivors[module].append(f"{name} ({status})")
    if not by_module:
        print("no mutmut results here: run `mutmut run` first", file=sys.stderr)
        return 2

    for module, names in sorted(survivors.items()):
        print(f"\nsurvivors in {module}:")
        for name in names:
            print(f"  {name}")
            for line in changed_lines(args.mutmut, name.split(" ", 1)[0]):
                print(f"      {line.strip()}")

    print(f"\n{'module':<28} {'mutants':>7} {'killed':>7} {'accepted':>8} {'survived':>8} {'score':>7} {'w/ acc':>8}")
    low = []
    totals: Counter[str] = Counter()
    for module, counts in sorted(by_module.items()):
        totals.update(counts)
        tested = counts["killed"] + counts["accepted"] + counts["survived"]
        score = 100.0 * counts["killed"] / tested if tested else 100.0
        with_accepted = 100.0 * (counts["killed"] + counts["accepted"]) / tested if tested else 100.0
        if with_accepted < args.min:
            low.append(module)
        print(
            f"{module:<28} {tested:>7} {counts['killed']:>7} {counts['accepted']:>8} {counts['survived']:>8} "
            f"{score:>6.1f}% {with_accepted:>7.1f}%"
        )
    tested = totals["killed"] + totals["accepted"] + totals["survived"]
    print(
        f"{'total':<28} {tested:>7} {totals['killed']:>7} {totals['accepted']:>8} {totals['survived']:>8} "
        f"{100.0 * totals['killed'] / tested:>6.1f}% {100.0 * (totals['killed'] + totals['accepted']) / tested:>7.1f}%"
    )
    if totals["not run"]:
        print(f"({totals['not run']} mutants not run)")
    stale = sorted(ok_anyway - set(verdicts))
    if stale:
        print(f"accepted in {ACCEPTED_FILE} but no longer generated: {', '.join(stale)}")
    if low:
        print(f"under {args.min:.0f}%: {', '.join(low)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
