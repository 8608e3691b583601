#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The LDAP user sync (apps.users.tasks.ldap_update_users) against a real slapd with its own CA and
# a real PostgreSQL: 10,000 users past a 500-entry size limit, create / update / deactivate /
# return / purge, local accounts, guards, TLS, fail-over, bad credentials, a server that dies in the
# middle of the search, hostile values.
. "${KS_SRCDIR:-.}/tests/lib/common.sh"
. "$KS_SRCDIR/tests/lib/pg.sh"
. "$KS_SRCDIR/tests/lib/slapd.sh"
ks_scratch
ks_pg_start
ks_slapd_start

# A service account to bind as: unlike the rootdn it is subject to the size limit, as in a site.
ks_ldap_add <<LDIF
dn: cn=reader,$KS_LDAP_BASE
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: reader
userPassword: $(slappasswd -s 'reader pw#1')
LDIF
conf() {
    ks_write_conf "AUTH_LDAP_SERVER_URI=$KS_LDAP_URI" "AUTH_LDAP_BIND_DN=cn=reader,$KS_LDAP_BASE" \
        "AUTH_LDAP_BIND_PASSWORD='reader pw#1'" "AUTH_LDAP_USER_SEARCH=$KS_LDAP_PEOPLE" \
        "AUTH_LDAP_USER_FILTER=(objectClass=inetOrgPerson)" \
        "AUTH_LDAP_ATTR_MAP=first_name=givenName,last_name=sn,email=mail,department=departmentNumber,role=jpegPhoto" \
        "KEYSTONED_LDAP_CA_FILE=$KS_LDAP_CA" "$@"
}
conf
"$KEYSTONECTL" db migrate --keystone-schema >/dev/null || { echo "migrate failed"; exit 99; }
sync() { "$KEYSTONECTL" run ldap_update_users --json "$@" 2>"$KS_TMP/sync.err"; }
jget() { /usr/bin/python3 -c 'import json,sys; o=json.load(sys.stdin); v=o
for k in sys.argv[1].split("."): v=v.get(k) if isinstance(v, dict) else None
print(v if not isinstance(v, list) else ",".join(v))' "$1"; }
users() { ks_sql "SELECT count(*) FROM users_user WHERE is_ldap_user"; }
active() { ks_sql "SELECT count(*) FROM users_user WHERE is_ldap_user AND is_active"; }

# LDAP off: nothing to do, and the record says so.
out=$(AUTH_LDAP_SERVER_URI= "$KEYSTONECTL" run ldap_update_users --json); rc=$?
check_eq "LDAP off: SUCCESS" "0 SUCCESS" "$rc $(printf '%s' "$out" | jget status)"
check_match "LDAP off: the result says why" "AUTH_LDAP_SERVER_URI is empty" "$(printf '%s' "$out" | jget result.skipped)"

# Accounts that exist before the first sync.
psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
INSERT INTO users_user (password, is_superuser, username, first_name, is_active, is_staff, is_ldap_user, date_joined)
VALUES ('pbkdf2_sha256$600000$x$y', true, 'admin', 'Local', true, true, false, now()),
       ('pbkdf2_sha256$600000$x$y', false, 'user000001', 'Local Alice', true, false, false, now()),
       ('!unusable', false, 'user000002', 'From Login', true, false, false, now());
SQL

# 10,000 users: more than the server's 500-entry limit for unpaged searches.
ks_ldap_add_users 10000
check_eq "an unpaged search as the reader stops at the size limit" "4" \
    "$(LDAPNOINIT=1 ldapsearch -x -H "$KS_LDAPI_URI" -D "cn=reader,$KS_LDAP_BASE" -w 'reader pw#1' -b "$KS_LDAP_PEOPLE" '(objectClass=inetOrgPerson)' dn >/dev/null 2>&1; echo $?)"
out=$(sync); rc=$?
check_eq "first sync: SUCCESS" "0 SUCCESS" "$rc $(printf '%s' "$out" | jget status)"
check_eq "all 10,000 entries read (paged)" "10000" "$(printf '%s' "$out" | jget result.entries)"
check_eq "9,998 users created (2 existed)" "9998" "$(printf '%s' "$out" | jget result.created)"
check_eq "LDAP users in the database" "9999" "$(users)"
check_eq "a new user's columns" "|Given 000500|Family 000500|user000500@example.org|true|false|false|true" \
    "$(ks_sql "SELECT password || '|' || first_name || '|' || last_name || '|' || email || '|' || is_active || '|' || is_staff || '|' || is_superuser || '|' || is_ldap_user FROM users_user WHERE username = 'user000500'")"
check_eq "the local admin is untouched" "Local|false|pbkdf2_sha256\$600000\$x\$y" \
    "$(ks_sql "SELECT first_name || '|' || is_ldap_user || '|' || password FROM users_user WHERE username = 'admin'")"
check_eq "a local account with a password and an LDAP twin is untouched" "Local Alice|false" \
    "$(ks_sql "SELECT first_name || '|' || is_ldap_user FROM users_user WHERE username = 'user000001'")"
check_match "and reported" "user000001" "$(printf '%s' "$out" | jget result.users.local_untouched)"
check_eq "an account from Keystone's LDAP login (no password) is taken over" "Given 000002|true" \
    "$(ks_sql "SELECT first_name || '|' || is_ldap_user FROM users_user WHERE username = 'user000002'")"
check_eq "both runs are recorded as Keystone's task (LDAP off, then this one)" "2" \
    "$(ks_sql "SELECT count(*) FROM django_celery_results_taskresult WHERE task_name = 'apps.users.tasks.ldap_update_users' AND status = 'SUCCESS'")"

out=$(sync)
check_eq "second sync changes nothing" "0 0 9999" \
    "$(printf '%s' "$out" | jget result.created) $(printf '%s' "$out" | jget result.updated) $(printf '%s' "$out" | jget result.unchanged)"

# Updates come from each user's own entry: a missing attribute never blanks the column.
ks_ldap_modify <<LDIF
dn: uid=user000010,$KS_LDAP_PEOPLE
changetype: modify
replace: mail
mail: new10@example.org

dn: uid=user000011,$KS_LDAP_PEOPLE
changetype: modify
delete: givenName
LDIF
out=$(sync)
check_eq "one user updated" "1" "$(printf '%s' "$out" | jget result.updated)"
check_eq "the new mail is in" "new10@example.org" "$(ks_sql "SELECT email FROM users_user WHERE username = 'user000010'")"
check_eq "a removed attribute leaves the column as it was" "Given 000011" "$(ks_sql "SELECT first_name FROM users_user WHERE username = 'user000011'")"

# Removed from the directory: deactivated, not deleted; back again: reactivated.
ks_ldap_delete uid=user000020,$KS_LDAP_PEOPLE uid=user000021,$KS_LDAP_PEOPLE uid=user000022,$KS_LDAP_PEOPLE
ks_sql "UPDATE users_user SET is_active = false WHERE username = 'user000030'" >/dev/null  # an admin's doing
out=$(sync)
check_eq "three users deactivated" "3" "$(printf '%s' "$out" | jget result.deactivated)"
check_eq "they are inactive, not deleted" "f,f,f" "$(ks_sql "SELECT string_agg(is_active::text, ',') FROM users_user WHERE username IN ('user000020', 'user000021', 'user000022')" | sed 's/false/f/g')"
check_eq "the sync remembers it deactivated them" "3" "$(ks_sql "SELECT count(*) FROM keystone_slurm.ldap_user_state")"
check_match "an admin's deactivation is kept" "user000030" "$(printf '%s' "$out" | jget result.users.kept_inactive)"
ks_ldap_user_ldif 1 20 | ks_ldap_add
out=$(sync)
check_eq "a returning user is reactivated" "1 user000020" "$(printf '%s' "$out" | jget result.reactivated) $(printf '%s' "$out" | jget result.users.reactivated)"
check_eq "the user deactivated by hand stays inactive" "f" "$(ks_sql "SELECT is_active FROM users_user WHERE username = 'user000030'")"

# Guards: an empty result and a mass removal change nothing.
before=$(active)
out=$(AUTH_LDAP_USER_FILTER='(uid=nobody*)' sync); rc=$?
check_eq "empty result: FAILURE, exit 1" "1 FAILURE" "$rc $(printf '%s' "$out" | jget status)"
check_match "and it says why" "returned no entries" "$(printf '%s' "$out" | jget error)"
check_eq "nothing deactivated" "$before" "$(active)"
for i in $(seq 100 250); do printf 'uid=user%06d,%s\n' "$i" "$KS_LDAP_PEOPLE"; done >"$KS_TMP/gone.txt"
ks_ldap_tool ldapdelete -Q -Y EXTERNAL -H "$KS_LDAPI_URI" -f "$KS_TMP/gone.txt"
out=$(sync); rc=$?
check_eq "151 removals > KEYSTONED_LDAP_MAX_REMOVE=100: FAILURE" "1 FAILURE" "$rc $(printf '%s' "$out" | jget status)"
check_match "the error lists the users and the way out" "would deactivate 151 .*--force.*user000100" "$(printf '%s' "$out" | jget error)"
check_eq "nothing deactivated" "$before" "$(active)"
out=$(KEYSTONED_LDAP_MAX_REMOVE=10000 KEYSTONED_LDAP_MAX_REMOVE_PERCENT=1 sync); rc=$?
check_eq "the share limit trips too (151 > 1%)" "1" "$rc"
out=$(sync --force); rc=$?
check_eq "--force applies it" "0 151" "$rc $(printf '%s' "$out" | jget result.deactivated)"
check_eq "151 fewer active users" "$((before - 151))" "$(active)"

# Dry run: lists, changes nothing, records nothing.
ks_ldap_user_ldif 2 20001 | ks_ldap_add
records=$(ks_sql "SELECT count(*) FROM django_celery_results_taskresult")
out=$(sync --dry-run)
check_eq "dry run lists who would be created" "user020001,user020002" "$(printf '%s' "$out" | jget result.users.would_create)"
check_eq "dry run creates nobody" "0" "$(ks_sql "SELECT count(*) FROM users_user WHERE username = 'user020001'")"
check_eq "dry run writes no task record" "$records" "$(ks_sql "SELECT count(*) FROM django_celery_results_taskresult")"

# Hostile values: quotes and SQL, newlines, 10 kB strings, bytes that are not UTF-8, duplicates,
# an entry without uid.
long=$(head -c 10000 /dev/zero | tr '\0' 'x')
bad=$(printf 'bad\xff\xfe' | base64 -w0)
ks_ldap_add <<LDIF
dn: uid=hostile,$KS_LDAP_PEOPLE
objectClass: inetOrgPerson
uid: hostile
cn: hostile
sn: O'Brien'); DROP TABLE users_user; --
givenName: $long
jpegPhoto:: $bad
mail:: $(printf 'multi\nline@example.org' | base64 -w0)

dn: ou=sub,$KS_LDAP_PEOPLE
objectClass: organizationalUnit
ou: sub

dn: uid=user000040,ou=sub,$KS_LDAP_PEOPLE
objectClass: inetOrgPerson
uid: user000040
cn: twin
sn: twin

dn: cn=no uid,$KS_LDAP_PEOPLE
objectClass: inetOrgPerson
cn: no uid
sn: none
LDIF
out=$(sync); rc=$?
check_eq "hostile values: still SUCCESS" "0 SUCCESS" "$rc $(printf '%s' "$out" | jget status)"
check_eq "the quote and the SQL are stored as text" "O'Brien'); DROP TABLE users_user; --" "$(ks_sql "SELECT last_name FROM users_user WHERE username = 'hostile'")"
check_eq "a 10 kB value is cut to the column's 150 characters" "150" "$(ks_sql "SELECT length(first_name) FROM users_user WHERE username = 'hostile'")"
check_eq "a value that is not UTF-8 is not stored" "" "$(ks_sql "SELECT role FROM users_user WHERE username = 'hostile'")"
check_eq "a newline survives as data" "2" "$(ks_sql "SELECT array_length(string_to_array(email, E'\n'), 1) FROM users_user WHERE username = 'hostile'")"
check_eq "a duplicated uid: that user is neither changed nor removed" "Given 000040|true" \
    "$(ks_sql "SELECT first_name || '|' || is_active FROM users_user WHERE username = 'user000040'")"
check_match "warnings name the DNs" "cn=no uid.*no uid attribute" "$(cat "$KS_TMP/sync.err")"
check_match "and the duplicate" "ou=sub.*occurs more than once" "$(cat "$KS_TMP/sync.err")"

# TLS and connections.
out=$(KEYSTONED_LDAP_CA_FILE=$KS_LDAP_WRONG_CA sync); rc=$?
check_eq "a server certificate from another CA is refused" "1" "$rc"
check_match "with libldap's reason" "StartTLS failed.*(Connect error|certificate)" "$(printf '%s' "$out" | jget error)"
out=$(KEYSTONED_LDAP_CA_FILE=$KS_LDAP_WRONG_CA AUTH_LDAP_REQUIRE_CERT=false sync); rc=$?
check_eq "AUTH_LDAP_REQUIRE_CERT=false accepts the unverified certificate (TLS still on)" "0" "$rc"
out=$(AUTH_LDAP_SERVER_URI=$KS_LDAPS_URI sync); rc=$?
check_eq "ldaps:// works" "0 $KS_LDAPS_URI" "$rc $(printf '%s' "$out" | jget result.server)"
out=$(AUTH_LDAP_START_TLS=false sync); rc=$?
check_eq "no StartTLS over ldap:// with a password: refused" "1" "$rc"
check_match "before sending it" "refusing to send AUTH_LDAP_BIND_PASSWORD unencrypted" "$(printf '%s' "$out" | jget error)"
dead=$(ks_free_port)
out=$(AUTH_LDAP_SERVER_URI="ldap://127.0.0.1:$dead $KS_LDAP_URI" sync); rc=$?
check_eq "a dead first server fails over to the next" "0 $KS_LDAP_URI" "$rc $(printf '%s' "$out" | jget result.server)"
out=$(AUTH_LDAP_BIND_PASSWORD=wrong sync); rc=$?
check_eq "a wrong password: FAILURE" "1" "$rc"
check_match "saying so" "bind as cn=reader.*Invalid credentials" "$(printf '%s' "$out" | jget error)"

# The server dies in the middle of a paged search: nothing is changed.
before=$(ks_sql "SELECT md5(string_agg(username || is_active::text || coalesce(email, ''), ',' ORDER BY username)) FROM users_user")
KEYSTONED_LDAP_PAGE_SIZE=1 "$KEYSTONECTL" run ldap_update_users --json >"$KS_TMP/mid.json" 2>/dev/null &
runner=$!
started() { [ "$(ks_sql "SELECT count(*) FROM django_celery_results_taskresult WHERE status = 'STARTED'")" = 1 ]; }
ks_wait_for 10 started
sleep 0.3
ks_slapd_stop
wait $runner; rc=$?
check_eq "server gone mid-search: FAILURE" "1 FAILURE" "$rc $(jget status <"$KS_TMP/mid.json")"
check_eq "no user changed" "$before" "$(ks_sql "SELECT md5(string_agg(username || is_active::text || coalesce(email, ''), ',' ORDER BY username)) FROM users_user")"
ks_slapd_restart

# Purge mode: deleted with what Keystone cascades; a user who submitted a request is kept, inactive.
psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
INSERT INTO users_team (name, slug, is_active) VALUES ('Lab', 'lab', true);
INSERT INTO users_membership (role, user_id, team_id)
SELECT 'MB', id, (SELECT id FROM users_team) FROM users_user WHERE username IN ('user000050', 'user000051');
INSERT INTO notifications_preference (request_expiry_thresholds, notify_on_expiration, user_id)
SELECT '[30, 14]', true, id FROM users_user WHERE username = 'user000050';
INSERT INTO notifications_notification (time, read, subject, message_text, message_html, metadata, notification_type, user_id)
SELECT now(), false, 's', 't', 'h', '{"request_id": 1}', 'RE', id FROM users_user WHERE username = 'user000050';
INSERT INTO allocations_allocationrequest (title, description, submitted, status, submitter_id, team_id)
SELECT 'Big request', 'd', now(), 'AP', id, (SELECT id FROM users_team) FROM users_user WHERE username = 'user000051';
SQL
ks_ldap_delete uid=user000050,$KS_LDAP_PEOPLE uid=user000051,$KS_LDAP_PEOPLE
out=$(AUTH_LDAP_PURGE_REMOVED=true sync --force); rc=$?
check_eq "purge run: SUCCESS" "0 SUCCESS" "$rc $(printf '%s' "$out" | jget status)"
check_eq "the removed user is deleted, with memberships, preferences, notifications" "0 0 0 0" \
    "$(ks_sql "SELECT (SELECT count(*) FROM users_user WHERE username = 'user000050') || ' ' || (SELECT count(*) FROM users_membership m JOIN users_user u ON u.id = m.user_id WHERE u.username = 'user000050') || ' ' || (SELECT count(*) FROM notifications_preference) || ' ' || (SELECT count(*) FROM notifications_notification)")"
check_eq "the submitter of a request is deactivated instead" "f" "$(ks_sql "SELECT is_active FROM users_user WHERE username = 'user000051'")"
check_match "and the result says why" "user000051 \(submitted 1 allocation request" "$(printf '%s' "$out" | jget result.users.deactivated_not_deleted)"

ks_done
