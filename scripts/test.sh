#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The full test suite, as CI runs it: install dependencies, build with warnings as errors, run
# every unit and integration test with real services required, check the release tarball
# (make distcheck), and print "N passed, N failed, N skipped". Run as root on Debian 12.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${KS_BUILD_DIR:-$src/_build}

"$src/scripts/install-deps.sh"
cd "$src"
autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
mkdir -p "$build"
# The jobcomp plugin builds against Debian's source of exactly the installed Slurm.
slurm_src=$("$src/scripts/fetch-slurm-source.sh" "$build/slurm-src")
cd "$build"
"$src/configure" -q --enable-werror --with-plugin --with-slurm-source="$slurm_src"
make -j2 >/dev/null

export KEYSTONE_TEST_REQUIRE_SERVICES=1
status=0
make -j2 check || status=$?
if [ $status -ne 0 ]; then
    echo "=== logs of the failing tests ==="
    for trs in $(grep -l -E '^:test-result: (FAIL|ERROR)' $(find . -name '*.trs')); do
        echo "--- ${trs%.trs}.log"; cat "${trs%.trs}.log"
    done
fi
if [ $status -eq 0 ] && [ "${KS_SKIP_DISTCHECK:-0}" != 1 ]; then
    echo "=== make distcheck ==="
    make -j2 distcheck DISTCHECK_CONFIGURE_FLAGS="--enable-werror --with-plugin --with-slurm-source=$slurm_src" >distcheck.log 2>&1 || {
        status=$?; tail -n 60 distcheck.log; echo "make distcheck failed (full log: $build/distcheck.log)"; }
fi
extra=0
[ $status -ne 0 ] && ! grep -qs -E '^:test-result: (FAIL|ERROR)' $(find . -name '*.trs' -not -path './keystone-slurm-*') && extra=1
"$src/scripts/test-summary.sh" "$build" "$extra" || true
exit $status
