#!/usr/bin/env bash
# End-to-end test of the sbatch scripts on a local one-node Slurm:
#  1. pcmc-rayon.sbatch, pcmc-mpi.sbatch (2 tasks, srun --mpi=pmix) and
#     pcmc-dataflow.sbatch on the quick jobs give chains byte-identical to a
#     direct rayon run;
#  2. pre-emption: SIGUSR1 to a running rayon job makes pcmc checkpoint and
#     exit 75, the script requeues the job, and the requeued job resumes to a
#     chain byte-identical to an uninterrupted run;
#  3. the array script runs one chain per task and merges them into the chain
#     of a single multi-chain run;
#  4. pcmc-ballista.sbatch (when pcmc has the `ballista` feature) starts a
#     scheduler and 2 executors on the node, waits for them, runs, stops the
#     cluster: chain byte-identical to a direct rayon run.
# Installs Slurm and munge with apt-get if missing; starts and stops its own
# daemons. Usage: slurm/local/test.sh PCMC_BINARY (built with --features mpi,dataflow)
set -euo pipefail
cd "$(dirname "$0")/../.."
PCMC=$(realpath "${1:?usage: slurm/local/test.sh PATH/TO/pcmc}")
export PCMC
if ! command -v sbatch >/dev/null 2>&1 || [ ! -x /usr/sbin/slurmctld ] || [ ! -x /usr/sbin/munged ]; then
    echo "== installing slurm and munge"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null 2>&1 || true
fi
DIR=$(mktemp -d /tmp/pcmc-slurm.XXXXXX)
WORK=$(mktemp -d /tmp/pcmc-slurm-work.XXXXXX)
cleanup() { slurm/local/stop.sh "$DIR"; }
trap cleanup EXIT
slurm/local/start.sh "$DIR" >/dev/null
export SLURM_CONF="$DIR/slurm.conf"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fail=0
same() { # same A B what
    if cmp -s "$1" "$2"; then echo "ok   $3"; else echo "FAIL $3"; fail=1; fi
}
wait_gone() { # wait_gone JOBID SECONDS
    for _ in $(seq 1 "$2"); do
        [ -z "$(squeue -h -j "$1" -o %T 2>/dev/null)" ] && return 0
        sleep 1
    done
    echo "FAIL job $1 did not finish"; return 1
}

echo "== direct rayon references"
"$PCMC" run jobs/lv11-quick.toml --out "$WORK/ref11" --quiet
"$PCMC" run jobs/lv12-quick.toml --out "$WORK/ref12" --quiet --particles 7
"$PCMC" run jobs/lv11-quick.toml --out "$WORK/ref-long" --quiet --iterations 1000

echo "== pcmc-rayon.sbatch"
sbatch --wait --output="$WORK/rayon-%j.out" slurm/pcmc-rayon.sbatch jobs/lv11-quick.toml "$WORK/rayon" >/dev/null
same "$WORK/ref11/chain.csv" "$WORK/rayon/chain.csv" "rayon sbatch chain = direct rayon chain"

echo "== pcmc-mpi.sbatch (2 tasks, srun --mpi=pmix)"
sbatch --wait --output="$WORK/mpi-%j.out" slurm/pcmc-mpi.sbatch jobs/lv12-quick.toml "$WORK/mpi" --particles 7 >/dev/null
same "$WORK/ref12/chain.csv" "$WORK/mpi/chain.csv" "mpi sbatch chain (2 ranks, 7 particles) = direct rayon chain"
grep -q '"workers": 2' "$WORK/mpi/summary.json" && echo "ok   2 MPI ranks" || { echo "FAIL not 2 ranks"; fail=1; }

echo "== pcmc-dataflow.sbatch (2 threads, 8 partitions)"
sbatch --wait --output="$WORK/df-%j.out" slurm/pcmc-dataflow.sbatch jobs/lv11-quick.toml "$WORK/dataflow" >/dev/null
same "$WORK/ref11/chain.csv" "$WORK/dataflow/chain.csv" "dataflow sbatch chain = direct rayon chain"
grep -q '"executor": "dataflow"' "$WORK/dataflow/summary.json" && echo "ok   dataflow executor" || { echo "FAIL not dataflow"; fail=1; }

echo "== pre-emption: SIGUSR1, checkpoint, requeue, resume"
id=$(sbatch --parsable --output="$WORK/rq-%j.out" slurm/pcmc-rayon.sbatch jobs/lv11-quick.toml "$WORK/rq" \
    --iterations 1000 --checkpoint-every 1)
for _ in $(seq 1 100); do
    [ "$(squeue -h -j "$id" -o %T)" = "RUNNING" ] && [ -s "$WORK/rq/chain.csv" ] && break
    sleep 0.2
done
# The run takes several seconds (1000 iterations); signal it early.
sleep 0.5
scancel --signal=USR1 --batch "$id"
for _ in $(seq 1 100); do
    grep -q "requeueing" "$WORK/rq/pcmc-$id.log" 2>/dev/null && break
    sleep 0.2
done
grep -q "requeueing" "$WORK/rq/pcmc-$id.log" && echo "ok   checkpointed and requeued" || { echo "FAIL no requeue"; fail=1; }
sleep 1
scontrol update jobid="$id" StartTime=now 2>/dev/null || true
wait_gone "$id" 120 || fail=1
grep -q "resuming after iteration" "$WORK/rq/pcmc-$id.log" && echo "ok   the requeued job resumed" || { echo "FAIL no resume"; fail=1; }
same "$WORK/ref-long/chain.csv" "$WORK/rq/chain.csv" "pre-empted + requeued chain = uninterrupted chain"

echo "== pcmc-array.sbatch: one chain per task, merged"
sbatch --wait --output="$WORK/array-%A_%a.out" --array=0-1 slurm/pcmc-array.sbatch jobs/lv11-quick.toml "$WORK/array" >/dev/null
"$PCMC" merge "$WORK/array/merged" "$WORK/array/chain-0" "$WORK/array/chain-1" --quiet
same "$WORK/ref11/chain.csv" "$WORK/array/merged/chain.csv" "merged array chains = one 2-chain run"

if "$PCMC" cluster wait --help >/dev/null 2>&1 && ! "$PCMC" cluster wait --scheduler 127.0.0.1:1 --timeout 0 2>&1 | grep -q "not compiled"; then
    echo "== pcmc-ballista.sbatch (scheduler + 2 executors × 1 slot on one node)"
    short=(--iterations 6 --chains 1)
    "$PCMC" run jobs/lv11-quick.toml --out "$WORK/ref-short" --quiet "${short[@]}"
    sbatch --wait --ntasks=2 --cpus-per-task=1 --output="$WORK/ballista-%j.out" \
        slurm/pcmc-ballista.sbatch jobs/lv11-quick.toml "$WORK/ballista" --quiet "${short[@]}" >/dev/null || true
    same "$WORK/ref-short/chain.csv" "$WORK/ballista/chain.csv" "ballista sbatch chain = direct rayon chain"
    grep -q '"executor": "ballista"' "$WORK/ballista/summary.json" 2>/dev/null && echo "ok   ballista executor" || { echo "FAIL not ballista"; fail=1; }
    grep -q "2 executor(s) ready" "$WORK"/ballista/pcmc-*.log && echo "ok   2 executors registered" || { echo "FAIL executors"; fail=1; }
    if pgrep -f "pcmc cluster" >/dev/null; then echo "FAIL cluster processes left running"; fail=1; else echo "ok   cluster stopped"; fi
fi

if [ "$fail" -ne 0 ]; then
    echo "slurm tests FAILED; logs in $WORK"
    exit 1
fi
echo "slurm tests passed"
rm -rf "$WORK"
