#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Benchmark: the reconciliation (keystonectl run slurm_update_job_stats: slurmdb API read,
# conversion, upsert into PostgreSQL) beside its anchor, `sacct -P -a -X` printing the same
# window to /dev/null, in the same run against the same private cluster. Submits KS_BENCH_JOBS
# (2000) jobs as one array of `true`, waits until slurmdbd has them all, then times: the first
# run (every job inserted), reruns (nothing changes), dry runs (read, upsert rolled back) and
# sacct; each repeated KS_BENCH_REPEAT (3) times, the median shown. The node claims
# KS_BENCH_NODE_CPUS (16) CPUs so the jobs go through quickly. Needs a built tree
# (KS_BUILDDIR, default ./_build), root, and the Slurm and PostgreSQL packages the tests use.
set -o pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
export KS_SRCDIR=$src KS_BUILDDIR=${KS_BUILDDIR:-$src/_build} KEYSTONE_TEST_REQUIRE_SERVICES=1
jobs=${KS_BENCH_JOBS:-2000}
repeat=${KS_BENCH_REPEAT:-3}
# shellcheck source=../tests/lib/common.sh
. "$src/tests/lib/common.sh"
# shellcheck source=../tests/lib/slurm.sh
. "$src/tests/lib/slurm.sh"
# shellcheck source=../tests/lib/pg.sh
. "$src/tests/lib/pg.sh"
# shellcheck source=../tests/lib/sacct.sh
. "$src/tests/lib/sacct.sh"
set +u # the libraries expect unset variables to be empty, and handle their own failures
ks_test_name=bench-reconcile
# More CPUs than the machine has, so the node runs many tiny jobs at once (tests/lib/slurm.sh).
export KS_SLURM_NODE_CPUS=${KS_BENCH_NODE_CPUS:-16}
ks_scratch
ks_pg_start
ks_slurm_start jobcomp/none
# One array of $jobs tasks, started as fast as slurmctld can.
ks_slurm_conf_set MaxArraySize $((jobs + 1))
ks_slurm_conf_set SchedulerParameters "bf_interval=2,sched_interval=2,default_queue_depth=$((jobs + 1))"
ks_slurmctld_restart
ks_write_conf "KEYSTONED_SLURM_CONF=$SLURM_CONF"
"$KEYSTONECTL" db migrate --keystone-schema >/dev/null
ks_sql "INSERT INTO allocations_cluster (name, description, enabled, access_mode)
        VALUES ('$KS_SLURM_CLUSTER', 'bench', true, 'OP')"

since=$(($(date +%s) - 60))
since_text=$(date -u -d "@$since" +%Y-%m-%dT%H:%M:%SZ)
cd "$KS_SLURM_JOBDIR"
t=$EPOCHREALTIME
array=$(sbatch --parsable -J bench --array=1-"$jobs" -o /dev/null -e /dev/null --wrap true)
echo "submitted array job $array ($jobs tasks); waiting until slurmdbd has every task"
ks_slurm_wait_in_sacct "$array" 1800 >/dev/null
ks_wait_for 60 ks_sacct_settled "$array"
echo "slurmdbd has them after $(awk -v a="$t" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s"
sleep 1 # the window's end is "now": every job ended at least a second before

# ms of one run of "$@", output to $KS_TMP/last.out
time_ms() {
    local a=$EPOCHREALTIME
    "$@" >"$KS_TMP/last.out" 2>"$KS_TMP/last.err" || { cat "$KS_TMP/last.err" >&2; return 1; }
    awk -v a="$a" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", (b - a) * 1000 }'
}
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
field() { /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$KS_TMP/last.out" "$1"; }
run() { "$KEYSTONECTL" run slurm_update_job_stats --since "$since_text" --json "$@"; }
fmt=$(for f in "${KS_SACCT_FIELDS[@]}"; do printf '%s,' "${f%%|*}"; done)
anchor() {
    env TZ=UTC SLURM_TIME_FORMAT=standard sacct -P -a -X --clusters "$KS_SLURM_CLUSTER" \
        -S "$(date -u -d "@$since" +%Y-%m-%dT%H:%M:%S)" -E now --format="${fmt%,}" >/dev/null
}

first=$(time_ms run) || exit 1
part() { field "round(d['result']['clusters']['$KS_SLURM_CLUSTER']['$1'])"; }
first_read=$(part slurmdbd_ms) first_write=$(part write_ms)
filled=$(field 'd["result"]["filled_in"]')
read_n=$(field 'd["result"]["read"]')
[ "$(field 'd["status"]')" = SUCCESS ] || { cat "$KS_TMP/last.out" >&2; exit 1; }
rerun=() dry=() sacct=() rerun_read=() rerun_write=()
for ((i = 0; i < repeat; i++)); do
    sacct+=("$(time_ms anchor)")
    rerun+=("$(time_ms run)")
    rerun_read+=("$(part slurmdbd_ms)") rerun_write+=("$(part write_ms)")
    [ "$(field 'd["result"]["filled_in"]')" = 0 ] || { echo "a rerun filled in jobs" >&2; exit 1; }
    dry+=("$(time_ms run --dry-run)")
done
rows=$(TZ=UTC sacct -n -P -a -X --clusters "$KS_SLURM_CLUSTER" -S "$(date -u -d "@$since" +%Y-%m-%dT%H:%M:%S)" -E now -o JobID | wc -l)
s=$(median "${sacct[@]}") r=$(median "${rerun[@]}") d=$(median "${dry[@]}")

echo
printf '%-52s %10s\n' "jobs in the window (sacct lines / task read)" "$rows / $read_n"
printf '%-52s %10s\n' "first run: filled in" "$filled"
printf '%-52s %10s\n' "first run, every job inserted (ms)" "$first"
printf '%-52s %10s\n' "  of which reading slurmdbd / writing PostgreSQL" "$first_read / $first_write"
printf '%-52s %10s\n' "rerun, nothing changed, median (ms)" "$r"
printf '%-52s %10s\n' "  of which reading slurmdbd / writing PostgreSQL" "$(median "${rerun_read[@]}") / $(median "${rerun_write[@]}")"
printf '%-52s %10s\n' "dry run (read + upsert rolled back), median (ms)" "$d"
printf '%-52s %10s\n' "anchor: sacct -P -a -X same window, median (ms)" "$s"
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
printf 'ratio first run / sacct: %s\n' "$(div "$first" "$s")"
printf 'ratio rerun / sacct: %s\n' "$(div "$r" "$s")"
printf 'ratio dry run / sacct: %s\n' "$(div "$d" "$s")"
echo "(each run of keystonectl includes process start, libslurm init, the slurmdbd connection and" \
    "the QOS/TRES lookups, the task records in PostgreSQL; sacct its own process and lookups)"
[ "$filled" -ge "$jobs" ] || { echo "filled in $filled of $jobs jobs" >&2; exit 1; }
