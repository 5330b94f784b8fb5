"""Run the measureflow benchmarks and print one table.

    python benchmarks/run.py --quick          # a few minutes (``make bench``)
    python benchmarks/run.py                  # full sizes and repetitions
    python benchmarks/run.py --only 1,3 --json out.json

Every figure that is a ratio is measured within this process (or its subprocesses), with
both sides interleaved, so it holds on a shared, noisy machine. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import measureflow  # noqa: E402,F401  (float64 on, before any array is built)

import _harness  # noqa: E402

SECTIONS = {
    "1": ("network_step", "one GD step of a large ReLU network vs the matmul peak"),
    "2": ("small_problem", "small problem vs PyTorch / NumPy loops"),
    "3": ("deconvolution", "deconvolution iteration time and time to certificate"),
    "4": ("sweeps", "batched sweeps vs one by one"),
    "5": ("memory", "peak memory at m = 1e5"),
    "6": ("latency", "first-call latency of a forward–backward solve"),
}


def _table(rows, machine, elapsed, quick) -> str:
    lines = [f"measureflow benchmarks ({'quick' if quick else 'full'}), {time.strftime('%Y-%m-%d %H:%M:%S')}, "
             f"{elapsed:.0f} s"]
    lines += [f"  {k:13s} {v}" for k, v in machine]
    lines.append("")
    w_item = max([len(r.item) for r in rows] + [10])
    w_val = max([len(r.shown) for r in rows] + [5])
    w_tgt = max([len(r.target) for r in rows] + [6])
    head = f"{'#':<2} {'benchmark':<{w_item}}  {'value':>{w_val}}  {'target':<{w_tgt}}  {'met':<4} how / details"
    lines += [head, "-" * min(len(head) + 60, 200)]
    for r in rows:
        met = {True: "yes", False: "NO", None: ""}[r.met]
        lines.append(f"{r.section.split()[0]:<2} {r.item:<{w_item}}  {r.shown:>{w_val}}  {r.target:<{w_tgt}}  "
                     f"{met:<4} {r.note}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer repetitions (a few minutes)")
    ap.add_argument("--only", default="1,2,3,4,5,6", help="comma-separated sections (default: all)")
    ap.add_argument("--json", default=None, help="also write the rows and machine description to this file")
    args = ap.parse_args(argv)
    machine = _harness.machine()
    rows, failed = [], []
    t0 = time.perf_counter()
    for key in [s.strip() for s in args.only.split(",") if s.strip()]:
        module, title = SECTIONS[key]
        print(f"[{key}] {title} ...", file=sys.stderr, flush=True)
        t1 = time.perf_counter()
        try:
            rows += __import__(module).run(args.quick)
        except Exception:  # noqa: BLE001 — one failing benchmark must not hide the others
            failed.append(key)
            traceback.print_exc()
            rows.append(_harness.Row(f"{key} {module}", f"{title}: FAILED", float("nan"), "error", "", False,
                                     "see the traceback above"))
        print(f"[{key}] done in {time.perf_counter() - t1:.0f} s", file=sys.stderr, flush=True)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    machine.append(("load at end", f"{load} (1, 5, 15 min)"))
    print(_table(rows, machine, time.perf_counter() - t0, args.quick))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": dict(machine), "rows": [r.__dict__ for r in rows]}, fh, indent=1, default=str)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
