#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# keystoned against a real PostgreSQL: a missed slot runs once on start-up, the schedule fires,
# runs abandoned by a dead process are closed, SIGHUP reloads or refuses, a task's lock keeps
# keystonectl out, SIGTERM stops promptly in the middle of a run.
. "${KS_SRCDIR:-.}/tests/lib/common.sh"
. "$KS_SRCDIR/tests/lib/pg.sh"
ks_scratch
ks_pg_start
ks_write_conf 'KEYSTONED_SCHEDULE_CLEAR_LOG_RECORDS=* * * * *' "KEYSTONED_LOG_LEVEL=debug"
"$KEYSTONECTL" db migrate --keystone-schema >/dev/null || { echo "migrate failed"; exit 99; }
TASK=apps.logging.tasks.clear_log_records

daemon_pid=
start_daemon() {
    "$KEYSTONED" >>"$KS_TMP/keystoned.log" 2>&1 &
    daemon_pid=$!
}
stop_daemon() { [ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null; wait "$daemon_pid" 2>/dev/null; }
ks_on_exit stop_daemon
scheduled_runs() { ks_sql "SELECT count(*) FROM django_celery_results_taskresult WHERE periodic_task_name = '$TASK' AND status = 'SUCCESS'"; }
log_has() { grep -q -- "$1" "$KS_TMP/keystoned.log"; }

# A run left STARTED by a process that is gone (same pid as this shell, but another start time:
# PID reuse must not fool the check).
ks_sql "INSERT INTO django_celery_results_taskresult (task_id, task_name, status, content_type, content_encoding, date_created, date_started, date_done, worker)
        VALUES ('dead-run', '$TASK', 'STARTED', 'application/json', 'utf-8', now() - interval '1 hour', now() - interval '1 hour', now() - interval '1 hour', 'test-worker');
        INSERT INTO keystone_slurm.running_task (task_id, task_name, host, pid, pid_start, started_at)
        VALUES ('dead-run', '$TASK', 'test-worker', $$, 1, now() - interval '1 hour');" >/dev/null
# The last run was three hours ago: 180 slots of "* * * * *" were missed.
ks_sql "INSERT INTO keystone_slurm.task_schedule (task_name, last_slot, updated_at) VALUES ('$TASK', now() - interval '3 hours', now())" >/dev/null

# Start early in a minute, so the catch-up and the next minute's slot are seconds apart.
sec=$((10#$(date +%S))); [ "$sec" -gt 40 ] && sleep $((61 - sec))
start_daemon
wait_runs() { local want=$1 limit=$2 i; for ((i = 0; i < limit * 10; i++)); do [ "$(scheduled_runs)" -ge "$want" ] && return 0; sleep 0.1; done; return 1; }
check "catch-up run recorded" wait_runs 1 20
sleep 2
check_eq "missed slots fold into one run, not 180" "1" "$(ks_sql "SELECT count(*) FROM django_celery_results_taskresult WHERE periodic_task_name = '$TASK' AND date_created < (SELECT min(date_created) FROM django_celery_results_taskresult WHERE periodic_task_name = '$TASK') + interval '2 seconds'")"
check "the log says why it ran" log_has "was missed while keystoned was down: running it once now"
check_eq "the abandoned run is closed as FAILURE" "FAILURE|t" \
    "$(ks_sql "SELECT status || '|' || (traceback LIKE 'abandoned:%')::text FROM django_celery_results_taskresult WHERE task_id = 'dead-run'" | sed 's/true/t/')"
check_eq "its bookkeeping row is gone" "0" "$(ks_sql "SELECT count(*) FROM keystone_slurm.running_task WHERE task_id = 'dead-run'")"

check "the next minute's slot runs (waits up to 75 s)" wait_runs 2 75
check_eq "the schedule's last slot is a whole minute in the last two minutes" "t" \
    "$(ks_sql "SELECT last_slot = date_trunc('minute', last_slot) AND last_slot > now() - interval '2 minutes' AND last_status = 'SUCCESS' FROM keystone_slurm.task_schedule WHERE task_name = '$TASK'")"

# SIGHUP: a broken file is refused and the daemon keeps running with the old settings.
cp "$KS_TMP/keystoned.conf" "$KS_TMP/good.conf"
echo "LOG_REQ_RETENTION_SEC=soon" >>"$KS_TMP/keystoned.conf"
kill -HUP "$daemon_pid"
check "bad reload refused, naming file and line" ks_wait_for 10 grep -q "reload refused.*keystoned.conf:9: LOG_REQ_RETENTION_SEC" "$KS_TMP/keystoned.log"
check "daemon still running after a bad reload" kill -0 "$daemon_pid"
cp "$KS_TMP/good.conf" "$KS_TMP/keystoned.conf"
sed -i 's/^KEYSTONED_SCHEDULE_CLEAR_LOG_RECORDS=.*/KEYSTONED_SCHEDULE_CLEAR_LOG_RECORDS=0 3 * * */' "$KS_TMP/keystoned.conf"
kill -HUP "$daemon_pid"
check "good reload applied" ks_wait_for 10 grep -q "configuration reloaded" "$KS_TMP/keystoned.log"
check "new schedule announced" log_has 'schedule changed from "\* \* \* \* \*" to "0 3 \* \* \*"'

# The task's advisory lock: while another session holds it, keystonectl does not run the task.
fnv() {
    local s=$1 h=2166136261 i c
    for ((i = 0; i < ${#s}; i++)); do printf -v c '%d' "'${s:i:1}"; h=$(( ((h ^ c) * 16777619) & 0xffffffff )); done
    echo $(( h & 0x7fffffff ))
}
key=$(fnv "$TASK")
psql -X -q -c "SELECT pg_advisory_lock(19283, $key); SELECT pg_sleep(6);" >/dev/null 2>&1 &
holder=$!
lock_held() { [ "$(ks_sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $key AND granted")" = 1 ]; }
ks_wait_for 5 lock_held
out=$("$KEYSTONECTL" run clear_log_records 2>&1); rc=$?
check_eq "keystonectl run while the task runs elsewhere exits 75" 75 "$rc"
check_match "and says so" "another run of this task is in progress" "$out"
wait $holder

# SIGTERM in the middle of a long run: prompt exit, the run recorded as FAILURE (interrupted).
stop_daemon
check_match "SIGTERM while idle: clean stop" "keystoned: stopped" "$(tail -n 3 "$KS_TMP/keystoned.log")"
ks_sql "INSERT INTO logging_requestlog (method, endpoint, response_code, \"timestamp\") SELECT 'GET', '/bulk', 200, now() - interval '60 days' FROM generate_series(1, 400000)" >/dev/null
ks_sql "UPDATE keystone_slurm.task_schedule SET last_slot = now() - interval '2 days' WHERE task_name = '$TASK'" >/dev/null
echo "KEYSTONED_CLEANUP_BATCH_SIZE=100" >>"$KS_TMP/keystoned.conf"
: >"$KS_TMP/keystoned.log"
start_daemon
running() { [ "$(ks_sql "SELECT count(*) FROM django_celery_results_taskresult WHERE status = 'STARTED' AND worker = 'test-worker'")" = 1 ]; }
check "long catch-up run started" ks_wait_for 20 running
sleep 1
t0=$(date +%s%N)
kill -TERM "$daemon_pid"; wait "$daemon_pid"; rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
daemon_pid=
check_eq "SIGTERM mid-run: exit status 0" 0 "$rc"
check_match "stopped within the 10 s stop timeout (${ms} ms)" "^[0-9]{1,4}$" "$ms"
row=$(ks_sql "SELECT status || '|' || (traceback LIKE '%interrupted: keystoned is stopping%')::text FROM django_celery_results_taskresult WHERE worker = 'test-worker' ORDER BY date_created DESC LIMIT 1")
check_eq "the interrupted run is recorded as FAILURE" "FAILURE|true" "$row"
left=$(ks_sql "SELECT count(*) FROM logging_requestlog WHERE endpoint = '/bulk'")
check_match "it stopped part way ($left of 400000 rows left)" "^[1-9][0-9]*$" "$left"
check_eq "nothing left in running_task" "0" "$(ks_sql "SELECT count(*) FROM keystone_slurm.running_task")"

ks_done
