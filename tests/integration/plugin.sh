#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# jobcomp/keystone loaded into a real slurmctld (single-node cluster on loopback): its start-up
# line, only plugin symbols exported, jobs of every kind reaching the spool, records surviving
# kill -9 of slurmctld, bad JobCompParams refused loudly, sacct -c harmless.
. "${KS_SRCDIR:-.}/tests/lib/common.sh"
. "$KS_SRCDIR/tests/lib/slurm.sh"
so=$KS_BUILDDIR/plugins/jobcomp/.libs/jobcomp_keystone.so
[ -f "$so" ] || ks_missing_service "the jobcomp/keystone plugin was not built: configure --with-slurm-source=DIR (scripts/fetch-slurm-source.sh fetches it)"
ks_scratch

check_eq "exports only the plugin's entry points" \
    "fini init jobcomp_p_get_jobs jobcomp_p_log_record jobcomp_p_set_location plugin_name plugin_type plugin_version" \
    "$(nm -D --defined-only "$so" | awk '{ print $3 }' | sort | tr '\n' ' ' | sed 's/ $//')"
check "not linked against libslurm (slurmctld provides Slurm's symbols)" bash -c "! ldd '$so' | grep -q libslurm"

plugins=$KS_TMP/plugins
spool=$KS_TMP/spool
mkdir -p "$plugins" "$spool"
cp "$so" "$plugins/"
ks_slurm_start jobcomp/keystone "$plugins" "$spool" "batch_size=50,flush_interval_ms=100"
check "slurmctld logs the plugin's start-up line" grep -q "jobcomp/keystone: started: spool $spool" "$KS_SLURMCTLD_LOG"

# All records in the spool, one JSON object a line: "job_id state exit_code ..." per record.
records() {
    /usr/bin/python3 - "$spool" <<'PY'
import glob, json, os, sys
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    if not os.path.basename(path)[0].isdigit():
        continue  # plugin-stats.json: the worker's counters
    with open(path) as f:
        lines = f.read().splitlines()
    header = json.loads(lines[0])
    assert header["count"] == len(lines) - 1, path
    for line in lines[1:]:
        r = json.loads(line)
        print(r["job_id"], r["job_name"], r["user"], r["account"], r["state"], r["exit_code"],
              r["exit_signal"], r["array_job_id"], r["array_task_id"], r["cluster"],
              r["submit_time"])
PY
}
count() { records | wc -l; }
at_least() { [ "$(count)" -ge "$1" ]; }

ks_slurm_add_accounts proja
ks_slurm_add_user ktest proja
# Jobs run in the cluster's own folder (writable by ktest), not in the build tree.
cd "$KS_SLURM_JOBDIR" || exit 99
sbatch -J ok --wrap 'true' >/dev/null
sbatch -J failing --wrap 'exit 3' >/dev/null
srun -J srun-ok -n1 true
runuser -u ktest -- env SLURM_CONF="$SLURM_CONF" sbatch -J as-ktest -A proja --wrap 'true' >/dev/null
sbatch -J arr --array=1-3 --wrap 'true' >/dev/null
pending=$(sbatch --parsable -J pending --begin=now+1hour --wrap 'true')
scancel "$pending"
check "all jobs finished" ks_slurm_wait_jobs_done 90
check "8 records reach the spool" ks_wait_for 20 at_least 8
out=$(records)
check_eq "one record per job (no duplicates)" "8" "$(printf '%s\n' "$out" | awk '{ print $1 }' | sort -u | wc -l)"
check_match "a successful batch job" "^[0-9]+ ok root root COMPLETED 0 0 None None ks [0-9]+$" "$out"
check_match "a failing job: FAILED, exit code 3" "^[0-9]+ failing root root FAILED 3 0 " "$out"
check_match "an srun job" "^[0-9]+ srun-ok root root COMPLETED 0 0 " "$out"
check_match "an ordinary user's job with its account" "^[0-9]+ as-ktest ktest proja COMPLETED 0 0 " "$out"
check_eq "three array tasks with their array ids" "1 2 3" \
    "$(printf '%s\n' "$out" | awk '$2 == "arr" && $8 != "None" { print $9 }' | sort -n | tr '\n' ' ' | sed 's/ $//')"
check_match "a job cancelled while pending" "^$pending pending root root CANCELLED " "$out"
check "the worker publishes its counters" ks_wait_for 10 test -s "$spool/plugin-stats.json"

# Records on disk survive slurmctld being killed with kill -9, and the plugin works again after
# the restart. (jobs.sh kills slurmctld before it has saved the jobs' end, end to end through
# keystoned and the reconciliation.)
has_job() { records | awk -v id="$1" -v name="$2" '$1 == id && $2 == name { found = 1 } END { exit !found }'; }
ids=()
for _ in 1 2 3; do ids+=("$(sbatch --parsable -J before-kill --wrap 'true')"); done
ks_slurm_wait_jobs_done 60
for id in "${ids[@]}"; do ks_wait_for 10 has_job "$id" before-kill; done
# Killed once slurmctld has saved these jobs as ended. Killed before that save, it brings them
# back PENDING, may hand their ids out again and requeues them minutes later. (One CI run saw
# the job after the restart not arrive within 180 s, killed without this wait; if it happens
# again, the output below says what Slurm made of that job.)
ks_slurmctld_wait_saved
ks_slurmctld_kill9
for id in "${ids[@]}"; do check "JobId=$id is on disk after kill -9 of slurmctld" has_job "$id" before-kill; done
check "slurmctld starts again with the plugin" ks_slurmctld_start
check "the node registers again" ks_slurm_wait_node 180
after=$(sbatch --parsable -J after-restart --wrap 'true' 2>&1)
check_match "a job is accepted after the restart" '^[0-9]+$' "$after"
arrived=0; ks_wait_for 180 has_job "$after" after-restart && arrived=1
check_eq "a job after the restart arrives too" 1 "$arrived"
if [ "$arrived" = 0 ]; then
    # What Slurm made of it, for the log of a failed run.
    { scontrol show job "$after"; sinfo -N; squeue; ls -l "$spool"
      tail -n 40 "$KS_SLURMCTLD_LOG"; tail -n 20 "$KS_SLURM_LOG"/slurmd.*; } 2>&1 | sed 's/^/#   /'
fi
check "slurmctld is still up after it" ks_slurmctld_ready
# A record written twice is harmless (keystoned's upsert); a missing one is not.
names=$(records | awk '!seen[$1 " " $2 " " $11]++ { print $2 }')
check_eq "every kind of job of the run is in the spool" "after-restart arr as-ktest before-kill failing ok pending srun-ok" \
    "$(printf '%s\n' "$names" | sort -u | tr '\n' ' ' | sed 's/ $//')"
check_match "with all three array tasks and all three jobs killed around" "^[3-9] [3-9]$" \
    "$(printf '%s\n' "$names" | grep -c '^arr$') $(printf '%s\n' "$names" | grep -c '^before-kill$')"
check "no temporary files are left" bash -c "! ls -a '$spool' | grep -q '^\.tmp'"

# sacct -c loads the plugin in the sacct process: it must do nothing there.
files=$(ls "$spool" | wc -l)
sacct -c >/dev/null 2>&1; rc=$?
check_match "sacct -c does not crash (exit $rc)" "^[0-9]$|^[0-9][0-9]$|^1[01][0-9]$|^12[0-7]$" "$rc"
check_eq "and writes nothing" "$files" "$(ls "$spool" | wc -l)"

# An unknown JobCompParams key fails loudly at start-up.
ks_slurm_set_jobcomp jobcomp/keystone "$spool" "queue_size=1000,bogus=1"
check "slurmctld logs the bad key" grep -q "jobcomp/keystone: JobCompParams=queue_size=1000,bogus=1: .*bogus" "$KS_SLURMCTLD_LOG"

ks_done
