-- SPDX-License-Identifier: GPL-2.0-or-later
-- Why: keystoned's own bookkeeping, in its own schema apart from Keystone's tables: which schedule
-- slot each task last ran for (so a daemon that was down runs a missed task once on start-up), and
-- which runs are in progress where (so a run abandoned by a killed process is closed as FAILURE).

CREATE TABLE keystone_slurm.task_schedule (
    task_name    text PRIMARY KEY,          -- Keystone's dotted task name
    last_slot    timestamptz NOT NULL,      -- the scheduled time of the last run that ended
    last_status  varchar(50),               -- SUCCESS or FAILURE of that run
    last_task_id varchar(255),              -- its django_celery_results_taskresult.task_id
    updated_at   timestamptz NOT NULL
);

CREATE TABLE keystone_slurm.running_task (
    task_id    varchar(255) PRIMARY KEY,    -- django_celery_results_taskresult.task_id
    task_name  text NOT NULL,
    host       text NOT NULL,               -- the worker column: which host's process owns it
    pid        integer NOT NULL,
    pid_start  bigint NOT NULL,             -- the process's start time (/proc/PID/stat field 22)
    started_at timestamptz NOT NULL
);
