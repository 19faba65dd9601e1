"""`jaxrl sweep`: Optuna trials batched into populations — determinism, continuing an
interrupted sweep from its SQLite study, pruning, outputs, and refused input."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from jaxrl import config as config_lib  # noqa: E402
from jaxrl import sweep as sweep_lib  # noqa: E402
from jaxrl.errors import ConfigError  # noqa: E402
from jaxrl.experiment.tune import sweep  # noqa: E402

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[1]
BASE = {
    "env": {"id": "CartPole-v1", "num_envs": 4},
    "algo": {"name": "ppo", "lr": 3.0e-3, "num_steps": 32, "num_epochs": 2, "num_minibatches": 2,
             "network": {"torso": "mlp", "hidden_sizes": [32, 32], "activation": "tanh"}},
    "total_env_steps": 16384, "seeds": 2, "log_every_env_steps": 2048,
    "eval": {"episodes": 2, "every_env_steps": 8192},
    "checkpoint": {"every_env_steps": 2048},
}
SPACE = {"algo.lr": {"type": "log_uniform", "low": 1.0e-4, "high": 1.0e-2},
         "algo.ent_coef": {"type": "uniform", "low": 0.0, "high": 0.05},
         "algo.num_epochs": {"type": "int", "low": 1, "high": 2}}  # static: two programs at most


def config_with(search: dict, **top) -> config_lib.Config:
    return config_lib.from_dict({**BASE, **top, "search": search})


def study_trials(run_dir: Path) -> list:
    study = optuna.load_study(study_name="jaxrl-sweep", storage=f"sqlite:///{run_dir / 'study.db'}")
    return sorted(study.get_trials(), key=lambda t: t.number)


def jaxrl(*args: str, timeout: int = 600, **kwargs) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("jaxrl")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "jaxrl"]
    return subprocess.run(command + list(args), capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, **kwargs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted seeded sweep: 4 trials, 2 at a time."""
    run_dir = tmp_path_factory.mktemp("sweep") / "a"
    sweep(config_with({"space": SPACE}), run_dir, trials=4, batch=2, progress=False)
    return run_dir


def test_a_seeded_sweep_returns_the_same_best_trial_twice(reference, tmp_path):
    again = tmp_path / "b"
    summary = sweep(config_with({"space": SPACE}), again, trials=4, batch=2, progress=False)
    first = json.loads((reference / "summary.json").read_text())
    assert first["trials"] == summary["trials"] == {"complete": 4, "pruned": 0, "fail": 0, "running": 0}
    assert first["best_trials"][0] == summary["best_trials"][0]
    for a, b in zip(study_trials(reference), study_trials(again)):
        assert a.params == b.params and a.value == b.value
    # the trials differ (TPE's constant liar spreads a batch) and each has its seeds' finals
    trials = study_trials(reference)
    assert len({t.params["algo.lr"] for t in trials}) == 4
    assert all(len(t.user_attrs["per_seed"]) == 2 for t in trials)


def test_outputs_best_config_table_and_plots(reference):
    summary = json.loads((reference / "summary.json").read_text())
    best = summary["best_trials"][0]
    values = [t.value for t in study_trials(reference)]
    assert best["value"] == max(values) and best["rank"] == 1
    # each trial's value is the IQM over its seeds of its final greedy evaluation
    for t in study_trials(reference):
        per_seed = np.sort(t.user_attrs["per_seed"])
        assert t.value == pytest.approx(np.mean(per_seed))  # IQM of 2 values = their mean
        folder = reference / t.user_attrs["folder"]
        row = {r["setting"]: r for r in json.loads((folder / "summary.json").read_text())["settings"]}[f"trial-{t.number}"]
        assert row["per_seed"] == pytest.approx(t.user_attrs["per_seed"])
    # best_config.yaml is a plain config (no search left) with the best trial's values
    config = config_lib.load(reference / "best_config.yaml")
    assert not config.search.space and not config.sweep
    for key, value in best["values"].items():
        section, name = key.split(".")
        assert getattr(getattr(config, section), name) == pytest.approx(value)
    rows = (reference / "trials.csv").read_text().splitlines()
    assert rows[0].startswith("trial,state,value") and len(rows) == 5
    for plot in ("optimization_history.png", "param_importances.png"):
        assert (reference / "plots" / plot).read_bytes()[:4] == b"\x89PNG"
    assert set(summary["param_importances"]) == set(SPACE)
    # trials that drew different static values (num_epochs) trained as different programs
    for record in (reference / "batches").glob("*/batch.json"):
        programs = json.loads(record.read_text())["programs"]
        epochs = [p["static"]["algo.num_epochs"] for p in programs]
        assert len(epochs) == len(set(epochs))


@pytest.mark.timeout(900)
def test_an_interrupted_sweep_continues_without_rerunning_finished_trials(reference, tmp_path):
    config_path = tmp_path / "search.yaml"
    config_path.write_text(config_lib.dump(config_with({"space": SPACE})))
    run_dir = tmp_path / "interrupted"
    args = ("sweep", str(config_path), "--trials", "4", "--batch", "2", "--run-dir", str(run_dir), "--no-progress")
    script = Path(sys.executable).with_name("jaxrl")
    process = subprocess.Popen([str(script), *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 400
    while time.time() < deadline and process.poll() is None:  # stop inside the second batch,
        if any(p.name.isdigit() for p in (run_dir / "batches" / "0001").glob("*/checkpoints/*")):  # after a
            # checkpoint was committed (orbax writes into a temporary folder, then renames it)
            process.send_signal(signal.SIGINT)
            break
        time.sleep(0.02)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    first_batch = {p: p.stat().st_mtime_ns for p in (run_dir / "batches" / "0000").rglob("metrics.csv")}
    states = [t.state.name for t in study_trials(run_dir)]
    assert states[:2] == ["COMPLETE", "COMPLETE"] and "RUNNING" in states[2:]

    done = jaxrl(*args)
    assert done.returncode == 0, done.stderr
    assert "continuing the sweep" in done.stderr
    # batch 0 was not trained again; batch 1 resumed from its checkpoint
    assert {p: p.stat().st_mtime_ns for p in first_batch} == first_batch
    events = [json.loads(line)["event"] for folder in (run_dir / "batches" / "0001").iterdir() if folder.is_dir()
              for line in (folder / "timings.jsonl").read_text().splitlines()]
    assert "resume" in events
    # ... and every trial ends as in the uninterrupted sweep
    for a, b in zip(study_trials(reference), study_trials(run_dir), strict=True):
        assert a.params == b.params and a.value == pytest.approx(b.value, rel=1e-6)


def test_pruning_stops_a_bad_region(tmp_path):
    """lr 1e-7 cannot learn CartPole in 16k steps; lr 3e-3 does. Once a good trial has
    finished, the median pruner stops every bad trial before its end, never a good one."""
    search = {"space": {"algo.lr": {"type": "categorical", "choices": [1.0e-7, 3.0e-3]}},
              "sampler": "random", "pruner": "median", "pruner_startup_trials": 1,
              "pruner_warmup_env_steps": 6144}
    summary = sweep(config_with(search, checkpoint={"every_env_steps": 0}), tmp_path / "p",
                    trials=8, batch=2, progress=False)
    trials = study_trials(tmp_path / "p")
    first_good = min(t.number for t in trials if t.params["algo.lr"] == 3.0e-3 and t.state.name == "COMPLETE")
    first_good_batch = first_good // 2
    bad_later = [t for t in trials if t.params["algo.lr"] == 1.0e-7 and t.number // 2 > first_good_batch]
    assert bad_later, "the seeded random sampler drew no bad trial after a good one"
    for t in bad_later:
        assert t.state.name == "PRUNED" and t.last_step < BASE["total_env_steps"]
    assert all(t.state.name == "COMPLETE" for t in trials if t.params["algo.lr"] == 3.0e-3)
    assert summary["trials"]["pruned"] == len([t for t in trials if t.state.name == "PRUNED"])
    # a batch whose trials were all pruned stopped training there
    for record in sorted((tmp_path / "p" / "batches").glob("*/batch.json")):
        numbers = [int(n) for n in json.loads(record.read_text())["values"]]
        if all(trials[n].state.name == "PRUNED" for n in numbers):
            for program in record.parent.iterdir():
                if program.is_dir():
                    stopped = json.loads((program / "summary.json").read_text())["stopped_at_env_steps"]
                    assert stopped < BASE["total_env_steps"]


@pytest.mark.parametrize("space, message", [
    ({"algo.lr": {"type": "uniform", "low": 0.01, "high": 0.01}}, "empty or inverted"),
    ({"algo.lr": {"type": "log_uniform", "low": 0.01, "high": 0.001}}, "empty or inverted"),
    ({"algo.lr": {"type": "categorical", "choices": ["fast", "slow"]}}, "algo.lr must be a number"),
    ({"algo.lr": {"type": "categorical", "choices": []}}, "non-empty list of choices"),
    ({"algo.num_minibatches": {"type": "uniform", "low": 1, "high": 4}}, "use type: int"),
    ({"algo.gamma": {"type": "uniform", "low": 0.9, "high": 1.2}}, "must lie in [0, 1]"),
    ({"algo.lr": {"type": "normal", "low": 0.1, "high": 1}}, "type: one of"),
])
def test_bad_search_spaces_are_refused_naming_the_key(space, message):
    with pytest.raises(ConfigError) as error:
        config_with({"space": space})
    assert message in str(error.value) and "search.space." in str(error.value)


def test_sweep_refuses_bad_batches_and_sections(tmp_path):
    with pytest.raises(ConfigError, match="search: cannot be combined with sweep:"):
        config_with({"space": SPACE}, sweep={"algo.gae_lambda": [0.9, 0.95]})
    config = config_with({"space": SPACE})
    for trials, batch in ((4, 5), (0, None), (4, 0)):
        with pytest.raises(ConfigError):
            sweep(config, tmp_path / "x", trials=trials, batch=batch)
    with pytest.raises(ConfigError, match="needs a search: section"):
        sweep(config_lib.from_dict(BASE), tmp_path / "y", trials=2)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_cli_errors_are_one_line_with_exit_2(tmp_path):
    config_path = tmp_path / "search.yaml"
    config_path.write_text(config_lib.dump(config_with({"space": SPACE})))
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    for args, message in ((["--trials", "2", "--batch", "3"], "--batch 3 must lie between 1 and --trials 2"),
                          (["--trials", "2", "--run-dir", str(occupied)], "already exists"),
                          (["--trials", "2", "algo.lr=[1, 2]"], "cannot be combined with sweep:")):
        done = jaxrl("sweep", str(config_path), *args)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1 and message in done.stderr
    assert (occupied / "notes.txt").read_text() == "keep me"


def test_settings_listed_one_by_one_share_one_program():
    """`sweep.settings:` (what a batch's trials become) gives one setting per entry."""
    config = config_lib.from_dict({**BASE, "sweep": {"settings": [
        {"name": "trial-0", "algo.lr": 1e-3}, {"name": "trial-1", "algo.lr": 2e-3, "algo.ent_coef": 0.03}]}})
    lay = sweep_lib.layout(config)
    assert [s.name for s in lay.settings] == ["trial-0", "trial-1"] and lay.members == 4
    hparams = sweep_lib.stacked_hparams(config, lay)
    np.testing.assert_allclose(hparams.lr, [1e-3, 1e-3, 2e-3, 2e-3])
    np.testing.assert_allclose(hparams.ent_coef, [0.01, 0.01, 0.03, 0.03])  # the default, then its own
    with pytest.raises(ConfigError, match="changes the compiled program"):
        config_lib.from_dict({**BASE, "sweep": {"settings": [{"algo.num_minibatches": 4}]}})


def test_choices_optuna_cannot_store_are_offered_by_position():
    from jaxrl.experiment.tune import config_values, distributions

    space = sweep_lib.parse_space({"algo.network.hidden_sizes": {"type": "categorical", "choices": [[64, 64], [128]]},
                                   "algo.num_epochs": {"type": "categorical", "choices": [2, 4]}})
    dists = distributions(space)
    assert dists["algo.network.hidden_sizes"].choices == (0, 1) and dists["algo.num_epochs"].choices == (2, 4)
    assert config_values(space, {"algo.network.hidden_sizes": 1, "algo.num_epochs": 4}) == {
        "algo.network.hidden_sizes": [128], "algo.num_epochs": 4}
    config_with({"space": {"algo.network.hidden_sizes": {"type": "categorical", "choices": [[64, 64], [128]]}}})


def test_a_later_batch_reuses_the_compiled_programs_with_the_same_results(tmp_path):
    """A sweep's batches of one static setting share compiled programs (`programs=`); a run
    through a reused program equals the same run compiled from scratch."""
    from jaxrl.experiment.train import train

    def batch(*lrs: float) -> config_lib.Config:
        settings = [{"name": f"trial-{i}", "algo.lr": lr} for i, lr in enumerate(lrs)]
        return config_lib.from_dict({**BASE, "total_env_steps": 4096, "sweep": {"settings": settings}})

    programs: dict = {}
    first = train(batch(1e-3, 3e-3), tmp_path / "first", progress=False, programs=programs)
    assert first["compile_seconds"] > 0 and {key[0] for key in programs} >= {"chunk", "evaluate"}
    reused = train(batch(5e-3, 2e-4), tmp_path / "reused", progress=False, programs=programs)
    fresh = train(batch(5e-3, 2e-4), tmp_path / "fresh", progress=False)
    assert reused["compile_seconds"] == 0.0 < fresh["compile_seconds"]
    assert reused["final_eval"]["per_seed"] == fresh["final_eval"]["per_seed"]
    assert reused["final_eval"]["per_seed"] != first["final_eval"]["per_seed"]  # its own lrs trained
    import csv

    def learning_metrics(name: str) -> list[dict]:  # every logged figure but the wall-clock speed
        rows = csv.DictReader((tmp_path / name / "metrics.csv").open())
        return [{k: v for k, v in row.items() if k != "sps"} for row in rows]

    assert learning_metrics("reused") == learning_metrics("fresh")
