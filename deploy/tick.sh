#!/bin/sh
# The container's clock: `syncctl run-due` at the start of every minute, like a crontab
# line `* * * * * syncctl run-due`, but in the foreground of the container, so
#  - its environment (SYNCCTL_DB, the secrets the ${VAR} references name) is the
#    container's own: classic cron daemons start jobs with an empty environment and must
#    run as root;
#  - whatever run-due prints (nothing when all is well, one line per failure) goes to the
#    container log;
#  - a run that outlasts its minute does not delay the next tick: ticks start on the
#    minute and run-due's own lock makes an overlapping one exit at once, as under cron.
# `syncctl-tick --health` is the container's health check.
set -u

last_tick="${SYNCCTL_TICK_FILE:-${HOME:-/tmp}/.syncctl-last-tick}"

if [ "${1:-}" = "--health" ]; then
    if syncctl health >/dev/null 2>&1 || [ $? -eq 1 ]; then exit 0; fi  # OK or WARNING
    # Until `syncctl health` exists in this version: healthy while ticks are recent.
    syncctl health --help >/dev/null 2>&1 && exit 1
    [ -f "$last_tick" ] || exit 0
    age=$(( $(date +%s) - $(date -r "$last_tick" +%s) ))
    [ "$age" -lt 180 ]
    exit $?
fi

# Provisioned from a file (spec §17): a mounted /etc/syncctl/integrations.toml is applied
# at start, so the integrations and notification targets are what the file says. A file
# that does not apply stops the container with its one-line reason.
manifest="${SYNCCTL_MANIFEST:-/etc/syncctl/integrations.toml}"
if [ -f "$manifest" ]; then
    syncctl apply "$manifest" || exit $?
fi

stop() {
    trap '' TERM INT
    kill -TERM 0 2>/dev/null  # every run-due of ours (and the sleep): our process group
    wait
    exit 143
}
trap stop TERM INT

while :; do
    now=$(date +%s)
    sleep $(( 60 - now % 60 )) &
    wait $!
    syncctl run-due "$@" &
    touch "$last_tick"
done
