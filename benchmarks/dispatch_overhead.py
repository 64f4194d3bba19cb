"""Per-trial dispatch overhead of each backend, measured on trials that do (almost) nothing.

    python benchmarks/dispatch_overhead.py                 # all backends available here
    python benchmarks/dispatch_overhead.py -n 40 --backends ray,submitit-slurm --json out.json

For each backend, N no-op trials (each sleeping ``--trial-s`` seconds, default 0) are run from
a cold start: the cluster start-up (Ray's local cluster, process pools) is part of the cost and
is spread over the N trials, as it is in a real sweep. Reported per backend:

    overhead_s   (total - N * trial_s) / N: what the backend adds per trial
    first_s      time to the first result (start-up plus one dispatch)
    steady_s     (last - first result) / (N - 1): per-trial cost once running

The trials run at the backend's natural concurrency on this machine, so overhead_s is wall time
per trial, not per-worker time. Nothing is asserted: the numbers are printed (a table and JSON)
and depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BACKENDS = ("local-inprocess", "local-pool", "ray", "submitit-local", "submitit-slurm")
TARGET_S = 3.0


def noop_trial(job: dict) -> dict:
    if job["config"].get("sleep"):
        time.sleep(job["config"]["sleep"])
    return {"status": "finished", "value": job["config"]["x"]}


def _slurm_ready() -> str | None:
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "sbatch/sinfo not on PATH"
    out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
    states = {s.rstrip("*~#$@") for s in out.stdout.split()}
    if out.returncode != 0 or not states & {"idle", "mix", "alloc"}:
        return f"no usable Slurm node ({out.stdout.strip() or out.stderr.strip()})"
    return None


def make_backend(name: str, workdir: Path, cpus: int):
    if name == "local-inprocess":
        from runners.backends.local import LocalBackend

        return LocalBackend(jobs=1, fn=noop_trial)
    if name == "local-pool":
        from runners.backends.local import LocalBackend

        return LocalBackend(jobs=cpus, fn=noop_trial)
    if name == "ray":
        from runners.backends.ray_backend import RayBackend

        return RayBackend(
            fn=noop_trial,
            storage_path=workdir / "ray",
            num_cpus=cpus,
            object_store_memory=100 * 1024**2,
        )
    if name == "submitit-local":
        from runners.backends.submitit_backend import SubmititBackend

        return SubmititBackend(
            workdir / "submitit", cluster="local", fn=noop_trial, poll_interval_s=0.1
        )
    if name == "submitit-slurm":
        from runners.backends.submitit_backend import SubmititBackend

        return SubmititBackend(
            workdir / "submitit", cluster="slurm", fn=noop_trial, poll_interval_s=0.1
        )
    raise ValueError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")


def measure(name: str, n: int, trial_s: float, cpus: int) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"dispatch-{name}-") as tmp:
        workdir = Path(tmp)
        jobs = [
            {
                "hash": f"noop{i:04d}",
                "config": {"x": i, "sleep": trial_s},
                "trial_dir": str(workdir / "trials" / f"noop{i:04d}"),
                "tracking": None,
            }
            for i in range(n)
        ]
        for job in jobs:
            Path(job["trial_dir"]).mkdir(parents=True)
        backend = make_backend(name, workdir, cpus)
        times: list[float] = []
        statuses: list[str] = []
        start = time.perf_counter()

        def on_result(job, result):
            times.append(time.perf_counter() - start)
            statuses.append(result.get("status", "?"))

        backend.run(jobs, on_result)
        total = time.perf_counter() - start
    ok = statuses.count("finished")
    return {
        "backend": name,
        "n": n,
        "trial_s": trial_s,
        "total_s": round(total, 3),
        "first_s": round(times[0], 3) if times else None,
        "steady_s": round((times[-1] - times[0]) / (n - 1), 3) if n > 1 and times else None,
        "overhead_s": round((total - n * trial_s) / n, 3),
        "finished": ok,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="trials per backend (default 20)")
    parser.add_argument("--trial-s", type=float, default=0.0, help="seconds each trial sleeps")
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help=f"comma-separated, from {BACKENDS}"
    )
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("-n must be >= 1")
    names = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in names if b not in BACKENDS]
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(unknown)} (known: {', '.join(BACKENDS)})")

    rows = []
    for name in names:
        if name == "submitit-slurm" and (why := _slurm_ready()):
            print(f"skipping submitit-slurm: {why}", file=sys.stderr)
            continue
        print(f"measuring {name} ({args.n} trials) ...", file=sys.stderr, flush=True)
        rows.append(measure(name, args.n, args.trial_s, args.cpus))

    header = f"{'backend':<16} {'n':>4} {'total s':>8} {'first s':>8} {'steady s':>9} "
    header += f"{'overhead s/trial':>17}  target <= {TARGET_S:g} s"
    print(header)
    for r in rows:
        verdict = "ok" if r["overhead_s"] <= TARGET_S else "OVER"
        if r["finished"] != r["n"]:
            verdict += f" ({r['n'] - r['finished']} not finished)"
        print(
            f"{r['backend']:<16} {r['n']:>4} {r['total_s']:>8.2f} {r['first_s']:>8.2f} "
            f"{r['steady_s'] if r['steady_s'] is not None else float('nan'):>9.3f} "
            f"{r['overhead_s']:>17.3f}  {verdict}"
        )
    payload = {"cpus": args.cpus, "target_s": TARGET_S, "results": rows}
    print(json.dumps(payload))
    if args.json:
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
