#!/usr/bin/env bash
# `kapso-ingest migrate` on the Next.js route's database at scale, with the route still
# writing: how long the migration takes, the longest lock it holds on each table (and the
# statement that held it), and how long the route's own writes and the inbox's reads waited.
#
#   benchmarks/route_migration.sh               # 1,000,000 messages
#   MESSAGES=100000 benchmarks/route_migration.sh
#
# It creates a scratch database next to $DATABASE_URL's (or in the private PostgreSQL that
# scripts/lib.sh starts, stopped again if it started it) with the route's schema
# (tests/integration/route_schema.sql) and the damage its logic leaves, generated with SQL
# (benchmarks/route_damage.sql: its header gives the kinds and proportions). While
# `kapso-ingest migrate` runs, two more sessions (benchmarks/route_locks.sql) sample the
# table locks the migration holds every ~2 ms, and make the route's writes and the inbox's
# reads every ~10 ms, timing each. Prints the figures and drops the database.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
MESSAGES="${MESSAGES:-1000000}"
[[ "$MESSAGES" =~ ^[1-9][0-9]*$ ]] || { echo "MESSAGES must be a positive integer" >&2; exit 1; }

log() { printf '[route-migration] %s\n' "$*" >&2; }

# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
kapso_install_packages
kapso_build kapso-ingest
kapso_database
command -v psql >/dev/null 2>&1 || { log "psql is needed"; exit 1; }

SCRATCH="kapso_route_migration_$$"
ADMIN_URL="$DATABASE_URL"
SCRATCH_URL="$(printf '%s' "$DATABASE_URL" | sed -E "s#/[^/?]*([?].*)?\$#/$SCRATCH\\1#")"
WATCHERS=()
OUTPUT="$(mktemp)"

cleanup() {
  if [ "${#WATCHERS[@]}" -gt 0 ]; then
    psql "$SCRATCH_URL" -qXc "UPDATE bench.control SET stop = true" >/dev/null 2>&1 || true
    wait "${WATCHERS[@]}" 2>/dev/null || true
  fi
  rm -f "$OUTPUT"
  psql "$ADMIN_URL" -qXc "DROP DATABASE IF EXISTS $SCRATCH WITH (FORCE)" >/dev/null 2>&1 || true
  kapso_pg_stop_if_started
}
trap cleanup EXIT

now_ms() { echo $(($(date +%s%N) / 1000000)); }

psql "$ADMIN_URL" -qXc "CREATE DATABASE $SCRATCH" >/dev/null
log "building the route's database: $MESSAGES messages with its damage"
started="$(now_ms)"
psql "$SCRATCH_URL" -qX -v ON_ERROR_STOP=1 -f "$ROOT/tests/integration/route_schema.sql"
psql "$SCRATCH_URL" -qX -v ON_ERROR_STOP=1 -v messages="$MESSAGES" \
  -f "$ROOT/benchmarks/route_damage.sql" >/dev/null
psql "$SCRATCH_URL" -qX -v ON_ERROR_STOP=1 -f "$ROOT/benchmarks/route_locks.sql"
log "built in $((($(now_ms) - started) / 1000)) s:"
psql "$SCRATCH_URL" -X -c "
  SELECT (SELECT count(*) FROM messages) AS messages,
         (SELECT count(*) FROM contacts) AS contacts,
         (SELECT count(*) FROM conversations) AS conversations,
         (SELECT count(*) FROM (SELECT 1 FROM messages WHERE kapso_message_id IS NOT NULL
            GROUP BY workspace_id, kapso_message_id HAVING count(*) > 1) x) AS ids_stored_twice,
         (SELECT count(*) FROM (SELECT 1 FROM conversations GROUP BY contact_id
            HAVING count(*) > 1) x) AS split_conversations,
         (SELECT count(*) FROM messages WHERE kapso_message_id IS NULL) AS without_id"

psql "$SCRATCH_URL" -qXc "CALL bench.sample_locks()" &
WATCHERS+=("$!")
psql "$SCRATCH_URL" -qXc "CALL bench.probe_writes()" &
WATCHERS+=("$!")
sleep 1 # a baseline of the probes before the migration

log "kapso-ingest migrate"
started="$(now_ms)"
status=0
DATABASE_URL="$SCRATCH_URL" "$BINARY" migrate --persistence.migration-timeout-ms=3600000 \
  >"$OUTPUT" 2>&1 || status=$?
took_ms="$(($(now_ms) - started))"
sleep 1
psql "$SCRATCH_URL" -qXc "UPDATE bench.control SET stop = true"
wait "${WATCHERS[@]}"
WATCHERS=()
sed 's/^/  /' "$OUTPUT"
[ "$status" -eq 0 ] || { log "migrate failed with status $status"; exit 1; }

printf '\nkapso-ingest migrate of %s messages: %d.%03d s\n' "$MESSAGES" $((took_ms / 1000)) \
  $((took_ms % 1000))
printf '\nLongest lock the migration held, per table and mode (sampled every ~2 ms):\n'
psql "$SCRATCH_URL" -X -c "SELECT * FROM bench.longest_holds"
printf 'What the route and the inbox waited (one of each every ~10 ms, from 1 s before):\n'
psql "$SCRATCH_URL" -X -c "SELECT * FROM bench.probe_waits"
psql "$SCRATCH_URL" -X -c "
  SELECT (SELECT count(*) FROM messages) AS messages,
         (SELECT count(*) FROM contacts) AS contacts,
         (SELECT count(*) FROM conversations) AS conversations"
