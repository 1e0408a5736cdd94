#!/usr/bin/env bash
# A long database outage under a steady load, and a restart with a large spool.
#
#   benchmarks/outage.sh                                  # 10 minutes at 5,000 deliveries/s
#   OUTAGE_SECONDS=60 RATE=2000 RESTART_SPOOL_BYTES=200000000 benchmarks/outage.sh
#
# 1. The outage. A private PostgreSQL of its own (this script stops it), a fresh
#    database and kapso-ingest with a spool of SPOOL_MAX_BYTES; kapso-bench sends
#    RATE single deliveries/s (open loop, 127.0.0.1) for BEFORE_SECONDS, then
#    PostgreSQL is stopped (pg_ctl -m immediate: a crash) for OUTAGE_SECONDS under
#    the same load, started again, and the load goes on while the spool drains
#    and for AFTER_SECONDS more; then kapso-bench --verify checks the tables.
#    Printed, each against its target: the answers during the outage (all 200),
#    the server's peak RSS (under RSS_LIMIT_MB), spool bytes per event and the
#    sizing rule, the drain rate against the arrival rate (at least
#    DRAIN_FACTOR times), the p99 of the deliveries that arrived during the
#    drain, and the verification.
# 2. The restart. Another database and server; with PostgreSQL stopped a
#    closed-loop load of batches fills the spool to RESTART_SPOOL_BYTES; the
#    server is stopped (SIGTERM), PostgreSQL started, and the server started
#    again on that spool: the time until /readyz answers 200 and until a new
#    delivery is answered 200 (within READY_LIMIT_SECONDS), then the drain
#    without load and a count of the stored rows.
#
# Environment: RATE (5000), OUTAGE_SECONDS (600), BEFORE_SECONDS (30),
# AFTER_SECONDS (load after the spool is drained, 30), DRAIN_LOAD_SECONDS (the
# longest the load goes on after PostgreSQL returns: OUTAGE_SECONDS / 2, where a
# drain at 3x the arrival rate ends after OUTAGE_SECONDS / 3), CONVERSATIONS (10000),
# CONNECTIONS (256), RETRY_FRACTION (0.05), SPOOL_MAX_BYTES (from the sizing
# rule: 2 x 400 bytes x RATE x OUTAGE_SECONDS, at least 2 x RESTART_SPOOL_BYTES),
# RESTART_SPOOL_BYTES (1073741824), RSS_LIMIT_MB (200), READY_LIMIT_SECONDS (5),
# DRAIN_FACTOR (3), SKIP_OUTAGE / SKIP_RESTART (1 skips that part), SEED (1),
# SERVER_PORT (18091), OUTAGE_PG_PORT (first port tried, 30432), SERVER_ARGS
# (extra kapso-ingest flags), RESULTS_DIR, KAPSO_WEBHOOK_SECRET, and
# scripts/lib.sh's (KAPSO_BUILD_DIR, KAPSO_SKIP_PACKAGES, BUILD_JOBS). A
# DATABASE_URL in the environment is not used: the outage needs a PostgreSQL
# this script may stop.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
RATE="${RATE:-5000}"
OUTAGE_SECONDS="${OUTAGE_SECONDS:-600}"
BEFORE_SECONDS="${BEFORE_SECONDS:-30}"
AFTER_SECONDS="${AFTER_SECONDS:-30}"
DRAIN_LOAD_SECONDS="${DRAIN_LOAD_SECONDS:-$((OUTAGE_SECONDS / 2))}"
CONVERSATIONS="${CONVERSATIONS:-10000}"
CONNECTIONS="${CONNECTIONS:-256}"
RETRY_FRACTION="${RETRY_FRACTION:-0.05}"
RESTART_SPOOL_BYTES="${RESTART_SPOOL_BYTES:-1073741824}"
RSS_LIMIT_MB="${RSS_LIMIT_MB:-200}"
READY_LIMIT_SECONDS="${READY_LIMIT_SECONDS:-5}"
DRAIN_FACTOR="${DRAIN_FACTOR:-3}"
SKIP_OUTAGE="${SKIP_OUTAGE:-0}"
SKIP_RESTART="${SKIP_RESTART:-0}"
SEED="${SEED:-1}"
SERVER_PORT="${SERVER_PORT:-18091}"
SERVER_ARGS="${SERVER_ARGS:-}"
RESULTS_DIR="${RESULTS_DIR:-$ROOT/benchmarks/results/outage-$(date +%Y%m%d-%H%M%S)}"
export KAPSO_WEBHOOK_SECRET="${KAPSO_WEBHOOK_SECRET:-kapso-bench-secret}"
# The sizing rule with a generous 400 bytes per event (measured: see the
# figures this script prints), twice over.
SPOOL_MAX_BYTES="${SPOOL_MAX_BYTES:-$((2 * 400 * RATE * OUTAGE_SECONDS))}"
if [ "$SPOOL_MAX_BYTES" -lt $((2 * RESTART_SPOOL_BYTES)) ]; then
  SPOOL_MAX_BYTES=$((2 * RESTART_SPOOL_BYTES))
fi

log() { printf '[outage] %s\n' "$*" >&2; }
die() { printf '[outage] error: %s\n' "$*" >&2; exit 1; }

for value in "$RATE" "$OUTAGE_SECONDS" "$BEFORE_SECONDS" "$AFTER_SECONDS" \
  "$DRAIN_LOAD_SECONDS" "$CONVERSATIONS" "$CONNECTIONS" "$RESTART_SPOOL_BYTES" \
  "$RSS_LIMIT_MB" "$READY_LIMIT_SECONDS" "$DRAIN_FACTOR" "$SEED" "$SPOOL_MAX_BYTES"; do
  [[ "$value" =~ ^[0-9]+$ ]] || die "numeric settings must be whole numbers (got '$value')"
done

# -- packages, build, a PostgreSQL of our own --------------------------------------------

# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
kapso_install_packages
kapso_build kapso-ingest kapso-bench
BENCH="$BUILD_DIR/kapso-bench"
for tool in "$BINARY" "$BENCH"; do
  [ -x "$tool" ] || die "$tool is missing: build it first"
done
for tool in curl psql openssl; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is needed"
done
mkdir -p "$RESULTS_DIR"
log "results go to $RESULTS_DIR"

# lib.sh keeps its cluster under BUILD_DIR: point it at a directory of its own,
# so that stopping it disturbs no other cluster (the tests' included).
unset DATABASE_URL
BUILD_DIR="$BUILD_DIR/outage-pg"
mkdir -p "$BUILD_DIR"
# Below the ephemeral range (32768-60999 on Linux): while it is stopped, no
# client connection can take its port as its own source port.
PGPORT_PRIVATE="${OUTAGE_PG_PORT:-30432}" kapso_pg_start
PG_BIN="$(kapso_pg_bin)"
ADMIN_URL="$DATABASE_URL"

pg_stop() {
  kapso_as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w stop >/dev/null
}
pg_start() {
  kapso_as_pg "$PG_BIN/pg_ctl" -w -t 600 -D "$PGDATA_DIR" -l "$PGLOG_FILE" start >/dev/null \
    || { tail -n 20 "$PGLOG_FILE" >&2; die "PostgreSQL did not start again"; }
}

# -- what we start, we stop ----------------------------------------------------------------

STARTED_PIDS=()
SCRATCH_DATABASES=()
stop_pid() {
  local pid="$1" signal="${2:-TERM}"
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -"$signal" "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid db
  for pid in "${STARTED_PIDS[@]}"; do stop_pid "$pid"; done
  if kapso_pg_running_pid >/dev/null 2>&1 || pg_start 2>/dev/null; then
    for db in "${SCRATCH_DATABASES[@]}"; do
      psql "$ADMIN_URL" -qXc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
  fi
  kapso_pg_stop_if_started
}
trap cleanup EXIT
trap 'exit 130' INT TERM

scratch_database() { # NAME: a fresh, migrated database; prints its URL
  local name="$1" url
  psql "$ADMIN_URL" -qXc "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null
  psql "$ADMIN_URL" -qXc "CREATE DATABASE $name" >/dev/null
  SCRATCH_DATABASES+=("$name")
  url="$(printf '%s' "$ADMIN_URL" | sed -E "s#/[^/?]*([?].*)?\$#/$name\\1#")"
  DATABASE_URL="$url" "$BINARY" migrate >"$RESULTS_DIR/$name.migrate.log" 2>&1 \
    || { cat "$RESULTS_DIR/$name.migrate.log" >&2; die "migration of $name failed"; }
  printf '%s\n' "$url"
}

# Starts kapso-ingest in the background; sets SERVER_PID.
launch_server() { # NAME URL SPOOL_DIR
  local name="$1" url="$2" spool="$3"
  mkdir -p "$RESULTS_DIR/$name.server"
  # shellcheck disable=SC2086  # SERVER_ARGS is a list of flags
  (cd "$RESULTS_DIR/$name.server" && DATABASE_URL="$url" exec "$BINARY" \
    --http.host=127.0.0.1 --http.port="$SERVER_PORT" --spool.dir="$spool" \
    --spool.max-bytes="$SPOOL_MAX_BYTES" $SERVER_ARGS) \
    >>"$RESULTS_DIR/$name.server.log" 2>&1 &
  SERVER_PID=$!
  STARTED_PIDS+=("$SERVER_PID")
}

wait_ready() { # PID: /readyz 200 within 30 s
  for _ in $(seq 1 300); do
    curl -fsS -m 1 "http://127.0.0.1:$SERVER_PORT/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$1" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

metric() { # NAME: a sample without labels from /metrics ("" when unreadable)
  local page
  page="$(curl -fsS -m 2 "http://127.0.0.1:$SERVER_PORT/metrics" 2>/dev/null || true)"
  awk -v n="$1" '$1 == n { printf "%.0f\n", $2; exit }' <<<"$page"
}

memory_kb() { # PID KEY (VmRSS, VmHWM)
  awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# CPU seconds of a process and its children, live and exited (a postmaster
# with its backends). /proc/PID/stat after the ") " that ends the command
# name: utime, stime, cutime, cstime are fields 12..15.
cpu_seconds() { # PID
  local pid="$1" ticks=0 child part
  if [ "${pid:-0}" -gt 1 ] && [ -r "/proc/$pid/stat" ]; then
    for child in "$pid" $(pgrep -P "$pid" 2>/dev/null || true); do
      part="$(sed 's/^.*) //' "/proc/$child/stat" 2>/dev/null \
        | awk -v own="$([ "$child" = "$pid" ] && echo 1 || echo 0)" \
            '{ print $12 + $13 + own * ($14 + $15) }')"
      ticks=$((ticks + ${part:-0}))
    done
  fi
  awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}
postmaster() { head -n1 "$PGDATA_DIR/postmaster.pid" 2>/dev/null || echo 0; }
# CPU seconds the whole machine spent busy (all cores), from /proc/stat.
machine_busy() {
  awk -v hz="$(getconf CLK_TCK)" '$1 == "cpu" {
    printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / hz; exit }' /proc/stat
}
# What one stretch of the run cost: the server's, PostgreSQL's, kapso-bench's
# and everything else's share of the machine's cores, in percent of all of them.
SHARES=()
cpu_mark() { # prints "wall machine server postgres bench postmaster-pid"
  local pm
  pm="$(postmaster)"
  printf '%s %s %s %s %s %s\n' "$(now)" "$(machine_busy)" "$(cpu_seconds "$1")" \
    "$(cpu_seconds "$pm")" "$(cpu_seconds "$2")" "$pm"
}
cpu_shares() { # LABEL MARK_FROM MARK_TO
  SHARES+=("$(awk -v label="$1" -v cores="$(nproc)" -v from="$2" -v to="$3" 'BEGIN {
    split(from, a, " "); split(to, b, " "); wall = b[1] - a[1]
    if (wall <= 0) exit
    busy = b[2] - a[2]; srv = b[3] - a[3]; pg = b[4] - a[4]; bench = b[5] - a[5]
    # PostgreSQL restarted in between: only the new postmaster is counted.
    if (a[6] != b[6]) pg = b[4]
    cap = wall * cores / 100
    printf "%-18s %6.0f s  machine busy %3.0f%%: kapso-ingest %3.0f%%, PostgreSQL %3.0f%%, kapso-bench %3.0f%%, other processes %3.0f%%",
      label, wall, busy / cap, srv / cap, pg / cap, bench / cap, (busy - srv - pg - bench) / cap }')")
}
micros_per() { # SECONDS_A SECONDS_B COUNT: (B - A) / COUNT in microseconds
  awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { if (n > 0) printf "%.1f", (b - a) * 1e6 / n; else print "-" }'
}

now() { date +%s.%N; }
# Prints the time at which the server's spool was empty (polled on /metrics),
# or nothing when it was not within SECONDS of FROM.
wait_drained() { # FROM SECONDS
  while [ "$(elapsed "$1" "$(now)" | cut -d. -f1)" -lt "$2" ]; do
    if [ "$(metric kapso_spool_bytes)" = 0 ] && [ "$(metric kapso_spool_records)" = 0 ]; then
      now
      return 0
    fi
    sleep 0.5
  done
}
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
verdict() { # VALUE OP LIMIT
  awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
    if (v == "" || v == "-") { print "-"; exit }
    ok = (op == ">=") ? (v + 0 >= l + 0) : (op == "<=") ? (v + 0 <= l + 0) : (v + 0 < l + 0)
    print ok ? "PASS" : "FAIL" }'
}
TARGETS=()
target() { # DESCRIPTION VALUE OP LIMIT
  TARGETS+=("$(printf '%-58s %14s %12s %6s' "$1" "$2" "$3 $4" "$(verdict "$2" "$3" "$4")")")
}
INFO=()
info() { INFO+=("$(printf '%-58s %14s' "$1" "$2")"); }

# Waits until kapso-bench's stderr shows that its load began (pre-building a
# large pool takes a while).
wait_for_load() { # PID STDERR_FILE
  for _ in $(seq 1 6000); do
    grep -q '\] phase ' "$2" 2>/dev/null && return 0
    kill -0 "$1" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# Samples the server once a second: t, RSS kB, spool bytes, spooled, replayed.
sample() { # PID FILE
  local pid="$1" file="$2" start
  start="$(now)"
  printf 't_s rss_kb spool_bytes spooled_events replayed_events\n' >"$file"
  while kill -0 "$pid" 2>/dev/null; do
    printf '%s %s %s %s %s\n' "$(elapsed "$start" "$(now)")" "$(memory_kb "$pid" VmRSS)" \
      "$(metric kapso_spool_bytes)" "$(metric kapso_spooled_events_total)" \
      "$(metric kapso_replayed_events_total)" >>"$file"
    sleep 1
  done
}

log "machine: $(nproc) cores, $(awk '/MemAvailable/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo) GiB available, load average $(cut -d' ' -f1-3 /proc/loadavg)"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

# -- 1. the outage ------------------------------------------------------------------------

if [ "$SKIP_OUTAGE" != 1 ]; then
  url="$(scratch_database kapso_outage)"
  launch_server outage "$url" "$RESULTS_DIR/outage.spool"
  wait_ready "$SERVER_PID" || { tail -n 20 "$RESULTS_DIR/outage.server.log" >&2; die "kapso-ingest is not ready"; }
  OUTAGE_SERVER="$SERVER_PID"
  sample "$OUTAGE_SERVER" "$RESULTS_DIR/outage.samples" &
  STARTED_PIDS+=("$!")

  # A bound: the load is stopped (SIGINT) AFTER_SECONDS after the spool is
  # drained; 60 s for stopping and starting PostgreSQL (crash recovery).
  load_seconds=$((BEFORE_SECONDS + OUTAGE_SECONDS + 60 + DRAIN_LOAD_SECONDS + AFTER_SECONDS))
  # Every delivery of the run pre-built: ~0.9 KB each.
  pool_mb=$((RATE * load_seconds * 11 / 10 / 1000 + 256))
  log "outage: $RATE deliveries/s: ${BEFORE_SECONDS}s, then PostgreSQL stopped for" \
    "${OUTAGE_SECONDS}s, then while the spool drains (at most ${DRAIN_LOAD_SECONDS}s) and" \
    "${AFTER_SECONDS}s more; spool.max-bytes $SPOOL_MAX_BYTES"
  "$BENCH" --url "http://127.0.0.1:$SERVER_PORT/api/webhook/kapso" --database-url "$url" \
    --form single --rate "$RATE" --connections "$CONNECTIONS" --conversations "$CONVERSATIONS" \
    --retry-fraction "$RETRY_FRACTION" --duration "$load_seconds" --warmup 0 --drain 60 \
    --phases before,outage,drain,after --setup --verify --seed "$SEED" \
    --max-pool-mb "$pool_mb" --label outage --json "$RESULTS_DIR/outage.json" \
    --plot "$RESULTS_DIR/outage.svg" --cpu-pid "server=$OUTAGE_SERVER" \
    >"$RESULTS_DIR/outage.txt" 2>"$RESULTS_DIR/outage.bench.log" &
  BENCH_PID=$!
  STARTED_PIDS+=("$BENCH_PID")
  wait_for_load "$BENCH_PID" "$RESULTS_DIR/outage.bench.log" \
    || { tail -n 20 "$RESULTS_DIR/outage.bench.log" >&2; die "kapso-bench did not start its load"; }
  load_began="$(now)"
  mark_before="$(cpu_mark "$OUTAGE_SERVER" "$BENCH_PID")"
  sleep "$BEFORE_SECONDS"

  spooled_before="$(metric kapso_spooled_events_total)"
  mark_down="$(cpu_mark "$OUTAGE_SERVER" "$BENCH_PID")"
  pg_stop
  kill -USR1 "$BENCH_PID"
  down_at="$(now)"
  log "outage: PostgreSQL stopped"
  for ((left = OUTAGE_SECONDS; left > 0; left -= 60)); do
    step=$((left < 60 ? left : 60))
    sleep "$step"
    log "outage: $(elapsed "$down_at" "$(now)")s down, spool $(metric kapso_spool_bytes) bytes," \
      "$(metric kapso_spooled_events_total) events spooled, RSS" \
      "$(($(memory_kb "$OUTAGE_SERVER" VmRSS) / 1024)) MB"
  done
  spool_bytes="$(metric kapso_spool_bytes)"
  spool_files="$(du -sb "$RESULTS_DIR/outage.spool" | cut -f1)"
  spooled="$(($(metric kapso_spooled_events_total) - spooled_before))"
  rss_outage_kb="$(memory_kb "$OUTAGE_SERVER" VmHWM)"
  replayed_before="$(metric kapso_replayed_events_total)"
  mark_stopping="$(cpu_mark "$OUTAGE_SERVER" "$BENCH_PID")"
  pg_start
  up_at="$(now)"
  mark_up="$(cpu_mark "$OUTAGE_SERVER" "$BENCH_PID")"
  kill -USR1 "$BENCH_PID"
  server_cpu_up="$(cpu_seconds "$OUTAGE_SERVER")"
  pg_cpu_up="$(cpu_seconds "$(postmaster)")"
  log "outage: PostgreSQL back after $(elapsed "$down_at" "$up_at")s; $spooled events in" \
    "$spool_bytes spool bytes; draining"

  drained_at="$(wait_drained "$up_at" $((3 * OUTAGE_SECONDS + 300)))"
  replayed="$(($(metric kapso_replayed_events_total) - replayed_before))"
  server_cpu_drained="$(cpu_seconds "$OUTAGE_SERVER")"
  pg_cpu_drained="$(cpu_seconds "$(postmaster)")"
  mark_drained="$(cpu_mark "$OUTAGE_SERVER" "$BENCH_PID")"
  cpu_shares "before the outage" "$mark_before" "$mark_down"
  cpu_shares "outage" "$mark_down" "$mark_stopping"
  cpu_shares "drain" "$mark_up" "$mark_drained"
  # The last phase: kapso-bench verifies once it is in it (also when its load
  # ended before the drain did).
  kill -USR1 "$BENCH_PID" 2>/dev/null || true
  if grep -q 'the load ended in phase' "$RESULTS_DIR/outage.bench.log"; then
    log "outage: the load ended before the spool was drained (raise DRAIN_LOAD_SECONDS)"
  else
    sleep "$AFTER_SECONDS"
    # Unless it ended meanwhile (a signal during --verify would end it).
    grep -q 'the load ended in phase\|stopped by' "$RESULTS_DIR/outage.bench.log" \
      || [ "$(elapsed "$load_began" "$(now)" | cut -d. -f1)" -ge $((load_seconds - 2)) ] \
      || kill -INT "$BENCH_PID" 2>/dev/null || true
  fi
  if [ -n "$drained_at" ]; then
    drain_seconds="$(elapsed "$up_at" "$drained_at")"
    log "outage: spool drained ${drain_seconds}s after PostgreSQL returned ($replayed events)"
  else
    drain_seconds=""
    log "outage: the spool was not drained within ${bound}s"
  fi
  status=0
  wait "$BENCH_PID" || status=$?
  rss_peak_kb="$(memory_kb "$OUTAGE_SERVER" VmHWM)"
  cat "$RESULTS_DIR/outage.txt"
  [ "$status" = 0 ] || log "kapso-bench exited with status $status"

  # kapso-bench's phase lines: "  phase NAME: from S s for L s, sent N, answers 200: A ...,
  # timeouts T, io errors E, acknowledged D (V events), 200 latency ms p50 X p99 Y max Z"
  phase_field() { # PHASE FIELD
    sed -n "s/^  phase $1: .*$2 \\([0-9.]*\\).*/\\1/p" "$RESULTS_DIR/outage.txt" | head -n1
  }
  phase_non_200() { # PHASE: answers other than 200, timeouts and I/O errors
    sed -n "s/^  phase $1: .*answers\\(.*\\), timeouts \\([0-9]*\\), io errors \\([0-9]*\\),.*/\\1 \\2 \\3/p" \
      "$RESULTS_DIR/outage.txt" | head -n1 \
      | awk '{ n = 0; for (i = 1; i <= NF; i++) if ($i ~ /:$/ && $i != "200:") n += $(i + 1);
               print n + $(NF - 1) + $NF }'
  }
  outage_sent="$(phase_field outage sent)"
  outage_acked="$(phase_field outage acknowledged)"
  outage_other="$(phase_non_200 outage)"
  drain_sent="$(phase_field drain sent)"
  drain_length="$(sed -n 's/^  phase drain: from [0-9.]* s for \([0-9.]*\) s.*/\1/p' "$RESULTS_DIR/outage.txt")"
  drain_p99="$(sed -n 's/^  phase drain: .* p99 \([0-9.]*\) max.*/\1/p' "$RESULTS_DIR/outage.txt")"
  drain_other="$(phase_non_200 drain)"
  arrival="$(awk -v n="${drain_sent:-0}" -v s="${drain_length:-0}" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print "-" }')"
  drain_rate="-"
  [ -z "$drain_seconds" ] || drain_rate="$(awk -v n="$replayed" -v s="$drain_seconds" 'BEGIN { printf "%.0f", n / s }')"
  per_event="$(awk -v b="$spool_bytes" -v n="$spooled" 'BEGIN { if (n > 0) printf "%.1f", b / n; else print "-" }')"
  verify_line="$(grep -m1 '^verify:' "$RESULTS_DIR/outage.txt" || echo 'verify: none')"

  target "outage: deliveries sent while PostgreSQL was down" "${outage_sent:-0}" ">=" 1
  target "outage: answered other than 200 (or not at all)" "${outage_other:-?}" "<=" 0
  target "outage: server peak RSS MB (VmHWM, whole run)" "$((rss_peak_kb / 1024))" "<" "$RSS_LIMIT_MB"
  info "before: deliveries per second answered 200 (of $RATE)" \
    "$(awk -v n="$(phase_field before acknowledged)" -v s="$(sed -n 's/^  phase before: from [0-9.]* s for \([0-9.]*\) s.*/\1/p' "$RESULTS_DIR/outage.txt")" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print "-" }')"
  info "outage: server peak RSS MB at the end of the outage" "$((rss_outage_kb / 1024))"
  info "outage: server CPU us per spooled event" \
    "$(micros_per "$(cut -d' ' -f3 <<<"$mark_down")" "$(cut -d' ' -f3 <<<"$mark_stopping")" "$spooled")"
  info "outage: events spooled" "$spooled"
  info "outage: spool bytes (kapso_spool_bytes; files $spool_files)" "$spool_bytes"
  info "outage: spool bytes per event" "$per_event"
  target "drain: events replayed per second" "$drain_rate" ">=" "$((DRAIN_FACTOR * RATE))"
  target "drain: replayed / arrival rate" "$(ratio "${drain_rate/-/0}" "${arrival/-/0}")" ">=" "$DRAIN_FACTOR"
  info "drain: seconds from PostgreSQL's return to an empty spool" "${drain_seconds:--}"
  info "drain: new deliveries per second meanwhile" "$arrival"
  info "drain: p99 ms of new deliveries meanwhile" "${drain_p99:--}"
  # Replayed and new events together: what the drain cost per event stored.
  drain_events=$((replayed + ${drain_sent:-0}))
  info "drain: server CPU us per event stored (replayed or new)" \
    "$(micros_per "$server_cpu_up" "$server_cpu_drained" "$drain_events")"
  info "drain: PostgreSQL CPU us per event stored (replayed or new)" \
    "$(micros_per "$pg_cpu_up" "$pg_cpu_drained" "$drain_events")"
  target "drain: new deliveries answered other than 200" "${drain_other:-?}" "<=" 0
  target "verify: the tables are exact (kapso-bench --verify)" \
    "$(case "$verify_line" in 'verify: OK'*) echo 1 ;; *) echo 0 ;; esac)" ">=" 1
  SIZING="$(awk -v b="$per_event" -v r="$RATE" -v o="$OUTAGE_SECONDS" 'BEGIN {
    if (b == "-") exit
    printf "sizing: spool.max-bytes >= bytes per event x deliveries/s x seconds of outage:\n"
    printf "  %.0f B x %d/s x %d s = %.2f GB;  an hour: %.2f GB;  an hour at 10,000/s: %.2f GB\n",
      b, r, o, b * r * o / 1e9, b * r * 3600 / 1e9, b * 10000 * 3600 / 1e9 }')"
  stop_pid "$OUTAGE_SERVER"
  : "${outage_acked:=}"
fi

# -- 2. a restart with a large spool ----------------------------------------------------------

if [ "$SKIP_RESTART" != 1 ]; then
  url="$(scratch_database kapso_outage_restart)"
  spool="$RESULTS_DIR/restart.spool"
  launch_server restart "$url" "$spool"
  wait_ready "$SERVER_PID" || { tail -n 20 "$RESULTS_DIR/restart.server.log" >&2; die "kapso-ingest is not ready"; }
  FILL_SERVER="$SERVER_PID"
  prefix=9100000000
  log "restart: filling a spool of $RESTART_SPOOL_BYTES bytes with PostgreSQL stopped"
  # Batches of 50 from a pool of 200,000 events, sent again and again: the
  # server cannot tell a copy from a new event while PostgreSQL is away.
  "$BENCH" --url "http://127.0.0.1:$SERVER_PORT/api/webhook/kapso" --database-url "$url" \
    --form batch --batch-size 50 --pool 4000 --cycle --connections 16 \
    --conversations "$CONVERSATIONS" --retry-fraction 0 --duration 3600 --drain 30 \
    --phone-number-id-prefix "$prefix" --setup --seed "$SEED" --phases fill --label restart-fill \
    >"$RESULTS_DIR/restart-fill.txt" 2>"$RESULTS_DIR/restart-fill.bench.log" &
  FILL_PID=$!
  STARTED_PIDS+=("$FILL_PID")
  wait_for_load "$FILL_PID" "$RESULTS_DIR/restart-fill.bench.log" \
    || { tail -n 20 "$RESULTS_DIR/restart-fill.bench.log" >&2; die "the fill did not start"; }
  pg_stop
  fill_started="$(now)"
  while :; do
    bytes="$(metric kapso_spool_bytes)"
    [ "${bytes:-0}" -ge "$RESTART_SPOOL_BYTES" ] && break
    kill -0 "$FILL_PID" 2>/dev/null || die "the fill ended early (see $RESULTS_DIR/restart-fill.txt)"
    [ "$(elapsed "$fill_started" "$(now)" | cut -d. -f1)" -lt 3000 ] || die "the spool did not fill"
    sleep 0.5
  done
  kill -INT "$FILL_PID"
  wait "$FILL_PID" || true
  stop_pid "$FILL_SERVER"
  spool_files="$(du -sb "$spool" | cut -f1)"
  log "restart: $spool_files bytes of spool files after $(elapsed "$fill_started" "$(now)")s; PostgreSQL back, server restarting"
  acked_deliveries="$(sed -n 's/^  deliveries  [0-9]* sent, \([0-9]*\) acknowledged.*/\1/p' "$RESULTS_DIR/restart-fill.txt")"
  never_acked="$(sed -n 's/.* \([0-9]*\) never acknowledged.*/\1/p' "$RESULTS_DIR/restart-fill.txt")"
  pg_start

  # A delivery the restarted server has never seen, signed like Kapso's.
  ts="$(date +%s)"
  body="{\"message\":{\"id\":\"wamid.outage.probe.$ts\",\"timestamp\":\"$ts\",\"type\":\"text\","
  body+="\"from\":\"15559990000\",\"text\":{\"body\":\"probe\"},\"kapso\":{\"direction\":\"inbound\","
  body+="\"status\":\"received\",\"content\":\"probe\"}},\"conversation\":{\"id\":\"probe\","
  body+="\"phone_number\":\"+15559990000\",\"phone_number_id\":\"$prefix\"},"
  body+="\"phone_number_id\":\"$prefix\",\"is_new_conversation\":true}"
  signature="$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$KAPSO_WEBHOOK_SECRET" | awk '{ print $NF }')"

  started="$(now)"
  launch_server restart "$url" "$spool"
  RESTART_SERVER="$SERVER_PID"
  listening_at="" ready_at="" stored_at=""
  while [ -z "$ready_at" ] || [ -z "$stored_at" ]; do
    kill -0 "$RESTART_SERVER" 2>/dev/null || { tail -n 20 "$RESULTS_DIR/restart.server.log" >&2; die "the restarted server died"; }
    [ "$(elapsed "$started" "$(now)" | cut -d. -f1)" -lt 60 ] || break
    if [ -z "$listening_at" ] && curl -fsS -m 1 "http://127.0.0.1:$SERVER_PORT/healthz" >/dev/null 2>&1; then
      listening_at="$(now)"
    fi
    if [ -n "$listening_at" ] && [ -z "$ready_at" ] \
        && curl -fsS -m 1 "http://127.0.0.1:$SERVER_PORT/readyz" >/dev/null 2>&1; then
      ready_at="$(now)"
    fi
    if [ -n "$ready_at" ] && [ -z "$stored_at" ]; then
      code="$(curl -sS -m 5 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
        -H 'X-Webhook-Event: whatsapp.message.received' -H "X-Webhook-Signature: $signature" \
        --data-binary "$body" "http://127.0.0.1:$SERVER_PORT/api/webhook/kapso" || true)"
      [ "$code" = 200 ] && stored_at="$(now)"
    fi
    sleep 0.02
  done
  ready_s="-" first_s="-"
  [ -z "$ready_at" ] || ready_s="$(elapsed "$started" "$ready_at")"
  [ -z "$stored_at" ] || first_s="$(elapsed "$started" "$stored_at")"
  log "restart: listening after $([ -n "$listening_at" ] && elapsed "$started" "$listening_at")s," \
    "/readyz 200 after ${ready_s}s, a new delivery answered 200 after ${first_s}s"
  replay_from="$(now)"
  server_cpu_from="$(cpu_seconds "$RESTART_SERVER")"
  pg_cpu_from="$(cpu_seconds "$(postmaster)")"
  replayed_from="$(metric kapso_replayed_events_total)"
  drained="$(wait_drained "$replay_from" 3600)"
  restart_replayed="$(metric kapso_replayed_events_total)"
  server_us="$(micros_per "$server_cpu_from" "$(cpu_seconds "$RESTART_SERVER")" "$((restart_replayed - ${replayed_from:-0}))")"
  pg_us="$(micros_per "$pg_cpu_from" "$(cpu_seconds "$(postmaster)")" "$((restart_replayed - ${replayed_from:-0}))")"
  restart_rss_kb="$(memory_kb "$RESTART_SERVER" VmHWM)"
  drain_rate_idle="-"
  [ -z "$drained" ] || drain_rate_idle="$(awk -v n="$restart_replayed" -v s="$(elapsed "$started" "$drained")" 'BEGIN { printf "%.0f", n / s }')"
  stop_pid "$RESTART_SERVER"
  # Every event of the pool was sent (and answered 200) at least once: each
  # stored once, the probe too, and unread counts that add up.
  pool_events=$((4000 * 50))
  rows="$(psql "$url" -XtAc "SELECT count(*), count(DISTINCT (workspace_id, kapso_message_id)) FROM messages" | tr '|' ' ')"
  unread="$(psql "$url" -XtAc "SELECT coalesce(sum(unread_count), 0) FROM conversations")"
  read -r stored distinct <<<"$rows"
  expected=$((pool_events + 1))
  exact=0
  if [ "$stored" = "$expected" ] && [ "$distinct" = "$expected" ] && [ "$unread" = "$expected" ] \
      && [ "${never_acked:-1}" = 0 ]; then
    exact=1
  fi
  log "restart: $stored message rows ($distinct distinct, unread $unread, expected $expected;" \
    "${acked_deliveries:-?} deliveries acknowledged, ${never_acked:-?} never)"

  target "restart: spool bytes on disk at the restart" "$spool_files" ">=" "$RESTART_SPOOL_BYTES"
  target "restart: seconds until /readyz answers 200" "$ready_s" "<=" "$READY_LIMIT_SECONDS"
  target "restart: seconds until a new delivery is answered 200" "$first_s" "<=" "$READY_LIMIT_SECONDS"
  info "restart: events replayed per second (no other load)" "$drain_rate_idle"
  info "restart: server peak RSS MB while replaying" "$((restart_rss_kb / 1024))"
  info "restart: server CPU us per replayed event" "$server_us"
  info "restart: PostgreSQL CPU us per replayed event" "$pg_us"
  target "restart: every spooled event stored once, unread exact" "$exact" ">=" 1
fi

# -- the figures ---------------------------------------------------------------------------

{
  printf 'kapso-ingest outage benchmark, %s, %s cores, load average %s at the start and %s at the end\n' \
    "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" "$LOAD_BEFORE" "$(cut -d' ' -f1-3 /proc/loadavg)"
  printf '%s deliveries/s (single, open loop, %s connections, %s conversations, %s re-sent);' \
    "$RATE" "$CONNECTIONS" "$CONVERSATIONS" "$RETRY_FRACTION"
  printf ' PostgreSQL stopped %ss; spool.max-bytes %s%s\n' "$OUTAGE_SECONDS" "$SPOOL_MAX_BYTES" \
    "${SERVER_ARGS:+; $SERVER_ARGS}"
  [ -z "${verify_line:-}" ] || printf '%s\n' "$verify_line"
  printf '\n%-58s %14s %12s %6s\n' target measured limit result
  for row in "${TARGETS[@]}"; do printf '%s\n' "$row"; done
  for row in "${INFO[@]}"; do printf '%s %12s\n' "$row" '(info)'; done
  [ -z "${SIZING:-}" ] || printf '\n%s\n' "$SIZING"
  if [ "${#SHARES[@]}" -gt 0 ]; then
    printf '\nCPU, in percent of all %s cores:\n' "$(nproc)"
    for row in "${SHARES[@]}"; do printf '  %s\n' "$row"; done
  fi
} | tee "$RESULTS_DIR/summary.txt"

ln -sfn "$RESULTS_DIR" "$ROOT/benchmarks/results/outage-latest" 2>/dev/null || true
if grep -q ' FAIL$' "$RESULTS_DIR/summary.txt"; then
  log "at least one target was missed"
  exit 1
fi
