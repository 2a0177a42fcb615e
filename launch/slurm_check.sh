#!/usr/bin/env bash
# Check launch/slurm/predict.sbatch on a real (one-node) Slurm: issue #16 item 5.
#
#   sudo bash launch/slurm_check.sh [--keep-daemons]
#
# 1. Installs Debian's Slurm and munge with apt (slurmctld, slurmd, slurm-client, munge), only what
#    is missing.
# 2. Configures a one-node cluster on this machine: /etc/slurm/slurm.conf for `hostname -s` with the
#    CPU layout and memory that `slurmd -C` reports, proctrack/linuxproc + task/affinity (no
#    cgroups needed: works in containers and VMs; --cpu-bind=cores is honoured), select/cons_tres, MpiDefault=none (Slurm's default), a
#    munge key. Starts munged, slurmctld and slurmd as plain daemons (no systemd needed) and waits
#    until `sinfo` shows the node idle.
# 3. Labels a tiny SiGe set with PySCF and trains a tiny model (~1 min of one core), then predicts
#    the same 16-atom cell twice on 2 ranks: `mpirun -n 2 hpcdens predict ...` (A) and
#    `sbatch --wait --ntasks=2 launch/slurm/predict.sbatch ...` (B), and compares every field of
#    the two files: max|a-b| <= 1e-6 max|a| (predict is deterministic and rank-count invariant,
#    so they should agree bit for bit), and both files must record n_ranks = 2 (catches srun
#    starting 2 singleton MPI processes instead of one 2-rank job).
# 4. Also probes which `srun --mpi=...` plugins start a 2-rank mpi4py job (printed for the record).
# 5. Prints one line: PASS/FAIL, the max difference, the launcher, the Slurm version. Exit 0 on PASS.
#
# Rerunnable: packages, key and config are only created when missing or different; daemons already
# running with this configuration are reused. Daemons this run started are stopped at the end
# (scontrol shutdown / munged's pid) unless --keep-daemons (or SLURM_CHECK_KEEP=1) is given; daemons
# that were already running are left alone. An /etc/slurm/slurm.conf that this script did not write
# is never overwritten (set SLURM_CHECK_FORCE=1 to replace it; it is backed up first): do not run
# this on a real cluster node. Scratch files go to a mktemp directory (kept, its path printed, on
# failure; removed on PASS unless SLURM_CHECK_KEEP_TMP=1). Needs root (apt, daemons).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KEEP="${SLURM_CHECK_KEEP:-0}"
for arg in "$@"; do
    case "$arg" in
        --keep-daemons) KEEP=1 ;;
        -h|--help) sed -n '2,28p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "unknown option $arg (see --help)" >&2; exit 2 ;;
    esac
done
if [[ $(id -u) != 0 ]]; then
    echo "slurm_check: run as root (apt, munged, slurmctld, slurmd): sudo bash $0" >&2
    exit 2
fi

T0=$SECONDS
say() { printf '[slurm_check %4ds] %s\n' "$((SECONDS - T0))" "$*"; }
fail() { say "FAIL: $*"; echo "FAIL slurm_check: $* (scratch: ${TMP:-none})"; exit 1; }

MARK="# written by hpcdens launch/slurm_check.sh"
CONF=/etc/slurm/slurm.conf
STARTED=()
TMP=""
cleanup() {
    local rc=$?
    if [[ "$KEEP" != 1 ]]; then
        if [[ " ${STARTED[*]} " == *" slurmd "* || " ${STARTED[*]} " == *" slurmctld "* ]]; then
            say "stopping slurmctld and slurmd (scontrol shutdown; --keep-daemons leaves them)"
            scontrol shutdown >/dev/null 2>&1 || true
            for _ in $(seq 1 20); do
                pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break
                sleep 0.5
            done
        fi
        if [[ " ${STARTED[*]} " == *" munged "* && -s /run/munge/munged.pid ]]; then
            say "stopping munged"
            local mpid; mpid="$(cat /run/munge/munged.pid)"
            kill "$mpid" 2>/dev/null || true
            for _ in $(seq 1 10); do [[ -d /proc/$mpid ]] || break; sleep 0.5; done
        fi
    elif ((${#STARTED[@]})); then
        say "leaving ${STARTED[*]} running (--keep-daemons); stop with: scontrol shutdown; kill \$(cat /run/munge/munged.pid)"
    fi
    if [[ -n "$TMP" && -d "$TMP" ]]; then
        if [[ $rc == 0 && "${SLURM_CHECK_KEEP_TMP:-0}" != 1 ]]; then rm -rf "$TMP"
        else say "scratch kept: $TMP"; fi
    fi
}
trap cleanup EXIT

# ---------------------------------------------------------------- 1. packages
PKGS=(munge slurmctld slurmd slurm-client)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    say "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    # services are not started by the packages here (no systemd / policy-rc.d); we start them below
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
else
    say "packages present: ${PKGS[*]}"
fi
SLURM_VERSION="$(dpkg-query -W -f='${Version}' slurmd | sed 's/-.*//')"
MUNGE_VERSION="$(dpkg-query -W -f='${Version}' munge)"
say "slurm $SLURM_VERSION (Debian $(dpkg-query -W -f='${Version}' slurmd)), munge $MUNGE_VERSION"

# ---------------------------------------------------------------- 2. config and daemons
HOST="$(hostname -s)"
NODE_LINE="$(slurmd -C | head -n 1)"     # NodeName=HOST CPUs=.. Boards=.. ... RealMemory=..
[[ "$NODE_LINE" == NodeName=* ]] || fail "slurmd -C gave no node line: $NODE_LINE"
NCPU="$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$NODE_LINE")"
ADDR="$(getent hosts "$HOST" | awk '{print $1; exit}')"
[[ -n "$ADDR" ]] || ADDR=127.0.0.1
NEWCONF="$(cat <<EOF
$MARK (one-node test cluster; rerun it to refresh)
ClusterName=hpcdens-check
SlurmctldHost=$HOST($ADDR)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
MinJobAge=300
$NODE_LINE NodeAddr=$ADDR State=UNKNOWN
PartitionName=check Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)"
CONF_CHANGED=0
if [[ -e "$CONF" ]] && ! grep -qF "$MARK" "$CONF"; then
    if [[ "${SLURM_CHECK_FORCE:-0}" != 1 ]]; then
        fail "$CONF exists and was not written by this script; not touching it (SLURM_CHECK_FORCE=1 to replace it, backed up first)"
    fi
    cp -a "$CONF" "$CONF.bak-$(date +%Y%m%d%H%M%S)"
fi
if [[ ! -e "$CONF" ]] || [[ "$(cat "$CONF")" != "$NEWCONF" ]]; then
    say "writing $CONF ($NODE_LINE)"
    mkdir -p /etc/slurm
    printf '%s\n' "$NEWCONF" > "$CONF"
    CONF_CHANGED=1
else
    say "$CONF up to date"
fi
mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm

# munge key and munged
if [[ ! -s /etc/munge/munge.key ]]; then
    say "creating /etc/munge/munge.key"
    if command -v mungekey >/dev/null; then mungekey --create --force
    else dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
fi
chown munge:munge /etc/munge /etc/munge/munge.key
chmod 700 /etc/munge; chmod 400 /etc/munge/munge.key
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munged already running"
else
    say "starting munged"
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged
    STARTED+=(munged)
    for _ in $(seq 1 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
    munge -n | unmunge >/dev/null || fail "munged does not answer (see /var/log/munge/munged.log)"
fi

# slurmctld and slurmd: reuse running ones unless the config changed
running() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
if running /run/slurmctld.pid || running /run/slurmd.pid; then
    if [[ $CONF_CHANGED == 1 ]]; then
        say "config changed: restarting the running Slurm daemons"
        scontrol shutdown >/dev/null 2>&1 || true
        for _ in $(seq 1 20); do
            running /run/slurmctld.pid || running /run/slurmd.pid || break; sleep 0.5
        done
    fi
fi
if running /run/slurmctld.pid; then say "slurmctld already running"
else
    say "starting slurmctld"
    slurmctld || fail "slurmctld did not start (see /var/log/slurm/slurmctld.log)"
    STARTED+=(slurmctld)
fi
if running /run/slurmd.pid; then say "slurmd already running"
else
    say "starting slurmd"
    slurmd || fail "slurmd did not start (see /var/log/slurm/slurmd.log)"
    STARTED+=(slurmd)
fi
say "waiting for node $HOST to be idle"
state=""
for i in $(seq 1 60); do
    state="$(sinfo -h -n "$HOST" -o %t 2>/dev/null | head -n 1 || true)"
    [[ "$state" == idle ]] && break
    if [[ "$state" == drain* || "$state" == down* ]] && ((i % 10 == 5)); then
        scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
    fi
    sleep 1
done
[[ "$state" == idle ]] || fail "node $HOST is '$state', not idle: $(scontrol show node "$HOST" | grep -i reason)"
sinfo

# ---------------------------------------------------------------- 3. tiny model and structure
# shellcheck disable=SC1091
source "$ROOT/launch/env.sh"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/hpcdens-slurm-check.XXXXXX")"
chmod 755 "$TMP"
say "scratch: $TMP"
NP=2
((NCPU >= NP)) || fail "the node has $NCPU CPUs, the check needs $NP"

# which srun MPI plugins start one 2-rank MPI job (for the record; the sbatch decides the launcher)
cat > "$TMP/probe.py" <<'EOF'
from mpi4py import MPI
c = MPI.COMM_WORLD
print(f"rank {c.rank} of {c.size}")
EOF
say "srun --mpi=list: $(srun --mpi=list 2>&1 | tr -s ' \n' ' ')"
declare -A PROBE
for mpi in none pmi2 pmix; do
    out="$(timeout 60 srun --mpi="$mpi" -n "$NP" python "$TMP/probe.py" 2>&1 || true)"
    if [[ "$(grep -c "of $NP\$" <<<"$out")" == "$NP" ]]; then PROBE[$mpi]=ok
    else PROBE[$mpi]="no ($(grep -m1 -E 'of [0-9]+$|rror' <<<"$out" | tr -s ' ' | cut -c1-90))"; fi
    say "probe srun --mpi=$mpi -n $NP: ${PROBE[$mpi]}"
done
# mpirun inside a batch job reads the allocation itself (OpenMPI's ras/plm slurm components)
if (cd "$TMP" && timeout 120 sbatch --wait --parsable -n "$NP" --output="$TMP/probe-mpirun.out" \
        --wrap "mpirun python $TMP/probe.py" >/dev/null 2>&1) \
        && [[ "$(grep -c "of $NP\$" "$TMP/probe-mpirun.out")" == "$NP" ]]; then PROBE[mpirun]=ok
else PROBE[mpirun]="no ($(grep -m1 -E 'of [0-9]+$|rror' "$TMP/probe-mpirun.out" 2>/dev/null | cut -c1-90))"; fi
say "probe sbatch -n $NP --wrap 'mpirun ...': ${PROBE[mpirun]}"

say "tiny model: PySCF labels of 4 two-atom SiGe cells + 15 epochs (about a minute)"
cat > "$TMP/tiny.toml" <<EOF
name = "slurm-check"

[system]
elements = ["Si", "Ge"]
lattice = "diamond"
supercell = [1, 1, 1]
primitive = true

[compositions]
list = ["Si1", "Si0.5Ge0.5"]

[snapshots]
per_composition = 2
method = "rattle"
rattle_stdev_angstrom = 0.03
seed = 3

[dft]
backend = "pyscf"
mesh_spacing_bohr = 0.6
scf_tol = 1e-8

[descriptors]
n_neighbors = 12

[model]
hidden_layers = [32, 32]
n_samples = 10

[train]
points_per_snapshot = 0
validation_fraction = 0.25
epochs = 15
batch_size = 128
learning_rate = 3e-3
patience = 10
seed = 0

[output]
directory = "$TMP/run"
EOF
t=$SECONDS
hpcdens structures "$TMP/tiny.toml" --out "$TMP/structures.extxyz" >"$TMP/structures.log" 2>&1 \
    || { cat "$TMP/structures.log"; fail "hpcdens structures"; }
hpcdens generate "$TMP/tiny.toml" --out "$TMP/train.h5" --no-progress >"$TMP/generate.log" 2>&1 \
    || { tail -n 30 "$TMP/generate.log"; fail "hpcdens generate"; }
hpcdens train "$TMP/tiny.toml" --data "$TMP/train.h5" --out "$TMP/model.pt" --no-progress \
    >"$TMP/train.log" 2>&1 || { tail -n 30 "$TMP/train.log"; fail "hpcdens train"; }
say "model ready in $((SECONDS - t)) s: $TMP/model.pt"

# the last frame (Si0.5Ge0.5, rattled) repeated 2x2x2: 16 atoms, the model's 0.6 Bohr grid,
# small chunks so that each rank streams several
PRED_OPTS=(--supercell 2 2 2 --chunk-points 2048)
STRUCT="$TMP/structures.extxyz"

# ---------------------------------------------------------------- A: mpirun
t=$SECONDS
mpirun -n "$NP" hpcdens predict "$TMP/model.pt" "$STRUCT" --out "$TMP/A.h5" "${PRED_OPTS[@]}" \
    >"$TMP/A.log" 2>&1 || { tail -n 30 "$TMP/A.log"; fail "mpirun -n $NP hpcdens predict"; }
TA=$((SECONDS - t))
say "A: mpirun -n $NP hpcdens predict: ${TA} s"

# ---------------------------------------------------------------- B: sbatch
# the template asks for 128 tasks per node: override for this 2-CPU node; the job's cwd must be
# the checkout (the template sources launch/env.sh from SLURM_SUBMIT_DIR)
LAUNCHER="$(grep -E '^[^#]*\b(srun|mpirun)\b' "$ROOT/launch/slurm/predict.sbatch" | tail -n 1 \
    | sed -E 's/^[[:space:]]*//; s/[[:space:]]*hpcdens.*//')"
t=$SECONDS
cd "$ROOT"
jobid="$(sbatch --parsable --wait --nodes=1 --ntasks="$NP" --ntasks-per-node="$NP" \
    --time=00:15:00 --output="$TMP/slurm-%j.out" \
    launch/slurm/predict.sbatch "$TMP/model.pt" "$STRUCT" "$TMP/B.h5" "${PRED_OPTS[@]}")" \
    || { cat "$TMP"/slurm-*.out 2>/dev/null | tail -n 40; fail "sbatch --wait predict.sbatch (job ${jobid:-?})"; }
TB=$((SECONDS - t))
say "B: sbatch --wait -n $NP launch/slurm/predict.sbatch (job $jobid, launcher: $LAUNCHER): ${TB} s"
sed 's/^/    job> /' "$TMP/slurm-$jobid.out" | tail -n 15
# the job's own run time (sbatch --wait polls with growing intervals, so TB is longer)
JOB_RUN="$(scontrol show job "$jobid" 2>/dev/null | sed -n 's/.*RunTime=\([0-9:-]*\).*/\1/p' | head -n 1)"
say "job $jobid RunTime ${JOB_RUN:-?} (from scontrol show job)"

# ---------------------------------------------------------------- compare
RESULT="$(python - "$TMP/A.h5" "$TMP/B.h5" "$NP" <<'EOF'
import sys
import h5py
import numpy as np

a_path, b_path, np_ = sys.argv[1], sys.argv[2], int(sys.argv[3])
ok, worst, worst_rel, msgs = True, 0.0, 0.0, []
with h5py.File(a_path, "r") as a, h5py.File(b_path, "r") as b:
    for f, name in ((a, "A"), (b, "B")):
        if not f.attrs.get("complete", False):
            ok = False; msgs.append(f"{name} not complete")
        if int(f.attrs.get("n_ranks", -1)) != np_:
            ok = False; msgs.append(f"{name} n_ranks={f.attrs.get('n_ranks')} (expected {np_})")
    keys = sorted(k for k in a if isinstance(a[k], h5py.Dataset) and a[k].dtype.kind == "f")
    if set(keys) != set(k for k in b if isinstance(b[k], h5py.Dataset) and b[k].dtype.kind == "f"):
        ok = False; msgs.append("different datasets")
    for k in keys:
        x, y = a[k][()], b[k][()]
        if x.shape != y.shape:
            ok = False; msgs.append(f"{k}: shapes {x.shape} {y.shape}"); continue
        d = float(np.max(np.abs(x - y))) if x.size else 0.0
        scale = float(np.max(np.abs(x))) if x.size else 0.0
        rel = d / scale if scale > 0 else d
        if d > 1e-6 * scale:
            ok = False; msgs.append(f"{k}: max|a-b|={d:.3e} > 1e-6*{scale:.3e}")
        if k == "rho":
            worst = d
        worst_rel = max(worst_rel, rel)
    shape = a["rho"].shape
print(f"{'PASS' if ok else 'FAIL'} {worst:.3e} {worst_rel:.3e} {'x'.join(map(str, shape))} "
      f"{len(keys)} {'; '.join(msgs) or '-'}")
EOF
)" || fail "comparison script failed"
read -r verdict dmax drel shape nfields why <<<"$RESULT"
line="$verdict slurm_check: max|rho_A - rho_B| = $dmax (max relative over $nfields fields $drel, tol 1e-6), grid $shape, $NP ranks; launcher in predict.sbatch: '$LAUNCHER'; srun probes: none=${PROBE[none]%% *} pmi2=${PROBE[pmi2]%% *} pmix=${PROBE[pmix]%% *} sbatch+mpirun=${PROBE[mpirun]%% *}; Slurm $SLURM_VERSION, munge $MUNGE_VERSION, $(mpirun --version | head -n 1); mpirun ${TA} s, sbatch --wait ${TB} s (job RunTime ${JOB_RUN:-?}), total $((SECONDS - T0)) s"
[[ "$why" == "-" ]] || line="$line; $why"
echo "$line"
[[ "$verdict" == PASS ]]
