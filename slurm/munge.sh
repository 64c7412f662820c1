#!/usr/bin/env bash
# Makes sure munge (Slurm's authentication) runs: a key, its directories and
# the daemon, waiting (bounded) for its socket. Sourced or run by
# slurm/local/start.sh and slurm/multinode/start.sh; needs root.
set -eu
if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
if [ ! -S /run/munge/munge.socket.2 ]; then
    runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 1 50); do
    [ -S /run/munge/munge.socket.2 ] && exit 0
    sleep 0.1
done
echo "munged did not start (no /run/munge/munge.socket.2)" >&2
exit 1
