#!/usr/bin/env bash
# Starts a one-node Slurm (munge, slurmctld, slurmd) as plain background
# processes on 127.0.0.1 and waits until the node is idle. Prints the
# SLURM_CONF to export. Usage: slurm/local/start.sh [DIR] (default /tmp/pcmc-slurm)
set -euo pipefail
DIR=${1:-/tmp/pcmc-slurm}
HERE=$(cd "$(dirname "$0")" && pwd)
for bin in slurmctld slurmd sbatch munged; do
    command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || {
        echo "missing $bin: apt-get install slurmctld slurmd slurm-client munge" >&2
        exit 1
    }
done
mkdir -p "$DIR/state" "$DIR/spool"
CPUS=$(nproc)
sed -e "s|@DIR@|$DIR|g" -e "s|@CPUS@|$CPUS|g" "$HERE/slurm.conf.in" >"$DIR/slurm.conf"
export SLURM_CONF="$DIR/slurm.conf"

# munge: a key and a running daemon (its socket is shared by every node).
"$HERE/../munge.sh"

/usr/sbin/slurmctld -f "$SLURM_CONF"
/usr/sbin/slurmd -f "$SLURM_CONF" -N localhost
for _ in $(seq 1 100); do
    state=$(sinfo -h -o %T 2>/dev/null | head -n1 || true)
    if [ "$state" = "idle" ]; then
        echo "export SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    sleep 0.2
done
echo "the local Slurm did not become idle (state: ${state:-none}); see $DIR/*.log" >&2
exit 1
