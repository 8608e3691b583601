#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Benchmark: KS_BENCH_NOTICES (10,000) due expiration notices sent by
# `keystonectl run notify_upcoming_expirations` to a local SMTP sink (one connection for the run,
# each notice recorded in PostgreSQL after the server accepted it), beside the very same messages
# sent by curl, one process and one connection per message, as a cron script would. Prints both
# rates in messages per second and their ratio, measured in the same run against the same sink.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
export KS_SRCDIR=$src KS_BUILDDIR=${KS_BUILDDIR:-$src/_build} KEYSTONE_TEST_REQUIRE_SERVICES=1
n=${KS_BENCH_NOTICES:-10000}
# shellcheck source=../tests/lib/common.sh
. "$src/tests/lib/common.sh"
# shellcheck source=../tests/lib/pg.sh
. "$src/tests/lib/pg.sh"
# shellcheck source=../tests/lib/smtp.sh
. "$src/tests/lib/smtp.sh"
ks_test_name=bench-notify
ks_scratch
ks_pg_start
ks_smtp_start
command -v curl >/dev/null || ks_missing_service "curl not installed: apt-get install curl"
ks_write_conf "EMAIL_HOST=127.0.0.1" "EMAIL_PORT=$KS_SMTP_PORT" "EMAIL_FROM_ADDRESS=keystone@example.org" \
    "KEYSTONED_NOTIFY_RETRY_WINDOW=0" "KEYSTONED_SPOOL_DIR="
"$KEYSTONECTL" db migrate --keystone-schema >/dev/null

teams=$(((n + 99) / 100))
echo "seeding $n due notices: $teams teams of up to 100 members, one request each expiring in 30 days"
psql -X -q -v ON_ERROR_STOP=1 -o /dev/null <<SQL
INSERT INTO users_team (name, slug, is_active) SELECT 'Team ' || t, 'team-' || t, true FROM generate_series(1, $teams) t;
INSERT INTO users_user (password, is_superuser, username, first_name, last_name, email, is_active, is_staff, is_ldap_user, date_joined)
SELECT '', false, 'user' || i, 'Given' || i, 'Family' || i, 'user' || i || '@example.org', true, false, false, now() - interval '400 days'
FROM generate_series(1, $n) i;
INSERT INTO users_membership (role, user_id, team_id) SELECT 'MB', u.id, (u.id - 1) / 100 + 1 FROM users_user u;
INSERT INTO allocations_cluster (name, enabled, access_mode) VALUES ('smp', true, 'OP');
INSERT INTO allocations_allocationrequest (title, description, submitted, active, expire, status, submitter_id, team_id)
SELECT 'Request of team ' || t, 'd', now() - interval '400 days', current_date - 300, current_date + 30, 'AP', (t - 1) * 100 + 1, t
FROM generate_series(1, $teams) t;
INSERT INTO allocations_resourceallocation (requested, awarded, cluster_id, request_id)
SELECT 100000, 90000, 1, id FROM allocations_allocationrequest;
SQL

# The same messages as files, for curl: keystoned writes them with EMAIL_DEBUG_DIR; then its
# records are removed so the timed run finds every notice due again.
EMAIL_DEBUG_DIR=$KS_TMP/eml "$KEYSTONECTL" run notify_upcoming_expirations >/dev/null
ks_sql "DELETE FROM notifications_notification" >/dev/null
files=$(find "$KS_TMP/eml" -name '*.eml' | wc -l)
[ "$files" = "$n" ] || { echo "expected $n message files, found $files" >&2; exit 1; }
# The recipient of each file (the address in its To header), read before the clock starts.
find "$KS_TMP/eml" -name '*.eml' -print0 | xargs -0 awk '
    FNR == 1 { done = 0 }
    !done && /^To: / { line = $0; sub(/\r$/, "", line); sub(/.*</, "", line); sub(/>.*/, "", line)
                       sub(/^To: /, "", line); print FILENAME, line; done = 1 }' >"$KS_TMP/rcpt.txt"
[ "$(wc -l <"$KS_TMP/rcpt.txt")" = "$n" ] || { echo "could not read every recipient" >&2; exit 1; }

now() { date +%s.%N; }
echo "sending with keystonectl run notify_upcoming_expirations"
t0=$(now)
out=$("$KEYSTONECTL" run notify_upcoming_expirations --json)
t1=$(now)
sent=$(printf '%s' "$out" | /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin)["result"]; print(r["sent"], r["smtp_connections"])')
[ "${sent% *}" = "$n" ] || { echo "keystonectl sent ${sent% *} of $n" >&2; exit 1; }
[ "$(ks_smtp_count)" = "$n" ] || { echo "the sink has $(ks_smtp_count) messages, not $n" >&2; exit 1; }
ks_smtp_clear

echo "sending the same messages with curl, one process per message"
t2=$(now)
while read -r f rcpt; do
    curl -sS --url "smtp://127.0.0.1:$KS_SMTP_PORT/localhost" --mail-from keystone@example.org \
        --mail-rcpt "$rcpt" -T "$f"
done <"$KS_TMP/rcpt.txt"
t3=$(now)
[ "$(ks_smtp_count)" = "$n" ] || { echo "the sink has $(ks_smtp_count) messages from curl, not $n" >&2; exit 1; }

ours=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
theirs=$(awk -v a="$t2" -v b="$t3" 'BEGIN { print b - a }')
echo
echo "$n notices to a local aiosmtpd sink (python3-aiosmtpd on 127.0.0.1)"
printf '%-58s %8s %10s\n' "" "seconds" "msg/s"
printf '%-58s %8.2f %10.0f\n' "keystonectl run notify_upcoming_expirations (${sent#* } conn.)" "$ours" "$(awk -v s="$ours" -v n="$n" 'BEGIN { print n / s }')"
printf '%-58s %8.2f %10.0f\n' "curl, one process and connection per message" "$theirs" "$(awk -v s="$theirs" -v n="$n" 'BEGIN { print n / s }')"
printf 'ratio keystonectl / curl, messages per second: %.1f\n' "$(awk -v a="$ours" -v b="$theirs" 'BEGIN { print b / a }')"
echo "(keystonectl's time includes reading the candidates, rendering each message and recording each notice in its own transaction)"
