#!/usr/bin/env bash
# What PostgreSQL alone needs to store messages in the inbox schema, with no
# server, no JSON and no conversation update: the floor under any ingestion
# figure on the same machine.
#
#   benchmarks/pg_floor.sh              # 60,000 rows per statement, 3 rounds
#   ROWS=20000 ROUNDS=5 benchmarks/pg_floor.sh
#
# It creates a scratch database next to $DATABASE_URL's (or in the private
# PostgreSQL that scripts/lib.sh starts, stopped again if it started it), applies the migrations with
# `kapso-ingest migrate`, inserts ROWS messages per statement over 1,000
# conversations (foreign keys, unique keys and indexes as the server has
# them), prints the time of each round and drops the database.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
ROWS="${ROWS:-60000}"
ROUNDS="${ROUNDS:-3}"

log() { printf '[pg-floor] %s\n' "$*" >&2; }
die() { printf '[pg-floor] error: %s\n' "$*" >&2; exit 1; }

# Packages, kapso-ingest (for its migrations) and the database, as run.sh does.
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
kapso_install_packages
kapso_build kapso-ingest
kapso_database
command -v psql >/dev/null 2>&1 || die "psql is needed"

SCRATCH="kapso_pg_floor_$$"
ADMIN_URL="$DATABASE_URL"
# The scratch database's URL: the same server, another database name.
SCRATCH_URL="$(printf '%s' "$DATABASE_URL" | sed -E "s#/[^/?]*([?].*)?\$#/$SCRATCH\\1#")"

cleanup() {
  psql "$ADMIN_URL" -qXc "DROP DATABASE IF EXISTS $SCRATCH" >/dev/null 2>&1 || true
  kapso_pg_stop_if_started
}
trap cleanup EXIT

psql "$ADMIN_URL" -qXc "CREATE DATABASE $SCRATCH" >/dev/null
DATABASE_URL="$SCRATCH_URL" "$BINARY" migrate >/dev/null

log "$ROWS messages per statement, $ROUNDS rounds, 1,000 conversations"
psql "$SCRATCH_URL" -qX -v ON_ERROR_STOP=1 -v rows="$ROWS" -v rounds="$ROUNDS" <<'SQL'
INSERT INTO workspaces (name, slug, kapso_phone_id) VALUES ('floor', 'floor', '1');
INSERT INTO contacts (workspace_id, phone)
  SELECT w.id, '+1555' || lpad(g::text, 7, '0') FROM workspaces w, generate_series(1, 1000) g;
INSERT INTO conversations (workspace_id, contact_id) SELECT workspace_id, id FROM contacts;
CREATE TEMP TABLE conv AS SELECT id, workspace_id, row_number() OVER () AS n FROM conversations;
CREATE TEMP TABLE timing (round int, seconds float8);
SELECT set_config('floor.rows', :'rows', false), set_config('floor.rounds', :'rounds', false)
\g /dev/null
DO $$
DECLARE
  rows int := current_setting('floor.rows')::int;
  rounds int := current_setting('floor.rounds')::int;
  started timestamptz;
BEGIN
  FOR r IN 1..rounds LOOP
    started := clock_timestamp();
    INSERT INTO messages (conversation_id, workspace_id, direction, sender_type, content,
                          message_type, kapso_message_id, metadata, created_at, status)
    SELECT c.id, c.workspace_id, 'inbound', 'contact', 'hello there ' || g, 'text',
           'wamid.floor.' || r || '.' || g, '{}'::jsonb, to_timestamp(1700000000 + g),
           'received'
    FROM generate_series(1, rows) g JOIN conv c ON c.n = 1 + g % 1000;
    INSERT INTO timing VALUES (r, extract(epoch FROM clock_timestamp() - started));
  END LOOP;
END $$;
SELECT format('round %s: %s rows in %s s = %s us per row', round, :rows,
              round(seconds::numeric, 3), round((seconds * 1e6 / :rows)::numeric, 1))
FROM timing ORDER BY round \g (tuples_only format=unaligned)
SQL
