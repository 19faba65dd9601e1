"""The README's Python examples run as written (each in a fresh interpreter) and do what they say."""

import re
from pathlib import Path

import pytest

from conftest import run_python

pytestmark = pytest.mark.timeout(600)

README = Path(__file__).resolve().parents[1] / "README.md"

# What each example must achieve, checked after its own code has run.
CHECKS = {
    "adapters": "import jax\n"
                "obs, state = env.reset(jax.random.PRNGKey(0), env_params)\n"
                "assert obs.shape == (8, 1)\n"
                "again, _ = envs.make_vec('LineWalk-v0', 4)\n"
                "assert again.num_envs == 4",
    "custom_env": "import numpy as np\n"
                  "assert np.all(np.abs(result.reports[-1].metrics['episode_length'] - 3) < 0.1)",
    "custom_algo": "import numpy as np\n"
                   "assert np.median(result.reports[-1].metrics['episode_return']) > 150",
    "python_api": "import numpy as np\n"
                  "assert result.final_eval_returns.shape == (4, 10)\n"
                  "assert np.median(result.final_eval_returns) > 150",
}


def examples() -> dict[str, str]:
    text = README.read_text()
    found = re.findall(r"<!-- example: (\w+) -->\s*```python\n(.*?)```", text, flags=re.S)
    return dict(found)


def test_readme_has_every_checked_example():
    assert set(examples()) == set(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_readme_example_runs(name):
    code = examples()[name] + "\n" + CHECKS[name] + "\nprint('EXAMPLE OK')\n"
    done = run_python(code, devices=1, timeout=500)
    assert done.returncode == 0 and "EXAMPLE OK" in done.stdout, done.stderr[-3000:]
