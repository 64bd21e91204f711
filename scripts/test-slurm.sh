#!/usr/bin/env bash
# The sharded Deletion/Insertion benchmark as a real Slurm job array, end to end:
# a throwaway one-node Slurm cluster on localhost (munged, slurmctld, slurmd, all in a temp folder),
# the CI-sized xfv-benchmark submitted as a 2-task `sbatch --array`, the shards merged, and the
# merged tables checked byte for byte against an unsharded run of the same config.
#
#   bash scripts/test-slurm.sh target/release/xfv-benchmark
#
# Needs root, ../shared (LFW and the models) and Debian's slurm-wlm + munge (installed with apt-get
# when missing). Prints `slurm: PASS` last on success; exits non-zero with a message otherwise.
# Every daemon it starts is stopped and the temp folder removed on every exit path.
set -euo pipefail

# What makes the CI config small; used for the array tasks and for the unsharded reference run.
OVERRIDES=(--set subset.limit=2)
CONFIG=experiments/xfv-benchmark/ci.toml
TASKS=2
# Seconds to wait for the array to finish.
TIMEOUT_S=${SLURM_TEST_TIMEOUT_S:-1200}
# slurmctld's port; slurmd takes the next one. Loopback only.
PORT=${SLURM_TEST_PORT:-6817}

die() {
    echo "slurm: FAIL: $*" >&2
    exit 1
}

[[ $# -eq 1 ]] || die "usage: $0 PATH/TO/xfv-benchmark"
BIN=$(realpath -e "$1") || die "no binary at $1"
[[ -x $BIN ]] || die "$BIN is not executable"
[[ $(id -u) -eq 0 ]] || die "must run as root (slurmctld, slurmd and munged run as root here)"
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
[[ -d ../shared/data/lfw ]] || die "../shared/data/lfw is missing (run from a checkout next to shared/)"
export PATH="$PATH:/usr/sbin:/sbin"

T=$(mktemp -d /tmp/facelens-slurm.XXXXXX)
chmod 0755 "$T"
# Every process the cluster runs (daemons, slurmstepd, job tasks) carries this in its environment,
# so cleanup can find exactly those processes, pid by pid.
TAG="FACELENS_SLURM_TEST=$T"
JOB=""
DAEMONS=()

tagged_pids() {
    local env_file pid
    for env_file in /proc/[0-9]*/environ; do
        pid=${env_file#/proc/}
        pid=${pid%/environ}
        [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
        grep -qzxF "$TAG" "$env_file" 2>/dev/null && echo "$pid"
    done
}

cleanup() {
    local rc=$? pids pid i
    set +e
    trap - EXIT INT TERM
    if [[ -n $JOB ]] && [[ -n $(squeue -h -j "$JOB" -t PD,R,CG,S 2>/dev/null) ]]; then
        echo "cancelling job $JOB"
        scancel "$JOB" 2>/dev/null
        for i in $(seq 30); do
            [[ -z $(squeue -h -j "$JOB" -t PD,R,CG,S 2>/dev/null) ]] && break
            sleep 1
        done
    fi
    # Daemons first (TERM, then KILL after 10 s), then anything of the cluster's left over.
    for pid in "${DAEMONS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for i in $(seq 10); do
        pids=$(tagged_pids)
        [[ -z $pids ]] && break
        sleep 1
    done
    pids=$(tagged_pids)
    if [[ -n $pids ]]; then
        echo "killing leftover processes: $(echo $pids)" >&2
        kill -KILL $pids 2>/dev/null
    fi
    for pid in "${DAEMONS[@]}"; do wait "$pid" 2>/dev/null; done
    rm -rf "$T"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The array tasks' Slurm output, then each daemon's log (its stdout/stderr if it never opened one).
show_logs() {
    local f d
    for f in "$T"/out/*.out; do
        [[ -f $f ]] || continue
        echo "----- Slurm output $f (last 60 lines)" >&2
        tail -n 60 "$f" >&2
    done
    for d in munged slurmctld slurmd; do
        f="$T/log/$d.log"
        [[ -s $f ]] || f="$T/log/$d.stdout.log"
        [[ -f $f ]] || continue
        echo "----- $f (last 20 lines)" >&2
        tail -n 20 "$f" >&2
    done
}

# --- Install -------------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
    echo "installing slurm-wlm and munge"
    # RUNLEVEL=1: the packages' init scripts must not start system-wide daemons.
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends \
            slurm-wlm munge; } >"$T/apt.log" 2>&1; then
        tail -n 40 "$T/apt.log" >&2
        die "apt-get could not install slurm-wlm and munge"
    fi
fi
echo "$(slurmctld -V), $(munged -V 2>&1 | head -n 1)"

mkdir -p "$T"/{munge,etc,state,spool,log,run,out,shards,times}

# --- munge ---------------------------------------------------------------------------------------
SOCK="$T/munge/munge.socket.2"
dd if=/dev/urandom of="$T/munge/munge.key" bs=1024 count=1 status=none
chmod 0400 "$T/munge/munge.key"
env "$TAG" munged --foreground --socket="$SOCK" --key-file="$T/munge/munge.key" \
    --pid-file="$T/munge/munged.pid" --log-file="$T/log/munged.log" \
    --seed-file="$T/munge/munged.seed" >"$T/log/munged.stdout.log" 2>&1 &
DAEMONS+=($!)
for i in $(seq 50); do
    munge -n -S "$SOCK" 2>/dev/null | unmunge -S "$SOCK" >/dev/null 2>&1 && break
    [[ $i -eq 50 ]] && { show_logs; die "munged did not come up"; }
    sleep 0.2
done

# --- slurm.conf ----------------------------------------------------------------------------------
NODE=$(hostname -s)
# The node's real CPUs, sockets and memory, as slurmd sees them (a larger RealMemory drains it).
NODE_HW=$(slurmd -C | head -n 1 | sed 's/^NodeName=[^ ]* //')
CONF="$T/etc/slurm.conf"
cat >"$CONF" <<EOF
ClusterName=facelens-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/run/slurmctld.pid
SlurmdPidFile=$T/run/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
# Finished tasks stay visible to squeue/scontrol until the end of the test.
MinJobAge=3600
NodeName=$NODE NodeAddr=127.0.0.1 $NODE_HW State=UNKNOWN
PartitionName=test Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$CONF"

# --- slurmctld + slurmd --------------------------------------------------------------------------
env "$TAG" slurmctld -D -f "$CONF" >"$T/log/slurmctld.stdout.log" 2>&1 &
DAEMONS+=($!)
env "$TAG" slurmd -D -N "$NODE" -f "$CONF" >"$T/log/slurmd.stdout.log" 2>&1 &
DAEMONS+=($!)
for i in $(seq 60); do
    state=$(sinfo -h -n "$NODE" -o %t 2>/dev/null || true)
    [[ $state == idle ]] && break
    [[ $i -eq 60 ]] && { show_logs; die "node $NODE is not idle after 60 s (state: '${state}')"; }
    sleep 1
done
echo "cluster up: node $NODE ($NODE_HW), slurmctld on 127.0.0.1:$PORT"

# --- the array job -------------------------------------------------------------------------------
BATCH="$T/xfv-array.sh"
{
    echo '#!/bin/bash'
    echo 'set -euo pipefail'
    echo "date +%s.%N >$T/times/\$SLURM_ARRAY_TASK_ID.start"
    echo "RAYON_NUM_THREADS=1 $(printf '%q' "$BIN") --config $CONFIG $(printf '%q ' "${OVERRIDES[@]}")\\"
    echo '    --shard "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT" \'
    echo "    --out $(printf '%q' "$T/shards")"
    echo "date +%s.%N >$T/times/\$SLURM_ARRAY_TASK_ID.end"
} >"$BATCH"

JOB=$(env "$TAG" CI=1 sbatch --parsable --job-name=xfv-slurm-test --array=1-$TASKS --cpus-per-task=1 \
    --chdir="$REPO" --output="$T/out/%A_%a.out" "$BATCH")
JOB=${JOB%%;*}
echo "submitted job $JOB (array 1-$TASKS), batch script:"
sed 's/^/    /' "$BATCH"

final_states='^(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED|BOOT_FAIL|DEADLINE)$'
start=$SECONDS
last_report=-30
while :; do
    # One line per task: "<task id> <state>" (-r lists pending tasks of the array one by one).
    states=$(squeue -h -r -j "$JOB" -t all -o '%K %T' 2>/dev/null || true)
    done_tasks=$(awk -v re="$final_states" '$2 ~ re' <<<"$states" | wc -l)
    [[ $done_tasks -eq $TASKS ]] && break
    # One failed task fails the test: no need to wait for the others.
    if awk -v re="$final_states" '$2 ~ re && $2 != "COMPLETED" { bad = 1 } END { exit !bad }' <<<"$states"; then
        break
    fi
    if ((SECONDS - start >= TIMEOUT_S)); then
        show_logs
        die "job $JOB not finished after $TIMEOUT_S s: $(echo $states)"
    fi
    if ((SECONDS - last_report >= 30)); then
        echo "  $((SECONDS - start)) s: $(echo $states | tr '\n' ' ')"
        last_report=$SECONDS
    fi
    sleep 2
done

echo "job $JOB ended after $((SECONDS - start)) s:"
if sacct -n -P -j "$JOB" -o JobID,State,Elapsed,ExitCode >"$T/sacct.txt" 2>/dev/null && [[ -s $T/sacct.txt ]]; then
    sed 's/^/  sacct: /' "$T/sacct.txt"
else
    echo "  (no Slurm accounting database: slurmctld's records and the batch script's timestamps)"
fi
field() { grep -o "\b$1=[^ ]*" <<<"$line" | head -n 1 | cut -d= -f2; }
failed=0
for task in $(seq "$TASKS"); do
    line=$(scontrol -o show job "${JOB}_$task")
    state=$(field JobState)
    elapsed="?"
    if [[ -f $T/times/$task.start && -f $T/times/$task.end ]]; then
        elapsed=$(awk -v a="$(cat "$T/times/$task.start")" -v b="$(cat "$T/times/$task.end")" \
            'BEGIN { printf "%.1f", b - a }')
    fi
    echo "  task ${JOB}_$task: JobId=$(field JobId) State=$state RunTime=$(field RunTime)" \
        "ExitCode=$(field ExitCode) elapsed(batch script)=${elapsed}s"
    [[ $state == COMPLETED ]] || failed=1
done
if [[ $failed -ne 0 ]]; then
    show_logs
    die "a task of job $JOB did not complete"
fi

# --- merge, unsharded reference, compare ---------------------------------------------------------
"$BIN" merge "$T/shards/xfv-benchmark" --out "$T/merged" >"$T/log/merge.log" 2>&1 \
    || { cat "$T/log/merge.log" >&2; die "merge failed"; }
echo "merged: $(tail -n 1 "$T/log/merge.log")"
t0=$SECONDS
RAYON_NUM_THREADS=1 CI=1 "$BIN" --config "$CONFIG" "${OVERRIDES[@]}" --out "$T/whole" \
    >"$T/log/whole.log" 2>&1 || { cat "$T/log/whole.log" >&2; die "unsharded run failed"; }
echo "unsharded run: $((SECONDS - t0)) s: $(tail -n 1 "$T/log/whole.log")"

only_run() {
    local runs=("$1"/xfv-benchmark/*/)
    [[ ${#runs[@]} -eq 1 && -d ${runs[0]} ]] || die "expected one run directory in $1/xfv-benchmark"
    echo "${runs[0]%/}"
}
MERGED=$(only_run "$T/merged")
WHOLE=$(only_run "$T/whole")
# Everything but provenance (meta.json), what depends on the machine and the sharding (timings,
# cost tables, summary.md with its cost columns) and TensorBoard event files (wall-clock stamps).
deterministic() {
    (cd "$1" && find . -type f \
        ! -name meta.json ! -name timings.json ! -name cost.md ! -name cost.csv \
        ! -name summary.md ! -name 'events.out.tfevents.*' ! -name '*.tmp*' | sed 's|^\./||' | LC_ALL=C sort)
}
if ! diff <(deterministic "$WHOLE") <(deterministic "$MERGED") >"$T/files.diff"; then
    cat "$T/files.diff" >&2
    die "the merged run and the unsharded run hold different files"
fi
files=$(deterministic "$WHOLE")
[[ -n $files ]] || die "no files to compare in $WHOLE"
for f in results.json records.json tables.md table1.csv table2.csv table3.csv curves.csv config.toml; do
    grep -qxF "$f" <<<"$files" || die "$f is missing from the run directory"
done
echo "sha256 (unsharded | merged shards):"
mismatch=0
while read -r f; do
    a=$(sha256sum "$WHOLE/$f" | cut -d' ' -f1)
    b=$(sha256sum "$MERGED/$f" | cut -d' ' -f1)
    mark="=="
    [[ $a == "$b" ]] || { mark="!="; mismatch=1; }
    echo "  $a $mark $b  $f"
done <<<"$files"
[[ $mismatch -eq 0 ]] || die "the merged shards differ from the unsharded run (!= above)"
echo "slurm: PASS"
