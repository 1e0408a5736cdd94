// The SQL text of every statement. Batch statements read one binary array
// per column with unnest(); a whole batch is one parameter set per step.
#include "persistence/statements.hpp"

#include <array>

namespace kapso::sql {

const char* const lock_migrations = "SELECT pg_advisory_lock($1::bigint)";
const char* const unlock_migrations = "SELECT pg_advisory_unlock($1::bigint)";
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

const char* const register_workspace = R"(
INSERT INTO workspaces (name, slug, kapso_phone_id, kapso_webhook_secret)
VALUES ($1, $2, $3, NULLIF($4, ''))
ON CONFLICT (slug) DO UPDATE
SET name = EXCLUDED.name, kapso_phone_id = EXCLUDED.kapso_phone_id,
    kapso_webhook_secret = EXCLUDED.kapso_webhook_secret, updated_at = now()
RETURNING id::text)";

const char* const repair_functions_exist
  = "SELECT to_regprocedure('kapso_merge_customers(jsonb)') IS NOT NULL";
const char* const repair_select_contacts
  = "SELECT id::text, workspace_id::text, phone FROM contacts";
const char* const repair_select_split_conversations = R"(
SELECT contact_id::text FROM conversations
GROUP BY workspace_id, contact_id HAVING count(*) > 1)";
const char* const repair_merge_customers = R"(
SELECT r_contacts_merged, r_phones_rewritten, r_conversations_merged
FROM kapso_merge_customers($1::jsonb))";
// A full scan without an index on the message id (the route's schema has
// none): one hash aggregate, no lock but ACCESS SHARE.
const char* const repair_select_message_copies = R"(
SELECT string_agg(id::text, ',') FROM messages
WHERE kapso_message_id IS NOT NULL
GROUP BY workspace_id, kapso_message_id HAVING count(*) > 1)";
const char* const repair_merge_message_copies
  = "SELECT kapso_merge_message_copies($1::uuid[])";
const char* const repair_select_conversations = "SELECT id::text FROM conversations ORDER BY id";
const char* const repair_recount_conversations
  = "SELECT kapso_recount_conversations($1::uuid[])";


namespace {

// A contact and its conversation by (workspace_id, contact key), each one
// index probe per row: LATERAL ... LIMIT 1 keeps it so whatever the planner
// believes about the tables' sizes (a hash join over a large table would
// scan all of it for a batch of a few rows).
#define KAPSO_CONVERSATION_OF(alias)                                              \
  "  CROSS JOIN LATERAL (SELECT x.id FROM contacts x\n"                           \
  "    WHERE x.workspace_id = " alias ".workspace_id AND x.phone = " alias ".phone" \
  " LIMIT 1) c\n"                                                                \
  "  CROSS JOIN LATERAL (SELECT y.id FROM conversations y\n"                      \
  "    WHERE y.workspace_id = " alias ".workspace_id AND y.contact_id = c.id"     \
  " LIMIT 1) v\n"

const char* const find_workspaces = R"(
SELECT id::text, kapso_phone_id, coalesce(kapso_webhook_secret, '')
FROM workspaces
WHERE kapso_phone_id = ANY ($1::text[])
ORDER BY created_at, id)";

const char* const find_contacts_by_bsuid = R"(
SELECT c.workspace_id::text, i.bsuid, c.phone
FROM unnest($1::uuid[], $2::text[]) AS i(workspace_id, bsuid)
JOIN contacts c ON c.workspace_id = i.workspace_id
 AND c.metadata ? 'business_scoped_user_id'
 AND c.metadata ->> 'business_scoped_user_id' = i.bsuid)";

// A contact first seen without a phone takes the phone once an event links
// the two, unless a contact with that phone exists already.
const char* const link_bsuid_contacts = R"(
UPDATE contacts c SET phone = i.phone, updated_at = now()
FROM unnest($1::uuid[], $2::text[], $3::text[]) AS i(workspace_id, phone, bsuid_key)
WHERE c.workspace_id = i.workspace_id AND c.phone = i.bsuid_key
  AND NOT EXISTS (SELECT 1 FROM contacts o
                  WHERE o.workspace_id = i.workspace_id AND o.phone = i.phone))";

// New contacts are inserted (in key order, so concurrent batches cannot
// deadlock); an existing row is rewritten only when it gains a name or an
// identity — ON CONFLICT DO UPDATE would lock and rewrite every one.
const char* const upsert_contacts = R"(
WITH i AS (
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])
    AS i(workspace_id, phone, name, bsuid)),
ins AS (
  INSERT INTO contacts (workspace_id, phone, name, metadata)
  SELECT i.workspace_id, i.phone, i.name,
         CASE WHEN i.bsuid IS NULL THEN '{}'::jsonb
              ELSE jsonb_build_object('business_scoped_user_id', i.bsuid) END
  FROM i ORDER BY i.workspace_id, i.phone
  ON CONFLICT (workspace_id, phone) DO NOTHING
  RETURNING 1)
UPDATE contacts c SET
  name = CASE WHEN coalesce(c.name, '') = '' THEN coalesce(u.name, c.name) ELSE c.name END,
  metadata = CASE WHEN u.bsuid IS NULL THEN c.metadata
             ELSE coalesce(c.metadata, '{}'::jsonb)
                  || jsonb_build_object('business_scoped_user_id', u.bsuid) END,
  updated_at = now()
FROM (SELECT x.id, i.name, i.bsuid FROM i
      CROSS JOIN LATERAL (SELECT id FROM contacts x
        WHERE x.workspace_id = i.workspace_id AND x.phone = i.phone LIMIT 1) x) u
WHERE c.id = u.id
  AND ((coalesce(c.name, '') = '' AND u.name IS NOT NULL)
       OR (u.bsuid IS NOT NULL
           AND NOT (coalesce(c.metadata, '{}'::jsonb)
                    @> jsonb_build_object('business_scoped_user_id', u.bsuid)))))";

const char* const insert_conversations = R"(
INSERT INTO conversations (workspace_id, contact_id)
SELECT i.workspace_id, c.id
FROM unnest($1::uuid[], $2::text[]) AS i(workspace_id, phone)
CROSS JOIN LATERAL (SELECT x.id FROM contacts x
  WHERE x.workspace_id = i.workspace_id AND x.phone = i.phone LIMIT 1) c
ORDER BY i.workspace_id, c.id
ON CONFLICT (workspace_id, contact_id) DO NOTHING)";

// Messages and their conversations' inbox metadata in one statement: only
// rows really inserted count, so a retried batch changes nothing. Commutative:
// unread adds, and the preview moves only to a message newer by (timestamp,
// preview bytes) than the one shown, so any arrival order and any number of
// writers end in the same row. The UPDATE re-reads a row another writer
// changed meanwhile (READ COMMITTED), so concurrent additions are not lost.
// Answers by the row's place in the arrays (1-based): (n, true) for each row
// inserted, (n, false) for one whose conversation cannot be found.
// The part after `r` (the messages with their conversation ids) is shared by
// both forms below.
#define KAPSO_INSERT_MESSAGES_TAIL                                                              \
  "ins AS (\n"                                                                                  \
  "  INSERT INTO messages (conversation_id, workspace_id, direction, sender_type,\n"            \
  "                        content, message_type, media_url, kapso_message_id,\n"               \
  "                        metadata, created_at, status)\n"                                     \
  "  SELECT r.conversation_id, r.workspace_id, r.direction, r.sender_type,\n"                   \
  "         r.content, r.message_type, r.media_url, r.kapso_message_id,\n"                      \
  "         coalesce(r.metadata, '{}'::jsonb), to_timestamp(r.ts), r.status\n"                  \
  "  FROM r ORDER BY r.workspace_id, r.kapso_message_id\n"                                      \
  "  ON CONFLICT (workspace_id, kapso_message_id) DO NOTHING\n"                                 \
  "  RETURNING workspace_id, kapso_message_id, conversation_id, direction),\n"                  \
  "fresh AS (\n"                                                                                \
  "  SELECT ins.conversation_id, ins.direction, r.ts, r.preview\n"                              \
  "  FROM ins JOIN r ON r.workspace_id = ins.workspace_id\n"                                    \
  "                 AND r.kapso_message_id = ins.kapso_message_id),\n"                          \
  "delta AS (\n"                                                                                \
  "  SELECT DISTINCT ON (conversation_id) conversation_id, ts, preview,\n"                      \
  "         count(*) FILTER (WHERE direction = 'inbound')\n"                                    \
  "           OVER (PARTITION BY conversation_id) AS unread\n"                                  \
  "  FROM fresh\n"                                                                              \
  "  ORDER BY conversation_id, ts DESC, preview COLLATE \"C\" DESC),\n"                         \
  "upd AS (\n"                                                                                  \
  "  UPDATE conversations v SET\n"                                                              \
  "    unread_count = coalesce(v.unread_count, 0) + d.unread,\n"                                \
  "    last_message_at = CASE WHEN v.last_message_at IS NULL\n"                                 \
  "        OR to_timestamp(d.ts) > v.last_message_at\n"                                         \
  "        OR (to_timestamp(d.ts) = v.last_message_at\n"                                        \
  "            AND d.preview COLLATE \"C\" > coalesce(v.last_message_preview, '') COLLATE \"C\")\n" \
  "      THEN to_timestamp(d.ts) ELSE v.last_message_at END,\n"                                 \
  "    last_message_preview = CASE WHEN v.last_message_at IS NULL\n"                            \
  "        OR to_timestamp(d.ts) > v.last_message_at\n"                                         \
  "        OR (to_timestamp(d.ts) = v.last_message_at\n"                                        \
  "            AND d.preview COLLATE \"C\" > coalesce(v.last_message_preview, '') COLLATE \"C\")\n" \
  "      THEN d.preview ELSE v.last_message_preview END,\n"                                     \
  "    updated_at = now()\n"                                                                    \
  "  FROM delta d WHERE v.id = d.conversation_id\n"                                             \
  "  RETURNING 1)\n"                                                                            \
  "SELECT r.n, true FROM ins JOIN r ON r.workspace_id = ins.workspace_id\n"                   \
  "                                 AND r.kapso_message_id = ins.kapso_message_id\n"           \
  "UNION ALL\n"                                                                                 \
  "SELECT i.n, false FROM i WHERE NOT EXISTS (SELECT 1 FROM r WHERE r.n = i.n)"

#define KAPSO_MESSAGE_COLUMNS                                                                  \
  "  SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],\n"      \
  "                       $6::text[], $7::text[], $8::text[], $9::jsonb[], $10::int8[],\n"    \
  "                       $11::text[], $12::text[]"

// After the contacts and conversations of the batch were upserted.
const char* const insert_messages =
  "WITH i AS (\n"
  KAPSO_MESSAGE_COLUMNS ") WITH ORDINALITY\n"
  "    AS i(workspace_id, phone, direction, sender_type, content, message_type, media_url,\n"
  "         kapso_message_id, metadata, ts, status, preview, n)),\n"
  "r AS (\n"
  "  SELECT i.*, v.id AS conversation_id FROM i\n"
  KAPSO_CONVERSATION_OF("i")
  "),\n"
  KAPSO_INSERT_MESSAGES_TAIL;

// The common case on its own: messages of conversations that exist, in one
// statement without the contact and conversation upserts. An empty contact
// name is filled from the payload ($13) on the way; the messages of
// conversations that do not exist yet come back 'unresolved' and take the
// upserts afterwards.
const char* const insert_known_messages =
  "WITH i AS (\n"
  KAPSO_MESSAGE_COLUMNS ", $13::text[]) WITH ORDINALITY\n"
  "    AS i(workspace_id, phone, direction, sender_type, content, message_type, media_url,\n"
  "         kapso_message_id, metadata, ts, status, preview, name, n)),\n"
  "r AS (\n"
  "  SELECT i.*, c.id AS contact_id, c.named, v.id AS conversation_id FROM i\n"
  "  CROSS JOIN LATERAL (SELECT x.id, coalesce(x.name, '') <> '' AS named FROM contacts x\n"
  "    WHERE x.workspace_id = i.workspace_id AND x.phone = i.phone LIMIT 1) c\n"
  "  CROSS JOIN LATERAL (SELECT y.id FROM conversations y\n"
  "    WHERE y.workspace_id = i.workspace_id AND y.contact_id = c.id LIMIT 1) v\n"
  "),\n"
  "named AS (\n"
  "  UPDATE contacts c SET name = u.name, updated_at = now()\n"
  "  FROM (SELECT DISTINCT ON (contact_id) contact_id, name FROM r\n"
  "        WHERE NOT r.named AND r.name IS NOT NULL ORDER BY contact_id) u\n"
  "  WHERE c.id = u.contact_id AND coalesce(c.name, '') = ''\n"
  "  RETURNING 1),\n"
  KAPSO_INSERT_MESSAGES_TAIL;

#undef KAPSO_INSERT_MESSAGES_TAIL
#undef KAPSO_MESSAGE_COLUMNS

// Conversations closed by whatsapp.conversation.ended.
const char* const close_conversations =
  "UPDATE conversations SET status = 'closed', updated_at = now()\n"
  "WHERE id IN (\n"
  "  SELECT v.id FROM unnest($1::uuid[], $2::text[]) AS i(workspace_id, phone)\n"
  KAPSO_CONVERSATION_OF("i")
  ") AND status IS DISTINCT FROM 'closed'";

// The highest status of each message moves it forward (never back; failed
// keeps its error); every status of a message not stored yet waits in
// kapso_pending_statuses, so a failed status's error survives whichever
// arrives first. Per message: (workspace, id, advanced, found).
const char* const write_statuses = R"(
WITH i AS (
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[])
    AS i(workspace_id, kapso_message_id, status, error)),
best AS (
  SELECT DISTINCT ON (workspace_id, kapso_message_id)
         workspace_id, kapso_message_id, status, error
  FROM i ORDER BY workspace_id, kapso_message_id, kapso_status_rank(status) DESC),
m AS (
  SELECT b.workspace_id, b.kapso_message_id, x.id FROM best b
  CROSS JOIN LATERAL (SELECT x.id FROM messages x
    WHERE x.workspace_id = b.workspace_id AND x.kapso_message_id = b.kapso_message_id
    LIMIT 1) x),
upd AS (
  UPDATE messages msg SET status = b.status,
    metadata = CASE WHEN b.error IS NULL THEN msg.metadata
               ELSE coalesce(msg.metadata, '{}'::jsonb)
                    || jsonb_build_object('error', b.error) END
  FROM best b JOIN m ON m.workspace_id = b.workspace_id
                    AND m.kapso_message_id = b.kapso_message_id
  WHERE msg.id = m.id AND kapso_status_rank(b.status) > kapso_status_rank(msg.status)
  RETURNING msg.workspace_id, msg.kapso_message_id),
pending AS (
  INSERT INTO kapso_pending_statuses (workspace_id, kapso_message_id, status, error)
  SELECT i.workspace_id, i.kapso_message_id, i.status, i.error FROM i
  WHERE NOT EXISTS (SELECT 1 FROM m WHERE m.workspace_id = i.workspace_id
                                      AND m.kapso_message_id = i.kapso_message_id)
  ON CONFLICT DO NOTHING
  RETURNING 1)
SELECT b.workspace_id::text, b.kapso_message_id,
  EXISTS (SELECT 1 FROM upd u WHERE u.workspace_id = b.workspace_id
                                AND u.kapso_message_id = b.kapso_message_id),
  EXISTS (SELECT 1 FROM m WHERE m.workspace_id = b.workspace_id
                            AND m.kapso_message_id = b.kapso_message_id)
FROM best b)";

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
  "  SELECT DISTINCT * FROM unnest($1::uuid[], $2::text[])\n"
  "    AS i(workspace_id, kapso_message_id)),\n"
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
 LIMIT $1::bigint)
UNION ALL
(SELECT 'n', workspace_id::text, old_phone FROM kapso_number_changes LIMIT $1::bigint))";

const char* const sweep_lifecycle = "SELECT kapso_sweep_lifecycle()";

#undef KAPSO_APPLY_PENDING_TAIL
#undef KAPSO_CONVERSATION_OF

struct statement_text {
  statement id;
  const char* name;
  const char* text;
};

// Every prepared statement, in the order of the enum.
const statement_text statements[] = {
  {statement::find_workspaces, "find_workspaces", find_workspaces},
  {statement::find_contacts_by_bsuid, "find_contacts_by_bsuid", find_contacts_by_bsuid},
  {statement::link_bsuid_contacts, "link_bsuid_contacts", link_bsuid_contacts},
  {statement::upsert_contacts, "upsert_contacts", upsert_contacts},
  {statement::insert_conversations, "insert_conversations", insert_conversations},
  {statement::insert_messages, "insert_messages", insert_messages},
  {statement::insert_known_messages, "insert_known_messages", insert_known_messages},
  {statement::close_conversations, "close_conversations", close_conversations},
  {statement::write_statuses, "write_statuses", write_statuses},
  {statement::apply_pending_statuses, "apply_pending_statuses", apply_pending_statuses},
  {statement::apply_all_pending_statuses, "apply_all_pending_statuses",
   apply_all_pending_statuses},
  {statement::stage_message_changes, "stage_message_changes", stage_message_changes},
  {statement::apply_message_changes, "apply_message_changes", apply_message_changes},
  {statement::record_number_changes, "record_number_changes", record_number_changes},
  {statement::apply_number_changes, "apply_number_changes", apply_number_changes},
  {statement::note_identity_changes, "note_identity_changes", note_identity_changes},
  {statement::select_lifecycle_waits, "select_lifecycle_waits", select_lifecycle_waits},
  {statement::sweep_lifecycle, "sweep_lifecycle", sweep_lifecycle},
};
static_assert(sizeof(statements) / sizeof(statements[0]) == statement_count,
              "every statement has a text");

} // namespace

const std::string& name_of(statement s) {
  static const auto names = [] {
    std::array<std::string, statement_count> out;
    for (const auto& entry : statements)
      out[static_cast<size_t>(entry.id)] = entry.name;
    return out;
  }();
  return names[static_cast<size_t>(s)];
}

const char* text_of(statement s) {
  for (const auto& entry : statements)
    if (entry.id == s)
      return entry.text;
  return nullptr;
}

} // namespace kapso::sql
