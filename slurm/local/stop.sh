#!/usr/bin/env bash
# Stops the daemons started by start.sh. Usage: slurm/local/stop.sh [DIR]
DIR=${1:-/tmp/pcmc-slurm}
for f in slurmd slurmctld; do
    if [ -s "$DIR/$f.pid" ]; then
        kill "$(cat "$DIR/$f.pid")" 2>/dev/null || true
    fi
done
sleep 0.5
pkill -x slurmd 2>/dev/null || true
pkill -x slurmctld 2>/dev/null || true
exit 0
