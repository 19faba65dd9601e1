"""Per-seed outputs equal those of the code before the algorithms became module-level functions.

`tests/data/golden_before_issue20.json` holds what `golden_runs.py` wrote at commit 70829f4 for
small fixed-seed runs of every algorithm and policy head, on jittable and host envs: the final
greedy evaluation and every time-free metrics.csv column, printed to 6 significant digits.

Except GRPO's two rows, rewritten after the change: GRPO's jittable and host paths used to
draw their keys in two different ways, and now both follow `jaxrl.rollout`'s one scheme. Its
math was checked unchanged apart: the new `grpo.learn` on a rollout the old code collected
gave the old update's parameters and metrics (to 1e-6).
"""

import json
from pathlib import Path

import numpy as np
import pytest

import golden_runs

pytestmark = pytest.mark.timeout(300)

SAVED = json.loads((Path(__file__).parent / "data" / "golden_before_issue20.json").read_text())


@pytest.mark.parametrize("name", sorted(golden_runs.SCENARIOS))
def test_per_seed_outputs_equal_the_saved_ones(name):
    if name.endswith("_host"):
        pytest.importorskip("gymnasium")
    now, before = golden_runs.run(name), SAVED[name]
    np.testing.assert_allclose(now["final_eval"], before["final_eval"], rtol=1e-4)
    assert sorted(now["metrics"]) == sorted(before["metrics"])
    for column, values in before["metrics"].items():
        expected = np.array([float(v) if v != "" else np.nan for v in values])
        got = np.array([float(v) if v != "" else np.nan for v in now["metrics"][column]])
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6, err_msg=f"{name}: {column}")
