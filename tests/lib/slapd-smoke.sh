#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Checks tests/lib/slapd.sh itself; not part of the suite. Run from the source tree:
#   KS_SRCDIR=$PWD bash tests/lib/slapd-smoke.sh
# KS_SMOKE_BIG=N also loads N more users offline at the end and prints the time it took.
. "${KS_SRCDIR:-.}/tests/lib/common.sh"
. "$KS_SRCDIR/tests/lib/slapd.sh"
ks_scratch

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
# Number of entries in an ldapsearch -LLL output.
dns() { printf '%s\n' "$1" | grep -c '^dn:'; }
anon() { ldapsearch -x -LLL -o ldif-wrap=no "$@"; }
admin() { ldapsearch -x -LLL -o ldif-wrap=no -D "$KS_LDAP_ADMIN_DN" -w "$KS_LDAP_ADMIN_PW" "$@"; }
# Whether any process runs with slapd.d folder $1 on its command line.
running() { pgrep -f -- "$1/slapd/slapd.d" >/dev/null; }

# --- start ------------------------------------------------------------------------------------
t=$(now)
ks_slapd_start
echo "# ks_slapd_start: $(since "$t") s"
check_match "KS_LDAP_URI is ldap://127.0.0.1:PORT" '^ldap://127\.0\.0\.1:[0-9]+$' "$KS_LDAP_URI"
check_match "KS_LDAPS_URI is ldaps://127.0.0.1:PORT" '^ldaps://127\.0\.0\.1:[0-9]+$' "$KS_LDAPS_URI"
check_match "KS_LDAPI_URI is a url-encoded socket in the scratch folder" "^ldapi://%2F.*%2Fslapd%2Fldapi\$" "$KS_LDAPI_URI"
check_eq "KS_LDAP_BASE" dc=example,dc=org "$KS_LDAP_BASE"
check_eq "KS_LDAP_PEOPLE" ou=people,dc=example,dc=org "$KS_LDAP_PEOPLE"
check_eq "KS_LDAP_ADMIN_DN" cn=admin,dc=example,dc=org "$KS_LDAP_ADMIN_DN"
check "KS_LDAP_CA is a CA certificate" openssl x509 -in "$KS_LDAP_CA" -noout
check "KS_LDAP_WRONG_CA is another one" openssl x509 -in "$KS_LDAP_WRONG_CA" -noout
check_fails "and they differ" cmp -s "$KS_LDAP_CA" "$KS_LDAP_WRONG_CA"
check "the server certificate verifies against KS_LDAP_CA" \
    openssl verify -CAfile "$KS_LDAP_CA" "$KS_TMP/slapd/server.crt"
check_fails "but not against KS_LDAP_WRONG_CA" \
    openssl verify -CAfile "$KS_LDAP_WRONG_CA" "$KS_TMP/slapd/server.crt"
sans=$(openssl x509 -in "$KS_TMP/slapd/server.crt" -noout -ext subjectAltName 2>&1)
check_match "SAN has localhost, 127.0.0.1 and ::1" 'DNS:localhost.*IP Address:127\.0\.0\.1.*IP Address:0:0:0:0:0:0:0:1' "$sans"
check_match "SAN has \$(hostname)" "DNS:$(hostname)" "$sans"
check "slapd runs, found by its slapd.d" running "$KS_TMP"
check "anonymous root DSE search" anon -H "$KS_LDAP_URI" -s base -b "" namingContexts
out=$(anon -H "$KS_LDAP_URI" -b "$KS_LDAP_BASE" -s one dn 2>&1)
check_eq "base entries ou=people and ou=groups" \
    "dn: ou=groups,dc=example,dc=org|dn: ou=people,dc=example,dc=org" "$(printf '%s\n' "$out" | grep '^dn:' | sort | paste -sd'|')"
check_eq "no users yet" 0 "$(ks_ldap_count '(objectClass=posixAccount)')"
out=$(ldapwhoami -Q -Y EXTERNAL -H "$KS_LDAPI_URI" 2>&1)
check_eq "root over ldapi is the peercred identity" "dn:gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth" "$out"
out=$(ldapsearch -Q -LLL -Y EXTERNAL -H "$KS_LDAPI_URI" -b 'olcDatabase={-1}frontend,cn=config' -s base olcSizeLimit 2>&1)
check_match "root reads cn=config: the frontend size limit" "olcSizeLimit: size.soft=500 size.hard=500 size.prtotal=unlimited" "$out"
check "root may change cn=config" ks_ldap_modify <<EOF
dn: olcDatabase={1}mdb,cn=config
changetype: modify
replace: olcDbIndex
olcDbIndex: objectClass eq
olcDbIndex: uid eq
olcDbIndex: mail eq
olcDbIndex: uidNumber eq
EOF
check_fails "anonymous may not read cn=config" \
    sh -c "ldapsearch -x -LLL -H '$KS_LDAP_URI' -b cn=config -s base dn | grep -q ."
check_fails "a wrong admin password is refused" \
    ldapwhoami -x -H "$KS_LDAP_URI" -D "$KS_LDAP_ADMIN_DN" -w wrong

# --- LDIF ---------------------------------------------------------------------------------------
ldif=$(ks_ldap_user_ldif 2 41 alice)
check_eq "LDIF for 2 users has 2 entries" 2 "$(dns "$ldif")"
check_match "PREFIX, FIRST and 6 digits" "^dn: uid=alice000041,ou=people,dc=example,dc=org" "$ldif"
check_match "objectClasses" $'objectClass: inetOrgPerson\nobjectClass: posixAccount' "$ldif"
check_match "givenName, sn, mail" $'givenName: Given 000042\nsn: Family 000042\nmail: alice000042@example.org' "$ldif"
check_match "posix attributes" $'uidNumber: [0-9]+\ngidNumber: [0-9]+\nhomeDirectory: /home/alice000042\nloginShell: /bin/' "$ldif"
t=$(now); n=$(ks_ldap_user_ldif 100000 | grep -c '^dn:')
check_eq "LDIF for 100,000 users" 100000 "$n"
echo "# ks_ldap_user_ldif 100000 | grep: $(since "$t") s"

# --- loading users ------------------------------------------------------------------------------
pid1=$(ks_slapd_pid)
t=$(now)
check "10,000 users (offline slapadd)" ks_ldap_add_users 10000
echo "# ks_ldap_add_users 10000: $(since "$t") s"
pid2=$(ks_slapd_pid)
check_fails "the offline load restarted slapd ($pid1 -> $pid2)" test "$pid1" = "$pid2"
check_eq "10,000 users counted" 10000 "$(ks_ldap_count '(objectClass=posixAccount)')"
t=$(now)
check "100 more users (online ldapadd)" ks_ldap_add_users 100 10001
echo "# ks_ldap_add_users 100 10001: $(since "$t") s"
check_eq "the online load kept slapd running" "$pid2" "$(ks_slapd_pid)"
check_eq "10,100 users counted" 10100 "$(ks_ldap_count '(objectClass=posixAccount)')"
check_eq "first and last user" 2 "$(ks_ldap_count '(|(uid=user000001)(uid=user010100))')"
check_eq "ks_ldap_count of nothing prints 0" 0 "$(ks_ldap_count '(uid=nobody)')"
check_eq "ks_ldap_count does not count ou=people itself" 10100 "$(ks_ldap_count '(objectClass=*)')"
check_fails "adding an existing user fails" ks_ldap_add_users 1 5

# --- size limits ----------------------------------------------------------------------------------
out=$(anon -H "$KS_LDAP_URI" -b "$KS_LDAP_PEOPLE" '(objectClass=posixAccount)' dn 2>&1); rc=$?
check_eq "unpaged anonymous search: rc 4" 4 "$rc"
check_match "with Size limit exceeded" "Size limit exceeded" "$out"
check_eq "after 500 entries" 500 "$(dns "$out")"
t=$(now)
out=$(anon -H "$KS_LDAP_URI" -b "$KS_LDAP_PEOPLE" -E pr=1000/noprompt '(objectClass=posixAccount)' dn 2>&1); rc=$?
echo "# paged anonymous search of 10,100: $(since "$t") s"
check_eq "paged anonymous search: rc 0" 0 "$rc"
check_eq "paged anonymous search returns 10,100 entries" 10100 "$(dns "$out")"
out=$(admin -H "$KS_LDAP_URI" -b "$KS_LDAP_PEOPLE" '(objectClass=posixAccount)' dn 2>&1); rc=$?
check_eq "the admin (rootdn) has no limit: unpaged gets 10,100" "0 10100" "$rc $(dns "$out")"

# --- TLS -------------------------------------------------------------------------------------------
ldaps_port=${KS_LDAPS_URI##*:}; ldap_port=${KS_LDAP_URI##*:}
check "StartTLS (-ZZ) with KS_LDAP_CA" \
    env LDAPTLS_CACERT="$KS_LDAP_CA" ldapsearch -x -ZZ -H "$KS_LDAP_URI" -b "$KS_LDAP_BASE" -s base dn
check_fails "StartTLS (-ZZ) with KS_LDAP_WRONG_CA" \
    env LDAPTLS_CACERT="$KS_LDAP_WRONG_CA" ldapsearch -x -ZZ -H "$KS_LDAP_URI" -b "$KS_LDAP_BASE" -s base dn
check_match "and the error is a certificate error" "Connect error|certificate" "$(cat "$KS_TMP/check.out")"
check_fails "StartTLS (-ZZ) with the system CAs" \
    ldapsearch -x -ZZ -H "$KS_LDAP_URI" -b "$KS_LDAP_BASE" -s base dn
check "StartTLS to ldap://localhost (libldap checks \$(hostname))" \
    env LDAPTLS_CACERT="$KS_LDAP_CA" ldapsearch -x -ZZ -H "ldap://localhost:$ldap_port" -b "$KS_LDAP_BASE" -s base dn
check "ldaps with KS_LDAP_CA" \
    env LDAPTLS_CACERT="$KS_LDAP_CA" ldapsearch -x -H "$KS_LDAPS_URI" -b "$KS_LDAP_BASE" -s base dn
check "ldaps to localhost with KS_LDAP_CA" \
    env LDAPTLS_CACERT="$KS_LDAP_CA" ldapsearch -x -H "ldaps://localhost:$ldaps_port" -b "$KS_LDAP_BASE" -s base dn
check_fails "ldaps with KS_LDAP_WRONG_CA" \
    env LDAPTLS_CACERT="$KS_LDAP_WRONG_CA" ldapsearch -x -H "$KS_LDAPS_URI" -b "$KS_LDAP_BASE" -s base dn
check "admin bind over StartTLS" \
    env LDAPTLS_CACERT="$KS_LDAP_CA" ldapwhoami -x -ZZ -H "$KS_LDAP_URI" -D "$KS_LDAP_ADMIN_DN" -w "$KS_LDAP_ADMIN_PW"

# --- changes ---------------------------------------------------------------------------------------
u=uid=user000050,$KS_LDAP_PEOPLE
check "ks_ldap_modify changes a mail" ks_ldap_modify <<EOF
dn: $u
changetype: modify
replace: mail
mail: changed@example.org
EOF
out=$(anon -H "$KS_LDAP_URI" -b "$u" -s base mail 2>&1)
check_eq "the new mail is there" "$(printf 'dn: %s\nmail: changed@example.org' "$u")" "$out"
check_eq "and found by the mail index" 1 "$(ks_ldap_count '(mail=changed@example.org)')"
check_fails "ks_ldap_modify fails on a missing entry" ks_ldap_modify <<EOF
dn: uid=nobody,$KS_LDAP_PEOPLE
changetype: modify
replace: mail
mail: x@example.org
EOF
check "ks_ldap_modify sets a password" ks_ldap_modify <<EOF
dn: $u
changetype: modify
replace: userPassword
userPassword: secret50
EOF
check "the user binds with it" ldapwhoami -x -H "$KS_LDAP_URI" -D "$u" -w secret50
check_fails "not with another one" ldapwhoami -x -H "$KS_LDAP_URI" -D "$u" -w wrong
check_eq "anonymous does not see userPassword" "dn: $u" "$(anon -H "$KS_LDAP_URI" -b "$u" -s base userPassword 2>&1)"
check_match "the user sees it" "userPassword" "$(ldapsearch -x -LLL -H "$KS_LDAP_URI" -D "$u" -w secret50 -b "$u" -s base userPassword 2>&1)"
check "ks_ldap_add adds a group" ks_ldap_add <<EOF
dn: cn=staff,ou=groups,$KS_LDAP_BASE
objectClass: posixGroup
cn: staff
gidNumber: 10000
memberUid: user000050
EOF
check "ks_ldap_delete removes a user" ks_ldap_delete "uid=user010100,$KS_LDAP_PEOPLE"
check_eq "10,099 users left" 10099 "$(ks_ldap_count '(objectClass=posixAccount)')"
check_fails "ks_ldap_delete of a missing entry fails" ks_ldap_delete "uid=user010100,$KS_LDAP_PEOPLE"

# --- stop and restart ------------------------------------------------------------------------------
pid=$(ks_slapd_pid)
t=$(now)
check "ks_slapd_stop" ks_slapd_stop
echo "# ks_slapd_stop: $(since "$t") s"
check_fails "no slapd with our slapd.d is left" running "$KS_TMP"
check_fails "ks_slapd_pid says stopped" ks_slapd_pid
check_fails "slapd does not answer" anon -H "$KS_LDAP_URI" -s base -b "" -o nettimeout=2
check "ks_slapd_stop again is harmless" ks_slapd_stop
uri=$KS_LDAP_URI
t=$(now)
check "ks_slapd_restart" ks_slapd_restart
echo "# ks_slapd_restart: $(since "$t") s"
check_eq "same URI" "$uri" "$KS_LDAP_URI"
check_fails "new pid" test "$pid" = "$(ks_slapd_pid)"
check_eq "same data: 10,099 users" 10099 "$(ks_ldap_count '(objectClass=posixAccount)')"
check_eq "the changed mail kept" 1 "$(ks_ldap_count '(mail=changed@example.org)')"
check "the password kept" ldapwhoami -x -H "$KS_LDAP_URI" -D "$u" -w secret50
check "ks_slapd_restart when running is harmless" ks_slapd_restart
check "StartTLS after the restart" \
    env LDAPTLS_CACERT="$KS_LDAP_CA" ldapsearch -x -ZZ -H "$KS_LDAP_URI" -b "$KS_LDAP_BASE" -s base dn
check "ldaps after the restart" \
    env LDAPTLS_CACERT="$KS_LDAP_CA" ldapsearch -x -H "$KS_LDAPS_URI" -b "$KS_LDAP_BASE" -s base dn

# --- nothing left behind, however a test ends --------------------------------------------------------
# Each case is a test script of its own that starts slapd, writes its scratch folder to $path
# and then ends that way.
child() {
    local how=$1 path=$KS_TMP/child-$1.path
    rm -f "$path"
    bash -c '
        . "$KS_SRCDIR/tests/lib/common.sh"; . "$KS_SRCDIR/tests/lib/slapd.sh"; ks_scratch
        ks_slapd_start; ks_ldap_add_users 5 >/dev/null
        echo "$KS_TMP" >"$1"
        case $2 in
        normal) ;;
        exit) exit 3 ;;
        unset) echo "$no_such_variable" ;;
        missing) ks_missing_service "pretend" ;;
        term) sleep 30 & s=$!; ks_on_exit "kill $s"; wait $s ;;
        esac
        exit 0' "slapd-smoke-$how" "$path" "$how" >"$KS_TMP/child.out" 2>&1 &
    local cpid=$!
    ks_wait_for 30 test -s "$path"
    [ "$how" = term ] && { sleep 0.2; kill -TERM "$cpid"; }
    wait "$cpid"
    local rc=$? dir
    dir=$(cat "$path" 2>/dev/null)
    check_match "test ending with '$how' (rc $rc) had started slapd" "^/" "$dir"
    check_fails "test ending with '$how': no slapd left" running "$dir"
    check_fails "test ending with '$how': its scratch folder is gone" test -e "$dir"
}
for how in normal exit unset missing term; do child "$how"; done

# --- optional: a big offline load ------------------------------------------------------------------
if [ -n "${KS_SMOKE_BIG:-}" ]; then
    before=$(ks_ldap_count '(objectClass=posixAccount)')
    t=$(now)
    check "$KS_SMOKE_BIG more users (offline)" ks_ldap_add_users "$KS_SMOKE_BIG" 20001
    echo "# ks_ldap_add_users $KS_SMOKE_BIG: $(since "$t") s"
    check_eq "all counted" $((before + KS_SMOKE_BIG)) "$(ks_ldap_count '(objectClass=posixAccount)')"
    t=$(now)
    out=$(anon -H "$KS_LDAP_URI" -b "$KS_LDAP_PEOPLE" -E pr=1000/noprompt '(objectClass=posixAccount)' mail 2>&1)
    echo "# paged anonymous search of $((before + KS_SMOKE_BIG)): $(since "$t") s"
    check_eq "paged anonymous search returns all" $((before + KS_SMOKE_BIG)) "$(dns "$out")"
fi

ks_done
