"""Equal backward passes for step-based trials: budget.steps sets each trial's max_steps."""

from __future__ import annotations

import pytest

from runners.budget import step_based_passes
from runners.plan import plan
from runners.spec import SpecError, load_spec

SPEC = """\
name: steps_budget
workload: synthetic_gpt2_small
base:
  max_steps: 10
  batch_size: 8
  model: {{n_layer: 1, n_head: 2, n_embd: 16, block_size: 16, vocab_size: 64}}
variants:
  sam: {{optimizer: sam_adamw, rho: 0.05}}
  sassha: {{optimizer: sassha, lazy_hessian: 10, rho_warmup_steps: 10}}
  adamw: {{optimizer: adamw}}
seeds: [0]
budget: {budget}
"""


def _plan(tmp_path, budget):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(budget=budget))
    return plan(load_spec(path))


def test_each_trial_gets_the_reference_passes_in_steps(tmp_path):
    trials = _plan(tmp_path, "{equal: backward_passes, reference: sam, steps: 100}")
    steps = {t.variant: t.config["max_steps"] for t in trials}
    # SAM: 2 passes per step -> 200. SASSHA: 10 warm-up steps at 1.1, then 2.1 per step:
    # 10 + (200 - 11) / 2.1 = 100. AdamW: 1 per step -> 200.
    assert steps == {"sam": 100, "sassha": 100, "adamw": 200}
    for t in trials:
        assert step_based_passes(t.config) == pytest.approx(200.0)
        assert t.budget["unit"] == "backward passes" and t.budget["target"] == 200.0


def test_steps_budget_needs_step_based_trials_and_excludes_epochs(tmp_path):
    with pytest.raises(SpecError, match="budget.steps"):
        _plan(tmp_path, "{equal: backward_passes, reference: sam, steps: 10, epochs: 2}")
    with pytest.raises(SpecError, match="budget.steps"):
        _plan(tmp_path, "{equal: epochs, steps: 10}")
    path = tmp_path / "epochs.yaml"
    path.write_text(
        SPEC.format(budget="{equal: backward_passes, reference: sam, steps: 10}").replace(
            "  max_steps: 10\n", ""
        )
    )
    with pytest.raises(SpecError, match="not step-based"):
        plan(load_spec(path))
