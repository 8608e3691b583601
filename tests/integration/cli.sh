#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# What an admin sees from the command line: help, usage errors, configuration errors with file
# and line, secrets masked, unsafe permissions refused, and `keystonectl tasks`.
. "${KS_SRCDIR:-.}/tests/lib/common.sh"
. "$KS_SRCDIR/tests/lib/pg.sh"
ks_scratch

# --- no database needed -------------------------------------------------------------------
out=$("$KEYSTONECTL" --help); rc=$?
check_eq "keystonectl --help exits 0" 0 "$rc"
check_match "help lists the commands" "run TASK.*" "$out"
check_match "help lists the tasks with Keystone's names" "apps.logging.tasks.clear_log_records" "$out"
for sub in run tasks db; do
    out=$("$KEYSTONECTL" "$sub" --help); rc=$?
    check_eq "keystonectl $sub --help exits 0" 0 "$rc"
    check_match "keystonectl $sub --help shows usage" "^Usage: keystonectl $sub" "$out"
done
out=$("$KEYSTONED" --help); check_match "keystoned --help" "check-config" "$out"
check_match "keystoned --version" "^keystoned [0-9]+\.[0-9]+\.[0-9]+" "$("$KEYSTONED" --version)"

"$KEYSTONECTL" frobnicate >/dev/null 2>&1; check_eq "unknown command exits 2" 2 $?
"$KEYSTONECTL" run >/dev/null 2>&1; check_eq "run without a task exits 2" 2 $?
out=$("$KEYSTONECTL" run no_such_task 2>&1); rc=$?
check_eq "unknown task exits 2" 2 "$rc"
check_match "and names it" "unknown task 'no_such_task'" "$out"
out=$("$KEYSTONECTL" run clear_log_records --cluster smp 2>&1); rc=$?
check_eq "--cluster on a global task exits 2" 2 "$rc"
"$KEYSTONECTL" tasks --limit 0 >/dev/null 2>&1; check_eq "--limit 0 exits 2" 2 $?
out=$("$KEYSTONECTL" tasks --since tomorrowish 2>&1); rc=$?
check_eq "bad --since exits 2" 2 "$rc"
check_match "and quotes the value" "tomorrowish" "$out"

# Configuration errors: file:line, exit 1, for both programs.
printf 'DB_NAME=keystone\n\nDB_PORT=54x\n' >"$KS_TMP/bad.conf"
out=$("$KEYSTONED" -f "$KS_TMP/bad.conf" --check-config 2>&1); rc=$?
check_eq "keystoned with a malformed value exits 1" 1 "$rc"
check_match "the error names file, line and setting" "bad.conf:3: DB_PORT" "$out"
out=$(KEYSTONE_CONF=$KS_TMP/bad.conf "$KEYSTONECTL" tasks 2>&1); rc=$?
check_eq "keystonectl via KEYSTONE_CONF with the same file exits 1" 1 "$rc"
check_match "same message" "bad.conf:3: DB_PORT" "$out"
printf 'DB_NAME=keystone\nDB_NAEM=typo\n' >"$KS_TMP/typo.conf"
out=$("$KEYSTONED" -f "$KS_TMP/typo.conf" --check-config 2>&1); rc=$?
check_eq "unknown setting exits 1" 1 "$rc"
check_match "and names it with its line" "typo.conf:2: .*DB_NAEM" "$out"
printf 'KEYSTONED_SCHEDULE_CLEAR_LOG_RECORDS=61 * * * *\n' >"$KS_TMP/cron.conf"
out=$("$KEYSTONED" -f "$KS_TMP/cron.conf" --check-config 2>&1); rc=$?
check_eq "bad schedule exits 1" 1 "$rc"
check_match "names the line and the field" "cron.conf:1: KEYSTONED_SCHEDULE_CLEAR_LOG_RECORDS: .*minute" "$out"
out=$("$KEYSTONED" -f "$KS_TMP/missing.conf" --check-config 2>&1); rc=$?
check_eq "missing file exits 1" 1 "$rc"
check_match "and says so" "missing.conf" "$out"

# Secrets: masked in --check-config; a readable file holding one is refused.
printf 'DB_PASSWORD="s3cr3t pass"\nEMAIL_HOST_PASSWORD=mailpw\nSECURE_SECRET_KEY=abc\n' >"$KS_TMP/secret.conf"
chmod 644 "$KS_TMP/secret.conf"
out=$("$KEYSTONED" -f "$KS_TMP/secret.conf" --check-config 2>&1); rc=$?
check_eq "world-readable file with a password refused" 1 "$rc"
check_match "with the mode and the fix" "0644.*chmod 600" "$out"
chmod 600 "$KS_TMP/secret.conf"
out=$("$KEYSTONED" -f "$KS_TMP/secret.conf" --check-config 2>&1); rc=$?
check_eq "mode 600 accepted" 0 "$rc"
check_match "password masked" "^DB_PASSWORD=\*\*\*\*\*\*\*\*" "$out"
check_eq "no secret printed" "" "$(printf '%s' "$out" | grep -E 's3cr3t|mailpw|=abc' || true)"
check_match "defaults shown with their origin" "LOG_TSK_RETENTION_SEC=2592000 +# default" "$out"
check_match "values from the file show file:line" "secret.conf:1" "$out"
out=$(DB_NAME=fromenv "$KEYSTONED" -f "$KS_TMP/secret.conf" --check-config 2>&1)
check_match "environment overrides the file" "^DB_NAME=fromenv +# environment" "$out"

# An existing Keystone .env (quotes, export, Keystone-only settings) is accepted as it is.
cat >"$KS_TMP/keystone.env" <<'ENV'
# Keystone API settings
export SECURE_SECRET_KEY='x5#kq!z'
SECURE_ALLOWED_HOSTS=keystone.example.org
DB_POSTGRES_ENABLE=true
DB_NAME="keystone"
DB_USER=keystone
DB_PASSWORD=pw#with#hashes
REDIS_HOST=127.0.0.1
EMAIL_HOST=smtp.example.org
AUTH_LDAP_SERVER_URI=ldaps://ldap.example.org
AUTH_LDAP_ATTR_MAP="first_name=givenName,last_name=sn,email=mail"
CONFIG_TIMEZONE=America/New_York
LOG_APP_LEVEL=INFO
ENV
chmod 600 "$KS_TMP/keystone.env"
out=$("$KEYSTONED" -f "$KS_TMP/keystone.env" --check-config 2>&1); rc=$?
check_eq "a Keystone .env is accepted" 0 "$rc"
check_match "its time zone is used" "^CONFIG_TIMEZONE=America/New_York" "$out"

# --- with a database ---------------------------------------------------------------------
ks_pg_start
ks_write_conf
"$KEYSTONECTL" db migrate --keystone-schema >/dev/null || { echo "migrate failed"; exit 99; }
out=$("$KEYSTONECTL" tasks); rc=$?
check_eq "tasks on an empty table exits 0" 0 "$rc"
check_match "and says there are none" "no task records" "$out"
"$KEYSTONECTL" run clear_log_records >/dev/null
ks_sql "INSERT INTO django_celery_results_taskresult (task_id, task_name, status, content_type, content_encoding, date_created, date_done, worker, traceback, task_args)
        VALUES ('celery-old', 'apps.users.tasks.ldap_update_users', 'FAILURE', 'application/json', 'utf-8', now() - interval '3 days', now() - interval '3 days', 'celery@old', 'Traceback: boom', '()')" >/dev/null
out=$("$KEYSTONECTL" tasks); rc=$?
check_eq "tasks exits 0" 0 "$rc"
check_match "lists our run" "SUCCESS .*apps.logging.tasks.clear_log_records .*test-worker" "$out"
check_match "lists Celery's rows too, with their traceback" "Traceback: boom" "$out"
out=$("$KEYSTONECTL" tasks --since 1d)
check_eq "--since 1d hides the 3-day-old row" "" "$(printf '%s' "$out" | grep celery-old || true)"
out=$("$KEYSTONECTL" tasks --task ldap_update_users --json)
check_eq "--task with a short name and --json" "celery-old" \
    "$(printf '%s' "$out" | /usr/bin/python3 -c 'import json,sys; print(",".join(r["task_id"] for r in json.load(sys.stdin)))')"
out=$("$KEYSTONECTL" run clear_log_records --json)
check_eq "run --json is one JSON object with status and result" "SUCCESS True" \
    "$(printf '%s' "$out" | /usr/bin/python3 -c 'import json,sys; o=json.load(sys.stdin); print(o["status"], "deleted" in o["result"])')"

ks_done
