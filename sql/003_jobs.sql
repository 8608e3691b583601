-- SPDX-License-Identifier: GPL-2.0-or-later
-- Why: finished (and running) Slurm jobs, from two sources that must agree: the jobcomp/keystone
-- plugin's spool (ingested by keystoned) and slurmdbd (read by the reconciliation task
-- slurm_update_job_stats). Keystone's own allocations_jobstats (spec §5) was keyed on the job id
-- alone, so two clusters, or a job id that wrapped, overwrote each other; this table is keyed on
-- (cluster, job_id, submit). Column names follow Keystone's old job list (jobid, jobname,
-- alloctres, "start", "end", ...) so its users find what they knew, plus what sacct shows.
--
-- Values are those sacct -P prints, in typed form: times are timestamptz (UTC inside), exit
-- codes are "code:signal" text, elapsed is an interval (0 for a job that never ran), alloctres
-- is Slurm's "name=count" list with names (cpu=2,mem=500M,node=1,billing=2). An empty string
-- from Slurm is stored as NULL, as Keystone did.

CREATE TABLE keystone_slurm.job (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cluster         text NOT NULL,        -- Slurm's ClusterName
    job_id          bigint NOT NULL,      -- the numeric job id (for an array task, its own id)
    submit          timestamptz NOT NULL, -- submit time: with cluster and job_id, the key
    jobid           text NOT NULL,        -- as sacct prints it: 123, 120_3, 130+1
    array_job_id    bigint,               -- NULL: not an array job
    array_task_id   bigint,
    het_job_id      bigint,               -- NULL: not a heterogeneous job
    het_job_offset  bigint,
    het_job_info    text,                 -- the het job's component ids, e.g. "130-131"
    jobname         text,
    username        text,
    uid             bigint,
    "group"         text,
    gid             bigint,
    account         text,
    partition       text,
    qos             text,
    state           text NOT NULL,        -- base state: COMPLETED, FAILED, CANCELLED, RUNNING, ...
    exitcode        text,                 -- "code:signal"
    derivedexitcode text,                 -- "code:signal"
    eligible        timestamptz,
    start           timestamptz,          -- NULL: never started
    "end"           timestamptz,          -- NULL: not ended
    elapsed         interval NOT NULL,    -- run time, suspended time excluded
    timelimit_min   bigint,               -- minutes; -1: UNLIMITED; NULL: not set
    allocnodes      integer,
    nodelist        text,
    alloccpus       integer,
    alloctres       text,
    billing         double precision,
    priority        bigint,
    workdir         text,
    reservation     text,
    -- Links to Keystone, set at every write; NULL when nothing matches.
    cluster_id      bigint,               -- allocations_cluster.id where name = cluster
    team_id         bigint,               -- users_team.id where slug = account
    user_id         bigint,               -- users_user.id where username = username
    source          text NOT NULL CHECK (source IN ('jobcomp', 'slurmdbd')), -- last writer
    created_at      timestamptz NOT NULL DEFAULT now(),   -- first seen; never changed
    updated_at      timestamptz NOT NULL DEFAULT now(),   -- last changed
    CONSTRAINT job_key UNIQUE (cluster, job_id, submit)
);
-- The reconciliation and `keystonectl jobs check` select a cluster's jobs by time window.
CREATE INDEX job_cluster_end ON keystone_slurm.job (cluster, "end");

-- Per cluster: the reconciliation has read slurmdbd up to `reconciled_to`; the next run reads from
-- reconciled_to minus KEYSTONED_JOBS_OVERLAP.
CREATE TABLE keystone_slurm.job_watermark (
    cluster       text PRIMARY KEY,
    reconciled_to timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

-- Spool files keystoned could not ingest: moved to the quarantine folder, recorded here.
CREATE TABLE keystone_slurm.spool_quarantine (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file           text NOT NULL,         -- the file's path in the quarantine folder
    reason         text NOT NULL,         -- why, naming the record and line where one is to blame
    worker         text NOT NULL,         -- which keystoned (KEYSTONED_WORKER)
    quarantined_at timestamptz NOT NULL
);

-- Ingest counters per keystoned, for keystonectl and monitoring.
CREATE TABLE keystone_slurm.ingest_state (
    worker            text PRIMARY KEY,
    files_ingested    bigint NOT NULL DEFAULT 0,
    records_ingested  bigint NOT NULL DEFAULT 0,
    files_quarantined bigint NOT NULL DEFAULT 0,
    last_ingest_at    timestamptz,
    last_error        text,
    last_error_at     timestamptz
);
