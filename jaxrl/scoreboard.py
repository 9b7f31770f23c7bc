"""`python -m jaxrl.scoreboard [--registry registry] [--out DIR]`: rank every attempt and baseline by gate value."""

from __future__ import annotations

import argparse

from jaxrl.registry import Registry
from jaxrl.reports.scoreboard import SCOREBOARD_JSON, SCOREBOARD_MD, write_scoreboard


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxrl.scoreboard", description=__doc__)
    parser.add_argument("--registry", default="registry", help="registry root: folder or fsspec URL")
    parser.add_argument("--out", default=None, help="where to write scoreboard.json/.md (default: registry root)")
    args = parser.parse_args(argv)
    registry = Registry(args.registry)
    rows = write_scoreboard(registry, None if args.out is None else Registry(args.out))
    where = args.out or registry.root
    print(f"{len(rows)} attempts ranked -> {where}/{SCOREBOARD_JSON}, {where}/{SCOREBOARD_MD}")
    for row in rows[:10]:
        value = "n/a" if row["gate_value"] is None else f"{row['gate_value']:+.3f}"
        gap = "" if row["gap_to_best_baseline"] is None else f"  gap {row['gap_to_best_baseline']:+.3f}"
        print(f"  {row['rank']:>3}. {value}  {row['kind']:<8} {row['symbol']} {row['agent']}{gap}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
