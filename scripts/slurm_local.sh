#!/usr/bin/env bash
# A real SLURM cluster (slurmctld + slurmd + slurmdbd accounting) on loopback, for the
# project's CI tests and for trying SLURM sweeps on one machine: one node by default, or
# SLURM_LOCAL_NODES=2 (up to 8) nodes, each its own slurmd.
#
# Usage (as root, Debian 12):
#   scripts/slurm_local.sh start    install missing packages, start everything, wait until usable
#                                   (an earlier run's leftover jobs are cancelled, its nodes resumed)
#   scripts/slurm_local.sh stop     cancel jobs, stop the daemons this script started
#   scripts/slurm_local.sh status   show what runs; exit 1 when the cluster is not (fully) up
#   scripts/slurm_local.sh env      print `export SLURM_CONF=...` (use: eval "$(... env)")
#   scripts/slurm_local.sh purge    stop, then delete the state directory (job ids restart)
#
# All state (configs, munge key and socket, MariaDB data, spool, logs, pid files) lives in
# SLURM_LOCAL_DIR (default /tmp/srlane-slurm). /etc/slurm and system services are never
# touched; clients find the cluster through SLURM_CONF. Every daemon listens on 127.0.0.1
# only, on non-default ports (SLURM_LOCAL_PORT_BASE, default 16817, and the next 3 ports),
# so it cannot clash with a system SLURM or MariaDB.
#
# Several nodes (SLURM_LOCAL_NODES=N at start; stop and status read N from the state
# directory): node k is srlane-node<k>, a slurmd started with `-N srlane-node<k>` in its own UTS
# namespace (its host name is srlane-node<k>, also for its jobs), with its own port
# (PORT_BASE+1 for node 1, PORT_BASE+2+k for node k > 1) and its own pid, log and spool files.
# All listen on 127.0.0.1, and the node names must resolve to it: PyTorch's rendezvous connects
# to the first node of SLURM_NODELIST, and srun, which binds to the address of its host name,
# must be reached at the address its connections come from (127.0.0.1 on loopback). So start
# adds `127.0.0.1 srlane-node<k>` lines, tagged with the state directory, to /etc/hosts, and
# stop removes exactly those lines. Every node has the whole machine's CPUs and memory.
#
# Exit codes: 0 ok, 1 failure, 2 usage, 3 not root, 4 packages missing and apt could not
# fetch them (no network / repositories unreachable).
set -euo pipefail

readonly STATE_DIR="${SLURM_LOCAL_DIR:-/tmp/srlane-slurm}"
readonly PORT_BASE="${SLURM_LOCAL_PORT_BASE:-16817}"
readonly CTLD_PORT=$((PORT_BASE))
readonly SLURMD_PORT=$((PORT_BASE + 1))
readonly DBD_PORT=$((PORT_BASE + 2))
readonly DB_PORT=$((PORT_BASE + 3))
readonly CLUSTER=srlane
readonly PARTITION=local
readonly NODE=localhost
readonly ADDR=127.0.0.1
readonly MAX_NODES=8
readonly NODES_FILE="$STATE_DIR/nodes"
readonly HOSTS_FILE=/etc/hosts
readonly HOSTS_TAG="# slurm_local.sh $STATE_DIR"

readonly MARKER="$STATE_DIR/.srlane-slurm-local"
readonly SLURM_CONF_FILE="$STATE_DIR/slurm.conf"
readonly DBD_CONF_FILE="$STATE_DIR/slurmdbd.conf"
readonly MY_CNF="$STATE_DIR/my.cnf"
readonly RUN_DIR="$STATE_DIR/run"
readonly LOG_DIR="$STATE_DIR/log"
readonly MUNGE_KEY_DIR="$STATE_DIR/munge"
readonly MUNGE_KEY="$MUNGE_KEY_DIR/munge.key"
readonly MUNGE_SOCKET="$RUN_DIR/munge.socket"
readonly DB_DATA="$STATE_DIR/mysql"
readonly DB_SOCKET="$RUN_DIR/mariadb.sock"

# Packages and the binaries that prove they are installed.
readonly PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server-core
                   mariadb-client-core)
readonly BINARIES=(slurmctld slurmd sbatch sacct sacctmgr munged slurmdbd mariadbd
                   mariadb-install-db mariadb)

# Node count: start takes SLURM_LOCAL_NODES (default 1); the other commands act on the cluster
# as it was started (the count saved in the state directory).
if [[ ${1:-} == start || ! -s $NODES_FILE ]]; then
    NODES=${SLURM_LOCAL_NODES:-1}
else
    NODES=$(tr -dc '0-9' <"$NODES_FILE")
fi
if [[ ! $NODES =~ ^[1-9]$ ]] || ((NODES > MAX_NODES)); then
    printf 'slurm_local: error: SLURM_LOCAL_NODES=%s: use 1 to %s\n' "$NODES" "$MAX_NODES" >&2
    exit 2
fi
readonly NODES

# Node names and slurmd ports: one node is `localhost` on SLURMD_PORT (as before); with
# several, node k is srlane-node<k> on SLURMD_PORT for k = 1, else PORT_BASE + 2 + k.
NODE_NAMES=()
NODE_PORTS=()
if ((NODES == 1)); then
    NODE_NAMES=("$NODE")
    NODE_PORTS=("$SLURMD_PORT")
else
    for ((k = 1; k <= NODES; k++)); do
        NODE_NAMES+=("srlane-node$k")
        NODE_PORTS+=($((k == 1 ? SLURMD_PORT : PORT_BASE + 2 + k)))
    done
fi
readonly NODE_NAMES NODE_PORTS

# Daemons in start order; stop goes in reverse. With several nodes, slurmd-<node> is the slurmd
# of that node (its pid file is run/slurmd-<node>.pid).
DAEMONS=(munged mariadbd slurmdbd slurmctld)
if ((NODES == 1)); then
    DAEMONS+=(slurmd)
else
    for name in "${NODE_NAMES[@]}"; do DAEMONS+=("slurmd-$name"); done
fi
readonly DAEMONS

log() { printf 'slurm_local: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '5,10p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

require_root() {
    if [[ $(id -u) -ne 0 ]]; then
        log "error: must run as root (it runs slurmd/slurmctld as root and may apt-get install)"
        exit 3
    fi
}

# ---------------------------------------------------------------------------------------
# Packages
# ---------------------------------------------------------------------------------------
missing_binaries() {
    local b
    for b in "${BINARIES[@]}"; do
        command -v "$b" >/dev/null 2>&1 || [[ -x /usr/sbin/$b ]] || printf '%s ' "$b"
    done
}

# apt output that means the repositories could not be reached (not a dpkg problem).
is_fetch_failure() {
    grep -qE 'Failed to fetch|Temporary failure resolving|Could not resolve|Unable to connect|Unable to locate package|has no installation candidate|Network is unreachable|Connection timed out' "$1"
}

install_packages() {
    local missing
    missing=$(missing_binaries)
    [[ -z $missing ]] && return 0
    command -v apt-get >/dev/null \
        || die "missing $missing and no apt-get: install ${PACKAGES[*]} (Debian 12 names)"
    log "installing ${PACKAGES[*]} (missing: $missing)"

    # Keep package maintainer scripts from starting system munge/slurm/mariadb services; this
    # image has no systemd and we run our own daemons. Only remove the file if we created it.
    local created_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# temporary, from scripts/slurm_local.sh\nexit 101\n' \
            >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
        # Remove it even if apt is interrupted.
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
        trap 'exit 130' INT TERM
    fi

    local out rc=0
    out=$(mktemp)
    local apt_install=(apt-get install --no-install-recommends -o DPkg::Lock::Timeout=600 -y
                       "${PACKAGES[@]}")
    export DEBIAN_FRONTEND=noninteractive
    # apt-get update only when the package lists lack a candidate (fresh image), or when the
    # install fails to fetch (stale lists); each at most once.
    if apt-cache policy "${PACKAGES[@]}" 2>/dev/null | grep -q 'Candidate: (none)' \
        || [[ $(apt-cache policy "${PACKAGES[@]}" 2>/dev/null | grep -c 'Candidate:') \
              -lt ${#PACKAGES[@]} ]]; then
        apt-get update -o DPkg::Lock::Timeout=600 >"$out" 2>&1 || rc=$?
    fi
    if [[ $rc -eq 0 ]]; then
        "${apt_install[@]}" >"$out" 2>&1 || rc=$?
        if [[ $rc -ne 0 ]] && is_fetch_failure "$out"; then
            rc=0
            apt-get update -o DPkg::Lock::Timeout=600 >"$out" 2>&1 || rc=$?
            [[ $rc -eq 0 ]] && { "${apt_install[@]}" >"$out" 2>&1 || rc=$?; }
        fi
    fi

    if [[ $created_policy -eq 1 ]]; then
        rm -f /usr/sbin/policy-rc.d
        trap - EXIT INT TERM
    fi
    if [[ $rc -ne 0 ]]; then
        tail -n 20 "$out" >&2
        if is_fetch_failure "$out"; then
            rm -f "$out"
            log "error: apt could not fetch the packages (repositories unreachable?)"
            exit 4
        fi
        rm -f "$out"
        die "apt-get failed (exit $rc); see the output above"
    fi
    rm -f "$out"
    missing=$(missing_binaries)
    [[ -z $missing ]] || die "still missing after apt-get install: $missing"
}

# ---------------------------------------------------------------------------------------
# Pid files: a pid counts as ours only if it is alive, has the expected command name and
# carries our state directory in its command line or environment (pid reuse is harmless).
# ---------------------------------------------------------------------------------------
pid_file() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }

daemon_pid() {
    local name=$1 file pid comm
    file=$(pid_file "$name")
    [[ -r $file ]] || return 1
    pid=$(tr -dc '0-9' <"$file")
    [[ -n $pid && -d /proc/$pid ]] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "${name%%-*}"* ]] || return 1  # slurmd-<node> is a slurmd
    if tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$STATE_DIR" \
        || tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "SLURM_LOCAL_DIR=$STATE_DIR" \
        || { [[ $(id -u) -ne 0 ]] && [[ ! -r /proc/$pid/environ ]]; }; then
        # (the last case: `status` as non-root cannot read root's environ; name match only)
        printf '%s' "$pid"
        return 0
    fi
    return 1
}

daemon_log() {
    case $1 in
        mariadbd) printf '%s/mariadb.log' "$LOG_DIR" ;;
        # slurmd-<node>.log: SlurmdLogFile=slurmd-%n.log with several nodes
        *) printf '%s/%s.log' "$LOG_DIR" "$1" ;;
    esac
}

# Fail with the tail of the daemon's log.
daemon_failed() {
    local name=$1 what=$2 logfile
    logfile=$(daemon_log "$name")
    log "error: $name $what; last lines of $logfile:"
    tail -n 25 "$logfile" >&2 2>/dev/null || true
    exit 1
}

# wait_for NAME TIMEOUT_S COMMAND...: poll COMMAND every 0.1 s until it succeeds; fail if the
# daemon dies or the time runs out.
wait_for() {
    local name=$1 timeout=$2
    shift 2
    local start=$SECONDS deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        # Daemons write their pid file shortly after forking: allow a few seconds for it.
        if ! daemon_pid "$name" >/dev/null \
            && { [[ -s $(pid_file "$name") ]] || ((SECONDS - start > 10)); }; then
            # Look again: a pid file read while the daemon writes it holds a partial pid
            # (seen once: slurmctld taken for dead 1 s after its start).
            sleep 0.5
            daemon_pid "$name" >/dev/null || daemon_failed "$name" "exited during start-up"
        fi
        ((SECONDS < deadline)) || daemon_failed "$name" "not ready after ${timeout}s"
        sleep 0.1
    done
}

# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------
check_loopback() {
    # With NoInAddrAny/NoCtldInAddrAny, slurmctld and slurmdbd bind to the address the host
    # name resolves to; refuse to start unless that is loopback.
    local host addrs a
    host=$(hostname -s)
    addrs=$(getent ahostsv4 "$host" | awk '{print $1}' | sort -u) || true
    [[ -n $addrs ]] || die "host name '$host' does not resolve; add '127.0.1.1 $host' to /etc/hosts"
    for a in $addrs; do
        [[ $a == 127.* ]] || die "host name '$host' resolves to $a, not 127.x: the daemons would \
listen there. Map '$host' to a 127.x address in /etc/hosts to use this script"
    done
}

check_ports_free() {
    local port
    # A successful connect means something already listens there.
    for port in "$CTLD_PORT" "$DBD_PORT" "$DB_PORT" "${NODE_PORTS[@]}"; do
        if (exec 3<>"/dev/tcp/$ADDR/$port") 2>/dev/null; then
            die "port $port on $ADDR is in use (another cluster?); set SLURM_LOCAL_PORT_BASE"
        fi
    done
}

# ---------------------------------------------------------------------------------------
# Node names in /etc/hosts (several nodes only): jobs must resolve the names in
# SLURM_NODELIST. Our lines end with HOSTS_TAG; the file is rewritten in place (it may be a
# bind mount, which a rename would fail on).
# ---------------------------------------------------------------------------------------
hosts_lines() {
    local name
    ((NODES > 1)) || return 0
    for name in "${NODE_NAMES[@]}"; do
        printf '%s %s %s\n' "$ADDR" "$name" "$HOSTS_TAG"
    done
}

add_hosts_entries() {
    local name addr found
    ((NODES > 1)) || return 0
    for name in "${NODE_NAMES[@]}"; do
        # Refuse a name that already means another address: the jobs would connect there.
        found=$(getent ahostsv4 "$name" | awk '{print $1}' | sort -u) || true
        for addr in $found; do
            [[ $addr == "$ADDR" ]] \
                || die "$name already resolves to $addr (not $ADDR): remove it from $HOSTS_FILE first"
        done
    done
    remove_hosts_entries  # a stale copy of our lines (killed before stop)
    hosts_lines >>"$HOSTS_FILE"
}

remove_hosts_entries() {
    local kept
    [[ -n $(hosts_lines) ]] && grep -qF "$HOSTS_TAG" "$HOSTS_FILE" 2>/dev/null || return 0
    kept=$(grep -vxF -f <(hosts_lines) "$HOSTS_FILE" || true)
    printf '%s\n' "$kept" >"$HOSTS_FILE"
}

make_dirs() {
    # Root runs daemons from configs in this directory: refuse one that someone else could
    # have planted (e.g. in /tmp) or can write to.
    if [[ -L $STATE_DIR ]] || { [[ -e $STATE_DIR ]] \
        && [[ $(stat -c '%u' "$STATE_DIR") -ne 0 || $(stat -c '%A' "$STATE_DIR") == ?????w* \
              || $(stat -c '%A' "$STATE_DIR") == ????????w* ]]; }; then
        die "$STATE_DIR is a symlink, not owned by root or writable by others: remove it first"
    fi
    mkdir -p "$STATE_DIR"
    # munged needs every directory above its socket to be searchable by all.
    chmod 755 "$STATE_DIR"
    touch "$MARKER"
    mkdir -p "$RUN_DIR" "$LOG_DIR" "$STATE_DIR/ctld" "$STATE_DIR/spool" "$MUNGE_KEY_DIR"
    chmod 755 "$RUN_DIR" "$LOG_DIR"
    chmod 700 "$STATE_DIR/ctld" "$STATE_DIR/spool"
    chmod 711 "$MUNGE_KEY_DIR"
    if [[ ! -s $MUNGE_KEY ]]; then
        (umask 077 && head -c 1024 /dev/urandom >"$MUNGE_KEY")
    fi
    chmod 600 "$MUNGE_KEY"
    if [[ ! -s $STATE_DIR/dbpass ]]; then
        (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$STATE_DIR/dbpass")
    fi
    # A fresh state directory starts job ids at a time-derived value, so ids are not reused
    # across wiped clusters (a reused submitit/Hydra folder would hand back an old result).
    if [[ ! -s $STATE_DIR/first_job_id ]]; then
        echo $((1000 + $(date +%s) % 50000000)) >"$STATE_DIR/first_job_id"
    fi
}

# Per-node paths: slurmd substitutes %n with its node name (several nodes only; one node keeps
# the single-node paths).
slurmd_path() {
    if ((NODES == 1)); then printf '%s' "$1"; else printf '%s' "$2"; fi
}

# One NodeName line per node, each with the whole machine's hardware (and, with several
# nodes, its own port).
node_lines() {
    local node_hw=$1 k port=""
    for k in "${!NODE_NAMES[@]}"; do
        ((NODES == 1)) || port=" Port=${NODE_PORTS[$k]}"
        sed -e "s/^NodeName=[^ ]*/NodeName=${NODE_NAMES[$k]} NodeAddr=$ADDR$port/" \
            <<<"$node_hw State=UNKNOWN"
    done
}

write_configs() {
    local host node_hw cpus real_mem mem dbpass first_id
    host=$(hostname -s)
    dbpass=$(cat "$STATE_DIR/dbpass")
    first_id=$(cat "$STATE_DIR/first_job_id")

    # Node line from the hardware slurmd sees; configure memory a bit below the real amount
    # (a node reporting less than configured would be drained).
    node_hw=$(env -u SLURM_CONF slurmd -C | head -n 1)
    cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node_hw")
    real_mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node_hw")
    [[ -n $cpus && -n $real_mem ]] || die "cannot parse 'slurmd -C' output: $node_hw"
    mem=$((real_mem * 95 / 100))
    node_hw=$(sed -e "s/RealMemory=[0-9]*/RealMemory=$mem/" <<<"$node_hw")
    local node_list
    node_list=$(IFS=,; printf '%s' "${NODE_NAMES[*]}")

    cat >"$SLURM_CONF_FILE" <<EOF
# Generated by scripts/slurm_local.sh; rewritten at every start.
ClusterName=$CLUSTER
SlurmctldHost=$host($ADDR)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
# Bind to the (loopback) address of the host, never to 0.0.0.0.
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire also delays the restart of a requeued job (default 120 s).
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
CredType=cred/munge

StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$(slurmd_path "$STATE_DIR/spool" "$STATE_DIR/spool/%n")
SlurmctldPidFile=$(pid_file slurmctld)
SlurmdPidFile=$(slurmd_path "$(pid_file slurmd)" "$(pid_file slurmd-%n)")
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$(slurmd_path "$LOG_DIR/slurmd.log" "$LOG_DIR/slurmd-%n.log")
SlurmctldDebug=info
SlurmdDebug=info
FirstJobId=$first_id

# No cgroups needed: plain /proc process tracking, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Memory per CPU = node memory / CPUs, so jobs asking for 1 CPU can share the node.
DefMemPerCPU=$((mem / cpus))
SchedulerType=sched/backfill
# Schedule batch jobs at submit time (default: up to 3 s later), and look at all pending
# jobs every 2 s (default 60 s): that pass starts a requeued job once it is eligible again.
SchedulerParameters=batch_sched_delay=0,sched_interval=2
ReturnToService=2
MailProg=/bin/true
# Requeue (submitit preemption / timeout) and short kill delays so tests are quick.
JobRequeue=1
KillWait=5
MinJobAge=300
InactiveLimit=0
SlurmctldTimeout=60
SlurmdTimeout=60

# Accounting through slurmdbd (sacct; submitit polls job states with it). With a
# non-default munge socket, AccountingStoragePass names that socket.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$ADDR
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCKET
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none

$(node_lines "$node_hw")
PartitionName=$PARTITION Nodes=$node_list Default=YES MaxTime=INFINITE State=UP
EOF

    # slurmdbd reads slurmdbd.conf next to SLURM_CONF; it holds a password, so mode 600.
    (umask 077 && cat >"$DBD_CONF_FILE" <<EOF
# Generated by scripts/slurm_local.sh; rewritten at every start.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=$host
DbdAddr=$ADDR
DbdPort=$DBD_PORT
CommunicationParameters=NoInAddrAny
SlurmUser=root
LogFile=$LOG_DIR/slurmdbd.log
PidFile=$(pid_file slurmdbd)
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=$ADDR
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$dbpass
StorageLoc=slurm_acct_db
EOF
    )
    chmod 600 "$DBD_CONF_FILE"

    # MariaDB reads only this file (--defaults-file): private data dir, socket and port.
    cat >"$MY_CNF" <<EOF
# Generated by scripts/slurm_local.sh; rewritten at every start.
[mariadbd]
user=root
datadir=$DB_DATA
socket=$DB_SOCKET
port=$DB_PORT
bind-address=$ADDR
skip-name-resolve
pid-file=$(pid_file mariadbd)
log-error=$(daemon_log mariadbd)
tmpdir=$RUN_DIR
# slurmdbd asks for a larger log file and lock wait; it still logs that the buffer pool is
# small for a production cluster (harmless here).
innodb_buffer_pool_size=128M
innodb_log_file_size=64M
innodb_lock_wait_timeout=900
# Faster start and stop: no buffer pool dump/load.
innodb_buffer_pool_dump_at_shutdown=0
innodb_buffer_pool_load_at_startup=0
skip-log-bin
[client]
socket=$DB_SOCKET
user=root
EOF
    chmod 644 "$MY_CNF"
}

# ---------------------------------------------------------------------------------------
# Daemons
# ---------------------------------------------------------------------------------------
slurm_env() { env SLURM_CONF="$SLURM_CONF_FILE" SLURM_LOCAL_DIR="$STATE_DIR" "$@"; }

munge_works() { munge -S "$MUNGE_SOCKET" -n | unmunge -S "$MUNGE_SOCKET"; }
# SQL on stdin, not in argv: the password must not show up in the process list.
db_sql() { mariadb --defaults-file="$MY_CNF" -N -B <<<"$1"; }

start_munged() {
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    SLURM_LOCAL_DIR="$STATE_DIR" munged --socket="$MUNGE_SOCKET" --key-file="$MUNGE_KEY" \
        --pid-file="$(pid_file munged)" --log-file="$(daemon_log munged)" \
        --seed-file="$MUNGE_KEY_DIR/munged.seed" --num-threads=2 \
        || daemon_failed munged "failed to start"
    wait_for munged 10 munge_works
}

start_mariadbd() {
    if [[ ! -d $DB_DATA/mysql ]]; then
        rm -rf "$DB_DATA"
        mariadb-install-db --defaults-file="$MY_CNF" --auth-root-authentication-method=socket \
            --skip-test-db >"$LOG_DIR/mariadb-install.log" 2>&1 \
            || { tail -n 25 "$LOG_DIR/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
    fi
    # mariadbd does not daemonize: detach it into its own session, output to its log.
    SLURM_LOCAL_DIR="$STATE_DIR" setsid mariadbd --defaults-file="$MY_CNF" \
        >>"$(daemon_log mariadbd)" 2>&1 </dev/null &
    wait_for mariadbd 30 db_sql 'SELECT 1'
    # (Re)create the accounting user with the current password; CREATE USER IF NOT EXISTS
    # alone would keep an old one.
    local pass
    pass=$(cat "$STATE_DIR/dbpass")
    db_sql "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
            CREATE USER IF NOT EXISTS 'slurm'@'$ADDR' IDENTIFIED BY '$pass';
            ALTER USER 'slurm'@'$ADDR' IDENTIFIED BY '$pass';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'$ADDR';" \
        || daemon_failed mariadbd "rejected the accounting user setup"
}

start_slurmdbd() {
    slurm_env slurmdbd || daemon_failed slurmdbd "failed to start"
    wait_for slurmdbd 30 slurm_env sacctmgr -n -P list cluster
    # Register the cluster (this also creates the root account and user association).
    if ! slurm_env sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        slurm_env sacctmgr -i add cluster "$CLUSTER" >/dev/null \
            || die "sacctmgr could not add cluster $CLUSTER"
    fi
}

# A node is usable when idle or running jobs. What an earlier run left (see clear_leftovers) is
# cleared once the node's slurmd has registered (SLURM refuses to resume a node whose state is
# still unknown): a drained or down node is resumed; a node still completing jobs that the new
# slurmd never ran (seen: a job the controller's death interrupted) is set down, which ends them.
node_usable() {
    case $(slurm_env sinfo -h -n "$1" -o '%t') in
        idle | mix | alloc) return 0 ;;
        drain | drng | down) slurm_env scontrol update NodeName="$1" State=RESUME ;;
        comp) slurm_env scontrol update NodeName="$1" State=DOWN Reason="jobs of an earlier run" ;;
    esac
    return 1
}

start_slurmctld() {
    slurm_env slurmctld -f "$SLURM_CONF_FILE" || daemon_failed slurmctld "failed to start"
    wait_for slurmctld 30 slurm_env scontrol ping
    # scontrol ping succeeds only when the controller answers: check the output too.
    slurm_env scontrol ping | grep -q UP || daemon_failed slurmctld "does not answer ping"
}

# start_slurmd NODE DAEMON: the slurmd of one node, under its DAEMONS name. With several
# nodes, each slurmd runs in its own UTS namespace whose host name is the node's name, so its
# jobs see the node they run on (hostname, logs); the namespace ends with the last process in
# it. Where namespaces are not allowed, the nodes share this machine's host name.
start_slurmd() {
    local node=$1 name=$2
    local command=(slurmd -N "$node" -f "$SLURM_CONF_FILE")
    if ((NODES > 1)) && unshare --uts true 2>/dev/null; then
        # shellcheck disable=SC2016  # expanded by the inner shell
        command=(unshare --uts sh -c 'hostname "$0" && exec "$@"' "$node" "${command[@]}")
    fi
    slurm_env "${command[@]}" || daemon_failed "$name" "failed to start"
    wait_for "$name" 30 node_usable "$node"
}

start_slurmds() {
    local k
    for k in "${!NODE_NAMES[@]}"; do
        mkdir -p "$STATE_DIR/spool/${NODE_NAMES[$k]}"
        start_slurmd "${NODE_NAMES[$k]}" "${DAEMONS[$((k + 4))]}"
    done
    wait_for slurmdbd 30 slurm_env sacct -n -X -a -S now-1minute
}

running_daemons() {
    local d
    for d in "${DAEMONS[@]}"; do
        daemon_pid "$d" >/dev/null && printf '%s ' "$d"
    done
    return 0
}

cmd_start() {
    require_root
    local running saved
    running=$(running_daemons)
    saved=$(tr -dc '0-9' 2>/dev/null <"$NODES_FILE" || true)
    if [[ -n $running && -n $saved && $saved != "$NODES" ]]; then
        die "$STATE_DIR runs a $saved-node cluster: '$0 stop' it first, or set another SLURM_LOCAL_DIR"
    fi
    if [[ ${running% } == "${DAEMONS[*]}" ]]; then
        log "already running in $STATE_DIR"
        cmd_env
        return 0
    fi
    if [[ -n $running ]]; then
        die "partially running (${running% } up): run '$0 stop' then '$0 start'"
    fi
    install_packages
    check_loopback
    check_ports_free
    make_dirs
    echo "$NODES" >"$NODES_FILE"
    write_configs
    # If a daemon fails to come up, stop the ones this run started: no half-started cluster.
    trap 'if [[ $? -ne 0 ]]; then log "start failed: stopping what it started"; stop_daemons; fi' EXIT
    add_hosts_entries
    local t0=$SECONDS d
    for d in "${DAEMONS[@]}"; do
        rm -f "$(pid_file "$d")"
    done
    for d in munged mariadbd slurmdbd slurmctld; do
        "start_$d"
    done
    clear_leftovers
    start_slurmds
    trap - EXIT
    log "cluster '$CLUSTER' up in $((SECONDS - t0))s: partition '$PARTITION' on $NODES \
node(s) (${NODE_NAMES[*]}), state $STATE_DIR"
    cmd_env
}

# Wait until PID (already sent SIGTERM) exits, up to TIMEOUT s; then SIGKILL it.
wait_exit() {
    local name=$1 pid=$2 timeout=$3 deadline
    deadline=$((SECONDS + timeout))
    while [[ -d /proc/$pid ]] && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if [[ -d /proc/$pid ]]; then
        log "$name (pid $pid) did not stop in ${timeout}s: killing it"
        kill -KILL "$pid" 2>/dev/null || true
        while [[ -d /proc/$pid ]]; do sleep 0.1; done
    fi
}

# Cancel jobs first: their slurmstepd processes would otherwise outlive slurmd. Waits up to
# $1 tenths of a second (default 150) for them to leave the queue.
cancel_jobs() {
    local jobs i wait=${1:-150}
    daemon_pid slurmctld >/dev/null || return 0
    # %i: array tasks as <array id>_<index> (scancel refused the plain id of a requeued, held
    # array task restored from saved state).
    jobs=$(slurm_env squeue -h -o '%i' 2>/dev/null || true)
    [[ -n $jobs ]] || return 0
    log "cancelling jobs: $(tr '\n' ' ' <<<"$jobs")"
    # shellcheck disable=SC2086  # one argument per job id
    slurm_env scancel $jobs 2>/dev/null || true
    for ((i = 0; i < wait; i++)); do
        [[ -z $(slurm_env squeue -h -o '%i' 2>/dev/null) ]] && break
        sleep 0.1
    done
}

# A state directory whose cluster was not stopped cleanly (killed, or its disk filled) still
# holds that run's jobs and node states: the controller would run the old jobs again and keep out
# of service a node it had drained (seen: "SlurmdSpoolDir is full" kept srlane-node1 drained, and
# the next start waited for it in vain). Start empty and usable: cancel the jobs here, resume the
# drained nodes once their slurmd is back (node_usable). Job ids go on from the saved state.
clear_leftovers() {
    local drained
    cancel_jobs 0  # no slurmd runs yet: they leave the queue once it is back (node_usable)
    drained=$(slurm_env sinfo -h -N -t drain -o '%N (%E)' | sort -u | paste -sd, -)
    [[ -z $drained ]] || log "resuming nodes an earlier run left drained: $drained"
}

stop_daemons() {
    # slurmctld flushes job records to slurmdbd, which needs MariaDB and munge: stop in
    # that order, daemons of one group in parallel.
    local group d pid pids
    for group in "${DAEMONS[*]:4} slurmctld" slurmdbd "mariadbd munged"; do
        pids=()
        for d in $group; do
            if pid=$(daemon_pid "$d"); then
                kill -TERM "$pid" 2>/dev/null || true
                pids+=("$d:$pid")
            fi
        done
        for d in "${pids[@]}"; do
            wait_exit "${d%%:*}" "${d#*:}" 30
            log "stopped ${d%%:*} (pid ${d#*:})"
        done
    done
    # Job steps left behind by slurmd (job cancel timed out) carry our environment.
    for pid in $(pgrep -x slurmstepd || true); do
        if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null \
            | grep -qxF "SLURM_LOCAL_DIR=$STATE_DIR"; then
            kill -TERM "$pid" 2>/dev/null || continue
            wait_exit slurmstepd "$pid" 5
            log "stopped leftover slurmstepd (pid $pid)"
        fi
    done
    rm -f "$MUNGE_SOCKET" "$DB_SOCKET"
    remove_hosts_entries
}

cmd_stop() {
    require_root
    if [[ -z $(running_daemons) ]]; then
        log "not running ($STATE_DIR)"
        remove_hosts_entries  # left behind by daemons killed without stop
        return 0
    fi
    cancel_jobs
    stop_daemons
}

cmd_status() {
    local d pid up=0
    for d in "${DAEMONS[@]}"; do
        if pid=$(daemon_pid "$d"); then
            printf '%-10s running (pid %s)\n' "$d" "$pid"
            up=$((up + 1))
        else
            printf '%-10s not running\n' "$d"
        fi
    done
    if [[ $up -ne ${#DAEMONS[@]} ]]; then
        echo "cluster not running ($STATE_DIR)"
        return 1
    fi
    slurm_env sinfo
    cmd_env
}

cmd_env() { printf 'export SLURM_CONF=%s\n' "$SLURM_CONF_FILE"; }

cmd_purge() {
    cmd_stop
    [[ -d $STATE_DIR ]] || return 0
    # Only delete a directory this script created.
    [[ -e $MARKER ]] || die "$STATE_DIR has no $(basename "$MARKER"): not deleting it"
    rm -rf -- "$STATE_DIR"
    log "removed $STATE_DIR"
}

main() {
    [[ $# -eq 1 ]] || usage
    case $1 in
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        env) cmd_env ;;
        purge) cmd_purge ;;
        *) usage ;;
    esac
}

main "$@"
