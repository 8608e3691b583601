-- SPDX-License-Identifier: GPL-2.0-or-later
-- Why: an expiration notice is recorded in Keystone's notifications_notification only after the
-- SMTP server accepted it, so a notice whose send failed leaves no trace there and is simply due
-- again on the next run. This table holds what the retries need in between: how often sending it
-- failed, when to try again (backoff) and why it failed, one row per (user, notice type, request).
-- A row is deleted when the notice is sent, or when it is no longer due (its window has passed,
-- the user opted out, the request changed).

CREATE TABLE keystone_slurm.notice_retry (
    user_id           bigint NOT NULL,        -- users_user.id
    notification_type varchar(2) NOT NULL,    -- Keystone's type: 'RE' upcoming, 'RD' past expiration
    request_id        bigint NOT NULL,        -- allocations_allocationrequest.id
    metadata          jsonb NOT NULL,         -- the notice's metadata at the last attempt
    attempts          integer NOT NULL CHECK (attempts > 0),
    first_failed_at   timestamptz NOT NULL,
    last_attempt_at   timestamptz NOT NULL,
    next_attempt_at   timestamptz NOT NULL,   -- scheduled runs leave it alone until then
    last_error        text NOT NULL,
    CONSTRAINT notice_retry_key PRIMARY KEY (user_id, notification_type, request_id)
);
