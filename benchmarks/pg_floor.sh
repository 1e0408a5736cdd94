#!/usr/bin/env bash
# What PostgreSQL alone needs to store a batch scenario's messages in the inbox
# schema: ONE statement inserting ROWS message rows over CONVERSATIONS existing
# conversations, with no server, no JSON, no conversation update and no network.
# The floor under the batch50-new10k scenario of run_scenarios.sh, which runs
# this script in the same run.
#
#   benchmarks/pg_floor.sh           # 100,000 rows over 10,000 conversations, 3 rounds
#   ROWS=20000 ROUNDS=1 benchmarks/pg_floor.sh
#   FLOOR_JSON=floor.json benchmarks/pg_floor.sh   # the figures as JSON too
#
# It creates a scratch database next to $DATABASE_URL's (or in the private
# PostgreSQL that scripts/lib.sh starts, stopped again if it started it),
# applies the migrations with `kapso-ingest migrate` (foreign keys, unique
# keys and indexes as the server has them), creates one workspace and its
# CONVERSATIONS contacts and conversations, then per round empties the
# messages table and times one INSERT ... SELECT of ROWS rows (statement and
# commit, as psql's \timing sees them). Prints each round and the median in
# rows/s, and drops the database.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
ROWS="${ROWS:-100000}"
CONVERSATIONS="${CONVERSATIONS:-10000}"
ROUNDS="${ROUNDS:-3}"
FLOOR_JSON="${FLOOR_JSON:-}"

log() { printf '[pg-floor] %s\n' "$*" >&2; }
die() { printf '[pg-floor] error: %s\n' "$*" >&2; exit 1; }

for value in "$ROWS" "$CONVERSATIONS" "$ROUNDS"; do
  [[ "$value" =~ ^[1-9][0-9]*$ ]] || die "ROWS, CONVERSATIONS and ROUNDS must be positive integers"
done

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
OUTPUT="$(mktemp)"

cleanup() {
  rm -f "$OUTPUT"
  psql "$ADMIN_URL" -qXc "DROP DATABASE IF EXISTS $SCRATCH WITH (FORCE)" >/dev/null 2>&1 || true
  kapso_pg_stop_if_started
}
trap cleanup EXIT

psql "$ADMIN_URL" -qXc "CREATE DATABASE $SCRATCH" >/dev/null
DATABASE_URL="$SCRATCH_URL" "$BINARY" migrate >/dev/null

log "$ROWS message rows in one statement over $CONVERSATIONS conversations, $ROUNDS rounds"
# Rows shaped like the bench's: ids and texts of the same length, one
# workspace, every conversation's messages in timestamp order.
{
  cat <<SQL
INSERT INTO workspaces (name, slug, kapso_phone_id) VALUES ('floor', 'floor', '1');
INSERT INTO contacts (workspace_id, phone, name)
  SELECT w.id, '+1555' || lpad(g::text, 7, '0'), 'Bench Customer ' || g
  FROM workspaces w, generate_series(0, $CONVERSATIONS - 1) g;
INSERT INTO conversations (workspace_id, contact_id) SELECT workspace_id, id FROM contacts;
CREATE TEMP TABLE conv AS
  SELECT id, workspace_id, (row_number() OVER (ORDER BY id)) - 1 AS n FROM conversations;
ANALYZE contacts, conversations, conv;
SQL
  for round in $(seq 1 "$ROUNDS"); do
    cat <<SQL
TRUNCATE messages;
\\echo round $round
\\timing on
INSERT INTO messages (conversation_id, workspace_id, direction, sender_type, content,
                      message_type, kapso_message_id, metadata, created_at, status)
SELECT c.id, c.workspace_id, 'inbound', 'contact',
       'bench 18c2b7e5a10-0000000$round conversation ' || c.n || ' message ' || g,
       'text', 'wamid.bench.18c2b7e5a10-0000000$round.' || g, '{}'::jsonb,
       to_timestamp(1700000000 + g), 'received'
FROM generate_series(1, $ROWS) g JOIN conv c ON c.n = g % $CONVERSATIONS;
\\timing off
SQL
  done
} | psql "$SCRATCH_URL" -qX -v ON_ERROR_STOP=1 >"$OUTPUT"

# psql prints "Time: 3283.123 ms" (plus " (00:03.283)" from a second on).
mapfile -t ROUND_MS < <(awk '/^Time: / { print $2 }' "$OUTPUT")
[ "${#ROUND_MS[@]}" = "$ROUNDS" ] || { cat "$OUTPUT" >&2; die "expected $ROUNDS timings"; }

round=0
for ms in "${ROUND_MS[@]}"; do
  round=$((round + 1))
  awk -v r="$round" -v n="$ROWS" -v ms="$ms" 'BEGIN {
    printf "round %d: %d rows in %.3f s = %.0f rows/s, %.1f us per row\n",
           r, n, ms / 1000, n * 1000 / ms, ms * 1000 / n }'
done
MEDIAN_MS="$(printf '%s\n' "${ROUND_MS[@]}" | sort -g | awk '
  { v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
RATE="$(awk -v n="$ROWS" -v ms="$MEDIAN_MS" 'BEGIN { printf "%.0f", n * 1000 / ms }')"
printf 'floor: %s rows/s (median of %s rounds of %s rows over %s conversations)\n' \
  "$RATE" "$ROUNDS" "$ROWS" "$CONVERSATIONS"

# For information: what PostgreSQL alone needs for the same rows at the
# granularity the server writes them, each batch its own (synchronously
# committed) transaction inside one backend, without and with the inbox
# update every batch must make (unread count, newest time and preview of its
# conversations): the limit under any server on this database.
GRANULAR="$(psql "$SCRATCH_URL" -qX -v ON_ERROR_STOP=1 <<SQL
TRUNCATE messages;
CREATE TEMP TABLE conv AS
  SELECT id, workspace_id, (row_number() OVER (ORDER BY id)) - 1 AS n FROM conversations;
CREATE UNIQUE INDEX ON conv (n);
ANALYZE conv;
CREATE PROCEDURE floor_batches(batches int, size int, inbox bool) LANGUAGE plpgsql AS \$\$
DECLARE b int;
BEGIN
  FOR b IN 0 .. batches - 1 LOOP
    IF inbox THEN
      WITH ins AS (
        INSERT INTO messages (conversation_id, workspace_id, direction, sender_type, content,
                              message_type, kapso_message_id, metadata, created_at, status)
        SELECT c.id, c.workspace_id, 'inbound', 'contact',
               'bench conversation ' || c.n || ' message ' || g, 'text',
               'wamid.granular.' || size || '.' || inbox || '.' || b || '.' || g, '{}'::jsonb,
               to_timestamp(1700000000 + b * size + g), 'received'
        FROM generate_series(1, size) g JOIN conv c ON c.n = (b * size + g) % $CONVERSATIONS
        RETURNING conversation_id, created_at, content),
      d AS (SELECT DISTINCT ON (conversation_id) conversation_id, created_at, content,
                   count(*) OVER (PARTITION BY conversation_id) AS n
            FROM ins ORDER BY conversation_id, created_at DESC)
      UPDATE conversations v SET unread_count = v.unread_count + d.n,
             last_message_at = d.created_at, last_message_preview = left(d.content, 100),
             updated_at = now()
      FROM d WHERE v.id = d.conversation_id;
    ELSE
      INSERT INTO messages (conversation_id, workspace_id, direction, sender_type, content,
                            message_type, kapso_message_id, metadata, created_at, status)
      SELECT c.id, c.workspace_id, 'inbound', 'contact',
             'bench conversation ' || c.n || ' message ' || g, 'text',
             'wamid.granular.' || size || '.' || inbox || '.' || b || '.' || g, '{}'::jsonb,
             to_timestamp(1700000000 + b * size + g), 'received'
      FROM generate_series(1, size) g JOIN conv c ON c.n = (b * size + g) % $CONVERSATIONS;
    END IF;
    COMMIT;
  END LOOP;
END \$\$;
\\timing on
CALL floor_batches($((ROWS / 50)), 50, false);
CALL floor_batches($((ROWS / 50)), 50, true);
CALL floor_batches($((ROWS / 15)), 15, true);
SQL
)"
mapfile -t GRANULAR_MS < <(awk '/^Time: / { print $2 }' <<<"$GRANULAR")
[ "${#GRANULAR_MS[@]}" = 3 ] || { printf '%s\n' "$GRANULAR" >&2; die "expected 3 timings"; }
granular() {
  awk -v what="$1" -v n="$2" -v ms="$3" 'BEGIN {
    printf "  %s: %.0f rows/s, %.1f us per row\n", what, n * 1000 / ms, ms * 1000 / n }'
}
printf 'for information, one backend, each batch its own transaction:\n'
granular "batches of 50, messages only" "$(( ROWS / 50 * 50 ))" "${GRANULAR_MS[0]}"
granular "batches of 50 with the inbox update" "$(( ROWS / 50 * 50 ))" "${GRANULAR_MS[1]}"
granular "batches of 15 with the inbox update" "$(( ROWS / 15 * 15 ))" "${GRANULAR_MS[2]}"

# One key a line, like kapso-bench's JSON: run_scenarios.sh reads it with sed.
if [ -n "$FLOOR_JSON" ]; then
  {
    printf '{\n  "rows": %s,\n  "conversations": %s,\n' "$ROWS" "$CONVERSATIONS"
    printf '  "rounds_ms": [%s],\n' "$(IFS=,; printf '%s' "${ROUND_MS[*]}")"
    printf '  "median_ms": %s,\n  "rows_per_second": %s\n}\n' "$MEDIAN_MS" "$RATE"
  } >"$FLOOR_JSON"
fi
