# SPDX-License-Identifier: GPL-2.0-or-later
# A private SMTP sink for one test (tests/lib/smtp_sink.py on Debian's python3-aiosmtpd): listens
# on 127.0.0.1 at a free port and stores every accepted message as a file; stopped (only this
# instance) when the test exits. Needs tests/lib/common.sh and ks_scratch first.
#
# ks_smtp_start [SINK OPTIONS...]   --delay S, --reject TEXT, --defer TEXT, --tls, --auth U:P
#                                    (--tls uses the certificate from ks_smtp_certs)
# ks_smtp_stop / ks_smtp_restart [SINK OPTIONS...]   (restart: same port, new options)
# Exports KS_SMTP_PORT, KS_SMTP_MAILDIR (messages in $KS_SMTP_MAILDIR/new), and after
# ks_smtp_certs KS_SMTP_CA (signed the server certificate) and KS_SMTP_WRONG_CA (did not).
# shellcheck shell=bash

KS_SMTP_PYTHON=/usr/bin/python3 # Debian's python: a pyenv shim on PATH cannot see python3-*

ks_smtp_start() {
    [ -x "$KS_SMTP_PYTHON" ] || ks_missing_service "no $KS_SMTP_PYTHON: apt-get install python3"
    "$KS_SMTP_PYTHON" -c 'import aiosmtpd.controller' 2>/dev/null ||
        ks_missing_service "python3-aiosmtpd not installed: apt-get install python3-aiosmtpd"
    KS_SMTP_DIR=$KS_TMP/smtp
    KS_SMTP_MAILDIR=$KS_SMTP_DIR/maildir
    mkdir -p "$KS_SMTP_MAILDIR/new" "$KS_SMTP_MAILDIR/tmp"
    export KS_SMTP_MAILDIR
    local try
    for try in 1 2 3; do
        KS_SMTP_PORT=$(ks_free_port)
        if ks_smtp_launch "$@"; then break; fi
        [ "$try" = 3 ] && { cat "$KS_SMTP_DIR/sink.log" >&2; echo "the SMTP sink did not start" >&2; exit 99; }
    done
    export KS_SMTP_PORT
    ks_on_exit ks_smtp_stop
}

# Starts the sink on $KS_SMTP_PORT and waits for its greeting.
ks_smtp_launch() {
    local args=() a
    for a in "$@"; do
        if [ "$a" = --tls ]; then args+=(--tls "$KS_SMTP_DIR/tls/server.crt" "$KS_SMTP_DIR/tls/server.key")
        else args+=("$a"); fi
    done
    rm -f "$KS_SMTP_DIR/ready"
    setsid "$KS_SMTP_PYTHON" "$KS_SRCDIR/tests/lib/smtp_sink.py" --port "$KS_SMTP_PORT" \
        --maildir "$KS_SMTP_MAILDIR" --ready "$KS_SMTP_DIR/ready" "${args[@]}" \
        >>"$KS_SMTP_DIR/sink.log" 2>&1 </dev/null &
    KS_SMTP_PID=$!
    local i
    for ((i = 0; i < 100; i++)); do
        ks_smtp_alive || return 1
        [ -e "$KS_SMTP_DIR/ready" ] && return 0
        sleep 0.1
    done
    return 1
}

# Whether our sink process runs (a zombie counts as gone).
ks_smtp_alive() {
    local stat state
    [ -n "${KS_SMTP_PID:-}" ] || return 1
    stat=$(cat "/proc/$KS_SMTP_PID/stat" 2>/dev/null) || return 1
    state=${stat##*) }
    state=${state%% *}
    case $state in Z | X | x) return 1 ;; esac
}

# Stops the sink (only our own process) and waits until it is gone.
ks_smtp_stop() {
    [ -n "${KS_SMTP_PID:-}" ] || return 0
    kill -TERM "$KS_SMTP_PID" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do ks_smtp_alive || break; sleep 0.05; done
    ks_smtp_alive && kill -KILL "$KS_SMTP_PID" 2>/dev/null
    wait "$KS_SMTP_PID" 2>/dev/null || true
    KS_SMTP_PID=
}

ks_smtp_restart() {
    ks_smtp_stop
    ks_smtp_launch "$@" || { cat "$KS_SMTP_DIR/sink.log" >&2; echo "the SMTP sink did not restart" >&2; exit 99; }
}

# Number of messages stored so far.
ks_smtp_count() { find "$KS_SMTP_MAILDIR/new" -type f | wc -l; }

# Removes every stored message.
ks_smtp_clear() { find "$KS_SMTP_MAILDIR/new" -type f -delete; }

# A CA and a server certificate for 127.0.0.1 and localhost, plus an unrelated CA.
ks_smtp_certs() {
    command -v openssl >/dev/null || ks_missing_service "openssl not installed: apt-get install openssl"
    local d=$KS_TMP/smtp/tls
    mkdir -p "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=keystone test SMTP CA" \
        -keyout "$d/ca.key" -out "$d/ca.crt" >/dev/null 2>&1
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=unrelated CA" \
        -keyout "$d/wrong.key" -out "$d/wrong.crt" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$d/server.key" \
        -out "$d/server.csr" >/dev/null 2>&1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$d/ext.cnf"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
        -days 2 -extfile "$d/ext.cnf" -out "$d/server.crt" >/dev/null 2>&1
    export KS_SMTP_CA=$d/ca.crt KS_SMTP_WRONG_CA=$d/wrong.crt
}
