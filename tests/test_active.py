"""`hpcdens learn`: active learning on a tiny real PySCF SiGe binary.

4-atom cells (2 x 1 x 1 primitive diamond cells, so that the 3 interior candidates of resolution 4
are 3 different cells), mesh 0.6 Bohr, 2 rattled snapshots per composition, candidates
the simplex grid of resolution 4 (3 interior compositions once the pure elements are trained),
M = 12, a 60-32-32-2 network, 15 epochs, N_s = 10, 500 scoring points per structure.
Measured numbers are in docs/commands/learn.md."""

import csv
import dataclasses
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hpcdens.cli import main as cli_main
from hpcdens.composition import simplex_grid, tessellation
from hpcdens.config import load_config
from hpcdens.io.training_set import parts_dir, read_training_set
from hpcdens.learning import loop as active
from hpcdens.learning.loop import (
    choose_random,
    choose_separated,
    choose_top,
    grid_neighbours,
    next_tessellation,
    read_state,
    run_learn,
    score_candidates,
)
from tests.input_helpers import INTERIOR, LEARN, PURE, write_input_file


def main(argv):
    """``hpcdens learn ARGV`` through the real command line (exit code)."""
    return cli_main(["learn", *argv])


def write(directory, changes=None, name="learn.toml"):
    """``directory/name``: the problem LEARN of tests/input_helpers.py with ``changes``."""
    return write_input_file(directory / name, {**LEARN, **(changes or {})})


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted bayesian run, 2 rounds, in this process: (input, directory, journal)."""
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("learn_ref")
    inp = write(d)
    state = run_learn(load_config(inp), d / "run")
    return inp, d / "run", state


def _run_ids(directory):
    return {s.key: s.attrs["run_id"] for s in read_training_set(directory / "train.h5")}


def test_bayesian_round_one_scores_interior_and_picks_the_most_uncertain(reference):
    inp, directory, state = reference
    r1, r2 = state["rounds"]
    assert r1["training"] == PURE and r1["new"] == PURE
    assert sorted(r1["scores"]) == sorted(INTERIOR), "one score per candidate not yet trained on"
    assert all(math.isfinite(s) and s > 0 for s in r1["scores"].values())
    assert r1["chosen"] == [max(r1["scores"], key=r1["scores"].get)]
    chosen = r1["chosen"][0]
    assert r2["training"] == PURE + [chosen] and r2["new"] == [chosen]
    assert state["stopped"].startswith("max_rounds")
    assert r1["validation_nrmse"] > 0 and r2["validation_nrmse"] > 0

    # Same model, same aggregate: the chosen mixed composition is more uncertain than either pure
    # element the model was trained on (measured 9.18e-4 vs 7.32e-4 Si, 8.39e-4 Ge), and
    # labelling it lowers its own score (measured 9.18e-4 -> 7.08e-4).
    config = load_config(inp)
    comps = active.by_label(config)
    from mpi4py import MPI

    one = score_candidates(config, directory / r1["model"], PURE + [chosen], comps, MPI.COMM_SELF)
    assert one[chosen] == pytest.approx(r1["scores"][chosen], rel=1e-12), "scores reproducible"
    assert one[chosen] > max(one[p] for p in PURE)
    two = score_candidates(config, directory / r2["model"], [chosen], comps, MPI.COMM_SELF)
    assert two[chosen] < one[chosen]

    keys = sorted(_run_ids(directory))
    assert keys == sorted(f"{c}/s{i:03d}" for c in PURE + [chosen] for i in range(2))


def test_energy_score_is_the_energy_error_bar_of_the_candidate(reference, tmp_path):
    """[learn] score = "energy": a candidate's score is the std of the Harris-Foulkes energies of
    its N_s sample densities, the error bar that predict --save-samples + hpcdens energy give
    for the same structure on the same DFT grid."""
    from mpi4py import MPI

    from hpcdens.dft import get_backend
    from hpcdens.energy import run_energy
    from hpcdens.learning.scoring import candidate_atoms
    from hpcdens.parallel.predict import run_predict

    inp, directory, state = reference
    model = directory / state["rounds"][0]["model"]
    config = load_config(write(tmp_path, {"learn.score": "energy"}))
    comps = active.by_label(config)
    scores = score_candidates(config, model, INTERIOR, comps, MPI.COMM_SELF)
    assert all(math.isfinite(s) and s > 0 for s in scores.values())
    label = INTERIOR[1]
    atoms = candidate_atoms(config, comps[label], 0)
    atoms.write(tmp_path / "c.traj")  # full precision
    shape = get_backend(config.dft.backend).make_grid(atoms, config.dft).shape
    run_predict(MPI.COMM_SELF, model, tmp_path / "c.traj", tmp_path / "c.h5", shape=shape,
                save_samples=True)
    bar = run_energy(tmp_path / "c.h5", config.dft)["error_bar"]
    assert scores[label] == pytest.approx(bar["sigma_raw_per_atom_ha"], rel=1e-9)


def test_energy_score_round_is_journaled_in_its_unit(reference, tmp_path):
    inp = reference[0]
    config = load_config(write(tmp_path, {"learn.score": "energy"}))
    state = run_learn(config, tmp_path / "run", stop_at="scored")
    r1 = state["rounds"][0]
    assert "Ha/atom" in state["aggregate"] and "Ha/atom" in r1["score_aggregate"]
    assert sorted(r1["scores"]) == sorted(INTERIOR)
    assert active.settings_fingerprint(config) != active.settings_fingerprint(load_config(inp))


def test_report_table_csv_and_plots(reference, capsys):
    inp, directory, state = reference
    assert main([str(inp), "--out", str(directory), "--no-progress"]) == 0, "finished run: report"
    text = capsys.readouterr().out
    assert "epistemic standard deviation" in text and "stopped: max_rounds" in text
    with open(directory / "rounds.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["round"]) for r in rows] == [1, 2]
    assert rows[0]["chosen"] == state["rounds"][0]["chosen"][0]
    assert float(rows[0]["chosen_score"]) == pytest.approx(
        state["rounds"][0]["scores"][rows[0]["chosen"]], rel=1e-3)
    assert float(rows[1]["validation_nrmse"]) > 0 and float(rows[0]["dft_wall_s"]) > 0
    assert (directory / "scores.png").stat().st_size > 0
    assert (directory / "learning_curve.png").stat().st_size > 0
    assert read_state(directory) == state, "a finished run is not changed by running it again"


def test_sigkill_after_training_resumes_with_the_same_choices(reference, tmp_path):
    inp, ref_dir, ref = reference
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "hpcdens.cli", "learn", str(inp), "--out", str(out), "--no-progress",
           "--no-plots"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline, state = time.time() + 120, None
    while time.time() < deadline and proc.poll() is None:
        try:
            state = read_state(out)
        except Exception:           # noqa: BLE001 - only a rename can be in flight
            state = None
        if state and state["rounds"] and state["rounds"][0].get("trained"):
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = read_state(out)
    assert state["rounds"][0].get("trained"), "killed before round 1 was trained"
    assert not (len(state["rounds"]) == 2 and state["rounds"][1].get("trained")), "killed too late"
    before = {p.name: p.stat().st_mtime_ns for p in parts_dir(out / "train.h5").glob("*.h5")}
    first_model = (out / "round_01" / "model.pt").stat().st_mtime_ns

    assert main([str(inp), "--out", str(out), "--no-progress", "--no-plots"]) == 0
    state = read_state(out)
    assert [r["chosen"] for r in state["rounds"]] == [r["chosen"] for r in ref["rounds"]]
    assert [r["training"] for r in state["rounds"]] == [r["training"] for r in ref["rounds"]]
    for lb, s in ref["rounds"][0]["scores"].items():
        assert state["rounds"][0]["scores"][lb] == pytest.approx(s, rel=1e-4)
    after = {p.name: p.stat().st_mtime_ns for p in parts_dir(out / "train.h5").glob("*.h5")}
    assert all(after[n] == t for n, t in before.items()), "a finished label was recomputed"
    assert len(after) == 6 and sorted(_run_ids(out)) == sorted(_run_ids(ref_dir))
    assert (out / "round_01" / "model.pt").stat().st_mtime_ns == first_model, "round 1 retrained"


def test_resume_after_scoring_reuses_the_journaled_scores(reference, tmp_path):
    inp, _, ref = reference
    config = load_config(inp)
    first = run_learn(config, tmp_path / "run", stop_at="scored")
    assert first["rounds"][0]["scores"] and "chosen" not in first["rounds"][0]
    assert read_state(tmp_path / "run") == first
    journaled = dict(first["rounds"][0]["scores"])
    parts = parts_dir(tmp_path / "run" / "train.h5")
    before = {p.name: p.stat().st_mtime_ns for p in parts.glob("*.h5")}
    final = run_learn(config, tmp_path / "run")
    assert final["rounds"][0]["scores"] == journaled
    assert [r["chosen"] for r in final["rounds"]] == [r["chosen"] for r in ref["rounds"]]
    after = {p.name: p.stat().st_mtime_ns for p in parts.glob("*.h5")}
    assert len(before) == 4 and len(after) == 6
    assert all(after[n] == t for n, t in before.items()), "round 1 labels recomputed"


def test_tessellation_labels_t1_then_what_t2_adds(tmp_path):
    inp = write(tmp_path, {"learn.strategy": "tessellation", "snapshots.per_composition": 1})
    state = run_learn(load_config(inp), tmp_path / "run")
    r1, r2 = state["rounds"]
    assert r1["training"] == PURE and r1["chosen"] == ["Si0.5_Ge0.5"] and "scores" not in r1
    assert r2["new"] == ["Si0.5_Ge0.5"] and r2["training"] == PURE + ["Si0.5_Ge0.5"]
    assert sorted(_run_ids(tmp_path / "run")) == sorted(f"{c}/s000" for c in r2["training"])
    config = load_config(inp)
    assert next_tessellation(config, r2["training"]) == ["Si0.75_Ge0.25", "Si0.25_Ge0.75"]
    ternary = load_config(write(tmp_path, {"system.elements": ["Si", "Ge", "Sn"]}, "t.toml"))
    t1 = active.initial(ternary)
    t2 = next_tessellation(ternary, t1)
    assert len(t1) == 3 and len(t1 + t2) == len(tessellation(["Si", "Ge", "Sn"], 2))
    assert len(t1 + t2 + next_tessellation(ternary, t1 + t2)) == 15, "T4 of a ternary: 15 points"


def test_random_strategy_is_seeded(tmp_path):
    pool = ["a", "b", "c", "d", "e", "f"]
    assert choose_random(pool, 2, 7, 1) == choose_random(list(reversed(pool)), 2, 7, 1)
    draws = {tuple(choose_random(pool, 2, seed, 1)) for seed in range(20)}
    assert len(draws) > 3, "different seeds give different picks"
    inp = write(tmp_path, {"learn.strategy": "random", "learn.seed": 5,
                           "snapshots.per_composition": 1})
    state = run_learn(load_config(inp), tmp_path / "run")
    assert state["rounds"][0]["chosen"] == choose_random(INTERIOR, 1, 5, 1)
    assert "scores" not in state["rounds"][0]


def test_separated_pick_takes_one_peak_per_region():
    """Round 1 of a ternary: the two highest scores are grid neighbours on the Si-Sn edge, so
    "separated" takes the top one and then the best score away from it; with every candidate left
    next to a pick it fills by score; "top" takes the neighbours."""
    els = ("Si", "Ge", "Sn")
    grid = {c.label: c for c in (active.canonical(g, els) for g in simplex_grid(els, 4))
            if max(c.fractions) < 1}
    by_fractions = {c.fractions: lb for lb, c in grid.items()}
    si_sn, si3_sn, ge_sn = (by_fractions[f] for f in ((0.5, 0, 0.5), (0.75, 0, 0.25),
                                                       (0, 0.5, 0.5)))
    scores = {lb: 1.0 for lb in grid}
    scores.update({si_sn: 17.0, si3_sn: 16.0, ge_sn: 5.0})
    assert choose_top(scores, 2) == [si_sn, si3_sn]
    assert choose_separated(scores, 2, grid, 4) == [si_sn, ge_sn]
    assert grid_neighbours(grid[si_sn], grid[si3_sn], 4)
    assert not grid_neighbours(grid[si_sn], grid[ge_sn], 4)
    picked = choose_separated(scores, len(grid), grid, 4)
    assert sorted(picked) == sorted(grid) and picked[:2] == [si_sn, ge_sn]
    firsts = [lb for lb in picked if not any(grid_neighbours(grid[lb], grid[c], 4)
                                             for c in picked[:picked.index(lb)])]
    assert picked[:len(firsts)] == firsts, "no fill-in before the separated picks run out"


def test_bad_input_exits_2(tmp_path, capsys):
    inp = write(tmp_path, {"learn.strategy": "bayes"})
    assert main([str(inp), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "[learn] strategy" in err and "bayesian" in err
    inp = write(tmp_path, {"learn.per_round": 0}, "b.toml")
    assert main([str(inp), "--out", str(tmp_path / "run")]) == 2
    assert main([str(write(tmp_path, {}, "c.toml")), "--out", str(tmp_path / "no" / "run")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_changed_settings_are_refused(reference, tmp_path, capsys):
    inp, directory, _ = reference
    other = write(tmp_path, {"learn.score_points": 400})
    assert main([str(other), "--out", str(directory), "--no-plots"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_settings_added_later_keep_older_journals_resumable():
    """A setting added with a default must not change the fingerprint of inputs that leave it at
    that default: f5de3cf1d615ad5a is what the CrFeCoNi study journaled (state.json) before
    [train] density_fraction and kl_divisor (and [learn] pick) existed. Setting them does change
    it."""
    config = load_config(Path(__file__).resolve().parents[1] / "inputs" / "reproduction-crfeconi"
                         / "crfeconi-bayesian.toml")
    assert active.settings_fingerprint(config) == "f5de3cf1d615ad5a"
    for key, value in (("density_fraction", 0.5), ("kl_divisor", "grid"), ("nll_beta", 0.5)):
        changed = dataclasses.replace(config, train=dataclasses.replace(config.train, **{key: value}))
        assert active.settings_fingerprint(changed) != "f5de3cf1d615ad5a", key
    changed = dataclasses.replace(config, learn=dataclasses.replace(config.learn, pick="separated"))
    assert active.settings_fingerprint(changed) != "f5de3cf1d615ad5a"


def test_journal_records_the_pick_and_an_older_journal_gets_it_on_resume(reference, tmp_path):
    """learn-compare groups runs by strategy and pick, read from the journal: a new journal has
    it; one written before [learn] pick existed gets the input's pick when it resumes (the
    fingerprint has checked that the input is the run's)."""
    import shutil

    inp, directory, state = reference
    assert state["pick"] == "top"
    old = tmp_path / "old"
    shutil.copytree(directory, old)
    journal = active.read_state(old)
    del journal["pick"]
    active.write_state(old, journal)
    resumed = active.prepare(load_config(inp), old, overwrite=False)
    assert resumed["pick"] == "top" and active.read_state(old)["pick"] == "top"
    assert {k: v for k, v in resumed.items() if k != "pick"} == journal


def test_help_documents_the_aggregate(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "epistemic standard deviation" in out and "--overwrite" in out


def test_score_plots_for_ternary_and_quaternary(tmp_path):
    from hpcdens.composition import simplex_grid
    from hpcdens.learning.report import plot_scores

    for els in (["Si", "Ge", "Sn"], ["Cr", "Fe", "Co", "Ni"]):
        grid = [c.label for c in simplex_grid(els, 4)]
        pure = [lb for lb in grid if "1_" in lb or lb.endswith("1")][:len(els)]
        scores = {lb: 1e-3 * (i + 1) for i, lb in enumerate(grid) if lb not in pure}
        state = {"strategy": "bayesian", "elements": els, "rounds": [
            {"round": 1, "training": pure, "new": pure, "scores": scores,
             "chosen": [max(scores, key=scores.get)]}]}
        path = tmp_path / f"{len(els)}.png"
        assert plot_scores(state, path) and path.stat().st_size > 0


def test_raised_max_rounds_continues_and_threshold_stops(reference, tmp_path):
    import shutil

    _, directory, ref = reference
    out = tmp_path / "run"
    shutil.copytree(directory, out)
    inp = write(tmp_path, {"learn.max_rounds": 3, "learn.uncertainty_threshold": 1.0})
    state = run_learn(load_config(inp), out)
    assert len(state["rounds"]) == 2 and state["rounds"][0] == ref["rounds"][0]
    r2 = state["rounds"][1]
    assert sorted(r2["scores"]) == sorted(set(INTERIOR) - set(r2["training"]))
    assert r2["chosen"] == [] and state["stopped"].startswith("uncertainty_threshold")
