# shellcheck shell=bash disable=SC2034  # variables here are read by run.sh and test.sh
# Shared set-up for scripts/run.sh and scripts/test.sh: packages, build, private PostgreSQL.
# Sourced, never executed. Every function prints progress prefixed with [kapso].

# The repository root, from this file's own location (physical path, any cwd).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BUILD_DIR="${KAPSO_BUILD_DIR:-$ROOT/build}"
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR="$PWD/$BUILD_DIR" ;; esac
BINARY="$BUILD_DIR/kapso-ingest"

KAPSO_PACKAGES=(
  # The build: compilers, CMake, the libraries kapso-ingest and its tests link.
  build-essential cmake pkg-config g++
  libcaf-dev librestinio-dev libasio-dev libhttp-parser-dev libfmt-dev
  libpqxx-dev nlohmann-json3-dev libspdlog-dev libjemalloc-dev libsimdjson-dev
  libboost-test-dev libboost-dev libphonenumber-dev libssl-dev libsystemd-dev
  # The private PostgreSQL of run.sh and test.sh, and the fault tier's own clusters.
  postgresql postgresql-contrib
  # The benchmarks (wrk, Google Benchmark's micro benchmarks).
  wrk libbenchmark-dev
  # The fuzz_* tests: clang with libFuzzer and the sanitizer runtimes.
  clang libclang-rt-14-dev
  # run.sh signs its demo delivery (openssl); cluster.sh probes /readyz (curl).
  openssl curl ca-certificates
  # The cluster tier: scripts/cluster.sh runs pg_auto_failover and HAProxy (haproxy_config
  # too) and stops PostgreSQL backends found with ps (procps).
  postgresql-15-auto-failover haproxy procps
  # metrics_promtool and alert_rules: Prometheus' promtool.
  prometheus
  # deb_package: dpkg-shlibdeps (dpkg-dev) for the Depends, file (stripped binary), man
  # (man-db) for the man page, systemd-analyze (systemd) for the unit.
  dpkg-dev file man-db systemd
)

# Set by kapso_pg_start: 1 when this process started the cluster (0 when reused), and the
# private cluster's port (empty when DATABASE_URL came from the environment).
KAPSO_PG_STARTED_HERE=0
KAPSO_PG_PORT=""

kapso_log() { printf '[kapso] %s\n' "$*" >&2; }
kapso_die() { printf '[kapso] error: %s\n' "$*" >&2; exit 1; }

kapso_is_root() { [ "$(id -u)" -eq 0 ]; }

# --- 1. packages ----------------------------------------------------------------------

# Installs the Debian packages that are missing; does nothing (not even apt-get update)
# when all are there. KAPSO_SKIP_PACKAGES=1 skips the check.
kapso_install_packages() {
  if [ "${KAPSO_SKIP_PACKAGES:-0}" = 1 ]; then
    kapso_log "package check skipped (KAPSO_SKIP_PACKAGES=1)"
    return 0
  fi
  if ! command -v dpkg-query >/dev/null 2>&1; then
    kapso_log "no dpkg-query: not a Debian system, assuming dependencies are installed"
    return 0
  fi
  local missing=() pkg status
  for pkg in "${KAPSO_PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
    [ "$status" = installed ] || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    kapso_log "all ${#KAPSO_PACKAGES[@]} Debian packages present"
    return 0
  fi
  kapso_log "installing missing packages: ${missing[*]}"
  local sudo=()
  if ! kapso_is_root; then
    command -v sudo >/dev/null 2>&1 \
      || kapso_die "not root and no sudo: run 'apt-get install ${missing[*]}' as root"
    sudo=(sudo -n)
  fi
  # A fresh machine has empty package lists; update only because an install is needed.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q \
    || kapso_log "apt-get update reported errors; trying the install anyway"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# --- 2. build -------------------------------------------------------------------------

# Configures once (only when no build system exists yet), then builds the given targets,
# or BUILD_TARGETS (space separated), or everything. An unchanged tree rebuilds nothing.
kapso_build() {
  local targets=("$@")
  if [ "${#targets[@]}" -eq 0 ] && [ -n "${BUILD_TARGETS:-}" ]; then
    read -r -a targets <<<"$BUILD_TARGETS"
  fi
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ] \
      || { [ ! -f "$BUILD_DIR/Makefile" ] && [ ! -f "$BUILD_DIR/build.ninja" ]; }; then
    kapso_log "configuring $BUILD_DIR (${CMAKE_BUILD_TYPE:-RelWithDebInfo})"
    local launcher=()
    # ccache, when a developer has it, makes rebuilds in several checkouts cheap.
    if command -v ccache >/dev/null 2>&1; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}" \
      "${launcher[@]}"
  fi
  local jobs="${BUILD_JOBS:-$(nproc)}"
  if [ "${#targets[@]}" -gt 0 ]; then
    kapso_log "building ${targets[*]} (-j$jobs)"
    cmake --build "$BUILD_DIR" -j"$jobs" --target "${targets[@]}"
  else
    kapso_log "building all targets (-j$jobs)"
    cmake --build "$BUILD_DIR" -j"$jobs"
  fi
}

# --- 3. private PostgreSQL ------------------------------------------------------------

kapso_pg_bin() {
  if [ -n "${PG_BIN:-}" ]; then
    printf '%s\n' "$PG_BIN"
    return 0
  fi
  local dir
  for dir in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/pg_ctl" ]; then
      printf '%s\n' "$dir"
      return 0
    fi
  done
  kapso_die "PostgreSQL server binaries not found under /usr/lib/postgresql (set PG_BIN)"
}

# PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user.
kapso_pg_user() {
  if kapso_is_root; then echo postgres; else id -un; fi
}

# Runs a command as the cluster's owner, from / so an unreadable cwd does not matter.
kapso_as_pg() {
  if kapso_is_root; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}

kapso_fallback_pg_dir() {
  printf '/tmp/kapso-pg-%s\n' "$(printf '%s' "$BUILD_DIR" | sha256sum | cut -c1-12)"
}

# Gives the postgres user search permission on every directory down to $BUILD_DIR.
# Returns non-zero when that is impossible.
kapso_pg_make_reachable() {
  kapso_pg_make_dir_reachable "$BUILD_DIR"
}

# The same for any directory (scripts/cluster.sh keeps its nodes elsewhere).
kapso_pg_make_dir_reachable() {
  kapso_is_root || return 0
  kapso_as_pg test -x "$1" 2>/dev/null && return 0
  local dir="" part parts
  IFS=/ read -r -a parts <<<"$1"
  for part in "${parts[@]}"; do
    [ -n "$part" ] || continue
    dir="$dir/$part"
    if ! kapso_as_pg test -x "$dir" 2>/dev/null; then
      kapso_log "making $dir traversable (o+x) so the postgres user can reach the data directory"
      chmod o+x "$dir" 2>/dev/null || return 1
    fi
  done
  kapso_as_pg test -x "$1" 2>/dev/null
}

# Creates an empty data directory owned by the cluster's owner; fails where ownership
# cannot be given (e.g. a shared folder that ignores chown).
kapso_pg_prepare_datadir() {
  mkdir -p "$1" && chmod 700 "$1" || return 1
  if kapso_is_root; then
    chown postgres:postgres "$1" 2>/dev/null && kapso_as_pg test -w "$1" || return 1
  fi
}

# Sets PGDATA_DIR and PGLOG_FILE. Keeps an existing cluster where it is; otherwise uses
# $BUILD_DIR/pgdata, or a directory under /tmp when the postgres user cannot reach it.
# With --existing, only finds an existing cluster (no side effects) and fails if none.
kapso_pg_locate() {
  local fallback
  fallback="$(kapso_fallback_pg_dir)"
  if [ -f "$BUILD_DIR/pgdata/PG_VERSION" ]; then
    PGDATA_DIR="$BUILD_DIR/pgdata"
    PGLOG_FILE="$BUILD_DIR/postgres.log"
  elif [ -f "$fallback/data/PG_VERSION" ]; then
    PGDATA_DIR="$fallback/data"
    PGLOG_FILE="$fallback/postgres.log"
  elif [ "${1:-}" = --existing ]; then
    return 1
  else
    mkdir -p "$BUILD_DIR"
    if kapso_pg_make_reachable && kapso_pg_prepare_datadir "$BUILD_DIR/pgdata"; then
      PGDATA_DIR="$BUILD_DIR/pgdata"
      PGLOG_FILE="$BUILD_DIR/postgres.log"
    else
      kapso_log "the postgres user cannot use $BUILD_DIR/pgdata; using $fallback instead"
      mkdir -p "$fallback" && chmod 755 "$fallback"
      PGDATA_DIR="$fallback/data"
      PGLOG_FILE="$fallback/postgres.log"
    fi
  fi
}

# Prints the pid of the cluster's live postmaster, or fails.
kapso_pg_running_pid() {
  local pidfile="$PGDATA_DIR/postmaster.pid" pid
  [ -f "$pidfile" ] || return 1
  pid="$(head -n1 "$pidfile" 2>/dev/null || true)"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # A killed postmaster can linger as a zombie until init reaps it; a reused pid is not ours.
  case "$(grep -m1 '^State:' "/proc/$pid/status" 2>/dev/null || true)" in
    *Z*|*X*|"") return 1 ;;
  esac
  case "$(cat "/proc/$pid/comm" 2>/dev/null || true)" in
    postgres*) printf '%s\n' "$pid" ;;
    *) return 1 ;;
  esac
}

kapso_port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Writes the settings this project relies on; included from postgresql.conf.
kapso_pg_write_conf() {
  local port="$1" conf="$PGDATA_DIR/kapso.conf"
  cat >"$conf" <<EOF
# Written by scripts/lib.sh on every start: edits here are overwritten.
port = $port
listen_addresses = '127.0.0.1'
# TCP only: a Unix socket path under a deep clone would exceed 107 characters.
unix_socket_directories = ''
# Acknowledged webhooks must survive a crash, so the test database is durable too.
fsync = on
synchronous_commit = on
max_connections = 200
shared_buffers = 256MB
EOF
  if kapso_is_root; then chown postgres:postgres "$conf"; fi
  grep -q "^include_if_exists = 'kapso.conf'" "$PGDATA_DIR/postgresql.conf" \
    || printf "\ninclude_if_exists = 'kapso.conf'\n" >>"$PGDATA_DIR/postgresql.conf"
}

kapso_pg_initdb() {
  local bin="$1" owner locale=C
  owner="$(kapso_pg_user)"
  if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then locale=C.UTF-8; fi
  kapso_log "initialising a PostgreSQL cluster in $PGDATA_DIR (owner $owner, locale $locale)"
  kapso_pg_prepare_datadir "$PGDATA_DIR" \
    || kapso_die "cannot give $PGDATA_DIR to the user $owner"
  kapso_as_pg "$bin/initdb" -D "$PGDATA_DIR" -A trust -U postgres --encoding=UTF8 \
    --locale="$locale" >"$PGDATA_DIR.initdb.log" 2>&1 \
    || { cat "$PGDATA_DIR.initdb.log" >&2; kapso_die "initdb failed"; }
}

# Starts (or reuses) the private cluster; sets KAPSO_PG_PORT and exports DATABASE_URL.
kapso_pg_start() {
  local bin pid port
  bin="$(kapso_pg_bin)"
  kapso_pg_locate
  if pid="$(kapso_pg_running_pid)"; then
    port="$(sed -n 4p "$PGDATA_DIR/postmaster.pid")"
    kapso_log "reusing the private PostgreSQL already running (pid $pid, port $port, $PGDATA_DIR)"
  else
    [ -f "$PGDATA_DIR/PG_VERSION" ] || kapso_pg_initdb "$bin"
    if [ -f "$PGDATA_DIR/postmaster.pid" ]; then
      kapso_log "removing a stale postmaster.pid"
      rm -f "$PGDATA_DIR/postmaster.pid"
    fi
    # Below Linux's ephemeral range (32768-60999): no client connection can hold the port
    # as its source port when the cluster starts again.
    port="${PGPORT_PRIVATE:-25432}"
    local tries=0
    while kapso_port_busy "$port"; do
      tries=$((tries + 1))
      [ "$tries" -le 50 ] || kapso_die "no free port from ${PGPORT_PRIVATE:-25432} on"
      kapso_log "port $port is busy, trying $((port + 1))"
      port=$((port + 1))
    done
    kapso_pg_write_conf "$port"
    touch "$PGLOG_FILE"
    if kapso_is_root; then chown postgres:postgres "$PGLOG_FILE"; fi
    kapso_log "starting the private PostgreSQL on 127.0.0.1:$port (log: $PGLOG_FILE)"
    kapso_as_pg "$bin/pg_ctl" -w -t 60 -D "$PGDATA_DIR" -l "$PGLOG_FILE" start >/dev/null \
      || { tail -n 30 "$PGLOG_FILE" >&2; kapso_die "PostgreSQL did not start"; }
    KAPSO_PG_STARTED_HERE=1
  fi
  local waited=0
  until "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres; do
    waited=$((waited + 1))
    [ "$waited" -le 60 ] || kapso_die "PostgreSQL on port $port is not ready after 30 s"
    sleep 0.5
  done
  local exists
  exists="$("$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'kapso'")"
  if [ "$exists" != 1 ]; then
    kapso_log "creating database kapso"
    "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres kapso
  fi
  KAPSO_PG_PORT="$port"
  export DATABASE_URL="postgresql://postgres@127.0.0.1:$port/kapso"
  kapso_log "DATABASE_URL=$DATABASE_URL"
}

# Stops the private cluster if this process started it (for EXIT traps: a
# cluster started by run.sh keeps running).
kapso_pg_stop_if_started() {
  if [ "$KAPSO_PG_STARTED_HERE" = 1 ]; then kapso_pg_stop || true; fi
}

# Stops the private cluster if it runs; a no-op otherwise.
kapso_pg_stop() {
  local bin
  bin="$(kapso_pg_bin)"
  if kapso_pg_locate --existing && kapso_pg_running_pid >/dev/null; then
    kapso_log "stopping the private PostgreSQL ($PGDATA_DIR)"
    kapso_as_pg "$bin/pg_ctl" -w -t 60 -D "$PGDATA_DIR" -m fast stop >/dev/null
  else
    kapso_log "the private PostgreSQL is not running"
  fi
}

# Uses DATABASE_URL when set; otherwise starts (or reuses) the private cluster.
kapso_database() {
  if [ -n "${DATABASE_URL:-}" ]; then
    kapso_log "using DATABASE_URL from the environment (no private PostgreSQL)"
    return 0
  fi
  kapso_pg_start
}
