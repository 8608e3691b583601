#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Prints the closing line "N passed, N failed, N skipped" of a `make check` in build folder $1,
# counting single checks: Check's per-program summary ("Checks: 12, Failures: 0, Errors: 0") and
# the "ok"/"not ok" lines of the integration scripts; automake keeps both in the .log files.
# A test program that failed without a failing check (a crash, a hard error) counts as one
# failure, and so does each of the $2 further failures the caller saw (build, distcheck).
set -u
dir=${1:-.}
extra=${2:-0}
passed=0 failed=$extra skipped=0
while IFS= read -r trs; do
    log=${trs%.trs}.log
    result=$(sed -n 's/^:test-result: //p' "$trs" | head -n 1)
    if [ "$result" = SKIP ]; then skipped=$((skipped + 1)); continue; fi
    ok=0 bad=0
    line=$(grep -E '^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' "$log" 2>/dev/null | tail -n 1)
    if [ -n "$line" ]; then
        n=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+),.*/\1/')
        f=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+),.*/\1/')
        e=$(echo "$line" | sed -E 's/.*Errors: ([0-9]+).*/\1/')
        ok=$((n - f - e)); bad=$((f + e))
    else
        ok=$(grep -c '^ok ' "$log" 2>/dev/null || true)
        bad=$(grep -c '^not ok ' "$log" 2>/dev/null || true)
    fi
    if [ "$result" != PASS ] && [ "$bad" -eq 0 ]; then bad=1; fi
    passed=$((passed + ok)); failed=$((failed + bad))
done < <(find "$dir" -name '*.trs' -not -path '*/keystone-slurm-*/*' | sort)
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
