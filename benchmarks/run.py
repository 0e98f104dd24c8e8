"""Run the benchmarks and regenerate ``benchmarks/README.md``.

    python -m benchmarks.run [--only step_overhead,memory] [--quick] [--threads N] [--readme-only]

Each benchmark runs in its own Python process (clean memory and thread state; one failing benchmark does not
stop the others) and writes ``benchmarks/results/<name>.json``; the README is then rebuilt from every JSON file
in ``benchmarks/results`` (also the ones not re-run, e.g. ``gpu.json`` from a GPU machine and ``sweep.json``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from . import common

CPU_BENCHMARKS = [
    "step_overhead",
    "memory",
    "scaling",
    "rcd_cost",
    "cost_vs_retrain",
    "quality",
    "tofu",
    "generation_cost",
    "stopping",
    "stopping_oracle",
    "images",
    "method_cost",
    "tofu_seeds",
    "data_prep",
    "lm_loss_memory",
    "sd_mechanics",
    "diffusion_step",
]
ALL = CPU_BENCHMARKS + ["gpu", "sweep"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(ALL)}")
    parser.add_argument("--quick", action="store_true", help="smaller runs (< 3 min in all on 2 cores)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default 1)")
    parser.add_argument("--readme-only", action="store_true", help="only regenerate README.md from results/")
    args = parser.parse_args(argv)

    if not args.readme_only:
        names = args.only.split(",") if args.only else CPU_BENCHMARKS
        unknown = [n for n in names if n not in ALL]
        if unknown:
            parser.error(f"unknown benchmark(s) {unknown}; choose from {ALL}")
        threads = args.threads or common.default_threads()
        failed = []
        for name in names:
            cmd = [sys.executable, "-m", f"benchmarks.{name}"]
            if name != "gpu":
                cmd += ["--threads", str(threads)]
            if args.quick:
                cmd.append("--quick")
            start = time.perf_counter()
            print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
            code = subprocess.call(cmd, cwd=common.ROOT.parent)
            print(f"== {name}: exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
            if code:
                failed.append(name)
        if failed:
            print(f"failed: {failed}", flush=True)
    common.render_readme()
    print(f"wrote {common.README}")
    results = common.load_results()
    for name, r in results.items():
        print(f"{name}: {r.get('passed')}/{r.get('total')} targets met")
    return 1 if not args.readme_only and failed else 0


if __name__ == "__main__":
    sys.exit(main())
