#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Benchmark: keystoned's spool ingest beside its anchor, in the same run on the same private
# PostgreSQL. Ours: KS_BENCH_RECORDS (1,000,000) made-up job records in spool files of
# KS_BENCH_PER_FILE (500, the plugin's default batch) moved into the spool of a running
# keystoned (KEYSTONED_INGEST_CONNECTIONS=KS_BENCH_CONNECTIONS, default 2, the setting's
# default), until every row is in keystone_slurm.job and the spool is empty. Anchor: one raw
# COPY (text format, through psql) of the same rows, taken from the ingested table, into an
# unindexed table with the same columns. Prints records/s of both and the ratio ours / anchor.
# Needs a built tree: KS_BUILDDIR (default ./_build). Run as root or as a user who can run initdb.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
export KS_SRCDIR=$src KS_BUILDDIR=${KS_BUILDDIR:-$src/_build} KEYSTONE_TEST_REQUIRE_SERVICES=1
records=${KS_BENCH_RECORDS:-1000000}
per_file=${KS_BENCH_PER_FILE:-500}
# shellcheck source=../tests/lib/common.sh
. "$src/tests/lib/common.sh"
# shellcheck source=../tests/lib/pg.sh
. "$src/tests/lib/pg.sh"
ks_test_name=bench-ingest
ks_scratch
ks_pg_start
spool=$KS_TMP/spool
mkdir -p "$spool" "$KS_TMP/gen"
connections=${KS_BENCH_CONNECTIONS:-2}
ks_write_conf "KEYSTONED_SPOOL_DIR=$spool" "KEYSTONED_LOG_LEVEL=verbose" \
    "KEYSTONED_INGEST_CONNECTIONS=$connections"
"$KEYSTONECTL" db migrate --keystone-schema >/dev/null

# Keystone's side, so the links are real joins: the cluster, 100 teams, 500 users.
psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
INSERT INTO allocations_cluster (name, enabled, access_mode) VALUES ('smp', true, 'OP');
INSERT INTO users_team (name, is_active, slug) SELECT 'Team ' || g, true, 'team-' || g FROM generate_series(0, 99) g;
INSERT INTO users_user (password, is_superuser, username, is_active, is_staff, is_ldap_user, date_joined)
SELECT '!', false, 'user' || g, true, false, true, now() FROM generate_series(0, 499) g;
SQL

echo "generating $records records in files of $per_file (bench/spoolgen)"
"$KS_BUILDDIR/bench/spoolgen" -q -d "$KS_TMP/gen" -n "$records" -b "$per_file" -c smp -s 1
files=$(find "$KS_TMP/gen" -name '*.json' | wc -l)
mb=$(du -sm "$KS_TMP/gen" | cut -f1)

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
cpu_s() { awk '{ printf "%.1f", ($14 + $15) / 100 }' "/proc/$1/stat"; }
# CPU seconds of the private PostgreSQL so far: the postmaster, the children it reaped, the live
# ones. On a shared machine the wall-clock figures swing with the load; these do much less.
pg_cpu() {
    local pm c
    pm=$(head -n 1 "$KS_PGDIR/data/postmaster.pid")
    {
        awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pm/stat"
        for c in $(pgrep -P "$pm"); do awk '{ print $14 + $15 }' "/proc/$c/stat" 2>/dev/null; done
    } | awk '{ s += $1 } END { printf "%.1f", s / 100 }'
}

"$KEYSTONED" >"$KS_TMP/keystoned.log" 2>&1 &
daemon=$!
ks_on_exit "kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null"
ks_wait_for 60 grep -q "keystoned: running" "$KS_TMP/keystoned.log" || { cat "$KS_TMP/keystoned.log"; exit 1; }
psql -X -q -c CHECKPOINT
# The ingest deletes a file only after its rows are committed, so an empty spool means every row
# is in. Polled with a glob in this shell: no process per poll. (Polling count(*) through psql,
# which Debian runs through a Perl wrapper, every 50 ms took most of a core from the ingest on
# this 2-core machine: 1.8 of PostgreSQL's 4.2 CPU seconds for 300,000 records, plus the Perl.)
# The rows are counted once at the end.
spool_empty() { ! compgen -G "$spool/*.json" >/dev/null; }

echo "ours: moving the files into the spool of the running keystoned"
load0=$(cut -d' ' -f1 /proc/loadavg)
pg0=$(pg_cpu)
t0=$(now_ms)
find "$KS_TMP/gen" -name '*.json' -exec mv -t "$spool" {} +
until spool_empty; do sleep 0.05; done
t1=$(now_ms)
ours_ms=$((t1 - t0))
ours_cpu=$(cpu_s "$daemon")
pg1=$(pg_cpu)
tx_ms=$(grep -o 'committed .* in [0-9]* ms' "$KS_TMP/keystoned.log" | awk '{ s += $(NF - 1) } END { print s + 0 }')
txs=$(grep -c 'ingest: committed' "$KS_TMP/keystoned.log" || true)
# The loading thread's time by phase, summed over the transactions (keystoned's verbose log).
phase() { grep -o "$1 [0-9]* ms" "$KS_TMP/keystoned.log" | awk '{ s += $(NF - 1) } END { printf "%.2f", s / 1000 }'; }
wait_s=$(phase 'reader wait'); upsert_s=$(phase 'upsert'); commit_s=$(phase 'commit'); delete_s=$(phase 'file deletion')
kill -TERM "$daemon"; wait "$daemon" 2>/dev/null || true

echo "anchor: one COPY of the same rows into an unindexed table"
# One line: psql's \copy ends at the end of its line.
cols='cluster, job_id, submit, jobid, array_job_id, array_task_id, het_job_id, het_job_offset, '
cols+='het_job_info, jobname, username, uid, "group", gid, account, partition, qos, state, '
cols+='exitcode, derivedexitcode, eligible, start, "end", elapsed, timelimit_min, allocnodes, '
cols+='nodelist, alloccpus, alloctres, billing, priority, workdir, reservation'
psql -X -q -v ON_ERROR_STOP=1 <<SQL
\copy (SELECT $cols FROM keystone_slurm.job) TO '$KS_TMP/rows.txt'
CREATE TABLE anchor_job AS SELECT $cols FROM keystone_slurm.job WITH NO DATA;
CHECKPOINT;
SQL
pg2=$(pg_cpu)
t0=$(now_ms)
psql -X -q -v ON_ERROR_STOP=1 -c "\\copy anchor_job FROM '$KS_TMP/rows.txt'"
t1=$(now_ms)
pg3=$(pg_cpu)
anchor_ms=$((t1 - t0))
anchor_rows=$(ks_sql "SELECT count(*) FROM anchor_job")
ours_rows=$(ks_sql "SELECT count(*) FROM keystone_slurm.job")
rows_mb=$(( $(stat -c %s "$KS_TMP/rows.txt") / 1048576 ))

div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", a / b }'; }
rate() { awk -v n="$1" -v ms="$2" 'BEGIN { printf "%.0f", n * 1000 / ms }'; }
echo
printf '%-38s %14s %14s\n' "" "keystoned" "raw COPY"
printf '%-38s %14s %14s\n' "rows in the table" "$ours_rows" "$anchor_rows"
printf '%-38s %14s %14s\n' "input" "$files files, ${mb} MB" "${rows_mb} MB text"
printf '%-38s %14.2f %14.2f\n' "time (s)" "$(div "$ours_ms" 1000)" "$(div "$anchor_ms" 1000)"
printf '%-38s %14s %14s\n' "records/s" "$(rate "$records" "$ours_ms")" "$(rate "$anchor_rows" "$anchor_ms")"
printf '%-38s %14s\n' "ingest connections" "$connections"
printf '%-38s %14s\n' "transactions" "$txs"
printf '%-38s %14.2f\n' "time inside transactions, summed (s)" "$(div "$tx_ms" 1000)"
printf '%-38s %14s\n' "  of which upsert / commit (s)" "$upsert_s / $commit_s"
printf '%-38s %14s\n' "waiting for the reader thread (s)" "$wait_s"
printf '%-38s %14s\n' "deleting ingested files (s)" "$delete_s"
printf '%-38s %14s\n' "keystoned CPU time (s)" "$ours_cpu"
printf '%-38s %14.1f %14.1f\n' "PostgreSQL CPU time (s)" "$(awk -v a="$pg0" -v b="$pg1" 'BEGIN { print b - a }')" \
    "$(awk -v a="$pg2" -v b="$pg3" 'BEGIN { print b - a }')"
printf '%-38s %14s\n' "load average before / after" "$load0 / $(cut -d' ' -f1 /proc/loadavg)"
printf 'ratio keystoned / raw COPY (records/s): %.2f (goal: at least 0.5)\n' "$(div "$anchor_ms" "$ours_ms")"
[ "$ours_rows" = "$records" ] && [ "$anchor_rows" = "$records" ] || { echo "row counts differ" >&2; exit 1; }
