#!/usr/bin/env bash
# Runs the standard benchmark scenarios against kapso-ingest and prints one table.
#
#   benchmarks/run_scenarios.sh            # 60 s per scenario
#   DURATION=10 benchmarks/run_scenarios.sh
#
# Through scripts/lib.sh it installs missing packages, builds kapso-ingest,
# kapso-bench and trivial-server into ${KAPSO_BUILD_DIR:-$ROOT/build} and starts
# the private PostgreSQL unless DATABASE_URL is set.
#
# Environment: DURATION (s per scenario, 60), CEILING_DURATION (s, 10),
# WARMUP (s, 2), CONNECTIONS (64), SERVER_PORT (18081), CEILING_PORT (18080),
# SERVER_ARGS (extra kapso-ingest flags), RESULTS_DIR, KAPSO_WEBHOOK_SECRET.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
DURATION="${DURATION:-60}"
CEILING_DURATION="${CEILING_DURATION:-10}"
WARMUP="${WARMUP:-2}"
CONNECTIONS="${CONNECTIONS:-64}"
SERVER_PORT="${SERVER_PORT:-18081}"
CEILING_PORT="${CEILING_PORT:-18080}"
SERVER_ARGS="${SERVER_ARGS:-}"
RESULTS_DIR="${RESULTS_DIR:-$ROOT/benchmarks/results/$(date +%Y%m%d-%H%M%S)}"
export KAPSO_WEBHOOK_SECRET="${KAPSO_WEBHOOK_SECRET:-kapso-bench-secret}"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

# -- packages, build, database ---------------------------------------------------

# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
kapso_install_packages
kapso_build kapso-ingest kapso-bench trivial-server
kapso_database
BENCH="$BUILD_DIR/kapso-bench"
TRIVIAL="$BUILD_DIR/trivial-server"
for tool in "$BINARY" "$BENCH" "$TRIVIAL"; do
  [ -x "$tool" ] || die "$tool is missing: build it first"
done
command -v curl >/dev/null 2>&1 || die "curl is needed to wait for /readyz"

mkdir -p "$RESULTS_DIR"
log "results go to $RESULTS_DIR"

# -- what we start, we stop ----------------------------------------------------------

STARTED_PIDS=()
stop_pid() {
  local pid="$1"
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.2
  done
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${STARTED_PIDS[@]}"; do stop_pid "$pid"; done
  kapso_pg_stop_if_started
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for_port() {
  local port="$1" pid="$2"
  for _ in $(seq 1 100); do
    kapso_port_busy "$port" && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# A top-level or uniquely named number/boolean from kapso-bench's JSON
# (printed one key per line), without needing jq.
json_value() {
  sed -n "s/^ *\"$2\": \([^,]*\),\{0,1\}\$/\1/p" "$1" | head -n1
}

# Every kapso-bench run is bounded: measured time, warm-up, drain, pre-build.
bench() {
  timeout --signal=INT --kill-after=10 "$((DURATION + WARMUP + 180))" "$BENCH" "$@"
}

# -- 1. the ceiling: same harness, a server that does nothing -------------------------

kapso_port_busy "$CEILING_PORT" && die "port $CEILING_PORT is in use (set CEILING_PORT)"
"$TRIVIAL" --port "$CEILING_PORT" >"$RESULTS_DIR/trivial-server.log" 2>&1 &
TRIVIAL_PID=$!
STARTED_PIDS+=("$TRIVIAL_PID")
wait_for_port "$CEILING_PORT" "$TRIVIAL_PID" || die "trivial-server did not start"
log "ceiling: trivial-server, single form, $CONNECTIONS connections, ${CEILING_DURATION}s"
bench --url "http://127.0.0.1:$CEILING_PORT/api/webhook/kapso" --form single \
  --connections "$CONNECTIONS" --duration "$CEILING_DURATION" --warmup 1 \
  --retry-fraction 0 --quiet --json "$RESULTS_DIR/ceiling.json" \
  >"$RESULTS_DIR/ceiling.txt" || die "the ceiling run failed (see $RESULTS_DIR/ceiling.txt)"
stop_pid "$TRIVIAL_PID"
CEILING="$(json_value "$RESULTS_DIR/ceiling.json" deliveries_per_second)"
log "ceiling: $CEILING deliveries/s"

# Closed loop cannot exceed the ceiling: pre-build just enough deliveries.
POOL="$(awk -v c="$CEILING" -v d="$DURATION" -v w="$WARMUP" \
  'BEGIN { printf "%d", c * (d + w) * 1.1 + 1000 }')"

# -- 2. kapso-ingest -------------------------------------------------------------------

log "migrating"
"$BINARY" migrate >"$RESULTS_DIR/migrate.log" 2>&1 \
  || { cat "$RESULTS_DIR/migrate.log" >&2; die "migration failed"; }

kapso_port_busy "$SERVER_PORT" && die "port $SERVER_PORT is in use (set SERVER_PORT)"
mkdir -p "$RESULTS_DIR/server"
# shellcheck disable=SC2086  # SERVER_ARGS is a list of flags
(cd "$RESULTS_DIR/server" && exec "$BINARY" --http.host=127.0.0.1 \
  --http.port="$SERVER_PORT" --spool.dir="$RESULTS_DIR/server/spool" $SERVER_ARGS) \
  >"$RESULTS_DIR/server.log" 2>&1 &
SERVER_PID=$!
STARTED_PIDS+=("$SERVER_PID")
ready=0
for _ in $(seq 1 150); do
  if curl -fsS -m 1 "http://127.0.0.1:$SERVER_PORT/readyz" >/dev/null 2>&1; then
    ready=1
    break
  fi
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.2
done
[ "$ready" = 1 ] || { tail -n 20 "$RESULTS_DIR/server.log" >&2; die "kapso-ingest is not ready"; }
log "kapso-ingest ready on 127.0.0.1:$SERVER_PORT (pid $SERVER_PID)"

# Formats a number for the table; "-" when the JSON had none.
num() {
  awk -v x="$1" -v f="$2" 'BEGIN { if (x == "" || x == "null") print "-"; else printf f, x }'
}

rss_mb() {
  awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"
}

# -- 3. scenarios ------------------------------------------------------------------------

# name | kapso-bench arguments. Each scenario has its own workspaces (phone id
# prefix), so no server cache holds rows that --setup has just deleted.
SCENARIOS=(
  "single|--form single --retry-fraction 0 --phone-number-id-prefix 9100000000 --pool $POOL"
  "batch50|--form batch --batch-size 50 --retry-fraction 0 --phone-number-id-prefix 9200000000"
  "meta|--form meta --retry-fraction 0 --phone-number-id-prefix 9300000000 --pool $POOL"
  "zipf+retries|--form single --zipf 1.1 --retry-fraction 0.05 --workspaces 4
    --conversations 10000 --phone-number-id-prefix 9400000000 --pool $POOL"
)

ROWS=()
SUMMARY=()
SUMMARY_FORMAT='{"scenario": "%s", "result": "%s.json", "deliveries_per_second": %s,'
SUMMARY_FORMAT+=' "events_per_second": %s, "verify": "%s", "ceiling_share": "%s",'
SUMMARY_FORMAT+=' "server_rss_mb": "%s"}'
failed=0
for scenario in "${SCENARIOS[@]}"; do
  name="${scenario%%|*}"
  read -r -d '' -a args <<<"${scenario#*|}" || true
  file="$RESULTS_DIR/$name.json"
  log "scenario $name: ${args[*]}"
  status=0
  bench --url "http://127.0.0.1:$SERVER_PORT/api/webhook/kapso" \
    --connections "$CONNECTIONS" --duration "$DURATION" --warmup "$WARMUP" \
    --setup --verify --quiet --json "$file" "${args[@]}" \
    >"$RESULTS_DIR/$name.txt" 2>&1 || status=$?
  rss="$(rss_mb "$SERVER_PID")"
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    tail -n 20 "$RESULTS_DIR/server.log" >&2
    die "kapso-ingest died during scenario $name"
  fi
  if [ ! -s "$file" ]; then
    ROWS+=("$name|-|-|-|-|-|-|-|ERROR($status)|-|$rss")
    SUMMARY+=("{\"scenario\": \"$name\", \"verify\": \"ERROR($status)\"}")
    failed=1
    continue
  fi
  verify="$(json_value "$file" ok)"
  case "$verify" in
    true) verify=OK ;;
    false) verify=FAILED; failed=1 ;;
    *) verify="?"; failed=1 ;;
  esac
  dps="$(json_value "$file" deliveries_per_second)"
  eps="$(json_value "$file" events_per_second)"
  share="$(awk -v a="$dps" -v c="$CEILING" \
    'BEGIN { if (c > 0) printf "%.1f%%", 100 * a / c; else print "-" }')"
  row="$name|$(num "$dps" %.0f)|$(num "$eps" %.0f)"
  for key in p50 p99 p99_9 max; do
    row+="|$(num "$(json_value "$file" "$key")" %.2f)"
  done
  ROWS+=("$row|$(json_value "$file" non_200)|$verify|$share|$rss")
  # shellcheck disable=SC2059  # a constant format, split for line length
  SUMMARY+=("$(printf "$SUMMARY_FORMAT" "$name" "$name" "${dps:-null}" "${eps:-null}" \
    "$verify" "$share" "$rss")")
  log "scenario $name: $(num "$dps" %.0f) deliveries/s, $(num "$eps" %.0f) events/s," \
    "verify $verify, server RSS ${rss} MB"
done

# -- 4. one table --------------------------------------------------------------------------

{
  printf 'kapso-ingest benchmark, %s, %s cores, %ss per scenario (+%ss warm-up), %s connections\n' \
    "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" "$DURATION" "$WARMUP" "$CONNECTIONS"
  printf 'ceiling (trivial-server, single form): %s deliveries/s\n\n' "$(num "$CEILING" %.0f)"
  printf '%-13s %12s %12s %9s %9s %9s %9s %8s %8s %9s %8s\n' scenario deliveries/s \
    events/s 'p50 ms' 'p99 ms' 'p99.9 ms' 'max ms' non-200 verify ceiling 'RSS MB'
  for row in "${ROWS[@]}"; do
    IFS='|' read -r -a f <<<"$row"
    printf '%-13s %12s %12s %9s %9s %9s %9s %8s %8s %9s %8s\n' "${f[@]}"
  done
} | tee "$RESULTS_DIR/summary.txt"

{
  printf '{"ceiling_deliveries_per_second": %s, "duration": %s, "connections": %s,\n' \
    "${CEILING:-null}" "$DURATION" "$CONNECTIONS"
  printf ' "scenarios": [\n  %s\n ]}\n' \
    "$(IFS=,; printf '%s' "${SUMMARY[*]}" | sed 's/},{/},\n  {/g')"
} >"$RESULTS_DIR/summary.json"

ln -sfn "$RESULTS_DIR" "$ROOT/benchmarks/results/latest" 2>/dev/null || true
[ "$failed" = 0 ] || { log "at least one scenario failed verification"; exit 1; }
