#!/usr/bin/env bash
# Bring up the services the test suite needs: a single-node Slurm (munge + slurmctld + slurmd)
# on this host, so the submitit backend is tested against a real scheduler.
#
# Idempotent: rerunning it when Slurm is already up returns in well under a second. Run as
# root (it installs packages and starts daemons). Exits non-zero with one clear message when
# Slurm does not come up, so a broken CI image cannot pass the Slurm tests by skipping them.
#
# Environment knobs:
#   SLURM_WAIT_S   seconds to wait for the node to become idle (default 60)
#   SLURM_CONF     config path (default /etc/slurm/slurm.conf, Debian's location)
set -euo pipefail

WAIT_S="${SLURM_WAIT_S:-60}"
CONF="${SLURM_CONF:-/etc/slurm/slurm.conf}"
HOST="$(hostname -s)"
LOG_DIR=/var/log/slurm
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd

say() { echo "services-up: $*"; }
die() {
    echo "services-up: ERROR: $*" >&2
    for f in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log"; do
        if [[ -f "$f" ]]; then
            echo "--- last lines of $f ---" >&2
            tail -n 15 "$f" >&2 || true
        fi
    done
    exit 1
}

node_state() {
    # Prints e.g. "idle", "mix", "alloc", "down*", "drain", or nothing when sinfo fails.
    sinfo -h -N -n "$HOST" -o '%t' 2>/dev/null | head -n 1 || true
}

node_usable() {
    case "$(node_state)" in
        idle | mix | alloc | comp) return 0 ;;
        *) return 1 ;;
    esac
}

is_running() { pgrep -x "$1" >/dev/null 2>&1; }

if [[ "$(id -u)" -ne 0 ]]; then
    die "must run as root (installs slurm-wlm/munge and starts their daemons)"
fi

# --- slurm.conf -------------------------------------------------------------------------------
NEW_CONF="$(mktemp)"
trap 'rm -f "$NEW_CONF"' EXIT
render_conf() {
    local cpus mem_mb
    cpus="$(nproc)"
    # RealMemory must not exceed what slurmd detects or the node is drained as "Low RealMemory";
    # leave 10% headroom for the daemons.
    mem_mb="$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)"
    cat >"$NEW_CONF" <<EOF
# Single-node Slurm for tests and CI, written by .ci/services-up.sh.
ClusterName=ci
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=${STATE_DIR}
SlurmdSpoolDir=${SPOOL_DIR}
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# Short timeouts so a test that cancels or requeues a job does not wait on defaults meant
# for large clusters.
KillWait=5
MinJobAge=60
SchedulerParameters=batch_sched_delay=0
MaxArraySize=1001
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}
render_conf

# Fast path: everything is already up.
if command -v sinfo >/dev/null 2>&1 && is_running slurmctld && is_running slurmd \
    && cmp -s "$NEW_CONF" "$CONF" && node_usable; then
    say "Slurm already up: node $HOST is $(node_state)"
    exit 0
fi

# --- packages ---------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 \
    || ! command -v munged >/dev/null 2>&1 || ! command -v sbatch >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-cache show slurm-wlm >/dev/null 2>&1; then
        say "apt-get update"
        apt-get update -qq || die "apt-get update failed"
    fi
    say "installing slurm-wlm and munge"
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null \
        || die "apt-get install slurm-wlm munge failed"
fi

# --- munge ------------------------------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    say "creating munge key"
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! is_running munged; then
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged || die "munged failed to start"
fi
for _ in $(seq 1 50); do
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then break; fi
    sleep 0.1
done
munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || die "munge credential round trip failed"

install -d -m 0755 "$(dirname "$CONF")" "$LOG_DIR" "$STATE_DIR" "$SPOOL_DIR"
CONF_CHANGED=0
if [[ ! -f "$CONF" ]] || ! cmp -s "$NEW_CONF" "$CONF"; then
    install -m 0644 "$NEW_CONF" "$CONF"
    CONF_CHANGED=1
    say "wrote $CONF for node $HOST"
fi

# --- daemons ----------------------------------------------------------------------------------
if [[ "$CONF_CHANGED" -eq 1 ]] && is_running slurmctld; then
    say "config changed: restarting Slurm daemons"
    for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
        if [[ -s "$pidfile" ]]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
    done
    for _ in $(seq 1 50); do
        if ! is_running slurmctld && ! is_running slurmd; then break; fi
        sleep 0.1
    done
fi
if ! is_running slurmctld; then
    say "starting slurmctld"
    /usr/sbin/slurmctld -f "$CONF" || die "slurmctld failed to start"
fi
# slurmd registers with slurmctld at startup, so give the controller a moment to listen.
for _ in $(seq 1 50); do
    if scontrol ping 2>/dev/null | grep -q UP; then break; fi
    sleep 0.2
done
scontrol ping 2>/dev/null | grep -q UP || die "slurmctld does not answer 'scontrol ping'"
if ! is_running slurmd; then
    say "starting slurmd"
    /usr/sbin/slurmd -f "$CONF" || die "slurmd failed to start"
fi

# --- wait for the node ------------------------------------------------------------------------
deadline=$((SECONDS + WAIT_S))
resumed=0
while ((SECONDS < deadline)); do
    state="$(node_state)"
    case "$state" in
        idle | mix | alloc | comp)
            say "Slurm up: node $HOST is $state ($(sinfo -h -o '%P %a %l %D'))"
            exit 0
            ;;
        drain* | down* | drng*)
            # A node left drained/down by an earlier run (e.g. a daemon killed mid-job).
            if [[ "$resumed" -eq 0 ]]; then
                say "node $HOST is $state; resuming it"
                scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
                resumed=1
            fi
            ;;
    esac
    sleep 0.5
done
die "node $HOST did not become idle within ${WAIT_S}s (state: '$(node_state)'; reason: \
$(sinfo -h -N -n "$HOST" -o '%E' 2>/dev/null || true))"
