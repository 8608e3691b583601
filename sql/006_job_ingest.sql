-- SPDX-License-Identifier: GPL-2.0-or-later
-- Why: the spool ingest now writes jobs it has not seen with a plain COPY into keystone_slurm.job
-- (daemon/jobs.cpp), and what a row costs then is mostly the table's indexes. The b-tree on
-- (cluster, "end") took every row at a random place (jobs end in any order of their ids) and
-- cost more than the row itself. The one query that needs it, the window read of the
-- reconciliation and `keystonectl jobs check` (load_jobs: a cluster's jobs not ended before the
-- window starts), is served as well by two cheap indexes it combines with a BitmapOr:
--   - a BRIN index on "end": rows arrive roughly in the order jobs end (the plugin writes them at
--     completion), so a block range's ends are close together and the index is a few pages that
--     an insert rarely touches; autosummarize keeps new ranges summarized without waiting for
--     VACUUM (until then a range is simply read);
--   - a partial b-tree on cluster for jobs that have not ended (the running jobs the
--     reconciliation records), which ended jobs, all the ingest writes, never enter.
DROP INDEX keystone_slurm.job_cluster_end;
CREATE INDEX job_end ON keystone_slurm.job USING brin ("end") WITH (autosummarize = on);
CREATE INDEX job_cluster_running ON keystone_slurm.job (cluster) WHERE "end" IS NULL;
