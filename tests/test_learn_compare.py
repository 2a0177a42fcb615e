"""`hpcdens learn-compare`: learning curves of two real tiny learn runs on one DFT test set.

Two `run_learn` runs on the tiny PySCF SiGe binary (2-atom primitive diamond cells, mesh 0.6 Bohr,
2 rattled snapshots per composition, M = 12, 32-32 hidden, 15 epochs): tessellation and random
(seed 5), 2 rounds each. Test set: one snapshot (seed 11) of Si1, Si0.5Ge0.5 and Si0.25Ge0.75;
on a 2-atom cell Si0.25Ge0.75 is realised as Si1Ge1, i.e. Si0.5Ge0.5 (largest-remainder counts).
The comparison's numbers are checked against direct `run_evaluate` calls of the same models.
"""

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("pyscf")

from hpcdens.cli import main as cli_main
from hpcdens.commands import learn_compare as learn_compare_command
from hpcdens.config import load_config
from hpcdens.errors import InputError
from hpcdens.evaluation import run_evaluate, summarise
from hpcdens.io.files import sha256_file
from hpcdens.learning.compare import COLUMNS, run_compare
from hpcdens.learning.loop import read_state, run_learn, write_state
from tests.input_helpers import LEARN as ACTIVE_LEARN  # noqa: E402
from tests.input_helpers import write_input_file  # noqa: E402
from tests.mpi_helpers import on_rank0  # noqa: E402

# The problem of tests/test_active.py, on its 2-atom cells (no supercell): what those cells
# realise is part of what this file checks.
LEARN = {**{k: v for k, v in ACTIVE_LEARN.items() if k not in ("system.supercell",
                                                                 "learn.strategy")},
         "learn.seed": 5,
         "train.charge_model": False}   # rounds without a charge model: --charge-model fits copies
TEST_COMPOSITIONS = ["Si1", "Si0.5Ge0.5", "Si0.25Ge0.75"]
TEST_KEYS = ["Si1_Ge0/s000", "Si0.5_Ge0.5/s000", "Si0.25_Ge0.75/s000"]
# What a 2-atom cell realises for each candidate label (checked against the files below).
REALISED = {"Si1_Ge0": "Si1_Ge0", "Si0_Ge1": "Si0_Ge1", "Si0.5_Ge0.5": "Si0.5_Ge0.5",
            "Si0.25_Ge0.75": "Si0.5_Ge0.5", "Si0.75_Ge0.25": "Si1_Ge0"}

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _input(path, changes):
    """``path``: LEARN of this module with ``changes``."""
    return write_input_file(path, {**LEARN, **changes})


def _comm():
    from mpi4py import MPI

    return MPI.COMM_SELF


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{"tess": dir, "random": dir, "testset": path, "states": {...}}: two learn runs and a
    test set, made once for this module."""
    import torch

    from hpcdens.labelling import run_generate

    d = tmp_path_factory.mktemp("learn_compare")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        states = {}
        for name, strategy in (("tess", "tessellation"), ("random", "random")):
            inp = _input(d / f"{name}.toml", {"learn.strategy": strategy})
            states[name] = run_learn(load_config(inp), d / name)
    finally:
        torch.set_num_threads(threads)
    test = _input(d / "test.toml", {"compositions.list": TEST_COMPOSITIONS,
                                    "snapshots.per_composition": 1, "snapshots.seed": 11})
    run_generate(load_config(test), d / "test.h5", _comm(), progress=False)
    return {"tess": d / "tess", "random": d / "random", "testset": d / "test.h5",
            "states": states, "root": d}


@pytest.fixture(scope="module")
def compared(runs, tmp_path_factory):
    """The comparison of both runs on all test snapshots (evaluates all 4 rounds)."""
    out = tmp_path_factory.mktemp("cmp") / "out"
    result = run_compare(_comm(), runs["testset"], [runs["tess"], runs["random"]], out)
    return out, result


@pytest.fixture(scope="module")
def direct(runs, tmp_path_factory):
    """Direct run_evaluate of the round-2 model of each run: {name: rows by key}."""
    found = {}
    for name in ("tess", "random"):
        r2 = runs["states"][name]["rounds"][1]
        out = tmp_path_factory.mktemp(f"direct-{name}") / "ev"
        res = run_evaluate(_comm(), runs[name] / r2["model"], runs["testset"], out)
        found[name] = {r["key"]: r for r in res["rows"]}
    return found


def _held_out(training):
    seen = set(training) | {REALISED[t] for t in training}
    return [k for k in TEST_KEYS if not ({k.split("/")[0], REALISED[k.split("/")[0]]} & seen)]


def _check_stats(row, rows):
    s = summarise(rows)
    for k in ("mean_abs_error_ha_per_atom", "max_abs_error_ha_per_atom", "mean_nrmse",
              "max_nrmse", "mean_relative_l1_percent", "n_chemically_accurate"):
        if s[k] is None:
            assert row[k] is None, k
        else:
            assert row[k] == pytest.approx(s[k], rel=1e-9, abs=1e-15), k


def test_rows_per_round_equal_direct_evaluation(runs, compared, direct):
    out, result = compared
    # On 2-atom cells both strategies train on the same compositions with the same seed in each
    # round (round 1: the pure elements; round 2: + Si0.5Ge0.5, the only other candidate): the
    # same weights, so random's rounds get copies of tessellation's evaluations.
    assert result["evaluated"] == ["tess/round_01", "tess/round_02"]
    assert result["copied"] == ["random/round_01", "random/round_02"] and result["reused"] == []
    rows = {(r["name"], r["round"]): r for r in result["rows"]}
    assert sorted(rows) == sorted((n, i) for n in ("tess", "random") for i in (1, 2))
    for name in ("tess", "random"):
        state = runs["states"][name]
        for r in state["rounds"]:
            row = rows[(name, r["round"])]
            assert row["n_training"] == len(r["training"]) and row["n_test"] == 3
            assert row["strategy"] == state["strategy"] and row["test_keys"] == TEST_KEYS
            assert row["model_sha256"] == r["model_sha256"]
        assert [rows[(name, i)]["n_training"] for i in (1, 2)] == [2, 3]
        # Aggregation against an independent evaluation of the same model.
        row2 = rows[(name, 2)]
        _check_stats(row2, list(direct[name].values()))
        acc = max(r["abs_error_ha_per_atom"] for r in direct[name].values()) <= 1.6e-3
        assert row2["chemically_accurate"] == acc
        print(f"\n[learn-compare] {name}: " + "; ".join(
            f"round {i}: n_train {rows[(name, i)]['n_training']}, mean |E| "
            f"{rows[(name, i)]['mean_abs_error_ha_per_atom']:.3e}, max NRMSE "
            f"{rows[(name, i)]['max_nrmse']:.3e}" for i in (1, 2)))
    data = json.loads((out / "compare.json").read_text())
    assert data["rows"] == json.loads(json.dumps(result["rows"]))
    import csv

    with open(out / "compare.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == list(COLUMNS) and len(table) == 4
    assert (out / "learning_curves.png").stat().st_size > 10_000
    for name in ("tess", "random"):
        for i in (1, 2):
            assert (out / name / f"round_{i:02d}" / "evaluate.json").is_file()
            assert (out / name / f"round_{i:02d}" / "source.json").is_file()


def test_compositions_to_chemical_accuracy_per_strategy(runs, compared):
    """Per run, the first round (by training compositions) whose every test snapshot is within
    1.6e-3 Ha/atom; grouped by strategy and pick. Checked on the real comparison and on rows made
    up to cover a run that never reaches it and two runs of one strategy."""
    from hpcdens.learning.compare_report import format_accuracy, to_chemical_accuracy

    _, result = compared
    summary = {g["strategy"]: g for g in result["to_chemical_accuracy"]}
    assert sorted(summary) == ["random", "tessellation"]
    for strategy, name in (("tessellation", "tess"), ("random", "random")):
        g = summary[strategy]
        assert g["pick"] == "top" and g["n_runs"] == 1 and g["runs"][0]["name"] == name
        mine = sorted((r for r in result["rows"] if r["name"] == name), key=lambda r: r["round"])
        first = next((r["n_training"] for r in mine if r["chemically_accurate"]), None)
        assert g["runs"][0]["reached_at"] == first and g["n_reached"] == (first is not None)
        assert g["runs"][0]["largest_trained"] == 3
    assert json.loads(json.dumps(result["to_chemical_accuracy"])) == json.loads(
        (Path(result["out"]) / "compare.json").read_text())["to_chemical_accuracy"]

    def row(name, n, ok):
        return {"name": name, "n_training": n, "round": n, "chemically_accurate": ok}

    made_up = [row("b0", 3, False), row("b0", 6, True), row("b0", 9, True),
               row("b1", 3, False), row("b1", 6, False), row("b1", 9, True),
               row("b2", 3, False), row("b2", 6, False), row("b2", 9, False),
               row("s0", 3, None), row("s0", 6, True)]
    runs_ = [{"name": n, "strategy": "bayesian", "pick": "top"} for n in ("b0", "b1", "b2")]
    runs_.append({"name": "s0", "strategy": "bayesian", "pick": "separated"})
    top, sep = to_chemical_accuracy(made_up, runs_)
    assert [m["reached_at"] for m in top["runs"]] == [6, 9, None]
    assert (top["n_reached"], top["min"], top["median"], top["max"]) == (2, 6, 7.5, 9)
    assert (sep["pick"], sep["n_reached"], sep["min"]) == ("separated", 1, 6)
    table = format_accuracy([top, sep])
    assert "6, 9, >9" in table and "bayesian (separated)" in table


def test_seed_spread_per_strategy_and_round(runs, compared):
    """Runs of one strategy and pick (seeds) give one entry per round with every run's errors and
    their spread; one run per strategy prints no table. Checked on the real comparison and on
    made-up rows of three seeds."""
    from hpcdens.learning.compare_report import format_spread, seed_spread

    _, result = compared
    got = {(g["strategy"], g["round"]): g for g in result["seed_spread"]}
    for r in result["rows"]:
        g = got[(r["strategy"], r["round"])]
        assert g["n_runs"] == 1 and g["mean_of_means"] == r["mean_abs_error_ha_per_atom"]
        assert g["median_max"] == r["max_abs_error_ha_per_atom"]
    assert format_spread(result["seed_spread"]) == ""

    def row(name, rnd, mean, mx, n=None):
        return {"name": name, "round": rnd, "n_training": n or 4 * rnd,
                "mean_abs_error_ha_per_atom": mean, "max_abs_error_ha_per_atom": mx}

    made_up = [row("r0", 1, 1e-2, 3e-2), row("r0", 2, 2e-3, 4e-3),
               row("r1", 1, 2e-2, 5e-2), row("r1", 2, 1e-3, 2e-3, n=7),
               row("r2", 1, 3e-2, 4e-2), row("r2", 2, None, None),
               row("t0", 1, 5e-3, 6e-3)]
    runs_ = [{"name": n, "strategy": "random", "pick": "top"} for n in ("r0", "r1", "r2")]
    runs_.append({"name": "t0", "strategy": "tessellation", "pick": "top"})
    first, second, tess = seed_spread(made_up, runs_)
    assert (first["n_runs"], first["n_training"]) == (3, [4])
    assert first["mean_of_means"] == pytest.approx(2e-2)
    assert (first["min_mean"], first["max_mean"]) == (1e-2, 3e-2)
    assert (first["median_max"], first["min_max"], first["max_max"]) == (4e-2, 3e-2, 5e-2)
    assert (second["n_runs"], second["n_training"]) == (2, [7, 8])     # r2: no energies
    assert [m["name"] for m in second["per_run"]] == ["r0", "r1"]
    assert (tess["strategy"], tess["n_runs"]) == ("tessellation", 1)
    table = format_spread([first, second, tess])
    assert "7-8" in table and "2.00e-02 (1.00e-02-3.00e-02)" in table


def test_exclude_training_through_the_command_line(runs, compared, direct, tmp_path, capsys):
    import h5py

    from hpcdens.composition import parse_composition

    with h5py.File(runs["testset"], "r") as f:   # the realised compositions this test assumes
        for key in TEST_KEYS:
            realised = str(f["snapshots"][key].attrs["composition"])
            assert parse_composition(realised, ["Si", "Ge"]).label == REALISED[key.split("/")[0]]
    out0, _ = compared
    out = tmp_path / "copy"
    shutil.copytree(out0, out)                     # copy2: mtimes kept; the cache still applies
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("evaluate.json")}
    assert cli_main(["learn-compare", str(runs["testset"]), str(runs["tess"]),
                     str(runs["random"]), "--out", str(out),
                     "--exclude-training"]) == 0
    printed = capsys.readouterr().out
    assert "0 round(s) evaluated now, 4 reused" in printed and "held-out" in printed
    assert "tessellation" in printed and "random" in printed
    assert "until every test snapshot is within chemical accuracy" in printed
    assert {p: p.stat().st_mtime_ns for p in out.rglob("evaluate.json")} == stamps
    before = (out / "compare.json").read_bytes()
    data = json.loads((out / "compare_held_out.json").read_text())
    assert data["exclude_training"] and data["evaluated"] == [] and len(data["reused"]) == 4
    assert (out / "compare.json").read_bytes() == before   # the all-snapshots results stay
    rows = {(r["name"], r["round"]): r for r in data["rows"]}
    for name in ("tess", "random"):
        for r in runs["states"][name]["rounds"]:
            row = rows[(name, r["round"])]
            keep = _held_out(r["training"])
            assert row["test_keys"] == keep and row["n_test"] == len(keep)
            assert row["n_test_total"] == 3
        keep2 = _held_out(runs["states"][name]["rounds"][1]["training"])
        _check_stats(rows[(name, 2)], [direct[name][k] for k in keep2])
    # Round 1 trains on Si and Ge only: the Si snapshot is excluded, the two mixed ones kept.
    assert rows[("tess", 1)]["test_keys"] == TEST_KEYS[1:]
    # Tessellation round 2 adds Si0.5Ge0.5, which is also what Si0.25Ge0.75 realises: none left.
    assert rows[("tess", 2)]["n_test"] == 0 and rows[("tess", 2)]["mean_nrmse"] is None
    assert (out / "learning_curves_held_out.png").stat().st_size > 0
    assert (out / "compare_held_out.csv").is_file()


def test_resume_and_a_grown_learn_run_evaluate_only_new_rounds(runs, tmp_path):
    grown = tmp_path / "tess"
    shutil.copytree(runs["tess"], grown)
    full = read_state(grown)
    write_state(grown, {**full, "rounds": full["rounds"][:1], "stopped": None})
    out = tmp_path / "out"
    first = run_compare(_comm(), runs["testset"], [grown], out, plots=False)
    assert first["evaluated"] == ["tess/round_01"] and len(first["rows"]) == 1
    assert not (out / "learning_curves.png").exists()
    stamp = (out / "tess" / "round_01" / "evaluate.json").stat().st_mtime_ns
    write_state(grown, full)                        # the learn run has grown by one round
    second = run_compare(_comm(), runs["testset"], [grown], out, plots=False)
    assert second["evaluated"] == ["tess/round_02"] and second["reused"] == ["tess/round_01"]
    assert (out / "tess" / "round_01" / "evaluate.json").stat().st_mtime_ns == stamp
    # A comparison killed during an evaluation left no source.json: that round only is redone.
    (out / "tess" / "round_02" / "source.json").unlink()
    third = run_compare(_comm(), runs["testset"], [grown], out, plots=False)
    assert third["evaluated"] == ["tess/round_02"] and third["reused"] == ["tess/round_01"]
    assert [r["mean_nrmse"] for r in third["rows"]] == [r["mean_nrmse"] for r in second["rows"]]


def test_an_equal_model_gets_a_copy_of_the_evaluation(runs, tmp_path):
    """A learn run copied under another name (another path in its model's record): its round is
    evaluated once and copied once."""
    first = tmp_path / "tess"
    shutil.copytree(runs["tess"], first)
    state = read_state(first)
    write_state(first, {**state, "rounds": state["rounds"][:1], "stopped": None})
    twin = tmp_path / "twin"
    shutil.copytree(first, twin)
    out = tmp_path / "out"
    result = run_compare(_comm(), runs["testset"], [first, twin], out, plots=False)
    assert result["evaluated"] == ["tess/round_01"] and result["copied"] == ["twin/round_01"]
    a, b = ({r["key"]: r for r in json.loads((out / n / "round_01" / "evaluate.json")
                                               .read_text())["rows"]} for n in ("tess", "twin"))
    assert a == b and len(a) == len(TEST_KEYS)
    source = json.loads((out / "twin" / "round_01" / "source.json").read_text())
    assert source["model"] == str(twin / "round_01" / "model.pt")
    preds = sorted((out / "twin" / "round_01" / "predictions").iterdir())
    assert len(preds) == len(TEST_KEYS)
    rows = {r["name"]: r for r in result["rows"]}
    assert rows["tess"]["mean_nrmse"] == rows["twin"]["mean_nrmse"]
    # Once copied it is a cached round like any other; a changed model is evaluated again.
    again = run_compare(_comm(), runs["testset"], [first, twin], out, plots=False)
    assert again["evaluated"] == [] and sorted(again["reused"]) == ["tess/round_01",
                                                                    "twin/round_01"]
    other = runs["states"]["tess"]["rounds"][1]["model"]
    shutil.copy(runs["tess"] / other, twin / "round_01" / "model.pt")
    state = read_state(twin)
    state["rounds"][0]["model_sha256"] = sha256_file(twin / "round_01" / "model.pt")
    write_state(twin, state)
    changed = run_compare(_comm(), runs["testset"], [first, twin], out, plots=False)
    assert changed["evaluated"] == ["twin/round_01"] and changed["copied"] == []


def test_charge_model_fits_one_per_round_and_evaluates_with_it(runs, tmp_path, capsys):
    """--charge-model: each round's model gets a charge model fitted on its own training
    snapshots (the learn directory untouched), the rows are those of evaluate on that copy, an
    equal round is fitted but copied, and the cache keeps the two kinds of evaluation apart."""
    from hpcdens.charge_correction import run_fit_charges
    from hpcdens.io.model import load_model

    tess = tmp_path / "tess"
    shutil.copytree(runs["tess"], tess)
    twin = tmp_path / "twin"
    shutil.copytree(tess, twin)
    state = read_state(twin)
    write_state(twin, {**state, "rounds": state["rounds"][:1], "stopped": None})
    before = {p: sha256_file(p) for p in tess.rglob("model.pt")}
    out = tmp_path / "out"
    assert cli_main(["learn-compare", str(runs["testset"]), str(tess), str(twin), "--out",
                     str(out), "--charge-model", "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert "2 round(s) evaluated now, 0 reused from earlier runs, 1 copied" in printed, printed
    assert {p: sha256_file(p) for p in tess.rglob("model.pt")} == before
    result = json.loads((out / "compare.json").read_text())
    assert result["charge_model"] and result["copied"] == ["twin/round_01"]
    r2 = state["rounds"][1]
    charged = out / "tess" / "round_02.charges.pt"
    fitted = load_model(charged)[1].charges
    own = run_fit_charges(_comm(), tess / r2["model"], tmp_path / "own.pt")
    assert fitted["cv_rmse"] == own["cv_rmse"]
    direct = run_evaluate(_comm(), charged, runs["testset"], tmp_path / "direct")["rows"]
    rows = json.loads((out / "tess" / "round_02" / "evaluate.json").read_text())["rows"]
    for a, b in zip(rows, direct):
        assert a["charge_correction_rmse"] is not None
        assert a["error_ha_per_atom"] == pytest.approx(b["error_ha_per_atom"], rel=1e-9)
    again = run_compare(_comm(), runs["testset"], [tess], out, plots=False, charge_model=True)
    assert again["evaluated"] == [] and len(again["reused"]) == 2
    plain = run_compare(_comm(), runs["testset"], [tess], out, plots=False)
    assert plain["evaluated"] == ["tess/round_01", "tess/round_02"]
    # A round model that records no DFT settings cannot get a charge model: refused first.
    from dataclasses import replace

    from hpcdens.io.model import save_model

    net, record = load_model(twin / "round_01" / "model.pt")
    save_model(twin / "round_01" / "model.pt", net, replace(record, dft=None))
    state = read_state(twin)
    state["rounds"][0]["model_sha256"] = sha256_file(twin / "round_01" / "model.pt")
    write_state(twin, state)
    with pytest.raises(InputError, match="records no DFT settings to fit one from"):
        run_compare(_comm(), runs["testset"], [twin], tmp_path / "out2", charge_model=True)
    assert not (tmp_path / "out2").exists()


def test_a_round_with_its_own_charge_model_is_evaluated_with_it_unless_told(runs, tmp_path,
                                                                           capsys):
    """Rounds whose models carry a charge model ([train] charge_model, on by default for rho):
    the default evaluates them with it, --no-charge-correction without it (the rows of the
    model without one), and neither is taken for the other from the cache."""
    from hpcdens.charge_correction import run_fit_charges

    tess = tmp_path / "tess"
    shutil.copytree(runs["tess"], tess)
    state = read_state(tess)
    plain = run_compare(_comm(), runs["testset"], [runs["tess"]], tmp_path / "plain",
                        plots=False)["rows"]
    same = run_compare(_comm(), runs["testset"], [runs["tess"]], tmp_path / "plain",
                       plots=False, charge_correction=False)   # no charge model: the same rows
    assert not same["evaluated"] and len(same["reused"]) == len(state["rounds"])
    for r in state["rounds"]:
        run_fit_charges(_comm(), tess / r["model"])              # in place, as train does
        r["model_sha256"] = sha256_file(tess / r["model"])
    write_state(tess, state)
    out = tmp_path / "out"
    own = run_compare(_comm(), runs["testset"], [tess], out, plots=False)
    off = run_compare(_comm(), runs["testset"], [tess], out, plots=False, charge_correction=False)
    assert len(off["evaluated"]) == len(state["rounds"]) and not off["reused"]
    for a, b, c in zip(own["rows"], off["rows"], plain):
        assert b["mean_abs_error_ha_per_atom"] == c["mean_abs_error_ha_per_atom"]
        assert a["mean_abs_error_ha_per_atom"] != c["mean_abs_error_ha_per_atom"]
    for r in json.loads((out / "tess" / "round_02" / "evaluate.json").read_text())["rows"]:
        assert r["charge_correction_rmse"] is None
    again = run_compare(_comm(), runs["testset"], [tess], out, plots=False)   # off's not reused
    assert len(again["evaluated"]) == len(state["rounds"])
    assert [r["mean_abs_error_ha_per_atom"] for r in again["rows"]] == \
        [r["mean_abs_error_ha_per_atom"] for r in own["rows"]]
    with pytest.raises(SystemExit):
        cli_main(["learn-compare", str(runs["testset"]), str(tess), "--out", str(out),
                  "--charge-model", "--no-charge-correction"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_bad_inputs_are_refused_before_any_work(runs, tmp_path, capsys):
    testset, tess = runs["testset"], runs["tess"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty.*not an hpcdens learn directory.*Fix:"):
        run_compare(_comm(), testset, [tess, empty], tmp_path / "o1")
    assert not (tmp_path / "o1").exists()
    (empty / "state.json").write_text('{"format": "something else"}')
    with pytest.raises(InputError, match="not an hpcdens learn journal"):
        run_compare(_comm(), testset, [empty], tmp_path / "o1")
    with pytest.raises(InputError, match="nope.*does not exist"):
        run_compare(_comm(), testset, [tmp_path / "nope"], tmp_path / "o1")
    with pytest.raises(InputError, match="test set.*missing.h5.*does not exist"):
        run_compare(_comm(), tmp_path / "missing.h5", [tess], tmp_path / "o1")
    with pytest.raises(InputError, match="given twice"):
        run_compare(_comm(), testset, [tess, tess], tmp_path / "o1")
    # a changed model file
    bad = tmp_path / "bad"
    shutil.copytree(tess, bad)
    with open(bad / "round_02" / "model.pt", "ab") as f:
        f.write(b"x")
    with pytest.raises(InputError, match="round_02.*differs from the one its journal"):
        run_compare(_comm(), testset, [bad], tmp_path / "o1")
    (bad / "round_02" / "model.pt").unlink()
    with pytest.raises(InputError, match="round_02.*is missing"):
        run_compare(_comm(), testset, [bad], tmp_path / "o1")
    # a round whose model never saw an element of the test set (meta species: Ge only)
    import torch


    ge_only = tmp_path / "ge_only"
    shutil.copytree(tess, ge_only)
    payload = torch.load(ge_only / "round_01" / "model.pt", weights_only=True)
    payload["meta"]["species"] = [32]
    torch.save(payload, ge_only / "round_01" / "model.pt")
    state = read_state(ge_only)
    state["rounds"][0]["model_sha256"] = sha256_file(ge_only / "round_01" / "model.pt")
    write_state(ge_only, state)
    with pytest.raises(InputError, match="round 1 of .*ge_only.*never saw Si"):
        run_compare(_comm(), testset, [ge_only], tmp_path / "o1")
    # OUT that is not empty and not a comparison
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    assert cli_main(["learn-compare", str(testset), str(tess), "--out", str(other)]) == 2
    err = capsys.readouterr().err
    assert "not a learn-compare output" in err and "--overwrite" in err
    assert sorted(p.name for p in other.iterdir()) == ["keep.txt"]
    assert not (tmp_path / "o1").exists()
    # through the command line: exit code 2 and the fix
    assert cli_main(["learn-compare", str(testset), str(tess), str(empty),
                     "--out", str(tmp_path / "o2")]) == 2
    assert "Fix:" in capsys.readouterr().err


def test_help_lists_every_option(capsys):
    import argparse

    parser = argparse.ArgumentParser(prog="hpcdens")
    learn_compare_command.register(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["learn-compare", "--help"])
    text = capsys.readouterr().out
    for opt in ("TESTSET", "DIR", "--out", "--config", "--overwrite", "--no-plots",
                "--exclude-training", "--charge-model", "0.0016"):
        assert opt in text, opt
    args = parser.parse_args(["learn-compare", "t.h5", "a", "b", "--out", "o"])
    assert args.dirs == ["a", "b"] and not args.exclude_training
    with pytest.raises(SystemExit):
        parser.parse_args(["learn-compare", "t.h5", "a"])       # --out is required


@pytest.mark.mpi(min_size=2)
def test_ranks_give_the_serial_comparison(mpi_tmp_path):
    """Under mpirun: every rank evaluates (run_evaluate on COMM_WORLD), every rank returns rank
    0's result, and the rows equal a serial comparison of the same learn run."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD

    def learn_round_and_test_set():   # one learn round and a test set, made by rank 0 alone
        import torch

        from hpcdens.labelling import run_generate

        d = mpi_tmp_path
        torch.set_num_threads(1)
        inp = _input(d / "tess.toml", {"learn.strategy": "tessellation", "learn.max_rounds": 1})
        run_learn(load_config(inp), d / "tess")
        test = _input(d / "test.toml", {"compositions.list": TEST_COMPOSITIONS[:2],
                                        "snapshots.per_composition": 1, "snapshots.seed": 11})
        run_generate(load_config(test), d / "test.h5", MPI.COMM_SELF, progress=False)
        return str(d / "test.h5"), str(d / "tess"), str(d)

    testset, tess, d = on_rank0(comm, learn_round_and_test_set)
    par = run_compare(comm, testset, [tess], Path(d) / "par", plots=False)
    assert all(r == par for r in comm.allgather(par)), "ranks disagree on the result"
    assert par["evaluated"] == ["tess/round_01"]

    def serial_rows():
        ser = run_compare(MPI.COMM_SELF, testset, [tess], Path(d) / "ser", plots=False)
        keys = ("mean_abs_error_ha_per_atom", "max_abs_error_ha_per_atom", "mean_nrmse",
                "max_nrmse", "n_test", "n_training")
        return [(k, a[k], b[k]) for a, b in zip(par["rows"], ser["rows"]) for k in keys]

    for key, a, b in on_rank0(comm, serial_rows):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), key
