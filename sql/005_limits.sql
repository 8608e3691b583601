-- SPDX-License-Identifier: GPL-2.0-or-later
-- Why: Keystone's update_limits changed GrpTRESMins and settled allocations (final) without a
-- trace: its writes were bulk updates and sacctmgr calls, so django-auditlog recorded nothing
-- (spec §1). keystoned records every change it makes to a Slurm limit or to a final value here,
-- one row per account and run, with what the computation read and why it decided.

CREATE TABLE keystone_slurm.limit_change (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id       varchar(255),          -- the update_limits_for_cluster run (task record)
    changed_at    timestamptz NOT NULL,  -- the run's time
    cluster       text NOT NULL,         -- Slurm's ClusterName (allocations_cluster.name)
    account       text NOT NULL,         -- Slurm account (users_team.slug)
    team_id       bigint,                -- users_team.id when the change was made
    old_minutes   bigint,                -- GrpTRESMins billing before; NULL: not set
    new_minutes   bigint NOT NULL,       -- GrpTRESMins billing after (= old when unchanged)
    usage_minutes bigint NOT NULL,       -- billing usage (GrpTRESRaw) that the run read
    limit_written boolean NOT NULL,      -- whether the Slurm limit was written
    locked        boolean NOT NULL,      -- inactive team: limit set to its current usage
    -- Allocations settled by this change: [{"allocation": id, "request": id, "awarded": n,
    -- "final": n, "expire": "YYYY-MM-DD"}], in settlement order.
    settlements   jsonb NOT NULL DEFAULT '[]',
    reason        text NOT NULL,         -- how the new limit was derived
    forced        boolean NOT NULL DEFAULT false -- applied over the circuit breaker (--force)
);

CREATE INDEX limit_change_cluster_account ON keystone_slurm.limit_change (cluster, account, changed_at);
CREATE INDEX limit_change_changed_at ON keystone_slurm.limit_change (changed_at);
