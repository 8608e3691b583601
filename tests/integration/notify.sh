#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The expiration notices (notify_upcoming_expirations, notify_past_expirations) against a real
# PostgreSQL and a real SMTP sink: the threshold timeline of the spec, the past window, opt-outs,
# inactive users and teams, pending requests, users without e-mail; the captured messages parsed
# (recipients, subjects, both parts, escaping, encoded words, header injection); Keystone's rows
# suppressing duplicates; SMTP down for a run and then up; retries within a run; keystoned killed
# in the middle of a run; STARTTLS and authentication; templates; dry run and preview.
. "${KS_SRCDIR:-.}/tests/lib/common.sh"
. "$KS_SRCDIR/tests/lib/pg.sh"
. "$KS_SRCDIR/tests/lib/smtp.sh"
ks_scratch
ks_pg_start
ks_smtp_certs
# shellcheck disable=SC2119 # the sink's options, not the script's
ks_smtp_start

# "Today" is the date in CONFIG_TIMEZONE. Pick a zone where midnight is hours away, so a run of
# this test never straddles a change of date.
tz=UTC
hour=$((10#$(date -u +%H)))
if [ "$hour" -ge 20 ] || [ "$hour" -lt 2 ]; then tz=Etc/GMT-9; fi # UTC+9
TPL=$KS_TMP/templates
mkdir -p "$TPL"
# update_limits is off unless a part of the test switches it on (limits_schedule): with it on,
# notify_past_expirations waits for its run of the day.
limits_schedule=off
conf() {
    ks_write_conf "EMAIL_HOST=127.0.0.1" "EMAIL_PORT=$KS_SMTP_PORT" \
        "EMAIL_FROM_ADDRESS=keystone@example.org" "EMAIL_TEMPLATE_DIR=$TPL" \
        "CONFIG_TIMEZONE=$tz" "KEYSTONED_NOTIFY_RETRY_WINDOW=0" "KEYSTONED_SPOOL_DIR=" \
        "KEYSTONED_SCHEDULE_UPDATE_LIMITS=$limits_schedule" "$@"
}
conf
"$KEYSTONECTL" db migrate --keystone-schema >/dev/null || { echo "migrate failed"; exit 99; }

# Test data helpers, as SQL functions in the private database.
psql -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE FUNCTION t_today() RETURNS date LANGUAGE sql AS \$\$ SELECT (now() AT TIME ZONE '$tz')::date \$\$;
CREATE FUNCTION t_user(name text, mail text, joined_days int DEFAULT 400, first text DEFAULT 'First',
                       last text DEFAULT 'Last', active bool DEFAULT true) RETURNS bigint LANGUAGE sql AS \$\$
  INSERT INTO users_user (password, is_superuser, username, first_name, last_name, email, is_active,
                          is_staff, is_ldap_user, date_joined)
  VALUES ('', false, name, first, last, mail, active, false, false, now() - make_interval(days => joined_days))
  RETURNING id \$\$;
CREATE FUNCTION t_team(name text, active bool DEFAULT true) RETURNS bigint LANGUAGE sql AS \$\$
  INSERT INTO users_team (name, slug, is_active) VALUES (name, lower(replace(name, ' ', '-')), active)
  RETURNING id \$\$;
CREATE FUNCTION t_member(u text, t text, r text DEFAULT 'MB') RETURNS void LANGUAGE sql AS \$\$
  INSERT INTO users_membership (role, user_id, team_id)
  SELECT r, (SELECT id FROM users_user WHERE username = u), (SELECT id FROM users_team WHERE name = t) \$\$;
CREATE FUNCTION t_request(t text, title text, active_in int, expire_in int, st text DEFAULT 'AP')
  RETURNS bigint LANGUAGE sql AS \$\$
  INSERT INTO allocations_allocationrequest (title, description, submitted, active, expire, status,
                                             submitter_id, team_id)
  VALUES (title, 'd', now() - interval '500 days', t_today() + active_in, t_today() + expire_in, st,
          (SELECT min(id) FROM users_user), (SELECT id FROM users_team WHERE name = t))
  RETURNING id \$\$;
INSERT INTO allocations_cluster (name, enabled, access_mode) VALUES ('smp', true, 'OP');
SQL

# Runs the SQL on standard input; any error ends the test (the data would be wrong).
sqlrun() { psql -X -q -v ON_ERROR_STOP=1 -o /dev/null || { echo "test data: SQL failed"; exit 99; }; }
run() { "$KEYSTONECTL" run "$@" --json 2>"$KS_TMP/run.err"; }
jget() { /usr/bin/python3 -c 'import json,sys; o=json.load(sys.stdin); v=o
for k in sys.argv[1].split("."): v=v.get(k) if isinstance(v, dict) else None
print(v if not isinstance(v, list) else ",".join(str(x) for x in v))' "$1"; }
notices() { # notices TYPE REQUEST_ID: "user:days,user:days" of Keystone's rows
    ks_sql "SELECT coalesce(string_agg(u.username || coalesce(':' || (n.metadata->>'days_to_expire'), ''), ',' ORDER BY u.username, (n.metadata->>'days_to_expire')::int DESC), '')
            FROM notifications_notification n JOIN users_user u ON u.id = n.user_id
            WHERE n.notification_type = '$1' AND n.metadata->'request_id' = to_jsonb($2::bigint)"
}
# Reads the captured messages: mailq count ADDR | mailq get ADDR FIELD | mailq peers ADDR...
cat >"$KS_TMP/mailq.py" <<'PY'
import email, os, sys
from email import policy
d = os.path.join(os.environ["KS_SMTP_MAILDIR"], "new")
msgs = []
for n in sorted(os.listdir(d)):
    raw = open(os.path.join(d, n), "rb").read()
    msgs.append((raw, email.message_from_bytes(raw, policy=policy.default)))
cmd, args = sys.argv[1], sys.argv[2:]
to = lambda m: str(m["X-Envelope-To"])
if cmd == "count":
    print(sum(1 for _, m in msgs if to(m) == args[0]))
elif cmd == "peers":
    print(len({str(m["X-Peer"]) for _, m in msgs if to(m) in args}))
elif cmd == "get":
    mine = [(r, m) for r, m in msgs if to(m) == args[0]]
    if not mine:
        sys.exit("no message to " + args[0])
    raw, m = mine[-1]
    f = args[1]
    head = raw.split(b"\r\n\r\n", 1)[0]
    if f == "text":
        print(m.get_body(("plain",)).get_content(), end="")
    elif f == "html":
        print(m.get_body(("html",)).get_content(), end="")
    elif f == "display-name":
        print(m["To"].addresses[0].display_name)
    elif f == "addr":
        print(m["To"].addresses[0].addr_spec)
    elif f == "header-names":
        print(",".join(k for k in m.keys()))
    elif f == "head-ascii":
        print("yes" if all(b < 128 for b in head) else "no")
    elif f == "parts":
        print(m.get_content_type() + ":" + ",".join(p.get_content_type() for p in m.iter_parts()))
    elif f == "raw-head":
        print(head.decode("ascii", "replace"))
    else:
        print(m[f] if m[f] is not None else "")
PY
mailq() { /usr/bin/python3 "$KS_TMP/mailq.py" "$@"; }

# --- the threshold timeline (spec §6.2): days 31 to 1 with [30, 14] -----------------------------
sqlrun <<'SQL'
SELECT t_team('Timeline'), t_team('Late'), t_team('Short');
SELECT t_user('alice', 'alice@example.org'), t_user('carol', 'carol@example.org', 5),
       t_user('bob', 'bob@example.org'), t_user('dave', 'dave@example.org');
SELECT t_member('alice', 'Timeline', 'OW'), t_member('carol', 'Timeline', 'AD'),
       t_member('bob', 'Late'), t_member('dave', 'Short');
SELECT t_request('Timeline', 'Long request', -400, 31), t_request('Late', 'Late request', -400, 31, 'PD'),
       t_request('Short', 'Short request', 1, 31);
INSERT INTO allocations_resourceallocation (requested, awarded, final, cluster_id, request_id)
SELECT 1000, 800, NULL, 1, id FROM allocations_allocationrequest;
SQL
R1=$(ks_sql "SELECT id FROM allocations_allocationrequest WHERE title = 'Long request'")
R2=$(ks_sql "SELECT id FROM allocations_allocationrequest WHERE title = 'Late request'")
R3=$(ks_sql "SELECT id FROM allocations_allocationrequest WHERE title = 'Short request'")
# One run per day: the requests come one day closer each time, carol's join date (5 days before the
# first day) and the short request's start (30 days before its end) move with them, and the late
# request is approved when 20 days are left.
days_sent=
for d in $(seq 31 -1 1); do
    ks_sql "UPDATE allocations_allocationrequest SET expire = t_today() + $d WHERE id IN ($R1, $R2, $R3);
            UPDATE allocations_allocationrequest SET active = t_today() + $d - 30 WHERE id = $R3;
            UPDATE allocations_allocationrequest SET status = CASE WHEN $d <= 20 THEN 'AP' ELSE 'PD' END WHERE id = $R2;
            UPDATE users_user SET date_joined = now() - make_interval(days => 31 - $d + 5) WHERE username = 'carol'" >/dev/null
    out=$(run notify_upcoming_expirations)
    n=$(printf '%s' "$out" | jget result.sent)
    [ "$n" != 0 ] && days_sent="$days_sent $d:$n"
done
check_eq "notices went out on days 30 (alice), 20 (bob), 14 (all four)" " 30:1 20:1 14:4" "$days_sent"
check_eq "the old user of the long request: at 30 and 14" "alice:30,alice:14,carol:14" "$(notices RE "$R1")"
check_eq "first seen at 20: at 20 and 14" "bob:20,bob:14" "$(notices RE "$R2")"
check_eq "a request active for only 30 days: at 14 only" "dave:14" "$(notices RE "$R3")"
check_eq "one message per notice in the sink" "2 1 2 1" \
    "$(mailq count alice@example.org) $(mailq count carol@example.org) $(mailq count bob@example.org) $(mailq count dave@example.org)"
check_eq "Keystone's subject" "Your HPC allocation #$R1 is expiring soon" "$(mailq get alice@example.org Subject)"
check_eq "rows as Keystone writes them" "f|RE|{\"request_id\": $R1, \"days_to_expire\": 30}|Your HPC allocation #$R1 is expiring soon" \
    "$(ks_sql "SELECT read || '|' || notification_type || '|' || metadata::text || '|' || subject FROM notifications_notification n JOIN users_user u ON u.id = n.user_id WHERE u.username = 'alice' AND metadata->>'days_to_expire' = '30'" | sed 's/^false/f/')"
check_match "both parts stored for the in-app inbox" "^t\|t$" \
    "$(ks_sql "SELECT (message_text LIKE '%Long request%')::text || '|' || (message_html LIKE '%<p>%')::text FROM notifications_notification ORDER BY id LIMIT 1" | sed 's/true/t/g')"
check_eq "every run is recorded as Keystone's task" "31" \
    "$(ks_sql "SELECT count(*) FROM django_celery_results_taskresult WHERE task_name = 'apps.notifications.tasks.upcoming_expirations.notify_upcoming_expirations' AND status = 'SUCCESS'")"

# --- past notices (spec §6.3): within three days, not after; opt-outs ---------------------------
sqlrun <<'SQL'
SELECT t_team('Past Lab');
SELECT t_user('erin', 'erin@example.org'), t_user('frank', 'frank@example.org'), t_user('grace', 'grace@example.org');
SELECT t_member('erin', 'Past Lab'), t_member('frank', 'Past Lab'), t_member('grace', 'Past Lab');
INSERT INTO notifications_preference (request_expiry_thresholds, notify_on_expiration, user_id)
SELECT '[30, 14]'::jsonb, false, id FROM users_user WHERE username = 'frank'
UNION ALL SELECT '[]'::jsonb, true, id FROM users_user WHERE username = 'grace';
SELECT t_request('Past Lab', 'Expired today', -400, 0), t_request('Past Lab', 'Expired 2 days ago', -400, -2),
       t_request('Past Lab', 'Expired 3 days ago', -400, -3), t_request('Past Lab', 'Expires tomorrow', -400, 1);
INSERT INTO allocations_resourceallocation (requested, awarded, final, cluster_id, request_id)
SELECT 1000, 800, 600, 1, id FROM allocations_allocationrequest WHERE title = 'Expired today';
SQL
rid() { ks_sql "SELECT id FROM allocations_allocationrequest WHERE title = '$1'"; }
R4=$(rid 'Expired today'); R5=$(rid 'Expired 2 days ago'); R6=$(rid 'Expired 3 days ago'); R7=$(rid 'Expires tomorrow')
out=$(run notify_past_expirations); rc=$?
check_eq "past run: SUCCESS" "0 SUCCESS" "$rc $(printf '%s' "$out" | jget status)"
check_eq "nothing to wait for: update_limits is switched off" "off" "$(printf '%s' "$out" | jget result.settlement)"
check_eq "expired today: erin and grace (frank opted out)" "erin,grace" "$(notices RD "$R4")"
check_eq "expired two days ago (a missed day): still sent" "erin,grace" "$(notices RD "$R5")"
check_eq "expired three days ago: not sent" "" "$(notices RD "$R6")"
check_eq "not expired: not sent" "" "$(notices RD "$R7")"
check_eq "opting out of upcoming notices does not stop past ones" "2" "$(mailq count grace@example.org)"
check_eq "frank gets nothing" "0" "$(mailq count frank@example.org)"
check_match "the past notice shows the final usage" "600 of 800 SUs used \(75%\)" "$(ks_sql "SELECT message_text FROM notifications_notification n JOIN users_user u ON u.id = n.user_id WHERE u.username = 'erin' AND n.metadata->'request_id' = to_jsonb($R4::bigint)")"
out=$(run notify_past_expirations)
check_eq "a second run sends nothing" "0" "$(printf '%s' "$out" | jget result.sent)"

# --- the midnight order: past notices wait for update_limits to settle the day (spec §6.3) -------
limits_schedule="0 * * * *"
conf "KEYSTONED_NOTIFY_SETTLE_WAIT=1"
sqlrun <<'SQL'
SELECT t_team('Settle Lab');
SELECT t_user('ophelia', 'ophelia@example.org');
SELECT t_member('ophelia', 'Settle Lab');
SELECT t_request('Settle Lab', 'Unsettled today', -400, 0), t_request('Settle Lab', 'Settled yesterday', -400, -1);
INSERT INTO allocations_resourceallocation (requested, awarded, final, cluster_id, request_id)
SELECT 500, 500, CASE WHEN title = 'Settled yesterday' THEN 100 END, 1, id
FROM allocations_allocationrequest WHERE title IN ('Unsettled today', 'Settled yesterday');
SQL
RU=$(rid 'Unsettled today'); RS=$(rid 'Settled yesterday')
out=$(run notify_past_expirations); rc=$?
check_eq "no update_limits run since midnight: waited KEYSTONED_NOTIFY_SETTLE_WAIT, then FAILURE" "1 FAILURE pending" "$rc $(printf '%s' "$out" | jget status) $(printf '%s' "$out" | jget result.settlement)"
check_eq "the notice of the unsettled request is held back" "1" "$(printf '%s' "$out" | jget result.held_unsettled)"
check_eq "held back: not recorded" "" "$(notices RD "$RU")"
check_eq "the settled one is sent" "ophelia" "$(notices RD "$RS")"
# update_limits ran since midnight (its task records, as keystoned writes them) and settled the
# day: first a run on a head node of another cluster only (KEYSTONED_CLUSTERS), which settles
# nothing here, then smp's own sub-run.
ks_sql "INSERT INTO allocations_cluster (name, enabled, access_mode) VALUES ('other', true, 'OP');
        INSERT INTO django_celery_results_taskresult (task_id, task_name, task_args, status, content_type, content_encoding, date_created, date_done)
        VALUES ('limits-other', 'apps.allocations.tasks.limits.update_limits', '[]', 'SUCCESS', 'application/json', 'utf-8', now(), now()),
               ('limits-other-1', 'apps.allocations.tasks.limits.update_limits_for_cluster', '(''other'',)', 'SUCCESS', 'application/json', 'utf-8', now(), now())" >/dev/null
out=$(run notify_past_expirations); rc=$?
check_eq "another cluster's update_limits alone: still pending" "1 FAILURE pending" "$rc $(printf '%s' "$out" | jget status) $(printf '%s' "$out" | jget result.settlement)"
check_eq "the notice is still held back" "" "$(notices RD "$RU")"
ks_sql "UPDATE allocations_resourceallocation SET final = 300 WHERE request_id = $RU;
        INSERT INTO django_celery_results_taskresult (task_id, task_name, task_args, status, content_type, content_encoding, date_created, date_done)
        VALUES ('limits-today', 'apps.allocations.tasks.limits.update_limits', '[]', 'SUCCESS', 'application/json', 'utf-8', now(), now()),
               ('limits-today-1', 'apps.allocations.tasks.limits.update_limits_for_cluster', '(''smp'',)', 'FAILURE', 'application/json', 'utf-8', now(), now())" >/dev/null
out=$(run notify_past_expirations); rc=$?
check_eq "after update_limits' run: SUCCESS, settled" "0 SUCCESS done" "$rc $(printf '%s' "$out" | jget status) $(printf '%s' "$out" | jget result.settlement)"
check_eq "the held notice goes out now" "ophelia" "$(notices RD "$RU")"
check_match "with the final usage" "300 of 500 SUs used \(60%\)" "$(ks_sql "SELECT message_text FROM notifications_notification WHERE metadata->'request_id' = to_jsonb($RU::bigint)")"
ks_sql "DELETE FROM allocations_cluster WHERE name = 'other'" >/dev/null
limits_schedule=off
conf

# --- who gets nothing: inactive users and teams, pending and declined requests, no e-mail --------
sqlrun <<'SQL'
SELECT t_team('Exclusions'), t_team('Closed Lab', false);
SELECT t_user('ivan', 'ivan@example.org', 400, 'Ivan', 'Inactive', false), t_user('judy', NULL),
       t_user('kim', E'kim@example.org\r\nBcc: victim@example.org'), t_user('leo', 'leo@example.org'),
       t_user('nina', 'nina@example.org'), t_user('mallory', 'mallory@example.org');
SELECT t_member('ivan', 'Exclusions'), t_member('judy', 'Exclusions'), t_member('kim', 'Exclusions'),
       t_member('leo', 'Exclusions'), t_member('nina', 'Exclusions'), t_member('mallory', 'Closed Lab');
INSERT INTO notifications_preference (request_expiry_thresholds, notify_on_expiration, user_id)
SELECT '[]'::jsonb, true, id FROM users_user WHERE username = 'leo';
SELECT t_request('Exclusions', 'Approved', -400, 14), t_request('Exclusions', 'Pending', -400, 14, 'PD'),
       t_request('Exclusions', 'Declined', -400, 14, 'DC'), t_request('Closed Lab', 'Of a closed team', -400, 14);
SQL
out=$(run notify_upcoming_expirations); rc=$?
check_eq "exclusions run: SUCCESS (a user without e-mail is a warning, not an error)" "0 SUCCESS" "$rc $(printf '%s' "$out" | jget status)"
check_eq "only nina is notified" "nina:14" "$(notices RE "$(rid Approved)")"
check_eq "pending, declined and inactive-team requests: nothing" "" "$(notices RE "$(rid Pending)")$(notices RE "$(rid Declined)")$(notices RE "$(rid 'Of a closed team')")"
check_eq "the user without e-mail is skipped and named" "1 judy" "$(printf '%s' "$out" | jget result.skipped_no_email) $(printf '%s' "$out" | jget result.users_without_email)"
check_match "with a warning" "User=judy has no e-mail address" "$(cat "$KS_TMP/run.err")"
check_eq "an address with a line break is refused" "1" "$(printf '%s' "$out" | jget result.skipped_bad_address)"
check_eq "nobody but nina got mail" "1 0 0 0 0" "$(mailq count nina@example.org) $(mailq count ivan@example.org) $(mailq count leo@example.org) $(mailq count mallory@example.org) $(mailq count victim@example.org)"

# --- the message itself: recipients, encoded words, both parts, escaping, header injection --------
cat >"$TPL/upcoming_expiration.subject.mustache" <<'EOF'
Allocation #{{req_id}} «{{req_title}}» ends in {{req_days_left}} days
EOF
sqlrun <<'SQL'
SELECT t_team('Lab <b>Bold</b> & Co');
SELECT t_user('zoe', 'zoe@example.org', 400, 'Zoë', E'Ünïcødé\r\nBcc: victim@example.org');
SELECT t_member('zoe', 'Lab <b>Bold</b> & Co');
SELECT t_request('Lab <b>Bold</b> & Co', E'Grüße\r\nX-Injected: yes <img src=x onerror=alert(1)> "q" & more', -400, 30);
SQL
RZ=$(ks_sql "SELECT id FROM allocations_allocationrequest WHERE title LIKE 'Grüße%'")
out=$(run notify_upcoming_expirations); rc=$?
check_eq "message run: SUCCESS" "0 1" "$rc $(printf '%s' "$out" | jget result.sent)"
check_eq "the envelope has the one recipient" "zoe@example.org" "$(mailq get zoe@example.org X-Envelope-To)"
check_eq "the To address" "zoe@example.org" "$(mailq get zoe@example.org addr)"
check_eq "the display name, decoded; the line break is a space" "Zoë Ünïcødé Bcc: victim@example.org" "$(mailq get zoe@example.org display-name)"
check_eq "no header was injected" "From,To,Subject,Date,Message-ID,MIME-Version,Auto-Submitted,Content-Type" \
    "$(mailq get zoe@example.org header-names | sed 's/^X-Envelope-From,X-Envelope-To,X-Peer,X-TLS,X-Auth,//')"
check_eq "the non-ASCII subject, decoded" "Allocation #$RZ «Grüße X-Injected: yes <img src=x onerror=alert(1)> \"q\" & more» ends in 30 days" \
    "$(mailq get zoe@example.org Subject)"
check_eq "the header block is plain ASCII (encoded words)" "yes" "$(mailq get zoe@example.org head-ascii)"
check_match "encoded words in the raw headers" "Subject: =\?UTF-8\?B\?" "$(mailq get zoe@example.org raw-head)"
check_eq "multipart/alternative: text, then HTML" "multipart/alternative:text/plain,text/html" "$(mailq get zoe@example.org parts)"
check_match "a Message-ID of the notice" "^<keystone\.RE\.r$RZ\.d30\.u[0-9]+\.[0-9a-f]+@example\.org>$" "$(mailq get zoe@example.org Message-ID)"
check_match "a Date" "^[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} 20[0-9]{2} " "$(mailq get zoe@example.org Date)"
text=$(mailq get zoe@example.org text); html=$(mailq get zoe@example.org html)
check_match "the text part has the values as they are" "<img src=x onerror=alert\(1\)> \"q\" & more" "$text"
check_match "the text part greets by name" "Dear Zoë Ünïcødé Bcc: victim@example.org," "$text"
check_match "the HTML part has them escaped" "&lt;img src=x onerror=alert\(1\)&gt; &quot;q&quot; &amp; more" "$html"
check_eq "no markup from the database reaches the HTML" "0" "$(printf '%s' "$html" | grep -c -e '<img' -e '<b>Bold')"
check_match "the team name escaped too" "Lab &lt;b&gt;Bold&lt;/b&gt; &amp; Co" "$html"
check_eq "the row's subject is the decoded subject" "$(mailq get zoe@example.org Subject)" \
    "$(ks_sql "SELECT subject FROM notifications_notification WHERE metadata->'request_id' = to_jsonb($RZ::bigint)")"
rm -f "$TPL/upcoming_expiration.subject.mustache"

# --- Keystone's own rows suppress duplicates (a site switching from Celery) -----------------------
sqlrun <<'SQL'
SELECT t_team('Switched');
SELECT t_user('olga', 'olga@example.org'), t_member('olga', 'Switched');
SELECT t_request('Switched', 'Notified by Celery at 30', -400, 25), t_request('Switched', 'Celery past', -400, -1),
       t_request('Switched', 'Celery at 30, now 14', -400, 14);
-- As Django wrote them (key order and spacing differ; jsonb compares values).
INSERT INTO notifications_notification ("time", read, subject, message_text, message_html, metadata, notification_type, user_id)
SELECT now() - interval '5 days', true, 's', 't', 'h', jsonb_build_object('days_to_expire', 30, 'request_id', r.id), 'RE', u.id
FROM users_user u, allocations_allocationrequest r WHERE u.username = 'olga' AND r.title IN ('Notified by Celery at 30', 'Celery at 30, now 14')
UNION ALL
SELECT now() - interval '1 day', false, 's', 't', 'h', jsonb_build_object('request_id', r.id), 'RD', u.id
FROM users_user u, allocations_allocationrequest r WHERE u.username = 'olga' AND r.title = 'Celery past';
SQL
run notify_upcoming_expirations >/dev/null; run notify_past_expirations >/dev/null
check_eq "Celery's notice at 30 covers day 25, and its past notice is not repeated" "1" "$(mailq count olga@example.org)"
check_eq "the next threshold (14) is still sent" "olga:30,olga:14" "$(notices RE "$(rid 'Celery at 30, now 14')")"

# --- dry run and preview ---------------------------------------------------------------------------
sqlrun <<'SQL'
SELECT t_team('Dry');
SELECT t_user('xavier', 'xavier@example.org'), t_user('xena', NULL), t_member('xavier', 'Dry'), t_member('xena', 'Dry');
SELECT t_request('Dry', 'Dry request', -400, 30);
SQL
RD_=$(rid 'Dry request')
records=$(ks_sql "SELECT count(*) FROM django_celery_results_taskresult")
out=$(run notify_upcoming_expirations --dry-run); rc=$?
check_eq "dry run: SUCCESS, would send one" "0 1" "$rc $(printf '%s' "$out" | jget result.would_send)"
check_eq "it lists who would get what" "xavier xavier@example.org $RD_ 30 Your HPC allocation #$RD_ is expiring soon" \
    "$(printf '%s' "$out" | /usr/bin/python3 -c 'import json,sys; n=json.load(sys.stdin)["result"]["notices"][0]; print(n["user"], n["email"], n["request_id"], n["days_to_expire"], n["subject"])')"
check_match "and who has no address" "(^|,)xena(,|$)" "$(printf '%s' "$out" | jget result.users_without_email)"
check_eq "dry run: nothing sent, recorded or logged as a task" "0 0 $records" \
    "$(mailq count xavier@example.org) $(ks_sql "SELECT count(*) FROM notifications_notification WHERE metadata->'request_id' = to_jsonb($RD_::bigint)") $(ks_sql "SELECT count(*) FROM django_celery_results_taskresult")"
out=$("$KEYSTONECTL" notify preview --request "$RD_" --user xavier 2>&1); rc=$?
check_eq "preview exits 0" 0 "$rc"
check_match "preview: the notice, due today" "# RE to xavier <xavier@example.org> for request #$RD_ \(days_to_expire 30\): due today" "$out"
check_match "preview: headers" "Subject: Your HPC allocation #$RD_ is expiring soon" "$out"
check_match "preview: both parts" "--- text/plain ---.*" "$(printf '%s' "$out" | tr '\n' ' ')"
check_match "preview: the HTML part" "--- text/html ---" "$out"
check_match "preview --raw: the message as sent" "Content-Type: multipart/alternative" "$("$KEYSTONECTL" notify preview --request "$RD_" --user xavier --raw)"
check_match "preview of a notice already sent says why it is not due" "not due today: already notified" \
    "$("$KEYSTONECTL" notify preview --request "$R1" --user alice)"
check_match "preview of a pending request says why" "is not approved \(status PD\)" "$("$KEYSTONECTL" notify preview --request "$(rid Pending)")"
check_eq "preview sent and recorded nothing" "0 0" "$(mailq count xavier@example.org) $(ks_sql "SELECT count(*) FROM notifications_notification WHERE metadata->'request_id' = to_jsonb($RD_::bigint)")"
"$KEYSTONECTL" notify preview --request x >/dev/null 2>&1; check_eq "preview: a bad --request exits 2" 2 $?
check_match "notify preview --help" "^Usage: keystonectl notify preview" "$("$KEYSTONECTL" notify preview --help)"
"$KEYSTONECTL" notify >/dev/null 2>&1; check_eq "notify without a subcommand exits 2" 2 $?
check_match "keystonectl --help lists notify preview" "notify preview" "$("$KEYSTONECTL" --help)"
run notify_upcoming_expirations >/dev/null
check_eq "the real run sends it" "1" "$(mailq count xavier@example.org)"

# --- EMAIL_DEBUG_DIR: files instead of SMTP -------------------------------------------------------
sqlrun <<'SQL'
SELECT t_team('Debug'), t_user('yuri', 'yuri@example.org'), t_member('yuri', 'Debug'), t_request('Debug', 'Debug request', -400, 30);
SQL
out=$(EMAIL_DEBUG_DIR=$KS_TMP/debugmail run notify_upcoming_expirations)
check_eq "debug folder: sent one" "1 files in $KS_TMP/debugmail" "$(printf '%s' "$out" | jget result.sent) $(printf '%s' "$out" | jget result.transport)"
check_eq "one file, no message to the server" "1 0" "$(find "$KS_TMP/debugmail" -name '*.eml' | wc -l) $(mailq count yuri@example.org)"
check_match "the file is the message" "To: \"First Last\" <yuri@example.org>" "$(cat "$KS_TMP"/debugmail/*.eml)"
check_eq "and it is recorded" "yuri:30" "$(notices RE "$(rid 'Debug request')")"

# --- templates: overrides, refusals, errors that fail a notice and not the run ---------------------
sqlrun <<'SQL'
SELECT t_team('Templates'), t_user('walt', 'walt@example.org'), t_user('wanda', 'wanda@example.org'),
       t_member('walt', 'Templates'), t_member('wanda', 'Templates');
SELECT t_request('Templates', 'With allocation', -400, 30), t_request('Templates', 'Without allocation', -400, 30);
INSERT INTO allocations_resourceallocation (requested, awarded, final, cluster_id, request_id)
SELECT 10, 10, NULL, 1, id FROM allocations_allocationrequest WHERE title = 'With allocation';
SQL
RA=$(rid 'With allocation'); RB=$(rid 'Without allocation')
# alloc_final is not a value of upcoming notices: the error shows only where allocations are listed.
printf 'Hi {{user_display}}\n\n{{#allocations}}\n{{alloc_final}}\n{{/allocations}}\nbye {{req_id}}\n' >"$TPL/upcoming_expiration.txt.mustache"
printf '<p>{{req_title}}</p>\n' >"$TPL/upcoming_expiration.html"   # a Keystone (Jinja) name
out=$(run notify_upcoming_expirations); rc=$?
check_eq "a template error: FAILURE, exit 1" "1 FAILURE" "$rc $(printf '%s' "$out" | jget status)"
check_match "naming the file and the line" "$TPL/upcoming_expiration.txt.mustache:4: undefined variable 'alloc_final'" "$(printf '%s' "$out" | jget error)"
check_eq "the notices it does not affect are sent in the same run" "walt,wanda" "$(notices RE "$RB" | sed 's/:30//g')"
check_eq "the others are not, and not recorded" "" "$(notices RE "$RA")"
check_match "a Keystone Jinja template is reported, not used" "upcoming_expiration.html is a Keystone \(Jinja\) template" "$(cat "$KS_TMP/run.err")"
check_match "the override is used" "^Hi First Last" "$(mailq get walt@example.org text)"
printf 'Hi {{user_display}}\n' >"$TPL/upcoming_expiration.txt.mustache"
chmod 0666 "$TPL/upcoming_expiration.txt.mustache"
out=$(run notify_upcoming_expirations); rc=$?
check_match "a world-writable template is refused" "$TPL/upcoming_expiration.txt.mustache: refused: the file is writable by everyone" "$(printf '%s' "$out" | jget error)"
check_eq "and nothing was sent with it" "" "$(notices RE "$RA")"
chmod 0644 "$TPL/upcoming_expiration.txt.mustache"
printf 'line one\n{{#allocations}}\n' >"$TPL/upcoming_expiration.txt.mustache"
check_match "a syntax error names the line" "upcoming_expiration.txt.mustache:2: Unclosed section \"allocations\"" "$(run notify_upcoming_expirations | jget error)"
rm -f "$TPL"/*
out=$(run notify_upcoming_expirations); rc=$?
check_eq "fixed: the held notices go out with the next run" "0 walt:30,wanda:30" "$rc $(notices RE "$RA")"

# --- SMTP down for a run, then up: every notice exactly once ----------------------------------------
sqlrun <<'SQL'
SELECT t_team('Outage');
SELECT t_user('p' || i, 'p' || i || '@example.org') FROM generate_series(1, 5) i;
SELECT t_member('p' || i, 'Outage') FROM generate_series(1, 5) i;
SELECT t_request('Outage', 'Outage request', -400, 30);
SQL
RO=$(rid 'Outage request')
ks_smtp_stop
out=$(run notify_upcoming_expirations); rc=$?
check_eq "SMTP down: FAILURE, exit 1, nothing sent" "1 FAILURE 0 5" "$rc $(printf '%s' "$out" | jget status) $(printf '%s' "$out" | jget result.sent) $(printf '%s' "$out" | jget result.failed)"
check_match "the error says what happened and what comes next" "5 notice\(s\) not sent, retried by a later run: SMTP smtp://127.0.0.1:$KS_SMTP_PORT: (Could not|Couldn't) connect" "$(printf '%s' "$out" | jget error)"
check_eq "nothing recorded as sent" "" "$(notices RE "$RO")"
check_eq "retry state kept in keystone_slurm" "5 1" "$(ks_sql "SELECT count(*) || ' ' || max(attempts) FROM keystone_slurm.notice_retry WHERE request_id = $RO")"
run notify_upcoming_expirations >/dev/null
check_eq "a second failed run counts a second attempt" "2" "$(ks_sql "SELECT min(attempts) FROM keystone_slurm.notice_retry WHERE request_id = $RO")"
ks_smtp_restart
out=$(run notify_upcoming_expirations); rc=$?
check_eq "SMTP up again: SUCCESS, all five sent, over one connection" "0 5 0 1" \
    "$rc $(printf '%s' "$out" | jget result.sent) $(printf '%s' "$out" | jget result.pending_retry) $(printf '%s' "$out" | jget result.smtp_connections)"
check_eq "the sink saw one connection for them" "1" "$(mailq peers p1@example.org p2@example.org p3@example.org p4@example.org p5@example.org)"
run notify_upcoming_expirations >/dev/null
check_eq "every notice exactly once" "1 1 1 1 1" "$(for i in 1 2 3 4 5; do printf '%s ' "$(mailq count p$i@example.org)"; done | sed 's/ $//')"
check_eq "recorded once each, retry state gone" "5 0" "$(ks_sql "SELECT count(*) FROM notifications_notification WHERE metadata->'request_id' = to_jsonb($RO::bigint)") $(ks_sql "SELECT count(*) FROM keystone_slurm.notice_retry")"

# --- a server that comes back during the run: retried within KEYSTONED_NOTIFY_RETRY_WINDOW ------------
sqlrun <<'SQL'
SELECT t_team('Blip');
SELECT t_user('q' || i, 'q' || i || '@example.org') FROM generate_series(1, 3) i;
SELECT t_member('q' || i, 'Blip') FROM generate_series(1, 3) i;
SELECT t_request('Blip', 'Blip request', -400, 30);
SQL
RQ=$(rid 'Blip request')
ks_smtp_stop
KEYSTONED_NOTIFY_RETRY_WINDOW=600 "$KEYSTONECTL" -v run notify_upcoming_expirations --json >"$KS_TMP/blip.json" 2>"$KS_TMP/blip.err" &
blip=$!
failed_once() { [ "$(ks_sql "SELECT count(*) FROM keystone_slurm.notice_retry WHERE request_id = $RQ")" = 3 ]; }
check "the first attempt failed" ks_wait_for 30 failed_once
ks_smtp_restart
wait $blip; rc=$?
check_eq "the run retried and succeeded: SUCCESS, 3 sent, 2 passes" "0 SUCCESS 3 2" \
    "$rc $(jget status <"$KS_TMP/blip.json") $(jget result.sent <"$KS_TMP/blip.json") $(jget result.passes <"$KS_TMP/blip.json")"
check_match "it said when it would try again" "trying again at .*KEYSTONED_NOTIFY_RETRY_WINDOW=600" "$(cat "$KS_TMP/blip.err")"
check_eq "each once" "1 1 1" "$(mailq count q1@example.org) $(mailq count q2@example.org) $(mailq count q3@example.org)"

# --- a recipient the server refuses (5xx): the others go, it waits for a later run --------------------
ks_smtp_restart --reject refuse-me
sqlrun <<'SQL'
SELECT t_team('Refused'), t_user('rita', 'refuse-me@example.org'), t_user('rick', 'rick@example.org'),
       t_member('rita', 'Refused'), t_member('rick', 'Refused'), t_request('Refused', 'Refused request', -400, 30);
SQL
out=$(KEYSTONED_NOTIFY_RETRY_WINDOW=600 run notify_upcoming_expirations); rc=$?
check_eq "a refused recipient: FAILURE, the other sent, no retry within the run" "1 1 1" \
    "$rc $(printf '%s' "$out" | jget result.sent) $(printf '%s' "$out" | jget result.passes)"
check_match "the server's reply is kept" "server reply 550" "$(ks_sql "SELECT last_error FROM keystone_slurm.notice_retry r JOIN users_user u ON u.id = r.user_id WHERE u.username = 'rita'")"
ks_sql "UPDATE users_user SET email = 'rita@example.org' WHERE username = 'rita'" >/dev/null
ks_smtp_restart
check_eq "a later run delivers it" "0 1" "$(run notify_upcoming_expirations | jget result.failed) $(mailq count rita@example.org)"

# --- STARTTLS and authentication -----------------------------------------------------------------
ks_smtp_restart --tls --auth kuser:kpass
sqlrun <<'SQL'
SELECT t_team('Secure'), t_user('tina', 'tina@example.org'), t_member('tina', 'Secure'), t_request('Secure', 'Secure request', -400, 30);
SQL
out=$(EMAIL_HOST_USER=kuser EMAIL_HOST_PASSWORD=kpass run notify_upcoming_expirations); rc=$?
check_match "a password is never sent without TLS" "refusing to send EMAIL_HOST_PASSWORD unencrypted" "$(printf '%s' "$out" | jget error)"
out=$(EMAIL_USE_TLS=true KEYSTONED_EMAIL_CA_FILE=$KS_SMTP_WRONG_CA EMAIL_HOST_USER=kuser EMAIL_HOST_PASSWORD=kpass run notify_upcoming_expirations); rc=$?
check_match "a server certificate from another CA is refused" "(certificate|SSL peer)" "$(printf '%s' "$out" | jget error)"
out=$(EMAIL_USE_TLS=true KEYSTONED_EMAIL_CA_FILE=$KS_SMTP_CA EMAIL_HOST_USER=kuser EMAIL_HOST_PASSWORD=wrong run notify_upcoming_expirations); rc=$?
check_match "a wrong password fails the run" "Login denied" "$(printf '%s' "$out" | jget error)"
check_eq "nothing was sent so far" "0" "$(mailq count tina@example.org)"
out=$(EMAIL_USE_TLS=true KEYSTONED_EMAIL_CA_FILE=$KS_SMTP_CA EMAIL_HOST_USER=kuser EMAIL_HOST_PASSWORD=kpass run notify_upcoming_expirations); rc=$?
check_eq "STARTTLS with a verified certificate and AUTH: sent" "0 1" "$rc $(printf '%s' "$out" | jget result.sent)"
check_eq "over TLS, authenticated" "yes kuser" "$(mailq get tina@example.org X-TLS) $(mailq get tina@example.org X-Auth)"
ks_smtp_restart

# --- keystoned killed in the middle of a run: nothing lost -----------------------------------------
sqlrun <<'SQL'
SELECT t_team('Crash');
SELECT t_user('c' || lpad(i::text, 3, '0'), 'c' || lpad(i::text, 3, '0') || '@example.org') FROM generate_series(1, 150) i;
SELECT t_member('c' || lpad(i::text, 3, '0'), 'Crash') FROM generate_series(1, 150) i;
SELECT t_request('Crash', 'Crash request', -400, 30);
SELECT t_team('Backoff'), t_user('sam', 'sam@example.org'), t_member('sam', 'Backoff'), t_request('Backoff', 'Backoff request', -400, 30);
-- sam's notice failed before and must wait a day: a scheduled run leaves it alone.
INSERT INTO keystone_slurm.notice_retry (user_id, notification_type, request_id, metadata, attempts,
    first_failed_at, last_attempt_at, next_attempt_at, last_error)
SELECT u.id, 'RE', r.id, jsonb_build_object('request_id', r.id, 'days_to_expire', 30), 3, now(), now(),
       now() + interval '1 day', 'earlier failure'
FROM users_user u, allocations_allocationrequest r WHERE u.username = 'sam' AND r.title = 'Backoff request';
-- keystoned was down at midnight: the next start runs the missed slot.
INSERT INTO keystone_slurm.task_schedule (task_name, last_slot, updated_at)
VALUES ('apps.notifications.tasks.upcoming_expirations.notify_upcoming_expirations', now() - interval '2 days', now());
SQL
RC=$(rid 'Crash request')
crashed() { ks_sql "SELECT count(*) FROM notifications_notification WHERE metadata->'request_id' = to_jsonb($RC::bigint)"; }
conf "KEYSTONED_SCHEDULE_LDAP_UPDATE_USERS=off" "KEYSTONED_SCHEDULE_CLEAR_LOG_RECORDS=off" \
    "KEYSTONED_SCHEDULE_SLURM_UPDATE_JOB_STATS=off" \
    "KEYSTONED_SCHEDULE_NOTIFY_PAST_EXPIRATIONS=off" "KEYSTONED_LOG_LEVEL=verbose"
ks_smtp_restart --delay 0.05
daemon_pid=
stop_daemon() { [ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null; wait "$daemon_pid" 2>/dev/null; daemon_pid=; }
ks_on_exit stop_daemon
"$KEYSTONED" >>"$KS_TMP/keystoned.log" 2>&1 &
daemon_pid=$!
some_sent() { [ "$(crashed)" -ge 20 ]; }
check "keystoned's catch-up run is sending" ks_wait_for 60 some_sent
kill -KILL "$daemon_pid"; wait "$daemon_pid" 2>/dev/null; daemon_pid=
before=$(crashed)
check_match "killed part way ($before of 150 recorded)" "^([2-9][0-9]|1[0-4][0-9])$" "$before" ||
    tail -n 30 "$KS_TMP/keystoned.log" | sed 's/^/#   /'
ks_smtp_restart
"$KEYSTONED" >>"$KS_TMP/keystoned.log" 2>&1 &
daemon_pid=$!
finished() { [ "$(ks_sql "SELECT count(*) FROM django_celery_results_taskresult WHERE periodic_task_name = 'apps.notifications.tasks.upcoming_expirations.notify_upcoming_expirations' AND status = 'SUCCESS'")" -ge 1 ]; }
check "the restarted keystoned runs the unfinished slot again" ks_wait_for 60 finished
stop_daemon
check_eq "all 150 recorded, once each" "150 150" "$(crashed) $(ks_sql "SELECT count(DISTINCT user_id) FROM notifications_notification WHERE metadata->'request_id' = to_jsonb($RC::bigint)")"
missing=0; total=0
for i in $(seq -f '%03g' 1 150); do
    n=$(mailq count "c$i@example.org"); total=$((total + n)); [ "$n" -ge 1 ] || missing=$((missing + 1))
done
check_eq "every member got the message" "0" "$missing"
check_match "at most one sent twice (a kill between acceptance and record): $total messages" "^(150|151)$" "$total"
check_eq "the killed run's record is closed, none left STARTED" "0" "$(ks_sql "SELECT count(*) FROM django_celery_results_taskresult WHERE status = 'STARTED'")"
result=$(ks_sql "SELECT result FROM django_celery_results_taskresult WHERE periodic_task_name IS NOT NULL AND status = 'SUCCESS' ORDER BY date_created DESC LIMIT 1")
check_eq "the scheduled run left sam's notice to its retry time" "1 0" "$(printf '%s' "$result" | jget deferred_backoff) $(mailq count sam@example.org)"
check_eq "keystonectl run tries it at once" "1" "$(run notify_upcoming_expirations >/dev/null; mailq count sam@example.org)"

ks_done
