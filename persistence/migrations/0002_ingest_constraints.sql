-- What kapso-ingest needs on top of the application's schema: the extra
-- columns, and the unique keys that make every write idempotent. On an
-- existing database, duplicates that would block a unique key are merged
-- first (oldest row wins, children re-pointed), so the migration applies.
ALTER TABLE workspaces ADD COLUMN IF NOT EXISTS kapso_webhook_secret text;
ALTER TABLE workspaces ALTER COLUMN owner_id DROP NOT NULL;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS status text;

-- contacts: one per (workspace_id, phone)
WITH ranked AS (
  SELECT id, first_value(id) OVER (PARTITION BY workspace_id, phone
                                   ORDER BY created_at, id) AS keep
  FROM contacts)
UPDATE conversations c SET contact_id = r.keep
FROM ranked r WHERE c.contact_id = r.id AND r.id <> r.keep;
DELETE FROM contacts c USING (
  SELECT id, first_value(id) OVER (PARTITION BY workspace_id, phone
                                   ORDER BY created_at, id) AS keep
  FROM contacts) r
WHERE c.id = r.id AND r.id <> r.keep;
-- Only when no unique key on exactly these columns exists yet: a second one
-- would double the cost of every contact insert.
DO $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM pg_index x
    JOIN pg_attribute a1 ON a1.attrelid = x.indrelid AND a1.attnum = x.indkey[0]
    JOIN pg_attribute a2 ON a2.attrelid = x.indrelid AND a2.attnum = x.indkey[1]
    WHERE x.indrelid = 'contacts'::regclass AND x.indisunique AND x.indnkeyatts = 2
      AND a1.attname = 'workspace_id' AND a2.attname = 'phone') THEN
    CREATE UNIQUE INDEX uq_contacts_workspace_phone ON contacts (workspace_id, phone);
  END IF;
END
$$;

-- conversations: one per (workspace_id, contact_id)
CREATE TEMP TABLE kapso_conversation_merge ON COMMIT DROP AS
  SELECT id, keep FROM (
    SELECT id, first_value(id) OVER (PARTITION BY workspace_id, contact_id
                                     ORDER BY created_at, id) AS keep
    FROM conversations) r
  WHERE id <> keep;
UPDATE messages m SET conversation_id = k.keep
FROM kapso_conversation_merge k WHERE m.conversation_id = k.id;
UPDATE conversations c SET unread_count = c.unread_count + s.unread
FROM (SELECT k.keep, sum(coalesce(c2.unread_count, 0)) AS unread
      FROM kapso_conversation_merge k JOIN conversations c2 ON c2.id = k.id
      GROUP BY k.keep) s
WHERE c.id = s.keep;
DELETE FROM conversations c USING kapso_conversation_merge k WHERE c.id = k.id;
CREATE UNIQUE INDEX IF NOT EXISTS uq_conversations_workspace_contact
  ON conversations (workspace_id, contact_id);

-- messages: one per (workspace_id, kapso_message_id)
DELETE FROM messages m USING (
  SELECT id, first_value(id) OVER (PARTITION BY workspace_id, kapso_message_id
                                   ORDER BY created_at, id) AS keep
  FROM messages WHERE kapso_message_id IS NOT NULL) r
WHERE m.id = r.id AND r.id <> r.keep;
CREATE UNIQUE INDEX IF NOT EXISTS uq_messages_workspace_kapso_message
  ON messages (workspace_id, kapso_message_id);

-- A customer known only by a business-scoped user id is found again by it
-- once a later event links it to a phone.
CREATE INDEX IF NOT EXISTS idx_contacts_bsuid
  ON contacts (workspace_id, (metadata ->> 'business_scoped_user_id'))
  WHERE metadata ? 'business_scoped_user_id';

-- Statuses that arrived before their message; applied when it arrives.
CREATE TABLE IF NOT EXISTS kapso_pending_statuses (
  workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  kapso_message_id varchar(255) NOT NULL,
  status text NOT NULL,
  error jsonb,
  received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workspace_id, kapso_message_id, status)
);

-- sent < delivered < read; failed is terminal. NULL and unknown rank lowest.
CREATE OR REPLACE FUNCTION kapso_status_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE status
    WHEN 'received' THEN 1 WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2
    WHEN 'read' THEN 3 WHEN 'failed' THEN 4 ELSE 0 END
$$;
