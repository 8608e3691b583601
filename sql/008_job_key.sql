-- SPDX-License-Identifier: GPL-2.0-or-later
-- Why: after migration 006, what an ingested row costs PostgreSQL is mostly its two b-tree
-- entries: the surrogate key "id" (an identity value and its primary-key index) and the job's
-- own key job_key (cluster, job_id, submit). Nothing reads "id": every lookup, the upsert and
-- Keystone's links use the job's key. So:
--   - "id" goes, with its sequence and index;
--   - the job's key becomes the primary key, with job_id first: an insert then compares two
--     bigints where it compared the cluster's text with a collation first (every row of a
--     spool has the same cluster, so that comparison never decided anything), and the lookups
--     by job id alone (keystonectl, sacct cross-checks) use the index too.
-- The constraint keeps its name, job_key: the upsert names it (ON CONFLICT ON CONSTRAINT).
ALTER TABLE keystone_slurm.job DROP COLUMN id;
ALTER TABLE keystone_slurm.job DROP CONSTRAINT job_key;
ALTER TABLE keystone_slurm.job ADD CONSTRAINT job_key PRIMARY KEY (job_id, submit, cluster);
