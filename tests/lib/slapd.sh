# SPDX-License-Identifier: GPL-2.0-or-later
# A private OpenLDAP slapd for one test: cn=config built offline in the test's scratch folder,
# one mdb database dc=example,dc=org, plain LDAP + StartTLS, LDAPS and ldapi on 127.0.0.1 at free
# ports, certificates from a throwaway CA; stopped (only this instance) when the test exits.
# Needs tests/lib/common.sh and ks_scratch first.
#
# Exports after ks_slapd_start:
#   KS_LDAP_URI      ldap://127.0.0.1:PORT   (StartTLS offered)
#   KS_LDAPS_URI     ldaps://127.0.0.1:PORT2
#   KS_LDAPI_URI     ldapi://<socket in $KS_TMP/slapd>  (root gets manage via SASL EXTERNAL)
#   KS_LDAP_BASE     dc=example,dc=org
#   KS_LDAP_PEOPLE   ou=people,dc=example,dc=org   (also ou=groups exists)
#   KS_LDAP_ADMIN_DN / KS_LDAP_ADMIN_PW   the rootdn and its password
#   KS_LDAP_CA       the CA that signed the server certificate (SAN localhost, $(hostname),
#                    127.0.0.1, ::1)
#   KS_LDAP_WRONG_CA an unrelated CA, for "wrong CA is refused" tests
# Limits as in Active Directory: an unpaged search by anyone but the admin stops after 500
# entries with "Size limit exceeded"; a paged one returns everything.
# KS_SLAPD_DEBUG=LEVEL (e.g. stats, or -1) runs slapd in the foreground with its log in
# $KS_TMP/slapd/slapd.log (otherwise slapd logs to syslog, which usually does not exist).
# shellcheck shell=bash

KS_LDAP_BASE=dc=example,dc=org
KS_LDAP_PEOPLE=ou=people,$KS_LDAP_BASE
KS_LDAP_ADMIN_DN=cn=admin,$KS_LDAP_BASE
KS_LDAP_ADMIN_PW=adminpw
export KS_LDAP_BASE KS_LDAP_PEOPLE KS_LDAP_ADMIN_DN KS_LDAP_ADMIN_PW

# libldap's own settings (LDAPURI, LDAPBASE, LDAPBINDDN, LDAPTLS_CACERT, LDAPRC, ...) must come
# from each test, not from the developer's shell. (LDAP_* names are not libldap's: kept.)
for ks_v in $(compgen -e); do
    case $ks_v in LDAP[A-Z]*) unset "$ks_v" ;; esac
done
unset ks_v

# The client tools as the helpers below use them: no ldap.conf, ~/.ldaprc or LDAP* variables.
ks_ldap_tool() { LDAPNOINIT=1 "$@"; }

ks_urlencode() {
    local s=$1 out='' c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
        [A-Za-z0-9._~-]) out+=$c ;;
        *) out+=$(printf '%%%02X' "'$c") ;;
        esac
    done
    printf '%s' "$out"
}

# The pid of our slapd if it is running (a zombie counts as gone), else fails.
ks_slapd_pid() {
    local pid
    [ -n "${KS_SLAPD_DIR:-}" ] || return 1
    pid=$(cat "$KS_SLAPD_DIR/slapd.pid" 2>/dev/null) || pid=${KS_SLAPD_LASTPID:-}
    case $pid in '' | *[!0-9]*) return 1 ;; esac
    ks_slapd_alive "$pid" || return 1
    echo "$pid"
}

# Whether PID is a live (not zombie) slapd serving our slapd.d.
ks_slapd_alive() {
    local pid=$1 stat state
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    state=${stat##*) }
    state=${state%% *}
    case $state in Z | X | x) return 1 ;; esac
    tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$KS_SLAPD_DIR/slapd.d" || return 1
}

# Makes the CA, the server certificate and the unrelated CA in $KS_SLAPD_DIR.
ks_slapd_certs() {
    local d=$KS_SLAPD_DIR san host
    host=$(hostname 2>/dev/null || true)
    san="DNS:localhost,IP:127.0.0.1,IP:::1"
    case $host in '' | localhost | *[!A-Za-z0-9.-]*) ;; *) san="DNS:localhost,DNS:$host,IP:127.0.0.1,IP:::1" ;; esac
    cat >"$d/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = $san
EOF
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    {
        openssl req -config "$d/openssl.cnf" -x509 "${ec[@]}" -days 3650 -sha256 \
            -subj "/O=keystone-slurm tests/CN=keystone-slurm test CA" -extensions ca_ext \
            -keyout "$d/ca.key" -out "$d/ca.crt" &&
            openssl req -config "$d/openssl.cnf" -new "${ec[@]}" -subj "/O=keystone-slurm tests/CN=localhost" \
                -keyout "$d/server.key" -out "$d/server.csr" &&
            openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
                -days 3650 -sha256 -extfile "$d/openssl.cnf" -extensions server_ext -out "$d/server.crt" &&
            openssl req -config "$d/openssl.cnf" -x509 "${ec[@]}" -days 3650 -sha256 \
                -subj "/O=somebody else/CN=unrelated test CA" -extensions ca_ext \
                -keyout "$d/wrong-ca.key" -out "$d/wrong-ca.crt"
    } >"$d/openssl.log" 2>&1
}

# Writes config.ldif for the offline cn=config.
ks_slapd_config_ldif() {
    local d=$KS_SLAPD_DIR hash root='gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth'
    hash=$(slappasswd -h '{SSHA}' -s "$KS_LDAP_ADMIN_PW") || return 1
    local s
    cat <<EOF
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: $d/slapd.pid
olcArgsFile: $d/slapd.args
olcLogLevel: none
olcTLSCACertificateFile: $d/ca.crt
olcTLSCertificateFile: $d/server.crt
olcTLSCertificateKeyFile: $d/server.key

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

EOF
    for s in core cosine nis inetorgperson; do
        printf 'include: file:///etc/ldap/schema/%s.ldif\n\n' "$s"
    done
    cat <<EOF
dn: olcDatabase={-1}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {-1}frontend
olcSizeLimit: size.soft=500 size.hard=500 size.prtotal=unlimited
olcAccess: {0}to * by dn.exact=$root manage by * break
olcAccess: {1}to dn.exact="" by * read
olcAccess: {2}to dn.base="cn=Subschema" by * read

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
olcAccess: {0}to * by dn.exact=$root manage by * none

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcDbDirectory: $d/db
olcSuffix: $KS_LDAP_BASE
olcRootDN: $KS_LDAP_ADMIN_DN
olcRootPW: $hash
olcDbMaxSize: 2147483648
olcDbNoSync: TRUE
olcDbIndex: objectClass eq
olcDbIndex: uid eq
olcDbIndex: mail eq
olcAccess: {0}to * by dn.exact=$root manage by * break
olcAccess: {1}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {2}to * by * read

EOF
}

# ks_slapd_start: creates and starts the server and the base entries; exits 77/99 when it can't.
# Does nothing when already running; after ks_slapd_stop it starts afresh (ks_slapd_restart
# keeps the data).
ks_slapd_start() {
    local t missing=''
    case :$PATH: in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/sbin ;; esac   # slapd, slapadd
    for t in slapd:slapd slapadd:slapd slappasswd:slapd ldapadd:ldap-utils ldapsearch:ldap-utils \
        ldapmodify:ldap-utils ldapdelete:ldap-utils openssl:openssl; do
        command -v "${t%%:*}" >/dev/null 2>&1 && continue
        case " $missing " in *" ${t##*:} "*) ;; *) missing="$missing ${t##*:}" ;; esac
    done
    if [ -n "$missing" ]; then
        ks_missing_service "OpenLDAP server or tools not installed: apt-get install${missing}" \
            "(preseed slapd/no_configuration=true)"
    fi
    [ -f /usr/lib/ldap/back_mdb.la ] || [ -f /usr/lib/ldap/back_mdb.so ] ||
        ks_missing_service "slapd's back_mdb module not found in /usr/lib/ldap: apt-get install slapd"
    [ -n "${KS_TMP:-}" ] || { echo "ks_slapd_start: call ks_scratch first" >&2; exit 99; }

    KS_SLAPD_DIR=$KS_TMP/slapd
    local d=$KS_SLAPD_DIR
    if ks_slapd_pid >/dev/null; then return 0; fi   # already started (and running)
    rm -rf "$d"
    local sock=$d/ldapi
    if [ "${#sock}" -gt 100 ]; then
        echo "ks_slapd_start: socket path too long for ldapi (${#sock} bytes): $sock; use a shorter TMPDIR" >&2
        exit 99
    fi
    mkdir -p "$d/slapd.d" "$d/db" || exit 99
    chmod 700 "$d/slapd.d" "$d/db"
    ks_slapd_certs || { cat "$d/openssl.log" >&2; echo "ks_slapd_start: openssl failed" >&2; exit 99; }
    ks_slapd_config_ldif >"$d/config.ldif" || { echo "ks_slapd_start: slappasswd failed" >&2; exit 99; }
    slapadd -n0 -F "$d/slapd.d" -l "$d/config.ldif" >"$d/slapadd-config.log" 2>&1 || {
        cat "$d/slapadd-config.log" >&2; echo "ks_slapd_start: slapadd -n0 (cn=config) failed" >&2; exit 99; }

    KS_LDAP_CA=$d/ca.crt
    KS_LDAP_WRONG_CA=$d/wrong-ca.crt
    KS_LDAPI_URI=ldapi://$(ks_urlencode "$sock")
    export KS_LDAP_CA KS_LDAP_WRONG_CA KS_LDAPI_URI

    ks_on_exit ks_slapd_stop
    local try p1 p2
    for try in 1 2 3 4 5; do
        p1=$(ks_free_port) || continue
        p2=$(ks_free_port) || continue
        [ "$p1" = "$p2" ] && continue
        KS_LDAP_PORT=$p1 KS_LDAPS_PORT=$p2
        if ks_slapd_start_server; then break; fi
        if [ "$try" = 5 ]; then
            ks_slapd_diagnose
            echo "ks_slapd_start: slapd did not start (5 tries); KS_SLAPD_DEBUG=stats shows why" >&2
            exit 99
        fi
    done
    KS_LDAP_URI=ldap://127.0.0.1:$KS_LDAP_PORT
    KS_LDAPS_URI=ldaps://127.0.0.1:$KS_LDAPS_PORT
    export KS_LDAP_URI KS_LDAPS_URI KS_LDAP_PORT KS_LDAPS_PORT

    ks_ldap_add <<EOF || { echo "ks_slapd_start: adding the base entries failed" >&2; exit 99; }
dn: $KS_LDAP_BASE
objectClass: top
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: $KS_LDAP_PEOPLE
objectClass: organizationalUnit
ou: people

dn: ou=groups,$KS_LDAP_BASE
objectClass: organizationalUnit
ou: groups
EOF
}

# Starts slapd on $KS_LDAP_PORT/$KS_LDAPS_PORT and the socket, and waits until it answers.
ks_slapd_start_server() {
    local d=$KS_SLAPD_DIR i
    local urls="ldap://127.0.0.1:$KS_LDAP_PORT/ ldaps://127.0.0.1:$KS_LDAPS_PORT/ $KS_LDAPI_URI/"
    rm -f "$d/slapd.pid" "$d/ldapi"
    if [ -n "${KS_SLAPD_DEBUG:-}" ]; then
        # Foreground (a child of this shell, which reaps it), log to a file.
        slapd -d "$KS_SLAPD_DEBUG" -F "$d/slapd.d" -h "$urls" </dev/null >>"$d/slapd.log" 2>&1 &
        KS_SLAPD_LASTPID=$!
    else
        # slapd forks and detaches; the parent exits 0 once the child has read its configuration
        # and opened its listeners, non-zero (e.g. a port in use) otherwise. It logs to syslog.
        slapd -F "$d/slapd.d" -h "$urls" </dev/null >>"$d/slapd.log" 2>&1 || return 1
        KS_SLAPD_LASTPID=$(cat "$d/slapd.pid" 2>/dev/null)
    fi
    for ((i = 0; i < 300; i++)); do
        ks_slapd_ready && return 0
        # Gone (or a zombie) already: no point in waiting.
        case $(cat "/proc/$KS_SLAPD_LASTPID/stat" 2>/dev/null) in '' | *") Z "* | *") X "*) break ;; esac
        sleep 0.1
    done
    ks_slapd_stop
    return 1
}

# Why slapd does not start: runs it in the foreground for a moment with errors on stderr.
ks_slapd_diagnose() {
    local d=$KS_SLAPD_DIR
    local urls="ldap://127.0.0.1:$KS_LDAP_PORT/ ldaps://127.0.0.1:$KS_LDAPS_PORT/ $KS_LDAPI_URI/"
    cat "$d/slapd.log" >&2 2>/dev/null
    echo "# slapd -d none -F $d/slapd.d -h \"$urls\":" >&2
    timeout 3 slapd -d none -F "$d/slapd.d" -h "$urls" </dev/null 2>&1 | sed 's/^/#   /' >&2
    rm -f "$d/slapd.pid"
}

# An anonymous base search of the root DSE over ldap:// answers (and our process is alive).
ks_slapd_ready() {
    ks_slapd_pid >/dev/null || return 1
    ks_ldap_tool ldapsearch -x -H "ldap://127.0.0.1:$KS_LDAP_PORT" -s base -b "" -o nettimeout=2 \
        namingContexts >/dev/null 2>&1
}

# Stops our slapd (only it, by its pid file) and waits until it is gone; a zombie counts as gone
# (PID 1 here reaps orphans only every few seconds).
ks_slapd_stop() {
    local pid i
    pid=$(ks_slapd_pid) || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 300; i++)); do
        ks_slapd_alive "$pid" || break
        sleep 0.05
    done
    if ks_slapd_alive "$pid"; then
        echo "ks_slapd_stop: slapd $pid ignored SIGTERM for 15 s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null
        for ((i = 0; i < 100; i++)); do ks_slapd_alive "$pid" || break; sleep 0.05; done
    fi
    rm -f "$KS_SLAPD_DIR/slapd.pid"
    return 0
}

# Starts the stopped server again on the same ports, with the same data. Fails if it can't.
ks_slapd_restart() {
    [ -n "${KS_LDAP_PORT:-}" ] || { echo "ks_slapd_restart: ks_slapd_start was not called" >&2; return 1; }
    ks_slapd_pid >/dev/null && return 0
    local try
    for try in 1 2 3; do
        ks_slapd_start_server && return 0
        sleep 0.5
    done
    ks_slapd_diagnose
    echo "ks_slapd_restart: slapd did not start again on ports $KS_LDAP_PORT/$KS_LDAPS_PORT" >&2
    return 1
}

# ks_ldap_user_ldif N [FIRST] [PREFIX]: LDIF for N users uid=PREFIXnnnnnn (6 digits, from FIRST,
# default 1; PREFIX default "user") under ou=people: inetOrgPerson + posixAccount, uidNumber
# 100000+n, gidNumber 10000, mail PREFIXnnnnnn@example.org, no password.
ks_ldap_user_ldif() {
    local n=${1:?ks_ldap_user_ldif N [FIRST] [PREFIX]} first=${2:-1} prefix=${3:-user}
    awk -v n="$n" -v first="$first" -v p="$prefix" -v people="$KS_LDAP_PEOPLE" 'BEGIN {
        for (i = first; i < first + n; i++) {
            num = sprintf("%06d", i); u = p num
            printf "dn: uid=%s,%s\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\n", u, people
            printf "uid: %s\ncn: Given %s Family %s\ngivenName: Given %s\nsn: Family %s\n", u, num, num, num, num
            printf "mail: %s@example.org\nuidNumber: %d\ngidNumber: 10000\n", u, 100000 + i
            printf "homeDirectory: /home/%s\nloginShell: /bin/bash\n\n", u
        }
    }'
}

# ks_ldap_add_users N [FIRST] [PREFIX]: adds those users. From 5000 on, slapd is stopped, the
# entries are loaded offline with slapadd -q and slapd is started again (same ports); fewer go
# through ldapadd over ldapi. Returns non-zero (with the reason on stderr) on failure.
ks_ldap_add_users() {
    local n=${1:?ks_ldap_add_users N [FIRST] [PREFIX]} first=${2:-1} prefix=${3:-user}
    local d=$KS_SLAPD_DIR rc=0 was_running=0
    if [ "$n" -lt 5000 ]; then
        ks_ldap_user_ldif "$n" "$first" "$prefix" | ks_ldap_add
        return
    fi
    ks_ldap_user_ldif "$n" "$first" "$prefix" >"$d/users.ldif" || return 1
    ks_slapd_pid >/dev/null && was_running=1
    ks_slapd_stop
    slapadd -q -F "$d/slapd.d" -b "$KS_LDAP_BASE" -l "$d/users.ldif" >"$d/slapadd.log" 2>&1 || {
        rc=1; cat "$d/slapadd.log" >&2; echo "ks_ldap_add_users: slapadd failed" >&2; }
    rm -f "$d/users.ldif"
    if [ "$was_running" = 1 ]; then ks_slapd_restart || rc=1; fi
    return $rc
}

# LDIF on stdin, applied as root over ldapi (SASL EXTERNAL: manage rights on data and cn=config).
ks_ldap_modify() { ks_ldap_tool ldapmodify -Q -Y EXTERNAL -H "$KS_LDAPI_URI" >/dev/null; }
ks_ldap_add() { ks_ldap_tool ldapadd -Q -Y EXTERNAL -H "$KS_LDAPI_URI" >/dev/null; }
# ks_ldap_delete DN...
ks_ldap_delete() { ks_ldap_tool ldapdelete -Q -Y EXTERNAL -H "$KS_LDAPI_URI" "$@"; }

# ks_ldap_count FILTER: how many entries below ou=people match (paged search as the admin).
ks_ldap_count() {
    local out
    out=$(ks_ldap_tool ldapsearch -LLL -x -H "$KS_LDAP_URI" -D "$KS_LDAP_ADMIN_DN" -w "$KS_LDAP_ADMIN_PW" \
        -b "$KS_LDAP_PEOPLE" -s sub -E pr=1000/noprompt -o ldif-wrap=no "${1:-(objectClass=*)}" 1.1) || return 1
    printf '%s\n' "$out" | awk -v base="dn: $KS_LDAP_PEOPLE" '/^dn:/ && $0 != base { n++ } END { print n + 0 }'
}
