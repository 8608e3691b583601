#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The log cleanup (apps.logging.tasks.clear_log_records) on seeded rows in a real PostgreSQL:
# what goes, what stays, retention 0, batches, dry run, the task record, a partial failure.
. "${KS_SRCDIR:-.}/tests/lib/common.sh"
. "$KS_SRCDIR/tests/lib/pg.sh"
ks_scratch
ks_pg_start
ks_write_conf "LOG_REQ_RETENTION_SEC=86400" "LOG_AUD_RETENTION_SEC=3600" "LOG_TSK_RETENTION_SEC=600"
"$KEYSTONECTL" db migrate --keystone-schema >/dev/null || { echo "migrate failed"; exit 99; }

seed() {
    psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
TRUNCATE logging_requestlog, auditlog_logentry, django_celery_results_taskresult,
         notifications_notification, users_user, django_content_type CASCADE;
INSERT INTO django_content_type (id, app_label, model) VALUES (1, 'users', 'user');
INSERT INTO users_user (id, password, is_superuser, username, is_active, is_staff, is_ldap_user, date_joined)
VALUES (1, '', false, 'alice', true, false, false, now() - interval '400 days');
-- requests: retention 1 day. 3 old (one a year old), 2 recent, 1 just inside the window.
INSERT INTO logging_requestlog (method, endpoint, response_code, remote_address, "timestamp", cid, user_id)
SELECT 'GET', '/old/' || g, 200, '127.0.0.1', now() - interval '2 days' - g * interval '100 days', NULL, 1
FROM generate_series(0, 2) g;
INSERT INTO logging_requestlog (method, endpoint, response_code, remote_address, "timestamp", cid, user_id)
VALUES ('GET', '/new/1', 200, NULL, now(), NULL, NULL),
       ('POST', '/new/2', 201, NULL, now() - interval '1 hour', NULL, NULL),
       ('GET', '/edge-inside', 200, NULL, now() - interval '1 day' + interval '5 minutes', NULL, NULL);
-- audit: retention 1 hour. 2 old, 1 recent.
INSERT INTO auditlog_logentry (content_type_id, object_pk, object_id, object_repr, serialized_data,
    action, changes_text, changes, actor_id, cid, remote_addr, remote_port, "timestamp", additional_data, actor_email)
SELECT 1, '1', 1, 'alice', NULL, 1, '', NULL, NULL, NULL, NULL, NULL, now() - g * interval '2 hours', NULL, NULL
FROM generate_series(0, 2) g;
-- task results: retention 10 min. Old SUCCESS/FAILURE/RETRY go; an old STARTED stays; a new one stays.
INSERT INTO django_celery_results_taskresult (task_id, task_name, status, content_type, content_encoding,
    date_created, date_done, worker)
VALUES ('old-success', 'apps.users.tasks.ldap_update_users', 'SUCCESS', 'application/json', 'utf-8', now() - interval '2 days', now() - interval '2 days', 'celery@x'),
       ('old-failure', 'apps.users.tasks.ldap_update_users', 'FAILURE', 'application/json', 'utf-8', now() - interval '1 day', now() - interval '1 day', 'celery@x'),
       ('old-retry', 'apps.users.tasks.ldap_update_users', 'RETRY', 'application/json', 'utf-8', now() - interval '20 minutes', now() - interval '20 minutes', 'celery@x'),
       ('old-started', 'apps.allocations.tasks.limits.update_limits', 'STARTED', 'application/json', 'utf-8', now() - interval '3 days', now() - interval '3 days', 'celery@x'),
       ('new-success', 'apps.users.tasks.ldap_update_users', 'SUCCESS', 'application/json', 'utf-8', now() - interval '1 minute', now() - interval '1 minute', 'celery@x');
-- a table the cleanup must never touch
INSERT INTO notifications_notification (time, read, subject, message_text, message_html, metadata, notification_type, user_id)
VALUES (now() - interval '900 days', false, 's', 't', 'h', '{"request_id": 1}', 'RE', 1);
SQL
}

seed
out=$("$KEYSTONECTL" run clear_log_records --dry-run 2>&1); rc=$?
check_eq "dry run exits 0" 0 "$rc"
check_match "dry run counts what it would delete" '"logging_requestlog": 3' "$out"
check_eq "dry run deletes nothing" "6 3 5" \
    "$(ks_sql "SELECT (SELECT count(*) FROM logging_requestlog) || ' ' || (SELECT count(*) FROM auditlog_logentry) || ' ' || (SELECT count(*) FROM django_celery_results_taskresult)")"

out=$("$KEYSTONECTL" run clear_log_records 2>&1); rc=$?
check_eq "run exits 0" 0 "$rc"
check_match "prints SUCCESS and the task id" "^clear_log_records: SUCCESS in [0-9.]+ s \(TaskId=[0-9a-f-]{36}\)" "$out"
check_eq "old request rows gone, recent and edge rows kept" "/edge-inside,/new/1,/new/2" \
    "$(ks_sql "SELECT string_agg(endpoint, ',' ORDER BY endpoint) FROM logging_requestlog")"
check_eq "audit rows older than 1 h gone" "1" "$(ks_sql "SELECT count(*) FROM auditlog_logentry")"
check_eq "finished task rows older than 10 min gone, STARTED kept" "new-success,old-started" \
    "$(ks_sql "SELECT string_agg(task_id, ',' ORDER BY task_id) FROM django_celery_results_taskresult WHERE worker = 'celery@x'")"
check_eq "other tables untouched" "1 1 1" \
    "$(ks_sql "SELECT (SELECT count(*) FROM notifications_notification) || ' ' || (SELECT count(*) FROM users_user) || ' ' || (SELECT count(*) FROM django_content_type)")"

# The task record, as Keystone's /logs/tasks/ reads it.
row=$(ks_sql "SELECT task_name, status, worker, task_args, task_kwargs, content_type, content_encoding,
                     periodic_task_name IS NULL, traceback IS NULL, date_started IS NOT NULL,
                     date_done >= date_created, meta
              FROM django_celery_results_taskresult WHERE worker = 'test-worker'")
check_eq "task row columns" \
    'apps.logging.tasks.clear_log_records|SUCCESS|test-worker|()|{}|application/json|utf-8|t|t|t|t|{"children": []}' "$row"
check_eq "task_id is a UUID" "1" \
    "$(ks_sql "SELECT count(*) FROM django_celery_results_taskresult WHERE worker = 'test-worker' AND task_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'")"
check_eq "result counts the rows per table" "3 2 3" \
    "$(ks_sql "SELECT (result::jsonb->'deleted'->>'logging_requestlog') || ' ' || (result::jsonb->'deleted'->>'auditlog_logentry') || ' ' || (result::jsonb->'deleted'->>'django_celery_results_taskresult') FROM django_celery_results_taskresult WHERE worker = 'test-worker'")"
check_eq "no bookkeeping row left behind" "0" "$(ks_sql "SELECT count(*) FROM keystone_slurm.running_task")"

# Retention 0 turns a type off; the environment overrides the file (Keystone's rule).
seed
out=$(LOG_AUD_RETENTION_SEC=0 "$KEYSTONECTL" run clear_log_records --json 2>&1); rc=$?
check_eq "run with audit retention 0 exits 0" 0 "$rc"
check_eq "audit rows all kept" "3" "$(ks_sql "SELECT count(*) FROM auditlog_logentry")"
check_eq "request rows still pruned" "3" "$(ks_sql "SELECT count(*) FROM logging_requestlog")"
check_match "result lists the disabled type" '"disabled":\["auditlog_logentry"\]' "$out"

# Many rows in small batches: everything goes, in several short transactions.
seed
ks_sql "INSERT INTO logging_requestlog (method, endpoint, response_code, \"timestamp\") SELECT 'GET', '/bulk', 200, now() - interval '5 days' FROM generate_series(1, 1000)" >/dev/null
out=$(KEYSTONED_CLEANUP_BATCH_SIZE=64 "$KEYSTONECTL" run clear_log_records --json 2>&1); rc=$?
check_eq "batched run exits 0" 0 "$rc"
check_eq "all 1003 old request rows deleted" "3" "$(ks_sql "SELECT count(*) FROM logging_requestlog")"
batches=$(printf '%s' "$out" | sed -n 's/.*"batches":\([0-9]*\).*/\1/p')
check_match "deleted in at least 16 batches of 64 (got $batches)" "^(1[6-9]|[2-9][0-9])$" "$batches"

# A row locked by another session is skipped, not waited for, and goes on the next run.
seed
psql -X -q -c "BEGIN; SELECT 1 FROM logging_requestlog WHERE endpoint = '/old/0' FOR UPDATE; SELECT pg_sleep(8); COMMIT;" >/dev/null 2>&1 &
locker=$!
row_locked() { [ "$(ks_sql "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(8)%' AND state = 'active' AND pid <> pg_backend_pid()")" -ge 1 ]; }
ks_wait_for 5 row_locked
start=$(date +%s)
"$KEYSTONECTL" run clear_log_records >/dev/null 2>&1; rc=$?
took=$(( $(date +%s) - start ))
check_eq "run beside a locked row exits 0" 0 "$rc"
check_eq "the locked old row is kept for now, the others go" "/edge-inside,/new/1,/new/2,/old/0" \
    "$(ks_sql "SELECT string_agg(endpoint, ',' ORDER BY endpoint) FROM logging_requestlog")"
wait $locker
check_match "it did not wait for the lock holder (${took}s)" "^[0-5]$" "$took"

# A partial failure: deleting from one table fails (a site's trigger protects it). The other
# types are still pruned, the run is a FAILURE and the traceback names the table and the cause.
seed
psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE FUNCTION protect_audit() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN RAISE EXCEPTION 'audit records are protected by site policy'; END$$;
CREATE TRIGGER protect_audit BEFORE DELETE ON auditlog_logentry FOR EACH ROW EXECUTE FUNCTION protect_audit();
SQL
out=$("$KEYSTONECTL" run clear_log_records 2>&1); rc=$?
check_eq "partial failure exits 1" 1 "$rc"
check_match "output names the failing table and the cause" "pruning auditlog_logentry failed after 0 rows: .*protected by site policy" "$out"
check_eq "requests were still pruned" "3" "$(ks_sql "SELECT count(*) FROM logging_requestlog")"
check_eq "task rows were still pruned" "2" "$(ks_sql "SELECT count(*) FROM django_celery_results_taskresult WHERE worker = 'celery@x'")"
row=$(ks_sql "SELECT status || '|' || (traceback LIKE '%auditlog_logentry%')::text || '|' || (result::jsonb->>'errors') FROM django_celery_results_taskresult WHERE worker = 'test-worker' ORDER BY date_created DESC LIMIT 1")
check_eq "recorded as FAILURE with the table in the traceback and the error count" "FAILURE|true|1" "$row"
check_eq "the audit rows are all still there" "3" "$(ks_sql "SELECT count(*) FROM auditlog_logentry")"
ks_sql "DROP TRIGGER protect_audit ON auditlog_logentry" >/dev/null

# Our own earlier task rows age out like Celery's.
ks_sql "UPDATE django_celery_results_taskresult SET date_done = now() - interval '1 hour' WHERE worker = 'test-worker'" >/dev/null
"$KEYSTONECTL" run clear_log_records >/dev/null 2>&1
check_eq "only the newest own task row is left" "1" "$(ks_sql "SELECT count(*) FROM django_celery_results_taskresult WHERE worker = 'test-worker'")"

ks_done
