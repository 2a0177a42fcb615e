"""Kill-and-resume of `hpcdens learn` (issue #8): a run killed at any moment and started again
with the same command ends with the journal, models and choices of an uninterrupted run, and no
DFT label is computed twice.

* serial, in this process: a round whose training was cut short (the checkpoint a killed run
  leaves, made with ``run_train(stop_after=...)``) resumes from its checkpoint and reaches the
  weights of an uninterrupted run; a checkpoint that does not fit is discarded with a warning;
* ``mpirun -n 2 hpcdens learn`` as subprocesses: SIGKILL during the labelling of round 1, again
  during its training, then a run to the end, compared with an uninterrupted ``mpirun -n 2`` run.

The problem is the tiny SiGe binary LEARN of tests/input_helpers.py (4-atom cells, mesh 0.6
Bohr); the MPI test labels 4 snapshots per composition and trains 12 epochs, so that labelling
and training each last long enough to be caught by polling every 0.05 s. Measured numbers are in
docs/commands/learn.md."""

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hpcdens.config import load_config
from hpcdens.io.model import weights_sha256
from hpcdens.io.training_set import parts_dir
from hpcdens.learning import loop as active
from hpcdens.learning.loop import read_state, run_learn
from tests.input_helpers import LEARN, write_input_file

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# Journal fields that differ between two identical runs, left out of the comparisons: wall times,
# and the hash of the model FILE, whose metadata records wall times and the training-set path
# (the weights are compared through ``weights_sha256``, which is kept).
WALL_TIME_FIELDS = ("dft_wall_s", "train_wall_s")
FILE_HASH_FIELDS = ("model_sha256",)

MPI_SETTINGS = {"snapshots.per_composition": 4, "train.epochs": 12, "train.patience": 12}
POLL_S = 0.05


def comparable(state: dict) -> dict:
    """The journal without the fields of WALL_TIME_FIELDS and FILE_HASH_FIELDS."""
    drop = set(WALL_TIME_FIELDS) | set(FILE_HASH_FIELDS)
    return {**state, "rounds": [{k: v for k, v in r.items() if k not in drop}
                                for r in state["rounds"]]}


# ------------------------------------------------------------------- serial, in process ---

@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A bayesian run stopped once round 1 is labelled, and the same run trained without
    interruption: (input, labelled directory, journal of the uninterrupted round 1)."""
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("learn_resume")
    inp = write_input_file(d / "learn.toml", LEARN)
    run_learn(load_config(inp), d / "labelled", stop_at="labelled")
    shutil.copytree(d / "labelled", d / "straight")
    straight = run_learn(load_config(inp), d / "straight", stop_at="trained")
    return inp, d / "labelled", straight["rounds"][0]


def _cut_short(inp, labelled_dir, out, epochs: int) -> Path:
    """Copy of ``labelled_dir`` in which round 1's training stopped after ``epochs`` epochs, as
    a run killed then leaves it: the checkpoint, the journal not saying trained, and no model
    unless all epochs ran (killed between writing the model and journaling it)."""
    from hpcdens.training.run import checkpoint_path, run_train

    shutil.copytree(labelled_dir, out)
    config = load_config(inp)
    r1 = read_state(out)["rounds"][0]
    cfg = active.labelling_config(config, r1["training"], active.by_label(config))
    model = out / "round_01" / "model.pt"
    model.parent.mkdir()
    s = run_train(cfg, [out / "train.h5"], model, progress=False, stop_after=epochs)
    finished = epochs >= config.train.epochs
    assert s["finished"] == finished and model.exists() == finished
    assert checkpoint_path(model).is_file()
    return checkpoint_path(model)


@pytest.mark.parametrize("epochs", [6, LEARN["train.epochs"]])
def test_killed_training_resumes_from_its_checkpoint(labelled, tmp_path, caplog, epochs):
    inp, labelled_dir, straight = labelled
    ckpt = _cut_short(inp, labelled_dir, tmp_path / "run", epochs=epochs)
    with caplog.at_level(logging.INFO, logger="hpcdens"):
        state = run_learn(load_config(inp), tmp_path / "run", stop_at="trained")
    assert f"resuming {ckpt} after epoch {epochs}" in caplog.text, "trained again, not resumed"
    r1 = state["rounds"][0]
    assert r1["weights_sha256"] == straight["weights_sha256"], "resumed weights differ"
    assert r1["weights_sha256"] == weights_sha256(tmp_path / "run" / r1["model"])
    assert comparable(state)["rounds"][0] == comparable({"rounds": [straight]})["rounds"][0]
    # The model FILE differs: its metadata holds wall times and the training-set path.
    assert r1["model_sha256"] != straight["model_sha256"]


@pytest.mark.parametrize("spoil", ["other data", "unreadable"])
def test_checkpoint_that_does_not_fit_is_discarded(labelled, tmp_path, caplog, spoil):
    inp, labelled_dir, straight = labelled
    ckpt = _cut_short(inp, labelled_dir, tmp_path / "run", epochs=2)
    if spoil == "other data":
        payload = torch.load(ckpt, weights_only=True)
        payload["fingerprint"]["data_sha256"] = "0" * 64
        torch.save(payload, ckpt)
        expected = "made with other data or settings (data_sha256)"
    else:
        ckpt.write_bytes(b"not a checkpoint")
        expected = "cannot be read"
    with caplog.at_level(logging.INFO, logger="hpcdens"):
        state = run_learn(load_config(inp), tmp_path / "run", stop_at="trained")
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert any(expected in w and "training this round from scratch" in w for w in warnings), \
        warnings
    assert state["rounds"][0]["weights_sha256"] == straight["weights_sha256"]


# ---------------------------------------------------------------- mpirun -n 2, SIGKILL ---

def _child_env(shm: Path) -> dict:
    """This process's environment (os.environ, not the C environment that MPI_Init of this
    process may have extended: an mpirun started under a singleton's PMIx variables fails)
    without launcher variables, plus what OpenMPI needs for 2 ranks on few cores, as root, and
    its shared-memory files in ``shm`` instead of /dev/shm (a killed job cannot remove them)."""
    launcher = ("PMIX_", "PMI_", "OMPI_COMM_WORLD", "OMPI_UNIVERSE", "OMPI_APP_CTX",
                "OMPI_NUM_APP_CTX", "OMPI_FIRST_RANKS", "OMPI_MCA_ess", "OMPI_MCA_orte_",
                "OMPI_MCA_pmix", "OMPI_MCA_initial_wdir", "OMPI_ARGV", "OMPI_COMMAND")
    env = {k: v for k, v in os.environ.items() if not k.startswith(launcher)}
    shm.mkdir(exist_ok=True)
    env.update(OMP_NUM_THREADS="1", OMPI_MCA_rmaps_base_oversubscribe="1",
               OMPI_MCA_btl_vader_backing_directory=str(shm))
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return env


def _hpcdens() -> list[str]:
    script = Path(sys.executable).with_name("hpcdens")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "hpcdens.cli"]


class Job:
    """``mpirun -n 2 hpcdens learn INPUT --out DIR`` in a session of its own, output to a log."""

    def __init__(self, inp, out, log: Path):
        self.log = log
        self.started = time.perf_counter()
        with open(log, "wb") as f:
            self.proc = subprocess.Popen(
                [shutil.which("mpirun"), "-n", "2", *_hpcdens(), "learn", str(inp), "--out",
                 str(out), "--no-progress", "--no-plots"], stdout=f, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=_child_env(log.parent / "shm"),
                start_new_session=True)

    def session(self) -> dict[int, int]:
        """pid -> process group of the live processes of the job's session (mpirun and ranks)."""
        found = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z" and int(fields[3]) == self.proc.pid:
                found[int(stat.parent.name)] = int(fields[2])
        return found

    def kill(self) -> float:
        """SIGKILL to every process group of the session: OpenMPI puts each rank in a process
        group of its own, so the group of mpirun alone would leave the ranks running. Returns
        the job's age (s) when killed."""
        age = time.perf_counter() - self.started
        deadline = time.time() + 30
        while True:
            groups = set(self.session().values()) | {self.proc.pid}
            for pgid in groups:
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait()
            if not self.session():
                return age
            assert time.time() < deadline, f"processes of the job survive SIGKILL: {self.session()}"
            time.sleep(0.05)

    def wait_for(self, marker, what: str, timeout: float = 150):
        """Poll ``marker()`` every POLL_S s; when true, SIGKILL the job and return (age, value)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = marker()
            if value:
                return self.kill(), value
            if self.proc.poll() is not None:
                pytest.fail(f"the job ended (exit {self.proc.returncode}) before it was seen "
                            f"{what}: nothing was killed, the test would prove nothing. Make the "
                            f"problem larger (MPI_SETTINGS). Log:\n{self.text()[-3000:]}")
            time.sleep(POLL_S)
        self.kill()
        pytest.fail(f"not {what} after {timeout} s. Log:\n{self.text()[-3000:]}")

    def finish(self, timeout: float = 200) -> float:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the job did not finish in {timeout} s. Log:\n{self.text()[-3000:]}")
        assert rc == 0, f"exit {rc}. Log:\n{self.text()[-3000:]}"
        return time.perf_counter() - self.started

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def _state(out):
    try:
        return read_state(out)
    except Exception:           # noqa: BLE001 - a journal or directory in the making
        return None


def _parts(out) -> dict:
    """Finished generate parts: name -> (run id, mtime_ns)."""
    import h5py

    found = {}
    for p in sorted(parts_dir(out / "train.h5").glob("*.h5")):
        with h5py.File(p, "r") as f:
            found[p.name] = (str(f["snapshot"].attrs["run_id"]), p.stat().st_mtime_ns)
    return found


def _to_label(text: str) -> list[int]:
    """Per generate call of a log, how many snapshots it set out to label."""
    return [int(n) for n in re.findall(r"snapshots, (\d+) to label on", text)]


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun")
@pytest.mark.skipif("OMPI_COMM_WORLD_SIZE" in os.environ or "PMI_RANK" in os.environ,
                    reason="starts mpirun itself: run it in the serial pytest pass")
def test_sigkill_during_labelling_and_training_under_mpirun(tmp_path):
    inp = write_input_file(tmp_path / "learn.toml", {**LEARN, **MPI_SETTINGS})
    per_comp = MPI_SETTINGS["snapshots.per_composition"]
    n_round1 = 2 * per_comp                    # round 1 labels the two pure elements
    epochs = MPI_SETTINGS["train.epochs"]
    ref, out = tmp_path / "reference", tmp_path / "run"

    reference = Job(inp, ref, tmp_path / "reference.log")
    t_ref = reference.finish()

    # (a) SIGKILL while round 1 is being labelled: some parts finished, not all.
    def labelling():
        n = len(list(parts_dir(out / "train.h5").glob("*.h5")))
        state = _state(out)
        return (0 < n < n_round1 and state is not None and len(state["rounds"]) == 1
                and not state["rounds"][0].get("labelled"))

    first = Job(inp, out, tmp_path / "kill1.log")
    age1, _ = first.wait_for(labelling, "labelling round 1")
    state = read_state(out)
    assert not state["rounds"][0].get("labelled")
    kept1 = _parts(out)
    assert 0 < len(kept1) < n_round1, "the kill landed outside labelling"
    assert len({run for run, _ in kept1.values()}) == 1

    # (b) SIGKILL while round 1 is being trained: a checkpoint, the journal not saying trained.
    ckpt = out / "round_01" / "model.pt.ckpt"

    def training():
        state = _state(out)
        return (ckpt.is_file() and state is not None and len(state["rounds"]) == 1
                and state["rounds"][0].get("labelled") and not state["rounds"][0].get("trained"))

    second = Job(inp, out, tmp_path / "kill2.log")
    age2, _ = second.wait_for(training, "training round 1")
    state = read_state(out)
    assert state["rounds"][0]["labelled"] and not state["rounds"][0].get("trained")
    killed_at = torch.load(ckpt, weights_only=True)["epoch"]
    assert 1 <= killed_at < epochs, f"the kill landed after training (epoch {killed_at})"
    kept2 = _parts(out)
    assert {k: kept2[k] for k in kept1} == kept1, "a label finished before kill 1 was redone"
    assert len(kept2) == n_round1
    assert _to_label(second.text()) == [n_round1 - len(kept1)], "labels redone after kill 1"

    # (c) The same command again, to the end.
    third = Job(inp, out, tmp_path / "resume.log")
    t_third = third.finish()
    assert f"resuming {ckpt} after epoch {killed_at}" in third.text(), \
        "round 1 was trained from scratch instead of resumed from its checkpoint"
    assert _to_label(third.text()) == [per_comp], "the resumed run labels only round 2"

    final, expected = read_state(out), read_state(ref)
    assert final["stopped"] and final["stopped"] == expected["stopped"]
    assert comparable(final) == comparable(expected), "journal differs from an uninterrupted run"
    assert [r["chosen"] for r in final["rounds"]] == [r["chosen"] for r in expected["rounds"]]
    for r, e in zip(final["rounds"], expected["rounds"]):
        assert r["weights_sha256"] == e["weights_sha256"] == weights_sha256(out / r["model"])
    kept3 = _parts(out)
    assert {k: kept3[k] for k in kept2} == kept2, "a label finished before kill 2 was redone"
    assert sorted(kept3) == sorted(_parts(ref)), "other snapshots than the uninterrupted run"
    print(f"\nreference {t_ref:.1f} s; killed at {age1:.1f} s with {len(kept1)}/{n_round1} "
          f"labels, at {age2:.1f} s after epoch {killed_at}/{epochs}; resumed run {t_third:.1f} s")
