#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The reconciliation against a real cluster whose slurmctld does NOT load jobcomp/keystone (so
# every row comes from slurmdbd): jobs of every kind recorded exactly as sacct prints them, one
# sub-run record per cluster, running jobs updated when they end, idempotent reruns, dry runs,
# backfill with --since, `keystonectl jobs check` finding changed, deleted and bogus rows, a
# stopped slurmdbd (FAILURE naming the cluster, watermark kept) and a cluster slurmdbd does not
# know (FAILURE for that cluster only).
. "${KS_SRCDIR:-.}/tests/lib/common.sh"
. "$KS_SRCDIR/tests/lib/slurm.sh"
. "$KS_SRCDIR/tests/lib/pg.sh"
. "$KS_SRCDIR/tests/lib/sacct.sh"
ks_scratch
ks_pg_start
ks_slurm_start jobcomp/none
t0=$(date +%s)

check "keystonectl exports the symbols Slurm's slurmdbd plugin needs" \
    bash -c "nm -D --defined-only '$KEYSTONECTL' | grep -q ' slurmdbd_msg_type_2_str\$' &&
             nm -D --defined-only '$KEYSTONECTL' | grep -q ' rpc_num2string\$' &&
             nm -D --defined-only '$KEYSTONED' | grep -q ' slurmdbd_msg_type_2_str\$'"

# Memory as a consumable resource, so AllocTRES has mem= (which sacct prints with a unit).
ks_slurm_conf_set SelectTypeParameters CR_Core_Memory
ks_slurm_conf_set DefMemPerCPU 100
ks_slurm_conf_set NodeName "localhost NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=4096 State=UNKNOWN"
ks_slurmctld_stop
ks_slurmd_stop
ks_slurmctld_start
ks_slurmd_start
ks_slurm_add_accounts proja
ks_slurm_add_user ktest proja

ks_write_conf "KEYSTONED_SLURM_CONF=$SLURM_CONF"
"$KEYSTONECTL" db migrate --keystone-schema >"$KS_TMP/migrate.out" 2>&1 || { cat "$KS_TMP/migrate.out"; exit 99; }
ks_sql "INSERT INTO allocations_cluster (name, description, enabled, access_mode)
        VALUES ('$KS_SLURM_CLUSTER', 'test', true, 'OP')"

# --- jobs of every kind ----------------------------------------------------------------------
cd "$KS_SLURM_JOBDIR" || exit 99
sb() { sbatch --parsable "$@" | cut -d';' -f1; }
as_ktest() { runuser -u ktest -- env SLURM_CONF="$SLURM_CONF" "$@"; }
is_running() { [ "$(squeue -h -j "$1" -o %T 2>/dev/null)" = RUNNING ]; }
is_pending() { [ "$(squeue -h -j "$1" -o %T 2>/dev/null)" = PENDING ]; }
# Slurm's shortest time limit is a minute, checked every 30 s or so: submitted first, this job
# times out while the rest of the test runs (on one CPU; the short jobs share the other).
j_timeout=$(sb -J timeout --time=1 --wrap 'sleep 600')
ks_wait_for 30 is_running "$j_timeout"
j_batch=$(sb -J batch --wrap true)
j_srun=$(srun -J srun -n1 bash -c 'echo $SLURM_JOB_ID')
j_fail=$(sb -J failing --wrap 'exit 3')
j_sig=$(sb -J signalled --wrap 'kill -9 $$')
j_mem=$(sb -J mem1536 --mem=1536 --wrap true)
j_mem2=$(sb -J mem2048 --mem=2048 --wrap true)
j_array=$(sb -J array --array=1-3 --wrap true)
j_held=$(sb -J held --hold --wrap true)
scancel "$j_held"
j_ktest=$(as_ktest sbatch --parsable -J as-ktest -A proja --wrap true)
j_ktest_srun=$(as_ktest srun -J ktest-srun -A proja -n1 bash -c 'echo $SLURM_JOB_ID')
for id in "$j_batch" "$j_srun" "$j_fail" "$j_sig" "$j_mem" "$j_mem2" "$j_array" "$j_held" "$j_ktest" "$j_ktest_srun"; do
    ks_slurm_wait_in_sacct "$id" 60 >/dev/null || ks_fail "JobId=$id reached slurmdbd in a final state"
done
# A job that runs until the test lets it end, then one pending for resources (the two running
# jobs hold the memory it needs), cancelled: eligible, never started.
j_running=$(sb -J running --wrap "while [ ! -e '$KS_SLURM_JOBDIR/release' ]; do sleep 0.2; done")
ks_wait_for 30 is_running "$j_running"
j_waiting=$(sb -J waiting --mem=4000 --wrap true)
ks_wait_for 30 is_pending "$j_waiting"
scancel "$j_waiting"
ks_slurm_wait_in_sacct "$j_waiting" 60 >/dev/null || ks_fail "JobId=$j_waiting reached slurmdbd cancelled"
# Arrays whose tasks wait for memory too: slurmdbd keeps one record for an array's pending tasks,
# which sacct shows as ID_[tasks], here a step range with a task limit, and a list so long that
# sacct cuts it ("...").
j_parr=$(sb -J pending-array --mem=4000 --array=1-200:7%3 --wrap true)
long=$(for i in $(seq 0 29); do printf '%d-%d,' $((3 * i + 1)) $((3 * i + 2)); done)
j_parr2=$(sb -J pending-array2 --mem=4000 --array="${long%,}" --wrap true)
ks_wait_for 30 is_pending "$j_parr"
ks_wait_for 30 is_pending "$j_parr2"
ended=("$j_batch" "$j_srun" "$j_fail" "$j_sig" "$j_mem" "$j_mem2" "$j_array" "$j_held" "$j_ktest" "$j_ktest_srun" "$j_waiting")
check "the running job is running" is_running "$j_running"
check "slurmdbd has the full record of every job" \
    ks_wait_for 30 ks_sacct_settled "${ended[@]}" "$j_running" "$j_timeout" "$j_parr" "$j_parr2"
# 11 ended ids (the array has 3 tasks), the running job, the one timing out, 2 pending arrays.
n_jobs=17
# The run's window ends at its own time, exclusive, as sacct's -E does: a job that becomes
# eligible in that very second is read by the next run. Start the run after the pending arrays'
# eligible time has passed (under load it may lag their submission by a few seconds).
eligible_past() {
    local id e
    for id in "$@"; do
        e=$(sacct -n -X -P -j "$id" -o Eligible 2>/dev/null | head -n 1)
        case $e in '' | Unknown | None) return 1 ;; esac
        [ "$(date -d "$e" +%s)" -lt "$(date +%s)" ] || return 1
    done
}
check "the pending arrays became eligible before the run starts" ks_wait_for 30 eligible_past "$j_parr" "$j_parr2"

# --- first run: every job filled in -----------------------------------------------------------
run_json() { "$KEYSTONECTL" run slurm_update_job_stats "$@" --json 2>"$KS_TMP/run.err"; }
jq_() { /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
out=$(run_json); rc=$?
check_eq "first run exits 0" 0 "$rc"
check_eq "first run: SUCCESS" SUCCESS "$(printf '%s' "$out" | jq_ 'd["status"]')"
check_eq "filled_in counts every job (the plugin delivered none)" "$n_jobs" \
    "$(printf '%s' "$out" | jq_ 'd["result"]["filled_in"]')"
check_eq "and they are in keystone_slurm.job, written by slurmdbd" "$n_jobs slurmdbd" \
    "$(ks_sql "SELECT count(*) || ' ' || string_agg(DISTINCT source, ',') FROM keystone_slurm.job")"
check_match "running jobs are counted" "^[12]$" "$(printf '%s' "$out" | jq_ 'd["result"]["running"]')"
check_eq "the running job is recorded RUNNING, without an end" "RUNNING|true" \
    "$(ks_sql "SELECT state || '|' || (\"end\" IS NULL) FROM keystone_slurm.job WHERE job_id = $j_running")"
check "every field equals sacct -P (ks_compare_with_sacct)" \
    ks_compare_with_sacct "$KS_SLURM_CLUSTER" "${ended[@]}" "$j_running" "$j_timeout" "$j_parr" "$j_parr2"
check_eq "pending jobs are counted" 2 "$(printf '%s' "$out" | jq_ 'd["result"]["pending"]')"
check_eq "a pending array's tasks as sacct shows them: a step range with its limit" \
    "${j_parr}_[1-197:7%3] PENDING" "$(ks_sql "SELECT jobid || ' ' || state FROM keystone_slurm.job WHERE job_id = $j_parr")"
check_match "and a long list cut as sacct cuts it" "^${j_parr2}_\\[1-2,4-5,7-8,.{48}\\.\\.\\.\\]\$" \
    "$(ks_sql "SELECT jobid FROM keystone_slurm.job WHERE job_id = $j_parr2")"
check_eq "states, exit codes, users" \
    "batch COMPLETED 0:0 root|failing FAILED 3:0 root|signalled FAILED 0:9 root|held CANCELLED 0:0 root|as-ktest COMPLETED 0:0 ktest|waiting CANCELLED 0:0 root" \
    "$(ks_sql "SELECT string_agg(jobname || ' ' || state || ' ' || exitcode || ' ' || username, '|' ORDER BY job_id)
               FROM keystone_slurm.job WHERE job_id IN ($j_batch, $j_fail, $j_sig, $j_held, $j_ktest, $j_waiting)")"
check_eq "AllocTRES with names and memory units, billing" \
    "billing=1,cpu=1,mem=1.50G,node=1 1|billing=1,cpu=1,mem=2G,node=1 1" \
    "$(ks_sql "SELECT string_agg(alloctres || ' ' || billing, '|' ORDER BY job_id) FROM keystone_slurm.job
               WHERE job_id IN ($j_mem, $j_mem2)")"
check_eq "array tasks with their JobID" "${j_array}_1 ${j_array}_2 ${j_array}_3" \
    "$(ks_sql "SELECT string_agg(jobid, ' ' ORDER BY array_task_id) FROM keystone_slurm.job WHERE array_job_id = $j_array")"
check_eq "a job that never ran: no nodes (sacct: None assigned)" "|0" \
    "$(ks_sql "SELECT COALESCE(nodelist, '') || '|' || allocnodes FROM keystone_slurm.job WHERE job_id = $j_waiting")"

parent=$(printf '%s' "$out" | jq_ 'd["task_id"]')
sub=$(printf '%s' "$out" | jq_ 'd["result"]["subtasks"]["ks"]')
check_eq "one sub-run record for the cluster, as Celery's subtask" \
    "apps.allocations.tasks.jobstats.slurm_update_job_stats_for_cluster|('ks',)|SUCCESS" \
    "$(ks_sql "SELECT task_name || '|' || task_args || '|' || status FROM django_celery_results_taskresult WHERE task_id = '$sub'")"
check_match "its result holds the cluster's counts" "\"filled_in\": ?$n_jobs" \
    "$(ks_sql "SELECT result FROM django_celery_results_taskresult WHERE task_id = '$sub'")"
check_eq "the parent record is SUCCESS with no arguments" "SUCCESS|()" \
    "$(ks_sql "SELECT status || '|' || task_args FROM django_celery_results_taskresult WHERE task_id = '$parent'")"
mark1=$(ks_sql "SELECT extract(epoch FROM reconciled_to)::bigint FROM keystone_slurm.job_watermark WHERE cluster = 'ks'")
check_match "the watermark is set to the run's time" "^[0-9]+$" "$mark1"

out=$("$KEYSTONECTL" jobs check --since 2h 2>&1); rc=$?
check_eq "jobs check agrees (exit 0)" 0 "$rc"
check_match "and says so" "Cluster=ks .*agree: 0 missing, 0 extra, 0 different" "$out"

# --- a second run changes nothing -------------------------------------------------------------
stamps() { ks_sql "SELECT md5(string_agg(cluster || job_id || submit::text || updated_at::text, ',' ORDER BY job_id, submit, cluster)) FROM keystone_slurm.job WHERE job_id NOT IN ($j_running, $j_timeout, $j_parr, $j_parr2)"; }
before=$(stamps)
out=$(run_json)
check_eq "second run: nothing filled in" 0 "$(printf '%s' "$out" | jq_ 'd["result"]["filled_in"]')"
check_eq "ended jobs untouched (updated_at)" "$before" "$(stamps)"
check_eq "still $n_jobs rows" "$n_jobs" "$(ks_sql "SELECT count(*) FROM keystone_slurm.job")"

# --- the running jobs end ---------------------------------------------------------------------
scancel "$j_parr" "$j_parr2"
touch "$KS_SLURM_JOBDIR/release"
ks_slurm_wait_in_sacct "$j_running" 60 >/dev/null || ks_fail "the released job ended"
ks_slurm_wait_in_sacct "$j_timeout" 180 >/dev/null || ks_fail "the 1-minute job timed out"
ks_slurm_wait_in_sacct "$j_parr" 60 >/dev/null || ks_fail "the pending arrays were cancelled"
ks_slurm_wait_in_sacct "$j_parr2" 60 >/dev/null || ks_fail "the pending arrays were cancelled"
ks_wait_for 30 ks_sacct_settled "$j_running" "$j_timeout"
out=$(run_json)
check_eq "after they end: SUCCESS, nothing new" "SUCCESS 0" \
    "$(printf '%s' "$out" | jq_ 'd["status"] + " " + str(d["result"]["filled_in"])')"
check_eq "the running job is now COMPLETED, the other TIMEOUT" "COMPLETED|TIMEOUT" \
    "$(ks_sql "SELECT string_agg(state, '|' ORDER BY job_id = $j_timeout) FROM keystone_slurm.job WHERE job_id IN ($j_running, $j_timeout)")"
all=("${ended[@]}" "$j_running" "$j_timeout" "$j_parr" "$j_parr2")
check "every field still equals sacct -P" ks_compare_with_sacct "$KS_SLURM_CLUSTER" "${all[@]}"
now=$(date +%s)
check "and so does the whole window" ks_compare_with_sacct "$KS_SLURM_CLUSTER" --window $((t0 - 60)) "$now"
"$KEYSTONECTL" jobs check --since 2h >"$KS_TMP/check.out" 2>&1; rc=$?
check_eq "jobs check agrees" 0 "$rc"

# --- jobs check finds what differs ----------------------------------------------------------
ks_sql "UPDATE keystone_slurm.job SET state = 'FAILED' WHERE job_id = $j_batch"
out=$("$KEYSTONECTL" jobs check --since 2h 2>&1); rc=$?
check_eq "a changed row: exit 1" 1 "$rc"
check_match "naming the job and the field" "^different Cluster=ks JobID=$j_batch state: ours=FAILED slurmdbd=COMPLETED$" "$out"
check_match "and the summary counts it" "DIFFER: 0 missing, 0 extra, 1 different \(1 field\)" "$out"
ks_sql "DELETE FROM keystone_slurm.job WHERE job_id = $j_fail"
ks_sql "INSERT INTO keystone_slurm.job (cluster, job_id, submit, jobid, state, elapsed, source)
        VALUES ('ks', 99999, now() - interval '5 minutes', '99999', 'COMPLETED', '0', 'jobcomp')"
out=$("$KEYSTONECTL" jobs check --cluster ks --since 2h 2>&1); rc=$?
check_eq "a deleted and a bogus row: exit 1" 1 "$rc"
check_match "the deleted one is missing" "^missing Cluster=ks JobID=$j_fail JobIDRaw=$j_fail Submit=.* State=FAILED$" "$out"
check_match "the bogus one is extra" "^extra Cluster=ks JobID=99999 JobIDRaw=99999 " "$out"
out=$("$KEYSTONECTL" jobs check --since 2h --json 2>&1)
check_eq "--json lists the three" "different extra missing" \
    "$(printf '%s' "$out" | jq_ '" ".join(sorted(x["kind"] for x in d["clusters"][0]["differences"]))')"
"$KEYSTONECTL" jobs check >/dev/null 2>&1; check_eq "jobs check without --since: exit 2" 2 $?
"$KEYSTONECTL" jobs check --since 2h --until 3h >/dev/null 2>&1; check_eq "--until before --since: exit 2" 2 $?

# A dry run counts what a run would do and keeps nothing.
out=$(run_json --dry-run)
check_eq "dry run: 1 to fill in (the deleted job), no record" "1 None" \
    "$(printf '%s' "$out" | jq_ 'str(d["result"]["filled_in"]) + " " + str(d["task_id"])')"
check_eq "and the row is still missing" 0 "$(ks_sql "SELECT count(*) FROM keystone_slurm.job WHERE job_id = $j_fail")"

# A backfill with --since restores both rows (the changed one is set back to slurmdbd's view).
t1=$(date +%s)
out=$(run_json --since 3h)
t2=$(date +%s)
check_eq "run --since 3h: SUCCESS, the deleted job filled in" "SUCCESS 1" \
    "$(printf '%s' "$out" | jq_ 'd["status"] + " " + str(d["result"]["filled_in"])')"
since=$(date -d "$(printf '%s' "$out" | jq_ 'd["result"]["clusters"]["ks"]["since"]')" +%s)
check "its window starts 3 hours back" test "$since" -ge $((t1 - 10800)) -a "$since" -le $((t2 - 10800))
ks_sql "DELETE FROM keystone_slurm.job WHERE job_id = 99999"
"$KEYSTONECTL" jobs check --since 2h >"$KS_TMP/check.out" 2>&1; rc=$?
check_eq "jobs check agrees again" 0 "$rc"
"$KEYSTONECTL" run clear_log_records --since 1h >/dev/null 2>&1; check_eq "--since on a task without a window: exit 2" 2 $?

# --- slurmdbd down: FAILURE naming the cluster, watermark kept -------------------------------
mark2=$(ks_sql "SELECT reconciled_to FROM keystone_slurm.job_watermark WHERE cluster = 'ks'")
ks_slurmdbd_stop
out=$(run_json); rc=$?
check_eq "slurmdbd stopped: keystonectl exits 1 (not a crash)" 1 "$rc"
check_eq "the run is a FAILURE" FAILURE "$(printf '%s' "$out" | jq_ 'd["status"]')"
check_match "whose error names the cluster and slurmdbd" "Cluster=ks.*slurmdbd" "$(printf '%s' "$out" | jq_ 'd["error"]')"
sub=$(printf '%s' "$out" | jq_ 'd["result"]["subtasks"]["ks"]')
check_match "the cluster's sub-run is a FAILURE with the reason" "^FAILURE\|.*Cluster=ks" \
    "$(ks_sql "SELECT status || '|' || traceback FROM django_celery_results_taskresult WHERE task_id = '$sub'")"
check_eq "the watermark did not move" "$mark2" "$(ks_sql "SELECT reconciled_to FROM keystone_slurm.job_watermark WHERE cluster = 'ks'")"
"$KEYSTONECTL" jobs check --since 2h >"$KS_TMP/check.out" 2>&1; rc=$?
check_eq "jobs check cannot compare: exit 3" 3 "$rc"
check_match "and says why" "slurmdbd" "$(cat "$KS_TMP/check.out")"
ks_slurmdbd_start

# --- a cluster slurmdbd does not know: FAILURE for that cluster only --------------------------
ks_sql "INSERT INTO allocations_cluster (name, description, enabled, access_mode) VALUES ('ghost', 'no such cluster', true, 'OP')"
out=$(run_json); rc=$?
check_eq "an unknown cluster: exit 1, FAILURE" "1 FAILURE" "$rc $(printf '%s' "$out" | jq_ 'd["status"]')"
check_match "the error names it" "Cluster=ghost" "$(printf '%s' "$out" | jq_ 'd["error"]')"
check "and not the other" bash -c "! printf '%s' \"\$1\" | grep -q 'Cluster=ks'" _ "$(printf '%s' "$out" | jq_ 'd["error"]')"
check_eq "sub-runs: ghost FAILURE, ks SUCCESS" "ghost FAILURE|ks SUCCESS" \
    "$(ks_sql "SELECT string_agg(substring(task_args from 3 for length(task_args) - 5) || ' ' || status, '|' ORDER BY task_args)
               FROM django_celery_results_taskresult
               WHERE task_id IN ('$(printf '%s' "$out" | jq_ 'd["result"]["subtasks"]["ghost"]')', '$(printf '%s' "$out" | jq_ 'd["result"]["subtasks"]["ks"]')')")"
check_eq "ks moved on, ghost has no watermark" "ks" \
    "$(ks_sql "SELECT string_agg(cluster, ',') FROM keystone_slurm.job_watermark WHERE reconciled_to > '$mark2'")"
out=$("$KEYSTONECTL" jobs check --cluster ghost --since 2h 2>&1); rc=$?
check_eq "jobs check of that cluster: exit 3" 3 "$rc"
check_match "naming it" "slurmdbd does not know Cluster=ghost" "$out"
out=$("$KEYSTONECTL" run slurm_update_job_stats --cluster nowhere 2>&1); rc=$?
check_eq "--cluster not in allocations_cluster: exit 1" 1 "$rc"
check_match "naming it" "Cluster=nowhere is not in allocations_cluster" "$out"

ks_done
