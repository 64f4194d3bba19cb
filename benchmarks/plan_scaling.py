"""How long planning takes as a sweep grows: 10^2 .. 10^4 trials, and a 10^6-trial spec refused.

Prints CPU seconds (the process's own work, steady on a shared machine) and wall seconds of
``load_spec`` + ``plan`` after start-up (imports paid once before the clock starts). Run:
``python benchmarks/plan_scaling.py``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from runners.plan import plan
from runners.spec import SpecError, load_spec

SPEC = """\
name: scaling
workload: digits_cnn
base: {{epochs: 2}}
variants:
  sassha: {{optimizer: sassha}}
grid:
  lr: [{lr}]
  rho: [{rho}]
seeds: {seeds}
"""


def _spec(folder: Path, n_lr: int, n_rho: int, seeds: int) -> Path:
    values = lambda n: ", ".join(f"{0.001 * (i + 1):.3f}" for i in range(n))  # noqa: E731
    path = folder / f"s{n_lr}x{n_rho}x{seeds}.yaml"
    path.write_text(SPEC.format(lr=values(n_lr), rho=values(n_rho), seeds=seeds))
    return path


def main() -> None:
    import sassha.trial  # noqa: F401 - start-up (torch) is not what is measured

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(f"{'grid':>16} {'trials':>9} {'cpu s':>7} {'wall s':>7}")
        for shape in [(10, 10, 1), (10, 10, 10), (10, 10, 100), (100, 100, 1)]:
            path = _spec(folder, *shape)
            wall, cpu = time.perf_counter(), time.process_time()
            n = len(plan(load_spec(path)))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            label = "x".join(map(str, shape))
            print(f"{label:>16} {n:>9,} {cpu:>7.3f} {wall:>7.3f}")
        path = _spec(folder, 100, 100, 100)
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            plan(load_spec(path))
        except SpecError as exc:
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(
                f"{'100x100x100':>16} {'refused':>9} {cpu:>7.3f} {wall:>7.3f}  {exc.problem[:48]}"
            )


if __name__ == "__main__":
    main()
