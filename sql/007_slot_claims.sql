-- SPDX-License-Identifier: GPL-2.0-or-later
-- Why: two keystoned against one database (a head node per cluster, or an HA pair) must run each
-- schedule slot of a task once, not once per daemon. The per-task advisory lock only keeps runs
-- from overlapping: a daemon that starts after the other finished would run the slot again. The
-- daemon whose INSERT of (task, scope, slot) succeeds runs the slot; the other does nothing for
-- it. scope is '' for a global task and the cluster's name for a per-cluster task (one claim per
-- cluster, so each cluster's sub-run runs once, where that cluster is served). A claim is inserted
-- while its claimer holds the (task, scope) advisory lock and marked done (done_at) before the
-- lock is released, so a claim without done_at whose lock nobody holds was abandoned (its
-- claimer died or lost PostgreSQL) and another daemon may take it over (daemon/runner.cpp).

CREATE TABLE keystone_slurm.slot_claim (
    task_name  text NOT NULL,               -- Keystone's dotted task name
    scope      text NOT NULL,               -- '' (global task) or allocations_cluster.name
    slot       timestamptz NOT NULL,        -- the schedule slot (a whole minute)
    worker     text NOT NULL,               -- the claimer's worker name (KEYSTONED_WORKER or host)
    claimed_at timestamptz NOT NULL,
    task_id    varchar(255),                -- the run's django_celery_results_taskresult.task_id
    done_at    timestamptz,                 -- the run recorded its outcome; NULL: running or abandoned
    takeovers  integer NOT NULL DEFAULT 0,  -- how often an abandoned claim was taken over
    PRIMARY KEY (task_name, scope, slot)
);
