#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Quick start: builds keystone-slurm, starts a throwaway PostgreSQL and OpenLDAP on loopback,
# creates the Keystone tables and ours, seeds a little demo data, lets keystoned run its tasks
# once, and shows what happened. Everything lives in a temporary folder that is removed at the end
# (KS_KEEP=1 keeps it and the server running). Run as root on Debian 12.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${KS_BUILD_DIR:-$src/_build}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Installing build dependencies from Debian's archive (once)"
"$src/scripts/install-deps.sh"

step "Building"
cd "$src"
[ -x "$src/configure" ] || autoreconf -fi >/dev/null 2>&1
mkdir -p "$build" && cd "$build"
[ -f Makefile ] || "$src/configure" -q
make -j2 -s >/dev/null
echo "built $build/daemon/keystoned and $build/daemon/keystonectl"

export KS_SRCDIR=$src KS_BUILDDIR=$build KEYSTONE_TEST_REQUIRE_SERVICES=1
# shellcheck source=../tests/lib/common.sh
. "$src/tests/lib/common.sh"
# shellcheck source=../tests/lib/pg.sh
. "$src/tests/lib/pg.sh"
# shellcheck source=../tests/lib/slapd.sh
. "$src/tests/lib/slapd.sh"
ks_test_name=demo
ks_scratch
if [ "${KS_KEEP:-0}" = 1 ]; then ks_cleanups=(); fi

step "Starting a private PostgreSQL on 127.0.0.1"
ks_pg_start
echo "PostgreSQL $(ks_sql 'SHOW server_version') on 127.0.0.1:$PGPORT, data in $KS_PGDIR"

step "Starting a private OpenLDAP (slapd) with its own CA, and adding five users"
ks_slapd_start
ks_ldap_user_ldif 5 1 researcher | ks_ldap_add
echo "slapd on $KS_LDAP_URI (StartTLS) and $KS_LDAPS_URI, base $KS_LDAP_PEOPLE"
KS_WORKER=$(hostname) ks_write_conf "LOG_REQ_RETENTION_SEC=604800" "LOG_AUD_RETENTION_SEC=604800" \
    "LOG_TSK_RETENTION_SEC=2592000" \
    "AUTH_LDAP_SERVER_URI=$KS_LDAP_URI" "AUTH_LDAP_USER_SEARCH=$KS_LDAP_PEOPLE" \
    "AUTH_LDAP_USER_FILTER=(objectClass=inetOrgPerson)" \
    "AUTH_LDAP_ATTR_MAP=first_name=givenName,last_name=sn,email=mail" \
    "KEYSTONED_LDAP_CA_FILE=$KS_LDAP_CA"
echo "configuration: $KEYSTONE_CONF"
sed 's/^/    /' "$KEYSTONE_CONF"

step "keystonectl db migrate --keystone-schema"
"$KEYSTONECTL" db migrate --keystone-schema | sed 's/^/    /'

step "Seeding demo data: users, a team, request/audit/task log records of various ages"
psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
INSERT INTO django_content_type (app_label, model) VALUES ('users', 'user');
INSERT INTO users_user (password, is_superuser, username, first_name, last_name, email, is_active, is_staff, is_ldap_user, date_joined)
VALUES ('', true, 'admin', 'Ada', 'Admin', 'admin@example.org', true, true, false, now() - interval '2 years'),
       ('pbkdf2_sha256$600000$demo$demo', false, 'alice', 'Alice', 'Smith', 'alice@example.org', true, false, false, now() - interval '1 year');
INSERT INTO users_team (name, slug, is_active) VALUES ('Smith Lab', 'smith-lab', true);
INSERT INTO logging_requestlog (method, endpoint, response_code, remote_address, "timestamp", user_id)
SELECT 'GET', '/allocations/requests/', 200, '10.0.0.' || (g % 250), now() - g * interval '1 hour', 2
FROM generate_series(1, 24 * 21) g;
INSERT INTO auditlog_logentry (content_type_id, object_pk, object_id, object_repr, action, changes_text, "timestamp", actor_id)
SELECT 1, '2', 2, 'alice', 1, '', now() - g * interval '1 day', 1 FROM generate_series(1, 30) g;
INSERT INTO django_celery_results_taskresult (task_id, task_name, status, content_type, content_encoding, date_created, date_done, worker)
SELECT 'celery-' || g, 'apps.users.tasks.ldap_update_users', 'SUCCESS', 'application/json', 'utf-8',
       now() - g * interval '6 hours', now() - g * interval '6 hours', 'celery@keystone' FROM generate_series(1, 200) g;
SQL
counts() {
    psql -X -q -P footer=off -c "SELECT 'logging_requestlog' AS log_table, count(*) AS rows, min(\"timestamp\")::date AS oldest FROM logging_requestlog
        UNION ALL SELECT 'auditlog_logentry', count(*), min(\"timestamp\")::date FROM auditlog_logentry
        UNION ALL SELECT 'django_celery_results_taskresult', count(*), min(date_done)::date FROM django_celery_results_taskresult" | sed 's/^/    /'
}
counts

step "keystonectl run clear_log_records --dry-run   (changes nothing)"
"$KEYSTONECTL" run clear_log_records --dry-run | sed 's/^/    /'

step "keystoned: the last slots of the cleanup and the LDAP sync were missed, so both run once at start-up"
ks_sql "INSERT INTO keystone_slurm.task_schedule (task_name, last_slot, updated_at) VALUES
        ('apps.logging.tasks.clear_log_records', date_trunc('hour', now()) - interval '2 hours', now()),
        ('apps.users.tasks.ldap_update_users', date_trunc('hour', now()) - interval '2 hours', now())" >/dev/null
"$KEYSTONED" >"$KS_TMP/keystoned.log" 2>&1 &
daemon=$!
done_run() { [ "$(ks_sql "SELECT count(*) FROM django_celery_results_taskresult WHERE periodic_task_name IS NOT NULL AND status <> 'STARTED'")" -ge 2 ]; }
ks_wait_for 30 done_run || { cat "$KS_TMP/keystoned.log"; echo "keystoned did not run the task" >&2; exit 1; }
kill -TERM "$daemon"; wait "$daemon" || true
sed 's/^/    /' "$KS_TMP/keystoned.log"

step "What is left of the logs"
counts

step "users_user after the LDAP sync (admin and alice are local accounts: left alone)"
psql -X -q -P footer=off -c "SELECT username, first_name, last_name, email, is_active, is_ldap_user FROM users_user ORDER BY id" | sed 's/^/    /'


step "keystonectl tasks --limit 4   (what Keystone's /logs/tasks/ shows)"
"$KEYSTONECTL" tasks --limit 4 | sed 's/^/    /'

step "The task record keystoned wrote, as Keystone's API reads it"
psql -X -q -x -c "SELECT task_id, task_name, periodic_task_name, status, worker, date_created, date_started, date_done, result, traceback
                  FROM django_celery_results_taskresult WHERE task_name = 'apps.logging.tasks.clear_log_records' ORDER BY date_created DESC LIMIT 1" | sed 's/^/    /'

if [ "${KS_KEEP:-0}" = 1 ]; then
    step "Kept: PostgreSQL still runs on 127.0.0.1:$PGPORT; configuration $KEYSTONE_CONF"
    echo "    stop it with: runuser -u postgres -- $KS_PGBIN/pg_ctl -D $KS_PGDIR/data stop"
else
    step "Done: the demo database is removed (KS_KEEP=1 keeps it)"
fi
