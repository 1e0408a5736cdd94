// The SQL text of every named statement. Batch statements take one JSON
// array parameter read with jsonb_to_recordset, so a whole batch is one
// round trip per step whatever its size.
#include "persistence/statements.hpp"

namespace kapso::sql {

const char* const lock_migrations = "SELECT pg_advisory_lock(7351620913)";
const char* const unlock_migrations = "SELECT pg_advisory_unlock(7351620913)";
const char* const create_migrations_table = R"(
CREATE TABLE IF NOT EXISTS kapso_schema_migrations (
  name text PRIMARY KEY,
  applied_at timestamptz NOT NULL DEFAULT now()))";
const char* const migrations_table_exists
  = "SELECT to_regclass('kapso_schema_migrations')";
const char* const select_applied_migrations
  = "SELECT name FROM kapso_schema_migrations";
const char* const record_migration
  = "INSERT INTO kapso_schema_migrations (name) VALUES ($1) ON CONFLICT DO NOTHING";

const char* const find_workspaces = R"(
SELECT id::text, kapso_phone_id, coalesce(kapso_webhook_secret, '')
FROM workspaces
WHERE kapso_phone_id IN (SELECT json_array_elements_text($1::json))
ORDER BY created_at, id)";

const char* const register_workspace = R"(
INSERT INTO workspaces (name, slug, kapso_phone_id, kapso_webhook_secret)
VALUES ($1, $2, $3, NULLIF($4, ''))
ON CONFLICT (slug) DO UPDATE
SET name = EXCLUDED.name, kapso_phone_id = EXCLUDED.kapso_phone_id,
    kapso_webhook_secret = EXCLUDED.kapso_webhook_secret, updated_at = now()
RETURNING id::text)";

const char* const find_contacts_by_bsuid = R"(
SELECT c.workspace_id::text, i.bsuid, c.phone
FROM contacts c
JOIN jsonb_to_recordset($1::jsonb) AS i(workspace_id uuid, bsuid text)
  ON c.workspace_id = i.workspace_id
 AND c.metadata ? 'business_scoped_user_id'
 AND c.metadata ->> 'business_scoped_user_id' = i.bsuid)";

// A contact first seen without a phone takes the phone once an event links
// the two, unless a contact with that phone exists already.
const char* const link_bsuid_contacts = R"(
UPDATE contacts c SET phone = i.phone, updated_at = now()
FROM jsonb_to_recordset($1::jsonb) AS i(workspace_id uuid, phone text, bsuid_key text)
WHERE c.workspace_id = i.workspace_id AND c.phone = i.bsuid_key
  AND NOT EXISTS (SELECT 1 FROM contacts o
                  WHERE o.workspace_id = i.workspace_id AND o.phone = i.phone))";

// Rows are locked in key order so concurrent batches cannot deadlock; a row
// is only rewritten when it gains a name or an identity.
const char* const upsert_contacts = R"(
INSERT INTO contacts AS c (workspace_id, phone, name, metadata)
SELECT i.workspace_id, i.phone, NULLIF(i.name, ''),
       CASE WHEN coalesce(i.bsuid, '') = '' THEN '{}'::jsonb
            ELSE jsonb_build_object('business_scoped_user_id', i.bsuid) END
FROM jsonb_to_recordset($1::jsonb) AS i(workspace_id uuid, phone text, name text, bsuid text)
ORDER BY i.workspace_id, i.phone
ON CONFLICT (workspace_id, phone) DO UPDATE
SET name = CASE WHEN coalesce(c.name, '') = '' THEN coalesce(EXCLUDED.name, c.name)
                ELSE c.name END,
    metadata = coalesce(c.metadata, '{}'::jsonb) || EXCLUDED.metadata,
    updated_at = now()
WHERE (coalesce(c.name, '') = '' AND EXCLUDED.name IS NOT NULL)
   OR NOT (coalesce(c.metadata, '{}'::jsonb) @> EXCLUDED.metadata))";

// LATERAL ... LIMIT 1 keeps these as one index probe per row whatever the
// planner believes about the tables' sizes (a hash join over a large table
// would scan all of it for a batch of a few rows).
const char* const select_contacts = R"(
SELECT c.id::text, c.workspace_id::text, c.phone, c.named
FROM jsonb_to_recordset($1::jsonb) AS i(workspace_id uuid, phone text)
CROSS JOIN LATERAL (
  SELECT x.id, x.workspace_id, x.phone, coalesce(x.name, '') <> '' AS named
  FROM contacts x
  WHERE x.workspace_id = i.workspace_id AND x.phone = i.phone
  LIMIT 1) c)";

const char* const insert_conversations = R"(
INSERT INTO conversations (workspace_id, contact_id)
SELECT i.workspace_id, i.contact_id
FROM jsonb_to_recordset($1::jsonb) AS i(workspace_id uuid, contact_id uuid)
ORDER BY i.workspace_id, i.contact_id
ON CONFLICT (workspace_id, contact_id) DO NOTHING)";

const char* const select_conversations = R"(
SELECT v.id::text, v.workspace_id::text, v.contact_id::text
FROM jsonb_to_recordset($1::jsonb) AS i(workspace_id uuid, contact_id uuid)
CROSS JOIN LATERAL (
  SELECT x.id, x.workspace_id, x.contact_id FROM conversations x
  WHERE x.workspace_id = i.workspace_id AND x.contact_id = i.contact_id
  LIMIT 1) v)";

// Messages and their conversations' inbox metadata in one statement: only
// rows really inserted count, so a retried batch changes nothing. Commutative:
// unread adds, and the preview moves only to a message newer by (timestamp,
// preview bytes) than the one shown, so any arrival order and any number of
// writers end in the same row. The UPDATE re-reads a row another writer
// changed meanwhile (READ COMMITTED), so concurrent additions are not lost.
const char* const insert_messages = R"(
WITH i AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb) AS i(
    conversation_id uuid, workspace_id uuid, direction text, sender_type text,
    content text, message_type text, media_url text, kapso_message_id text,
    metadata jsonb, ts bigint, status text, preview text)),
ins AS (
  INSERT INTO messages (conversation_id, workspace_id, direction, sender_type,
                        content, message_type, media_url, kapso_message_id,
                        metadata, created_at, status)
  SELECT i.conversation_id, i.workspace_id, i.direction, i.sender_type,
         NULLIF(i.content, ''), i.message_type, NULLIF(i.media_url, ''),
         i.kapso_message_id, coalesce(i.metadata, '{}'::jsonb),
         to_timestamp(i.ts), NULLIF(i.status, '')
  FROM i ORDER BY i.workspace_id, i.kapso_message_id
  ON CONFLICT (workspace_id, kapso_message_id) DO NOTHING
  RETURNING workspace_id, kapso_message_id, conversation_id, direction),
fresh AS (
  SELECT ins.conversation_id, ins.direction, i.ts, coalesce(i.preview, '') AS preview
  FROM ins JOIN i ON i.workspace_id = ins.workspace_id
                 AND i.kapso_message_id = ins.kapso_message_id),
delta AS (
  SELECT DISTINCT ON (conversation_id) conversation_id, ts, preview,
         count(*) FILTER (WHERE direction = 'inbound')
           OVER (PARTITION BY conversation_id) AS unread
  FROM fresh
  ORDER BY conversation_id, ts DESC, preview COLLATE "C" DESC),
upd AS (
  UPDATE conversations v SET
    unread_count = coalesce(v.unread_count, 0) + d.unread,
    last_message_at = CASE WHEN v.last_message_at IS NULL
        OR to_timestamp(d.ts) > v.last_message_at
        OR (to_timestamp(d.ts) = v.last_message_at
            AND d.preview COLLATE "C" > coalesce(v.last_message_preview, '') COLLATE "C")
      THEN to_timestamp(d.ts) ELSE v.last_message_at END,
    last_message_preview = CASE WHEN v.last_message_at IS NULL
        OR to_timestamp(d.ts) > v.last_message_at
        OR (to_timestamp(d.ts) = v.last_message_at
            AND d.preview COLLATE "C" > coalesce(v.last_message_preview, '') COLLATE "C")
      THEN d.preview ELSE v.last_message_preview END,
    updated_at = now()
  FROM delta d WHERE v.id = d.conversation_id
  RETURNING 1)
SELECT ins.workspace_id::text, ins.kapso_message_id, ins.direction,
       (SELECT count(*) FROM upd)
FROM ins)";

// Conversations closed by whatsapp.conversation.ended.
const char* const close_conversations = R"(
UPDATE conversations SET status = 'closed', updated_at = now()
WHERE id IN (SELECT json_array_elements_text($1::json)::uuid)
  AND status IS DISTINCT FROM 'closed')";

const char* const advance_statuses = R"(
WITH i AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb)
    AS i(workspace_id uuid, kapso_message_id text, status text, error jsonb)),
upd AS (
  UPDATE messages m SET status = i.status,
    metadata = CASE WHEN i.error IS NULL THEN m.metadata
               ELSE coalesce(m.metadata, '{}'::jsonb)
                    || jsonb_build_object('error', i.error) END
  FROM i
  WHERE m.workspace_id = i.workspace_id AND m.kapso_message_id = i.kapso_message_id
    AND kapso_status_rank(i.status) > kapso_status_rank(m.status)
  RETURNING m.workspace_id, m.kapso_message_id)
SELECT i.workspace_id::text, i.kapso_message_id,
  EXISTS (SELECT 1 FROM upd WHERE upd.workspace_id = i.workspace_id
                              AND upd.kapso_message_id = i.kapso_message_id),
  EXISTS (SELECT 1 FROM messages m WHERE m.workspace_id = i.workspace_id
                                     AND m.kapso_message_id = i.kapso_message_id)
FROM i)";

const char* const insert_pending_statuses = R"(
INSERT INTO kapso_pending_statuses (workspace_id, kapso_message_id, status, error)
SELECT i.workspace_id, i.kapso_message_id, i.status, i.error
FROM jsonb_to_recordset($1::jsonb)
  AS i(workspace_id uuid, kapso_message_id text, status text, error jsonb)
ON CONFLICT DO NOTHING)";

#define KAPSO_APPLY_PENDING_TAIL                                               \
  "best AS (\n"                                                                \
  "  SELECT DISTINCT ON (p.workspace_id, p.kapso_message_id)\n"                \
  "         p.workspace_id, p.kapso_message_id, p.status, p.error\n"           \
  "  FROM kapso_pending_statuses p JOIN i USING (workspace_id, kapso_message_id)\n" \
  "  ORDER BY p.workspace_id, p.kapso_message_id, kapso_status_rank(p.status) DESC),\n" \
  "upd AS (\n"                                                                 \
  "  UPDATE messages m SET status = b.status,\n"                               \
  "    metadata = CASE WHEN b.error IS NULL THEN m.metadata\n"                 \
  "               ELSE coalesce(m.metadata, '{}'::jsonb)\n"                    \
  "                    || jsonb_build_object('error', b.error) END\n"          \
  "  FROM best b\n"                                                            \
  "  WHERE m.workspace_id = b.workspace_id\n"                                  \
  "    AND m.kapso_message_id = b.kapso_message_id\n"                          \
  "    AND kapso_status_rank(b.status) > kapso_status_rank(m.status)\n"        \
  "  RETURNING 1),\n"                                                          \
  "del AS (\n"                                                                 \
  "  DELETE FROM kapso_pending_statuses p USING i, messages m\n"               \
  "  WHERE p.workspace_id = i.workspace_id\n"                                  \
  "    AND p.kapso_message_id = i.kapso_message_id\n"                          \
  "    AND m.workspace_id = p.workspace_id\n"                                  \
  "    AND m.kapso_message_id = p.kapso_message_id\n"                          \
  "  RETURNING 1)\n"                                                           \
  "SELECT (SELECT count(*) FROM upd), (SELECT count(*) FROM del)"

const char* const apply_pending_statuses =
  "WITH i AS (\n"
  "  SELECT DISTINCT * FROM jsonb_to_recordset($1::jsonb)\n"
  "    AS i(workspace_id uuid, kapso_message_id text)),\n"
  KAPSO_APPLY_PENDING_TAIL;

// Housekeeping: statuses whose message arrived while their own transaction
// was still open, and statuses that never found a message within a week.
const char* const apply_all_pending_statuses =
  "WITH old AS (\n"
  "  DELETE FROM kapso_pending_statuses\n"
  "  WHERE received_at < now() - interval '7 days' RETURNING 1),\n"
  "i AS (\n"
  "  SELECT DISTINCT p.workspace_id, p.kapso_message_id\n"
  "  FROM kapso_pending_statuses p\n"
  "  JOIN messages m USING (workspace_id, kapso_message_id) LIMIT 5000),\n"
  KAPSO_APPLY_PENDING_TAIL;

#undef KAPSO_APPLY_PENDING_TAIL

// Edits and revokes are staged first, whether their original is stored or
// not, and applied from there by kapso_apply_message_changes (migration
// 0003): one path for the early, the on-time and the re-delivered.
const char* const stage_message_changes = R"(
INSERT INTO kapso_pending_message_changes AS p
  (workspace_id, event_id, original_message_id, kind, changed_at, content, media_url, metadata)
SELECT i.workspace_id, i.event_id, i.original_message_id, i.kind, to_timestamp(i.ts),
       NULLIF(i.content, ''), NULLIF(i.media_url, ''), coalesce(i.metadata, '{}'::jsonb)
FROM jsonb_to_recordset($1::jsonb) AS i(workspace_id uuid, event_id text,
  original_message_id text, kind text, ts bigint, content text, media_url text, metadata jsonb)
ORDER BY i.workspace_id, i.event_id
ON CONFLICT (workspace_id, event_id) DO NOTHING
RETURNING p.workspace_id::text, p.event_id)";

const char* const apply_message_changes = R"(
SELECT r_workspace_id, r_original_message_id, r_event_id, r_changed
FROM kapso_apply_message_changes($1::jsonb))";

const char* const record_number_changes = R"(
INSERT INTO kapso_number_changes AS n (workspace_id, event_id, old_phone, new_phone, changed_at)
SELECT i.workspace_id, i.event_id, i.old_phone, i.new_phone, to_timestamp(i.ts)
FROM jsonb_to_recordset($1::jsonb)
  AS i(workspace_id uuid, event_id text, old_phone text, new_phone text, ts bigint)
ORDER BY i.workspace_id, i.event_id
ON CONFLICT (workspace_id, event_id) DO NOTHING
RETURNING n.workspace_id::text, n.event_id)";

const char* const apply_number_changes = R"(
SELECT r_workspace_id, r_old_phone, r_new_phone FROM kapso_apply_number_changes($1::jsonb))";

const char* const note_identity_changes = R"(
SELECT r_workspace_id, r_event_id, r_changed FROM kapso_note_identity_changes($1::jsonb))";

// What this writer must watch for: originals that edits or revokes wait
// for ('m'), and old numbers of recent number changes ('n').
const char* const select_lifecycle_waits = R"(
(SELECT 'm', workspace_id::text, original_message_id FROM kapso_pending_message_changes
 LIMIT $1)
UNION ALL
(SELECT 'n', workspace_id::text, old_phone FROM kapso_number_changes LIMIT $1))";

const char* const sweep_lifecycle = "SELECT kapso_sweep_lifecycle()";

} // namespace kapso::sql
