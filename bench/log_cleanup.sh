#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Benchmark: keystoned's batched log cleanup beside one plain DELETE of the same rows, in the same
# run on the same private PostgreSQL. Prints both times, their ratio, and the longest time any one
# statement held its row locks (for the plain DELETE: all of it). Rows: KS_BENCH_ROWS (2,000,000).
# Needs a built tree: KS_BUILDDIR (default ./_build). Run as root or as a user who can run initdb.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
export KS_SRCDIR=$src KS_BUILDDIR=${KS_BUILDDIR:-$src/_build} KEYSTONE_TEST_REQUIRE_SERVICES=1
rows=${KS_BENCH_ROWS:-2000000}
batch=${KS_BENCH_BATCH:-5000}
# shellcheck source=../tests/lib/common.sh
. "$src/tests/lib/common.sh"
# shellcheck source=../tests/lib/pg.sh
. "$src/tests/lib/pg.sh"
ks_test_name=bench-log-cleanup
ks_scratch
ks_pg_start
ks_write_conf "LOG_REQ_RETENTION_SEC=2592000" "LOG_AUD_RETENTION_SEC=0" "LOG_TSK_RETENTION_SEC=0" \
    "KEYSTONED_CLEANUP_BATCH_SIZE=$batch"
"$KEYSTONECTL" db migrate --keystone-schema >/dev/null

echo "seeding $rows expired request-log rows (+10% recent) twice: Keystone's table and a copy"
recent=$((rows / 10))
psql -X -q -v ON_ERROR_STOP=1 <<SQL
INSERT INTO logging_requestlog (method, endpoint, response_code, remote_address, "timestamp", cid)
SELECT 'GET', '/allocations/requests/' || (g % 1000), 200, '10.0.' || (g % 250) || '.' || (g % 200),
       now() - interval '31 days' - (g % 10000000) * interval '1 second', NULL
FROM generate_series(1, $rows) g;
INSERT INTO logging_requestlog (method, endpoint, response_code, remote_address, "timestamp", cid)
SELECT 'GET', '/recent', 200, '10.1.1.1', now() - (g % 86400) * interval '1 second', NULL
FROM generate_series(1, $recent) g;
CREATE TABLE anchor_requestlog (LIKE logging_requestlog INCLUDING ALL);
INSERT INTO anchor_requestlog SELECT * FROM logging_requestlog;
VACUUM ANALYZE logging_requestlog;
VACUUM ANALYZE anchor_requestlog;
SQL

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

t0=$(now_ms)
out=$("$KEYSTONECTL" run clear_log_records --json)
t1=$(now_ms)
ours_ms=$((t1 - t0))
ours_deleted=$(printf '%s' "$out" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["deleted"]["logging_requestlog"])')
ours_batches=$(printf '%s' "$out" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["batches"])')
ours_lock_ms=$(printf '%s' "$out" | /usr/bin/python3 -c 'import json,sys; print(round(json.load(sys.stdin)["result"]["longest_batch_ms"], 1))')

t0=$(now_ms)
anchor_deleted=$(ks_sql "WITH d AS (DELETE FROM anchor_requestlog WHERE \"timestamp\" <= now() - interval '2592000 seconds' RETURNING 1) SELECT count(*) FROM d")
t1=$(now_ms)
anchor_ms=$((t1 - t0))

left=$(ks_sql "SELECT count(*) FROM logging_requestlog")
anchor_left=$(ks_sql "SELECT count(*) FROM anchor_requestlog")
echo
printf '%-34s %12s %12s\n' "" "keystoned" "one DELETE"
printf '%-34s %12s %12s\n' "rows deleted" "$ours_deleted" "$anchor_deleted"
printf '%-34s %12s %12s\n' "rows left" "$left" "$anchor_left"
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", a / b }'; }
printf '%-34s %12.2f %12.2f\n' "total time (s)" "$(div "$ours_ms" 1000)" "$(div "$anchor_ms" 1000)"
printf '%-34s %12s %12s\n' "statements (transactions)" "$ours_batches" "1"
printf '%-34s %12s %12s\n' "longest lock hold (ms)" "$ours_lock_ms" "$anchor_ms"
printf 'time ratio keystoned / one DELETE: %.2f\n' "$(div "$ours_ms" "$anchor_ms")"
printf 'lock-hold ratio keystoned / one DELETE: %.4f\n' "$(div "$ours_lock_ms" "$anchor_ms")"
[ "$ours_deleted" = "$anchor_deleted" ] || { echo "the two deleted different row counts" >&2; exit 1; }
