# SPDX-License-Identifier: GPL-2.0-or-later
# Compares keystone_slurm.job with what sacct prints, field by field. Needs tests/lib/common.sh,
# a running cluster (tests/lib/slurm.sh: SLURM_CONF) and PostgreSQL (tests/lib/pg.sh: PGHOST,
# PGPORT, PGUSER, PGDATABASE).
#
#   ks_compare_with_sacct CLUSTER JOBID...            the jobs sacct -j lists (an array job's id
#                                                     lists its tasks), newest record of each id
#   ks_compare_with_sacct CLUSTER --window SINCE UNTIL the jobs sacct -S SINCE -E UNTIL lists
#                                                     (SINCE/UNTIL: epoch seconds)
#
# Fails (status 1) when a job is only on one side or any field differs, printing for each
# difference the job, the field, and the sacct and keystone_slurm.job lines in full.
#
# Each side is turned into one "|"-separated line per job: sacct -P -X -a with
# SLURM_TIME_FORMAT=standard and TZ=UTC, and a psql query that formats the row the same way
# (times in UTC, elapsed in seconds, ...). The only normalisations, all of the sacct side:
#   State        "CANCELLED by UID" -> CANCELLED (keystone_slurm.job keeps the base state)
#   NodeList     "None assigned" (the job never ran) and "(unknown)" -> empty
#   Eligible, Start, End: "Unknown" and "None" (unset) -> empty (NULL)
#   TimelimitRaw "Partition_Limit" (unset) -> empty (NULL); UNLIMITED is timelimit_min -1
#   AllocNodes   "1K" style (>= 1024 nodes) -> the number
#   ElapsedRaw   not compared for a job sacct shows RUNNING or SUSPENDED: it grows with the clock
#   Billing      not a sacct field: the billing= count of AllocTRES, compared with job.billing
# shellcheck shell=bash

# The fields in order: sacct format name, the SQL expression that prints it, and a label.
KS_SACCT_FIELDS=(
    "JobIDRaw|job_id::text"
    "Submit|to_char(submit AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
    "Cluster|cluster"
    "JobID|jobid"
    "JobName|jobname"
    "User|username"
    "UID|uid::text"
    "Group|\"group\""
    "GID|gid::text"
    "Account|account"
    "Partition|partition"
    "QOS|qos"
    "State|state"
    "ExitCode|exitcode"
    "DerivedExitCode|derivedexitcode"
    "Eligible|to_char(eligible AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
    "Start|to_char(start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
    "End|to_char(\"end\" AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
    "ElapsedRaw|EXTRACT(EPOCH FROM elapsed)::bigint::text"
    "TimelimitRaw|CASE WHEN timelimit_min = -1 THEN 'UNLIMITED' ELSE timelimit_min::text END"
    "AllocNodes|allocnodes::text"
    "NodeList|nodelist"
    "AllocCPUS|alloccpus::text"
    "AllocTRES|alloctres"
    "Priority|priority::text"
    "WorkDir|workdir"
    "Reservation|reservation"
)

# Prints the sacct side, normalised, one line per job: Billing appended as the last field.
ks_sacct_side() {
    local cluster=$1; shift
    local fmt='' f
    for f in "${KS_SACCT_FIELDS[@]}"; do fmt="$fmt${fmt:+,}${f%%|*}"; done
    env TZ=UTC SLURM_TIME_FORMAT=standard sacct -n -P -X -a --clusters "$cluster" --format="$fmt" "$@" |
        awk -F'|' -v OFS='|' '
        {
            # 13 State, 16-18 Eligible Start End, 19 ElapsedRaw, 20 TimelimitRaw,
            # 21 AllocNodes, 22 NodeList, 24 AllocTRES
            sub(/^CANCELLED by [0-9]+$/, "CANCELLED", $13)
            for (i = 16; i <= 18; i++) if ($i == "Unknown" || $i == "None") $i = ""
            if ($13 == "RUNNING" || $13 == "SUSPENDED") $19 = "*"
            if ($20 == "Partition_Limit") $20 = ""
            if ($21 ~ /K$/) { n = $21; sub(/K$/, "", n); $21 = n * 1024 }
            if ($22 == "None assigned" || $22 == "(unknown)") $22 = ""
            billing = ""
            k = split($24, tres, ",")
            for (i = 1; i <= k; i++) if (tres[i] ~ /^billing=/) billing = substr(tres[i], 9)
            print $0, billing
        }'
}

# Prints the keystone_slurm.job side for the SQL condition $2 (on table job), in the same form.
ks_job_side() {
    local cond=$1 cols='' f expr
    for f in "${KS_SACCT_FIELDS[@]}"; do
        expr=${f#*|}
        cols="$cols${cols:+ || '|' || }COALESCE($expr, '')"
    done
    # billing is a double: print it as the integer sacct shows when it is one.
    cols="$cols || '|' || COALESCE(CASE WHEN billing = trunc(billing) THEN trunc(billing)::bigint::text ELSE billing::text END, '')"
    psql -X -A -t -q -v ON_ERROR_STOP=1 -c "SELECT $cols FROM keystone_slurm.job WHERE $cond ORDER BY job_id, submit"
}

ks_compare_with_sacct() {
    local cluster=${1:?ks_compare_with_sacct CLUSTER (JOBID... | --window SINCE UNTIL)}; shift
    local sacct_out job_out cond ids
    if [ "${1:-}" = --window ]; then
        local since=${2:?--window SINCE UNTIL} until=${3:?--window SINCE UNTIL}
        sacct_out=$(ks_sacct_side "$cluster" -S "$(date -u -d "@$since" +%Y-%m-%dT%H:%M:%S)" \
            -E "$(date -u -d "@$until" +%Y-%m-%dT%H:%M:%S)") || { echo "ks_compare_with_sacct: sacct failed" >&2; return 1; }
        # sacct's window: eligible before UNTIL, not ended before SINCE.
        cond="cluster = '$cluster' AND eligible IS NOT NULL AND eligible < to_timestamp($until)
              AND (\"end\" IS NULL OR \"end\" >= to_timestamp($since))"
    else
        [ $# -gt 0 ] || { echo "ks_compare_with_sacct: no job ids" >&2; return 1; }
        ids=$(IFS=,; echo "$*")
        sacct_out=$(ks_sacct_side "$cluster" -j "$ids") || { echo "ks_compare_with_sacct: sacct failed" >&2; return 1; }
        # sacct -j shows the newest record of each id; an array job's id shows its tasks.
        cond="cluster = '$cluster' AND (job_id IN ($ids) OR array_job_id IN ($ids))
              AND (job_id, submit) IN (SELECT job_id, max(submit) FROM keystone_slurm.job
                                       WHERE cluster = '$cluster' GROUP BY job_id)"
    fi
    job_out=$(ks_job_side "$cond") || { echo "ks_compare_with_sacct: psql failed" >&2; return 1; }
    KS_FIELDS="$(for f in "${KS_SACCT_FIELDS[@]}"; do printf '%s ' "${f%%|*}"; done)Billing" \
        awk -F'|' -v cluster="$cluster" '
        BEGIN { n = split(ENVIRON["KS_FIELDS"], name, " "); bad = 0 }
        FNR == NR { if ($0 != "") { s[$1 "|" $2] = $0; order[++ns] = $1 "|" $2 }; next }
        $0 != "" { k[$1 "|" $2] = $0; if (!(($1 "|" $2) in s)) order[++ns] = $1 "|" $2 }
        END {
            for (i = 1; i <= ns; i++) {
                key = order[i]
                if (seen[key]++) continue
                if (!(key in k)) { printf "ks_compare_with_sacct: Cluster=%s JobIDRaw=%s Submit=%s: in sacct, not in keystone_slurm.job\n#   sacct: %s\n", cluster, substr(key, 1, index(key, "|") - 1), substr(key, index(key, "|") + 1), s[key]; bad = 1; continue }
                if (!(key in s)) { printf "ks_compare_with_sacct: Cluster=%s JobIDRaw=%s Submit=%s: in keystone_slurm.job, not in sacct\n#   job:   %s\n", cluster, substr(key, 1, index(key, "|") - 1), substr(key, index(key, "|") + 1), k[key]; bad = 1; continue }
                split(s[key], a, "|"); split(k[key], b, "|")
                diff = ""
                for (j = 1; j <= n; j++) {
                    if (name[j] == "ElapsedRaw" && a[j] == "*") continue
                    if (a[j] != b[j]) diff = diff sprintf(" %s: sacct=\"%s\" job=\"%s\";", name[j], a[j], b[j])
                }
                if (diff != "") {
                    printf "ks_compare_with_sacct: Cluster=%s JobID=%s:%s\n#   sacct: %s\n#   job:   %s\n", cluster, a[4], diff, s[key], k[key]
                    bad = 1
                }
            }
            exit bad
        }' <(printf '%s\n' "$sacct_out") <(printf '%s\n' "$job_out")
}

# ks_sacct_settled JOBID...: slurmdbd holds the full record of every listed job. slurmctld's
# messages can reach slurmdbd out of order: a step or completion message for a job whose start
# message is still queued makes slurmdbd create a placeholder record (JobName "allocation", no
# Partition, no Eligible), which sacct shows as it is until the start message fills it in. Poll
# this (ks_wait_for) before comparing or reconciling jobs that just ran.
ks_sacct_settled() {
    local ids out
    ids=$(IFS=,; echo "$*")
    out=$(sacct -n -P -X -a -j "$ids" -o JobName,Partition 2>/dev/null) || return 1
    [ -n "$out" ] && ! printf '%s\n' "$out" | grep -qE '^allocation\||\|$'
}
