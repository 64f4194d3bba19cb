#!/usr/bin/env bash
# Every open GPU question in one call, under 5 minutes on one GPU:
#   1. tests/gpu (every optimizer on CUDA in fp32 and bf16, double backward, the trial's device
#      choice, NCCL equivalence when there are two GPUs);
#   2. a digits trial on CUDA without tracking (python -m sassha.trial: no MLflow, no runners);
#   3. benchmarks/optimizer_step.py on ResNet-32 and WRN-28-10 / CIFAR-100 shapes, batch 256,
#      AdamW, SAM, SASSHA, M-SASSHA, with peak memory;
#   4. benchmarks/hvp.py on ResNet-32, batch 256;
#   5. benchmarks/distributed.py on the GPUs there are (NCCL; world size 1 only on one GPU).
# Writes <out>/gpu_check.json (every step's exit code, seconds and parsed results) and
# <out>/gpu_check.md (one table), beside each step's log.
#
# Needs torch, numpy, pytest and scikit-learn (the digits data): all in the lent GPU machine's
# image. Shampoo's test needs pytorch-optimizer (pure Python); carry it as a wheel in .whl to
# include it, else that test is skipped. Usage, from the repository root:
#   bash benchmarks/gpu_check.sh [out_dir]        # default: $OUT, else ./gpu_check
set -uo pipefail
out=${1:-${OUT:-gpu_check}}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
: >"$out/steps.tsv"

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log, record exit code and time
  local name=$1 limit=$2 start=$SECONDS rc
  shift 2
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" >>"$out/steps.tsv"
  echo "$name: exit $rc"
}

nvidia-smi >"$out/nvidia-smi.txt" 2>&1
python3 -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())" \
  >"$out/torch.txt" 2>&1

step tests_gpu 120 python3 -m pytest tests/gpu -q -p no:cacheprovider -rs
step digits_trial 60 python3 -m sassha.trial \
  '{"workload": "digits_cnn", "optimizer": "sassha", "epochs": 2, "device": "cuda"}'
opts=adamw,sam_sgd,sassha,msassha
step step_resnet32 60 python3 benchmarks/optimizer_step.py --model resnet32 --classes 100 \
  --batch 256 --optimizers "$opts" --steps 20 --device cuda --json "$out/step_resnet32.json"
step step_wrn28_10 90 python3 benchmarks/optimizer_step.py --model wrn28_10 --classes 100 \
  --batch 256 --optimizers "$opts" --steps 10 --device cuda --json "$out/step_wrn28_10.json"
step hvp_resnet32 40 python3 benchmarks/hvp.py --model resnet32 --batch 256 --device cuda \
  --json "$out/hvp_resnet32.json"
step distributed 60 python3 benchmarks/distributed.py --device cuda --batch 256 \
  --json "$out/distributed.json"

python3 - "$out" <<'PY'
import json, pathlib, sys

out = pathlib.Path(sys.argv[1])
steps = {}
for line in (out / "steps.tsv").read_text().splitlines():
    name, rc, seconds = line.split("\t")
    log = (out / f"{name}.log").read_text(errors="replace").strip().splitlines()
    steps[name] = {"exit": int(rc), "seconds": float(seconds), "tail": log[-3:]}
    path = out / f"{name}.json"
    if path.exists():
        steps[name]["results"] = json.loads(path.read_text())
report = {"torch": (out / "torch.txt").read_text().strip(), "steps": steps}
(out / "gpu_check.json").write_text(json.dumps(report, indent=2))
rows = ["| step | exit | seconds | last line |", "|---|---|---|---|"]
for name, s in steps.items():
    last = (s["tail"][-1] if s["tail"] else "").replace("|", "/")[:100]
    rows.append(f"| {name} | {s['exit']} | {s['seconds']:.0f} | {last} |")
(out / "gpu_check.md").write_text(report["torch"] + "\n\n" + "\n".join(rows) + "\n")
print("\n".join(rows))
PY
