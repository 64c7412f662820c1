#!/usr/bin/env bash
# An emulated cluster of N "nodes" on this machine (default 3): a bridge
# (pcmcbr0, 10.232.0.1/24 in this machine's namespace), N network
# namespaces pcmc-node1..N, each with one address on the bridge
# (10.232.0.11, .12, …) and a UTS namespace with its own host name
# (node1..nodeN), names for all of them in /etc/hosts (marked lines,
# removed by stop.sh), and a Slurm cluster: slurmctld here and one slurmd
# inside each node's namespaces, so `sbatch -N 3` runs tasks on three hosts
# with three addresses. The file system stays shared, as a cluster's shared
# home or scratch. Needs root. Everything it starts is recorded (PIDs,
# links, namespaces) in DIR for stop.sh, which removes it all.
#
#   slurm/multinode/start.sh [N] [DIR]    (DIR default /tmp/pcmc-multinode)
#
# Prints the SLURM_CONF to export.
set -euo pipefail
N=${1:-3}
DIR=${2:-/tmp/pcmc-multinode}
HERE=$(cd "$(dirname "$0")" && pwd)
BR=pcmcbr0
NET=10.232.0
MARK="# pcmc-multinode"
[ "$(id -u)" -eq 0 ] || { echo "start.sh needs root (network namespaces)" >&2; exit 1; }
for bin in slurmctld slurmd munged; do
    [ -x "/usr/sbin/$bin" ] || { echo "missing $bin: apt-get install slurmctld slurmd slurm-client munge" >&2; exit 1; }
done
command -v ip >/dev/null || { echo "missing ip: apt-get install iproute2" >&2; exit 1; }
if ip link show "$BR" >/dev/null 2>&1; then
    echo "$BR exists: another emulated cluster is up (slurm/multinode/stop.sh first)" >&2
    exit 1
fi
mkdir -p "$DIR/state" "$DIR/uts"
: >"$DIR/pids"
echo "$N" >"$DIR/nodes"

# The bridge, and one namespace per node on it.
ip link add "$BR" type bridge
ip addr add "$NET.1/24" dev "$BR"
ip link set "$BR" up
HEAD=$(hostname)
nodes=""
for i in $(seq 1 "$N"); do
    ns=pcmc-node$i
    ip netns add "$ns"
    ip link add "pcmc-veth$i" type veth peer name eth0 netns "$ns"
    ip link set "pcmc-veth$i" master "$BR" up
    ip -n "$ns" addr add "$NET.$((10 + i))/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    # A UTS namespace with the node's host name, kept by a bind mount.
    mkdir -p "$DIR/spool-node$i" "$DIR/tmp-node$i"
    touch "$DIR/uts/node$i"
    unshare --uts="$DIR/uts/node$i" hostname "node$i"
    nodes="$nodes
NodeName=node$i NodeHostname=node$i NodeAddr=$NET.$((10 + i)) CPUs=2 RealMemory=2000 State=UNKNOWN"
done
# Names every node and the driver resolve (the file system is shared).
{
    echo "$NET.1 pcmc-head $MARK"
    for i in $(seq 1 "$N"); do echo "$NET.$((10 + i)) node$i $MARK"; done
} >>/etc/hosts

awk -v nodes="$nodes" -v dir="$DIR" -v head="$HEAD" -v bridge="$NET.1" '
    { gsub("@DIR@", dir); gsub("@HEAD@", head); gsub("@BRIDGE@", bridge) }
    /^@NODES@$/ { print substr(nodes, 2); next }
    { print }' "$HERE/slurm.conf.in" >"$DIR/slurm.conf"
export SLURM_CONF="$DIR/slurm.conf"

# munge: a key and a running daemon (its socket is shared by every node).
"$HERE/../munge.sh"

/usr/sbin/slurmctld -f "$SLURM_CONF"
for _ in $(seq 1 50); do [ -s "$DIR/slurmctld.pid" ] && break; sleep 0.1; done
echo "slurmctld $(cat "$DIR/slurmctld.pid")" >>"$DIR/pids"
# slurmd through nsenter, not `ip netns exec` (which remounts /sys, so
# slurmd would find no cgroup file system).
for i in $(seq 1 "$N"); do
    nsenter --net="/var/run/netns/pcmc-node$i" --uts="$DIR/uts/node$i" \
        /usr/sbin/slurmd -f "$SLURM_CONF" -N "node$i"
    for _ in $(seq 1 50); do [ -s "$DIR/slurmd-node$i.pid" ] && break; sleep 0.1; done
    echo "slurmd-node$i $(cat "$DIR/slurmd-node$i.pid")" >>"$DIR/pids"
done
for _ in $(seq 1 150); do
    idle=$(sinfo -h -N -o "%N %T" 2>/dev/null | awk '$2 == "idle"' | wc -l)
    if [ "$idle" -eq "$N" ]; then
        echo "export SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    sleep 0.2
done
echo "the emulated cluster did not become idle:" >&2
sinfo -N >&2 || true
echo "see $DIR/*.log" >&2
exit 1
