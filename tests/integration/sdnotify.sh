#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# systemd integration without systemd: keystoned speaks sd_notify to a datagram listener standing
# in for the service manager (a socket path and an abstract '@' name): READY=1 after start-up,
# WATCHDOG=1 pings, RELOADING=1 then READY=1 on SIGHUP, STOPPING=1 on SIGTERM, all from the main
# pid (NotifyAccess=main); nothing changes without NOTIFY_SOCKET. And the generated unit file is
# well-formed (systemd-analyze verify when installed, a small parser always).
. "${KS_SRCDIR:-.}/tests/lib/common.sh"
. "$KS_SRCDIR/tests/lib/pg.sh"
ks_scratch

# --- the unit file: needs no service ------------------------------------------------------
UNIT=$KS_BUILDDIR/etc/keystoned.service
[ -f "$UNIT" ] || make -C "$KS_BUILDDIR" etc/keystoned.service >/dev/null 2>&1
check "the unit file is generated" test -f "$UNIT"
sbindir=$(sed -n 's/^sbindir = //p' "$KS_BUILDDIR/Makefile")
prefix=$(sed -n 's/^prefix = //p' "$KS_BUILDDIR/Makefile")
exec_prefix=$(sed -n 's/^exec_prefix = //p' "$KS_BUILDDIR/Makefile")
# The Makefile's own, unexpanded values: replace the variables by hand.
# shellcheck disable=SC2016
exec_prefix=${exec_prefix//'${prefix}'/$prefix}
# shellcheck disable=SC2016
sbindir=${sbindir//'${exec_prefix}'/$exec_prefix}
check_eq "ExecStart is the installed keystoned" "ExecStart=$sbindir/keystoned" "$(grep '^ExecStart=' "$UNIT")"
check "no @...@ left unsubstituted" bash -c "! grep -n '@[a-zA-Z_]*@' '$UNIT'"
# Every key in its section, each once, with the values keystoned's protocol and paths rely on.
unit_keys() {
    awk '/^[ \t]*(#|;|$)/ { next }
         /^\[/ { sec = $0; next }
         { k = $0; sub(/=.*/, "", k); print sec " " k; if (++seen[sec " " k] > 1 && k != "After" && k != "Wants" && k != "Documentation") print "DUPLICATE " sec " " k }' "$UNIT"
}
keys=$(unit_keys)
check "no key given twice" bash -c "! grep -q DUPLICATE <<<'$keys'"
for k in Description Documentation Wants After; do
    check_match "[Unit] $k" "^\[Unit\] $k\$" "$(grep -x "\[Unit\] $k" <<<"$keys")"
done
for k in Type NotifyAccess ExecStart ExecReload Restart WatchdogSec User Group StateDirectory \
    ConfigurationDirectory ReadWritePaths NoNewPrivileges ProtectSystem ProtectHome PrivateTmp \
    PrivateDevices ProtectKernelTunables ProtectKernelModules ProtectControlGroups \
    RestrictAddressFamilies LockPersonality RestrictRealtime SystemCallArchitectures; do
    check_match "[Service] $k" "^\[Service\] $k\$" "$(grep -x "\[Service\] $k" <<<"$keys")"
done
check_match "[Install] WantedBy" "^\[Install\] WantedBy\$" "$(grep -x '\[Install\] WantedBy' <<<"$keys")"
check_eq "only the three sections" "[Install] [Service] [Unit]" \
    "$(awk '/^\[/ { print }' "$UNIT" | sort | tr '\n' ' ' | sed 's/ $//')"
check_eq "Type=notify, NotifyAccess=main" "Type=notify NotifyAccess=main" \
    "$(grep -E '^(Type|NotifyAccess)=' "$UNIT" | tr '\n' ' ' | sed 's/ $//')"
check_match "the spool folder is writable" "^ReadWritePaths=-?/var/spool/keystone\$" "$(grep '^ReadWritePaths=' "$UNIT")"
if command -v systemd-analyze >/dev/null 2>&1; then
    # verify wants ExecStart to exist: point it at the built binary; unknown keys are only
    # warnings (exit 0), so any message about the unit fails the check.
    mkdir -p "$KS_TMP/unit"
    sed "s|^ExecStart=.*|ExecStart=$KEYSTONED|" "$UNIT" >"$KS_TMP/unit/keystoned.service"
    verify() {
        local out
        out=$(systemd-analyze verify --man=no "$KS_TMP/unit/keystoned.service" 2>&1) || { echo "$out"; return 1; }
        ! grep -i "keystoned.service" <<<"$out"
    }
    check "systemd-analyze verify accepts the unit" verify
else
    echo "# systemd-analyze not installed: unit checked by the parser only"
fi
check "sysusers.d line" grep -qx 'u keystone - "keystone-slurm daemon" /var/lib/keystone' "$KS_SRCDIR/etc/keystoned.sysusers"
check "tmpfiles.d: spool folder setgid, group keystone" grep -qE '^d /var/spool/keystone/jobs 2770 [a-z_][a-z0-9_-]* keystone -$' "$KS_SRCDIR/etc/keystoned.tmpfiles"

# --- the protocol, against a real PostgreSQL -----------------------------------------------
PYTHON=$(command -v python3) || ks_missing_service "python3 not installed (the notify socket listener)"
ks_pg_start
ks_write_conf "KEYSTONED_LOG_LEVEL=debug"
"$KEYSTONECTL" db migrate --keystone-schema >/dev/null || { echo "migrate failed"; exit 99; }

# The service manager's end: one line per datagram, "PID message" with the message's newlines
# as '|'; the sender's pid from SCM_CREDENTIALS, as systemd reads it.
cat >"$KS_TMP/listen.py" <<'PY'
import os, socket, struct, sys
addr, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind("\0" + addr[1:] if addr.startswith("@") else addr)
with open(out + ".ready", "w"):
    pass
with open(out, "a") as f:
    while True:
        msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = -1
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", data[:12])[0]
        f.write("%d %s\n" % (pid, msg.decode("utf-8", "replace").replace("\n", "|")))
        f.flush()
PY
listener_pid=
start_listener() {  # address output
    rm -f "$2" "$2.ready"
    "$PYTHON" "$KS_TMP/listen.py" "$1" "$2" 2>>"$KS_TMP/listener.err" &
    listener_pid=$!
    ks_wait_for 20 test -f "$2.ready" || { cat "$KS_TMP/listener.err"; echo "listener did not start"; exit 99; }
}
stop_listener() { [ -n "$listener_pid" ] && kill "$listener_pid" 2>/dev/null; wait "$listener_pid" 2>/dev/null; listener_pid=; }
daemon_pid=
stop_daemon() { [ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null; wait "$daemon_pid" 2>/dev/null; daemon_pid=; }
ks_on_exit stop_listener
ks_on_exit stop_daemon

count() { grep -c -- "$2" "$1" 2>/dev/null || true; }
has_at_least() { [ "$(count "$1" "$2")" -ge "$3" ]; }
# The message numbers (line numbers) of each kind, in order of arrival.
lines_of() { grep -n -- "$2" "$1" | cut -d: -f1 | tr '\n' ' '; }

# run_protocol NAME ADDRESS: the whole life cycle with NOTIFY_SOCKET=ADDRESS.
run_protocol() {
    local name=$1 addr=$2 msgs=$KS_TMP/$1.msgs log=$KS_TMP/$1.log
    start_listener "$addr" "$msgs"
    NOTIFY_SOCKET=$addr WATCHDOG_USEC=2000000 "$KEYSTONED" >>"$log" 2>&1 &
    daemon_pid=$!
    check "$name: READY=1 arrives" ks_wait_for 60 has_at_least "$msgs" "READY=1" 1
    check "$name: READY=1 only after start-up finished" grep -q "keystoned: running" "$log"
    check_match "$name: READY=1 carries a STATUS" "READY=1\|STATUS=running" "$(grep READY=1 "$msgs")"
    check "$name: WATCHDOG=1 pings keep coming (>= 2)" ks_wait_for 30 has_at_least "$msgs" "WATCHDOG=1" 2
    check "$name: ... and more (>= 4)" ks_wait_for 30 has_at_least "$msgs" "WATCHDOG=1" 4
    kill -HUP "$daemon_pid"
    check "$name: SIGHUP: RELOADING=1" ks_wait_for 30 has_at_least "$msgs" "RELOADING=1" 1
    check "$name: then READY=1 again" ks_wait_for 30 has_at_least "$msgs" "READY=1" 2
    local reload ready2
    reload=$(lines_of "$msgs" "RELOADING=1"); ready2=$(lines_of "$msgs" "READY=1" | awk '{ print $2 }')
    check "$name: READY=1 follows RELOADING=1 (messages ${reload}and $ready2)" test "${reload%% *}" -lt "$ready2"
    check_match "$name: RELOADING=1 carries MONOTONIC_USEC" "RELOADING=1.*MONOTONIC_USEC=[0-9]+" "$(grep RELOADING=1 "$msgs")"
    check "$name: the reload itself worked" grep -q "configuration reloaded" "$log"
    kill -TERM "$daemon_pid"
    check "$name: SIGTERM: STOPPING=1" ks_wait_for 30 has_at_least "$msgs" "STOPPING=1" 1
    local pid=$daemon_pid rc
    wait "$daemon_pid"; rc=$?; daemon_pid=
    check_eq "$name: exit status 0" 0 "$rc"
    check_eq "$name: every message from keystoned's main pid" "$pid" "$(cut -d' ' -f1 "$msgs" | sort -u | tr '\n' ' ' | sed 's/ $//')"
    stop_listener
}

run_protocol path "$KS_TMP/notify.sock"
run_protocol abstract "@ks-sdnotify-$$-$RANDOM"

# WATCHDOG_PID names another process: notifications, but no pings.
msgs=$KS_TMP/otherpid.msgs
start_listener "$KS_TMP/notify2.sock" "$msgs"
NOTIFY_SOCKET=$KS_TMP/notify2.sock WATCHDOG_USEC=2000000 WATCHDOG_PID=$$ "$KEYSTONED" >>"$KS_TMP/otherpid.log" 2>&1 &
daemon_pid=$!
check "WATCHDOG_PID of another process: READY=1 still" ks_wait_for 60 has_at_least "$msgs" "READY=1" 1
sleep 3    # pings would be due every second
stop_daemon
check "... STOPPING=1" ks_wait_for 30 has_at_least "$msgs" "STOPPING=1" 1
check_eq "... and no WATCHDOG=1" 0 "$(count "$msgs" "WATCHDOG=1")"
stop_listener

# Without NOTIFY_SOCKET (WATCHDOG_USEC alone means nothing): starts, reloads, stops as before.
log=$KS_TMP/unset.log
env -u NOTIFY_SOCKET WATCHDOG_USEC=2000000 "$KEYSTONED" >>"$log" 2>&1 &
daemon_pid=$!
check "NOTIFY_SOCKET unset: running" ks_wait_for 60 grep -q "keystoned: running" "$log"
kill -HUP "$daemon_pid"
check "NOTIFY_SOCKET unset: reload works" ks_wait_for 30 grep -q "configuration reloaded" "$log"
kill -TERM "$daemon_pid"; wait "$daemon_pid"; rc=$?; daemon_pid=
check_eq "NOTIFY_SOCKET unset: exit status 0" 0 "$rc"
check "NOTIFY_SOCKET unset: stopped cleanly" grep -q "keystoned: stopped" "$log"
check_eq "NOTIFY_SOCKET unset: no sd_notify messages at all" 0 "$(count "$log" "sd_notify")"

# A socket nobody listens on: the daemon carries on; the failure is logged once, at debug.
log=$KS_TMP/nosock.log
NOTIFY_SOCKET=$KS_TMP/nobody.sock WATCHDOG_USEC=2000000 "$KEYSTONED" >>"$log" 2>&1 &
daemon_pid=$!
check "dead NOTIFY_SOCKET: running" ks_wait_for 60 grep -q "keystoned: running" "$log"
sleep 3    # several pings fail meanwhile
kill -TERM "$daemon_pid"; wait "$daemon_pid"; rc=$?; daemon_pid=
check_eq "dead NOTIFY_SOCKET: exit status 0" 0 "$rc"
check_eq "dead NOTIFY_SOCKET: the failure logged once" 1 "$(count "$log" "sd_notify: send to NOTIFY_SOCKET")"
check_match "... at debug level" "debug" "$(grep "sd_notify: send to" "$log")"

ks_done
