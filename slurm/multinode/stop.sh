#!/usr/bin/env bash
# Removes everything slurm/multinode/start.sh made: its daemons (by the PIDs
# it recorded, never by name), every process still inside a node's network
# namespace, the namespaces, links and bridge, and its /etc/hosts lines.
#
#   slurm/multinode/stop.sh [DIR]    (DIR default /tmp/pcmc-multinode)
DIR=${1:-/tmp/pcmc-multinode}
BR=pcmcbr0
if [ -s "$DIR/pids" ]; then
    while read -r _ pid; do kill "$pid" 2>/dev/null || true; done <"$DIR/pids"
    for _ in $(seq 1 50); do
        alive=0
        while read -r _ pid; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$DIR/pids"
        [ "$alive" -eq 0 ] && break
        sleep 0.1
    done
    while read -r _ pid; do kill -9 "$pid" 2>/dev/null || true; done <"$DIR/pids"
fi
N=$(cat "$DIR/nodes" 2>/dev/null || echo 0)
for i in $(seq 1 "$N"); do
    ns=pcmc-node$i
    if ip netns list 2>/dev/null | grep -qw "$ns"; then
        # Whatever a test left running on the node (ip netns pids lists
        # exactly the processes in that namespace).
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    fi
    ip link del "pcmc-veth$i" 2>/dev/null || true
    umount "$DIR/uts/node$i" 2>/dev/null || true
done
ip link del "$BR" 2>/dev/null || true
sed -i '/# pcmc-multinode$/d' /etc/hosts 2>/dev/null || true
exit 0
