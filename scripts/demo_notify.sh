# SPDX-License-Identifier: GPL-2.0-or-later
# Part of the quick start (sourced by scripts/demo.sh): the expiration notices. Starts a private
# SMTP sink, gives Smith Lab a request that expires in 30 days and one that expired today, shows
# the dry run, runs both notification tasks and prints the messages the sink captured and the
# rows of Keystone's in-app inbox. Uses demo.sh's step(), $src and its running PostgreSQL.
# shellcheck shell=bash

demo_notifications() {
    # shellcheck disable=SC2154 # $src is demo.sh's
    # shellcheck source=../tests/lib/smtp.sh
    . "$src/tests/lib/smtp.sh"
    step "Starting a private SMTP sink (python3-aiosmtpd) on 127.0.0.1"
    ks_smtp_start
    echo "SMTP sink on 127.0.0.1:$KS_SMTP_PORT, capturing to $KS_SMTP_MAILDIR/new"
    # The e-mail settings for the runs below, as environment overrides of keystoned.conf.
    local mail=(env EMAIL_HOST=127.0.0.1 "EMAIL_PORT=$KS_SMTP_PORT"
        EMAIL_FROM_ADDRESS=keystone@example.org KEYSTONED_NOTIFY_RETRY_WINDOW=0
        KEYSTONED_NOTIFY_SETTLE_WAIT=0)

    step "Smith Lab (admin and alice): a request expiring in 30 days, one that expired today"
    psql -X -q -v ON_ERROR_STOP=1 -o /dev/null <<'SQL'
INSERT INTO users_membership (role, user_id, team_id)
SELECT CASE WHEN u.username = 'admin' THEN 'OW' ELSE 'MB' END, u.id, t.id
FROM users_user u, users_team t WHERE t.slug = 'smith-lab' AND u.username IN ('admin', 'alice')
ON CONFLICT DO NOTHING;
INSERT INTO allocations_cluster (name, description, enabled, access_mode)
VALUES ('demo-smp', 'a cluster for the notice demo (not reconciled)', false, 'OP');
INSERT INTO allocations_allocationrequest (title, description, submitted, active, expire, status, submitter_id, team_id)
SELECT 'Protein folding on GPUs', 'demo', now() - interval '340 days', current_date - 335, current_date + 30, 'AP', 1, id
FROM users_team WHERE slug = 'smith-lab'
UNION ALL
SELECT 'Summer allocation', 'demo', now() - interval '400 days', current_date - 365, current_date, 'AP', 1, id
FROM users_team WHERE slug = 'smith-lab';
INSERT INTO allocations_resourceallocation (requested, awarded, final, cluster_id, request_id)
SELECT CASE WHEN r.title = 'Summer allocation' THEN 50000 ELSE 60000 END,
       CASE WHEN r.title = 'Summer allocation' THEN 50000 ELSE 45000 END,
       CASE WHEN r.title = 'Summer allocation' THEN 41234 END, c.id, r.id
FROM allocations_allocationrequest r, allocations_cluster c WHERE c.name = 'demo-smp';
SQL
    psql -X -q -P footer=off -c "SELECT r.id, r.title, r.status, r.active, r.expire, t.name AS team
        FROM allocations_allocationrequest r JOIN users_team t ON t.id = r.team_id ORDER BY r.id" | sed 's/^/    /'

    step "keystonectl run notify_upcoming_expirations --dry-run   (who would get what)"
    "${mail[@]}" "$KEYSTONECTL" run notify_upcoming_expirations --dry-run | sed 's/^/    /'

    step "keystonectl run notify_upcoming_expirations; keystonectl run notify_past_expirations"
    "${mail[@]}" "$KEYSTONECTL" run notify_upcoming_expirations | sed 's/^/    /'
    "${mail[@]}" "$KEYSTONECTL" run notify_past_expirations | sed 's/^/    /'

    step "The messages the SMTP sink captured ($(ks_smtp_count)), decoded"
    /usr/bin/python3 - "$KS_SMTP_MAILDIR/new" <<'PY' | sed 's/^/    /'
import email, os, sys
from email import policy
d = sys.argv[1]
for n in sorted(os.listdir(d)):
    m = email.message_from_binary_file(open(os.path.join(d, n), "rb"), policy=policy.default)
    print("-" * 78)
    for h in ("X-Envelope-To", "From", "To", "Subject", "Date", "Message-ID"):
        print("%s: %s" % (h, m[h]))
    print("parts: " + ", ".join(p.get_content_type() for p in m.iter_parts()))
    print()
    print(m.get_body(("plain",)).get_content().rstrip())
PY

    step "Keystone's in-app inbox: notifications_notification"
    psql -X -q -P footer=off -c "SELECT n.id, u.username, n.notification_type AS type, n.metadata, n.subject, n.read
        FROM notifications_notification n JOIN users_user u ON u.id = n.user_id ORDER BY n.id" | sed 's/^/    /'

    step "A second run sends nothing: every notice is sent once"
    "${mail[@]}" "$KEYSTONECTL" run notify_upcoming_expirations --json |
        /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin)["result"]; print("    sent %d of %d candidate notices" % (r["sent"], r["candidates"]))'
}
