#!/usr/bin/env bash
# CPU time per request of the server and of PostgreSQL for one kapso-bench
# run (its --setup and --verify included): the figure to compare two builds or options by on a noisy
# machine, where throughput alone swings from run to run.
#
#   benchmarks/cpu_per_request.sh --form single --duration 12 --retry-fraction 0
#   SERVER_ARGS=--persistence.writers=1 benchmarks/cpu_per_request.sh --form batch
#   KAPSO_BINARY=/other/build/kapso-ingest benchmarks/cpu_per_request.sh ...
#
# Arguments go to kapso-bench (--url, --setup, --verify are set here). It
# starts KAPSO_BINARY (default: the build's kapso-ingest) with SERVER_ARGS on
# SERVER_PORT (18091) against a fresh scratch database of the private
# PostgreSQL (or of DATABASE_URL's server) and reads utime+stime from /proc
# for the server and every PostgreSQL process before and after.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
SERVER_PORT="${SERVER_PORT:-18091}"
SERVER_ARGS="${SERVER_ARGS:-}"
export KAPSO_WEBHOOK_SECRET="${KAPSO_WEBHOOK_SECRET:-kapso-bench-secret}"

# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
kapso_install_packages
kapso_build kapso-ingest kapso-bench
kapso_database
SERVER="${KAPSO_BINARY:-$BINARY}"
BENCH="$BUILD_DIR/kapso-bench"
kapso_port_busy "$SERVER_PORT" && kapso_die "port $SERVER_PORT is in use (set SERVER_PORT)"

SCRATCH="kapso_cpu_$$"
ADMIN_URL="$DATABASE_URL"
SCRATCH_URL="$(printf '%s' "$DATABASE_URL" | sed -E "s#/[^/?]*([?].*)?\$#/$SCRATCH\\1#")"
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  psql "$ADMIN_URL" -qXc "DROP DATABASE IF EXISTS $SCRATCH WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
  kapso_pg_stop_if_started
}
trap cleanup EXIT

psql "$ADMIN_URL" -qXc "CREATE DATABASE $SCRATCH" >/dev/null
DATABASE_URL="$SCRATCH_URL" "$SERVER" migrate >/dev/null
# shellcheck disable=SC2086  # SERVER_ARGS is a list of flags
DATABASE_URL="$SCRATCH_URL" "$SERVER" --http.host=127.0.0.1 --http.port="$SERVER_PORT" \
  --spool.dir="$WORK/spool" $SERVER_ARGS >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
  curl -fsS -m 1 "http://127.0.0.1:$SERVER_PORT/readyz" >/dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; kapso_die "server exited"; }
  sleep 0.1
done

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
postgres_ticks() {
  local sum=0 pid
  for pid in $(pgrep -x postgres); do sum=$((sum + $(ticks "$pid" 2>/dev/null || echo 0))); done
  echo "$sum"
}

server_before="$(ticks "$SERVER_PID")"
postgres_before="$(postgres_ticks)"
"$BENCH" --url "http://127.0.0.1:$SERVER_PORT/api/webhook/kapso" \
  --database-url "$SCRATCH_URL" --setup --verify --json "$WORK/bench.json" "$@"
server_after="$(ticks "$SERVER_PID")"
postgres_after="$(postgres_ticks)"

requests="$(sed -n 's/^ *"attempts": \([0-9]*\).*/\1/p' "$WORK/bench.json" | head -n1)"
hz="$(getconf CLK_TCK)"
awk -v n="$requests" -v hz="$hz" -v s=$((server_after - server_before)) \
    -v p=$((postgres_after - postgres_before)) 'BEGIN {
  printf "CPU per request (%d requests): server %.1f us, PostgreSQL %.1f us\n",
         n, s * 1e6 / hz / n, p * 1e6 / hz / n }'
