#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# update_limits against a real single-node cluster and a private PostgreSQL: the worked example
# of the spec (§4.5, with Keystone's fallback for a usage below the historical part), real usage
# from jobs (TRESBillingWeights CPU=3600: one CPU-second is one billing-minute) holding the next
# job with AssocGrpBillingMinutes until a raised award releases it, expiring allocations settled
# from that usage, an inactive team locked at its usage, an account without a team left alone,
# plan and dry run changing nothing, slurmdbd stopped (nothing written, applied once it is back),
# the circuit breaker (mass lowering, an active team set to 0; --force), an expiring allocation
# without an award (that account left, the others applied), a cluster slurmdbd knows but whose
# slurmctld never registered, and a slurm.conf with usage decay named by the plan.
# Expected values are computed from what sshare prints, so the checks are exact.
. "${KS_SRCDIR:-.}/tests/lib/common.sh"
. "$KS_SRCDIR/tests/lib/pg.sh"
. "$KS_SRCDIR/tests/lib/slurm.sh"
ks_scratch
ks_pg_start
# A 1-CPU job charges 3600 billing-seconds per second: 60 billing-minutes (1 SU) per second.
# Four CPUs on the node, so the three usage jobs run side by side.
KS_SLURM_BILLING_WEIGHTS=CPU=3600
KS_SLURM_NODE_CPUS=4
# shellcheck disable=SC2119 # JobCompType and the rest at their defaults
ks_slurm_start

C=$KS_SLURM_CLUSTER
# "Today" is the date in CONFIG_TIMEZONE: a zone where midnight is hours away, so that the test
# never straddles a change of date.
tz=UTC
hour=$((10#$(date -u +%H)))
if [ "$hour" -ge 20 ] || [ "$hour" -lt 2 ]; then tz=Etc/GMT-9; fi # UTC+9
conf() { ks_write_conf "KEYSTONED_SLURM_CONF=$SLURM_CONF" "CONFIG_TIMEZONE=$tz" "$@"; }
conf
"$KEYSTONECTL" db migrate --keystone-schema >"$KS_TMP/migrate.out" 2>&1 || { cat "$KS_TMP/migrate.out"; exit 99; }

# --- Slurm: accounts under root, ktest in some of them, limits as a previous run left them -----
accounts="smith-lab usage-lab exp-lab old-lab orphan brk-a brk-b brk-c nul-lab"
# shellcheck disable=SC2086
ks_slurm_add_accounts $accounts || exit 99
ks_slurm_add_user ktest usage-lab,smith-lab,exp-lab,old-lab || exit 99
set_limit() { sacctmgr -i modify account where name="$1" cluster="$C" set GrpTRESMins=billing="$2" >/dev/null; }
set_limit smith-lab 1980000 # 33000 SU: 8000 + 5000 + 20000, what "last hour's run" set
set_limit exp-lab 9060      # 151 SU: 1 + 100 expiring + 50 active
set_limit old-lab 6600      # 110 SU: 100 active + 10 expiring
set_limit orphan 1234       # no team: never touched
for a in brk-a brk-b brk-c nul-lab; do set_limit "$a" 6000; done # 100 SU
sacctmgr -i modify user where name=ktest account=smith-lab cluster="$C" set GrpTRESMins=billing=777 >/dev/null

# --- Keystone: helpers in the private database ---------------------------------------------------
psql -X -q -v ON_ERROR_STOP=1 <<SQL || exit 99
CREATE FUNCTION t_today() RETURNS date LANGUAGE sql AS \$\$ SELECT (now() AT TIME ZONE '$tz')::date \$\$;
INSERT INTO users_user (password, is_superuser, username, first_name, last_name, email, is_active,
                        is_staff, is_ldap_user, date_joined)
VALUES ('', false, 'ktest', 'K', 'Test', 'ktest@example.org', true, false, false, now());
INSERT INTO allocations_cluster (name, description, enabled, access_mode) VALUES ('$C', 'test', true, 'OP');
CREATE FUNCTION t_team(p_name text, p_slug text, p_active bool DEFAULT true) RETURNS bigint LANGUAGE sql AS \$\$
  INSERT INTO users_team (name, slug, is_active) VALUES (p_name, p_slug, p_active) RETURNING id \$\$;
-- An allocation on cluster ks of a request of the team (dates relative to today); its id.
CREATE FUNCTION t_alloc(p_slug text, p_title text, p_active_in int, p_expire_in int, p_awarded int,
                        p_final int DEFAULT NULL, p_status text DEFAULT 'AP') RETURNS bigint LANGUAGE sql AS \$\$
  WITH r AS (
    INSERT INTO allocations_allocationrequest (title, description, submitted, active, expire, status,
                                               submitter_id, team_id)
    VALUES (p_title, 'd', now() - interval '800 days', t_today() + p_active_in, t_today() + p_expire_in,
            p_status, (SELECT min(id) FROM users_user), (SELECT id FROM users_team WHERE slug = p_slug))
    RETURNING id)
  INSERT INTO allocations_resourceallocation (requested, awarded, final, cluster_id, request_id)
  SELECT coalesce(p_awarded, 1), p_awarded, p_final, (SELECT id FROM allocations_cluster WHERE name = '$C'), r.id
  FROM r RETURNING id \$\$;
SQL
sqlv() { ks_sql "$1" || { echo "test data: SQL failed: $1"; exit 99; }; }
award() { sqlv "UPDATE allocations_resourceallocation SET awarded = $2 WHERE id = $1"; }
final_of() { ks_sql "SELECT coalesce(final::text, 'NULL') FROM allocations_resourceallocation WHERE id = $1"; }
audit_rows() { ks_sql "SELECT count(*) FROM keystone_slurm.limit_change"; }
# One audit row as "old|new|usage|limit_written|locked|finals|forced" (the newest of the account).
audit_of() {
    ks_sql "SELECT coalesce(old_minutes::text, '') || '|' || new_minutes || '|' || usage_minutes || '|' ||
                   limit_written || '|' || locked || '|' ||
                   coalesce((SELECT string_agg(s->>'final', ',' ORDER BY o) FROM jsonb_array_elements(settlements)
                             WITH ORDINALITY AS x(s, o)), '') || '|' || forced
            FROM keystone_slurm.limit_change WHERE account = '$1' ORDER BY id DESC LIMIT 1"
}
pg_state() {
    ks_sql "SELECT md5(string_agg(id || ':' || coalesce(awarded::text, '-') || ':' || coalesce(final::text, '-'), ',' ORDER BY id))
            || ' audit=' || (SELECT count(*) FROM keystone_slurm.limit_change)
            || ' tasks=' || (SELECT count(*) FROM django_celery_results_taskresult)
            FROM allocations_resourceallocation"
}

# --- Slurm helpers -----------------------------------------------------------------------------
# The account association's GrpTRESMins ("billing=60"; "" when not set).
limit_of() { sacctmgr -nP show assoc where account="$1" cluster="$C" format=user,grptresmins | awk -F'|' '$1 == "" { print $2 }'; }
user_limit_of() { sacctmgr -nP show assoc where account="$1" user="$2" cluster="$C" format=grptresmins; }
assocs() { sacctmgr -nP show assoc cluster="$C" format=account,user,grptresmins | sort; }
assoc_id() { sacctmgr -nP show assoc where account="$1" cluster="$C" format=user,id | awk -F'|' '$1 == "" { print $2 }'; }
# "Modify Associations" transactions of slurmdbd (of the account association of $1, or all).
modifies() {
    local out
    out=$(sacctmgr -nP list transactions format=action,where | grep '^Modify Associations|')
    if [ -n "${1:-}" ]; then
        printf '%s\n' "$out" | grep -c "id_assoc=$(assoc_id "$1")[^0-9]"
    else
        printf '%s\n' "$out" | grep -c .
    fi
}
# Billing usage in minutes as sshare prints it (GrpTRESRaw billing=N).
usage_min() { sshare -nP -A "$1" -M "$C" -o GrpTRESRaw | grep -o 'billing=[0-9]*' | head -1 | cut -d= -f2; }
usage_at_least() { local u; u=$(usage_min "$1") && [ -n "$u" ] && [ "$u" -ge "$2" ]; }
as_ktest() { runuser -u ktest -- env SLURM_CONF="$SLURM_CONF" "$@"; }
submit() { as_ktest sbatch --parsable -A "$1" -J "$2" --wrap "$3" | cut -d';' -f1; }
job_reason() { squeue -h -j "$1" -o '%T %r' 2>/dev/null; }
is_held() { [ "$(job_reason "$1")" = "PENDING AssocGrpBillingMinutes" ]; }
# slurmctld has the account's GrpTRESMins billing=$2 (slurmdbd pushes changes to it).
ctld_limit_is() {
    scontrol show assoc_mgr flags=assoc accounts="$1" 2>/dev/null |
        awk -v a="Account=$1 UserName= " 'index($0, a) { f = 1 } f && /GrpTRESMins=/ { print; exit }' | grep -q "billing=$2("
}
job_final() { ks_slurm_wait_in_sacct "$1" "${2:-120}" | awk '{ print $2 }'; }

# --- keystonectl helpers -----------------------------------------------------------------------
run() { "$KEYSTONECTL" run update_limits --json "$@" 2>"$KS_TMP/run.err"; }
jq_() { /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
j() { printf '%s' "$out" | jq_ "$1"; }
# Summary of cluster ks in the last run: "accounts managed to_update limits_written finals_written unchanged".
counts() { j 'str(d["result"]["clusters"]["ks"]["accounts"])+" "+" ".join(str(d["result"]["clusters"]["ks"].get(k)) for k in ("managed","to_update","limits_written","finals_written","unchanged"))'; }
sub_record() { ks_sql "SELECT task_name || '|' || task_args || '|' || status FROM django_celery_results_taskresult WHERE task_id = '$1'"; }

cd "$KS_SLURM_JOBDIR" || exit 99

# === 1. The worked example (spec §4.5), and an account without a team =========================
# Smith Lab: A1 expired and settled, A2 expiring today, A3 active, A4 in the future, A5 pending.
# Slurm: limit 33000 SU, no usage. historical = 33000 - 20000 - 5000 = 8000; current usage =
# 0 - 8000 < 0, so Keystone takes the historical 8000; A2.final = min(8000, 5000) = 5000; new
# limit = Σfinal (8000 + 5000) + Σawarded active (20000) = 33000 SU: unchanged, not written.
sqlv "SELECT t_team('Smith Lab', 'smith-lab')" >/dev/null
A1=$(sqlv "SELECT t_alloc('smith-lab', 'A1', -730, -365, 10000, 8000)")
A2=$(sqlv "SELECT t_alloc('smith-lab', 'A2', -365, 0, 5000)")
A3=$(sqlv "SELECT t_alloc('smith-lab', 'A3', -16, 349, 20000)")
A4=$(sqlv "SELECT t_alloc('smith-lab', 'A4', 62, 427, 7000)")
A5=$(sqlv "SELECT t_alloc('smith-lab', 'A5 (pending)', -10, 355, 99999, NULL, 'PD')")
# Usage Lab: 1 SU awarded (scenario 2), limit not set yet. The breaker teams: 100 SU, as set.
sqlv "SELECT t_team('Usage Lab', 'usage-lab')" >/dev/null
U1=$(sqlv "SELECT t_alloc('usage-lab', 'U1', -30, 335, 1)")
for a in brk-a brk-b brk-c; do sqlv "SELECT t_team('Team $a', '$a')" >/dev/null; done
BA=$(sqlv "SELECT t_alloc('brk-a', 'BA', -30, 335, 100)")
BB=$(sqlv "SELECT t_alloc('brk-b', 'BB', -30, 335, 100)")
BC=$(sqlv "SELECT t_alloc('brk-c', 'BC', -30, 335, 100)")
smith_mods=$(modifies smith-lab)
usage_mods=$(modifies usage-lab)

out=$(run); rc=$?
check_eq "run 1 (worked example): exit 0, SUCCESS" "0 SUCCESS" "$rc $(j 'd["status"]')"
[ "$rc" = 0 ] || sed 's/^/#   /' "$KS_TMP/run.err" | head -20
check_eq "run 1: today is CONFIG_TIMEZONE's date" "$(ks_sql 'SELECT t_today()')" "$(j 'd["result"]["clusters"]["ks"]["today"]')"
check_eq "run 1: 9 accounts, 5 managed, 2 to update, 1 limit and 1 final written, 3 unchanged" \
    "9 5 2 1 1 3" "$(counts)"
check_eq "sacctmgr: smith-lab's account line keeps billing=1980000 (33000 SU)" "billing=1980000" "$(limit_of smith-lab)"
check_eq "and it was not rewritten (no Modify Associations transaction)" "$smith_mods" "$(modifies smith-lab)"
check_eq "ktest's own association in smith-lab is untouched (billing=777)" "billing=777" "$(user_limit_of smith-lab ktest)"
check_eq "finals: A1 8000 kept, A2 settled at min(8000, 5000) = 5000, A3 A4 A5 none" "8000 5000 NULL NULL NULL" \
    "$(final_of "$A1") $(final_of "$A2") $(final_of "$A3") $(final_of "$A4") $(final_of "$A5")"
check_eq "the summary lists smith-lab's change: 33000 -> 33000 SU, usage 0, 1 settled, limit unchanged" \
    "33000 SU|33000 SU|0 SU|False|1" \
    "$(j '"|".join(str(c[k]) for c in d["result"]["clusters"]["ks"]["changes"] if c["account"]=="smith-lab" for k in ("old","new","usage","limit_changes","settled"))')"
check_match "with Keystone's fallback as a warning (usage below the historical 8000 SU)" \
    "smith-lab: .*taken as the historical usage 8000 SU" "$(j '"\n".join(d["result"]["clusters"]["ks"]["warnings"])')"
check_eq "audit row for smith-lab: 1980000 -> 1980000, usage 0, not written, A2 settled at 5000" \
    "1980000|1980000|0|false|false|5000|false" "$(audit_of smith-lab)"
check_eq "usage-lab (limit unset, 1 SU active): billing=60" "billing=60" "$(limit_of usage-lab)"
check_eq "written with one Modify Associations transaction" "$((usage_mods + 1))" "$(modifies usage-lab)"
check_eq "ktest's association in usage-lab has no limit of its own (only the account's changed)" "" "$(user_limit_of usage-lab ktest)"
check_eq "audit row for usage-lab: unset -> 60, written" "|60|0|true|false||false" "$(audit_of usage-lab)"
check_eq "the breaker teams are right already (100 SU): no audit row" "0" \
    "$(ks_sql "SELECT count(*) FROM keystone_slurm.limit_change WHERE account LIKE 'brk-%'")"
check_eq "accounts without a team listed (scenario 4)" "exp-lab,nul-lab,old-lab,orphan" \
    "$(j '",".join(d["result"]["clusters"]["ks"]["no_team_accounts"])')"
check_match "with a warning for orphan" "orphan: No existing team for Account=orphan" \
    "$(j '"\n".join(d["result"]["clusters"]["ks"]["warnings"])')"
check_eq "orphan's limit untouched (billing=1234)" "billing=1234" "$(limit_of orphan)"
parent=$(j 'd["task_id"]')
sub=$(j 'd["result"]["subtasks"]["ks"]')
check_eq "the parent task record: update_limits, SUCCESS" "apps.allocations.tasks.limits.update_limits|SUCCESS" \
    "$(ks_sql "SELECT task_name || '|' || status FROM django_celery_results_taskresult WHERE task_id = '$parent'")"
check_eq "one sub-run record for the cluster" "apps.allocations.tasks.limits.update_limits_for_cluster|('ks',)|SUCCESS" \
    "$(sub_record "$sub")"
check_eq "the audit rows name the sub-run" "2" \
    "$(ks_sql "SELECT count(*) FROM keystone_slurm.limit_change WHERE task_id = '$sub'")"
hist=$("$KEYSTONECTL" limits history --account smith-lab --json 2>"$KS_TMP/hist.err")
check_eq "limits history --account smith-lab --json: the settlement of A2" "1 1980000 $A2 5000 5000" \
    "$(printf '%s' "$hist" | jq_ '" ".join(str(x) for x in (len(d), d[0]["new_minutes"], d[0]["settlements"][0]["allocation"], d[0]["settlements"][0]["awarded"], d[0]["settlements"][0]["final"]))')"
check_match "limits history (text) shows it in SUs" "smith-lab +33000 +33000 +0 " "$("$KEYSTONECTL" limits history --cluster ks 2>&1)"

# The second run writes nothing.
before_audit=$(audit_rows)
before_mods=$(modifies)
before_assocs=$(assocs)
out=$(run); rc=$?
check_eq "run 2: exit 0, nothing to update or write" "0 9 5 0 0 0 5" "$rc $(counts)"
check_eq "run 2: no new audit row" "$before_audit" "$(audit_rows)"
check_eq "run 2: no new Modify Associations transaction for smith-lab" "$smith_mods" "$(modifies smith-lab)"
check_eq "run 2: none at all" "$before_mods" "$(modifies)"
check_eq "run 2: every association as it was" "$before_assocs" "$(assocs)"

# === 2. Real usage and holds; settling from real usage =========================================
# usage-lab's limit is 60 minutes: a 2-second job (120-180 minutes) runs, then the next one is
# held. exp-lab and old-lab get usage at the same time (their teams come later).
check "slurmctld has usage-lab's limit of 60 minutes" ks_wait_for 30 ctld_limit_is usage-lab 60
j1=$(submit usage-lab use1 'sleep 2')
je=$(submit exp-lab exp1 'sleep 3')
jo=$(submit old-lab old1 'sleep 2')
check_eq "a job on usage-lab under its 60-minute limit runs" "COMPLETED" "$(job_final "$j1")"
check_eq "so do the jobs on exp-lab and old-lab" "COMPLETED COMPLETED" "$(job_final "$je") $(job_final "$jo")"
check "sshare shows usage-lab's usage above 1 SU" ks_wait_for 30 usage_at_least usage-lab 61
ks_wait_for 30 usage_at_least exp-lab 1
ks_wait_for 30 usage_at_least old-lab 1
j2=$(submit usage-lab use2 'true')
check "the next job on usage-lab is held: PENDING AssocGrpBillingMinutes" ks_wait_for 30 is_held "$j2"

# Award raised to 10 SU; exp-lab's team arrives: X1 (1 SU, expired yesterday) and X2 (100 SU,
# expiring today) absorb its usage in expire order, X3 (50 SU) is active.
award "$U1" 10
sqlv "SELECT t_team('Exp Lab', 'exp-lab')" >/dev/null
X1=$(sqlv "SELECT t_alloc('exp-lab', 'X1', -366, -1, 1)")
X2=$(sqlv "SELECT t_alloc('exp-lab', 'X2', -365, 0, 100)")
X3=$(sqlv "SELECT t_alloc('exp-lab', 'X3', -30, 335, 50)")
uu=$(( $(usage_min usage-lab) / 60 ))
ue=$(( $(usage_min exp-lab) / 60 ))
# historical = 151 - 50 - 101 = 0, current usage = ue; X1 = min(ue, 1) = 1, X2 = min(ue - 1, 100).
out=$(run); rc=$?
check_eq "run 3 (award raised, exp-lab settled): exit 0, SUCCESS" "0 SUCCESS" "$rc $(j 'd["status"]')"
check_eq "usage-lab: billing=600 (10 SU)" "billing=600" "$(limit_of usage-lab)"
check_eq "audit row for usage-lab: 60 -> 600 at its usage ($uu SU)" "60|600|$((uu * 60))|true|false||false" "$(audit_of usage-lab)"
check_eq "the held job starts and completes" "COMPLETED" "$(job_final "$j2" 120)"
check_eq "exp-lab's finals from real usage ($ue SU): X1 = 1, X2 = $((ue - 1)), X3 none" "1 $((ue - 1)) NULL" \
    "$(final_of "$X1") $(final_of "$X2") $(final_of "$X3")"
check_eq "exp-lab's limit: Σfinal $ue + 50 active = $((ue + 50)) SU" "billing=$(((ue + 50) * 60))" "$(limit_of exp-lab)"
check_eq "audit row for exp-lab, settlements in expire order" "9060|$(((ue + 50) * 60))|$((ue * 60))|true|false|1,$((ue - 1))|false" \
    "$(audit_of exp-lab)"
check_eq "exp-lab's limit lowered: counted, the breaker (5 at least) not tripped" "1 False" \
    "$(j 'str(d["result"]["clusters"]["ks"]["lowered"])+" "+str(d["result"]["clusters"]["ks"]["breaker"]["tripped"])')"

# === 3. Inactive team: locked at its usage, nothing settled ===================================
# historical = 110 - 100 - 10 = 0, current usage = uo: the limit becomes uo SU.
sqlv "SELECT t_team('Old Lab', 'old-lab', false)" >/dev/null
O1=$(sqlv "SELECT t_alloc('old-lab', 'O1', -30, 335, 100)")
O2=$(sqlv "SELECT t_alloc('old-lab', 'O2', -365, 0, 10)")
uo=$(( $(usage_min old-lab) / 60 ))
out=$(run); rc=$?
check_eq "run 4 (inactive team): exit 0, 1 locked, nothing settled" "0 1 0" \
    "$rc $(j 'str(d["result"]["clusters"]["ks"]["locked"])+" "+str(d["result"]["finals_written"])')"
check_eq "old-lab locked at its usage: billing=$((uo * 60)) ($uo SU)" "billing=$((uo * 60))" "$(limit_of old-lab)"
check_eq "its expiring allocation is not settled" "NULL NULL" "$(final_of "$O1") $(final_of "$O2")"
check_eq "audit row for old-lab: locked" "6600|$((uo * 60))|$((uo * 60))|true|true||false" "$(audit_of old-lab)"
check_match "the summary's reason says why" "inactive team" \
    "$(j '[c["reason"] for c in d["result"]["clusters"]["ks"]["changes"] if c["account"]=="old-lab"][0]')"
check "slurmctld has old-lab's new limit" ks_wait_for 30 ctld_limit_is old-lab $((uo * 60))
jl=$(submit old-lab old2 'true')
check "a job on the locked account is held (AssocGrpBillingMinutes)" ks_wait_for 30 is_held "$jl"
scancel "$jl"
check_eq "no team for orphan and nul-lab still (scenario 4)" "nul-lab,orphan" \
    "$(j '",".join(d["result"]["clusters"]["ks"]["no_team_accounts"])')"
check_match "limits plan --all lists orphan as skipped, its limit 1234 min" "^  orphan +skip +20\+34m +- +-  no team with this slug\$" \
    "$("$KEYSTONECTL" limits plan --all 2>&1)"

# === 5. limits plan and a dry run change nothing ===============================================
# brk-c: award 100 -> 120, and an expiring allocation of 5 SU. historical = 100 - 120 - 5 < 0,
# taken as 0; no usage: BC2.final = 0; limit 0 + 120 = 120 SU.
award "$BC" 120
BC2=$(sqlv "SELECT t_alloc('brk-c', 'BC2', -365, 0, 5)")
snap_slurm=$(assocs)
snap_pg=$(pg_state)
snap_mods=$(modifies)
plan=$("$KEYSTONECTL" limits plan 2>&1); rc=$?
check_eq "limits plan: exit 0" 0 "$rc"
check_match "it shows brk-c: limit 100, usage 0, new 120 SU, BC2 settled at 0" "^  brk-c +update +100 +0 +120  $BC2=0\$" "$plan"
check_match "and the counts" "^Cluster=ks today=[0-9-]+: 9 account\(s\): 1 to update \(1 limits to write, 1 finals to settle\)" "$plan"
plan=$("$KEYSTONECTL" limits plan --json 2>"$KS_TMP/plan.err"); rc=$?
check "limits plan --json parses" python3 -c 'import json,sys; json.loads(sys.argv[1])' "$plan"
check_eq "and plans brk-c at 7200 minutes, BC2 at 0" "0 update 6000 7200 $BC2:0" \
    "$rc $(printf '%s' "$plan" | jq_ '" ".join(str(x) for p in d["ks"]["plans"] if p["account"]=="brk-c" for x in (p["action"], p["old_minutes"], p["new_minutes"], ",".join("%d:%d" % (s["allocation"], s["final"]) for s in p["settlements"])))')"
out=$(run --dry-run); rc=$?
check_eq "run --dry-run: exit 0, dry run, brk-c 100 SU -> 120 SU" "0 True 100 SU->120 SU" \
    "$rc $(j 'str(d["result"]["clusters"]["ks"]["dry_run"])+" "+"".join(c["old"]+"->"+c["new"] for c in d["result"]["clusters"]["ks"]["changes"] if c["account"]=="brk-c")')"
check_eq "plan and dry run: slurmdbd unchanged" "$snap_slurm" "$(assocs)"
check_eq "no Modify Associations transaction" "$snap_mods" "$(modifies)"
check_eq "PostgreSQL unchanged (finals, audit rows, task records)" "$snap_pg" "$(pg_state)"

# === 6. slurmdbd stopped with that change pending ==============================================
n_audit=$(audit_rows)
ks_slurmdbd_stop
out=$(run); rc=$?
check_eq "slurmdbd stopped: exit 1, FAILURE" "1 FAILURE" "$rc $(j 'd["status"]')"
check_match "the error names the cluster and slurmdbd" "Cluster=ks.*slurmdbd" "$(j 'd["error"]')"
sub=$(j 'd["result"]["subtasks"]["ks"]')
check_match "the sub-run record: FAILURE naming the cluster" "^FAILURE\|.*Cluster=ks" \
    "$(ks_sql "SELECT status || '|' || traceback FROM django_celery_results_taskresult WHERE task_id = '$sub'")"
check_eq "no final written, no audit row" "NULL $n_audit" "$(final_of "$BC2") $(audit_rows)"
ks_slurmdbd_start
check_eq "slurmdbd back: brk-c still billing=6000" "billing=6000" "$(limit_of brk-c)"
out=$(run); rc=$?
check_eq "the next run applies it: exit 0, 1 limit, 1 final" "0 1 1" "$rc $(j 'str(d["result"]["limits_written"])+" "+str(d["result"]["finals_written"])')"
check_eq "brk-c: billing=7200, BC2 final 0" "billing=7200 0" "$(limit_of brk-c) $(final_of "$BC2")"
check_eq "audit row for brk-c" "6000|7200|0|true|false|0|false" "$(audit_of brk-c)"

# === 6b. slurmdbd hung: it accepts connections but answers nothing (SIGSTOP) ====================
# libslurm alone would wait 900 s per attempt; KEYSTONED_SLURMDB_TIMEOUT bounds each request.
conf "KEYSTONED_SLURMDB_TIMEOUT=10"
n_audit=$(audit_rows)
snap_slurm=$(assocs)
dbd=$(ks_slurm_pid slurmdbd)
kill -STOP "$dbd"
out=$(run); rc=$?
kill -CONT "$dbd"
check_eq "slurmdbd hung: exit 1, FAILURE" "1 FAILURE" "$rc $(j 'd["status"]')"
check_match "the error says slurmdbd did not answer within the timeout" \
    "Cluster=ks.*did not answer within KEYSTONED_SLURMDB_TIMEOUT=10 s" "$(j 'd["error"]')"
check_eq "nothing written: no audit row" "$n_audit" "$(audit_rows)"
ks_wait_for 60 ks_slurmdbd_ready
check_eq "nothing written: slurmdbd's associations unchanged" "$snap_slurm" "$(assocs)"
out=$(run); rc=$?
check_eq "slurmdbd answering again: the next run succeeds, nothing to write" "0 SUCCESS 0" \
    "$rc $(j 'd["status"]') $(j 'd["result"]["limits_written"]')"
conf

# === 7. Circuit breaker ========================================================================
# Awards lowered for 5 of the 7 managed accounts: more than 20 % and at least 1.
conf "KEYSTONED_LIMITS_MAX_LOWER_PERCENT=20" "KEYSTONED_LIMITS_MIN_LOWERED=1"
award "$BA" 50
award "$BB" 50
award "$BC" 60
award "$A3" 10000 # smith-lab: 13000 + 10000 = 23000 SU
award "$U1" 5     # usage-lab: 5 SU
snap_slurm=$(assocs)
n_audit=$(audit_rows)
out=$(run); rc=$?
check_eq "5 of 7 limits lowered: exit 1, FAILURE" "1 FAILURE" "$rc $(j 'd["status"]')"
check_match "the error says circuit breaker" "circuit breaker" "$(j 'd["error"]')"
check_eq "the summary: tripped, 5 lowered of 7 managed" "True 5 7" \
    "$(j '" ".join(str(x) for x in (d["result"]["clusters"]["ks"]["breaker"]["tripped"], d["result"]["clusters"]["ks"]["lowered"], d["result"]["clusters"]["ks"]["managed"]))')"
check_match "its reasons name the accounts and the share" \
    "Account=brk-a: limit 100 SU -> 50 SU \(lowered\).*Account=brk-b.*Account=brk-c: limit 120 SU -> 60 SU.*Account=smith-lab: limit 33000 SU -> 23000 SU.*Account=usage-lab: limit 10 SU -> 5 SU.*5 of 7 managed accounts" \
    "$(j '" ".join(d["result"]["clusters"]["ks"]["breaker"]["reasons"])')"
check_eq "nothing written to slurmdbd" "$snap_slurm" "$(assocs)"
check_eq "no audit row" "$n_audit" "$(audit_rows)"
check_match "limits plan shows the breaker" "circuit breaker: update_limits would NOT apply" "$("$KEYSTONECTL" limits plan 2>&1)"
out=$("$KEYSTONECTL" limits apply --force --json 2>"$KS_TMP/run.err"); rc=$?
check_eq "limits apply --force: exit 0, SUCCESS, forced, 5 limits written" "0 SUCCESS True 5" \
    "$rc $(j 'd["status"]+" "+str(d["result"]["clusters"]["ks"]["forced"])+" "+str(d["result"]["limits_written"])')"
check_eq "brk-a brk-b brk-c smith-lab usage-lab lowered" "billing=3000 billing=3000 billing=3600 billing=1380000 billing=300" \
    "$(limit_of brk-a) $(limit_of brk-b) $(limit_of brk-c) $(limit_of smith-lab) $(limit_of usage-lab)"
check_eq "ktest's own limit in smith-lab still billing=777 after the account's was written" "billing=777" "$(user_limit_of smith-lab ktest)"
check_eq "5 audit rows, marked forced" "brk-a,brk-b,brk-c,smith-lab,usage-lab $((n_audit + 5))" \
    "$(ks_sql "SELECT string_agg(account, ',' ORDER BY account) FROM keystone_slurm.limit_change WHERE forced") $(audit_rows)"
check_eq "limits history --json: forced" "True 6000 3000" \
    "$("$KEYSTONECTL" limits history --account brk-a --json 2>"$KS_TMP/hist.err" | jq_ '" ".join(str(x) for x in (d[0]["forced"], d[0]["old_minutes"], d[0]["new_minutes"]))')"
check_match "limits history (text) marks it" "brk-a .*\(forced\)" "$("$KEYSTONECTL" limits history --account brk-a 2>&1)"

# An active team set to 0 trips it with the default settings too.
conf
award "$BA" 0
out=$(run); rc=$?
check_eq "an active team's limit to 0: exit 1, FAILURE" "1 FAILURE" "$rc $(j 'd["status"]')"
check_match "circuit breaker, naming it" "circuit breaker.*Account=brk-a: limit 50 SU -> 0 SU \(an active team set to 0\)" "$(j 'd["error"]')"
check_eq "brk-a keeps billing=3000" "billing=3000" "$(limit_of brk-a)"
award "$BA" 50

# === 8. An expiring allocation without an award ================================================
sqlv "SELECT t_team('Null Lab', 'nul-lab')" >/dev/null
N1=$(sqlv "SELECT t_alloc('nul-lab', 'N1', -30, 335, 100)")
N2=$(sqlv "SELECT t_alloc('nul-lab', 'N2', -365, 0, NULL)")
award "$BB" 70
n_audit=$(audit_rows)
out=$(run); rc=$?
check_eq "NULL awarded on an expiring allocation: exit 1, FAILURE" "1 FAILURE" "$rc $(j 'd["status"]')"
check_eq "account_errors names nul-lab" "nul-lab" "$(j '",".join(e["account"] for e in d["result"]["clusters"]["ks"]["account_errors"])')"
check_match "saying why" "Allocation=$N2 .*no awarded SUs" "$(j 'd["result"]["clusters"]["ks"]["account_errors"][0]["error"]')"
check_match "the run's error names the account" "Cluster=ks: 1 account\(s\) left unchanged: nul-lab" "$(j 'd["error"]')"
check_eq "the others are applied: brk-b billing=4200, one audit row" "billing=4200 $((n_audit + 1))" "$(limit_of brk-b) $(audit_rows)"
check_eq "nul-lab left as it was: billing=6000, N1 N2 unsettled" "billing=6000 NULL NULL" "$(limit_of nul-lab) $(final_of "$N1") $(final_of "$N2")"
plan=$("$KEYSTONECTL" limits plan 2>&1); rc=$?
check_eq "limits plan: exit 1 (an account cannot be planned)" 1 "$rc"
check_match "naming it" "^  nul-lab +error +Account=nul-lab: expiring Allocation=$N2 " "$plan"
award "$N2" 10
out=$(run); rc=$?
check_eq "award set: exit 0, N2 settled at 0, limit kept" "0 0 billing=6000" "$rc $(final_of "$N2") $(limit_of nul-lab)"

# === 10. A cluster slurmdbd knows whose slurmctld never registered ============================
sacctmgr -i add cluster ks2 >"$KS_TMP/ks2.out" 2>&1 || { cat "$KS_TMP/ks2.out"; exit 99; }
sqlv "INSERT INTO allocations_cluster (name, description, enabled, access_mode) VALUES ('ks2', 'no slurmctld', true, 'OP')"
award "$BA" 60
out=$(run); rc=$?
check_eq "two clusters, ks2 without slurmctld: exit 1, FAILURE" "1 FAILURE" "$rc $(j 'd["status"]')"
check_match "the error names Cluster=ks2" "Cluster=ks2" "$(j 'd["error"]')"
check "and not Cluster=ks" bash -c "! printf '%s' \"\$1\" | grep -q 'Cluster=ks[^2]'" _ "$(j 'd["error"]')"
check_eq "sub-runs: ks SUCCESS, ks2 FAILURE" "('ks',) SUCCESS|('ks2',) FAILURE" \
    "$(ks_sql "SELECT string_agg(task_args || ' ' || status, '|' ORDER BY task_args) FROM django_celery_results_taskresult
               WHERE task_id IN ('$(j 'd["result"]["subtasks"]["ks"]')', '$(j 'd["result"]["subtasks"]["ks2"]')')")"
check_eq "ks applied in the same run: brk-a billing=3600" "billing=3600" "$(limit_of brk-a)"
plan=$("$KEYSTONECTL" limits plan 2>&1); rc=$?
check_eq "limits plan with ks2: exit 1" 1 "$rc"
check_match "it cannot plan ks2, and says why" "^Cluster=ks2: cannot plan: .*slurmctld of Cluster=ks2 has not registered" "$plan"
check_match "and still plans ks" "^Cluster=ks today=" "$plan"
sqlv "UPDATE allocations_cluster SET enabled = false WHERE name = 'ks2'"

# === 9. Slurm prerequisites: usage decay named by the plan ====================================
# Last: with a half-life, slurmctld would start shrinking the usage the checks above rely on.
decay() { scontrol show config | awk '$1 == "PriorityDecayHalfLife" { print $3 }'; }
decay_is() { [ "$(decay)" = "$1" ]; }
ks_slurm_conf_set PriorityDecayHalfLife 7-0
scontrol reconfigure >/dev/null 2>&1
ks_wait_for 30 decay_is 7-00:00:00 || ks_slurmctld_restart
plan=$("$KEYSTONECTL" limits plan 2>&1); rc=$?
check_match "PriorityDecayHalfLife=7-0: limits plan names it" \
    "Slurm setting: PriorityDecayHalfLife=7-00:00:00: set PriorityDecayHalfLife=0" "$plan"
check_match "limits plan --json lists it in slurm_settings" "PriorityDecayHalfLife" \
    "$("$KEYSTONECTL" limits plan --json 2>"$KS_TMP/plan.err" | jq_ '" ".join(d["ks"]["slurm_settings"])')"
doc=$(KEYSTONED_SPOOL_DIR='' "$KEYSTONECTL" doctor 2>&1); rc=$?
check_eq "keystonectl doctor: exit 1" 1 "$rc"
check_match "doctor names the setting, the cluster and the value it needs" \
    "PROBLEM +slurm +PriorityDecayHalfLife \(Cluster=ks\): PriorityDecayHalfLife=7-00:00:00: set PriorityDecayHalfLife=0" "$doc"
ks_slurm_conf_set PriorityDecayHalfLife 0
scontrol reconfigure >/dev/null 2>&1
ks_wait_for 30 decay_is 00:00:00 || ks_slurmctld_restart
check "restored: no Slurm setting named" bash -c "! '$KEYSTONECTL' limits plan 2>&1 | grep -q 'Slurm setting'"
doc=$(KEYSTONED_SPOOL_DIR='' "$KEYSTONECTL" doctor 2>&1); rc=$?
check_eq "keystonectl doctor on the healthy setup: exit 0" "0" "$rc"
check_match "with every Slurm setting of the limits checked" "ok +slurm +AccountingStorageEnforce \(Cluster=ks\)" "$doc"
printf '%s\n' "$doc" | sed 's/^/#   /'

# === The end: what was never to be touched ====================================================
check_eq "orphan (no team) kept billing=1234 through every run" "billing=1234" "$(limit_of orphan)"
check_eq "no audit row for it" "0" "$(ks_sql "SELECT count(*) FROM keystone_slurm.limit_change WHERE account = 'orphan'")"
check_eq "ktest's association in smith-lab kept billing=777" "billing=777" "$(user_limit_of smith-lab ktest)"
check_eq "no user association got a limit from the runs" "smith-lab|ktest|billing=777" \
    "$(sacctmgr -nP show assoc cluster="$C" format=account,user,grptresmins | awk -F'|' '$2 != "" && $3 != ""')"

ks_done
