-- SPDX-License-Identifier: GPL-2.0-or-later
-- Why: the LDAP sync reactivates users who come back to the directory, but only those the sync
-- itself deactivated; a user an admin deactivated by hand stays inactive. Keystone's users_user has
-- no column for who deactivated a user, so the sync records its own deactivations here: a row
-- exists exactly while a user is inactive because the sync made it so.

CREATE TABLE keystone_slurm.ldap_user_state (
    username       varchar(150) PRIMARY KEY,  -- users_user.username
    deactivated_at timestamptz NOT NULL       -- when the sync deactivated the user
);
