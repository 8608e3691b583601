#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Benchmark: slurmctld's job throughput with JobCompType=jobcomp/none (the anchor) and with
# jobcomp/keystone, on the same private single-node cluster in the same run. Each round submits one
# array of KS_BENCH_JOBS (2,000) tasks of `true` and times from submission until the queue is
# empty; rounds alternate none, keystone, none, keystone ... (KS_BENCH_PAIRS pairs, default 2) so
# that drift of a shared machine hits both alike. Prints jobs per second for each round, the ratio
# keystone/none per pair and the median ratio (goal: at least 0.97), and checks that every
# keystone round put one record per job in the spool with nothing dropped.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
export KS_SRCDIR=$src KS_BUILDDIR=${KS_BUILDDIR:-$src/_build} KEYSTONE_TEST_REQUIRE_SERVICES=1
n=${KS_BENCH_JOBS:-2000}
pairs=${KS_BENCH_PAIRS:-2}
# shellcheck source=../tests/lib/common.sh
. "$src/tests/lib/common.sh"
# shellcheck source=../tests/lib/slurm.sh
. "$src/tests/lib/slurm.sh"
so=$KS_BUILDDIR/plugins/jobcomp/.libs/jobcomp_keystone.so
[ -f "$so" ] || { echo "throughput: $so not built (configure --with-slurm-source)" >&2; exit 1; }
ks_test_name=bench-throughput
ks_scratch
plugins=$KS_TMP/plugins
spool=$KS_TMP/spool
mkdir -p "$plugins" "$spool"
cp "$so" "$plugins/"
# Many tiny jobs at once: the node claims more CPUs than the machine has.
export KS_SLURM_NODE_CPUS=${KS_BENCH_NODE_CPUS:-16}
ks_slurm_start jobcomp/none "$plugins"
# An array of $n tasks must be allowed; the slurm-N.out files go nowhere.
ks_slurm_conf_set MaxArraySize $((n + 1))
ks_slurm_conf_set MaxJobCount $((n * 4 + 10000))
cd "$KS_SLURM_JOBDIR"

# round TYPE: prints the jobs per second of one array of $n tasks under JobCompType=TYPE.
round() {
    if [ "$1" = keystone ]; then
        rm -f "$spool"/*
        ks_slurm_set_jobcomp jobcomp/keystone "$spool" >/dev/null
    else
        ks_slurm_set_jobcomp jobcomp/none >/dev/null
    fi
    ks_slurm_wait_node 60 >/dev/null || { echo "throughput: node not usable" >&2; exit 1; }
    local t0 t1
    t0=$(date +%s.%N)
    sbatch -Q --array=1-"$n" -o /dev/null -e /dev/null --wrap true >/dev/null
    ks_wait_for 3600 ks_slurm_queue_empty || { echo "throughput: jobs did not finish" >&2; exit 1; }
    t1=$(date +%s.%N)
    if [ "$1" = keystone ]; then
        # fini (at the next restart) drains what is queued; wait for the worker's own flush.
        local want=$n got=0 i
        for ((i = 0; i < 100; i++)); do
            got=$(cat "$spool"/[0-9]*.json 2>/dev/null | grep -c '"job_id"' || true)
            [ "$got" -ge "$want" ] && break
            sleep 0.2
        done
        [ "$got" -eq "$want" ] || { echo "throughput: $got of $want records in the spool" >&2; exit 1; }
        grep -q '"dropped":0' "$spool/plugin-stats.json" ||
            { echo "throughput: records dropped: $(cat "$spool/plugin-stats.json")" >&2; exit 1; }
    fi
    echo "$t0 $t1" | awk -v n="$n" '{ printf "%.2f\n", n / ($2 - $1) }'
}

ratios=()
for ((p = 1; p <= pairs; p++)); do
    none=$(round none)
    keystone=$(round keystone)
    ratio=$(awk -v a="$keystone" -v b="$none" 'BEGIN { printf "%.3f", a / b }')
    ratios+=("$ratio")
    printf 'pair %d: jobcomp/none %s jobs/s, jobcomp/keystone %s jobs/s, ratio %s\n' \
        "$p" "$none" "$keystone" "$ratio"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
printf 'throughput: %d jobs per round, median ratio keystone/none %s (goal >= 0.97)\n' "$n" "$median"
