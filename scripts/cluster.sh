#!/usr/bin/env bash
# A kapso-ingest fleet on loopback: a pg_auto_failover monitor, two PostgreSQL nodes with
# synchronous replication, two kapso-ingest instances and HAProxy in front.
#   scripts/cluster.sh up              start whatever is not running (idempotent); the last two
#                                      lines are "front http://127.0.0.1:PORT" and
#                                      "database <libpq multi-host URL>"
#   scripts/cluster.sh status          one line per component: NAME PID ROLE
#   scripts/cluster.sh roll            replace the instances one at a time with $KAPSO_CLUSTER_BINARY:
#                                      withdraw (SIGUSR1), wait until HAProxy stops sending,
#                                      SIGTERM drain, start, wait until HAProxy sends again
#   scripts/cluster.sh down [--purge]  stop everything it started; --purge also deletes the data
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLUSTER_DIR="${KAPSO_CLUSTER_DIR:-$BUILD_DIR/cluster}"
case "$CLUSTER_DIR" in /*) ;; *) CLUSTER_DIR="$PWD/$CLUSTER_DIR" ;; esac
STATE_FILE="$CLUSTER_DIR/cluster.env"
RUN_DIR="$CLUSTER_DIR/run"
LOG_DIR="$CLUSTER_DIR/log"
# Everything PostgreSQL and pg_autoctl write lives here, owned by the postgres user as root.
PG_ROOT="$CLUSTER_DIR/pg"
INGEST_BINARY="${KAPSO_CLUSTER_BINARY:-$BINARY}"
PG_NODES=(pg-node-1 pg-node-2)
INGESTS=(ingest-1 ingest-2)
# Seconds a component gets to stop on SIGTERM before SIGKILL.
STOP_GRACE=20

usage() {
  sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  cat <<'EOF'

Environment (defaults in brackets; ports are chosen on the first `up` and kept in
$KAPSO_CLUSTER_DIR/cluster.env until `down --purge`):
  KAPSO_CLUSTER_DIR           data, logs and pid files [build/cluster]
  KAPSO_CLUSTER_PORT_BASE     first port of the block below [the first free block of 20 from
                              KAPSO_CLUSTER_PORT_FROM, 26100]
  KAPSO_CLUSTER_MONITOR_PORT  pg_auto_failover monitor [base]
  KAPSO_CLUSTER_PG_PORT_1/_2  PostgreSQL nodes [base+1, base+2]
  KAPSO_CLUSTER_FRONT_PORT    HAProxy front end [base+10]
  KAPSO_CLUSTER_INGEST_PORT_1/_2  kapso-ingest instances [base+11, base+12]
  KAPSO_CLUSTER_STATS_PORT    HAProxy stats page and Prometheus exporter [base+13]
  KAPSO_CLUSTER_INGEST_ARGS   extra options for both instances, e.g. --persistence.writers=1
  KAPSO_CLUSTER_BINARY        kapso-ingest to run [build/kapso-ingest, built when missing]
  KAPSO_WEBHOOK_SECRET        global webhook secret of the instances [demo-secret]
EOF
}

# --- ports and state --------------------------------------------------------------------

PORT_NAMES=(MONITOR_PORT PG_PORT_1 PG_PORT_2 FRONT_PORT INGEST_PORT_1 INGEST_PORT_2 STATS_PORT)
PORT_OFFSETS=(0 1 2 10 11 12 13)

# Sets the *_PORT variables: from cluster.env when the cluster exists, else from the
# environment and a base port (the first block of free ports when no base is given).
cluster_ports() {
  if [ -f "$STATE_FILE" ]; then
    # shellcheck disable=SC1090
    source "$STATE_FILE"
    return 0
  fi
  # The default block lies below the ephemeral range (32768-60999), where the monitor's and
  # the nodes' own client connections could take an instance's port before it binds it.
  local base="${KAPSO_CLUSTER_PORT_BASE:-${KAPSO_CLUSTER_PORT_FROM:-26100}}" tries=0 i name port busy
  while :; do
    busy=""
    for i in "${!PORT_NAMES[@]}"; do
      name="KAPSO_CLUSTER_${PORT_NAMES[$i]}"
      port="${!name:-$((base + PORT_OFFSETS[i]))}"
      printf -v "${PORT_NAMES[$i]}" '%s' "$port"
      if kapso_port_busy "$port"; then busy="$busy $port"; fi
    done
    [ -n "$busy" ] || return 0
    if [ -n "${KAPSO_CLUSTER_PORT_BASE:-}" ] || [ "$tries" -ge 20 ]; then
      kapso_die "ports in use:$busy (set KAPSO_CLUSTER_PORT_BASE or KAPSO_CLUSTER_*_PORT)"
    fi
    tries=$((tries + 1))
    base=$((base + 20))
  done
}

cluster_save_ports() {
  local name
  {
    echo "# Written by scripts/cluster.sh up; removed by scripts/cluster.sh down --purge."
    for name in "${PORT_NAMES[@]}"; do echo "$name=${!name}"; done
  } >"$STATE_FILE"
}

database_url() {
  printf 'postgresql://postgres@127.0.0.1:%s,127.0.0.1:%s/kapso?target_session_attrs=read-write\n' \
    "$PG_PORT_1" "$PG_PORT_2"
}

node_dir() { case "$1" in pg-node-1) echo "$PG_ROOT/node1" ;; pg-node-2) echo "$PG_ROOT/node2" ;; esac; }
node_port() { case "$1" in pg-node-1) echo "$PG_PORT_1" ;; pg-node-2) echo "$PG_PORT_2" ;; esac; }
ingest_port() { case "$1" in ingest-1) echo "$INGEST_PORT_1" ;; ingest-2) echo "$INGEST_PORT_2" ;; esac; }

# --- processes --------------------------------------------------------------------------

# The prefix that runs a command as the owner of the PostgreSQL nodes, with pg_autoctl's files
# (XDG config, state and pid files) kept under $PG_ROOT and local connections over TCP.
# setpriv and env exec, so a background start's $! is the command's own pid.
pg_exec_prefix() {
  PG_EXEC=()
  if kapso_is_root; then PG_EXEC=(setpriv --reuid=postgres --regid=postgres --init-groups); fi
  PG_EXEC+=(env PGHOST=127.0.0.1 XDG_CONFIG_HOME="$PG_ROOT/xdg/config"
            XDG_DATA_HOME="$PG_ROOT/xdg/data" XDG_RUNTIME_DIR="$PG_ROOT/xdg/run")
}
pg_exec_prefix

as_pg() { (cd / && exec "${PG_EXEC[@]}" "$@"); }

# Starts a command in its own session (so `down` can signal its whole process group) with
# output in $LOG_DIR/NAME.log, and records its pid in $RUN_DIR/NAME.pid.
start_detached() {
  local name="$1" dir="$2"
  shift 2
  (cd "$dir" && exec setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null) &
  echo $! >"$RUN_DIR/$name.pid"
}

# Prints the pid recorded for NAME if that process is alive and still ours (its command line
# mentions MARKER: a pid reused by another program is never signalled).
live_pid() {
  local file="$RUN_DIR/$1.pid" marker="$2" pid
  [ -f "$file" ] || return 1
  pid="$(cat "$file" 2>/dev/null || true)"
  pid_is "$pid" "$marker" && printf '%s\n' "$pid"
}

pid_is() {
  local pid="$1" marker="$2"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  case "$(grep -m1 '^State:' "/proc/$pid/status" 2>/dev/null || true)" in
    *Z*|*X*|"") return 1 ;;
  esac
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker"
}

# The postmaster of a data directory, if it runs.
postmaster_pid() {
  local pid
  pid="$(head -n1 "$1/postmaster.pid" 2>/dev/null || true)"
  pid_is "$pid" "$1" && printf '%s\n' "$pid"
}

node_marker() { echo "--pgdata $(node_dir "$1")"; }
monitor_marker() { echo "--pgdata $PG_ROOT/monitor"; }
ingest_marker() { echo "--spool.dir=$CLUSTER_DIR/$1/spool"; }
haproxy_marker() { echo "$CLUSTER_DIR/haproxy.cfg"; }

# SIGTERM to the process group of the recorded pid, SIGKILL after the grace period, then
# the same for a postmaster (and its backends) left behind in DATADIR, if given. SIGCONT
# follows SIGTERM so that a stopped (frozen) process acts on it.
stop_component() {
  local name="$1" marker="$2" datadir="${3:-}" pid pm
  if pid="$(live_pid "$name" "$marker")"; then
    kapso_log "stopping $name (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    kill -CONT -- "-$pid" 2>/dev/null || kill -CONT "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" "$marker" "$STOP_GRACE"; then
      kapso_log "$name did not stop within ${STOP_GRACE}s: SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  if [ -n "$datadir" ] && pm="$(postmaster_pid "$datadir")"; then
    kapso_log "stopping the postmaster left in $datadir (pid $pm)"
    local backends
    read -r -a backends <<<"$(ps -o pid= --ppid "$pm" 2>/dev/null | tr '\n' ' ')"
    kill -TERM "$pm" 2>/dev/null || true
    kill -CONT "$pm" "${backends[@]}" 2>/dev/null || true
    if ! wait_gone "$pm" "$datadir" 10; then
      kill -KILL "$pm" "${backends[@]}" 2>/dev/null || true
    fi
  fi
  rm -f "$RUN_DIR/$name.pid"
}

# Waits up to SECONDS for a process to be gone; fails if it is still there.
wait_gone() {
  local pid="$1" marker="$2" seconds="$3" waited=0
  while pid_is "$pid" "$marker"; do
    [ "$waited" -lt $((seconds * 10)) ] || return 1
    sleep 0.1
    waited=$((waited + 1))
  done
}

# --- readiness probes -------------------------------------------------------------------

psql_at() {
  local port="$1" db="$2"
  shift 2
  "$PG_BIN_DIR/psql" -X -q -At -h 127.0.0.1 -p "$port" -U postgres -d "$db" \
    -v ON_ERROR_STOP=1 "$@"
}

monitor_query() { psql_at "$MONITOR_PORT" pg_auto_failover -c "$1" 2>/dev/null; }

# Polls a command until it succeeds; fails after SECONDS.
wait_for() {
  local seconds="$1" what="$2" waited=0
  shift 2
  until "$@"; do
    waited=$((waited + 1))
    [ "$waited" -le $((seconds * 4)) ] || { kapso_log "timed out waiting for $what"; return 1; }
    sleep 0.25
  done
}

http_status() { curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1$2" || true; }
ready_200() { [ "$(http_status "$1" /readyz)" = 200 ]; }
monitor_ready() { [ "$(monitor_query 'SELECT count(*) FROM pgautofailover.formation')" -ge 1 ] 2>/dev/null; }

# One node reporting and assigned primary, the other secondary, and the primary (found
# through the multi-host URL) streaming to a synchronous standby: the monitor's view alone
# can be stale right after a restart.
formation_healthy() {
  local states sync
  states="$(monitor_query "SELECT string_agg(reportedstate || '/' || goalstate, ' '
                                             ORDER BY reportedstate) FROM pgautofailover.node")"
  [ "$states" = "primary/primary secondary/secondary" ] || return 1
  sync="$("$PG_BIN_DIR/psql" -X -q -At -d "$(database_url)" -c "SELECT count(*)
           FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')" 2>/dev/null)"
  [ "$sync" = 1 ]
}

# --- up -----------------------------------------------------------------------------

prepare_dirs() {
  mkdir -p "$CLUSTER_DIR" "$RUN_DIR" "$LOG_DIR" "$PG_ROOT"
  if kapso_is_root; then
    kapso_pg_make_dir_reachable "$CLUSTER_DIR" \
      || kapso_die "the postgres user cannot reach $CLUSTER_DIR (set KAPSO_CLUSTER_DIR)"
    chown postgres:postgres "$PG_ROOT"
  fi
  chmod 700 "$PG_ROOT"
  # pg_autoctl keeps its pid files here (it falls back to /tmp when the directory is missing).
  as_pg mkdir -p -m 700 "$PG_ROOT/xdg/run"
  SOCKET_DIR="$(socket_dir)"
  as_pg mkdir -p -m 700 "$SOCKET_DIR"
}

# PostgreSQL's Unix sockets: connections go over TCP, but pg_autoctl starts a node that
# must recover from a crash with TCP off before it rewinds it, and PostgreSQL refuses to
# start with no socket at all. A socket path holds at most 107 bytes.
socket_dir() {
  if [ "${#PG_ROOT}" -le 80 ]; then
    echo "$PG_ROOT/sockets"
  else
    printf '/tmp/kapso-cluster-%s\n' "$(printf '%s' "$PG_ROOT" | sha256sum | cut -c1-12)"
  fi
}

# initdb, then the settings every PostgreSQL of the cluster shares.
init_datadir() {
  local dir="$1" locale=C
  if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then locale=C.UTF-8; fi
  as_pg "$PG_BIN_DIR/initdb" -D "$dir" -A trust -U postgres --encoding=UTF8 \
    --locale="$locale" >"$LOG_DIR/initdb-$(basename "$dir").log" 2>&1 \
    || { tail -n 20 "$LOG_DIR/initdb-$(basename "$dir").log" >&2; kapso_die "initdb $dir failed"; }
  echo "include_if_exists = 'kapso.conf'" | as_pg tee -a "$dir/postgresql.conf" >/dev/null
}

# kapso.conf is included last, after pg_autoctl's own file, so its values win (pg_autoctl
# would size shared_buffers for a machine of its own). Rewritten before every start.
write_kapso_conf() {
  local dir="$1"
  shift
  [ -f "$dir/PG_VERSION" ] || return 0
  {
    echo "# Written by scripts/cluster.sh on every start; included after pg_auto_failover's settings."
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '$SOCKET_DIR'"
    echo "shared_buffers = 128MB"
    echo "effective_cache_size = 1GB"
    echo "maintenance_work_mem = 64MB"
    echo "work_mem = 4MB"
    echo "max_connections = 200"
    echo "fsync = on"
    echo "synchronous_commit = on"
    printf '%s\n' "$@"
  } | as_pg tee "$dir/kapso.conf" >/dev/null
}

start_monitor() {
  local dir="$PG_ROOT/monitor" pid
  if pid="$(live_pid monitor "$(monitor_marker)")"; then
    kapso_log "monitor already running (pid $pid)"
    return 0
  fi
  stop_component monitor "$(monitor_marker)" "$dir"
  if [ ! -f "$dir/PG_VERSION" ]; then
    kapso_log "creating the pg_auto_failover monitor on 127.0.0.1:$MONITOR_PORT"
    init_datadir "$dir"
  fi
  # Failover in about ten seconds instead of pg_auto_failover's production defaults
  # (20 s to call a node unhealthy, 30 s more before promoting): a dev topology and
  # the tests' kill -9 should not wait a minute.
  write_kapso_conf "$dir" \
    "pgautofailover.health_check_period = 1000" \
    "pgautofailover.health_check_timeout = 1000" \
    "pgautofailover.health_check_max_retries = 1" \
    "pgautofailover.health_check_retry_delay = 500" \
    "pgautofailover.node_considered_unhealthy_timeout = 3000" \
    "pgautofailover.primary_demote_timeout = 5000"
  if [ ! -f "$PG_ROOT/xdg/config/pg_autoctl$dir/pg_autoctl.cfg" ] \
      || ! monitor_created; then
    as_pg pg_autoctl create monitor --pgctl "$PG_BIN_DIR/pg_ctl" --pgdata "$dir" \
      --pgport "$MONITOR_PORT" --hostname 127.0.0.1 --listen 127.0.0.1 \
      --auth trust --no-ssl >>"$LOG_DIR/monitor.log" 2>&1 \
      || { tail -n 20 "$LOG_DIR/monitor.log" >&2; kapso_die "pg_autoctl create monitor failed"; }
    touch "$PG_ROOT/monitor.created"
  fi
  start_detached monitor / "${PG_EXEC[@]}" pg_autoctl run --pgdata "$dir"
  wait_for 60 "the monitor" monitor_ready \
    || { tail -n 20 "$LOG_DIR/monitor.log" >&2; kapso_die "the monitor did not start"; }
  kapso_log "monitor running (pid $(cat "$RUN_DIR/monitor.pid"))"
}

monitor_created() { [ -f "$PG_ROOT/monitor.created" ]; }

monitor_uri() {
  printf 'postgres://autoctl_node@127.0.0.1:%s/pg_auto_failover?sslmode=disable\n' "$MONITOR_PORT"
}

start_node() {
  local name="$1" dir port pid
  dir="$(node_dir "$name")"
  port="$(node_port "$name")"
  if pid="$(live_pid "$name" "$(node_marker "$name")")"; then
    kapso_log "$name already running (pid $pid)"
    return 0
  fi
  stop_component "$name" "$(node_marker "$name")" "$dir"
  write_kapso_conf "$dir"
  if node_created "$name"; then
    kapso_log "starting $name on 127.0.0.1:$port"
    start_detached "$name" / "${PG_EXEC[@]}" pg_autoctl run --pgdata "$dir"
    return 0
  fi
  # The first node starts from our own initdb (so kapso.conf applies from its first start);
  # the second is an empty directory that pg_autoctl fills with pg_basebackup.
  if [ "$name" = pg-node-1 ] && [ ! -f "$dir/PG_VERSION" ]; then
    init_datadir "$dir"
    write_kapso_conf "$dir"
  fi
  kapso_log "creating $name on 127.0.0.1:$port"
  start_detached "$name" / "${PG_EXEC[@]}" pg_autoctl create postgres --pgctl "$PG_BIN_DIR/pg_ctl" \
    --pgdata "$dir" --pgport "$port" --pghost 127.0.0.1 --listen 127.0.0.1 \
    --hostname 127.0.0.1 --name "$name" --dbname kapso --username postgres \
    --monitor "$(monitor_uri)" --auth trust --no-ssl --run
  wait_for 60 "$name to register" node_registered "$name" \
    || { tail -n 20 "$LOG_DIR/$name.log" >&2; kapso_die "$name did not register"; }
}

# pg_autoctl removes its init file once a node's creation has completed; until then
# `create` (which resumes where it stopped) is run again instead of `run`.
node_created() {
  local state
  state="$PG_ROOT/xdg/data/pg_autoctl$(node_dir "$1")"
  [ -f "$state/pg_autoctl.state" ] && [ ! -f "$state/pg_autoctl.init" ]
}

node_registered() {
  [ "$(monitor_query "SELECT count(*) FROM pgautofailover.node
                      WHERE nodename = '$1' AND reportedstate <> 'init'")" = 1 ]
}

# pg_basebackup waits for a spread checkpoint (minutes on an idle primary); an explicit
# CHECKPOINT on the primary completes it at once.
formation_healthy_nudging() {
  formation_healthy && return 0
  local port
  for port in "$PG_PORT_1" "$PG_PORT_2"; do
    if [ "$(psql_at "$port" postgres -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; then
      psql_at "$port" postgres -c CHECKPOINT >/dev/null 2>&1 || true
    fi
  done
  return 1
}

start_ingest() {
  local name="$1" port pid url
  port="$(ingest_port "$name")"
  if pid="$(live_pid "$name" "$(ingest_marker "$name")")"; then
    kapso_log "$name already running (pid $pid)"
    return 0
  fi
  stop_component "$name" "$(ingest_marker "$name")"
  mkdir -p "$CLUSTER_DIR/$name/spool"
  chmod 700 "$CLUSTER_DIR/$name/spool"
  url="$(database_url)"
  local extra=()
  if [ -n "${KAPSO_CLUSTER_INGEST_ARGS:-}" ]; then read -r -a extra <<<"$KAPSO_CLUSTER_INGEST_ARGS"; fi
  kapso_log "starting $name on 127.0.0.1:$port"
  # Migrations are applied once by `up`, not by every instance racing at start.
  start_detached "$name" "$CLUSTER_DIR/$name" env DATABASE_URL="$url" \
    KAPSO_WEBHOOK_SECRET="$INGEST_SECRET" "$INGEST_BINARY" serve \
    --http.host=127.0.0.1 --http.port="$port" --spool.dir="$CLUSTER_DIR/$name/spool" \
    --persistence.migrate-on-start=false "${extra[@]}"
}

# HAProxy runs deploy/haproxy.cfg itself: the lines tagged [production] (syslog, chroot,
# user, admin socket) are left out, and the addresses come from the environment.
start_haproxy() {
  local cfg="$CLUSTER_DIR/haproxy.cfg" pid
  grep -v '\[production\]' "$ROOT/deploy/haproxy.cfg" >"$cfg.new"
  if pid="$(live_pid haproxy "$(haproxy_marker)")" && cmp -s "$cfg" "$cfg.new"; then
    rm -f "$cfg.new"
    kapso_log "haproxy already running (pid $pid)"
    return 0
  fi
  stop_component haproxy "$(haproxy_marker)"
  mv "$cfg.new" "$cfg"
  local env=(env KAPSO_FRONT_BIND="127.0.0.1:$FRONT_PORT" KAPSO_STATS_BIND="127.0.0.1:$STATS_PORT"
             KAPSO_INGEST_1="127.0.0.1:$INGEST_PORT_1" KAPSO_INGEST_2="127.0.0.1:$INGEST_PORT_2")
  # -n: a connection limit that fits a developer's descriptor limit (maxconn is for production).
  "${env[@]}" haproxy -c -q -n 4000 -f "$cfg" || kapso_die "haproxy rejects $cfg"
  kapso_log "starting haproxy on 127.0.0.1:$FRONT_PORT (stats on :$STATS_PORT)"
  start_detached haproxy "$CLUSTER_DIR" "${env[@]}" haproxy -db -n 4000 -f "$cfg"
}

front_ready() { [ "$(http_status "$FRONT_PORT" /readyz)" = 200 ]; }

cmd_up() {
  command -v setsid >/dev/null || kapso_die "setsid (util-linux) is required"
  kapso_install_packages
  if [ -z "${KAPSO_CLUSTER_BINARY:-}" ] && [ ! -x "$INGEST_BINARY" ]; then
    kapso_build kapso-ingest
  fi
  [ -x "$INGEST_BINARY" ] || kapso_die "$INGEST_BINARY is missing (build it or set KAPSO_CLUSTER_BINARY)"
  PG_BIN_DIR="$(kapso_pg_bin)"
  command -v pg_autoctl >/dev/null || kapso_die "pg_autoctl is missing (postgresql-15-auto-failover)"
  command -v haproxy >/dev/null || kapso_die "haproxy is missing"
  prepare_dirs
  cluster_ports
  cluster_save_ports
  if [ -z "${KAPSO_WEBHOOK_SECRET:-}" ]; then
    kapso_log "KAPSO_WEBHOOK_SECRET is unset: the instances use the DEMO secret 'demo-secret'"
  fi
  INGEST_SECRET="${KAPSO_WEBHOOK_SECRET:-demo-secret}"

  start_monitor
  local name
  for name in "${PG_NODES[@]}"; do start_node "$name"; done
  kapso_log "waiting for a primary and a synchronous secondary"
  wait_for 180 "the formation" formation_healthy_nudging \
    || { tail -n 20 "$LOG_DIR/pg-node-2.log" >&2; kapso_die "the formation did not become healthy"; }

  local url
  url="$(database_url)"
  kapso_log "applying migrations once"
  "$INGEST_BINARY" migrate --persistence.database-url="$url" >>"$LOG_DIR/migrate.log" 2>&1 \
    || { tail -n 20 "$LOG_DIR/migrate.log" >&2; kapso_die "migrations failed"; }
  "$INGEST_BINARY" register-workspace --persistence.database-url="$url" \
    --workspace.name="Demo workspace" --workspace.slug=demo \
    --workspace.phone-number-id=123456789012345 >>"$LOG_DIR/migrate.log" 2>&1 \
    || kapso_die "could not register the demo workspace (see $LOG_DIR/migrate.log)"

  for name in "${INGESTS[@]}"; do start_ingest "$name"; done
  for name in "${INGESTS[@]}"; do
    wait_for 60 "$name" ready_200 "$(ingest_port "$name")" \
      || { tail -n 20 "$LOG_DIR/$name.log" >&2; kapso_die "$name is not ready"; }
  done
  start_haproxy
  wait_for 30 "haproxy" front_ready \
    || { tail -n 20 "$LOG_DIR/haproxy.log" >&2; kapso_die "haproxy does not serve /readyz"; }
  cmd_status
  echo "front http://127.0.0.1:$FRONT_PORT"
  echo "database $url"
}

# --- status ---------------------------------------------------------------------------

cmd_status() {
  if [ ! -f "$STATE_FILE" ]; then
    kapso_log "no cluster in $CLUSTER_DIR"
    return 0
  fi
  cluster_ports
  PG_BIN_DIR="$(kapso_pg_bin)"
  local pid states name state
  if pid="$(live_pid monitor "$(monitor_marker)")"; then
    echo "monitor $pid monitor"
    # The state a node reports, and where the monitor is taking it when that differs
    # (e.g. primary>demoted for a primary that stopped answering).
    states="$(monitor_query "SELECT nodename || ' ' || reportedstate || CASE WHEN goalstate
               = reportedstate THEN '' ELSE '>' || goalstate END FROM pgautofailover.node" || true)"
  else
    echo "monitor - down"
    states=""
  fi
  for name in "${PG_NODES[@]}"; do
    if pid="$(live_pid "$name" "$(node_marker "$name")")"; then
      state="$(printf '%s\n' "$states" | awk -v n="$name" '$1 == n { print $2 }')"
      echo "$name $pid ${state:-unknown}"
    else
      echo "$name - down"
    fi
  done
  for name in "${INGESTS[@]}"; do
    if pid="$(live_pid "$name" "$(ingest_marker "$name")")"; then
      if ready_200 "$(ingest_port "$name")"; then state=up; else state=unready; fi
      echo "$name $pid $state"
    else
      echo "$name - down"
    fi
  done
  if pid="$(live_pid haproxy "$(haproxy_marker)")"; then
    echo "haproxy $pid up"
  else
    echo "haproxy - down"
  fi
}

# --- roll -----------------------------------------------------------------------------

# The state HAProxy's stats give a server of a backend: UP, DOWN, "UP 1/2" (going down),
# "DOWN 1/2" (coming up), MAINT, ...; empty when HAProxy does not answer.
haproxy_server_status() {
  curl -s -m 2 "http://127.0.0.1:$STATS_PORT/stats;csv" 2>/dev/null \
    | awk -F, -v px="$1" -v sv="$2" '$1 == px && $2 == sv { print $18 }' || true
}
haproxy_sends_to() { [ "$(haproxy_server_status kapso_ready "$1")" = UP ]; }
haproxy_stopped_sending_to() {
  case "$(haproxy_server_status kapso_ready "$1")" in DOWN*|MAINT*) return 0 ;; *) return 1 ;; esac
}

# Replaces one instance without a delivery seeing anything but 200: it answers /readyz 503
# while still serving (SIGUSR1) until HAProxy has taken it out of kapso_ready, then drains on
# SIGTERM (nothing new reaches it; what does is answered 503 and retried elsewhere by
# HAProxy), and the new one starts; the next instance waits until HAProxy sends here again.
roll_ingest() {
  local name="$1" other pid start=$EPOCHREALTIME port
  port="$(ingest_port "$name")"
  for other in "${INGESTS[@]}"; do
    [ "$other" != "$name" ] || continue
    haproxy_sends_to "$other" \
      || kapso_die "HAProxy does not send to $other ($(haproxy_server_status kapso_ready "$other")):" \
                   "not taking $name out, nothing else would serve"
  done
  if pid="$(live_pid "$name" "$(ingest_marker "$name")")"; then
    kapso_log "$name (pid $pid): withdrawn (SIGUSR1), waiting until HAProxy stops sending to it"
    kill -USR1 "$pid"
    if ! wait_for 30 "HAProxy to take $name out of kapso_ready" haproxy_stopped_sending_to "$name"; then
      kill -USR2 "$pid" 2>/dev/null || true
      kapso_die "HAProxy still sends to $name: put back (SIGUSR2), nothing replaced"
    fi
    stop_component "$name" "$(ingest_marker "$name")"
  else
    kapso_log "$name is not running"
  fi
  start_ingest "$name"
  wait_for 60 "$name" ready_200 "$port" \
    || { tail -n 20 "$LOG_DIR/$name.log" >&2; kapso_die "the new $name is not ready"; }
  wait_for 30 "HAProxy to send to $name" haproxy_sends_to "$name" \
    || kapso_die "HAProxy does not send to the new $name ($(haproxy_server_status kapso_ready "$name"))"
  kapso_log "$name replaced (pid $(cat "$RUN_DIR/$name.pid")) in $(elapsed_since "$start") s"
}

elapsed_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

cmd_roll() {
  [ -f "$STATE_FILE" ] || kapso_die "no cluster in $CLUSTER_DIR: scripts/cluster.sh up first"
  [ -x "$INGEST_BINARY" ] || kapso_die "$INGEST_BINARY is missing (build it or set KAPSO_CLUSTER_BINARY)"
  cluster_ports
  PG_BIN_DIR="$(kapso_pg_bin)"
  live_pid haproxy "$(haproxy_marker)" >/dev/null || kapso_die "haproxy is not running: scripts/cluster.sh up first"
  INGEST_SECRET="${KAPSO_WEBHOOK_SECRET:-demo-secret}"
  local name start=$EPOCHREALTIME
  kapso_log "rolling ${INGESTS[*]} onto $INGEST_BINARY"
  for name in "${INGESTS[@]}"; do roll_ingest "$name"; done
  kapso_log "roll done in $(elapsed_since "$start") s"
  cmd_status
}

# --- down -----------------------------------------------------------------------------

cmd_down() {
  local purge=0 name
  case "${1:-}" in
    --purge) purge=1 ;;
    "") ;;
    *) kapso_die "unknown option '$1' (expected --purge)" ;;
  esac
  if [ -d "$RUN_DIR" ]; then
    # Front first so nothing new arrives, then the instances (they drain and keep their
    # spools), then the databases, the monitor last so it sees the nodes go.
    stop_component haproxy "$(haproxy_marker)"
    for name in "${INGESTS[@]}"; do stop_component "$name" "$(ingest_marker "$name")"; done
    for name in pg-node-2 pg-node-1; do
      stop_component "$name" "$(node_marker "$name")" "$(node_dir "$name")"
    done
    stop_component monitor "$(monitor_marker)" "$PG_ROOT/monitor"
  fi
  if [ "$purge" = 1 ] && [ -d "$CLUSTER_DIR" ]; then
    kapso_log "deleting $CLUSTER_DIR"
    rm -rf "$CLUSTER_DIR"
    case "$(socket_dir)" in /tmp/*) rm -rf "$(socket_dir)" ;; esac
  fi
  kapso_log "cluster stopped"
}

case "${1:-}" in
  up) cmd_up ;;
  status) cmd_status ;;
  roll) cmd_roll ;;
  down) shift; cmd_down "$@" ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
