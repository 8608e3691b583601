# SPDX-License-Identifier: GPL-2.0-or-later
# A private single-node Slurm cluster for one test: munged on its own key and socket, a MariaDB
# on 127.0.0.1 at a free port, slurmdbd, slurmctld and slurmd (node "localhost") on free ports,
# all as children of the test's shell, with every file in $KS_TMP/slurm; stopped (only these
# processes) when the test exits. Needs tests/lib/common.sh and ks_scratch first, and root
# (SlurmUser=root, useradd). Uses Debian's packages:
#   munge mariadb-server slurmctld slurmd slurmdbd slurm-client
#
# Exports after ks_slurm_start:
#   SLURM_CONF        $KS_SLURM_DIR/etc/slurm.conf (mode 644: users' sbatch reads it); every
#                     Slurm command and libslurm find the cluster through it. slurmdbd.conf
#                     (mode 600) is next to it.
#   KS_SLURM_DIR      $KS_TMP/slurm
#   KS_SLURM_LOG      the log folder: slurmctld.log slurmd.log slurmdbd.log munged.log
#                     mariadbd.log, and NAME.out (a daemon's stdout/stderr, e.g. fatal errors)
#   KS_SLURMCTLD_LOG  $KS_SLURM_LOG/slurmctld.log
#   KS_SLURM_CLUSTER  ks
#   KS_SLURM_JOBDIR   a world-writable folder to submit jobs from (slurm-N.out files land in the
#                     submitter's working directory; users cannot write to the source tree)
#   KS_SLURM_PLUGINDIR  Debian's plugin folder
#   KS_MUNGE_SOCKET   munged's socket (also AuthInfo and AccountingStoragePass in slurm.conf)
# Optional before ks_slurm_start: KS_SLURM_NODE_CPUS, the CPUs the node claims (more than the
# machine has, for many tiny jobs at once: SlurmdParameters=config_overrides is set then);
# KS_SLURM_BILLING_WEIGHTS, the partition's TRESBillingWeights (default "CPU=1.0"; e.g.
# "CPU=3600" makes a 1-CPU job charge one billing-minute per second, so short jobs use up
# GrpTRESMins limits of a few service units).
# Root is in account "root" (made by "sacctmgr add cluster"); other accounts and users come from
# ks_slurm_add_accounts / ks_slurm_add_user. Timings on a busy 2-core VM: start 5-9 s (most of it
# mariadb-install-db's fsyncs; ~4 s with TMPDIR=/dev/shm), slurmctld restart 2-3.5 s, stop ~3 s.
# shellcheck shell=bash

# Slurm's client settings (SLURM_*, SBATCH_*, SQUEUE_*, ...) must come from each test, not from
# the developer's shell or from a Slurm job the tests run in.
for ks_v in $(compgen -e); do
    case $ks_v in
    SLURM_* | SBATCH_* | SALLOC_* | SRUN_* | SQUEUE_* | SACCT_* | SINFO_* | SCONTROL_* | SACCTMGR_* | \
        SSHARE_* | SPRIO_* | SCANCEL_* | SSTAT_* | SREPORT_* | SLURMD_* | SLURMCTLD_*) unset "$ks_v" ;;
    esac
done
unset ks_v

KS_SLURM_CLUSTER=ks
KS_SLURM_DAEMONS="slurmd slurmctld slurmdbd mariadbd munged"   # stop order
# The pids of the daemons as started by ks_slurm_spawn (their pid files are the fallback).
KS_PID_munged='' KS_PID_mariadbd='' KS_PID_slurmdbd='' KS_PID_slurmctld='' KS_PID_slurmd=''

# --- processes ------------------------------------------------------------------------------------

# ks_slurm_alive PID NAME: PID is a live (not zombie) NAME of this test's stack: /proc/PID/comm is
# NAME and its command line or environment names $KS_SLURM_DIR (PIDs get reused quickly here).
ks_slurm_alive() {
    local pid=$1 name=$2 stat state comm
    case $pid in '' | *[!0-9]*) return 1 ;; esac
    [ -n "${KS_SLURM_DIR:-}" ] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    state=${stat##*) }
    state=${state%% *}
    case $state in Z | X | x) return 1 ;; esac
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [ "$comm" = "$name" ] || return 1
    tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$KS_SLURM_DIR/" && return 0
    tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | grep -qxF -- "SLURM_CONF=$KS_SLURM_DIR/etc/slurm.conf"
}

# The pid file each daemon writes (munged and slurm*); mariadbd's too.
ks_slurm_pidfile() {
    case $1 in
    munged) echo "$KS_SLURM_DIR/run/munged.pid" ;;
    mariadbd) echo "$KS_SLURM_DIR/mysql-run/mariadbd.pid" ;;
    *) echo "$KS_SLURM_DIR/run/$1.pid" ;;
    esac
}

# ks_slurm_pid NAME: prints the pid of our running NAME (munged mariadbd slurmdbd slurmctld
# slurmd), from what we started or else from its pid file; fails if it is not running.
ks_slurm_pid() {
    local name=$1 var pid
    [ -n "${KS_SLURM_DIR:-}" ] || return 1
    var=KS_PID_$name
    pid=${!var:-}
    if ks_slurm_alive "$pid" "$name"; then echo "$pid"; return 0; fi
    pid=$(cat "$(ks_slurm_pidfile "$name")" 2>/dev/null) || return 1
    pid=${pid//[!0-9]/}
    ks_slurm_alive "$pid" "$name" || return 1
    echo "$pid"
}

# ks_slurm_spawn NAME COMMAND...: starts a daemon in the foreground mode as a child of this shell,
# in the background, stdout/stderr to $KS_SLURM_LOG/NAME.out; remembers its pid.
ks_slurm_spawn() {
    local name=$1; shift
    (cd "$KS_SLURM_DIR/run" && exec "$@") </dev/null >>"$KS_SLURM_LOG/$name.out" 2>&1 &
    printf -v "KS_PID_$name" '%s' "$!"
    # Out of the job table: no "Killed" notice on stderr after ks_slurmctld_kill9 (bash still
    # reaps it).
    disown "$!"
}

# ks_slurm_wait_gone PID NAME SECONDS: waits until it is gone (a zombie counts as gone).
ks_slurm_wait_gone() {
    local pid=$1 name=$2 i
    for ((i = 0; i < $3 * 20; i++)); do
        ks_slurm_alive "$pid" "$name" || return 0
        sleep 0.05
    done
    ! ks_slurm_alive "$pid" "$name"
}

# ks_slurm_kill NAME [SIGNAL]: stops our NAME (SIGTERM, SIGKILL after 20 s; or SIGNAL at once)
# and waits until it is gone. Harmless when it is not running.
ks_slurm_kill() {
    local name=$1 sig=${2:-TERM} pid
    pid=$(ks_slurm_pid "$name") || { rm -f "$(ks_slurm_pidfile "$name")"; return 0; }
    kill "-$sig" "$pid" 2>/dev/null
    if ! ks_slurm_wait_gone "$pid" "$name" 20; then
        echo "ks_slurm_kill: $name $pid ignored SIG$sig for 20 s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null
        ks_slurm_wait_gone "$pid" "$name" 5
    fi
    rm -f "$(ks_slurm_pidfile "$name")"
    return 0
}

# Pids of slurmstepd and job processes left by our slurmd: their environment has our SLURM_CONF
# (slurmd's, or the submitter's copied into the job) and, for job processes, SLURM_JOB_ID.
ks_slurm_job_pids() {
    local f p comm
    grep -lzxF -- "SLURM_CONF=$KS_SLURM_DIR/etc/slurm.conf" /proc/[0-9]*/environ 2>/dev/null | while read -r f; do
        p=${f#/proc/}
        p=${p%/environ}
        [ "$p" = "$$" ] && continue
        comm=$(cat "/proc/$p/comm" 2>/dev/null) || continue
        if [ "$comm" = slurmstepd ] || grep -qz '^SLURM_JOB_ID=' "$f" 2>/dev/null; then echo "$p"; fi
    done
}

# --- configuration -------------------------------------------------------------------------------

# ks_slurm_conf_set KEY [VALUE]: sets KEY=VALUE in slurm.conf (replacing the KEY line, or adding
# it before the node and partition lines), or removes the KEY line when VALUE is empty.
# Daemons read it when they start (ks_slurmctld_restart, or "scontrol reconfigure" for some).
ks_slurm_conf_set() {
    ks_slurm_started || return 1
    local f=$KS_SLURM_DIR/etc/slurm.conf
    KS_K=$1 KS_V=${2:-} awk '
        BEGIN { k = tolower(ENVIRON["KS_K"]) "="; v = ENVIRON["KS_V"]; done = (v == "") }
        tolower(substr($0, 1, length(k))) == k { if (!done) print ENVIRON["KS_K"] "=" v; done = 1; next }
        /^(NodeName|PartitionName)=/ && !done { print ENVIRON["KS_K"] "=" v; done = 1 }
        { print }
        END { if (!done) print ENVIRON["KS_K"] "=" v }' "$f" >"$f.new" && chmod 644 "$f.new" && mv -f "$f.new" "$f"
}

# Writes slurm.conf and slurmdbd.conf from the KS_SLURM_* settings.
ks_slurm_write_conf() {
    local d=$KS_SLURM_DIR plugins=$KS_SLURM_PLUGINDIR
    [ -n "$KS_SLURM_EXTRA_PLUGINDIR" ] && plugins=$plugins:$KS_SLURM_EXTRA_PLUGINDIR
    cat >"$d/etc/slurm.conf" <<EOF
# generated by tests/lib/slurm.sh for ${ks_test_name:-a test}
ClusterName=$KS_SLURM_CLUSTER
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$KS_MUNGE_SOCKET
CredType=cred/munge
SlurmctldPort=$KS_SLURMCTLD_PORT
SlurmdPort=$KS_SLURMD_PORT
StateSaveLocation=$d/state/ctld
SlurmdSpoolDir=$d/state/d
SlurmctldPidFile=$d/run/slurmctld.pid
SlurmdPidFile=$d/run/slurmd.pid
SlurmctldLogFile=$KS_SLURM_LOG/slurmctld.log
SlurmdLogFile=$KS_SLURM_LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PluginDir=$plugins
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=2,sched_interval=2
PriorityType=priority/multifactor
PriorityDecayHalfLife=0
PriorityUsageResetPeriod=NONE
PriorityCalcPeriod=1
PriorityWeightFairshare=1000
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$KS_SLURMDBD_PORT
# For connections to slurmdbd Slurm 22.05 takes the munge socket from AccountingStoragePass.
AccountingStoragePass=$KS_MUNGE_SOCKET
AccountingStorageTRES=billing,cpu,mem,node
AccountingStorageEnforce=associations,limits
JobCompType=$KS_SLURM_JOBCOMP_TYPE
ReturnToService=2
MinJobAge=300
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs=${KS_SLURM_NODE_CPUS:-$(nproc)} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP TRESBillingWeights="${KS_SLURM_BILLING_WEIGHTS:-CPU=1.0}"
EOF
    chmod 644 "$d/etc/slurm.conf"
    # More CPUs than the machine has (KS_SLURM_NODE_CPUS) only with the node's config trusted.
    [ -n "${KS_SLURM_NODE_CPUS:-}" ] && ks_slurm_conf_set SlurmdParameters config_overrides
    ks_slurm_conf_set JobCompLoc "$KS_SLURM_JOBCOMP_LOC"
    ks_slurm_conf_set JobCompParams "$KS_SLURM_JOBCOMP_PARAMS"
    (
        umask 077
        cat >"$d/etc/slurmdbd.conf" <<EOF
# generated by tests/lib/slurm.sh for ${ks_test_name:-a test}
AuthType=auth/munge
AuthInfo=socket=$KS_MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$KS_SLURMDBD_PORT
SlurmUser=root
DebugLevel=info
LogFile=$KS_SLURM_LOG/slurmdbd.log
PidFile=$d/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$KS_MARIADB_PORT
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
EOF
    )
    chmod 600 "$d/etc/slurmdbd.conf"
}

ks_slurm_write_mycnf() {
    local d=$KS_SLURM_DIR
    cat >"$d/etc/my.cnf" <<EOF
# generated by tests/lib/slurm.sh for ${ks_test_name:-a test}
[mysqld]
user=mysql
datadir=$d/mysql
socket=$d/mysql-run/mariadbd.sock
pid-file=$d/mysql-run/mariadbd.pid
log-error=$KS_SLURM_LOG/mariadbd.log
bind-address=127.0.0.1
port=$KS_MARIADB_PORT
skip-name-resolve
skip-log-bin
innodb_buffer_pool_size=1024M
innodb_log_file_size=64M
innodb_flush_method=nosync
innodb_lock_wait_timeout=900
innodb_flush_log_at_trx_commit=0
innodb_doublewrite=0
max_connections=100
EOF
    chmod 644 "$d/etc/my.cnf"
}

# Port still taken (ks_free_port is racy): a daemon's logs say so.
ks_slurm_port_taken() { cat "$KS_SLURM_LOG/$1".* 2>/dev/null | grep -qiE 'address already in use|errno: 98|error: 98'; }

# ks_slurm_set_aside NAME TRY: moves NAME's logs of a failed start to $KS_SLURM_LOG/failed/.
ks_slurm_set_aside() {
    local f
    mkdir -p "$KS_SLURM_LOG/failed"
    for f in "$KS_SLURM_LOG/$1".*; do
        [ -e "$f" ] && mv -f "$f" "$KS_SLURM_LOG/failed/${f##*/}.$2"
    done
    return 0
}

# Prints the last lines of a daemon's logs to stderr and exits 99.
ks_slurm_fatal() {
    local name=$1 f; shift
    echo "ks_slurm: $*" >&2
    for f in "$KS_SLURM_LOG/$name".*; do
        [ -s "$f" ] || continue
        echo "# --- $f (last 30 lines)" >&2
        tail -n 30 "$f" | sed 's/^/#   /' >&2
    done
    exit 99
}

# --- the daemons ----------------------------------------------------------------------------------

# Fails (with a message) unless ks_slurm_start has set this test's stack up.
ks_slurm_started() {
    [ -n "${KS_SLURM_DIR:-}" ] && [ -f "$KS_SLURM_DIR/etc/slurm.conf" ] && return 0
    echo "${FUNCNAME[1]}: ks_slurm_start was not called" >&2
    return 1
}

ks_slurm_start_munged() {
    ks_slurm_pid munged >/dev/null && return 0
    ks_slurm_spawn munged munged -F --key-file="$KS_SLURM_DIR/munge/munge.key" --socket="$KS_MUNGE_SOCKET" \
        --pid-file="$KS_SLURM_DIR/run/munged.pid" --log-file="$KS_SLURM_LOG/munged.log" \
        --seed-file="$KS_SLURM_DIR/munge/munged.seed"
    local i
    for ((i = 0; i < 200; i++)); do
        munge -n -S "$KS_MUNGE_SOCKET" 2>/dev/null | unmunge -S "$KS_MUNGE_SOCKET" >/dev/null 2>&1 && return 0
        ks_slurm_alive "$KS_PID_munged" munged || break
        sleep 0.05
    done
    ks_slurm_fatal munged "munged did not start"
}

# Starts mariadbd (the data folder exists) and waits until it answers on its socket.
ks_slurm_start_mariadb_server() {
    ks_slurm_pid mariadbd >/dev/null && return 0
    ks_slurm_spawn mariadbd mariadbd --defaults-file="$KS_SLURM_DIR/etc/my.cnf"
    local i
    for ((i = 0; i < 600; i++)); do
        ks_slurm_sql 'SELECT 1' >/dev/null 2>&1 && return 0
        ks_slurm_alive "$KS_PID_mariadbd" mariadbd || return 1
        sleep 0.05
    done
    return 1
}

# ks_slurm_sql SQL: runs SQL in our MariaDB as its root (unix socket authentication).
ks_slurm_sql() {
    mariadb --no-defaults --socket="$KS_SLURM_DIR/mysql-run/mariadbd.sock" -u root -N -B -e "$1"
}

ks_slurm_start_mariadb() {
    local d=$KS_SLURM_DIR try
    # As the mysql user: as root it would also chown/chmod files in /usr/lib/mysql/plugin.
    runuser -u mysql -- mariadb-install-db --defaults-file="$d/etc/my.cnf" --auth-root-authentication-method=socket \
        --skip-test-db >"$KS_SLURM_LOG/mariadb-install-db.out" 2>&1 ||
        ks_slurm_fatal mariadb-install-db "mariadb-install-db failed"
    for try in 1 2 3 4 5; do
        ks_slurm_start_mariadb_server && break
        ks_slurm_kill mariadbd KILL
        if [ "$try" = 5 ] || ! ks_slurm_port_taken mariadbd; then ks_slurm_fatal mariadbd "MariaDB did not start"; fi
        KS_MARIADB_PORT=$(ks_free_port) || ks_slurm_fatal mariadbd "no free port"
        ks_slurm_set_aside mariadbd "$try"
        : >"$KS_SLURM_LOG/mariadbd.log"
        chown mysql:mysql "$KS_SLURM_LOG/mariadbd.log"
        ks_slurm_write_mycnf
        ks_slurm_write_conf   # StoragePort in slurmdbd.conf
    done
    ks_slurm_sql "CREATE DATABASE slurm_acct_db;
        CREATE USER 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
        CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmpw';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" >"$KS_SLURM_LOG/mariadb-setup.out" 2>&1 ||
        ks_slurm_fatal mariadbd "creating the slurm_acct_db database and user failed"
}

# slurmdbd answers: sacctmgr can read the cluster list.
ks_slurmdbd_ready() { sacctmgr -n -P list cluster format=cluster >/dev/null 2>&1; }

# Starts slurmdbd once (returns 2 when its port is taken, 1 on other failures).
ks_slurmdbd_start_once() {
    ks_slurm_spawn slurmdbd slurmdbd -D
    local i
    for ((i = 0; i < 600; i++)); do
        ks_slurmdbd_ready && return 0
        if ! ks_slurm_alive "$KS_PID_slurmdbd" slurmdbd; then
            ks_slurm_port_taken slurmdbd && return 2
            return 1
        fi
        sleep 0.05
    done
    return 1
}

# ks_slurmdbd_start: starts slurmdbd (after ks_slurmdbd_stop) and waits until it answers; on
# the first start a taken DbdPort is replaced by another free one. Exits 99 if it can't.
ks_slurmdbd_start() {
    ks_slurm_started || return 1
    ks_slurm_pid slurmdbd >/dev/null && return 0
    local try rc
    for try in 1 2 3 4 5; do
        ks_slurmdbd_start_once && return 0
        rc=$?
        ks_slurm_kill slurmdbd KILL
        if [ "$rc" != 2 ] || [ "${KS_SLURM_STARTED:-0}" = 1 ] || [ "$try" = 5 ]; then
            ks_slurm_fatal slurmdbd "slurmdbd did not start"
        fi
        KS_SLURMDBD_PORT=$(ks_free_port) || ks_slurm_fatal slurmdbd "no free port"
        ks_slurm_write_conf
        ks_slurm_set_aside slurmdbd "$try"
    done
}

# ks_slurmdbd_stop: stops slurmdbd (slurmctld keeps the accounting records and sends them when
# slurmdbd is back).
ks_slurmdbd_stop() { ks_slurm_kill slurmdbd; }

ks_slurmctld_ready() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

ks_slurmctld_start_once() {
    ks_slurm_spawn slurmctld slurmctld -D -f "$SLURM_CONF"
    local i
    for ((i = 0; i < 600; i++)); do
        ks_slurmctld_ready && return 0
        if ! ks_slurm_alive "$KS_PID_slurmctld" slurmctld; then
            ks_slurm_port_taken slurmctld && return 2
            return 1
        fi
        sleep 0.05
    done
    return 1
}

# ks_slurmctld_start: starts slurmctld with the same configuration and state (after
# ks_slurmctld_kill9, or when stopped) and waits until "scontrol ping" says UP and the node
# responds again. Exits 99 if it can't.
ks_slurmctld_start() {
    ks_slurm_started || return 1
    ks_slurm_pid slurmctld >/dev/null && return 0
    local try rc
    for try in 1 2 3 4 5; do
        ks_slurmctld_start_once && break
        rc=$?
        ks_slurm_kill slurmctld KILL
        if [ "$rc" != 2 ] || [ "${KS_SLURM_STARTED:-0}" = 1 ] || [ "$try" = 5 ]; then
            ks_slurm_fatal slurmctld "slurmctld did not start"
        fi
        KS_SLURMCTLD_PORT=$(ks_free_port) || ks_slurm_fatal slurmctld "no free port"
        ks_slurm_conf_set SlurmctldPort "$KS_SLURMCTLD_PORT"
        ks_slurm_set_aside slurmctld "$try"
    done
    local slurmd
    if slurmd=$(ks_slurm_pid slurmd); then
        # slurmctld asks the nodes to register only some 5 s after it starts; a SIGHUP makes slurmd
        # re-read slurm.conf (unchanged) and register at once.
        if ! ks_slurm_node_usable; then kill -HUP "$slurmd" 2>/dev/null; fi
        ks_slurm_wait_node 60 || ks_slurm_fatal slurmctld "the node did not come back after the slurmctld start"
    fi
}

# ks_slurmctld_wait_saved: waits until slurmctld has saved the job state as it is now (it saves
# at most every 5 s): until its job_state file is written after this call, or 7 s when nothing
# was left to save. Call it before ks_slurmctld_kill9 when the jobs should come back as they
# were: a job that started after the last save comes back PENDING, its batch step is killed as
# an orphan, and it is requeued to begin some 2 minutes later.
ks_slurmctld_wait_saved() {
    local f=$KS_SLURM_DIR/state/ctld/job_state t0=$EPOCHREALTIME m i
    for ((i = 0; i < 70; i++)); do
        m=$(stat -c %.9Y "$f" 2>/dev/null) &&
            awk -v m="$m" -v t="$t0" 'BEGIN { exit !(m > t) }' && return 0
        sleep 0.1
    done
    return 0
}

# ks_slurmctld_kill9: kills slurmctld with SIGKILL (no state save) and waits until it is gone.
ks_slurmctld_kill9() { ks_slurm_kill slurmctld KILL; }

# ks_slurmctld_stop: stops slurmctld (SIGTERM: it saves its state) and waits until it is gone.
ks_slurmctld_stop() { ks_slurm_kill slurmctld; }

# ks_slurmctld_restart: stop and start, e.g. after changing slurm.conf.
ks_slurmctld_restart() { ks_slurmctld_stop; ks_slurmctld_start; }

# ks_slurm_node_state: the node's state as sinfo prints it (idle, mixed, allocated, down*, ...).
ks_slurm_node_state() { sinfo -h -N -n localhost -o %T 2>/dev/null; }

# ks_slurm_wait_node [TIMEOUT]: until the node is usable (idle, mixed or allocated; not
# unknown, down or not responding).
ks_slurm_wait_node() {
    ks_wait_for "${1:-60}" ks_slurm_node_usable
}
ks_slurm_node_usable() {
    case $(ks_slurm_node_state) in idle | mixed | allocated | completing) return 0 ;; esac
    return 1
}

ks_slurmd_start_once() {
    ks_slurm_spawn slurmd slurmd -D -N localhost -f "$SLURM_CONF"
    local i
    for ((i = 0; i < 600; i++)); do
        [ "$(ks_slurm_node_state)" = idle ] && return 0
        if ! ks_slurm_alive "$KS_PID_slurmd" slurmd; then
            ks_slurm_port_taken slurmd && return 2
            return 1
        fi
        sleep 0.05
    done
    return 1
}

# ks_slurmd_start: starts slurmd and waits until the node is idle.
ks_slurmd_start() {
    ks_slurm_started || return 1
    ks_slurm_pid slurmd >/dev/null && return 0
    local try rc
    for try in 1 2 3 4 5; do
        ks_slurmd_start_once && return 0
        rc=$?
        ks_slurm_kill slurmd KILL
        if [ "$rc" != 2 ] || [ "${KS_SLURM_STARTED:-0}" = 1 ] || [ "$try" = 5 ]; then
            ks_slurm_fatal slurmd "slurmd did not start (or the node did not become idle)"
        fi
        # slurmctld reads the node's port from slurm.conf: it has to start again too.
        KS_SLURMD_PORT=$(ks_free_port) || ks_slurm_fatal slurmd "no free port"
        ks_slurm_conf_set SlurmdPort "$KS_SLURMD_PORT"
        ks_slurm_set_aside slurmd "$try"
        ks_slurmctld_restart
    done
}

# ks_slurmd_stop: stops slurmd (running jobs' slurmstepd carry on).
ks_slurmd_stop() { ks_slurm_kill slurmd; }

# --- start and stop -------------------------------------------------------------------------------

ks_slurm_check_installed() {
    local t missing=''
    case :$PATH: in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/sbin ;; esac
    for t in munged:munge munge:munge unmunge:munge mariadbd:mariadb-server \
        mariadb-install-db:mariadb-server mariadb:mariadb-client slurmdbd:slurmdbd \
        slurmctld:slurmctld slurmd:slurmd sacctmgr:slurm-client sbatch:slurm-client \
        srun:slurm-client scontrol:slurm-client squeue:slurm-client sacct:slurm-client \
        sinfo:slurm-client scancel:slurm-client; do
        command -v "${t%%:*}" >/dev/null 2>&1 && continue
        case " $missing " in *" ${t##*:} "*) ;; *) missing="$missing ${t##*:}" ;; esac
    done
    [ -z "$missing" ] || ks_missing_service "Slurm stack not installed: apt-get install --no-install-recommends${missing}"
    local d
    KS_SLURM_PLUGINDIR=
    for d in /usr/lib/*/slurm-wlm /usr/lib/slurm-wlm /usr/lib64/slurm /usr/lib/slurm; do
        [ -f "$d/accounting_storage_mysql.so" ] && [ -f "$d/jobcomp_none.so" ] && { KS_SLURM_PLUGINDIR=$d; break; }
    done
    [ -n "$KS_SLURM_PLUGINDIR" ] ||
        ks_missing_service "Slurm plugins (accounting_storage_mysql.so) not found: apt-get install slurmdbd slurm-wlm-basic-plugins"
    [ "$(id -u)" = 0 ] || ks_missing_service "the Slurm stack needs root (SlurmUser=root, useradd)"
    id mysql >/dev/null 2>&1 || ks_missing_service "no mysql user to run MariaDB as: apt-get install mariadb-server"
}

# ks_slurm_start [JOBCOMP_TYPE [PLUGIN_DIR [JOBCOMP_LOC [JOBCOMP_PARAMS]]]]: creates and starts
# the whole stack (JobCompType JOBCOMP_TYPE, default jobcomp/none; PLUGIN_DIR is searched after
# Debian's plugin folder) and waits until slurmctld answers and the node is idle. Exits 77/99
# when it can't. Does nothing when it is already running.
ks_slurm_start() {
    ks_slurm_check_installed
    [ -n "${KS_TMP:-}" ] || { echo "ks_slurm_start: call ks_scratch first" >&2; exit 99; }
    KS_SLURM_DIR=$KS_TMP/slurm
    if ks_slurm_pid slurmctld >/dev/null; then return 0; fi
    KS_SLURM_JOBCOMP_TYPE=${1:-jobcomp/none}
    KS_SLURM_EXTRA_PLUGINDIR=${2:-}
    KS_SLURM_JOBCOMP_LOC=${3:-}
    KS_SLURM_JOBCOMP_PARAMS=${4:-}
    KS_SLURM_STARTED=0

    local d=$KS_SLURM_DIR
    KS_MUNGE_SOCKET=$d/run/munge.socket
    if [ "${#KS_MUNGE_SOCKET}" -gt 100 ]; then
        echo "ks_slurm_start: socket path too long (${#KS_MUNGE_SOCKET} bytes): $KS_MUNGE_SOCKET; use a shorter TMPDIR" >&2
        exit 99
    fi
    rm -rf "$d"
    mkdir -p "$d"/etc "$d"/run "$d"/log "$d"/state/ctld "$d"/state/d "$d"/munge "$d"/mysql "$d"/mysql-run "$d"/jobs || exit 99
    chmod 711 "$d"
    chmod 755 "$d"/etc "$d"/run "$d"/log
    chmod 700 "$d"/munge "$d"/state/ctld
    chmod 1777 "$d"/jobs
    chown mysql:mysql "$d"/mysql "$d"/mysql-run
    : >"$d/log/mariadbd.log"
    chown mysql:mysql "$d/log/mariadbd.log"

    KS_SLURM_LOG=$d/log
    KS_SLURMCTLD_LOG=$KS_SLURM_LOG/slurmctld.log
    KS_SLURM_JOBDIR=$d/jobs
    SLURM_CONF=$d/etc/slurm.conf
    export SLURM_CONF KS_SLURM_DIR KS_SLURM_LOG KS_SLURMCTLD_LOG KS_SLURM_CLUSTER KS_SLURM_JOBDIR \
        KS_SLURM_PLUGINDIR KS_MUNGE_SOCKET
    ks_on_exit ks_slurm_stop

    local p
    local p port ports=' '
    for p in KS_MARIADB_PORT KS_SLURMDBD_PORT KS_SLURMCTLD_PORT KS_SLURMD_PORT; do
        for _ in 1 2 3 4 5; do
            port=$(ks_free_port) || { echo "ks_slurm_start: no free port" >&2; exit 99; }
            case $ports in *" $port "*) ;; *) break ;; esac
        done
        ports="$ports$port "
        printf -v "$p" '%s' "$port"
    done
    ks_slurm_write_mycnf
    ks_slurm_write_conf

    (umask 077 && dd if=/dev/urandom of="$d/munge/munge.key" bs=1024 count=1 2>/dev/null) || exit 99
    chmod 400 "$d/munge/munge.key"
    ks_slurm_start_munged
    ks_slurm_start_mariadb
    ks_slurmdbd_start
    sacctmgr -i add cluster "$KS_SLURM_CLUSTER" >"$KS_SLURM_LOG/sacctmgr-add-cluster.out" 2>&1 ||
        ks_slurm_fatal sacctmgr-add-cluster "sacctmgr add cluster $KS_SLURM_CLUSTER failed"
    ks_slurmctld_start
    ks_slurmd_start
    KS_SLURM_STARTED=1
}

# ks_slurm_stop: cancels the jobs left, stops slurmd, slurmctld, slurmdbd, MariaDB and munged
# (only ours), and kills any slurmstepd or job process of ours left. Harmless when stopped.
ks_slurm_stop() {
    [ -n "${KS_SLURM_DIR:-}" ] || return 0
    local name p
    if ks_slurm_pid slurmctld >/dev/null && ! ks_slurm_queue_empty; then
        scancel --partition=debug >/dev/null 2>&1
        ks_wait_for 10 ks_slurm_queue_empty
    fi
    for name in $KS_SLURM_DAEMONS; do
        ks_slurm_kill "$name"
        if [ "$name" = slurmd ]; then
            for p in $(ks_slurm_job_pids); do kill -KILL "$p" 2>/dev/null; done
        fi
    done
    return 0
}

# ks_slurm_set_jobcomp TYPE [JOBCOMP_LOC [JOBCOMP_PARAMS]]: sets JobCompType, JobCompLoc and
# JobCompParams (an empty or missing one is removed) and restarts slurmctld.
ks_slurm_set_jobcomp() {
    ks_slurm_started || return 1
    KS_SLURM_JOBCOMP_TYPE=${1:-jobcomp/none}
    KS_SLURM_JOBCOMP_LOC=${2:-}
    KS_SLURM_JOBCOMP_PARAMS=${3:-}
    ks_slurm_conf_set JobCompType "$KS_SLURM_JOBCOMP_TYPE" &&
        ks_slurm_conf_set JobCompLoc "$KS_SLURM_JOBCOMP_LOC" &&
        ks_slurm_conf_set JobCompParams "$KS_SLURM_JOBCOMP_PARAMS" || return 1
    ks_slurmctld_restart
}

# --- accounts, users, jobs ------------------------------------------------------------------------

# ks_slurm_assoc_known ACCOUNT [USER]: slurmctld has the association (slurmdbd pushes it).
ks_slurm_assoc_known() {
    local out
    if [ -n "${2:-}" ]; then
        out=$(scontrol show assoc_mgr flags=assoc accounts="$1" users="$2" 2>/dev/null)
        printf '%s\n' "$out" | grep -q "Account=$1 UserName=$2("
    else
        out=$(scontrol show assoc_mgr flags=assoc accounts="$1" 2>/dev/null)
        printf '%s\n' "$out" | grep -q "Account=$1 UserName= "
    fi
}

# ks_slurm_sacctmgr_add WHAT ARG...: sacctmgr -i add WHAT ARG...; "Nothing new added" (all there
# already) is fine. Output in $KS_SLURM_LOG/sacctmgr-add-WHAT.out, and on stderr on failure.
ks_slurm_sacctmgr_add() {
    local out=$KS_SLURM_LOG/sacctmgr-add-$1.out
    if sacctmgr -i add "$@" >"$out" 2>&1 || grep -q 'Nothing new added' "$out"; then return 0; fi
    cat "$out" >&2
    return 1
}

# ks_slurm_add_accounts ACCOUNT...: adds the accounts (under root) to the cluster and waits until
# slurmctld knows them.
ks_slurm_add_accounts() {
    local a list
    list=$(IFS=,; echo "$*")
    ks_slurm_sacctmgr_add account "$list" cluster="$KS_SLURM_CLUSTER" description=test organization=test || return 1
    for a in "$@"; do
        ks_wait_for 20 ks_slurm_assoc_known "$a" || { echo "ks_slurm_add_accounts: slurmctld does not know account $a" >&2; return 1; }
    done
}

# ks_slurm_add_user USER ACCOUNT[,ACCOUNT...]: creates the Unix user (useradd -M) if missing and
# gives it associations with the accounts (the first one is its default account); waits until
# slurmctld knows them. The Unix user stays after the test.
ks_slurm_add_user() {
    local u=${1:?ks_slurm_add_user USER ACCOUNT[,ACCOUNT...]} accts=${2:?ks_slurm_add_user USER ACCOUNT[,ACCOUNT...]} a i
    if ! id "$u" >/dev/null 2>&1; then
        # Tests running in parallel may hold the passwd lock for a moment.
        for ((i = 0; i < 20; i++)); do
            useradd -M -s /bin/sh "$u" >/dev/null 2>&1 && break
            id "$u" >/dev/null 2>&1 && break
            sleep 0.25
        done
        id "$u" >/dev/null 2>&1 || { echo "ks_slurm_add_user: useradd $u failed" >&2; return 1; }
    fi
    ks_slurm_sacctmgr_add user "$u" account="$accts" defaultaccount="${accts%%,*}" cluster="$KS_SLURM_CLUSTER" || return 1
    for a in ${accts//,/ }; do
        ks_wait_for 20 ks_slurm_assoc_known "$a" "$u" || { echo "ks_slurm_add_user: slurmctld does not know $u in $a" >&2; return 1; }
    done
}

# ks_slurm_wait_jobs_done [TIMEOUT]: until squeue lists no job (default 60 s).
ks_slurm_wait_jobs_done() {
    ks_wait_for "${1:-60}" ks_slurm_queue_empty
}
ks_slurm_queue_empty() {
    local out
    out=$(squeue -h -o %A 2>/dev/null) || return 1
    [ -z "$out" ]
}

# ks_slurm_final_state STATE: whether STATE (as sacct prints it) is final.
ks_slurm_final_state() {
    case $1 in
    COMPLETED | FAILED | CANCELLED* | TIMEOUT | OUT_OF_ME* | NODE_FAIL | PREEMPTED | BOOT_FAIL | DEADLINE) return 0 ;;
    esac
    return 1
}

# ks_slurm_ctld_records JOBID: how many records slurmctld has for the job (one per array task
# split off, plus the pending rest); 0 when it does not know the job (any more). Fails while one
# of them is not in a final state.
ks_slurm_ctld_records() {
    local out line st n=0
    out=$(scontrol -o show job "$1" 2>&1) || { echo 0; return 0; }
    while read -r line; do
        case $line in *JobState=*) ;; *) continue ;; esac
        st=${line#*JobState=}
        ks_slurm_final_state "${st%% *}" || return 1
        n=$((n + 1))
    done <<<"$out"
    echo "$n"
}

# ks_slurm_sacct_final JOBID: prints "JOBID STATE" lines when sacct -X has the job in a final
# state: for an array job every task, at least as many as slurmctld has records for (tasks
# reach slurmdbd in any order). Fails otherwise.
ks_slurm_sacct_final() {
    local out id state n=0 want
    want=$(ks_slurm_ctld_records "$1") || return 1
    out=$(sacct -X -n -P -j "$1" -o JobID,State 2>/dev/null) || return 1
    while IFS='|' read -r id state; do
        [ -n "$id" ] || continue
        ks_slurm_final_state "$state" || return 1
        n=$((n + 1))
    done <<<"$out"
    [ "$n" -gt 0 ] && [ "$n" -ge "$want" ] || return 1
    printf '%s\n' "$out" | tr '|' ' '
}

# ks_slurm_wait_in_sacct JOBID [TIMEOUT]: until sacct -X -n -j JOBID shows a final state (for an
# array job: every task); prints "JOBID STATE" lines. Default 60 s.
ks_slurm_wait_in_sacct() {
    local id=${1:?ks_slurm_wait_in_sacct JOBID [TIMEOUT]} i
    for ((i = 0; i < ${2:-60} * 4; i++)); do
        ks_slurm_sacct_final "$id" && return 0
        sleep 0.25
    done
    echo "ks_slurm_wait_in_sacct: job $id not in a final state in sacct after ${2:-60} s:" \
        "$(sacct -X -n -P -j "$id" -o JobID,State 2>&1 | tr '\n' ' ')" >&2
    return 1
}
