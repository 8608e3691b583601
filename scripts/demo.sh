#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Quick start: builds keystone-slurm (with the jobcomp/keystone plugin, against Debian's source of
# the installed Slurm), starts a throwaway PostgreSQL and OpenLDAP on loopback, creates the Keystone
# tables and ours, seeds a little demo data, lets keystoned run its tasks once, then starts a
# single-node Slurm cluster with the plugin loaded, runs a few jobs and shows them in PostgreSQL
# beside sacct's view, with `keystonectl jobs check` agreeing, and sets a team's GrpTRESMins from
# its allocations (`keystonectl limits plan`, `limits apply`, sacctmgr's view). Everything lives in a temporary folder that is removed at the end
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
slurm_src=$("$src/scripts/fetch-slurm-source.sh" "$build/slurm-src")
if [ ! -f Makefile ] || ! grep -q -- '--with-slurm-source' config.status; then
    "$src/configure" -q --with-plugin --with-slurm-source="$slurm_src"
fi
make -j2 -s >/dev/null
echo "built $build/daemon/keystoned, $build/daemon/keystonectl and $build/plugins/jobcomp/.libs/jobcomp_keystone.so"

export KS_SRCDIR=$src KS_BUILDDIR=$build KEYSTONE_TEST_REQUIRE_SERVICES=1
# shellcheck source=../tests/lib/common.sh
. "$src/tests/lib/common.sh"
# shellcheck source=../tests/lib/pg.sh
. "$src/tests/lib/pg.sh"
# shellcheck source=../tests/lib/slapd.sh
. "$src/tests/lib/slapd.sh"
# shellcheck source=../tests/lib/slurm.sh
. "$src/tests/lib/slurm.sh"
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

# shellcheck source=demo_notify.sh
. "$src/scripts/demo_notify.sh"
demo_notifications

step "Starting a private Slurm cluster (munge, MariaDB, slurmdbd, slurmctld with jobcomp/keystone, slurmd)"
mkdir -p "$KS_TMP/plugins" "$KS_TMP/spool"
cp "$build/plugins/jobcomp/.libs/jobcomp_keystone.so" "$KS_TMP/plugins/"
ks_slurm_start jobcomp/keystone "$KS_TMP/plugins" "$KS_TMP/spool" "flush_interval_ms=100"
ks_slurm_add_accounts smith-lab
ks_slurm_add_user alice smith-lab
echo "cluster $KS_SLURM_CLUSTER; slurm.conf $SLURM_CONF:"
grep -E '^JobComp' "$SLURM_CONF" | sed 's/^/    /'
grep 'jobcomp/keystone' "$KS_SLURMCTLD_LOG" | sed 's/^/    slurmctld.log: /'
ks_sql "INSERT INTO allocations_cluster (name, description, enabled, access_mode) VALUES ('$KS_SLURM_CLUSTER', 'demo cluster', true, 'OP')" >/dev/null

step "Running a few jobs: as root and as alice (account smith-lab), one failing, one array, one cancelled"
now=$(date +%s)
since=$(date -u -d "@$now" +%Y-%m-%dT%H:%M:%SZ)        # keystonectl: UTC
since_local=$(date -d "@$now" +%Y-%m-%dT%H:%M:%S)      # sacct -S: local time, no zone suffix
cd "$KS_SLURM_JOBDIR"
sbatch -Q -J hello --wrap 'echo hello; sleep 1'
runuser -u alice -- env SLURM_CONF="$SLURM_CONF" sbatch -Q -J analysis -A smith-lab --wrap 'sleep 2'
runuser -u alice -- env SLURM_CONF="$SLURM_CONF" sbatch -Q -J broken -A smith-lab --wrap 'exit 3'
sbatch -Q -J sweep --array=1-3 --wrap 'true'
held=$(sbatch --parsable -J later --begin=now+1hour --wrap 'true'); scancel "$held"
ks_slurm_wait_jobs_done 120
for id in $(sacct -n -X -P -a -S "$since_local" -o JobIDRaw); do ks_slurm_wait_in_sacct "$id" 60 >/dev/null; done
cd "$src"

step "keystoned ingests the plugin's spool into keystone_slurm.job"
ks_write_conf "KEYSTONED_SPOOL_DIR=$KS_TMP/spool" "KEYSTONED_INGEST_INTERVAL=1" "KEYSTONED_SLURM_CONF=$SLURM_CONF" \
    "KEYSTONED_SCHEDULE_LDAP_UPDATE_USERS=off" "KEYSTONED_SCHEDULE_CLEAR_LOG_RECORDS=off"
"$KEYSTONED" >"$KS_TMP/keystoned-jobs.log" 2>&1 &
daemon=$!
all_in() { [ "$(ks_sql "SELECT count(*) FROM keystone_slurm.job")" -ge 7 ]; }
ks_wait_for 60 all_in || { cat "$KS_TMP/keystoned-jobs.log"; echo "the jobs did not arrive" >&2; exit 1; }
kill -TERM "$daemon"; wait "$daemon" || true
grep -E 'ingest' "$KS_TMP/keystoned-jobs.log" | sed 's/^/    /' || true
psql -X -q -P footer=off -c "SELECT j.jobid, j.jobname, j.username, j.account, t.name AS team, j.state, j.exitcode,
                                    j.start, j.elapsed, j.alloctres, j.source
                             FROM keystone_slurm.job j LEFT JOIN users_team t ON t.id = j.team_id
                             ORDER BY j.job_id" | sed 's/^/    /'

step "The same jobs as sacct shows them"
SLURM_TIME_FORMAT=standard sacct -a -X -S "$since_local" -o JobID,JobName,User,Account,State,ExitCode,Start,Elapsed,AllocTRES%40 | sed 's/^/    /'

step "keystonectl jobs check --since $since   (our table against slurmdbd, field by field)"
"$KEYSTONECTL" jobs check --since "$since" | sed 's/^/    /'

step "keystonectl run slurm_update_job_stats   (the 5-minute reconciliation: nothing to fill in)"
"$KEYSTONECTL" run slurm_update_job_stats | sed 's/^/    /'

step "Limits: Smith Lab has an allocation that expired today (500 SU) and an active one (2,000 SU) on $KS_SLURM_CLUSTER"
psql -X -q -v ON_ERROR_STOP=1 -o /dev/null <<SQL
INSERT INTO allocations_allocationrequest (title, description, submitted, active, expire, status, submitter_id, team_id)
SELECT 'Spring allocation', 'demo', now() - interval '200 days', current_date - 180, current_date, 'AP', 1, id FROM users_team WHERE slug = 'smith-lab'
UNION ALL
SELECT 'Fall allocation', 'demo', now() - interval '20 days', current_date - 10, current_date + 355, 'AP', 1, id FROM users_team WHERE slug = 'smith-lab';
INSERT INTO allocations_resourceallocation (requested, awarded, final, cluster_id, request_id)
SELECT CASE r.title WHEN 'Spring allocation' THEN 500 ELSE 2500 END, CASE r.title WHEN 'Spring allocation' THEN 500 ELSE 2000 END,
       NULL, c.id, r.id
FROM allocations_allocationrequest r, allocations_cluster c
WHERE c.name = '$KS_SLURM_CLUSTER' AND r.title IN ('Spring allocation', 'Fall allocation');
SQL
# What last hour's run would have set: 500 + 2,000 SU = 150,000 billing minutes.
sacctmgr -i -Q modify account where name=smith-lab cluster="$KS_SLURM_CLUSTER" set GrpTRESMins=billing=150000 >/dev/null
echo "    before: $(sacctmgr -n -P show assoc where account=smith-lab cluster="$KS_SLURM_CLUSTER" format=account,user,grptresmins | awk -F'|' '$2 == ""')"

step "keystonectl limits plan --all   (per account: limit, usage and new limit in SUs; changes nothing)"
"$KEYSTONECTL" limits plan --all | sed 's/^/    /'

step "keystonectl limits apply   (= keystonectl run update_limits: settles Spring, sets the new limit)"
"$KEYSTONECTL" limits apply | sed 's/^/    /'

step "sacctmgr show assoc: GrpTRESMins as slurmdbd has it now"
sacctmgr show assoc where cluster="$KS_SLURM_CLUSTER" format=cluster,account,user,grptresmins%30 | sed 's/^/    /'
psql -X -q -P footer=off -c "SELECT r.title, a.awarded, a.final FROM allocations_resourceallocation a
                             JOIN allocations_allocationrequest r ON r.id = a.request_id
                             JOIN allocations_cluster c ON c.id = a.cluster_id WHERE c.name = '$KS_SLURM_CLUSTER' ORDER BY r.id" | sed 's/^/    /'

step "keystonectl limits history   (the audit trail)"
"$KEYSTONECTL" limits history | sed 's/^/    /'

if [ "${KS_KEEP:-0}" = 1 ]; then
    step "Kept: PostgreSQL still runs on 127.0.0.1:$PGPORT; configuration $KEYSTONE_CONF"
    echo "    stop it with: runuser -u postgres -- $KS_PGBIN/pg_ctl -D $KS_PGDIR/data stop"
else
    step "Done: the demo database is removed (KS_KEEP=1 keeps it)"
fi
