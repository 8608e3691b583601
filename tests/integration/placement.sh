#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Two keystoned against one PostgreSQL over five schedule ticks (about five minutes: cron has
# minute granularity): every global task runs exactly once per slot, whoever claims it; each
# cluster's sub-runs run once per slot where that cluster is served (a head node per cluster,
# then an HA pair); a restart in the middle runs nothing twice; kill -9 during a long run releases
# the lock with the connection, the other daemon runs the next slots and takes the abandoned slot
# over; a keystoned that serves no enabled cluster records nothing.
. "${KS_SRCDIR:-.}/tests/lib/common.sh"
. "$KS_SRCDIR/tests/lib/pg.sh"
ks_scratch
ks_pg_start
ks_write_conf
"$KEYSTONECTL" db migrate --keystone-schema >/dev/null || { echo "migrate failed"; exit 99; }
ks_sql "INSERT INTO allocations_cluster (name, description, enabled, access_mode)
        VALUES ('a', 'head node A', true, 'OP'), ('b', 'head node B', true, 'OP'), ('c', 'off', false, 'OP')" >/dev/null

EVERY_MINUTE="ldap_update_users notify_upcoming_expirations notify_past_expirations"
CLEAR=apps.logging.tasks.clear_log_records
PER_CLUSTER="update_limits slurm_update_job_stats"
dotted() { ks_sql "SELECT DISTINCT task_name FROM keystone_slurm.task_schedule WHERE task_name LIKE '%.$1'"; }

# Start early in a minute: M1 is the first slot, K = M3 the slot of the kill -9.
sec=$(($(date +%s) % 60)); [ "$sec" -gt 40 ] && sleep $((62 - sec))
M0=$(($(date +%s) / 60)); M1=$((M0 + 1)); M2=$((M0 + 2)); K=$((M0 + 3)); M4=$((M0 + 4)); M5=$((M0 + 5))
# clear_log_records every two minutes, on K's parity: slots M1, K and M5, and with no slot in the
# minute after K, the abandoned K is taken over rather than folded into a newer slot.
if ((K % 2 == 0)); then clear_cron='*/2 * * * *'; else clear_cron='1-59/2 * * * *'; fi
at() { local t=$(($1 * 60 + $2)) n; n=$(date +%s); ((t > n)) && sleep $((t - n)); return 0; }

# conf NAME CLUSTERS [global schedule]: $KS_TMP/NAME.conf for worker node-NAME.
conf() {
    local g=${3:-* * * * *} c=${3:-$clear_cron}
    KS_WORKER=node-$1 ks_write_conf "CONFIG_TIMEZONE=UTC" "KEYSTONED_LOG_LEVEL=verbose" \
        "KEYSTONED_METRICS_ADDRESS=off" "KEYSTONED_NOTIFY_SETTLE_WAIT=0" \
        "KEYSTONED_CLEANUP_BATCH_SIZE=50" "KEYSTONED_SLURM_CONF=$KS_TMP/no-slurm.conf" \
        "KEYSTONED_CLUSTERS=$2" \
        "KEYSTONED_SCHEDULE_LDAP_UPDATE_USERS=$g" "KEYSTONED_SCHEDULE_CLEAR_LOG_RECORDS=$c" \
        "KEYSTONED_SCHEDULE_NOTIFY_UPCOMING_EXPIRATIONS=$g" \
        "KEYSTONED_SCHEDULE_NOTIFY_PAST_EXPIRATIONS=$g" \
        "KEYSTONED_SCHEDULE_UPDATE_LIMITS=* * * * *" "KEYSTONED_SCHEDULE_SLURM_UPDATE_JOB_STATS=* * * * *"
    mv "$KS_TMP/keystoned.conf" "$KS_TMP/$1.conf"
}
declare -A pid
start() { "$KEYSTONED" -f "$KS_TMP/$1.conf" >>"$KS_TMP/$1.log" 2>&1 & pid[$1]=$!; }
stop() { [ -n "${pid[$1]:-}" ] && kill -TERM "${pid[$1]}" 2>/dev/null; wait "${pid[$1]}" 2>/dev/null; pid[$1]=; }
ks_on_exit 'for d in a b c; do stop $d; done'
conf a a; conf b b; conf c c off   # c: per-cluster tasks only, for a disabled cluster

# --- Head node per cluster: A serves a, B serves b; C serves c, which is disabled -------------
start a; start b; start c
at "$M2" 20
check "C warns that cluster c is not an enabled cluster" grep -q "KEYSTONED_CLUSTERS names Cluster=c, which is not an enabled" "$KS_TMP/c.log"

# --- A restart in the middle, both become an HA pair (KEYSTONED_CLUSTERS empty) ---------------
conf a ""; conf b ""
stop a; start a
at "$M2" 25
stop b; start b
# A long clear_log_records run at K: many old request log rows, deleted 50 at a time.
ks_sql "INSERT INTO logging_requestlog (method, endpoint, response_code, \"timestamp\") SELECT 'GET', '/bulk', 200, now() - interval '60 days' FROM generate_series(1, 600000)" >/dev/null

# --- kill -9 of the daemon running clear_log_records for slot K -------------------------------
claim_of() { ks_sql "SELECT worker FROM keystone_slurm.slot_claim WHERE task_name = '$1' AND scope = '' AND slot = to_timestamp($2 * 60) AND done_at IS NULL"; }
long_run() { [ -n "$(claim_of "$CLEAR" "$K")" ] && [ "$(ks_sql "SELECT count(*) FROM keystone_slurm.slot_claim c JOIN django_celery_results_taskresult r ON r.task_id = c.task_id WHERE c.task_name = '$CLEAR' AND c.slot = to_timestamp($K * 60) AND r.status = 'STARTED'")" = 1 ]; }
others_done() { [ "$(ks_sql "SELECT count(*) FROM keystone_slurm.slot_claim WHERE slot = to_timestamp($K * 60) AND task_name <> '$CLEAR' AND done_at IS NULL")" = 0 ]; }
at "$K" 0
check "the long run of slot K started" ks_wait_for 20 long_run
ks_wait_for 20 others_done
x=$(claim_of "$CLEAR" "$K"); x=${x#node-}; y=$([ "$x" = a ] && echo b || echo a)
# The advisory lock (0x4b53 = 19283, FNV-1a of the dotted name), as daemon.sh computes it.
lock_pid() { ks_sql "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = 19283 AND objid = $1 AND granted"; }
fnv() {
    local s=$1 h=2166136261 i c
    for ((i = 0; i < ${#s}; i++)); do printf -v c '%d' "'${s:i:1}"; h=$(( ((h ^ c) * 16777619) & 0xffffffff )); done
    echo $(( h & 0x7fffffff ))
}
clear_key=$(fnv "$CLEAR")
holder=$(lock_pid "$clear_key")
check_match "node-$x holds clear_log_records' lock while it runs slot K" "^[0-9]+$" "$holder"
kill -KILL "${pid[$x]}"; wait "${pid[$x]}" 2>/dev/null; pid[$x]=
gone() { [ "$(ks_sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = ${holder:-0}")" = 0 ]; }
check "kill -9: the lock went with node-$x's connection" ks_wait_for 10 gone
check_eq "its run of slot K is left STARTED" "STARTED" \
    "$(ks_sql "SELECT r.status FROM keystone_slurm.slot_claim c JOIN django_celery_results_taskresult r ON r.task_id = c.task_id WHERE c.task_name = '$CLEAR' AND c.slot = to_timestamp($K * 60)")"
taken() { [ "$(ks_sql "SELECT takeovers || ' ' || worker FROM keystone_slurm.slot_claim WHERE task_name = '$CLEAR' AND scope = '' AND slot = to_timestamp($K * 60)")" = "1 node-$y" ]; }
check "node-$y takes the abandoned slot K over (grace 60 s)" ks_wait_for 105 taken
check "and says so" grep -q "took over the slot .* claimed by Worker=node-$x" "$KS_TMP/$y.log"
at "$M4" 50
start "$x"                         # restarted: closes its abandoned run
k2_done() { [ "$(ks_sql "SELECT count(*) FROM keystone_slurm.slot_claim WHERE slot = to_timestamp($M5 * 60) AND done_at IS NOT NULL")" = 8 ] &&
            [ "$(ks_sql "SELECT count(*) FROM keystone_slurm.slot_claim WHERE done_at IS NULL AND slot >= to_timestamp($M4 * 60)")" = 0 ]; }
at "$M5" 0
check "every claim of the last slot ends" ks_wait_for 60 k2_done
for d in a b c; do stop $d; done

# --- What was recorded ------------------------------------------------------------------------
# Runs per slot of a task: "minute=count ...", counting every run that reached its own outcome
# (the run abandoned by kill -9 is closed as such and not counted).
runs_per_slot() {
    ks_sql "SELECT COALESCE(string_agg(m || '=' || n, ' ' ORDER BY m), '') FROM (
              SELECT (EXTRACT(EPOCH FROM (result::jsonb->>'slot')::timestamptz) / 60)::bigint AS m, count(*) AS n
              FROM django_celery_results_taskresult WHERE periodic_task_name = '$1' AND status <> 'STARTED'
              AND COALESCE(traceback, '') NOT LIKE 'abandoned:%' GROUP BY 1) s"
}
claims_per_slot() {
    ks_sql "SELECT COALESCE(string_agg(m::text, ' ' ORDER BY m), '') FROM (SELECT (EXTRACT(EPOCH FROM slot) / 60)::bigint AS m
              FROM keystone_slurm.slot_claim WHERE task_name = '$1' AND scope = '' AND done_at IS NOT NULL) s"
}
all5="$M1=1 $M2=1 $K=1 $M4=1 $M5=1"
for t in $EVERY_MINUTE; do
    T=$(dotted "$t")
    check_eq "$t: exactly one run for each of the 5 slots" "$all5" "$(runs_per_slot "$T")"
    check_eq "$t: one finished claim for each slot" "$M1 $M2 $K $M4 $M5" "$(claims_per_slot "$T")"
    check_eq "$t: slot K+1 ran on node-$y, the one alive" "node-$y" \
        "$(ks_sql "SELECT worker FROM django_celery_results_taskresult WHERE periodic_task_name = '$T' AND result::jsonb->>'slot' = to_char(to_timestamp($M4 * 60) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")"
done
check_eq "clear_log_records: one run for each of its 3 slots (K by the takeover)" "$M1=1 $K=1 $M5=1" "$(runs_per_slot "$CLEAR")"
check_eq "clear_log_records: the K run was node-$y's takeover" "node-$y SUCCESS" \
    "$(ks_sql "SELECT r.worker || ' ' || r.status FROM keystone_slurm.slot_claim c JOIN django_celery_results_taskresult r ON r.task_id = c.task_id WHERE c.task_name = '$CLEAR' AND c.slot = to_timestamp($K * 60)")"
check_eq "the killed run is closed as abandoned after node-$x restarted" "FAILURE" \
    "$(ks_sql "SELECT status FROM django_celery_results_taskresult WHERE task_name = '$CLEAR' AND worker = 'node-$x' AND traceback LIKE 'abandoned:%'")"
check_eq "all old request log rows are gone" "0" "$(ks_sql "SELECT count(*) FROM logging_requestlog WHERE endpoint = '/bulk'")"
check_eq "no scheduled run outside a claim (but the abandoned one)" "0" \
    "$(ks_sql "SELECT count(*) FROM django_celery_results_taskresult r WHERE periodic_task_name IS NOT NULL AND COALESCE(traceback, '') NOT LIKE 'abandoned:%' AND NOT EXISTS (SELECT 1 FROM keystone_slurm.slot_claim c WHERE c.task_id = r.task_id)")"

# Per-cluster: for each slot, each cluster's claim, and the sub-run it points to, by the claimer.
for t in $PER_CLUSTER; do
    T=$(dotted "$t")
    got=$(ks_sql "SELECT string_agg(m || ':' || scope || '@' || worker || '/' || subruns, ' ' ORDER BY m, scope) FROM (
                    SELECT (EXTRACT(EPOCH FROM c.slot) / 60)::bigint AS m, c.scope, c.worker,
                           (SELECT count(*) FROM django_celery_results_taskresult s
                            WHERE s.task_id = p.result::jsonb->'subtasks'->>c.scope AND s.task_name = '${T}_for_cluster'
                              AND s.task_args = '(''' || c.scope || ''',)' AND s.worker = c.worker AND s.status = 'FAILURE') AS subruns
                    FROM keystone_slurm.slot_claim c JOIN django_celery_results_taskresult p ON p.task_id = c.task_id
                    WHERE c.task_name = '$T' AND c.done_at IS NOT NULL) s")
    check_match "$t: head nodes: $M1 and $M2: Cluster=a on node-a, Cluster=b on node-b, one sub-run each" \
        "^$M1:a@node-a/1 $M1:b@node-b/1 $M2:a@node-a/1 $M2:b@node-b/1 " "$got "
    check_match "$t: HA pair: $K..$M5: each cluster once per slot (node-$y alone at $M4)" \
        " $K:a@node-[ab]/1 $K:b@node-[ab]/1 $M4:a@node-$y/1 $M4:b@node-$y/1 $M5:a@node-[ab]/1 $M5:b@node-[ab]/1$" "$got"
    check_eq "$t: sub-runs recorded: 2 clusters x 5 slots" "10" \
        "$(ks_sql "SELECT count(*) FROM django_celery_results_taskresult WHERE task_name = '${T}_for_cluster'")"
    check_eq "$t: no scheduled run without a cluster" "0" \
        "$(ks_sql "SELECT count(*) FROM django_celery_results_taskresult WHERE periodic_task_name = '$T' AND (result IS NULL OR result::jsonb->'subtasks' IS NULL)")"
done
check_eq "node-c, serving only the disabled cluster c, recorded nothing" "0" \
    "$(ks_sql "SELECT count(*) FROM django_celery_results_taskresult WHERE worker = 'node-c'")"
check_eq "and claimed nothing" "0" "$(ks_sql "SELECT count(*) FROM keystone_slurm.slot_claim WHERE worker = 'node-c' OR scope = 'c'")"
check_eq "nothing left running" "0" "$(ks_sql "SELECT count(*) FROM django_celery_results_taskresult WHERE status = 'STARTED'")"

ks_done
