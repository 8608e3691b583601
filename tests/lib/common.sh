# SPDX-License-Identifier: GPL-2.0-or-later
# Shared by the integration tests: assertions that print "ok N - what" / "not ok N - what",
# a scratch folder removed on exit, and the skip-or-fail rule for missing services.
# shellcheck shell=bash

set -u
KS_BUILDDIR=${KS_BUILDDIR:-$(pwd)}
KS_SRCDIR=${KS_SRCDIR:-$KS_BUILDDIR}
KEYSTONED=$KS_BUILDDIR/daemon/keystoned
KEYSTONECTL=$KS_BUILDDIR/daemon/keystonectl
ks_test_name=$(basename "$0" .sh)
ks_n=0
ks_failed=0
ks_cleanups=()

# The service a test needs is missing: skip (77) on a developer's machine, fail hard (99) when
# KEYSTONE_TEST_REQUIRE_SERVICES=1 says services are required (CI), so CI never passes by skipping.
ks_missing_service() {
    if [ "${KEYSTONE_TEST_REQUIRE_SERVICES:-0}" = 1 ]; then
        echo "ERROR: $ks_test_name: required service missing: $*" >&2
        exit 99
    fi
    echo "SKIP: $ks_test_name: $*" >&2
    exit 77
}

# Runs "$@" at exit, last registered first (a stack, so services stop in reverse order).
ks_on_exit() { ks_cleanups=("$*" "${ks_cleanups[@]}"); }
ks_run_cleanups() {
    local rc=$?
    local c
    for c in "${ks_cleanups[@]}"; do eval "$c" >/dev/null 2>&1 || true; done
    return $rc
}
trap ks_run_cleanups EXIT

ks_scratch() {
    KS_TMP=$(mktemp -d "${TMPDIR:-/tmp}/ks-$ks_test_name.XXXXXX")
    chmod 0711 "$KS_TMP"   # the postgres user must be able to reach its data folder inside
    ks_on_exit "rm -rf '$KS_TMP'"
}

ks_pass() { ks_n=$((ks_n + 1)); echo "ok $ks_n - $*"; }
ks_fail() { ks_n=$((ks_n + 1)); ks_failed=$((ks_failed + 1)); echo "not ok $ks_n - $*"; }

# check "what" command...: passes when the command exits 0.
check() {
    local what=$1; shift
    if "$@" >"$KS_TMP/check.out" 2>&1; then ks_pass "$what"; else
        ks_fail "$what"; sed 's/^/#   /' "$KS_TMP/check.out" | head -40
    fi
}
# check_fails "what" command...: passes when the command exits non-zero.
check_fails() {
    local what=$1; shift
    if "$@" >"$KS_TMP/check.out" 2>&1; then
        ks_fail "$what (it succeeded)"; sed 's/^/#   /' "$KS_TMP/check.out" | head -40
    else ks_pass "$what"; fi
}
# check_eq "what" expected actual
check_eq() {
    if [ "$2" = "$3" ]; then ks_pass "$1"; else
        ks_fail "$1"; printf '#   expected: %s\n#   actual:   %s\n' "$2" "$3"
    fi
}
# check_match "what" regex text
check_match() {
    if printf '%s' "$3" | grep -Eq -- "$2"; then ks_pass "$1"; else
        ks_fail "$1"; printf '#   pattern: %s\n#   text:\n' "$2"; printf '%s\n' "$3" | sed 's/^/#     /' | head -40
    fi
}

# A TCP port on 127.0.0.1 that nothing listens on (racy by nature: callers retry on failure).
ks_free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
    done
    return 1
}

# Waits up to $1 seconds for "$2..." to succeed.
ks_wait_for() {
    local limit=$1; shift
    local i
    for ((i = 0; i < limit * 10; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    return 1
}

ks_done() {
    echo "# $ks_test_name: $ks_n checks, $ks_failed failed"
    [ "$ks_failed" -eq 0 ]
}

# Settings keystoned reads from the environment must come from each test's own file, not from
# whatever the developer's shell exports.
for ks_v in $(compgen -e); do
    case $ks_v in
    DB_* | AUTH_LDAP_* | EMAIL_* | DEBUG_EMAIL_DIR | LOG_* | CONFIG_* | KEYSTONED_* | REDIS_* | \
        SECURE_* | API_THROTTLE_* | DEBUG | KEYSTONE_CONF) unset "$ks_v" ;;
    esac
done
unset ks_v
