#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Benchmark: a full LDAP user sync of KS_BENCH_USERS (100,000) directory users that are already in
# sync, beside ldapsearch fetching the same entries with the same page size over the same kind of
# connection (StartTLS, bound as a service account) into /dev/null, in the same run. Prints both
# times, their ratio, and the peak memory (maximum resident set) of each.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
export KS_SRCDIR=$src KS_BUILDDIR=${KS_BUILDDIR:-$src/_build} KEYSTONE_TEST_REQUIRE_SERVICES=1
n=${KS_BENCH_USERS:-100000}
page=${KS_BENCH_PAGE:-500}
runs=${KS_BENCH_RUNS:-5}
# shellcheck source=../tests/lib/common.sh
. "$src/tests/lib/common.sh"
# shellcheck source=../tests/lib/pg.sh
. "$src/tests/lib/pg.sh"
# shellcheck source=../tests/lib/slapd.sh
. "$src/tests/lib/slapd.sh"
ks_test_name=bench-ldap-sync
ks_scratch
ks_pg_start
ks_slapd_start
ks_ldap_add <<LDIF
dn: cn=reader,$KS_LDAP_BASE
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: reader
userPassword: $(slappasswd -s readerpw)
LDIF
ks_write_conf "AUTH_LDAP_SERVER_URI=$KS_LDAP_URI" "AUTH_LDAP_BIND_DN=cn=reader,$KS_LDAP_BASE" \
    "AUTH_LDAP_BIND_PASSWORD=readerpw" "AUTH_LDAP_USER_SEARCH=$KS_LDAP_PEOPLE" \
    "AUTH_LDAP_USER_FILTER=(objectClass=inetOrgPerson)" \
    "AUTH_LDAP_ATTR_MAP=first_name=givenName,last_name=sn,email=mail" \
    "KEYSTONED_LDAP_CA_FILE=$KS_LDAP_CA" "KEYSTONED_LDAP_PAGE_SIZE=$page"
"$KEYSTONECTL" db migrate --keystone-schema >/dev/null
echo "loading $n users into slapd"
ks_ldap_add_users "$n"
echo "first sync (creates them)"
"$KEYSTONECTL" run ldap_update_users --json | /usr/bin/python3 -c 'import json,sys; o=json.load(sys.stdin); r=o["result"]; print("  %s: %d entries, %d created in %.2f s" % (o["status"], r["entries"], r["created"], o["seconds"]))'

# Runs "$@", prints "<wall seconds> <max RSS in KiB>".
measure() {
    /usr/bin/python3 - "$@" <<'PY'
import resource, subprocess, sys, time
t = time.monotonic()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
dt = time.monotonic() - t
if rc != 0:
    sys.exit("command failed with %d: %s" % (rc, " ".join(sys.argv[1:])))
print("%.3f %d" % (dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
PY
}
best() { sort -n | head -n 1; }
ours=() theirs=()
for i in $(seq "$runs"); do
    ours+=("$(measure "$KEYSTONECTL" run ldap_update_users)")
    theirs+=("$(measure env LDAPTLS_CACERT="$KS_LDAP_CA" ldapsearch -x -ZZ -LLL \
        -H "$KS_LDAP_URI" -D "cn=reader,$KS_LDAP_BASE" -w readerpw -b "$KS_LDAP_PEOPLE" \
        -E "pr=$page/noprompt" '(objectClass=inetOrgPerson)' uid givenName sn mail)")
done
o=$(printf '%s\n' "${ours[@]}" | best); t=$(printf '%s\n' "${theirs[@]}" | best)
unchanged=$(ks_sql "SELECT result::jsonb->>'unchanged' FROM django_celery_results_taskresult ORDER BY date_created DESC LIMIT 1")
echo
echo "$n users in sync ($unchanged unchanged), page size $page, best of $runs runs"
printf '%-36s %10s %14s\n' "" "seconds" "peak RSS (MiB)"
printf '%-36s %10.2f %14.1f\n' "keystonectl run ldap_update_users" "${o% *}" "$(awk -v k="${o#* }" 'BEGIN { print k / 1024 }')"
printf '%-36s %10.2f %14.1f\n' "ldapsearch -E pr=$page (to /dev/null)" "${t% *}" "$(awk -v k="${t#* }" 'BEGIN { print k / 1024 }')"
printf 'ratio keystoned / ldapsearch, best times: %.2f (goal: at most 1.5)\n' "$(awk -v a="${o% *}" -v b="${t% *}" 'BEGIN { print a / b }')"
# The machine is shared and noisy: also the median of the ratios of each back-to-back pair.
ratios=$(for i in "${!ours[@]}"; do awk -v a="${ours[$i]% *}" -v b="${theirs[$i]% *}" 'BEGIN { printf "%.3f\n", a / b }'; done | sort -n)
printf 'ratio per pair (sorted): %s; median %.2f\n' "$(echo $ratios)" "$(echo "$ratios" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
