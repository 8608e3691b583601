#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# keystonectl doctor against a real installation: PostgreSQL, slapd with TLS, an SMTP sink and a
# single-node Slurm cluster running jobcomp/keystone into the spool. Healthy: exit 0, every
# finding ok or info. Then one thing broken at a time: exit 1 (or 0 for a warning) and the
# finding that names the cause and what to change.
. "${KS_SRCDIR:-.}/tests/lib/common.sh"
. "$KS_SRCDIR/tests/lib/pg.sh"
. "$KS_SRCDIR/tests/lib/slapd.sh"
. "$KS_SRCDIR/tests/lib/smtp.sh"
. "$KS_SRCDIR/tests/lib/slurm.sh"
so=$KS_BUILDDIR/plugins/jobcomp/.libs/jobcomp_keystone.so
[ -f "$so" ] || ks_missing_service "the jobcomp/keystone plugin was not built: configure --with-slurm-source=DIR"
ks_scratch
ks_pg_start
ks_slapd_start
ks_smtp_start
plugins=$KS_TMP/plugins
spool=$KS_TMP/spool
mkdir -p "$plugins" "$spool"
cp "$so" "$plugins/"
chmod 0770 "$spool" # SlurmUser (root here) and its group only
ks_slurm_start jobcomp/keystone "$plugins" "$spool" ""

conf() {
    ks_write_conf "AUTH_LDAP_SERVER_URI=$KS_LDAP_URI" "AUTH_LDAP_BIND_DN=$KS_LDAP_ADMIN_DN" \
        "AUTH_LDAP_BIND_PASSWORD=$KS_LDAP_ADMIN_PW" "AUTH_LDAP_USER_SEARCH=$KS_LDAP_PEOPLE" \
        "KEYSTONED_LDAP_CA_FILE=$KS_LDAP_CA" "EMAIL_HOST=127.0.0.1" "EMAIL_PORT=$KS_SMTP_PORT" \
        "KEYSTONED_SLURM_CONF=$SLURM_CONF" "KEYSTONED_SLURMDB_TIMEOUT=10" \
        "KEYSTONED_SPOOL_DIR=$spool" "$@"
}
conf
"$KEYSTONECTL" db migrate --keystone-schema >"$KS_TMP/migrate.out" 2>&1 || { cat "$KS_TMP/migrate.out"; exit 99; }
ks_sql "INSERT INTO allocations_cluster (name, description, enabled, access_mode) VALUES ('$KS_SLURM_CLUSTER', 'test', true, 'OP')" >/dev/null || exit 99
# The plugin's worker writes its stats file every 5 s.
ks_wait_for 30 test -s "$spool/plugin-stats.json" || { echo "no plugin-stats.json from slurmctld"; exit 99; }

doc() { "$KEYSTONECTL" doctor --json "$@" 2>"$KS_TMP/doctor.err"; }
# The first finding whose "area check" matches $1, as "status|detail|remedy".
finding() {
    printf '%s' "$out" | /usr/bin/python3 -c '
import json, re, sys
for f in json.load(sys.stdin):
    if re.search(sys.argv[1], f["area"] + " " + f["check"]):
        print("%s|%s|%s" % (f["status"], f["detail"], f["remedy"] or ""))
        break' "$1"
}
# Every finding that is not ok or info, one a line.
not_ok() {
    printf '%s' "$out" | /usr/bin/python3 -c '
import json, sys
for f in json.load(sys.stdin):
    if f["status"] not in ("ok", "info"):
        print("%s %s %s: %s: %s" % (f["status"], f["area"], f["check"], f["detail"], f["remedy"]))'
}

# === healthy ===================================================================================
out=$(doc); rc=$?
check_eq "healthy: exit 0" 0 "$rc"
check_eq "healthy: every finding ok or info" "" "$(not_ok)"
check_match "the LDAP bind after StartTLS with the CA verified" "^ok\|bound as $KS_LDAP_ADMIN_DN after StartTLS, server certificate verified" "$(finding "^ldap LDAP server ")"
check_match "the server pages" "^ok\|" "$(finding "^ldap paged results")"
check_match "the search base exists" "^ok\|exists" "$(finding "^ldap AUTH_LDAP_USER_SEARCH")"
check_match "the SMTP session answered NOOP" "^ok\|smtp://127.0.0.1:$KS_SMTP_PORT: NOOP answered 250" "$(finding "^smtp ")"
check_eq "and no mail was sent" 0 "$(ks_smtp_count)"
check_match "slurmctld runs JobCompType=jobcomp/keystone" "^ok\|JobCompType=jobcomp/keystone" "$(finding "^plugin JobCompType")"
check_match "the plugin's version is this build's" "^ok\|plugin [0-9.]+, keystonectl [0-9.]+" "$(finding "^plugin jobcomp/keystone version")"
check_match "built for the running slurmctld's Slurm" "^ok\|built for Slurm ([0-9.]+), slurmctld is \1" "$(finding "^plugin jobcomp/keystone Slurm version")"
check_match "the spool folder's owner and mode" "^ok\|owner root, group root, mode 0770" "$(finding "^spool spool folder ")"
text=$("$KEYSTONECTL" doctor 2>&1); rc=$?
check_eq "text output: exit 0" 0 "$rc"
check_match "text output ends with the verdict" "everything checked is right$" "$text"
printf '%s\n' "$text" | sed 's/^/#   /'

# === configuration =============================================================================
ks_write_conf "DB_PORT=54x"
out=$("$KEYSTONECTL" doctor 2>&1); rc=$?
check_eq "bad configuration: exit 1" 1 "$rc"
check_match "the finding names file:line and the setting" "^PROBLEM +config +configuration .*keystoned.conf: .*keystoned.conf:[0-9]+: DB_PORT" "$out"
conf "AUTH_LDAP_REQUIRE_CERT=false"
out=$(doc); rc=$?
check_eq "AUTH_LDAP_REQUIRE_CERT=false: a warning, exit 0" "0 warning" "$rc $(finding "^config AUTH_LDAP_REQUIRE_CERT" | cut -d'|' -f1)"
check_match "saying what to change" "set AUTH_LDAP_REQUIRE_CERT=true .*KEYSTONED_LDAP_CA_FILE" "$(finding "^config AUTH_LDAP_REQUIRE_CERT")"
"$KEYSTONECTL" doctor --strict >/dev/null 2>&1; rc=$?
check_eq "--strict: the warning makes it exit 1" 1 "$rc"
conf
chmod 620 "$KS_TMP/keystoned.conf"
out=$(doc); rc=$?
check_match "a configuration file writable by its group: warning, chmod go-w" "^warning\|mode 0620.*\|chmod go-w" "$(finding "^config permissions")"
chmod 600 "$KS_TMP/keystoned.conf"

# === LDAP ======================================================================================
out=$(AUTH_LDAP_BIND_PASSWORD=wrong doc); rc=$?
check_eq "wrong LDAP password: exit 1" 1 "$rc"
check_match "names the failed bind and the settings to check" "^error\|.*bind as $KS_LDAP_ADMIN_DN failed: Invalid credentials.*\|check AUTH_LDAP_BIND_DN and AUTH_LDAP_BIND_PASSWORD" "$(finding "^ldap LDAP server ")"
out=$(KEYSTONED_LDAP_CA_FILE=$KS_LDAP_WRONG_CA doc); rc=$?
check_eq "wrong CA: exit 1" 1 "$rc"
check_match "the TLS handshake, naming KEYSTONED_LDAP_CA_FILE" "^error\|.*StartTLS failed.*\|the TLS handshake failed: KEYSTONED_LDAP_CA_FILE \($KS_LDAP_WRONG_CA\)" "$(finding "^ldap LDAP server ")"
out=$(AUTH_LDAP_USER_SEARCH="ou=nobody,$KS_LDAP_BASE" doc); rc=$?
check_match "a search base that does not exist: exit 1, named" "^1 error\|cannot be read: No such object" "$rc $(finding "^ldap AUTH_LDAP_USER_SEARCH")"
ks_slapd_stop
out=$(doc); rc=$?
check_eq "LDAP server stopped: exit 1" 1 "$rc"
check_match "nothing answers, start it or fix the URI" "^error\|nothing answers at 127.0.0.1:$KS_LDAP_PORT\|start the LDAP server or fix AUTH_LDAP_SERVER_URI" "$(finding "^ldap LDAP server ")"
ks_slapd_restart || exit 99
out=$(AUTH_LDAP_SERVER_URI="$KS_LDAP_URI ldap://127.0.0.1:1" doc); rc=$?
check_match "a fail-over server down while the first works: warning, exit 0" "^0 warning\|nothing answers at 127.0.0.1:1 \(the sync uses the other server\)" \
    "$rc $(finding "^ldap LDAP server ldap://127.0.0.1:1")"

# === SMTP ======================================================================================
ks_smtp_stop
out=$(doc); rc=$?
check_eq "SMTP server stopped: exit 1" 1 "$rc"
check_match "names the server and what to change" "^error\|SMTP smtp://127.0.0.1:$KS_SMTP_PORT: .*\|start the mail server or fix EMAIL_HOST and EMAIL_PORT" "$(finding "^smtp ")"
ks_smtp_restart
mkdir "$KS_TMP/mail"
out=$(EMAIL_DEBUG_DIR=$KS_TMP/mail doc); rc=$?
check_match "EMAIL_DEBUG_DIR: the folder is checked instead, and production is warned" "^0 ok\|files in $KS_TMP/mail \(writable\)\| warning" \
    "$rc $(finding "^smtp ") $(finding "^config EMAIL_DEBUG_DIR" | cut -d'|' -f1)"

# === PostgreSQL and the schemas ================================================================
ks_sql "INSERT INTO django_celery_beat_periodictask (name, task, args, kwargs, enabled, total_run_count, date_changed, description, one_off, headers)
        VALUES ('clear logs', 'apps.logging.tasks.clear_log_records', '[]', '{}', true, 0, now(), '', false, '{}')" >/dev/null
out=$(doc); rc=$?
check_match "a Celery beat task still enabled: warning naming it, exit 0" "^0 warning\|still enabled in Keystone's beat schedule: clear logs.*\|switch them off" \
    "$rc $(finding "^celery ")"
ks_sql "UPDATE django_celery_beat_periodictask SET enabled = false" >/dev/null
last=$(ks_sql "SELECT max(version) FROM keystone_slurm.schema_version")
ks_sql "DELETE FROM keystone_slurm.schema_version WHERE version = $last" >/dev/null
out=$(doc); rc=$?
check_match "our schema older than the build: exit 1, run db migrate" "^1 error\|database $((last - 1)), this build $last\|run keystonectl db migrate" \
    "$rc $(finding "^schema keystone_slurm schema version")"
ks_sql "INSERT INTO keystone_slurm.schema_version (version, name, applied_at, applied_by) VALUES ($last, 'restored', now(), 'test')" >/dev/null
ks_pg_stop
out=$(doc); rc=$?
check_eq "PostgreSQL stopped: exit 1" 1 "$rc"
check_match "the connection finding says what to fix" "^error\|.*\|start PostgreSQL or fix DB_HOST" "$(finding "^postgresql connection")"
check_match "and the other checks still run (LDAP, spool)" "^ok\|" "$(finding "^spool spool folder ")"
ks_pg_restart || exit 99

# === the spool folder ==========================================================================
chmod 0777 "$spool"
out=$(doc); rc=$?
check_match "spool writable by anyone: exit 1, chmod" "^1 error\|.*mode 0777: anyone may write.*\|chmod 2770 $spool" "$rc $(finding "^spool spool folder ")"
chmod 0770 "$spool"
chown nobody "$spool"
out=$(doc); rc=$?
check_match "spool not owned by SlurmUser: exit 1, chown" "^1 error\|owner nobody.*not owned by SlurmUser \(root\).*\|chown root $spool" "$rc $(finding "^spool spool folder ")"
chown root "$spool"
check_match "healthy: the quarantine is empty" "^ok\|empty" "$(finding "^spool quarantine ")"
mkdir -p "$spool/quarantine"
echo 'this is not JSON' >"$spool/quarantine/00000000000000000001-1-1.json"
echo "$spool/00000000000000000001-1-1.json: header (line 1): invalid JSON" >"$spool/quarantine/00000000000000000001-1-1.json.reason"
out=$(doc); rc=$?
check_match "a quarantined file: a warning (exit 0) naming the count and the .reason files" \
    "^0 warning\|1 file\(s\) that could not be ingested.*\|read NAME.reason" "$rc $(finding "^spool quarantine $spool/quarantine")"
doc --strict >/dev/null; rc=$?
check_eq "and --strict fails on it" 1 "$rc"
rm -rf "$spool/quarantine"

# === Slurm =====================================================================================
ks_slurmdbd_stop
out=$(doc); rc=$?
check_eq "slurmdbd stopped: exit 1" 1 "$rc"
check_match "the finding names slurmdbd and the cluster" "^error\|.*\|start slurmdbd" "$(finding "^slurm slurmdbd .*Cluster=$KS_SLURM_CLUSTER")"
ks_slurmdbd_start
ks_slurm_set_jobcomp jobcomp/none || exit 99
out=$(doc); rc=$?
check_eq "slurmctld with JobCompType=jobcomp/none: exit 1" 1 "$rc"
check_match "names it and what to set" "^error\|JobCompType=jobcomp/none\|set JobCompType=jobcomp/keystone and JobCompLoc=$spool" "$(finding "^plugin JobCompType")"

ks_done
