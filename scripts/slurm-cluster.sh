#!/usr/bin/env bash
# Run a real, single-node Slurm cluster entirely inside one directory, for tests and CI.
#
#   scripts/slurm-cluster.sh start DIR   # prints exactly one line on stdout: SLURM_CONF=DIR/slurm.conf
#   scripts/slurm-cluster.sh stop DIR    # stops the daemons that `start DIR` started; idempotent
#
# Typical use:
#   d=$(mktemp -d)
#   eval "export $(scripts/slurm-cluster.sh start "$d")"
#   sbatch --wait --array=0-3 --output="$d/out_%a.txt" --wrap 'echo $SLURM_ARRAY_TASK_ID'
#   scripts/slurm-cluster.sh stop "$d"
#
# What `start` does:
#   * installs Debian's slurm-wlm and munge with apt-get when slurmctld/slurmd/munged/sbatch are
#     missing (needs root; CI runs as root on Debian 12);
#   * writes a munge key, slurm.conf and an empty plugstack.conf under DIR; every state, spool, pid
#     and log file also lives under DIR -- nothing is written to /etc, /var or /run;
#   * starts munged, slurmctld and slurmd (as root, no systemd needed), each daemonising itself and
#     writing its pid file under DIR/run;
#   * waits until `sinfo` reports the node `idle`, then runs a no-op smoke job and waits until it
#     has COMPLETED (all within 60 s; typically ~3 s, see run_smoke_job for why).
#   On any failure it prints an `error:` line and the tail of the logs on stderr, stops whatever
#   it started and exits non-zero. Only the final SLURM_CONF=... line goes to stdout; all progress
#   goes to stderr. `start` on a DIR whose cluster is still running is an error (stop it first);
#   starting again in a DIR whose cluster was stopped reuses the munge key and starts afresh
#   (logs, job state and spool are wiped).
#
# What `stop` does: cancels any jobs still queued or running (so no job processes outlive the
# cluster), then sends SIGTERM to slurmd, slurmctld and munged -- each by the PID in its pid file
# under DIR, never by name -- and waits for each to exit (SIGKILL after 15 s). A PID is signalled
# only if it still belongs to that daemon started for DIR (checked via /proc), so stale pid files
# are harmless. Nothing running / no pid files / no DIR at all is fine.
#
# Every Slurm client command (sbatch, squeue, sinfo, scancel, ...) must see SLURM_CONF=DIR/slurm.conf
# in its environment; without it they look for /etc/slurm/slurm.conf and then fail on a DNS SRV
# lookup. Jobs inherit SLURM_CONF from sbatch.
#
# Ports: slurmctld listens on 16817 and slurmd on 16818 (the Slurm defaults are 6817/6818, so a
# system Slurm is never disturbed). Set SLURM_CLUSTER_PORT to choose another base (slurmctld gets
# the base, slurmd base+1). If either port is already listening (e.g. a second cluster from this
# script), the pair moves up by 2 until a free pair is found; the ports in use are in DIR/slurm.conf.
# The check-then-bind is not atomic, so two clusters started at the very same instant could race.
#
# Other knobs (environment): SLURM_CLUSTER_CPUS overrides the node's CPU count (default: the CPUs
# this process may use, as `nproc` reports them, ignoring OMP_NUM_THREADS);
# SLURM_CLUSTER_SMOKE_JOB=0 skips the smoke job (the smoke job is job id 1, so test jobs get 2, ...).
#
# Timing (Debian 12, Slurm 22.05.8): start ~3.2 s (node idle after ~0.2 s, the rest is the smoke
# job); a short `sbatch --wait` job ~2 s (sbatch polls after 2 s, then 10 s, 42 s, ...); stop
# ~0.2-0.5 s; apt-get install of slurm-wlm + munge ~12 s (~15 s with apt-get update).
#
# Layout of DIR:
#   slurm.conf, plugstack.conf        configuration
#   munge/munge.key, munge/munge.sock munge key and socket (munge/ must be mode 755 for munged)
#   state/                            slurmctld StateSaveLocation
#   spool/                            slurmd SlurmdSpoolDir
#   run/*.pid                         pid files of the three daemons (used by `stop`)
#   log/*.log, log/*.out              daemon logs; start-up output (stdout/stderr) of each daemon
#
# Harmless log noise: "can not load PMIx library", "Could not open ... state file" (fresh state
# directory), munged "Unauthorized credential for client UID=0".

set -euo pipefail

# Send everything to stderr by default; fd 3 is the real stdout, used only for the final line.
exec 3>&1 1>&2

# Files we create must not be group/world writable (munged refuses insecure key/log paths).
umask 022

readonly READY_TIMEOUT_S=60   # how long `start` waits for the node to become idle
readonly STOP_TIMEOUT_S=15    # how long `stop` waits after SIGTERM before sending SIGKILL
readonly PARTITION=local      # the single partition's name

usage() {
    echo "usage: $0 start DIR | stop DIR" >&2
    exit 2
}

note() { echo "slurm-cluster: $*" >&2; }

# Print an error line. (Callers decide whether to clean up and exit.)
error() { echo "error: slurm-cluster: $*" >&2; }

# ---------------------------------------------------------------------------------------------
# Paths under DIR. Set by set_paths once DIR is known (and made absolute).
# ---------------------------------------------------------------------------------------------
set_paths() {
    D=$1
    CONF=$D/slurm.conf
    PLUGSTACK=$D/plugstack.conf
    MUNGE_DIR=$D/munge
    MUNGE_KEY=$MUNGE_DIR/munge.key
    MUNGE_SOCK=$MUNGE_DIR/munge.sock
    MUNGE_SEED=$MUNGE_DIR/munged.seed
    STATE_DIR=$D/state
    SPOOL_DIR=$D/spool
    RUN_DIR=$D/run
    LOG_DIR=$D/log
    MUNGED_PID=$RUN_DIR/munged.pid
    SLURMCTLD_PID=$RUN_DIR/slurmctld.pid
    SLURMD_PID=$RUN_DIR/slurmd.pid
    MUNGED_LOG=$LOG_DIR/munged.log
    SLURMCTLD_LOG=$LOG_DIR/slurmctld.log
    SLURMD_LOG=$LOG_DIR/slurmd.log
    # Client commands we run ourselves (sinfo, squeue, scancel) need this.
    export SLURM_CONF=$CONF
}

# ---------------------------------------------------------------------------------------------
# Process helpers. A daemon counts as "ours" only if the PID in its pid file is alive, is not a
# zombie, has the expected command name and has this DIR's slurm.conf (slurmctld, slurmd) or
# munge socket (munged) on its command line. This way a stale pid file whose PID was reused by
# some other process -- or a system Slurm/munge -- is never signalled.
# ---------------------------------------------------------------------------------------------

# read_pid FILE: print the PID stored in FILE, or nothing if there is no usable one.
read_pid() {
    local pid=""
    if [[ -r $1 ]]; then
        read -r pid <"$1" || true
    fi
    if [[ $pid =~ ^[0-9]+$ ]] && ((pid > 1)); then
        echo "$pid"
    fi
}

# is_alive PID: true if PID exists and is not a zombie (a daemon re-parented to a PID 1 that
# does not reap children would otherwise look alive forever).
is_alive() {
    local state
    [[ -r /proc/$1/stat ]] || return 1
    # Field 3 of /proc/PID/stat is the state; the command name (field 2) may contain spaces, so
    # take what follows the last ')'.
    state=$(sed -e 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n $state && $state != Z && $state != X ]]
}

# is_ours PID NAME: PID is alive, runs program NAME and was started for this DIR.
is_ours() {
    local pid=$1 name=$2 comm cmdline needle
    is_alive "$pid" || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "$name" ]] || return 1
    # The arguments, space-separated, with a trailing space.
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    case $name in
        munged) needle="--socket=$MUNGE_SOCK " ;;
        *) needle="-f $CONF " ;;
    esac
    [[ $cmdline == *"$needle"* ]]
}

# running_pid PIDFILE NAME: print the PID if PIDFILE names a live daemon of ours.
running_pid() {
    local pid
    pid=$(read_pid "$1")
    if [[ -n $pid ]] && is_ours "$pid" "$2"; then
        echo "$pid"
    fi
}

# stop_daemon PIDFILE NAME: SIGTERM the daemon, wait up to STOP_TIMEOUT_S for it to exit, then
# SIGKILL it. Removes the pid file afterwards. Does nothing if the daemon is not running.
stop_daemon() {
    local pidfile=$1 name=$2 pid i
    pid=$(running_pid "$pidfile" "$name")
    if [[ -z $pid ]]; then
        rm -f "$pidfile"
        return 0
    fi
    note "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT_S * 10; i++)); do
        is_alive "$pid" || break
        sleep 0.1
    done
    if is_alive "$pid"; then
        note "$name (pid $pid) still running after ${STOP_TIMEOUT_S}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            is_alive "$pid" || break
            sleep 0.1
        done
        if is_alive "$pid"; then
            error "$name (pid $pid) survived SIGKILL"
            return 1
        fi
    fi
    rm -f "$pidfile"
}

# cancel_jobs: best effort -- cancel every job in the partition so that no job processes
# (which run under slurmstepd, not under slurmd) outlive the cluster. Only if slurmctld is up.
cancel_jobs() {
    local i
    [[ -n $(running_pid "$SLURMCTLD_PID" slurmctld) ]] || return 0
    [[ -n $(timeout 10 squeue -h -p "$PARTITION" -o %A 2>/dev/null) ]] || return 0
    note "cancelling remaining jobs"
    timeout 10 scancel -p "$PARTITION" 2>/dev/null || true
    # Wait (bounded) until nothing is running or completing any more.
    for ((i = 0; i < 100; i++)); do
        [[ -n $(timeout 10 squeue -h -p "$PARTITION" -t RUNNING,COMPLETING -o %A 2>/dev/null) ]] ||
            return 0
        sleep 0.1
    done
    note "jobs still running or completing after 10s; stopping anyway"
}

# stop_all: stop the three daemons, slurmd first (it talks to slurmctld), munged last (the Slurm
# daemons authenticate through it). Returns non-zero if any daemon could not be stopped.
stop_all() {
    local rc=0
    cancel_jobs || true
    stop_daemon "$SLURMD_PID" slurmd || rc=1
    stop_daemon "$SLURMCTLD_PID" slurmctld || rc=1
    stop_daemon "$MUNGED_PID" munged || rc=1
    return "$rc"
}

show_logs() {
    local f
    for f in "$LOG_DIR"/munged.out "$MUNGED_LOG" "$LOG_DIR"/slurmctld.out "$SLURMCTLD_LOG" \
        "$LOG_DIR"/slurmd.out "$SLURMD_LOG"; do
        if [[ -s $f ]]; then
            echo "----- last 25 lines of $f -----" >&2
            tail -n 25 "$f" >&2 || true
        fi
    done
}

# ---------------------------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------------------------

# Install slurm-wlm and munge with apt-get if any needed program is missing.
ensure_installed() {
    local prog missing=()
    for prog in slurmctld slurmd munged sbatch sinfo squeue scancel; do
        command -v "$prog" >/dev/null 2>&1 || missing+=("$prog")
    done
    ((${#missing[@]} == 0)) && return 0
    note "missing ${missing[*]}; installing slurm-wlm and munge with apt-get"
    if ((EUID != 0)); then
        error "installing slurm-wlm and munge needs root (missing: ${missing[*]})"
        return 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        error "apt-get not found; install slurm-wlm and munge by hand (missing: ${missing[*]})"
        return 1
    fi
    # On a fresh machine (no package lists yet) update first; otherwise try the install and
    # update only if it fails (lists may be stale).
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        apt-get update || { error "apt-get update failed"; return 1; }
    fi
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y slurm-wlm munge; then
        note "apt-get install failed; running apt-get update and retrying"
        apt-get update || { error "apt-get update failed"; return 1; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y slurm-wlm munge ||
            { error "apt-get install -y slurm-wlm munge failed"; return 1; }
    fi
    for prog in "${missing[@]}"; do
        command -v "$prog" >/dev/null 2>&1 ||
            { error "$prog still missing after installing slurm-wlm and munge"; return 1; }
    done
}

# port_listening PORT: true if some socket is listening on TCP PORT (IPv4 or IPv6, any address).
# Reads /proc/net/tcp* directly so that no extra tool (ss, netstat) is needed.
port_listening() {
    local hex
    hex=$(printf '%04X' "$1")
    # Column 2 is local_address as HEXADDR:HEXPORT, column 4 the state (0A = LISTEN).
    awk -v p=":$hex" 'NR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p { found = 1 }
                      END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# Choose CTLD_PORT/SLURMD_PORT: the base from SLURM_CLUSTER_PORT (default 16817) and base+1,
# moving up by 2 while either is taken.
choose_ports() {
    local base=${SLURM_CLUSTER_PORT:-16817} i
    if ! [[ $base =~ ^[0-9]+$ ]] || ((base < 1024 || base > 65000)); then
        error "SLURM_CLUSTER_PORT must be a number between 1024 and 65000 (got '$base')"
        return 1
    fi
    for ((i = 0; i < 100; i++)); do
        if ! port_listening "$base" && ! port_listening "$((base + 1))"; then
            CTLD_PORT=$base
            SLURMD_PORT=$((base + 1))
            return 0
        fi
        base=$((base + 2))
    done
    error "no free pair of TCP ports found starting at ${SLURM_CLUSTER_PORT:-16817}"
    return 1
}

write_slurm_conf() {
    local host=$1 cpus=$2
    cat >"$CONF" <<EOF
# Generated by scripts/slurm-cluster.sh: a one-node test cluster living entirely in
# $D
# Client commands need SLURM_CONF=$CONF in their environment.

# Name of the cluster (recorded in the state directory).
ClusterName=slurmtest
# The controller runs on this host; the address in parentheses is where everyone reaches it.
SlurmctldHost=$host(127.0.0.1)
# Non-default ports (Slurm's defaults are 6817/6818) so a system Slurm is never disturbed.
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
# Both daemons run as root (we are root in CI; no dedicated 'slurm' user is needed).
SlurmUser=root
SlurmdUser=root

# Authentication through our private munged, via its socket under DIR.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
CredType=cred/munge

# Everything the daemons write lives under DIR.
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=$SLURMCTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$SLURMCTLD_LOG
SlurmdLogFile=$SLURMD_LOG
SlurmctldDebug=info
SlurmdDebug=info
# Our own (empty) SPANK plugin stack instead of /etc/slurm/plugstack.conf.
PlugStackConfig=$PLUGSTACK
# Never send mail.
MailProg=/bin/true

# Track job processes by parent/child relationships and do no task binding. With
# proctrack/cgroup every job fails in many containers, the node drains, and 'sbatch --wait'
# still returns 0 -- so cgroups are deliberately not used (and no cgroup.conf is needed).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# No MPI integration (PMIx may log "can not load PMIx library"; harmless).
MpiDefault=none

# No accounting database, no job-completion log, no per-job resource sampling.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none

# Allocate individual cores, so several jobs/array tasks share the node.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Do not hold back the scheduling of batch jobs (default: up to 3 s). Pending jobs and array
# tasks then start on slurmctld's next 1-second tick instead of every ~3 s.
SchedulerParameters=batch_sched_delay=0
# Trust the node description below rather than the detected hardware: the node is never
# drained because, e.g., it has less memory than RealMemory says.
SlurmdParameters=config_overrides
# A node that was DOWN (e.g. unresponsive) becomes usable again as soon as it registers.
ReturnToService=2
# Declare a node/controller dead after 60 s without contact (defaults: 300 s / 120 s).
SlurmdTimeout=60
SlurmctldTimeout=60
# Seconds between SIGTERM and SIGKILL when a job is cancelled or times out (default 30).
KillWait=5

# The single node (this machine, reached over loopback) and the single default partition.
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=1000 State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

# Called when `start` fails after it may have started daemons: report, stop them, exit 1.
START_IN_PROGRESS=0
start_failed() {
    error "$*"
    show_logs
    note "stopping whatever was started"
    stop_all || true
    START_IN_PROGRESS=0
    exit 1
}

# Safety net: if `start` dies from an unexpected command failure (set -e), still clean up.
on_exit() {
    local rc=$?
    if ((rc != 0 && START_IN_PROGRESS)); then
        START_IN_PROGRESS=0
        error "start failed unexpectedly (exit status $rc)"
        show_logs
        stop_all || true
    fi
}

# launch PROGRAM ARGS...: start a self-daemonising program. Its stdin/stdout/stderr are detached
# from ours (start-up messages go to log/PROGRAM.out) and our fd 3 -- the real stdout -- is closed
# for it: a daemon that inherited any of them would keep the caller's pipe open, and
# `$(slurm-cluster.sh start DIR)` or `... 2>&1 | tee` would then never finish.
launch() {
    local name=$1
    "$@" </dev/null >>"$LOG_DIR/$name.out" 2>&1 3>&-
}

# wait_for_pidfile PIDFILE NAME SECONDS: wait until the daemon has written its pid file.
wait_for_pidfile() {
    local pidfile=$1 name=$2 secs=$3 i
    for ((i = 0; i < secs * 10; i++)); do
        [[ -n $(running_pid "$pidfile" "$name") ]] && return 0
        sleep 0.1
    done
    start_failed "$name did not start (no live process in $pidfile after ${secs}s)"
}

# run_smoke_job T0: submit a no-op job and wait until it has COMPLETED (deadline: T0 +
# READY_TIMEOUT_S). Fails the start if the job fails or does not finish in time.
run_smoke_job() {
    local t0=$1 id jobstate="" deadline_ns
    deadline_ns=$((t0 + READY_TIMEOUT_S * 1000000000))
    id=$(timeout 10 sbatch --parsable --job-name=slurm-cluster-smoke --chdir="$D" \
        --output=/dev/null --wrap true) || start_failed "could not submit the smoke job"
    id=${id%%;*}
    while (($(date +%s%N) < deadline_ns)); do
        # JobState=... from the one-line job record (completed jobs stay visible for MinJobAge,
        # 300 s by default).
        jobstate=$(timeout 5 scontrol show job -o "$id" 2>/dev/null |
            sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p') || jobstate=""
        case $jobstate in
            COMPLETED) return 0 ;;
            PENDING | CONFIGURING | RUNNING | COMPLETING | "") ;;
            *) start_failed "smoke job $id ended in state $jobstate (sinfo: $(sinfo -h -o '%t %E' 2>/dev/null))" ;;
        esac
        sleep 0.1
    done
    start_failed "smoke job $id did not complete within ${READY_TIMEOUT_S}s of start (state: '${jobstate:-unknown}')"
}

cmd_start() {
    local host cpus pid name state i t0 elapsed_ms

    ensure_installed || exit 1

    # Paths in slurm.conf must be absolute; resolve DIR once.
    mkdir -p "$1"
    set_paths "$(cd "$1" && pwd -P)"

    # A cluster already running in DIR is an error: the caller must `stop` it first.
    for name in munged slurmctld slurmd; do
        case $name in
            munged) pid=$(running_pid "$MUNGED_PID" munged) ;;
            slurmctld) pid=$(running_pid "$SLURMCTLD_PID" slurmctld) ;;
            slurmd) pid=$(running_pid "$SLURMD_PID" slurmd) ;;
        esac
        if [[ -n $pid ]]; then
            error "a cluster is already running in $D ($name pid $pid); run '$0 stop $D' first"
            exit 1
        fi
    done

    # Unix socket paths are limited to 108 bytes; slurmd also puts sockets in its spool dir.
    if ((${#MUNGE_SOCK} > 100 || ${#SPOOL_DIR} > 80)); then
        error "DIR path is too long for Unix sockets ($D); use a shorter one, e.g. from mktemp -d"
        exit 1
    fi

    host=$(hostname -s 2>/dev/null || hostname)
    if [[ -z $host ]]; then
        error "could not determine the host name (hostname -s)"
        exit 1
    fi
    if [[ -n ${SLURM_CLUSTER_CPUS:-} ]]; then
        cpus=$SLURM_CLUSTER_CPUS
    else
        # nproc honours OMP_NUM_THREADS/OMP_THREAD_LIMIT, which must not shrink the node.
        cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
    fi
    if ! [[ $cpus =~ ^[1-9][0-9]*$ ]]; then
        error "bad CPU count '$cpus' (SLURM_CLUSTER_CPUS must be a positive integer)"
        exit 1
    fi
    choose_ports || exit 1

    # Fresh directories (old logs, state and stale pid files/sockets from earlier runs removed).
    rm -rf "$STATE_DIR" "$SPOOL_DIR" "$RUN_DIR" "$LOG_DIR"
    rm -f "$MUNGE_SOCK" "$MUNGE_SOCK.lock"
    mkdir -p "$MUNGE_DIR" "$STATE_DIR" "$SPOOL_DIR" "$RUN_DIR" "$LOG_DIR"
    # munged refuses a socket directory that is not accessible to others ("Socket is
    # inaccessible"), so munge/ must be 755 (see --force below for the directories above it).
    chmod 755 "$MUNGE_DIR"
    chmod 700 "$STATE_DIR" "$SPOOL_DIR"
    : >"$PLUGSTACK"
    write_slurm_conf "$host" "$cpus"
    note "cluster in $D: node $host, $cpus CPUs, slurmctld port $CTLD_PORT, slurmd port $SLURMD_PORT"

    START_IN_PROGRESS=1
    trap on_exit EXIT
    # Interrupted (Ctrl-C, CI cancel)? Exit non-zero so that on_exit stops what was started.
    trap 'exit 130' INT
    trap 'exit 143' TERM

    # --- munge: a private key and daemon ---
    if [[ ! -s $MUNGE_KEY ]]; then
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile="$MUNGE_KEY" ||
                start_failed "mungekey --create failed"
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none ||
                start_failed "could not create $MUNGE_KEY"
        fi
    fi
    chmod 600 "$MUNGE_KEY"
    note "starting munged"
    # --force: munged insists that every directory above its socket be searchable by everyone
    # ("Socket is inaccessible: execute permissions for all required"), which a mktemp -d DIR
    # (mode 700) is not. --force turns that check into a log warning instead of changing the
    # caller's directory permissions. (It also lets munged take over a socket that another munged
    # holds -- the "already running" check above is what prevents that.)
    launch munged --force --socket="$MUNGE_SOCK" --key-file="$MUNGE_KEY" --pid-file="$MUNGED_PID" \
        --log-file="$MUNGED_LOG" --seed-file="$MUNGE_SEED" ||
        start_failed "munged failed to start"
    wait_for_pidfile "$MUNGED_PID" munged 10
    # A quick round trip proves the socket and key work before Slurm depends on them.
    munge -n -S "$MUNGE_SOCK" | unmunge -S "$MUNGE_SOCK" >/dev/null ||
        start_failed "munge round trip through $MUNGE_SOCK failed"

    # --- Slurm daemons (they daemonise themselves and write their pid files) ---
    t0=$(date +%s%N)
    note "starting slurmctld"
    # -c: start from clean state (no jobs or node states recovered from an earlier run).
    launch slurmctld -c -f "$CONF" || start_failed "slurmctld failed to start"
    wait_for_pidfile "$SLURMCTLD_PID" slurmctld 10
    note "starting slurmd"
    # -N: the node name, so it matches slurm.conf even if hostname resolution is odd.
    launch slurmd -c -N "$host" -f "$CONF" || start_failed "slurmd failed to start"
    wait_for_pidfile "$SLURMD_PID" slurmd 10

    # --- wait for the node to report idle ---
    state=""
    for ((i = 0; i < READY_TIMEOUT_S * 10; i++)); do
        state=$(timeout 5 sinfo -h -o %t 2>/dev/null | head -n 1) || state=""
        [[ $state == idle ]] && break
        [[ -n $(running_pid "$SLURMCTLD_PID" slurmctld) ]] || start_failed "slurmctld exited"
        [[ -n $(running_pid "$SLURMD_PID" slurmd) ]] || start_failed "slurmd exited"
        sleep 0.1
    done
    if [[ $state != idle ]]; then
        start_failed "node did not become idle within ${READY_TIMEOUT_S}s (sinfo state: '${state:-none}')"
    fi
    elapsed_ms=$((($(date +%s%N) - t0) / 1000000))
    note "node $host idle after ${elapsed_ms} ms"

    # --- smoke job: prove that a job really runs, end to end ---
    # This catches set-ups where the node looks idle but every job fails (the node then drains).
    # It also absorbs slurmctld's start-up delay: its scheduler first runs about 3 s after it
    # starts, and `sbatch --wait` polls only after 2 s and then 10 s, so without this the first
    # test job of every fresh cluster would take 10 s instead of 2 s.
    # Set SLURM_CLUSTER_SMOKE_JOB=0 to skip it (then the first job runs ~3 s after start).
    if [[ ${SLURM_CLUSTER_SMOKE_JOB:-1} != 0 ]]; then
        run_smoke_job "$t0"
        elapsed_ms=$((($(date +%s%N) - t0) / 1000000))
        note "smoke job done; cluster ready after ${elapsed_ms} ms"
    fi

    START_IN_PROGRESS=0
    echo "SLURM_CONF=$CONF" >&3
}

# ---------------------------------------------------------------------------------------------
# stop
# ---------------------------------------------------------------------------------------------
cmd_stop() {
    if [[ ! -d $1 ]]; then
        note "$1 does not exist; nothing to stop"
        return 0
    fi
    set_paths "$(cd "$1" && pwd -P)"
    if ! stop_all; then
        error "could not stop every daemon in $D"
        exit 1
    fi
    note "stopped"
}

(($# == 2)) || usage
[[ -n $2 ]] || usage
case $1 in
    start) cmd_start "$2" ;;
    stop) cmd_stop "$2" ;;
    *) usage ;;
esac
