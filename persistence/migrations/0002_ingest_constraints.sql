-- What kapso-ingest needs on top of the application's schema: the extra
-- columns, and the unique keys that make every write idempotent.
--
-- This is the migration that runs on the Next.js route's production
-- database, so it first repairs what the route's check-then-insert and
-- read-modify-write left behind under Kapso's retries (the same message
-- stored twice, a customer split over contacts and conversations, phones in
-- several forms, drifted unread counts, previews by arrival time), and it
-- does so online: the route may still be writing. It runs in steps, each
-- introduced by a `-- kapso:step KIND` line (persistence/migrations.cpp):
--   transaction    one transaction (the first one only changes the catalog)
--   concurrently   each statement on its own, outside a transaction
--                  (CREATE INDEX CONCURRENTLY: writes go on while it builds)
--   route-merge    persistence/route_repair.cpp, in short transactions that
--                  lock only the rows they merge: phones to E.164 with the
--                  server's own code, then customers and message copies merged
--   route-recount  unread counts and previews from the messages, in batches
-- Every step is idempotent, so a run cut short anywhere is completed by the
-- next; the migration is recorded only with its last step. A database past
-- this migration never runs it again (migrations are recorded by name).

-- kapso:step transaction
-- ALTER TABLE takes ACCESS EXCLUSIVE, if only for milliseconds; while it
-- waits for a long transaction of the inbox application, every statement on
-- the table queues behind it. So it waits 5 s at most, and the migration
-- starts over a little later. One table per transaction: holding one table
-- while waiting for another would deadlock with a writer that holds the
-- second (a message insert) and checks a foreign key onto the first.
SET LOCAL lock_timeout = '5s';
ALTER TABLE workspaces ADD COLUMN IF NOT EXISTS kapso_webhook_secret text;
ALTER TABLE workspaces ALTER COLUMN owner_id DROP NOT NULL;

-- kapso:step transaction
SET LOCAL lock_timeout = '5s';
ALTER TABLE messages ADD COLUMN IF NOT EXISTS status text;

-- kapso:step transaction

-- sent < delivered < read; failed is terminal. NULL and unknown rank lowest.
CREATE OR REPLACE FUNCTION kapso_status_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE status
    WHEN 'received' THEN 1 WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2
    WHEN 'read' THEN 3 WHEN 'failed' THEN 4 ELSE 0 END
$$;

-- The inbox preview of a message's content (http/preview.cpp). The repair
-- needs it before 0003, which defines it again, identically.
CREATE OR REPLACE FUNCTION kapso_preview(content text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT rtrim(left(regexp_replace(ltrim(coalesce(content, ''), E' \t\n\r\x0B\f'),
                                   E'\r\n|[\t\n\r\x0B\f]', ' ', 'g'), 100), ' ')
$$;

-- The keys of a jsonb object, or none for anything else.
CREATE OR REPLACE FUNCTION kapso_object(value jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN jsonb_typeof(value) = 'object' THEN value ELSE '{}'::jsonb END
$$;

-- Moves every single-column foreign key onto `p_table`'s id from each id of
-- `p_gone` to the id beside it in `p_keep`: the tables of the inbox
-- application too (notes, tasks, whatever refers to a contact, conversation
-- or message), so that deleting merged rows cascades nothing away.
CREATE OR REPLACE FUNCTION kapso_repoint_references(p_table regclass, p_gone uuid[],
                                                    p_keep uuid[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  r record;
BEGIN
  IF coalesce(cardinality(p_gone), 0) = 0 THEN
    RETURN;
  END IF;
  FOR r IN
    SELECT c.conrelid::regclass AS referencing, a.attname AS col
    FROM pg_constraint c
    JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
    JOIN pg_attribute k ON k.attrelid = c.confrelid AND k.attnum = c.confkey[1]
    WHERE c.contype = 'f' AND c.confrelid = p_table AND cardinality(c.conkey) = 1
      AND k.attname = 'id'
    ORDER BY c.conrelid::regclass::text, a.attname
  LOOP
    EXECUTE format('UPDATE %s t SET %I = m.keep FROM unnest($1::uuid[], $2::uuid[]) AS m(gone, keep) '
                   'WHERE t.%I = m.gone', r.referencing, r.col, r.col)
    USING p_gone, p_keep;
  END LOOP;
END
$$;

-- Merges conversation `p_gone[i]` into `p_keep[i]`: the kept row takes the
-- sum of their unread counts (kapso_recount_conversations caps it later),
-- the status of whichever row was changed last, an assignee (its own
-- first), the earliest creation time; messages and every other reference
-- move to it, and the merged rows go. The caller holds the rows' locks.
CREATE OR REPLACE FUNCTION kapso_merge_conversation_rows(p_gone uuid[], p_keep uuid[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  merged integer;
BEGIN
  IF coalesce(cardinality(p_gone), 0) = 0 THEN
    RETURN 0;
  END IF;
  UPDATE conversations k SET
    unread_count = s.unread,
    status = coalesce(s.status, k.status),
    assigned_to = s.assigned_to,
    created_at = s.created_at,
    updated_at = now()
  FROM (SELECT m.keep,
               sum(coalesce(v.unread_count, 0))::integer AS unread,
               (array_agg(v.status ORDER BY v.updated_at DESC NULLS LAST, v.id = m.keep DESC)
                  FILTER (WHERE v.status IS NOT NULL))[1] AS status,
               (array_agg(v.assigned_to ORDER BY v.id = m.keep DESC,
                                                 v.updated_at DESC NULLS LAST)
                  FILTER (WHERE v.assigned_to IS NOT NULL))[1] AS assigned_to,
               min(v.created_at) AS created_at
        FROM (SELECT g.gone AS id, g.keep FROM unnest(p_gone, p_keep) AS g(gone, keep)
              UNION
              SELECT u.keep, u.keep FROM unnest(p_keep) AS u(keep)) m
        JOIN conversations v ON v.id = m.id
        GROUP BY m.keep) s
  WHERE k.id = s.keep;
  PERFORM kapso_repoint_references('conversations', p_gone, p_keep);
  DELETE FROM conversations v WHERE v.id = ANY (p_gone);
  GET DIAGNOSTICS merged = ROW_COUNT;
  RETURN merged;
END
$$;

-- The contacts of `p_contacts` ([{"id", "phone"}], phone: the E.164 form
-- of the contact's number, or its stored phone when that is no number) and
-- those that hold such a phone already, locked, grouped by (workspace,
-- phone) in the order a group keeps them: the oldest contact first, the
-- one notes and tasks most likely refer to.
CREATE OR REPLACE FUNCTION kapso_lock_customer_members(p_contacts jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  ids uuid[];
BEGIN
  CREATE TEMP TABLE IF NOT EXISTS kapso_customer_members (
    id uuid PRIMARY KEY, keep uuid NOT NULL, phone text NOT NULL, old_phone text NOT NULL,
    forms jsonb NOT NULL, pos integer NOT NULL) ON COMMIT DROP;
  DELETE FROM kapso_customer_members;
  WITH input AS (
    SELECT i.id, i.phone FROM jsonb_to_recordset(p_contacts) AS i(id uuid, phone text))
  SELECT array_agg(DISTINCT x.id) INTO ids
  FROM (SELECT i.id FROM input i
        UNION ALL
        SELECT c.id FROM input i
        JOIN contacts c0 ON c0.id = i.id
        JOIN contacts c ON c.workspace_id = c0.workspace_id AND c.phone = i.phone) x;
  -- In id order, so that two runs or a writer cannot deadlock on them. A
  -- writer adding a conversation for a contact that goes waits, then fails
  -- on the foreign key and is retried.
  PERFORM 1 FROM contacts c WHERE c.id = ANY (ids) ORDER BY c.id FOR UPDATE;
  WITH input AS (
    SELECT DISTINCT ON (i.id) i.id, i.phone
    FROM jsonb_to_recordset(p_contacts) AS i(id uuid, phone text))
  INSERT INTO kapso_customer_members (id, keep, phone, old_phone, forms, pos)
  SELECT c.id, first_value(c.id) OVER w, t.phone, c.phone,
         CASE WHEN jsonb_typeof(c.metadata -> 'previous_phone_forms') = 'array'
              THEN c.metadata -> 'previous_phone_forms' ELSE '[]'::jsonb END,
         row_number() OVER w
  FROM contacts c
  LEFT JOIN input i ON i.id = c.id
  CROSS JOIN LATERAL (SELECT coalesce(i.phone, c.phone) AS phone) t
  WHERE c.id = ANY (ids)
  WINDOW w AS (PARTITION BY c.workspace_id, t.phone ORDER BY c.created_at, c.id);
  PERFORM 1 FROM conversations v
  JOIN kapso_customer_members m ON v.contact_id = m.id
  ORDER BY v.id FOR UPDATE OF v;
END
$$;

-- The kept contact of each group takes the richest data of the group: its
-- own name, email and lead status unless empty (then the next member's),
-- the highest lead score, every tag, every member's metadata under its own.
CREATE OR REPLACE FUNCTION kapso_merge_contact_fields() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE contacts k SET
    name = coalesce(s.name, k.name),
    email = coalesce(s.email, k.email),
    lead_score = s.lead_score,
    lead_status = coalesce(s.lead_status, k.lead_status),
    tags = coalesce(s.tags, k.tags),
    metadata = s.metadata,
    created_at = s.created_at,
    updated_at = now()
  FROM (SELECT m.keep,
               (array_agg(c.name ORDER BY m.pos) FILTER (WHERE coalesce(c.name, '') <> ''))[1]
                 AS name,
               (array_agg(c.email ORDER BY m.pos) FILTER (WHERE coalesce(c.email, '') <> ''))[1]
                 AS email,
               max(c.lead_score) AS lead_score,
               (array_agg(c.lead_status ORDER BY m.pos)
                  FILTER (WHERE coalesce(c.lead_status, 'new') <> 'new'))[1] AS lead_status,
               (SELECT array_agg(DISTINCT t.tag ORDER BY t.tag)
                FROM kapso_customer_members m2 JOIN contacts c2 ON c2.id = m2.id
                CROSS JOIN LATERAL unnest(c2.tags) AS t(tag)
                WHERE m2.keep = m.keep) AS tags,
               (SELECT coalesce(jsonb_object_agg(e.key, e.value ORDER BY m2.pos DESC), '{}')
                FROM kapso_customer_members m2 JOIN contacts c2 ON c2.id = m2.id
                CROSS JOIN LATERAL jsonb_each(kapso_object(c2.metadata)) e
                WHERE m2.keep = m.keep) AS metadata,
               min(c.created_at) AS created_at
        FROM kapso_customer_members m JOIN contacts c ON c.id = m.id
        GROUP BY m.keep
        HAVING count(*) > 1) s
  WHERE k.id = s.keep;
END
$$;

-- Merges the contacts that are one customer (see kapso_lock_customer_members)
-- with their conversations: per group the oldest conversation stays and the
-- others are merged into it, the kept contact takes the group's data and
-- its E.164 phone, the forms the number was stored under go to
-- metadata.previous_phone_forms, and the other contacts go once nothing
-- refers to them.
CREATE OR REPLACE FUNCTION kapso_merge_customers(p_contacts jsonb)
RETURNS TABLE (r_contacts_merged integer, r_phones_rewritten integer,
               r_conversations_merged integer)
LANGUAGE plpgsql AS $$
DECLARE
  gone uuid[];
  keep uuid[];
BEGIN
  PERFORM kapso_lock_customer_members(p_contacts);
  SELECT array_agg(x.id), array_agg(x.keep) INTO gone, keep
  FROM (SELECT v.id, first_value(v.id) OVER (PARTITION BY v.workspace_id, m.keep
                                             ORDER BY v.created_at, v.id) AS keep
        FROM kapso_customer_members m
        JOIN contacts c ON c.id = m.id
        JOIN conversations v ON v.contact_id = m.id AND v.workspace_id = c.workspace_id) x
  WHERE x.id <> x.keep;
  r_conversations_merged := kapso_merge_conversation_rows(gone, keep);

  PERFORM kapso_merge_contact_fields();
  SELECT array_agg(m.id), array_agg(m.keep) INTO gone, keep
  FROM kapso_customer_members m WHERE m.id <> m.keep;
  PERFORM kapso_repoint_references('contacts', gone, keep);
  DELETE FROM contacts c WHERE c.id = ANY (gone);
  GET DIAGNOSTICS r_contacts_merged = ROW_COUNT;

  -- The phone last: the unique key allows it only once the others are gone.
  UPDATE contacts k SET
    phone = f.phone,
    metadata = CASE WHEN jsonb_array_length(f.forms) = 0 THEN k.metadata
                    ELSE kapso_object(k.metadata)
                         || jsonb_build_object('previous_phone_forms', f.forms) END,
    updated_at = now()
  FROM (SELECT m.keep, m.phone,
               to_jsonb(ARRAY(
                 SELECT DISTINCT y.form COLLATE "C" FROM (
                   SELECT m2.old_phone AS form FROM kapso_customer_members m2
                   WHERE m2.keep = m.keep
                   UNION ALL
                   SELECT e.form FROM kapso_customer_members m2
                   CROSS JOIN LATERAL jsonb_array_elements_text(m2.forms) AS e(form)
                   WHERE m2.keep = m.keep) y
                 WHERE y.form <> m.phone
                 ORDER BY 1)) AS forms
        FROM kapso_customer_members m
        GROUP BY m.keep, m.phone) f
  WHERE k.id = f.keep
    AND (k.phone <> f.phone
         OR (jsonb_array_length(f.forms) > 0
             AND kapso_object(k.metadata) -> 'previous_phone_forms' IS DISTINCT FROM f.forms));
  GET DIAGNOSTICS r_phones_rewritten = ROW_COUNT;
  RETURN NEXT;
END
$$;

-- Merges the copies of each message stored more than once (`p_ids`: every
-- copy) into its oldest copy: the status furthest along (sent < delivered <
-- read, failed terminal), content, media and sender where the kept copy
-- lacks them, the other copies' metadata under its own. References move to
-- it and the other copies go. Returns how many went.
CREATE OR REPLACE FUNCTION kapso_merge_message_copies(p_ids uuid[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  gone uuid[];
  keep uuid[];
  merged integer;
BEGIN
  PERFORM 1 FROM messages m WHERE m.id = ANY (p_ids) ORDER BY m.id FOR UPDATE;
  CREATE TEMP TABLE IF NOT EXISTS kapso_message_copies (
    id uuid PRIMARY KEY, keep uuid NOT NULL, pos integer NOT NULL) ON COMMIT DROP;
  DELETE FROM kapso_message_copies;
  INSERT INTO kapso_message_copies (id, keep, pos)
  SELECT m.id, first_value(m.id) OVER w, row_number() OVER w
  FROM messages m
  WHERE m.id = ANY (p_ids) AND m.kapso_message_id IS NOT NULL
  WINDOW w AS (PARTITION BY m.workspace_id, m.kapso_message_id ORDER BY m.created_at, m.id);
  UPDATE messages k SET
    status = s.status,
    content = coalesce(k.content, s.content),
    media_url = coalesce(k.media_url, s.media_url),
    sender_id = coalesce(k.sender_id, s.sender_id),
    metadata = s.metadata
  FROM (SELECT c.keep,
               (array_agg(m.status ORDER BY kapso_status_rank(m.status) DESC, c.pos))[1]
                 AS status,
               (array_agg(m.content ORDER BY c.pos) FILTER (WHERE m.content IS NOT NULL))[1]
                 AS content,
               (array_agg(m.media_url ORDER BY c.pos)
                  FILTER (WHERE m.media_url IS NOT NULL))[1] AS media_url,
               (array_agg(m.sender_id ORDER BY c.pos)
                  FILTER (WHERE m.sender_id IS NOT NULL))[1] AS sender_id,
               (SELECT coalesce(jsonb_object_agg(e.key, e.value ORDER BY c2.pos DESC), '{}')
                FROM kapso_message_copies c2 JOIN messages m2 ON m2.id = c2.id
                CROSS JOIN LATERAL jsonb_each(kapso_object(m2.metadata)) e
                WHERE c2.keep = c.keep) AS metadata
        FROM kapso_message_copies c JOIN messages m ON m.id = c.id
        GROUP BY c.keep
        HAVING count(*) > 1) s
  WHERE k.id = s.keep;
  SELECT array_agg(c.id), array_agg(c.keep) INTO gone, keep
  FROM kapso_message_copies c WHERE c.id <> c.keep;
  PERFORM kapso_repoint_references('messages', gone, keep);
  DELETE FROM messages m WHERE m.id = ANY (gone);
  GET DIAGNOSTICS merged = ROW_COUNT;
  RETURN merged;
END
$$;

-- The inbox state of these conversations from their messages. The newest
-- message by its own time (then preview, the order the writers keep) gives
-- last_message_at and the preview. The unread count is capped by the
-- distinct inbound messages since the last one a person sent (from the inbox
-- or the WhatsApp Business app: whoever answered had read them), so that
-- retries the route counted twice and the sums of merged conversations show
-- no more unread than there can be. A count below that stays: the inbox
-- application's "mark as read" sets it to 0, the route lost increments, and
-- nothing tells the two apart. Returns how many rows changed.
CREATE OR REPLACE FUNCTION kapso_recount_conversations(p_ids uuid[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  changed integer;
BEGIN
  -- Locked first, counted by the next statement: a writer's message and its
  -- unread are one transaction, so the count sees both or neither. NO KEY:
  -- messages may go on being inserted (their foreign key check shares the lock).
  PERFORM 1 FROM conversations v WHERE v.id = ANY (p_ids) ORDER BY v.id FOR NO KEY UPDATE;
  UPDATE conversations v SET
    unread_count = least(coalesce(v.unread_count, 0), s.unread),
    last_message_at = coalesce(s.newest_at, v.last_message_at),
    last_message_preview = CASE WHEN s.newest_at IS NULL THEN v.last_message_preview
                                ELSE s.preview END,
    updated_at = now()
  FROM (SELECT c.id, n.created_at AS newest_at, n.preview,
               (SELECT count(DISTINCT coalesce(x.kapso_message_id, x.id::text))
                FROM messages x
                WHERE x.conversation_id = c.id AND x.direction = 'inbound'
                  AND x.created_at > coalesce(
                        (SELECT max(y.created_at) FROM messages y
                         WHERE y.conversation_id = c.id AND y.direction = 'outbound'
                           AND y.sender_type = 'user'), '-infinity')) AS unread
        FROM unnest(p_ids) AS c(id)
        LEFT JOIN LATERAL (
          SELECT x.created_at, kapso_preview(x.content) AS preview FROM messages x
          WHERE x.conversation_id = c.id AND x.created_at IS NOT NULL
          ORDER BY x.created_at DESC, kapso_preview(x.content) COLLATE "C" DESC
          LIMIT 1) n ON true) s
  WHERE v.id = s.id
    AND (v.unread_count IS DISTINCT FROM least(coalesce(v.unread_count, 0), s.unread)
         OR (s.newest_at IS NOT NULL
             AND (v.last_message_at, v.last_message_preview)
                 IS DISTINCT FROM (s.newest_at, s.preview)));
  GET DIAGNOSTICS changed = ROW_COUNT;
  RETURN changed;
END
$$;

-- A concurrent build cut short, or failed on a duplicate the route wrote
-- meanwhile, leaves an invalid index behind: it is built again below.
SET LOCAL lock_timeout = '5s';
DO $$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT i.indexrelid::regclass AS name FROM pg_index i
           WHERE NOT i.indisvalid
             AND i.indexrelid::regclass::text IN ('uq_conversations_workspace_contact',
                                                  'uq_messages_workspace_kapso_message',
                                                  'idx_contacts_bsuid',
                                                  'kapso_repair_conversations_contact')
  LOOP
    EXECUTE format('DROP INDEX %s', r.name);
  END LOOP;
END
$$;

-- kapso:step concurrently
-- The route's schema has no index on conversations.contact_id: without one,
-- deleting each merged contact scans every conversation (its foreign key).
-- It lives only while the repair merges.
CREATE INDEX CONCURRENTLY IF NOT EXISTS kapso_repair_conversations_contact
  ON conversations (contact_id);

-- kapso:step route-merge

-- kapso:step concurrently
-- conversations: one per (workspace_id, contact_id); messages: one per
-- (workspace_id, kapso_message_id). A duplicate written while they build
-- fails the build; the migration then starts over (persistence/migrations.cpp).
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_conversations_workspace_contact
  ON conversations (workspace_id, contact_id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_messages_workspace_kapso_message
  ON messages (workspace_id, kapso_message_id);
-- A customer known only by a business-scoped user id is found again by it
-- once a later event links it to a phone.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_contacts_bsuid
  ON contacts (workspace_id, (metadata ->> 'business_scoped_user_id'))
  WHERE metadata ? 'business_scoped_user_id';
DROP INDEX CONCURRENTLY IF EXISTS kapso_repair_conversations_contact;

-- kapso:step route-recount

-- kapso:step transaction
-- contacts: one per (workspace_id, phone), which the inbox schema has
-- already; only when no unique key on exactly these columns exists yet (a
-- second one would double the cost of every contact insert).
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

-- Statuses that arrived before their message; applied when it arrives.
CREATE TABLE IF NOT EXISTS kapso_pending_statuses (
  workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  kapso_message_id varchar(255) NOT NULL,
  status text NOT NULL,
  error jsonb,
  received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workspace_id, kapso_message_id, status)
);
