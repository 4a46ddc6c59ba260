"""Benchmark every from-scratch dlkb op against its library op (``make bench``).

Writes ``<out>.md`` (tables) and ``<out>.json`` (raw results). The cases and the timing code
live in :mod:`dlkb.bench`, shared with the appendix chapter ``chapters/performance.ipynb``.

    python tools/bench.py                      # full sizes, 1 thread and all threads
    python tools/bench.py --scale reduced --threads 1 --min-run-time 0.05   # a quick look
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from dlkb import bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="_build/bench", help="output path without suffix (default: _build/bench)")
    parser.add_argument("--scale", choices=("full", "reduced"), default="full")
    parser.add_argument("--threads", type=int, nargs="*", default=None,
                        help="thread counts (default: 1 and torch.get_num_threads())")
    parser.add_argument("--min-run-time", type=float, default=0.2, help="seconds per side and case (default 0.2)")
    parser.add_argument("--only", default=None, help="run only ops whose name contains this string")
    args = parser.parse_args(argv)

    threads = args.threads or sorted({1, torch.get_num_threads()})
    cases = bench.cases(args.scale)
    if args.only:
        cases = [c for c in cases if args.only in c.op]
    start = time.perf_counter()

    def progress(r: bench.Result) -> None:
        print(f"[{r.threads} thr] {r.op:42s} {r.size:42s} ratio {r.ratio:7.2f}", flush=True)

    results = bench.run(cases, threads, args.min_run_time, progress)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(bench.to_markdown(results), encoding="utf-8")
    out.with_suffix(".json").write_text(bench.to_json(results), encoding="utf-8")
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
