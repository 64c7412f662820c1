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
answers() { munge -n </dev/null >/dev/null 2>&1; }
if ! answers; then
    # Not running, or dead with its socket left behind (a socket file alone
    # says nothing): clear what a dead daemon left and start one.
    # The PID file's process only if it still is munged (PIDs are reused).
    pid=$(cat /run/munge/munged.pid 2>/dev/null || true)
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = munged ]; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            [ -d "/proc/$pid" ] || break
            sleep 0.1
        done
    fi
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 1 50); do
    answers && exit 0
    sleep 0.1
done
echo "munged did not start (munge -n gets no answer on /run/munge/munge.socket.2)" >&2
exit 1
