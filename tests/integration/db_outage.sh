#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# PostgreSQL going away: before a run (clear error), in the middle of a run (FAILURE row after it
# comes back, never a crash), and under keystoned (it waits, retries and carries on).
. "${KS_SRCDIR:-.}/tests/lib/common.sh"
. "$KS_SRCDIR/tests/lib/pg.sh"
ks_scratch
ks_pg_start
ks_write_conf "KEYSTONED_CLEANUP_BATCH_SIZE=100" "KEYSTONED_DB_CONNECT_TIMEOUT=2" \
    'KEYSTONED_SCHEDULE_CLEAR_LOG_RECORDS=* * * * *'
"$KEYSTONECTL" db migrate --keystone-schema >/dev/null || { echo "migrate failed"; exit 99; }
TASK=apps.logging.tasks.clear_log_records

# 1. The server is down before the run starts.
ks_pg_stop
out=$("$KEYSTONECTL" run clear_log_records 2>&1); rc=$?
check_eq "keystonectl with the database down exits 1 (not a crash)" 1 "$rc"
check_match "with a clear error naming the connection" "cannot connect.*127.0.0.1" "$out"
out=$("$KEYSTONECTL" tasks 2>&1); rc=$?
check_eq "keystonectl tasks with the database down exits 1" 1 "$rc"
ks_pg_restart

# 2. The server goes away in the middle of a run.
ks_sql "INSERT INTO logging_requestlog (method, endpoint, response_code, \"timestamp\") SELECT 'GET', '/bulk', 200, now() - interval '60 days' FROM generate_series(1, 400000)" >/dev/null
"$KEYSTONECTL" run clear_log_records >"$KS_TMP/run.out" 2>&1 &
runner=$!
running() { [ "$(ks_sql "SELECT count(*) FROM django_celery_results_taskresult WHERE status = 'STARTED'")" = 1 ]; }
check "the run started" ks_wait_for 20 running
sleep 0.5
ks_pg_stop
sleep 2
ks_pg_restart
wait $runner; rc=$?
check_eq "the interrupted run exits 1, not by a signal" 1 "$rc"
check_eq "its record says FAILURE once the server is back" "FAILURE" \
    "$(ks_sql "SELECT status FROM django_celery_results_taskresult WHERE worker = 'test-worker' ORDER BY date_created DESC LIMIT 1")"
check_match "the traceback says the connection was lost" "terminat|connection|server closed" \
    "$(ks_sql "SELECT traceback FROM django_celery_results_taskresult WHERE worker = 'test-worker' ORDER BY date_created DESC LIMIT 1")"
out=$("$KEYSTONECTL" run clear_log_records 2>&1); rc=$?
check_eq "the next run finishes the job" 0 "$rc"
check_eq "no old rows left" "0" "$(ks_sql "SELECT count(*) FROM logging_requestlog")"

# 3. keystoned started while the server is down waits for it, then works.
ks_sql "INSERT INTO keystone_slurm.task_schedule (task_name, last_slot, updated_at) VALUES ('$TASK', now() - interval '1 day', now())
        ON CONFLICT (task_name) DO UPDATE SET last_slot = EXCLUDED.last_slot" >/dev/null
ks_pg_stop
"$KEYSTONED" -f "$KS_TMP/keystoned.conf" >"$KS_TMP/keystoned.log" 2>&1 &
daemon=$!
ks_on_exit "kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null"
check "keystoned logs the failed connection and retries" ks_wait_for 15 grep -q "cannot connect.*retrying" "$KS_TMP/keystoned.log"
check "keystoned keeps running while the database is down" kill -0 "$daemon"
ks_pg_restart
check "once the database is back it starts" ks_wait_for 40 grep -q "keystoned: running" "$KS_TMP/keystoned.log"
successes() { ks_sql "SELECT count(*) FROM django_celery_results_taskresult WHERE periodic_task_name = '$TASK' AND status = 'SUCCESS'"; }
scheduled() { [ "$(successes)" -ge 1 ]; }
check "and runs the missed slot" ks_wait_for 20 scheduled

# 4. The server goes away under the running daemon: it keeps running and recovers.
failures() { ks_sql "SELECT count(*) FROM django_celery_results_taskresult WHERE periodic_task_name = '$TASK' AND status = 'FAILURE'"; }
failures_before=$(failures)
ks_pg_stop
sleep 1
check "keystoned survives the database going away" kill -0 "$daemon"
ks_pg_restart
before=$(successes)
more() { [ "$(successes)" -gt "$before" ]; }
check "after the outage the next minute's run succeeds again (waits up to 75 s)" ks_wait_for 75 more
# Its connection died with the server while idle: keystoned finds out before the run and
# connects again, instead of failing the first run after a restart of PostgreSQL.
check_eq "no run failed for the connection that died while idle" "$failures_before" "$(failures)"
check "the dead idle connection is logged and replaced" grep -q "clear_log_records: the database connection was lost while idle: connecting again" "$KS_TMP/keystoned.log"
kill -TERM "$daemon"; wait "$daemon"; rc=$?
check_eq "and stops cleanly afterwards" 0 "$rc"

ks_done
