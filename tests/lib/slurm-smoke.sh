#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Checks tests/lib/slurm.sh itself; not part of the suite. Run from the source tree, as root:
#   KS_SRCDIR=$PWD bash tests/lib/slurm-smoke.sh
# KS_SMOKE_QUICK=1 leaves out the "nothing left behind" cases (each starts a stack of its own).
# shellcheck source-path=SCRIPTDIR source=common.sh disable=SC1091
. "${KS_SRCDIR:-.}/tests/lib/common.sh"
# shellcheck source=slurm.sh disable=SC1091
. "$KS_SRCDIR/tests/lib/slurm.sh"
ks_scratch

smoke_t0=$EPOCHREALTIME
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }

# Pids of live processes of the stack below folder $1 (a test's $KS_TMP): any process whose
# command line names it, munged/mariadbd/slurm* whose command line or environment names it, and
# job processes (SLURM_JOB_ID) whose environment names it. Zombies do not count.
live() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    s=${s##*) }
    case ${s%% *} in Z | X | x) return 1 ;; esac
}
ours() {
    local dir=$1 p f
    {
        pgrep -f -- "$dir/"
        for p in $(pgrep -x 'munged|mariadbd|slurmdbd|slurmctld|slurmd|slurmstepd'); do
            cat "/proc/$p/cmdline" "/proc/$p/environ" 2>/dev/null | tr '\0' '\n' | grep -qF -- "$dir/" && echo "$p"
        done
        grep -lzF -- "SLURM_CONF=$dir/" /proc/[0-9]*/environ 2>/dev/null | while read -r f; do
            grep -qz '^SLURM_JOB_ID=' "$f" 2>/dev/null && { p=${f#/proc/}; echo "${p%/environ}"; }
        done
    } | sort -u | while read -r p; do
        [ "$p" != "$$" ] && live "$p" && echo "$p $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-100)"
    done
}
nothing_left() {
    local left
    left=$(ours "$1")
    [ -z "$left" ] || { printf '%s\n' "$left"; return 1; }
}
as_ktest() { runuser -u ktest -- env SLURM_CONF="$SLURM_CONF" "$@"; }
# state JOBID: the job's "STATE REASON" in squeue (empty once it left the queue).
state() { squeue -h -j "$1" -o '%T %r' 2>/dev/null; }
# sacct_field JOBID FIELD: one field of the job's line in sacct -X.
sacct_field() { sacct -X -n -P -j "$1" -o "$2" 2>/dev/null | head -1; }
has_state() { [ "$(state "$1" | cut -d' ' -f1)" = "$2" ]; }
ping_up() { scontrol ping 2>&1 | grep -q 'is UP'; }
conf_line() { grep -i "^$1=" "$SLURM_CONF"; }
show_config() { scontrol show config 2>/dev/null | awk -v k="$1" '$1 == k { sub(/^[^=]*= */, ""); print; exit }'; }

# --- start ---------------------------------------------------------------------------------------
t=$(now)
# shellcheck disable=SC2119 # the defaults are what is checked here
ks_slurm_start
start_time=$(since "$t")
echo "# ks_slurm_start: $start_time s"
check_eq "KS_SLURM_DIR is \$KS_TMP/slurm" "$KS_TMP/slurm" "$KS_SLURM_DIR"
check_eq "SLURM_CONF is exported" "$KS_SLURM_DIR/etc/slurm.conf" "$(sh -c 'echo "$SLURM_CONF"')"
check_eq "KS_SLURM_LOG is exported" "$KS_SLURM_DIR/log" "$(sh -c 'echo "$KS_SLURM_LOG"')"
check_eq "KS_SLURM_CLUSTER=ks" ks "$(sh -c 'echo "$KS_SLURM_CLUSTER"')"
check_eq "KS_SLURMCTLD_LOG" "$KS_SLURM_LOG/slurmctld.log" "$(sh -c 'echo "$KS_SLURMCTLD_LOG"')"
check "slurmctld logs to KS_SLURMCTLD_LOG" grep -q 'slurmctld version .* started' "$KS_SLURMCTLD_LOG"
check "slurmd.log and slurmdbd.log are in KS_SLURM_LOG" test -s "$KS_SLURM_LOG/slurmd.log" -a -s "$KS_SLURM_LOG/slurmdbd.log"
check_eq "slurmdbd.conf is mode 600" 600 "$(stat -c %a "$KS_SLURM_DIR/etc/slurmdbd.conf")"
check_eq "slurm.conf is readable by users (644)" 644 "$(stat -c %a "$SLURM_CONF")"
check_eq "KS_SLURM_JOBDIR is world-writable with the sticky bit" 1777 "$(stat -c %a "$KS_SLURM_JOBDIR")"
check "scontrol ping: UP" ping_up
check_eq "the node is idle" idle "$(ks_slurm_node_state)"
check_eq "ClusterName=ks" ks "$(show_config ClusterName)"
check_eq "JobCompType defaults to jobcomp/none" jobcomp/none "$(show_config JobCompType)"
check_eq "PluginDir is Debian's" "$KS_SLURM_PLUGINDIR" "$(show_config PluginDir)"
check_eq "PriorityType" priority/multifactor "$(show_config PriorityType)"
check_eq "AccountingStorageEnforce" associations,limits "$(show_config AccountingStorageEnforce)"
check_eq "AccountingStorageTRES" cpu,mem,energy,node,billing,fs/disk,vmem,pages "$(show_config AccountingStorageTRES)"
check_eq "CPUs=\$(nproc)" "$(nproc)" "$(sinfo -h -N -n localhost -o %c)"
check_match "TRESBillingWeights on the partition" 'TRESBillingWeights=CPU=1.0' "$(scontrol show partition debug)"
ports=$(grep -hE '^(SlurmctldPort|SlurmdPort|AccountingStoragePort|DbdPort|StoragePort)=' \
    "$SLURM_CONF" "$KS_SLURM_DIR/etc/slurmdbd.conf" | cut -d= -f2 | sort -u | paste -sd' ')
check_match "free ports, not 6817/6818/6819/3306: $ports" '^[0-9]+ [0-9]+ [0-9]+ [0-9]+$' "$ports"
check_fails "no default port" grep -qwE '6817|6818|6819|3306' <<<"$ports"
check_eq "MariaDB listens only on 127.0.0.1" 127.0.0.1 "$(ks_slurm_sql 'SELECT @@bind_address' 2>&1)"
check_eq "MariaDB runs as mysql" mysql "$(ps -o user= -p "$(ks_slurm_pid mariadbd)")"
check_eq "slurm_acct_db exists" slurm_acct_db "$(ks_slurm_sql "SHOW DATABASES LIKE 'slurm_acct_db'" 2>&1)"
check_eq "the cluster is in slurmdbd" ks "$(sacctmgr -n -P list cluster format=cluster 2>&1)"
for d in munged mariadbd slurmdbd slurmctld slurmd; do
    check "$d runs (pid $(ks_slurm_pid "$d"))" ks_slurm_pid "$d"
done
check_match "munged uses the private socket" "$KS_MUNGE_SOCKET" "$(tr '\0' ' ' <"/proc/$(ks_slurm_pid munged)/cmdline")"
check "ks_slurm_start again is harmless" ks_slurm_start

# --- accounts and users ---------------------------------------------------------------------------
t=$(now)
check "ks_slurm_add_accounts proja projb" ks_slurm_add_accounts proja projb
check "ks_slurm_add_user ktest proja,projb" ks_slurm_add_user ktest proja,projb
echo "# accounts and user: $(since "$t") s"
check "the Unix user ktest exists" id ktest
out=$(sacctmgr -n -P show assoc where cluster=ks format=account,user 2>&1 | sort | paste -sd' ')
check_eq "associations" "proja| proja|ktest projb| projb|ktest root| root|root" "$out"
check_eq "ktest's default account is proja" proja "$(sacctmgr -n -P show user ktest format=defaultaccount 2>&1)"
check "ks_slurm_add_user for an existing user and account" ks_slurm_add_user ktest proja

# --- jobs ---------------------------------------------------------------------------------------
cd "$KS_SLURM_JOBDIR" || exit 99
t=$(now)
j_root=$(sbatch --parsable --wrap 'sleep 1' 2>&1)
check_match "sbatch as root: $j_root" '^[0-9]+$' "$j_root"
j_user=$(as_ktest sbatch --parsable -A proja --wrap 'sleep 1' 2>&1)
check_match "sbatch as ktest -A proja: $j_user" '^[0-9]+$' "$j_user"
check_eq "srun -n1 hostname" "$(hostname)" "$(srun -n1 hostname 2>&1)"
j_fail=$(sbatch --parsable --wrap 'exit 3' 2>&1)
check_match "a failing job: $j_fail" '^[0-9]+$' "$j_fail"
j_pend=$(sbatch --parsable --begin=now+1hour --wrap true 2>&1)
check_match "a job beginning in an hour: $j_pend" '^[0-9]+$' "$j_pend"
check_eq "it is pending for BeginTime" "PENDING BeginTime" "$(state "$j_pend")"
check "scancel of the pending job" scancel "$j_pend"
j_long=$(sbatch --parsable --time=1 --wrap 'sleep 90' 2>&1)
check_match "a job with --time=1 sleeping 90 s: $j_long" '^[0-9]+$' "$j_long"
check "it runs" ks_wait_for 20 has_state "$j_long" RUNNING
check_match "with a time limit of a minute" 'TimeLimit=00:01:00' "$(scontrol show job "$j_long" 2>&1)"
check "scancel of the running job" scancel "$j_long"
j_arr=$(sbatch --parsable --array=1-3 --wrap 'sleep 1' 2>&1)
check_match "an array job --array=1-3: $j_arr" '^[0-9]+$' "$j_arr"
check "ks_slurm_wait_jobs_done" ks_slurm_wait_jobs_done 60
echo "# jobs to an empty queue: $(since "$t") s"
t=$(now)
check "ks_slurm_wait_in_sacct (root)" ks_slurm_wait_in_sacct "$j_root"
check_eq "root's job: COMPLETED" "$j_root COMPLETED" "$(ks_slurm_wait_in_sacct "$j_root")"
check_eq "ktest's job: COMPLETED, user ktest, account proja" "COMPLETED|ktest|proja" \
    "$(ks_slurm_wait_in_sacct "$j_user" >/dev/null; sacct_field "$j_user" State,User,Account)"
check_eq "the failing job: FAILED with exit code 3" "FAILED|3:0" \
    "$(ks_slurm_wait_in_sacct "$j_fail" >/dev/null; sacct_field "$j_fail" State,ExitCode)"
check_match "the job cancelled while pending: CANCELLED" "^$j_pend CANCELLED" "$(ks_slurm_wait_in_sacct "$j_pend")"
check_match "the job cancelled while running: CANCELLED" "^$j_long CANCELLED" "$(ks_slurm_wait_in_sacct "$j_long")"
check_eq "the array job: 3 tasks COMPLETED" \
    "${j_arr}_1 COMPLETED|${j_arr}_2 COMPLETED|${j_arr}_3 COMPLETED" "$(ks_slurm_wait_in_sacct "$j_arr" | sort | paste -sd'|')"
j_srun=$(sacct -X -n -P --name=hostname -o JobID 2>&1 | head -1)
check_match "the srun job: COMPLETED" "^$j_srun COMPLETED\$" "$(ks_slurm_wait_in_sacct "$j_srun")"
echo "# all in sacct: $(since "$t") s"
# (Without -j sacct leaves out the job cancelled while pending: it was never eligible.)
out=$(sacct -X -P -n -o JobID,State -j "$j_root,$j_user,$j_srun,$j_fail,$j_pend,$j_long,$j_arr" 2>&1)
check_eq "sacct -X -P -n lists the 9 jobs" 9 "$(printf '%s\n' "$out" | grep -c .)"
check_eq "and every state is final" "" "$(printf '%s\n' "$out" | grep -vE '\|(COMPLETED|FAILED|CANCELLED)')"
check_match "AllocTRES has billing" 'billing=1' "$(sacct_field "$j_root" AllocTRES)"
check_fails "ks_slurm_wait_in_sacct fails for an unknown job" ks_slurm_wait_in_sacct 99999 2

# --- GrpTRESMins ----------------------------------------------------------------------------------
check "GrpTRESMins=billing=0 on proja" \
    sacctmgr -i modify account where name=proja cluster=ks set GrpTRESMins=billing=0
check_eq "sacctmgr shows it" "proja||billing=0" \
    "$(sacctmgr -n -P show assoc where account=proja user= format=account,user,grptresmins 2>&1 | grep '^proja||')"
j_held=$(as_ktest sbatch --parsable -A proja --wrap true 2>&1)
check_match "ktest submits to proja: $j_held" '^[0-9]+$' "$j_held"
check "the job stays PENDING with reason AssocGrpBillingMinutes" \
    ks_wait_for 20 sh -c "squeue -h -j $j_held -o '%T %r' | grep -qx 'PENDING AssocGrpBillingMinutes'"
sleep 3
check_eq "still, 3 s later" "PENDING AssocGrpBillingMinutes" "$(state "$j_held")"
j_other=$(as_ktest sbatch --parsable -A projb --wrap true 2>&1)
check_eq "a job in projb is not held" "$j_other COMPLETED" "$(ks_slurm_wait_in_sacct "$j_other" 30)"
t=$(now)
check "the limit removed (GrpTRESMins=billing=-1)" \
    sacctmgr -i modify account where name=proja cluster=ks set GrpTRESMins=billing=-1
check_eq "the held job runs then" "$j_held COMPLETED" "$(ks_slurm_wait_in_sacct "$j_held" 30)"
echo "# release after raising the limit: $(since "$t") s"

# --- slurmctld kill -9 and restart ----------------------------------------------------------------
j_run=$(sbatch --parsable --wrap 'sleep 6' 2>&1)
check "a job runs before the kill" ks_wait_for 20 has_state "$j_run" RUNNING
t=$(now)
ks_slurmctld_wait_saved
echo "# ks_slurmctld_wait_saved: $(since "$t") s"
ctld=$(ks_slurm_pid slurmctld)
t=$(now)
check "ks_slurmctld_kill9" ks_slurmctld_kill9
check_fails "slurmctld $ctld is gone" ks_slurm_alive "$ctld" slurmctld
check_fails "ks_slurm_pid slurmctld says stopped" ks_slurm_pid slurmctld
check_fails "scontrol ping: not UP" ping_up
check "slurmd still runs" ks_slurm_pid slurmd
check "ks_slurmctld_start" ks_slurmctld_start
echo "# kill -9 and ks_slurmctld_start: $(since "$t") s"
check "scontrol ping: UP" ping_up
check "the node is usable" ks_slurm_node_usable
check_fails "a new slurmctld pid" test "$ctld" = "$(ks_slurm_pid slurmctld)"
check_match "the running job was recovered" '^(RUNNING|COMPLETING|COMPLETED)' "$(state "$j_run")$(sacct_field "$j_run" State)"
check_eq "and completes" "$j_run COMPLETED" "$(ks_slurm_wait_in_sacct "$j_run" 60)"
j=$(sbatch --parsable --wrap true 2>&1)
check_eq "a new job after the restart" "$j COMPLETED" "$(ks_slurm_wait_in_sacct "$j" 60)"
check "ks_slurmctld_start when running is harmless" ks_slurmctld_start
ctld=$(ks_slurm_pid slurmctld)
t=$(now)
check "ks_slurmctld_restart" ks_slurmctld_restart
echo "# ks_slurmctld_restart: $(since "$t") s"
check_fails "a new slurmctld pid" test "$ctld" = "$(ks_slurm_pid slurmctld)"
check "scontrol ping: UP" ping_up
check "the node is usable" ks_slurm_node_usable

# --- slurmdbd stop and start ----------------------------------------------------------------------
t=$(now)
check "ks_slurmdbd_stop" ks_slurmdbd_stop
check_fails "sacctmgr cannot reach slurmdbd" sacctmgr -n list cluster
j=$(sbatch --parsable --wrap true 2>&1)
check_match "sbatch works without slurmdbd: $j" '^[0-9]+$' "$j"
check "the job completes" ks_wait_for 20 sh -c "scontrol show job $j | grep -q JobState=COMPLETED"
check "ks_slurmdbd_start" ks_slurmdbd_start
echo "# slurmdbd stop and start: $(since "$t") s"
check_eq "the job reaches sacct afterwards" "$j COMPLETED" "$(ks_slurm_wait_in_sacct "$j" 60)"

# --- jobcomp ------------------------------------------------------------------------------------
t=$(now)
check "ks_slurm_set_jobcomp jobcomp/filetxt" ks_slurm_set_jobcomp jobcomp/filetxt "$KS_TMP/jobcomp.txt"
echo "# ks_slurm_set_jobcomp: $(since "$t") s"
check_eq "JobCompType" jobcomp/filetxt "$(show_config JobCompType)"
check_eq "JobCompLoc" "$KS_TMP/jobcomp.txt" "$(show_config JobCompLoc)"
check_eq "slurm.conf has one JobCompType line" "JobCompType=jobcomp/filetxt" "$(conf_line JobCompType)"
check_eq "and no JobCompParams line" "" "$(conf_line JobCompParams)"
check_fails "the node lines are still last" sh -c "tail -n 2 '$SLURM_CONF' | grep -v -e ^NodeName= -e ^PartitionName="
j=$(as_ktest sbatch --parsable -A projb --wrap 'exit 0' 2>&1)
check "the job is recorded in JobCompLoc" \
    ks_wait_for 30 grep -q "JobId=$j UserId=ktest([0-9]*) .*JobState=COMPLETED" "$KS_TMP/jobcomp.txt"
check "ks_slurm_set_jobcomp jobcomp/none" ks_slurm_set_jobcomp jobcomp/none
check_eq "JobCompType back to none" jobcomp/none "$(show_config JobCompType)"
check_eq "no JobCompLoc line" "" "$(conf_line JobCompLoc)"
check "ks_slurm_conf_set adds a line" ks_slurm_conf_set JobCompParams "a=b"
check_eq "before the node lines" "JobCompParams=a=b" "$(grep -B1 '^NodeName=' "$SLURM_CONF" | head -1)"
check "ks_slurm_conf_set removes it" ks_slurm_conf_set JobCompParams
check_eq "gone" "" "$(conf_line JobCompParams)"

# --- stop ---------------------------------------------------------------------------------------
pids=$(for d in munged mariadbd slurmdbd slurmctld slurmd; do ks_slurm_pid "$d"; done | paste -sd' ')
j_left=$(as_ktest sbatch --parsable -A projb --wrap 'sleep 300' 2>&1)
check "a job is left running" ks_wait_for 20 has_state "$j_left" RUNNING
t=$(now)
check "ks_slurm_stop" ks_slurm_stop
echo "# ks_slurm_stop (one job running): $(since "$t") s"
check "no process of ours is left (pgrep -f; munged, mariadbd, slurm*, job processes)" nothing_left "$KS_TMP"
check_fails "none of the pids $pids" sh -c "for p in $pids; do [ -d /proc/\$p ] && ! grep -q ') Z ' /proc/\$p/stat && exit 0; done; exit 1"
check_fails "scontrol ping: not UP" ping_up
check "ks_slurm_stop again is harmless" ks_slurm_stop

# --- missing packages -----------------------------------------------------------------------------
missing() {
    KEYSTONE_TEST_REQUIRE_SERVICES=$1 bash -c '
        . "$KS_SRCDIR/tests/lib/common.sh"; . "$KS_SRCDIR/tests/lib/slurm.sh"; ks_scratch
        command() { [ "${2:-}" = slurmctld ] && return 1; builtin command "$@"; }
        ks_slurm_start; exit 0' slurm-smoke-missing 2>&1
}
out=$(missing 0); rc=$?
check_eq "slurmctld missing: skip (77)" 77 "$rc"
check_match "naming the package" 'SKIP: slurm-smoke-missing: .*apt-get install --no-install-recommends slurmctld$' "$out"
out=$(missing 1); rc=$?
check_eq "slurmctld missing, KEYSTONE_TEST_REQUIRE_SERVICES=1: fail (99)" 99 "$rc"

# --- nothing left behind, however a test ends -------------------------------------------------------
# Each case is a test script of its own that starts the stack and a job, writes its scratch
# folder to $path and then ends that way.
child() {
    local how=$1 path=$KS_TMP/child-$1.path t
    rm -f "$path"
    t=$(now)
    bash -c '
        . "$KS_SRCDIR/tests/lib/common.sh"; . "$KS_SRCDIR/tests/lib/slurm.sh"; ks_scratch
        if [ "$2" = exit ]; then
            mkdir "$KS_TMP/plugins"
            ks_slurm_start jobcomp/filetxt "$KS_TMP/plugins" "$KS_TMP/jobcomp.txt" "ks_test=1"
            # (scontrol show config does not show JobCompParams in 22.05.)
            { scontrol show config | grep -E "^(PluginDir|JobComp(Type|Loc)) "
                grep "^JobCompParams=" "$SLURM_CONF"; } >"$1.config"
        else
            ks_slurm_start
        fi
        cd "$KS_SLURM_JOBDIR" || exit 1
        j=$(sbatch --parsable --wrap "sleep 300")
        ks_wait_for 20 sh -c "squeue -h -j $j -o %T | grep -qx RUNNING" || exit 1
        echo "$KS_TMP" >"$1"
        case $2 in
        exit) exit 3 ;;
        unset) echo "$no_such_variable" ;;
        term) sleep 60 & s=$!; ks_on_exit "kill $s"; wait $s ;;
        esac
        exit 0' "slurm-smoke-$how" "$path" "$how" >"$KS_TMP/child-$how.out" 2>&1 &
    local cpid=$!
    ks_wait_for 60 test -s "$path"
    [ "$how" = term ] && { sleep 0.2; kill -TERM "$cpid"; }
    wait "$cpid"
    local rc=$? dir
    echo "# test ending with '$how': $(since "$t") s"
    dir=$(cat "$path" 2>/dev/null)
    check_match "test ending with '$how' (rc $rc) had started the stack and a job" "^/" "$dir"
    [ -n "$dir" ] || sed 's/^/#   /' "$KS_TMP/child-$how.out" | tail -20
    if [ "$how" = exit ]; then
        check_eq "ks_slurm_start with JOBCOMP_TYPE PLUGIN_DIR JOBCOMP_LOC JOBCOMP_PARAMS" \
            "JobCompLoc=$dir/jobcomp.txt|JobCompParams=ks_test=1|JobCompType=jobcomp/filetxt|PluginDir=$KS_SLURM_PLUGINDIR:$dir/plugins" \
            "$(sed 's/ *= */=/' "$path.config" 2>&1 | sort | paste -sd'|')"
    fi
    check "test ending with '$how': no process left" nothing_left "${dir:-/nonexistent}"
    check_fails "test ending with '$how': its scratch folder is gone" test -e "${dir:-/nonexistent}"
}
if [ -z "${KS_SMOKE_QUICK:-}" ]; then
    for how in exit unset term; do child "$how"; done
fi

echo "# ks_slurm_start: $start_time s; whole smoke run: $(since "$smoke_t0") s"
ks_done
