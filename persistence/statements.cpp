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

// How long a status, an edit or a deletion waits for its message, and a
// number change for the old number's contact.
#define KAPSO_WAIT_LIMIT "interval '7 days'"
// Rows the housekeeping sweep takes on per run and kind.
#define KAPSO_SWEEP_LIMIT "5000"

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
  "  WHERE received_at < now() - " KAPSO_WAIT_LIMIT " RETURNING 1),\n"
  "i AS (\n"
  "  SELECT DISTINCT p.workspace_id, p.kapso_message_id\n"
  "  FROM kapso_pending_statuses p\n"
  "  JOIN messages m USING (workspace_id, kapso_message_id) LIMIT " KAPSO_SWEEP_LIMIT "),\n"
  KAPSO_APPLY_PENDING_TAIL;

// -- edits, deletions and account changes (persistence/lifecycle.cpp) ---------------
// These live in the code, not in a migration's functions, so that a fix is a
// change of the code. Every statement is idempotent and ends in the same
// rows whatever the order of its inputs; the lock_* statements run first in
// the same transaction, so that the statement after them reads the rows as
// they are once no other writer can change them.

// Times kept in metadata: ISO 8601 in UTC, which also sorts as text (and,
// being of fixed width, `time || id` sorts like the pair).
#define KAPSO_ISO_TIME(at) "to_char((" at ") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

// The fields of a message's content that a deletion removes with its text.
#define KAPSO_CONTENT_KEYS                                                                  \
  "ARRAY['edits', 'edited_at', 'edit_id', 'media', 'has_media', 'location', 'contacts',\n"  \
  "      'interactive', 'button', 'reaction', 'order', 'template', 'transcript',\n"         \
  "      'referral']::text[]"

// Edits and revokes are staged first, whether their original is stored or
// not, and applied from there (apply_message_changes): one path for the
// early, the on-time and the re-delivered. Answers those staged for the
// first time.
const char* const stage_message_changes = R"(
INSERT INTO kapso_pending_message_changes AS p
  (workspace_id, event_id, original_message_id, kind, changed_at, content, media_url, metadata)
SELECT i.workspace_id, i.event_id, i.original_message_id, i.kind, to_timestamp(i.ts),
       i.content, i.media_url, coalesce(i.metadata, '{}'::jsonb)
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::text[], $7::text[],
            $8::jsonb[])
  AS i(workspace_id, event_id, original_message_id, kind, ts, content, media_url, metadata)
ORDER BY i.workspace_id, i.event_id
ON CONFLICT (workspace_id, event_id) DO NOTHING
RETURNING p.workspace_id::text, p.event_id)";

// The stored ones of these messages, locked in key order; answers them.
const char* const lock_message_originals = R"(
SELECT m.workspace_id::text, m.kapso_message_id
FROM (SELECT DISTINCT * FROM unnest($1::uuid[], $2::text[]) AS i(workspace_id, message_id)
      ORDER BY 1, 2) i
CROSS JOIN LATERAL (SELECT x.workspace_id, x.kapso_message_id FROM messages x
  WHERE x.workspace_id = i.workspace_id AND x.kapso_message_id = i.message_id
  LIMIT 1 FOR UPDATE) m)";

// Applies every waiting edit and deletion of these messages (those stored,
// locked by lock_message_originals), then forgets them. Answers
// (workspace, event id, changed) per change applied.
//  * A deletion is final: the text is kept nowhere (metadata.edits goes
//    too), media is cleared, and later edits change nothing. Of several,
//    the first by (time, id) is the one that deletes.
//  * The edits of a message are a set ordered by (time, edit id): the
//    newest is shown, and metadata.edits lists every older version, oldest
//    first, with the time and id of the edit that replaced it. A late edit
//    is slotted into that history; a known one changes nothing. An edit
//    applied while it is the newest version shows the media it names (a
//    caption edit keeps the message's own).
//  * A conversation that shows nothing newer than a changed message shows
//    its newest message again, by (time, preview) as the batch insert does.
const char* const apply_message_changes = R"(
WITH i AS (
  SELECT DISTINCT * FROM unnest($1::uuid[], $2::text[]) AS i(workspace_id, message_id)),
m AS (
  SELECT x.id, x.workspace_id, x.kapso_message_id, x.conversation_id, x.created_at, x.content,
         x.media_url, coalesce(x.metadata, '{}'::jsonb) AS metadata,
         CASE WHEN jsonb_typeof(x.metadata -> 'edits') = 'array' THEN x.metadata -> 'edits'
              ELSE '[]'::jsonb END AS edits
  FROM i CROSS JOIN LATERAL (SELECT * FROM messages x
    WHERE x.workspace_id = i.workspace_id AND x.kapso_message_id = i.message_id LIMIT 1) x),
waiting AS (
  SELECT c.workspace_id, c.event_id, c.kind, c.changed_at, c.content, c.media_url,
         c.metadata AS change_metadata, m.id AS message_id,
         bool_or(c.kind = 'revoke') OVER (PARTITION BY m.id) AS revoked,
         first_value(c.event_id) OVER (PARTITION BY m.id
           ORDER BY (c.kind = 'revoke') DESC, c.changed_at, c.event_id) AS first_event
  FROM m JOIN kapso_pending_message_changes c
    ON c.workspace_id = m.workspace_id AND c.original_message_id = m.kapso_message_id),
judged AS (
  SELECT w.*,
    CASE WHEN m.metadata ? 'deleted_at' THEN false
         WHEN w.revoked THEN w.event_id = w.first_event
         ELSE NOT (coalesce(m.metadata ->> 'edit_id' = w.event_id, false)
                   OR EXISTS (SELECT 1 FROM jsonb_array_elements(m.edits) h(e)
                              WHERE h.e ->> 'edit_id' = w.event_id)) END AS changed
  FROM waiting w JOIN m ON m.id = w.message_id),
new_edits AS (
  SELECT j.message_id, j.event_id, j.changed_at, j.content, j.media_url, j.change_metadata,
         )" KAPSO_ISO_TIME("j.changed_at") R"( AS edited_at
  FROM judged j WHERE j.changed AND j.kind = 'edit'),
versions AS (
  -- Entry k of the history holds the version edit k replaced; the version
  -- edit k brought is entry k + 1's, or the shown content for the last.
  SELECT m.id AS message_id, h.e ->> 'edited_at' AS edited_at, h.e ->> 'edit_id' AS edit_id,
         CASE WHEN h.k < jsonb_array_length(m.edits) THEN m.edits -> h.k::integer ->> 'content'
              ELSE m.content END AS body
  FROM m CROSS JOIN LATERAL jsonb_array_elements(m.edits) WITH ORDINALITY AS h(e, k)
  WHERE EXISTS (SELECT 1 FROM new_edits n WHERE n.message_id = m.id)
  UNION ALL
  SELECT n.message_id, n.edited_at, n.event_id, n.content FROM new_edits n),
ordered AS (
  SELECT v.message_id, v.edited_at, v.edit_id, v.body,
         lag(v.body, 1, CASE WHEN jsonb_array_length(m.edits) > 0
                             THEN m.edits -> 0 ->> 'content' ELSE m.content END) OVER w
           AS replaced,
         row_number() OVER w AS k, count(*) OVER (PARTITION BY v.message_id) AS n
  FROM versions v JOIN m ON m.id = v.message_id
  WINDOW w AS (PARTITION BY v.message_id ORDER BY v.edited_at COLLATE "C", v.edit_id COLLATE "C")),
histories AS (
  SELECT o.message_id,
         jsonb_agg(jsonb_build_object('content', o.replaced, 'edited_at', o.edited_at,
                                      'edit_id', o.edit_id) ORDER BY o.k) AS edits,
         max(o.body) FILTER (WHERE o.k = o.n) AS content,
         max(o.edited_at) FILTER (WHERE o.k = o.n) AS edited_at,
         max(o.edit_id) FILTER (WHERE o.k = o.n) AS edit_id
  FROM ordered o GROUP BY o.message_id),
shown_edits AS (
  -- New edits in the order they are applied, each with whether it was the
  -- newest version then: newer than the history and the new edits before it.
  SELECT n.*, (n.edited_at || n.event_id) COLLATE "C" > coalesce(greatest(
      (SELECT max(((h.e ->> 'edited_at') || (h.e ->> 'edit_id')) COLLATE "C")
       FROM m, jsonb_array_elements(m.edits) h(e) WHERE m.id = n.message_id),
      max((n.edited_at || n.event_id) COLLATE "C") OVER (PARTITION BY n.message_id
        ORDER BY n.changed_at, n.event_id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)),
      '') AS newest
  FROM new_edits n),
media AS (
  SELECT s.message_id,
         (array_agg(s.media_url ORDER BY s.changed_at DESC, s.event_id DESC)
            FILTER (WHERE s.newest AND s.media_url IS NOT NULL))[1] AS media_url,
         (array_agg(s.change_metadata -> 'media' ORDER BY s.changed_at DESC, s.event_id DESC)
            FILTER (WHERE s.newest AND s.change_metadata ? 'media'))[1] AS media
  FROM shown_edits s GROUP BY s.message_id),
rewritten AS (
  SELECT m.id, m.conversation_id, m.created_at, '[Message deleted]'::text AS content,
         NULL::text AS media_url,
         (m.metadata - )" KAPSO_CONTENT_KEYS R"()
           || jsonb_build_object('deleted_at', )" KAPSO_ISO_TIME("j.changed_at") R"() AS metadata
  FROM judged j JOIN m ON m.id = j.message_id WHERE j.changed AND j.kind = 'revoke'
  UNION ALL
  SELECT m.id, m.conversation_id, m.created_at, h.content, coalesce(d.media_url, m.media_url),
         m.metadata || jsonb_build_object('edits', h.edits, 'edited_at', h.edited_at,
                                          'edit_id', h.edit_id)
           || CASE WHEN d.media IS NULL THEN '{}'::jsonb
                   ELSE jsonb_build_object('media', d.media) END
  FROM histories h JOIN m ON m.id = h.message_id LEFT JOIN media d ON d.message_id = m.id),
updated AS (
  UPDATE messages x SET content = r.content, media_url = r.media_url, metadata = r.metadata
  FROM rewritten r WHERE x.id = r.id
  RETURNING 1),
forgotten AS (
  DELETE FROM kapso_pending_message_changes c USING waiting w
  WHERE c.workspace_id = w.workspace_id AND c.event_id = w.event_id
  RETURNING 1),
touched AS (
  SELECT r.conversation_id, bool_or(r.created_at IS NULL) AS undated,
         max(r.created_at) AS latest
  FROM rewritten r GROUP BY r.conversation_id),
newest AS (
  SELECT t.conversation_id, t.undated, t.latest, n.created_at, n.preview
  FROM touched t CROSS JOIN LATERAL (
    SELECT s.created_at, s.preview FROM (
      (SELECT x.created_at, kapso_preview(x.content) AS preview FROM messages x
       WHERE x.conversation_id = t.conversation_id AND x.created_at IS NOT NULL
         AND NOT EXISTS (SELECT 1 FROM rewritten r WHERE r.id = x.id)
       ORDER BY x.created_at DESC, kapso_preview(x.content) COLLATE "C" DESC LIMIT 1)
      UNION ALL
      SELECT r.created_at, kapso_preview(r.content) FROM rewritten r
      WHERE r.conversation_id = t.conversation_id AND r.created_at IS NOT NULL) s
    ORDER BY s.created_at DESC, s.preview COLLATE "C" DESC LIMIT 1) n),
refreshed AS (
  UPDATE conversations v SET last_message_at = n.created_at, last_message_preview = n.preview,
                             updated_at = now()
  FROM newest n
  WHERE v.id = n.conversation_id
    AND (n.undated OR v.last_message_at IS NULL OR v.last_message_at <= n.latest)
    AND (v.last_message_at, v.last_message_preview) IS DISTINCT FROM (n.created_at, n.preview)
  RETURNING 1)
SELECT j.workspace_id::text, j.event_id, j.changed FROM judged j)";

// The contact of an identity change: the one with its phone, else the one
// with its business-scoped id.
#define KAPSO_IDENTITY_CONTACT(alias)                                                        \
  "SELECT x.id, x.metadata FROM contacts x\n"                                                \
  "    WHERE x.workspace_id = " alias ".workspace_id\n"                                       \
  "      AND (x.phone = " alias ".phone OR (" alias ".bsuid IS NOT NULL\n"                    \
  "           AND x.metadata ? 'business_scoped_user_id'\n"                                   \
  "           AND x.metadata ->> 'business_scoped_user_id' = " alias ".bsuid))\n"             \
  "    ORDER BY (x.phone = " alias ".phone) DESC LIMIT 1"

const char* const lock_identity_contacts =
  "SELECT c.id\n"
  "FROM (SELECT DISTINCT * FROM unnest($1::uuid[], $2::text[], $3::text[])\n"
  "        AS i(workspace_id, phone, bsuid) ORDER BY 1, 2, 3) i\n"
  "CROSS JOIN LATERAL (" KAPSO_IDENTITY_CONTACT("i") " FOR UPDATE) c";

// Notes identity changes on their contacts (created when unknown): the
// newest change by (time, hash) is kept in metadata.identity_changed_at and
// metadata.identity_hash. Taken in batch order, an event changes its
// contact when it is newer than what is stored and than every event of the
// contact before it. Answers (workspace, event id, changed) per event. A
// contact another writer creates meanwhile fails the insert (a unique
// violation: the batch is retried and finds it).
const char* const note_identity_changes = R"(
WITH i AS (
  SELECT i.*, )" KAPSO_ISO_TIME("to_timestamp(i.ts)") R"( AS noted_at,
         coalesce(i.hash, '') AS noted_hash
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::text[])
    WITH ORDINALITY AS i(workspace_id, event_id, phone, bsuid, name, ts, hash, n)),
found AS (
  SELECT i.*, c.id AS contact_id,
         coalesce(c.metadata ->> 'identity_changed_at', '') AS stored_at,
         coalesce(c.metadata ->> 'identity_hash', '') AS stored_hash,
         coalesce(c.id::text, i.phone) AS customer
  FROM i LEFT JOIN LATERAL ()" KAPSO_IDENTITY_CONTACT("i") R"() c ON true),
judged AS (
  SELECT f.*, (f.noted_at, f.noted_hash) > (f.stored_at, f.stored_hash)
    AND NOT EXISTS (SELECT 1 FROM found e
                    WHERE e.workspace_id = f.workspace_id AND e.customer = f.customer
                      AND e.n < f.n AND (e.noted_at, e.noted_hash) >= (f.noted_at, f.noted_hash))
    AS changed
  FROM found f),
newest AS (
  SELECT DISTINCT ON (j.workspace_id, j.customer)
         j.workspace_id, j.contact_id, j.phone, j.noted_at, j.noted_hash, j.stored_at,
         j.stored_hash, first_value(j.name) OVER w AS name, first_value(j.bsuid) OVER w AS bsuid
  FROM judged j
  WINDOW w AS (PARTITION BY j.workspace_id, j.customer ORDER BY j.n)
  ORDER BY j.workspace_id, j.customer, j.noted_at DESC, j.noted_hash DESC),
created AS (
  INSERT INTO contacts (workspace_id, phone, name, metadata)
  SELECT n.workspace_id, n.phone, n.name,
         jsonb_build_object('identity_changed_at', n.noted_at, 'identity_hash', n.noted_hash)
         || CASE WHEN n.bsuid IS NULL THEN '{}'::jsonb
                 ELSE jsonb_build_object('business_scoped_user_id', n.bsuid) END
  FROM newest n WHERE n.contact_id IS NULL
  ORDER BY n.workspace_id, n.phone
  RETURNING 1),
noted AS (
  UPDATE contacts c
  SET metadata = coalesce(c.metadata, '{}'::jsonb)
                 || jsonb_build_object('identity_changed_at', n.noted_at,
                                       'identity_hash', n.noted_hash),
      updated_at = now()
  FROM newest n
  WHERE c.id = n.contact_id AND (n.noted_at, n.noted_hash) > (n.stored_at, n.stored_hash)
  RETURNING 1)
SELECT j.workspace_id::text, j.event_id, j.changed FROM judged j)";

#undef KAPSO_IDENTITY_CONTACT

// Customers' number changes, kept for a week so that messages from the old
// number that arrive late still reach the customer's contact. Answers those
// recorded for the first time.
const char* const record_number_changes = R"(
INSERT INTO kapso_number_changes AS n (workspace_id, event_id, old_phone, new_phone, changed_at)
SELECT i.workspace_id, i.event_id, i.old_phone, i.new_phone, to_timestamp(i.ts)
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int8[])
  AS i(workspace_id, event_id, old_phone, new_phone, ts)
ORDER BY i.workspace_id, i.event_id
ON CONFLICT (workspace_id, event_id) DO NOTHING
RETURNING n.workspace_id::text, n.event_id)";

// The recorded changes away from these (workspace, phone) keys.
#define KAPSO_CHANGES_FROM_KEYS                                                        \
  "  FROM (SELECT DISTINCT * FROM unnest($1::uuid[], $2::text[]) AS k(workspace_id, phone)) k\n" \
  "  JOIN kapso_number_changes n ON n.workspace_id = k.workspace_id AND n.old_phone = k.phone\n"

// The contacts (and their conversations) of the old and new numbers of
// these keys' changes, locked in key order.
const char* const lock_number_change_contacts =
  "SELECT c.id, v.id\n"
  "FROM (SELECT DISTINCT n.workspace_id, p.phone\n"
  KAPSO_CHANGES_FROM_KEYS
  "  CROSS JOIN LATERAL (VALUES (n.old_phone), (n.new_phone)) AS p(phone)\n"
  "  ORDER BY 1, 2) p\n"
  "CROSS JOIN LATERAL (SELECT x.id FROM contacts x\n"
  "  WHERE x.workspace_id = p.workspace_id AND x.phone = p.phone LIMIT 1 FOR UPDATE) c\n"
  "LEFT JOIN LATERAL (SELECT y.id FROM conversations y\n"
  "  WHERE y.workspace_id = p.workspace_id AND y.contact_id = c.id LIMIT 1 FOR UPDATE) v ON true";

// The state of every change away from these keys (lifecycle_plan.hpp's
// number_change_state, column by column), per key oldest first.
const char* const read_number_changes =
  "SELECT n.workspace_id::text, n.event_id, n.old_phone, n.new_phone,\n"
  "       (extract(epoch FROM n.changed_at) * 1000000)::int8,\n"
  "       EXISTS (SELECT 1 FROM kapso_number_changes b\n"
  "               WHERE b.workspace_id = n.workspace_id AND b.new_phone = n.old_phone\n"
  "                 AND b.changed_at >= n.changed_at),\n"
  "       coalesce(o.id::text, ''), coalesce(v.id::text, ''), coalesce(v.unread_count, 0),\n"
  "       s.moving, s.staying, s.staying_inbound,\n"
  "       coalesce(w.id::text, ''), coalesce(wv.id::text, ''),\n"
  "       coalesce((w.created_at, w.id) < (o.created_at, o.id), false)\n"
  KAPSO_CHANGES_FROM_KEYS
  "LEFT JOIN LATERAL (SELECT x.id, x.created_at FROM contacts x\n"
  "  WHERE x.workspace_id = n.workspace_id AND x.phone = n.old_phone LIMIT 1) o ON true\n"
  "LEFT JOIN LATERAL (SELECT y.id, y.unread_count FROM conversations y\n"
  "  WHERE y.workspace_id = n.workspace_id AND y.contact_id = o.id LIMIT 1) v ON true\n"
  "CROSS JOIN LATERAL (\n"
  "  SELECT count(*) FILTER (WHERE x.created_at IS NULL OR x.created_at <= n.changed_at)\n"
  "           AS moving,\n"
  "         count(*) FILTER (WHERE x.created_at > n.changed_at) AS staying,\n"
  "         count(*) FILTER (WHERE x.created_at > n.changed_at AND x.direction = 'inbound')\n"
  "           AS staying_inbound\n"
  "  FROM messages x WHERE x.conversation_id = v.id) s\n"
  "LEFT JOIN LATERAL (SELECT x.id, x.created_at FROM contacts x\n"
  "  WHERE x.workspace_id = n.workspace_id AND x.phone = n.new_phone LIMIT 1) w ON true\n"
  "LEFT JOIN LATERAL (SELECT y.id FROM conversations y\n"
  "  WHERE y.workspace_id = n.workspace_id AND y.contact_id = w.id LIMIT 1) wv ON true\n"
  "ORDER BY n.workspace_id, n.old_phone, n.changed_at, n.event_id";

#undef KAPSO_CHANGES_FROM_KEYS

// contacts.metadata.previous_phones: `first`'s numbers, then `second`'s,
// then `added`, each once, never the contact's own number `own`.
#define KAPSO_PREVIOUS_PHONES(first, second, added, own)                                  \
  "(SELECT coalesce(jsonb_agg(to_jsonb(l.phone) ORDER BY l.source, l.pos), '[]'::jsonb)\n" \
  "   FROM (SELECT DISTINCT ON (a.phone) a.phone, a.source, a.pos\n"                        \
  "         FROM (SELECT 1 AS source, f.pos, f.phone FROM jsonb_array_elements_text(\n"     \
  "                 CASE WHEN jsonb_typeof(" first ") = 'array' THEN " first " ELSE '[]' END)\n" \
  "                 WITH ORDINALITY AS f(phone, pos)\n"                                    \
  "               UNION ALL\n"                                                             \
  "               SELECT 2, s.pos, s.phone FROM jsonb_array_elements_text(\n"              \
  "                 CASE WHEN jsonb_typeof(" second ") = 'array' THEN " second " ELSE '[]' END)\n" \
  "                 WITH ORDINALITY AS s(phone, pos)\n"                                    \
  "               UNION ALL\n"                                                             \
  "               SELECT 3, 1, " added " WHERE " added " IS NOT NULL) a\n"                 \
  "         WHERE a.phone IS DISTINCT FROM " own "\n"                                      \
  "         ORDER BY a.phone, a.source, a.pos) l)"

// A move with nothing dated after the change: the whole contact takes the
// new number (its id, name, tags and conversation stay).
const char* const rename_contacts =
  "UPDATE contacts c SET phone = i.new_phone,\n"
  "  metadata = coalesce(c.metadata, '{}'::jsonb) || jsonb_build_object('previous_phones',\n"
  "    " KAPSO_PREVIOUS_PHONES("c.metadata -> 'previous_phones'", "NULL::jsonb", "i.old_phone",
                               "i.new_phone") "),\n"
  "  updated_at = now()\n"
  "FROM unnest($1::uuid[], $2::text[], $3::text[]) AS i(contact_id, old_phone, new_phone)\n"
  "WHERE c.id = i.contact_id";

// A merge, step 1: the messages of the conversation that goes join the one
// that stays.
const char* const move_conversation_messages = R"(
UPDATE messages x SET conversation_id = i.keep
FROM unnest($1::uuid[], $2::uuid[]) AS i(keep, gone)
WHERE x.conversation_id = i.gone)";

// A merge, step 2: unread counts add up, the newest preview wins, an
// assignee is kept; the conversation that goes is deleted.
#define KAPSO_GONE_SHOWS_NEWER                                                            \
  "g.last_message_at IS NOT NULL\n"                                                       \
  "      AND (v.last_message_at IS NULL OR g.last_message_at > v.last_message_at\n"       \
  "           OR (g.last_message_at = v.last_message_at\n"                                \
  "               AND coalesce(g.last_message_preview, '') COLLATE \"C\"\n"               \
  "                   > coalesce(v.last_message_preview, '') COLLATE \"C\"))"
const char* const merge_conversations =
  "WITH i AS (SELECT * FROM unnest($1::uuid[], $2::uuid[]) AS i(keep, gone)),\n"
  "kept AS (\n"
  "  UPDATE conversations v SET\n"
  "    unread_count = coalesce(v.unread_count, 0) + coalesce(g.unread_count, 0),\n"
  "    last_message_at = CASE WHEN " KAPSO_GONE_SHOWS_NEWER "\n"
  "      THEN g.last_message_at ELSE v.last_message_at END,\n"
  "    last_message_preview = CASE WHEN " KAPSO_GONE_SHOWS_NEWER "\n"
  "      THEN g.last_message_preview ELSE v.last_message_preview END,\n"
  "    assigned_to = coalesce(v.assigned_to, g.assigned_to),\n"
  "    updated_at = now()\n"
  "  FROM i JOIN conversations g ON g.id = i.gone\n"
  "  WHERE v.id = i.keep\n"
  "  RETURNING 1)\n"
  "DELETE FROM conversations v USING i WHERE v.id = i.gone";
#undef KAPSO_GONE_SHOWS_NEWER

// A merge whose contact that goes has the only conversation: it passes to
// the contact that stays.
const char* const reassign_conversations = R"(
UPDATE conversations v SET contact_id = i.contact_id, updated_at = now()
FROM unnest($1::uuid[], $2::uuid[]) AS i(conversation_id, contact_id)
WHERE v.id = i.conversation_id)";

// A merge, last step: the contact that goes is deleted (before the one
// that stays takes its number), and what it knew fills what the other
// lacks: an empty name, email or tags; metadata is joined, the staying
// row's winning.
const char* const merge_contacts =
  "WITH i AS (\n"
  "  SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bool[])\n"
  "    AS i(keep, gone, old_phone, new_phone, keep_is_old)),\n"
  "g AS (DELETE FROM contacts c USING i WHERE c.id = i.gone RETURNING c.*, i.keep)\n"
  "UPDATE contacts c SET\n"
  "  phone = i.new_phone,\n"
  "  name = CASE WHEN coalesce(c.name, '') = '' THEN coalesce(g.name, c.name) ELSE c.name END,\n"
  "  email = coalesce(c.email, g.email),\n"
  "  tags = CASE WHEN cardinality(coalesce(g.tags, '{}')) = 0 THEN c.tags\n"
  "              ELSE ARRAY(SELECT DISTINCT t FROM unnest(coalesce(c.tags, '{}') || g.tags) t\n"
  "                         ORDER BY t) END,\n"
  "  metadata = coalesce(g.metadata, '{}'::jsonb) || coalesce(c.metadata, '{}'::jsonb)\n"
  "    || jsonb_build_object('previous_phones', "
  KAPSO_PREVIOUS_PHONES(
    "(CASE WHEN i.keep_is_old THEN c.metadata ELSE g.metadata END -> 'previous_phones')",
    "(CASE WHEN i.keep_is_old THEN g.metadata ELSE c.metadata END -> 'previous_phones')",
    "i.old_phone", "i.new_phone") "),\n"
  "  updated_at = now()\n"
  "FROM i JOIN g ON g.keep = i.keep\n"
  "WHERE c.id = i.keep";

// A split, step 1: the contact of the new number, created or told its
// previous number (EXCLUDED carries the old number as its only previous
// one).
const char* const upsert_moved_contacts =
  "INSERT INTO contacts AS c (workspace_id, phone, metadata)\n"
  "SELECT i.workspace_id, i.new_phone,\n"
  "       jsonb_build_object('previous_phones', jsonb_build_array(i.old_phone))\n"
  "FROM unnest($1::uuid[], $2::text[], $3::text[]) AS i(workspace_id, new_phone, old_phone)\n"
  "ORDER BY i.workspace_id, i.new_phone\n"
  "ON CONFLICT (workspace_id, phone) DO UPDATE\n"
  "SET metadata = coalesce(c.metadata, '{}'::jsonb) || jsonb_build_object('previous_phones',\n"
  "      " KAPSO_PREVIOUS_PHONES("c.metadata -> 'previous_phones'", "NULL::jsonb",
                                 "(EXCLUDED.metadata -> 'previous_phones' ->> 0)",
                                 "EXCLUDED.phone") "),\n"
  "    updated_at = now()";

#undef KAPSO_PREVIOUS_PHONES

// A split, step 3 (after insert_conversations for the new numbers): the
// messages dated up to the change (or undated) move to the conversation of
// the new number.
const char* const move_messages_up_to =
  "UPDATE messages x SET conversation_id = v.id\n"
  "FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int8[])\n"
  "  AS i(old_conversation, workspace_id, phone, changed_at_us)\n"
  KAPSO_CONVERSATION_OF("i")
  "WHERE x.conversation_id = i.old_conversation\n"
  "  AND (x.created_at IS NULL\n"
  "       OR x.created_at <= to_timestamp(0) + i.changed_at_us * interval '1 microsecond')";

// A split, last step: the unread messages that moved count in the new
// conversation, and both show their newest message by (time, preview).
const char* const settle_split_conversations =
  "WITH i AS (\n"
  "  SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int8[])\n"
  "    AS i(old_conversation, workspace_id, phone, moved_unread)),\n"
  "t AS (\n"
  "  SELECT i.old_conversation AS id, -i.moved_unread AS unread FROM i\n"
  "  UNION ALL\n"
  "  SELECT v.id, i.moved_unread FROM i\n"
  KAPSO_CONVERSATION_OF("i")
  "),\n"
  "n AS (\n"
  "  SELECT t.id, t.unread, x.created_at, x.preview FROM t\n"
  "  LEFT JOIN LATERAL (SELECT y.created_at, kapso_preview(y.content) AS preview\n"
  "    FROM messages y WHERE y.conversation_id = t.id AND y.created_at IS NOT NULL\n"
  "    ORDER BY y.created_at DESC, kapso_preview(y.content) COLLATE \"C\" DESC LIMIT 1) x\n"
  "  ON true)\n"
  "UPDATE conversations v SET\n"
  "  unread_count = coalesce(v.unread_count, 0) + n.unread,\n"
  "  last_message_at = CASE WHEN n.created_at IS NULL THEN v.last_message_at\n"
  "                         ELSE n.created_at END,\n"
  "  last_message_preview = CASE WHEN n.created_at IS NULL THEN v.last_message_preview\n"
  "                              ELSE n.preview END,\n"
  "  updated_at = now()\n"
  "FROM n WHERE v.id = n.id";

// What this writer must watch for: originals that edits or revokes wait
// for ('m'), and old numbers of recent number changes ('n').
const char* const select_lifecycle_waits = R"(
(SELECT 'm', workspace_id::text, original_message_id FROM kapso_pending_message_changes
 LIMIT $1::bigint)
UNION ALL
(SELECT 'n', workspace_id::text, old_phone FROM kapso_number_changes LIMIT $1::bigint))";

// Housekeeping: what waited a week goes; then what waited for rows written
// meanwhile by another writer or server is applied (below).
const char* const expire_lifecycle_waits =
  "WITH changes AS (\n"
  "  DELETE FROM kapso_pending_message_changes\n"
  "  WHERE received_at < now() - " KAPSO_WAIT_LIMIT " RETURNING 1)\n"
  "DELETE FROM kapso_number_changes WHERE received_at < now() - " KAPSO_WAIT_LIMIT;

const char* const select_stored_originals =
  "SELECT DISTINCT p.workspace_id::text, p.original_message_id\n"
  "FROM kapso_pending_message_changes p\n"
  "JOIN messages m ON m.workspace_id = p.workspace_id\n"
  "               AND m.kapso_message_id = p.original_message_id\n"
  "LIMIT " KAPSO_SWEEP_LIMIT;

const char* const select_changed_numbers =
  "SELECT DISTINCT n.workspace_id::text, n.old_phone\n"
  "FROM kapso_number_changes n\n"
  "JOIN contacts c ON c.workspace_id = n.workspace_id AND c.phone = n.old_phone\n"
  "LIMIT " KAPSO_SWEEP_LIMIT;

#undef KAPSO_CONTENT_KEYS
#undef KAPSO_ISO_TIME

#undef KAPSO_APPLY_PENDING_TAIL
#undef KAPSO_CONVERSATION_OF
#undef KAPSO_WAIT_LIMIT
#undef KAPSO_SWEEP_LIMIT

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
  {statement::select_lifecycle_waits, "select_lifecycle_waits", select_lifecycle_waits},
  {statement::stage_message_changes, "stage_message_changes", stage_message_changes},
  {statement::lock_message_originals, "lock_message_originals", lock_message_originals},
  {statement::apply_message_changes, "apply_message_changes", apply_message_changes},
  {statement::lock_identity_contacts, "lock_identity_contacts", lock_identity_contacts},
  {statement::note_identity_changes, "note_identity_changes", note_identity_changes},
  {statement::record_number_changes, "record_number_changes", record_number_changes},
  {statement::lock_number_change_contacts, "lock_number_change_contacts",
   lock_number_change_contacts},
  {statement::read_number_changes, "read_number_changes", read_number_changes},
  {statement::rename_contacts, "rename_contacts", rename_contacts},
  {statement::move_conversation_messages, "move_conversation_messages",
   move_conversation_messages},
  {statement::merge_conversations, "merge_conversations", merge_conversations},
  {statement::reassign_conversations, "reassign_conversations", reassign_conversations},
  {statement::merge_contacts, "merge_contacts", merge_contacts},
  {statement::upsert_moved_contacts, "upsert_moved_contacts", upsert_moved_contacts},
  {statement::move_messages_up_to, "move_messages_up_to", move_messages_up_to},
  {statement::settle_split_conversations, "settle_split_conversations",
   settle_split_conversations},
  {statement::expire_lifecycle_waits, "expire_lifecycle_waits", expire_lifecycle_waits},
  {statement::select_stored_originals, "select_stored_originals", select_stored_originals},
  {statement::select_changed_numbers, "select_changed_numbers", select_changed_numbers},
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
