#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# keystoned's Prometheus endpoint against a real PostgreSQL: scraped during and after a run and
# parsed strictly (text format 0.0.4); ingest, quarantine, spool and plugin histogram values;
# 404 and 405; IPv6 loopback and rebinding on SIGHUP; a taken port (keystoned runs on without
# metrics); "off" (nothing listens).
. "${KS_SRCDIR:-.}/tests/lib/common.sh"
. "$KS_SRCDIR/tests/lib/pg.sh"
command -v python3 >/dev/null || ks_missing_service "python3 not installed"
ks_scratch
ks_pg_start
SPOOL=$KS_TMP/spool
QUAR=$SPOOL/quarantine
SPOOLGEN=$KS_BUILDDIR/bench/spoolgen
[ -x "$SPOOLGEN" ] || { echo "bench/spoolgen not built"; exit 99; }
mkdir -p "$SPOOL"
TASK=apps.logging.tasks.clear_log_records

# conf ADDRESS [extra lines]: every task off but clear_log_records, daily at an hour twelve hours
# away (so only the catch-up at start runs it).
hour=$((10#$(date -u +%H)))
daily="0 $(( (hour + 12) % 24 )) * * *"
conf() {
    local address=$1; shift
    ks_write_conf "KEYSTONED_METRICS_ADDRESS=$address" "KEYSTONED_SPOOL_DIR=$SPOOL" \
        "KEYSTONED_INGEST_INTERVAL=1" "KEYSTONED_LOG_LEVEL=verbose" \
        "KEYSTONED_SCHEDULE_CLEAR_LOG_RECORDS=$daily" "CONFIG_TIMEZONE=UTC" "KEYSTONED_SCHEDULE_LDAP_UPDATE_USERS=off" \
        "KEYSTONED_SCHEDULE_UPDATE_LIMITS=off" "KEYSTONED_SCHEDULE_SLURM_UPDATE_JOB_STATS=off" \
        "KEYSTONED_SCHEDULE_NOTIFY_UPCOMING_EXPIRATIONS=off" \
        "KEYSTONED_SCHEDULE_NOTIFY_PAST_EXPIRATIONS=off" "$@"
}
conf off
"$KEYSTONECTL" db migrate --keystone-schema >/dev/null || { echo "migrate failed"; exit 99; }

daemon_pid=
start_daemon() {
    : >"$KS_TMP/keystoned.log"
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
# The catch-up at start runs clear_log_records once (its last slot is days ago).
missed_slot() {
    ks_sql "INSERT INTO keystone_slurm.task_schedule (task_name, last_slot, updated_at)
            VALUES ('$TASK', now() - interval '3 days', now())
            ON CONFLICT (task_name) DO UPDATE SET last_slot = EXCLUDED.last_slot" >/dev/null
}
runs() { ks_sql "SELECT count(*) FROM django_celery_results_taskresult WHERE task_name = '$TASK' AND status = '$1'"; }
runs_at_least() { [ "$(runs "$1")" -ge "$2" ]; }

# The scraper: fetches a URL and checks the exposition strictly; prints each sample as
# name{labels sorted} value, or the HTTP status for other methods and paths.
cat >"$KS_TMP/scrape.py" <<'EOF'
import math, re, sys, urllib.error, urllib.request

NAME = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*')
LABEL = re.compile(r'[a-zA-Z_][a-zA-Z0-9_]*')
TYPES = {'counter', 'gauge', 'histogram', 'summary', 'untyped'}


def fail(msg, line=None):
    sys.exit('metrics: ' + msg + ('' if line is None else ': %r' % line))


def value(text, line):
    if text in ('+Inf', '-Inf', 'NaN'):
        return float(text.replace('Inf', 'inf').replace('NaN', 'nan'))
    if not re.fullmatch(r'-?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?', text):
        fail('not a number', line)
    return float(text)


def labels(text, line):
    out, i = {}, 0
    while i < len(text):
        m = LABEL.match(text, i)
        if not m or text[m.end():m.end() + 2] != '="':
            fail('bad label', line)
        name, i, v = m.group(), m.end() + 2, ''
        while True:
            if i >= len(text):
                fail('unterminated label value', line)
            c = text[i]
            if c == '\\':
                esc = text[i + 1:i + 2]
                if esc not in ('\\', '"', 'n'):
                    fail('bad escape in a label value', line)
                v += '\n' if esc == 'n' else esc
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == '\n':
                fail('raw newline in a label value', line)
            else:
                v += c
                i += 1
        if name in out:
            fail('label given twice', line)
        out[name] = v
        if i < len(text):
            if text[i] != ',':
                fail('expected , between labels', line)
            i += 1
    return out


def parse(body):
    if not body.endswith('\n'):
        fail('the text does not end with a newline')
    help_, type_, done, samples, seen = {}, {}, set(), [], set()
    current = None
    for line in body[:-1].split('\n'):
        if line.startswith('#'):
            parts = line.split(' ', 3)
            if len(parts) >= 3 and parts[1] in ('HELP', 'TYPE'):
                fam = parts[2]
                if not NAME.fullmatch(fam):
                    fail('bad family name', line)
                if parts[1] == 'HELP':
                    if fam in help_ or len(parts) < 4:
                        fail('HELP repeated or empty', line)
                    help_[fam] = parts[3]
                else:
                    if fam in type_ or len(parts) != 4 or parts[3] not in TYPES:
                        fail('TYPE repeated or unknown', line)
                    if any(s[0] == fam for s in samples):
                        fail('TYPE after its samples', line)
                    type_[fam] = parts[3]
            continue
        m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)', line)
        if not m:
            fail('not a sample line', line)
        name, lab, v = m.group(1), labels(m.group(2) or '', line), value(m.group(3), line)
        fam = name
        for suffix in ('_bucket', '_sum', '_count'):
            if name.endswith(suffix) and type_.get(name[:-len(suffix)]) == 'histogram':
                fam = name[:-len(suffix)]
        if fam not in type_ or fam not in help_:
            fail('sample without HELP and TYPE', line)
        if fam != current:
            if fam in done:
                fail('samples of a family are not together', line)
            if current:
                done.add(current)
            current = fam
        key = (name, tuple(sorted(lab.items())))
        if key in seen:
            fail('sample repeated', line)
        seen.add(key)
        if type_[fam] == 'counter' and not v >= 0:
            fail('negative counter', line)
        if type_[fam] == 'histogram' and name.endswith('_bucket') and 'le' not in lab:
            fail('bucket without le', line)
        samples.append((fam, name, lab, v))
    # Histograms: buckets increasing in le, cumulative, +Inf last and equal to _count, a _sum.
    for fam, t in type_.items():
        if t != 'histogram':
            continue
        groups = {}
        for f, name, lab, v in samples:
            if f != fam:
                continue
            rest = tuple(sorted((k, x) for k, x in lab.items() if k != 'le'))
            g = groups.setdefault(rest, {'buckets': [], 'sum': None, 'count': None})
            if name.endswith('_bucket'):
                g['buckets'].append((value(lab['le'], lab['le']), v))
            elif name.endswith('_sum'):
                g['sum'] = v
            else:
                g['count'] = v
        for g in groups.values():
            b = g['buckets']
            if not b or g['sum'] is None or g['count'] is None:
                fail('histogram %s lacks buckets, _sum or _count' % fam)
            if any(b[i][0] >= b[i + 1][0] for i in range(len(b) - 1)):
                fail('histogram %s: le does not increase' % fam)
            if any(b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
                fail('histogram %s: buckets are not cumulative' % fam)
            if not math.isinf(b[-1][0]) or b[-1][1] != g['count']:
                fail('histogram %s: +Inf bucket missing or not equal to _count' % fam)
    return samples


method, url = sys.argv[1], sys.argv[2]
req = urllib.request.Request(url, method=method, data=b'x=1' if method == 'POST' else None)
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        status, ctype, body = r.status, r.headers.get('Content-Type'), r.read()
except urllib.error.HTTPError as e:
    print(e.code, e.headers.get('Allow') or '')
    sys.exit(0)
if method != 'GET':
    print(status)
    sys.exit(0)
if ctype != 'text/plain; version=0.0.4; charset=utf-8':
    fail('Content-Type is %r' % ctype)
for fam, name, lab, v in parse(body.decode('utf-8')):
    text = ','.join('%s="%s"' % (k, x.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n'))
                    for k, x in sorted(lab.items()))
    print('%s%s %s' % (name, '{%s}' % text if text else '',
                      repr(v) if math.isinf(v) or math.isnan(v) or v != int(v) else int(v)))
EOF
# scrape HOST:PORT: the normalized samples in $KS_TMP/m (fails when the text is not valid)
scrape() { python3 "$KS_TMP/scrape.py" GET "http://$1/metrics" >"$KS_TMP/m.new" && mv "$KS_TMP/m.new" "$KS_TMP/m"; }
# m 'name{labels}': the value of one sample in the last scrape ("" when absent)
m() { awk -v k="$1" '$1 == k { print $2 }' "$KS_TMP/m"; }
# Listening TCP sockets of a process (from /proc: no tools needed).
listening() {
    python3 - "$1" <<'EOF'
import os, sys
pid = sys.argv[1]
inodes = set()
for fd in os.listdir('/proc/%s/fd' % pid):
    try:
        t = os.readlink('/proc/%s/fd/%s' % (pid, fd))
    except OSError:
        continue
    if t.startswith('socket:['):
        inodes.add(t[8:-1])
n = 0
for f in ('/proc/net/tcp', '/proc/net/tcp6'):
    try:
        rows = open(f).read().splitlines()[1:]
    except OSError:
        continue
    for row in rows:
        cols = row.split()
        if cols[3] == '0A' and cols[9] in inodes:
            n += 1
print(n)
EOF
}

# --- 1. The port is taken: an error naming the setting, and the tasks still run -------------
taken=$(ks_free_port)
python3 -c "import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $taken)); s.listen(1); print('ready', flush=True); time.sleep(120)" >"$KS_TMP/holder.out" &
holder=$!
ks_on_exit "kill $holder"
ks_wait_for 10 grep -q ready "$KS_TMP/holder.out"
conf "127.0.0.1:$taken"
missed_slot
start_daemon
check "port taken: keystoned starts anyway" ks_wait_for 20 log_has "keystoned: running"
check "the error names the setting, the address and the cause" \
    log_has "metrics: cannot serve KEYSTONED_METRICS_ADDRESS=127.0.0.1:$taken: 127.0.0.1:$taken: Address already in use; keystoned runs on without a metrics endpoint"
check "port taken: the task still runs (catch-up run recorded SUCCESS)" ks_wait_for 30 runs_at_least SUCCESS 1
check_eq "port taken: keystoned listens on nothing" 0 "$(listening "$daemon_pid")"
stop_daemon
kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null

# --- 2. off: nothing listens -----------------------------------------------------------------
conf off
start_daemon
check "off: keystoned starts" ks_wait_for 20 log_has "keystoned: running"
check "off: says there is no endpoint" log_has "metrics: KEYSTONED_METRICS_ADDRESS=off: no metrics endpoint"
check_eq "off: keystoned listens on nothing" 0 "$(listening "$daemon_pid")"
stop_daemon

# --- 3. Scraped during a run, with the ingest held back by a table lock ----------------------
port=$(ks_free_port)
# Another hour: a slot the first start has not claimed already.
daily="0 $(( (hour + 13) % 24 )) * * *"
conf "127.0.0.1:$port" "KEYSTONED_CLEANUP_BATCH_SIZE=100"
ks_sql "INSERT INTO logging_requestlog (method, endpoint, response_code, \"timestamp\")
        SELECT 'GET', '/old', 200, now() - interval '60 days' FROM generate_series(1, 150000)" >/dev/null
missed_slot
success_before=$(runs SUCCESS)
# Three good batch files (300 records) and a corrupt one, which sorts first.
mkdir -p "$KS_TMP/gen"
"$SPOOLGEN" -q -d "$KS_TMP/gen" -n 300 -b 100 -c smp -j 1 -t 1790000000 -s 7
cp "$KS_TMP"/gen/*.json "$SPOOL/"
echo 'this is not JSON' >"$SPOOL/$(printf '%020d-1-1.json' 1)"
# plugin-stats.json as the plugin writes it: 26 buckets, the last one unbounded.
write_stats() {
    python3 - "$SPOOL/plugin-stats.json" <<'EOF'
import json, sys, time
counts = [0] * 26
counts[1], counts[2], counts[5], counts[25] = 3, 5, 1, 1
buckets = [{'lt_usec': 0.125 * 2 ** i if i < 25 else None, 'count': c} for i, c in enumerate(counts)]
doc = {'format': 'keystone-jobcomp-stats', 'format_version': 1, 'pid': 4321, 'time': int(time.time()) - 3,
       'queue': {'capacity': 100000, 'depth': 2, 'high_water': 812, 'pushed': 51234, 'dropped': 7},
       'spool': {'files_written': 409, 'records_written': 51227, 'write_errors': 1, 'retry_pending': 0,
                 'lost_at_stop': 0, 'last_error': ''},
       'callback': {'count': 10, 'sum_ns': 2500000000, 'max_ns': 2400000000, 'buckets': buckets}}
open(sys.argv[1], 'w').write(json.dumps(doc) + '\n')
EOF
}
# Hold keystone_slurm.job so the ingest waits with its files still in the spool.
psql -X -q -c "BEGIN; LOCK TABLE keystone_slurm.job IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60); COMMIT;" >/dev/null 2>&1 &
locker=$!
ks_on_exit "kill $locker"
job_locked() { [ "$(ks_sql "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'job' AND l.mode = 'AccessExclusiveLock' AND l.granted")" = 1 ]; }
ks_wait_for 10 job_locked
t_start=$(date +%s)
write_stats
start_daemon
check "the endpoint answers" ks_wait_for 20 scrape "127.0.0.1:$port"
check "the log names the address" log_has "metrics: serving http://127.0.0.1:$port/metrics"
running() { [ "$(ks_sql "SELECT count(*) FROM django_celery_results_taskresult WHERE task_name = '$TASK' AND status = 'STARTED'")" = 1 ]; }
quarantined() { [ -n "$(ls "$QUAR" 2>/dev/null | grep -v '\.reason$')" ]; }
check "the catch-up run is in progress" ks_wait_for 20 running
ks_wait_for 10 quarantined
# The endpoint caches its folder scans for 1 s: a scrape that soon after the first one (the
# quarantine can come within it) shows the folders as they were then.
sleep 1.1
check "scraped during the run: the text parses strictly" scrape "127.0.0.1:$port"
during=$(running && echo yes)
check_eq "the scrape was taken while the run was in progress" yes "$during"
check_eq "during: keystoned_up" 1 "$(m keystoned_up)"
check_match "during: build info with the version" '^1$' "$(awk '$1 ~ /^keystoned_build_info\{version="[0-9.]+[^"]*"\}$/ { print $2 }' "$KS_TMP/m")"
check_match "during: process start time is this start" '^ok$' \
    "$(awk -v t="$t_start" '$1 == "keystoned_process_start_time_seconds" { print ($2 >= t - 2 && $2 <= t + 30) ? "ok" : $2 }' "$KS_TMP/m")"
check_eq "during: no run of clear_log_records has ended yet" "0|0" \
    "$(m 'keystoned_task_runs_total{status="SUCCESS",task="clear_log_records"}')|$(m 'keystoned_task_failures_total{task="clear_log_records"}')"
check_eq "during: no last-run gauges before the first run" "" "$(m 'keystoned_task_last_success{task="clear_log_records"}')"
check_eq "during: every task has its series (ldap_update_users, 0 runs)" 0 \
    "$(m 'keystoned_task_runs_total{status="FAILURE",task="ldap_update_users"}')"
check_eq "during: the three good files wait in the spool (ingest blocked)" 3 "$(m keystoned_spool_files)"
check_match "during: the oldest file's age" '^[0-9.e+-]+$' "$(m keystoned_spool_oldest_file_age_seconds)"
check_eq "during: one file in the quarantine folder" 1 "$(m keystoned_spool_quarantined_files)"
check_eq "during: the quarantine counted, nothing ingested yet" "1|0" \
    "$(m keystoned_ingest_quarantined_total)|$(m keystoned_ingest_records_total)"
check_eq "plugin: stats read" 1 "$(m keystoned_plugin_stats_up)"
check_eq "plugin: queue capacity, depth, high water, pushed, dropped, write errors" \
    "100000|2|812|51234|7|1" \
    "$(m keystoned_plugin_queue_capacity)|$(m keystoned_plugin_queue_depth)|$(m keystoned_plugin_queue_high_water)|$(m keystoned_plugin_records_pushed_total)|$(m keystoned_plugin_records_dropped_total)|$(m keystoned_plugin_write_errors_total)"
check_match "plugin: stats file age about 3 s" '^ok$' \
    "$(awk '$1 == "keystoned_plugin_stats_age_seconds" { print ($2 >= 2 && $2 <= 40) ? "ok" : $2 }' "$KS_TMP/m")"
h=keystoned_plugin_callback_duration_seconds
check_eq "plugin: histogram buckets cumulative in seconds (0.25 us, 0.5 us, 4 us, +Inf)" "3|8|9|9|10" \
    "$(m "${h}_bucket{le=\"2.5e-07\"}")|$(m "${h}_bucket{le=\"5e-07\"}")|$(m "${h}_bucket{le=\"4e-06\"}")|$(m "${h}_bucket{le=\"2.097152\"}")|$(m "${h}_bucket{le=\"+Inf\"}")"
check_eq "plugin: histogram _count and _sum, 26 buckets" "10|2.5|26" \
    "$(m "${h}_count")|$(m "${h}_sum")|$(grep -c "^${h}_bucket" "$KS_TMP/m")"

# --- 4. After the run and the ingest -----------------------------------------------------------
# End the lock holder's transaction: the ingest goes on.
ks_sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()" >/dev/null
wait "$locker" 2>/dev/null
check "the run ends SUCCESS" ks_wait_for 120 runs_at_least SUCCESS $((success_before + 1))
spool_empty() { [ -z "$(ls "$SPOOL" | grep -E '^[0-9]{20}-[0-9]+-[0-9]+\.json$')" ]; }
check "the spool is ingested once the lock is gone" ks_wait_for 30 spool_empty
sleep 1.1 # past the 1 s cache of the folder scan
check "scraped after the run: parses strictly" scrape "127.0.0.1:$port"
deleted=$(ks_sql "SELECT (result::json->'deleted'->>'logging_requestlog')::int + (result::json->'deleted'->>'auditlog_logentry')::int + (result::json->'deleted'->>'django_celery_results_taskresult')::int FROM django_celery_results_taskresult WHERE task_name = '$TASK' AND status = 'SUCCESS' ORDER BY date_done DESC LIMIT 1")
check_eq "after: runs_total SUCCESS 1, failures 0, last success 1" "1|0|1" \
    "$(m 'keystoned_task_runs_total{status="SUCCESS",task="clear_log_records"}')|$(m 'keystoned_task_failures_total{task="clear_log_records"}')|$(m 'keystoned_task_last_success{task="clear_log_records"}')"
check_eq "after: items changed = rows the run deleted ($deleted)" "$deleted" "$(m 'keystoned_task_last_items_changed{task="clear_log_records"}')"
check_match "after: 150000 old request logs among them" '^1[5-9][0-9]{4}$' "$deleted"
now=$(date +%s)
check_match "after: last run and last success times are now and equal, duration > 0" '^ok$' \
    "$(awk -v n="$now" '$1 == "keystoned_task_last_run_timestamp_seconds{task=\"clear_log_records\"}" { r = $2 }
                        $1 == "keystoned_task_last_success_timestamp_seconds{task=\"clear_log_records\"}" { s = $2 }
                        $1 == "keystoned_task_last_duration_seconds{task=\"clear_log_records\"}" { d = $2 }
                        END { print (r >= n - 120 && r <= n + 1 && r == s && d > 0) ? "ok" : r "|" s "|" d }' "$KS_TMP/m")"
check_eq "after: records and files ingested = written (300, 3), one quarantined" "300|3|1" \
    "$(m keystoned_ingest_records_total)|$(m keystoned_ingest_files_total)|$(m keystoned_ingest_quarantined_total)"
check_eq "after: the job table agrees (300 rows)" 300 "$(ks_sql "SELECT count(*) FROM keystone_slurm.job")"
check_eq "after: spool empty, no oldest age, quarantine still 1" "0||1" \
    "$(m keystoned_spool_files)|$(m keystoned_spool_oldest_file_age_seconds)|$(m keystoned_spool_quarantined_files)"
check_eq "after: database up, a commit time" "1|yes" \
    "$(m keystoned_database_up)|$([ -n "$(m keystoned_ingest_last_commit_timestamp_seconds)" ] && echo yes)"

# --- 4b. An ingest transaction PostgreSQL refuses: the database is up, the file stays ---------
ks_sql "ALTER TABLE keystone_slurm.job ADD CONSTRAINT test_refuse CHECK (cluster <> 'refused') NOT VALID" >/dev/null
"$SPOOLGEN" -q -d "$SPOOL" -n 10 -b 10 -c refused -j 5000 -s 8
check "a refused transaction is logged" ks_wait_for 30 log_has "test_refuse"
sleep 1.1
check "refused: the scrape parses" scrape "127.0.0.1:$port"
check_eq "refused: keystoned_database_up stays 1, the file waits in the spool" "1|1" \
    "$(m keystoned_database_up)|$(m keystoned_spool_files)"
ks_sql "ALTER TABLE keystone_slurm.job DROP CONSTRAINT test_refuse" >/dev/null
check "once the constraint is gone the file goes in" ks_wait_for 60 spool_empty
check_eq "and its 10 records" 10 "$(ks_sql "SELECT count(*) FROM keystone_slurm.job WHERE cluster = 'refused'")"

# --- 5. Other paths and methods ----------------------------------------------------------------
check_eq "GET /other: 404" "404 " "$(python3 "$KS_TMP/scrape.py" GET "http://127.0.0.1:$port/other")"
check_eq "GET /: 404" "404 " "$(python3 "$KS_TMP/scrape.py" GET "http://127.0.0.1:$port/")"
check_eq "POST /metrics: 405 with Allow" "405 GET, HEAD" "$(python3 "$KS_TMP/scrape.py" POST "http://127.0.0.1:$port/metrics")"
check_eq "HEAD /metrics: 200" 200 "$(python3 "$KS_TMP/scrape.py" HEAD "http://127.0.0.1:$port/metrics")"

# --- 6. A broken stats file costs the plugin metrics, not the scrape ---------------------------
echo '{"format":"keystone-jobcomp-stats","format_version":1,"pid":' >"$SPOOL/plugin-stats.json"
sleep 1.1
check "broken stats file: the scrape still parses" scrape "127.0.0.1:$port"
check_eq "broken stats file: keystoned_plugin_stats_up 0, no histogram" "0|0" \
    "$(m keystoned_plugin_stats_up)|$(grep -c "^${h}" "$KS_TMP/m")"
rm -f "$SPOOL/plugin-stats.json"
sleep 1.1
check "missing stats file: the scrape still parses" scrape "127.0.0.1:$port"
check_eq "missing stats file: keystoned_plugin_stats_up 0" 0 "$(m keystoned_plugin_stats_up)"

# --- 7. SIGHUP: IPv6 loopback, then off ---------------------------------------------------------
if python3 -c "import socket; s = socket.socket(socket.AF_INET6); s.bind(('::1', 0))" 2>/dev/null; then
    port6=$(ks_free_port)
    sed -i "s|^KEYSTONED_METRICS_ADDRESS=.*|KEYSTONED_METRICS_ADDRESS=[::1]:$port6|" "$KS_TMP/keystoned.conf"
    kill -HUP "$daemon_pid"
    check "reload: now on [::1]" ks_wait_for 10 log_has "metrics: serving http://\[::1\]:$port6/metrics"
    check "IPv6: scraped over [::1] and parsed" scrape "[::1]:$port6"
    check_eq "IPv6: the counters survived the reload" 310 "$(m keystoned_ingest_records_total)"
    check_fails "reload: the old address is closed" scrape "127.0.0.1:$port"
else
    echo "# no ::1 on this machine: IPv6 checks skipped"
fi
sed -i "s|^KEYSTONED_METRICS_ADDRESS=.*|KEYSTONED_METRICS_ADDRESS=off|" "$KS_TMP/keystoned.conf"
kill -HUP "$daemon_pid"
check "reload to off: the endpoint is closed" ks_wait_for 10 log_has "KEYSTONED_METRICS_ADDRESS=off: metrics endpoint closed"
check_eq "reload to off: keystoned listens on nothing" 0 "$(listening "$daemon_pid")"
check "reload to off: keystoned still running" kill -0 "$daemon_pid"
stop_daemon
check_match "it stops cleanly" "keystoned: stopped" "$(tail -n 3 "$KS_TMP/keystoned.log")"

[ "$ks_failed" -eq 0 ] || tail -n 40 "$KS_TMP/keystoned.log" | sed 's/^/#   keystoned: /'
ks_done
