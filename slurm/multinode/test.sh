#!/usr/bin/env bash
# pcmc across hosts on an emulated cluster (slurm/multinode/start.sh: four
# "nodes", each a network + UTS namespace with its own address and host
# name on one bridge, a shared file system, one slurmd each). Checks:
#   1. pcmc-mpi.sbatch with -N 3 × 1 task and -N 2 × 2 tasks: the ranks
#      report different hosts (summary.json "hosts"), their traffic crosses
#      the bridge (its byte counters), and chain.csv equals a direct rayon run's;
#   2. pcmc-ballista.sbatch with -N 3: scheduler and driver on the first
#      node, one executor per node, each with its own address, all holding
#      the job's secret; chain.csv equals rayon's;
#   3. node loss under Ballista: one executor's node taken down mid-run
#      (every process in its namespace SIGKILLed, its link set down): the run
#      finishes on the other nodes with rayon's chain, and summary.json
#      counts the re-run tasks;
#   4. pcmc-array.sbatch across nodes (--exclusive: a node per task) +
#      pcmc merge: the tasks land on different nodes and the merged chain
#      equals the multi-chain run's;
#   5. node loss under MPI: one rank's node taken down mid-run; the job ends
#      (bounded: srun fails, or Slurm fails the node after SlurmdTimeout,
#      30 s here), is requeued and resumes from its checkpoint on the nodes
#      left, with rayon's chain;
#   6. the Ballista scheduler's node cut off (link down) mid-run, with the
#      driver on another node: the driver exits 75 within the stall timeout
#      (PCMC_BALLISTA_JOB_TIMEOUT, 10 s here) plus a margin, and --resume on
#      a new scheduler and new executors finishes rayon's chain.
#   2b. SMC² (imdeath-smc2, 200 θ-particles) with MPI ranks on 2 nodes and
#      with Ballista executors on 3: particles.csv and summary.json equal a
#      direct serial run's (before checks 3 and 5 take nodes down for good;
#      each sbatch is bounded by 600 s).
# Prints one ok/FAIL line per check and a summary line "N passed, M failed".
# Needs root; removes everything it made (stop.sh) however it ends.
#
#   slurm/multinode/test.sh PATH/TO/pcmc    (built with --features mpi,ballista)
set -u
cd "$(dirname "$0")/../.."
PCMC=$(realpath "${1:?usage: slurm/multinode/test.sh PATH/TO/pcmc}")
export PCMC
if [ "$(id -u)" -ne 0 ]; then
    echo "multinode tests need root (network namespaces): skipped"
    exit 0
fi
for pkg in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge ip:iproute2; do
    bin=${pkg%%:*}
    command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || {
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            slurmctld slurmd slurm-client munge iproute2 >/dev/null 2>&1
        break
    }
done
DIR=$(mktemp -d /tmp/pcmc-multinode.XXXXXX)
WORK=$(mktemp -d /tmp/pcmc-multinode-work.XXXXXX)
cleanup() { slurm/multinode/stop.sh "$DIR"; }
trap cleanup EXIT
if ! slurm/multinode/start.sh 4 "$DIR" >/dev/null; then
    echo "FAIL the emulated cluster did not start"
    echo "0 passed, 1 failed"
    exit 1
fi
export SLURM_CONF="$DIR/slurm.conf"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# OpenMPI between nodes: TCP over the nodes' interface (eth0 in every node).
export OMPI_MCA_btl_tcp_if_include=eth0 OMPI_MCA_oob_tcp_if_include=eth0
passed=0
failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1"; failed=$((failed + 1)); }
check() { # check WHAT COMMAND...
    local what=$1
    shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}
same() { cmp -s "$1" "$2"; }
bridge_bytes() { # bytes sent through the bridge's ports so far
    local n=0 b
    for i in 1 2 3 4; do
        b=$(cat "/sys/class/net/pcmc-veth$i/statistics/tx_bytes" 2>/dev/null || echo 0)
        n=$((n + b))
    done
    echo "$n"
}
hosts_of() { # the "hosts" list of a summary.json, one per line
    python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1])).get("hosts", [])))' "$1" 2>/dev/null
}
wait_gone() { # wait_gone JOBID SECONDS
    for _ in $(seq 1 "$(($2 * 5))"); do
        [ -z "$(squeue -h -j "$1" -o %T 2>/dev/null)" ] && return 0
        sleep 0.2
    done
    scancel "$1" 2>/dev/null
    return 1
}

echo "== direct rayon references"
"$PCMC" run jobs/lv12-quick.toml --out "$WORK/ref12" --quiet --particles 7
"$PCMC" run jobs/lv11-quick.toml --out "$WORK/ref11" --quiet
"$PCMC" run jobs/lv11-quick.toml --out "$WORK/ref-short" --quiet --iterations 6 --chains 1
"$PCMC" run jobs/lv12-quick.toml --out "$WORK/ref-loss" --quiet --particles 400 --chains 1

echo "== 1. MPI ranks on different hosts"
for shape in "3 1" "2 2"; do
    read -r nodes per <<<"$shape"
    out="$WORK/mpi-$nodes-$per"
    before=$(bridge_bytes)
    sbatch --wait -N "$nodes" --ntasks "$((nodes * per))" --ntasks-per-node "$per" --output="$out.out" \
        slurm/pcmc-mpi.sbatch jobs/lv12-quick.toml "$out" --particles 7 >/dev/null
    after=$(bridge_bytes)
    hosts=$(hosts_of "$out/summary.json" | sort -u | tr '\n' ' ')
    echo "     -N $nodes × $per: ranks on ${hosts:-?}; $((after - before)) bytes through the bridge"
    check "mpi -N $nodes × $per: $((nodes * per)) ranks on $nodes different hosts" \
        test "$(hosts_of "$out/summary.json" | grep -c node)" -eq "$((nodes * per))" -a \
        "$(hosts_of "$out/summary.json" | sort -u | grep -c node)" -eq "$nodes"
    check "mpi -N $nodes × $per: traffic crossed the bridge" test "$((after - before))" -gt 10000
    check "mpi -N $nodes × $per: chain = direct rayon chain" same "$WORK/ref12/chain.csv" "$out/chain.csv"
done

echo "== 2. Ballista across 3 nodes"
out="$WORK/ballista"
sbatch --wait -N 3 --ntasks 3 --ntasks-per-node 1 --output="$out.out" \
    slurm/pcmc-ballista.sbatch jobs/lv11-quick.toml "$out" --quiet --iterations 6 --chains 1 >/dev/null
check "ballista -N 3: chain = direct rayon chain" same "$WORK/ref-short/chain.csv" "$out/chain.csv"
execs=$(grep -ho "pcmc executor node[0-9]*:[0-9]*" "$out/executors.log" 2>/dev/null | sort -u)
echo "     executors: $(echo "$execs" | tr '\n' ' ')"
check "ballista -N 3: one executor on each node, each advertising its host" \
    test "$(echo "$execs" | cut -d' ' -f3 | cut -d: -f1 | sort -u | grep -c node)" -eq 3
check "ballista -N 3: the scheduler advertised the head node, not a wildcard" \
    grep -q "advertised as node1:" "$out/scheduler.log"

echo "== 2b. SMC² across hosts: MPI ranks on 2 nodes, Ballista executors on 3"
"$PCMC" run jobs/imdeath-smc2.toml --out "$WORK/ref-smc2" --quiet --executor serial --theta-particles 200
same_smc2() { same "$WORK/ref-smc2/particles.csv" "$1/particles.csv" && same "$WORK/ref-smc2/summary.json" "$1/summary.json"; }
out="$WORK/smc2-mpi"
timeout 600 sbatch --wait -N 2 --ntasks 2 --ntasks-per-node 1 --output="$out.out" \
    slurm/pcmc-mpi.sbatch jobs/imdeath-smc2.toml "$out" --theta-particles 200 >/dev/null
check "smc2 mpi -N 2: particles.csv and summary.json = direct serial run's" same_smc2 "$out"
out="$WORK/smc2-ballista"
timeout 600 sbatch --wait -N 3 --ntasks 3 --ntasks-per-node 1 --output="$out.out" \
    slurm/pcmc-ballista.sbatch jobs/imdeath-smc2.toml "$out" --quiet --theta-particles 200 >/dev/null
check "smc2 ballista -N 3: particles.csv and summary.json = direct serial run's" same_smc2 "$out"

echo "== 3. Ballista: a node lost mid-run"
out="$WORK/loss"
id=$(sbatch --parsable --no-kill -N 3 --ntasks 3 --ntasks-per-node 1 --output="$out.out" \
    slurm/pcmc-ballista.sbatch jobs/lv12-quick.toml "$out" --quiet --particles 400 --chains 1)
# Wait for the first kept row, then take node3 down.
for _ in $(seq 1 1500); do
    [ "$({ wc -l <"$out/chain.csv"; } 2>/dev/null || echo 0)" -gt 1 ] && break
    sleep 0.2
done
victim=$(scontrol show hostnames "$(squeue -h -j "$id" -o %N)" | tail -n1)
victim=${victim:-node3}
n=${victim#node}
echo "     taking $victim down"
for pid in $(ip netns pids "pcmc-node$n"); do kill -9 "$pid" 2>/dev/null; done
ip -n "pcmc-node$n" link set eth0 down
wait_gone "$id" 300 || bad "the job did not end within 300 s after losing a node"
check "node loss: chain = direct rayon chain" same "$WORK/ref-loss/chain.csv" "$out/chain.csv"
rerun=$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["cluster"]; print(c["tasks_rerun"] + c["jobs_resubmitted"])' "$out/summary.json" 2>/dev/null || echo 0)
echo "     re-run tasks and resubmitted jobs: $rerun"
check "node loss: summary.json counts the work done again" test "${rerun:-0}" -gt 0
ip -n "pcmc-node$n" link set eth0 up 2>/dev/null

echo "== 4. array tasks across nodes, merged"
out="$WORK/array"
sbatch --wait --exclusive --array=0-1 --output="$WORK/array-%A_%a.out" \
    slurm/pcmc-array.sbatch jobs/lv11-quick.toml "$out" >/dev/null
"$PCMC" merge "$out/merged" "$out/chain-0" "$out/chain-1" --quiet
check "array: merged chain = one 2-chain run" same "$WORK/ref11/chain.csv" "$out/merged/chain.csv"
h0=$(hosts_of "$out/chain-0/summary.json")
h1=$(hosts_of "$out/chain-1/summary.json")
echo "     array tasks on: $h0 $h1"
check "array: the tasks ran on different nodes" test -n "$h0" -a -n "$h1" -a "$h0" != "$h1"

echo "== 5. MPI: a node lost mid-run, the job requeued and resumed"
out="$WORK/mpi-loss"
id=$(sbatch --parsable -N 2 --ntasks 2 --ntasks-per-node 1 --output="$out.out" \
    slurm/pcmc-mpi.sbatch jobs/lv12-quick.toml "$out" --particles 400 --chains 1 --checkpoint-every 1)
for _ in $(seq 1 1500); do
    [ "$({ wc -l <"$out/chain.csv"; } 2>/dev/null || echo 0)" -gt 1 ] && break
    sleep 0.2
done
victim=$(scontrol show hostnames "$(squeue -h -j "$id" -o %N)" | tail -n1)
n=${victim#node}
echo "     job $id on $(squeue -h -j "$id" -o %N); taking ${victim:-?} down"
lost=$(date +%s)
if [ -n "$victim" ]; then
    for pid in $(ip netns pids "pcmc-node$n"); do kill -9 "$pid" 2>/dev/null; done
    ip -n "pcmc-node$n" link set eth0 down
fi
wait_gone "$id" 400 || bad "the MPI job did not finish within 400 s after losing a node"
echo "     finished $(($(date +%s) - lost)) s after the loss; restarts: $(grep -c "requeueing\|resuming after" "$out/pcmc-$id.log" 2>/dev/null)"
check "mpi node loss: the job resumed from its checkpoint" grep -q "resuming after iteration" "$out/pcmc-$id.log"
check "mpi node loss: chain = direct rayon chain" same "$WORK/ref-loss/chain.csv" "$out/chain.csv"
check "mpi node loss: the resumed ranks avoided the lost node" \
    test -n "$victim" -a "$(hosts_of "$out/summary.json" | grep -cx "$victim")" -eq 0
[ -n "$victim" ] && ip -n "pcmc-node$n" link set eth0 up 2>/dev/null

echo "== 6. Ballista: the scheduler's node cut off mid-run"
cut="$WORK/cut"
mkdir -p "$cut/work"
(umask 077 && "$PCMC" cluster token >"$cut/token")
inns() { # inns N COMMAND...: COMMAND in node N's network namespace
    local n=$1
    shift
    ip netns exec "pcmc-node$n" "$@"
}
cut_pids=()
start_scheduler() { # start_scheduler N: sets sched to its address once published
    # (not in a $(…) subshell: its PID must reach cut_pids)
    rm -f "$cut/sched-$1.addr"
    sched=
    # ip netns exec directly, not the inns function: run in the background a
    # function is a subshell, and $! would be the subshell, not pcmc.
    ip netns exec "pcmc-node$1" "$PCMC" cluster scheduler --bind "10.232.0.$((10 + $1)):0" --token-file "$cut/token" \
        --address-file "$cut/sched-$1.addr" --executor-timeout 4 >"$cut/sched-$1.log" 2>&1 &
    cut_pids+=($!)
    for _ in $(seq 1 150); do
        [ -s "$cut/sched-$1.addr" ] && { sched=$(cat "$cut/sched-$1.addr"); return 0; }
        sleep 0.2
    done
    return 1
}
start_executor() { # start_executor N SCHEDULER
    ip netns exec "pcmc-node$1" "$PCMC" cluster executor --scheduler "$2" --bind "10.232.0.$((10 + $1)):0" \
        --work-dir "$cut/work" --token-file "$cut/token" --slots 1 --heartbeat 1 \
        >>"$cut/exec-$1.log" 2>&1 &
    cut_pids+=($!)
}
cut_run() { # cut_run SCHEDULER [flags]: the driver on node1
    local s=$1
    shift
    inns 1 env PCMC_BALLISTA_JOB_TIMEOUT=10 "$PCMC" run jobs/lv12-quick.toml --out "$cut/run" --quiet \
        --particles 400 --chains 1 --checkpoint-every 1 --executor dataflow --partitions 2 \
        --scheduler "$s" --token-file "$cut/token" --work-dir "$cut/work" "$@"
}
if start_scheduler 3; then
    start_executor 2 "$sched"
    start_executor 4 "$sched"
    inns 1 "$PCMC" cluster wait --scheduler "$sched" --executors 2 --token-file "$cut/token" >/dev/null 2>&1
    cut_run "$sched" >"$cut/run1.log" 2>&1 &
    driver=$!
    for _ in $(seq 1 1500); do
        [ "$({ wc -l <"$cut/run/chain.csv"; } 2>/dev/null || echo 0)" -gt 1 ] && break
        sleep 0.2
    done
    ip -n pcmc-node3 link set eth0 down
    t0=$(date +%s)
    rc=
    for _ in $(seq 1 600); do
        kill -0 "$driver" 2>/dev/null || { wait "$driver"; rc=$?; break; }
        sleep 0.2
    done
    took=$(($(date +%s) - t0))
    [ -z "$rc" ] && { kill -9 "$driver" 2>/dev/null; rc=hung; }
    echo "     the driver exited $rc, $took s after the scheduler's node was cut off"
    check "scheduler cut off: the driver exits 75" test "$rc" = 75
    check "scheduler cut off: within the stall timeout (10 s) + 20 s" test "$took" -le 30
    for pid in "${cut_pids[@]}"; do { kill -9 "$pid" && wait "$pid"; } 2>/dev/null; done
    cut_pids=()
    ip -n pcmc-node3 link set eth0 up
    if start_scheduler 4; then
        start_executor 2 "$sched"
        start_executor 4 "$sched"
        inns 1 "$PCMC" cluster wait --scheduler "$sched" --executors 2 --token-file "$cut/token" >/dev/null 2>&1
        cut_run "$sched" --resume >"$cut/run2.log" 2>&1
        check "scheduler cut off: --resume on a new scheduler finishes" test $? -eq 0
    else
        bad "scheduler cut off: the new scheduler did not start"
    fi
    check "scheduler cut off: chain = direct rayon chain" same "$WORK/ref-loss/chain.csv" "$cut/run/chain.csv"
    for pid in "${cut_pids[@]}"; do { kill -9 "$pid" && wait "$pid"; } 2>/dev/null; done
else
    bad "scheduler cut off: the scheduler did not start on node3"
fi

if pgrep -f "pcmc cluster" >/dev/null; then pgrep -af "pcmc cluster" | sed 's/^/     /'; bad "cluster processes left running"; else ok "no cluster process left running"; fi
echo "multinode: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then
    echo "logs in $WORK"
    exit 1
fi
rm -rf "$WORK"
