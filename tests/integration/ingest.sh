#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# keystoned's spool ingest against a real PostgreSQL (no Slurm: spool files come from
# bench/spoolgen and hand-written fixtures): every column, links to Keystone's tables, files
# deleted after the commit, replays that change nothing, job keys, corrupt files quarantined,
# PostgreSQL going away, kill -9 and SIGTERM in the middle of a large ingest, hostile strings.
. "${KS_SRCDIR:-.}/tests/lib/common.sh"
. "$KS_SRCDIR/tests/lib/pg.sh"
ks_scratch
ks_pg_start
SPOOL=$KS_TMP/spool
QUAR=$SPOOL/quarantine
SPOOLGEN=$KS_BUILDDIR/bench/spoolgen
[ -x "$SPOOLGEN" ] || { echo "bench/spoolgen not built"; exit 99; }
ks_write_conf "KEYSTONED_SPOOL_DIR=$SPOOL" "KEYSTONED_INGEST_INTERVAL=1" "KEYSTONED_LOG_LEVEL=verbose" \
    "KEYSTONED_DB_CONNECT_TIMEOUT=2"
"$KEYSTONECTL" db migrate --keystone-schema >/dev/null || { echo "migrate failed"; exit 99; }

daemon_pid=
start_daemon() {
    "$KEYSTONED" >>"$KS_TMP/keystoned.log" 2>&1 &
    daemon_pid=$!
}
stop_daemon() {
    [ -n "$daemon_pid" ] || return 0
    kill -TERM "$daemon_pid" 2>/dev/null
    wait "$daemon_pid" 2>/dev/null
    daemon_pid=
}
ks_on_exit stop_daemon
log_has() { grep -q -- "$1" "$KS_TMP/keystoned.log"; }
batch_re='^[0-9]{20}-[0-9]+-[0-9]+\.json$'
batch_files() { ls -1 "$SPOOL" 2>/dev/null | grep -E "$batch_re"; }
spool_empty() { [ -z "$(batch_files)" ]; }
rows() { ks_sql "SELECT count(*) FROM keystone_slurm.job${1:+ WHERE $1}"; }
rows_are() { [ "$(rows "${2:-}")" = "$1" ]; }
# Records announced by the headers of the batch files still in the spool.
spooled_records() {
    local f n=0 c
    for f in $(batch_files); do
        c=$(head -n 1 "$SPOOL/$f" | sed -n 's/.*"count":\([0-9]*\).*/\1/p')
        n=$((n + ${c:-0}))
    done
    echo "$n"
}
# Copies files into the spool as the plugin publishes them: complete, under a temp name, renamed.
put() {
    local f
    for f in "$@"; do
        cp "$f" "$SPOOL/.tmp.$$.put" && mv "$SPOOL/.tmp.$$.put" "$SPOOL/$(basename "$f")"
    done
}
# A batch file name that sorts before everything spoolgen writes (it counts from the time in µs).
early_name() { printf '%020d-1-1.json' "$1"; }
header() { printf '{"format":"keystone-jobcomp-spool","format_version":%s,"record_version":1,"writer":"test","pid":1,"seq":1,"created":1790000000,"count":%s}\n' "${2:-1}" "$1"; }

# Keystone's side of the links.
ks_sql "INSERT INTO allocations_cluster (name, enabled, access_mode) VALUES ('smp', true, 'OP');
        INSERT INTO users_team (name, is_active, slug) VALUES ('Smith Lab', true, 'smith-lab');
        INSERT INTO users_team (name, is_active, slug) SELECT 'Team ' || g, true, 'team-' || g FROM generate_series(0, 99) g;
        INSERT INTO users_user (password, is_superuser, username, is_active, is_staff, is_ldap_user, date_joined)
        VALUES ('!', false, 'alice', true, false, true, now());
        INSERT INTO users_user (password, is_superuser, username, is_active, is_staff, is_ldap_user, date_joined)
        SELECT '!', false, 'user' || g, true, false, true, now() FROM generate_series(0, 499) g" >/dev/null

# --- 1. The spool folder does not exist yet: one error, then it is picked up -------------------
start_daemon
check "keystoned starts" ks_wait_for 20 log_has "keystoned: running"
check "a missing spool folder is an error naming it" ks_wait_for 10 log_has "ingest: cannot open the spool folder $SPOOL"
sleep 2.5
check_eq "logged once, not every interval" 1 "$(grep -c "cannot open the spool folder" "$KS_TMP/keystoned.log")"
mkdir -p "$SPOOL"
check "the folder is noticed once it exists" ks_wait_for 10 log_has "ingest: spool folder $SPOOL is there now"

# --- 2. Every column of two hand-written records, and the links ------------------------------
fixture=$(early_name 10)
{
    header 2
    echo '{"cluster":"smp","job_id":1001,"array_job_id":1000,"array_task_id":1,"het_job_id":null,"het_job_offset":null,"het_job_info":"","job_name":"fixture one","user":"alice","uid":10001,"group":"","gid":0,"account":"smith-lab","partition":"gpu","qos":"high","state":"COMPLETED","exit_code":0,"exit_signal":0,"derived_exit_code":3,"derived_signal":0,"submit_time":1790000000,"eligible_time":1790000005,"start_time":1790000060,"end_time":1790003660,"elapsed_sec":3600,"time_limit_min":-1,"node_count":2,"node_list":"node[01-02]","cpus":8,"tres_alloc":"cpu=8,mem=32G,node=2,billing=8","billing":8.5,"priority":4242,"work_dir":"/home/alice/run","reservation":"maint","truncated":[]}'
    echo '{"cluster":"other","job_id":2001,"array_job_id":null,"array_task_id":null,"het_job_id":2000,"het_job_offset":1,"het_job_info":"2000-2001","job_name":"","user":"bob","uid":10002,"group":"","gid":null,"account":"","partition":"debug","qos":"","state":"CANCELLED","exit_code":0,"exit_signal":9,"derived_exit_code":null,"derived_signal":null,"submit_time":1790000100,"eligible_time":null,"start_time":null,"end_time":1790000200,"elapsed_sec":0,"time_limit_min":30,"node_count":null,"node_list":"","cpus":null,"tres_alloc":"","billing":null,"priority":null,"work_dir":"","reservation":"","truncated":[]}'
} >"$KS_TMP/$fixture"
put "$KS_TMP/$fixture"
echo '{"written":1}' >"$SPOOL/plugin-stats.json"
echo 'not a batch' >"$SPOOL/notes.json"
: >"$SPOOL/.tmp.99999.2"
check "the fixture is ingested" ks_wait_for 20 rows_are 2
check "its file is deleted after the commit" ks_wait_for 10 spool_empty
check_eq "job 1001: key, sacct JobID, names (group from gid 0), state, exit codes" \
    "smp|1001|2026-09-21 14:13:20+00|1000_1|1000|1|||fixture one|alice|10001|root|0|smith-lab|gpu|high|COMPLETED|0:0|3:0" \
    "$(ks_sql "SELECT cluster, job_id, submit, jobid, array_job_id, array_task_id, het_job_id, het_job_offset,
                      jobname, username, uid, \"group\", gid, account, partition, qos, state, exitcode, derivedexitcode
               FROM keystone_slurm.job WHERE job_id = 1001")"
check_eq "job 1001: times, limits, resources (AllocTRES sorted as sacct prints it)" \
    "2026-09-21 14:13:25+00|2026-09-21 14:14:20+00|2026-09-21 15:14:20+00|01:00:00|-1|2|node[01-02]|8|billing=8,cpu=8,mem=32G,node=2|8.5|4242|/home/alice/run|maint|jobcomp" \
    "$(ks_sql "SELECT eligible, start, \"end\", elapsed, timelimit_min, allocnodes, nodelist, alloccpus, alloctres,
                      billing, priority, workdir, reservation, source
               FROM keystone_slurm.job WHERE job_id = 1001")"
check_eq "job 1001: linked to the cluster, the team (slug = account) and the user" "t|t|t" \
    "$(ks_sql "SELECT j.cluster_id = c.id, j.team_id = t.id, j.user_id = u.id
               FROM keystone_slurm.job j, allocations_cluster c, users_team t, users_user u
               WHERE j.job_id = 1001 AND c.name = 'smp' AND t.slug = 'smith-lab' AND u.username = 'alice'")"
check_eq "job 2001: het JobID, NULL for every empty string and unset value, no links" \
    "2000+1|2000|1|2000-2001|t|bob|t|t|t|CANCELLED|0:9|t|t|t|00:00:00|30|t|t|t|t|t|t|t|t|t|t" \
    "$(ks_sql "SELECT jobid, het_job_id, het_job_offset, het_job_info, jobname IS NULL, username, \"group\" IS NULL,
                      gid IS NULL, account IS NULL, state, exitcode, derivedexitcode IS NULL, eligible IS NULL,
                      start IS NULL, elapsed, timelimit_min, allocnodes IS NULL, nodelist IS NULL, alloccpus IS NULL,
                      billing IS NULL, priority IS NULL, workdir IS NULL, reservation IS NULL,
                      cluster_id IS NULL, team_id IS NULL, user_id IS NULL
               FROM keystone_slurm.job WHERE job_id = 2001")"
check "the writer's temp file, the stats file and other names stay untouched" \
    test -f "$SPOOL/plugin-stats.json" -a -f "$SPOOL/notes.json" -a -f "$SPOOL/.tmp.99999.2"
check "nothing was quarantined" test ! -e "$QUAR"
check "an info line per transaction at verbose" log_has "ingest: committed Files=1 Records=2 Inserted=2 Updated=0 Unchanged=0"
check_eq "ingest_state counts the file and its records" "1|2|0|t" \
    "$(ks_sql "SELECT files_ingested, records_ingested, files_quarantined, last_ingest_at IS NOT NULL FROM keystone_slurm.ingest_state WHERE worker = 'test-worker'")"

# --- 3. Volume through spoolgen; a replay changes nothing ------------------------------------
mkdir -p "$KS_TMP/gen"
"$SPOOLGEN" -q -d "$KS_TMP/gen" -n 2000 -b 500 -c smp -j 1 -t 1790000000 -s 7
put "$KS_TMP"/gen/*.json
gen="cluster = 'smp' AND jobname LIKE 'job-%-analysis'"
check "2000 generated records arrive" ks_wait_for 60 rows_are 2000 "$gen"
check "their 4 files are deleted" ks_wait_for 10 spool_empty
check_eq "array tasks and het components get sacct's JobID" "1_9|25+1" \
    "$(ks_sql "SELECT (SELECT jobid FROM keystone_slurm.job WHERE $gen AND job_id = 10) || '|' ||
                      (SELECT jobid FROM keystone_slurm.job WHERE $gen AND job_id = 26)")"
check_eq "cluster, team and user links set where Keystone knows them" "0|0|0" \
    "$(ks_sql "SELECT count(*) FILTER (WHERE cluster_id IS NULL) || '|' || count(*) FILTER (WHERE team_id IS NULL) || '|' || count(*) FILTER (WHERE user_id IS NULL) FROM keystone_slurm.job WHERE $gen")"
before=$(ks_sql "SELECT count(*) || '|' || max(updated_at) || '|' || sum(hashtext(jobname || state || coalesce(exitcode, ''))) FROM keystone_slurm.job")
sleep 1.1   # a changed row would get a visibly later updated_at
put "$KS_TMP"/gen/*.json
check "the same files a second time are taken" ks_wait_for 60 spool_empty
check "and counted as unchanged" ks_wait_for 10 grep -Eq "Inserted=0 Updated=0 Unchanged=[0-9]+" "$KS_TMP/keystoned.log"
check_eq "a replay changes nothing (rows, updated_at, values)" "$before" \
    "$(ks_sql "SELECT count(*) || '|' || max(updated_at) || '|' || sum(hashtext(jobname || state || coalesce(exitcode, ''))) FROM keystone_slurm.job")"

# --- 4. Job keys: cluster, job id and submit time --------------------------------------------
"$SPOOLGEN" -q -d "$SPOOL" -n 5 -c smp -j 1 -t 1800000000 -s 8
check "the same job ids submitted later are new jobs" ks_wait_for 30 rows_are 2 "cluster = 'smp' AND job_id = 1"
"$SPOOLGEN" -q -d "$SPOOL" -n 5 -c gpu -j 1 -t 1790000000 -s 9
check "the same job id on another cluster is another job" ks_wait_for 30 rows_are 3 "job_id = 1"
check_eq "the other cluster has no Keystone link" "1" \
    "$(ks_sql "SELECT count(*) FROM keystone_slurm.job WHERE job_id = 1 AND cluster = 'gpu' AND cluster_id IS NULL")"

# --- 5. Corrupt files: each quarantined, the files after them ingested ------------------------
stop_daemon
good=$(ls -1 "$KS_TMP/gen" | head -n 1)
head -c -7 "$KS_TMP/gen/$good" >"$SPOOL/$(early_name 101)"                      # cut in the last line
echo 'this is not JSON' >"$SPOOL/$(early_name 102)"
sed '1s/"format_version":1/"format_version":2/' "$KS_TMP/gen/$good" >"$SPOOL/$(early_name 103)"
sed '1s/"count":500/"count":501/' "$KS_TMP/gen/$good" >"$SPOOL/$(early_name 104)"
sed '3s/^{/{"bogus":1,/' "$KS_TMP/gen/$good" >"$SPOOL/$(early_name 105)"
: >"$SPOOL/$(early_name 106)"
sed '2s/"cluster":"smp"/"cluster":""/' "$KS_TMP/gen/$good" >"$SPOOL/$(early_name 107)"
"$SPOOLGEN" -q -d "$SPOOL" -n 40 -b 10 -c after -j 1 -s 10                        # good, sorted after
start_daemon
check "the good files after the corrupt ones are ingested" ks_wait_for 30 rows_are 40 "cluster = 'after'"
check "the spool is empty afterwards" ks_wait_for 10 spool_empty
reason_of() { cat "$QUAR/$(early_name "$1").reason" 2>/dev/null; }
check_match "truncated last line: quarantined, reason names record and line" \
    "record 499 \(line 501\): no newline at end of file \(truncated\)" "$(reason_of 101)"
check_match "not JSON: reason names the header" "header \(line 1\): invalid JSON" "$(reason_of 102)"
check_match "wrong format_version" "unsupported format_version 2" "$(reason_of 103)"
check_match "count mismatch" "truncated: header says 501 records, file ends after 500" "$(reason_of 104)"
check_match "unknown member" "record 1 \(line 3\): unknown member 'bogus'" "$(reason_of 105)"
check_match "zero-byte file" "empty file" "$(reason_of 106)"
check_match "a record without a cluster: the whole file" "record 0 \(line 2\): member 'cluster': empty" "$(reason_of 107)"
check_match "the reason names the file" "^$SPOOL/$(early_name 101): " "$(reason_of 101)"
for n in 101 102 103 104 105 106 107; do
    [ -f "$QUAR/$(early_name $n)" ] || ks_fail "quarantine holds $(early_name $n)"
done
check_eq "the quarantine folder is 0750" "750" "$(stat -c %a "$QUAR")"
check_eq "nothing of the file with the keyless record was loaded" "0" \
    "$(ks_sql "SELECT count(*) FROM keystone_slurm.job WHERE cluster = ''")"
check_eq "a spool_quarantine row per file, with its path and reason" "7|7" \
    "$(ks_sql "SELECT count(*) || '|' || count(*) FILTER (WHERE reason LIKE '%' || substr(file, length(file) - 28) || '%' AND file LIKE '$QUAR/%' AND worker = 'test-worker') FROM keystone_slurm.spool_quarantine")"
check_eq "ingest_state counts them" "7" \
    "$(ks_sql "SELECT files_quarantined FROM keystone_slurm.ingest_state WHERE worker = 'test-worker'")"
check_match "ingest_state has the last error" "quarantined $QUAR/" \
    "$(ks_sql "SELECT last_error FROM keystone_slurm.ingest_state WHERE worker = 'test-worker'")"
check "each quarantine is logged at error with the file name" log_has "error: ingest: quarantined $QUAR/$(early_name 104)"

# --- 6. PostgreSQL down while files arrive ----------------------------------------------------
ks_pg_stop
"$SPOOLGEN" -q -d "$SPOOL" -n 3000 -b 500 -c outage -j 1 -s 11
check "the failure is logged" ks_wait_for 30 grep -Eq "ingest: transaction of .* failed|cannot connect \(ingest\)" "$KS_TMP/keystoned.log"
sleep 2
check "keystoned keeps running while PostgreSQL is down" kill -0 "$daemon_pid"
check_eq "the files stay in the spool meanwhile" "3000" "$(spooled_records)"
check "nothing was quarantined for a database error" test "$(ls "$QUAR" | grep -vc reason)" = 7
ks_pg_restart
check "once PostgreSQL is back every record arrives" ks_wait_for 90 rows_are 3000 "cluster = 'outage'"
check "and the spool empties" ks_wait_for 10 spool_empty
check "keystoned is still running" kill -0 "$daemon_pid"

# --- 7. kill -9 in the middle of a large ingest -----------------------------------------------
stop_daemon
sed -i '/^KEYSTONED_INGEST_MAX_RECORDS=/d' "$KS_TMP/keystoned.conf"
echo "KEYSTONED_INGEST_MAX_RECORDS=10000" >>"$KS_TMP/keystoned.conf"
"$SPOOLGEN" -q -d "$SPOOL" -n 200000 -b 500 -c big -j 1 -s 12
start_daemon
partly() { local n; n=$(rows "cluster = 'big'"); [ "$n" -gt 0 ] && [ "$n" -lt 200000 ]; }
check "the large ingest is under way" ks_wait_for 120 partly
kill -KILL "$daemon_pid"; wait "$daemon_pid" 2>/dev/null; daemon_pid=
got=$(rows "cluster = 'big'")
check_match "killed part way ($got of 200000 in, $(spooled_records) records still spooled)" "^[0-9]+$" "$got"
start_daemon
check "after a restart every job arrives" ks_wait_for 300 rows_are 200000 "cluster = 'big'"
check "the spool empties" ks_wait_for 10 spool_empty
check_eq "each job exactly once, every job id there" "200000|200000|1|200000" \
    "$(ks_sql "SELECT count(*) || '|' || count(DISTINCT job_id) || '|' || min(job_id) || '|' || max(job_id) FROM keystone_slurm.job WHERE cluster = 'big'")"

# --- 8. SIGTERM during an ingest: exit 0, nothing lost ----------------------------------------
stop_daemon
"$SPOOLGEN" -q -d "$SPOOL" -n 100000 -b 500 -c term -j 1 -s 13
start_daemon
partly_term() { local n; n=$(rows "cluster = 'term'"); [ "$n" -gt 0 ] && [ "$n" -lt 100000 ]; }
check "the ingest is under way" ks_wait_for 120 partly_term
kill -TERM "$daemon_pid"; wait "$daemon_pid"; rc=$?; daemon_pid=
check_eq "SIGTERM during an ingest: exit status 0" 0 "$rc"
in_db=$(rows "cluster = 'term'"); spooled=$(spooled_records)
check "no record lost: $in_db in the table + $spooled in the spool >= 100000" test $((in_db + spooled)) -ge 100000
start_daemon
check "after a restart every record arrives" ks_wait_for 300 rows_are 100000 "cluster = 'term'"

# --- 9. Hostile strings -----------------------------------------------------------------------
"$SPOOLGEN" -q -d "$SPOOL" -n 16 -b 16 -c hostile -j 1 -s 14 -H
check "hostile records arrive" ks_wait_for 30 rows_are 16 "cluster = 'hostile'"
hostile() { ks_sql "SELECT jobname = $2 FROM keystone_slurm.job WHERE cluster = 'hostile' AND job_id = $1"; }
check_eq "quotes" t "$(hostile 1 "E'it\\'s a \"quoted\" name'")"
check_eq "newlines and carriage return" t "$(hostile 2 "E'line one\\nline two\\r\\nline three'")"
check_eq "backslashes, tab and COPY's \\N" t "$(hostile 3 "E'back\\\\slash \\\\N tab\\there \\\\\\\\ end\\\\'")"
check_eq "a job named \\N is not NULL" t "$(hostile 4 "E'\\\\N'")"
check_eq "invalid UTF-8 as U+FFFD" t "$(hostile 5 "E'bad \\uFFFD\\uFFFD bytes \\uFFFD( and \\uFFFD\\uFFFD\\uFFFD surrogate'")"
check_eq "a 1024-byte job name, whole" t "$(hostile 6 "'long:' || repeat('L', 1018) || 'Z'")"
check_eq "SQL in a name is just text" t "$(hostile 7 "E'\\'; DROP TABLE keystone_slurm.job; --'")"
check_eq "multibyte UTF-8" t "$(hostile 8 "E'J\\u00f6b \\u2603 \\U0001F680'")"
check_eq "user name with a quote, work dir with invalid UTF-8 and a tab" "16|16" \
    "$(ks_sql "SELECT count(*) FILTER (WHERE username = E'o\\'brien') || '|' || count(*) FILTER (WHERE workdir = E'/home/o\\'brien/\\uFFFD dir\\twith \"tab\"') FROM keystone_slurm.job WHERE cluster = 'hostile'")"

check_eq "no quarantine beyond the seven corrupt files" "7" "$(ks_sql "SELECT count(*) FROM keystone_slurm.spool_quarantine")"

# --- 10. SIGHUP: another spool folder; a quarantine folder that cannot be made -----------------
SPOOL2=$KS_TMP/spool2
mkdir -p "$SPOOL2"
sed -i "s|^KEYSTONED_SPOOL_DIR=.*|KEYSTONED_SPOOL_DIR=$SPOOL2|" "$KS_TMP/keystoned.conf"
echo "KEYSTONED_QUARANTINE_DIR=$KS_TMP/no/such/folder" >>"$KS_TMP/keystoned.conf"
kill -HUP "$daemon_pid"
check "the reload is announced" ks_wait_for 10 log_has "ingest: spool now $SPOOL2, quarantine $KS_TMP/no/such/folder"
bad=$(early_name 201)
head -c -7 "$KS_TMP/gen/$good" >"$KS_TMP/$bad"
cp "$KS_TMP/$bad" "$SPOOL2/.tmp.$$.bad" && mv "$SPOOL2/.tmp.$$.bad" "$SPOOL2/$bad"
"$SPOOLGEN" -q -d "$SPOOL2" -n 10 -b 5 -c reload -j 1 -s 15
check "files in the new spool folder are ingested" ks_wait_for 30 rows_are 10 "cluster = 'reload'"
check "a file that cannot be quarantined is logged with the reason" ks_wait_for 10 \
    log_has "error: ingest: cannot quarantine $SPOOL2/$bad: cannot create $KS_TMP/no/such/folder: No such file or directory; .*invalid: .*truncated"
check "and stays in the spool, unchanged" cmp "$KS_TMP/$bad" "$SPOOL2/$bad"
sed -i '/^KEYSTONED_QUARANTINE_DIR=/d' "$KS_TMP/keystoned.conf"
kill -HUP "$daemon_pid"
check "the default quarantine is back" ks_wait_for 10 log_has "ingest: spool now $SPOOL2, quarantine $SPOOL2/quarantine"
"$SPOOLGEN" -q -d "$SPOOL2" -n 5 -b 5 -c reload -j 100 -s 16
check "later files still go in" ks_wait_for 30 rows_are 15 "cluster = 'reload'"
check "the file is left alone until keystoned restarts" cmp "$KS_TMP/$bad" "$SPOOL2/$bad"
stop_daemon
start_daemon
check "after a restart it is quarantined" ks_wait_for 30 test -f "$SPOOL2/quarantine/$bad.reason"
quarantine_rows() { [ "$(ks_sql "SELECT count(*) FROM keystone_slurm.spool_quarantine")" = "$1" ]; }
check "and recorded: eight quarantine rows in all" ks_wait_for 10 quarantine_rows 8

# --- 11. Three connections: a job's records keep their order ---------------------------------
# Two generations of the same 20,000 jobs (same keys, other values), the second written later,
# and a reference copy of the second under another cluster name: ingested in one pass through
# three connections, in transactions of at most 2,000 records, every job must hold the second
# generation's values.
stop_daemon
sed -i '/^KEYSTONED_INGEST_MAX_RECORDS=/d; /^KEYSTONED_INGEST_CONNECTIONS=/d' "$KS_TMP/keystoned.conf"
printf '%s\n' KEYSTONED_INGEST_MAX_RECORDS=2000 KEYSTONED_INGEST_CONNECTIONS=3 >>"$KS_TMP/keystoned.conf"
state_before=$(ks_sql "SELECT files_ingested || '|' || records_ingested FROM keystone_slurm.ingest_state WHERE worker = 'test-worker'")
"$SPOOLGEN" -q -d "$SPOOL2" -n 20000 -b 500 -c lanes -j 1 -t 1790000000 -s 21
"$SPOOLGEN" -q -d "$SPOOL2" -n 20000 -b 500 -c lanes -j 1 -t 1790000000 -s 22
"$SPOOLGEN" -q -d "$SPOOL2" -n 20000 -b 500 -c lanes-ref -j 1 -t 1790000000 -s 22
mark=$(wc -l <"$KS_TMP/keystoned.log")
since_mark() { tail -n "+$((mark + 1))" "$KS_TMP/keystoned.log"; }
start_daemon
check "60,000 records in 120 files arrive" ks_wait_for 120 rows_are 40000 "cluster IN ('lanes', 'lanes-ref')"
spool2_empty() { [ -z "$(ls -1 "$SPOOL2" | grep -E "$batch_re")" ]; }
check "and the spool empties" ks_wait_for 10 spool2_empty
# values CLUSTER [CONDITION]: a digest of every column but the cluster.
values() { ks_sql "SELECT count(*) || '|' || sum(hashtext(concat_ws('|', job_id, submit, username, state, exitcode, workdir, partition, start, \"end\", timelimit_min, nodelist, alloctres, billing, priority, reservation)))
                   FROM keystone_slurm.job WHERE cluster = '$1'${2:+ AND $2}"; }
check_eq "every job holds the values written last" "$(values lanes-ref)" "$(values lanes)"
for c in 1 2 3; do
    check_eq "connection $c committed transactions" yes "$(since_mark | grep -q "Connection=$c in " && echo yes)"
done
largest=$(since_mark | grep -o 'committed Files=[0-9]* Records=[0-9]*' | sed 's/.*Records=//' | sort -n | tail -n 1)
check "no transaction over 2,000 records (largest: $largest)" test "${largest:-0}" -le 2000 -a "${largest:-0}" -gt 1000
ingest_conns() { ks_sql "SELECT string_agg(application_name, '|' ORDER BY application_name) FROM pg_stat_activity WHERE application_name LIKE 'keystoned ingest%'"; }
check_eq "pg_stat_activity names the three ingest connections" "keystoned ingest|keystoned ingest 2|keystoned ingest 3" "$(ingest_conns)"
check_eq "ingest_state: every file once, every record" \
    "$(( ${state_before%|*} + 120 ))|$(( ${state_before#*|} + 60000 ))" \
    "$(ks_sql "SELECT files_ingested || '|' || records_ingested FROM keystone_slurm.ingest_state WHERE worker = 'test-worker'")"
# Back to one connection on SIGHUP: the others close at the next pass.
sed -i 's/^KEYSTONED_INGEST_CONNECTIONS=.*/KEYSTONED_INGEST_CONNECTIONS=1/' "$KS_TMP/keystoned.conf"
reloads=$(grep -c "configuration reloaded" "$KS_TMP/keystoned.log")
kill -HUP "$daemon_pid"
reloaded() { [ "$(grep -c "configuration reloaded" "$KS_TMP/keystoned.log")" -gt "$reloads" ]; }
check "the reload to one connection is done" ks_wait_for 10 reloaded
mark=$(wc -l <"$KS_TMP/keystoned.log")
"$SPOOLGEN" -q -d "$SPOOL2" -n 3000 -b 500 -c one -j 1 -s 23
check "after it the files go in" ks_wait_for 60 rows_are 3000 "cluster = 'one'"
check_eq "through connection 1 only" "" "$(since_mark | grep -o 'Connection=[2-9]' | sort -u)"
one_conn() { [ "$(ingest_conns)" = "keystoned ingest" ]; }
check "and the other two connections are closed" ks_wait_for 10 one_conn

# --- 12. One connection fails, the other goes on: nothing older comes back --------------------
# File F holds jobs 1-2048 (old values), the later file G jobs 1-1023 (new values), all in the
# first connection's share but jobs 1024-2047 (blocks of 1024 ids, two connections), whose
# transactions PostgreSQL refuses. The first connection commits F's share and G; neither file
# may be deleted while F is not wholly in, or F, loaded again, would bring back old values.
stop_daemon
sed -i 's/^KEYSTONED_INGEST_CONNECTIONS=.*/KEYSTONED_INGEST_CONNECTIONS=2/' "$KS_TMP/keystoned.conf"
ks_sql "ALTER TABLE keystone_slurm.job ADD CONSTRAINT test_second_share CHECK (NOT (cluster = 'order' AND job_id BETWEEN 1024 AND 2047)) NOT VALID" >/dev/null
"$SPOOLGEN" -q -d "$SPOOL2" -n 2048 -b 2048 -c order -j 1 -t 1790000000 -s 31
"$SPOOLGEN" -q -d "$SPOOL2" -n 1023 -b 1023 -c order -j 1 -t 1790000000 -s 32
"$SPOOLGEN" -q -d "$SPOOL2" -n 1023 -b 1023 -c order-ref -j 1 -t 1790000000 -s 32
start_daemon
check "the second connection's share is refused" ks_wait_for 30 log_has "test_second_share"
check "the first connection's shares are in" ks_wait_for 30 rows_are 1024 "cluster = 'order'"
check_eq "jobs 1-1023 hold G's values" "$(values order-ref)" "$(values order "job_id < 1024")"
sleep 2 # a pass or two more
check_eq "F, G and the file after them stay in the spool" 3 "$(ls -1 "$SPOOL2" | grep -cE "$batch_re")"
stop_daemon
ks_sql "ALTER TABLE keystone_slurm.job DROP CONSTRAINT test_second_share" >/dev/null
start_daemon
check "after a restart without the refusal every job is in" ks_wait_for 60 rows_are 2048 "cluster = 'order'"
check "and the spool empties" ks_wait_for 10 spool2_empty
check_eq "jobs 1-1023 still hold G's values (F, loaded again, came first)" "$(values order-ref)" "$(values order "job_id < 1024")"
stop_daemon
ks_done
