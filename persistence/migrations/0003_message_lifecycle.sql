-- Edits, deletions and account changes: they change what is stored and are
-- never rows of their own. What arrives before the row it changes waits here
-- and is applied when that row arrives. Every function below is idempotent
-- and ends in the same rows whatever the order of its inputs.

-- Edits and deletions (revokes) whose original message is not stored yet.
CREATE TABLE IF NOT EXISTS kapso_pending_message_changes (
  workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  event_id varchar(255) NOT NULL,            -- the edit's or revoke's own message id
  original_message_id varchar(255) NOT NULL,
  kind text NOT NULL CHECK (kind IN ('edit', 'revoke')),
  changed_at timestamptz NOT NULL,           -- the event's own WhatsApp timestamp
  content text,                              -- edits: the new version
  media_url text,
  metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
  received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workspace_id, event_id)
);
CREATE INDEX IF NOT EXISTS idx_pending_message_changes_original
  ON kapso_pending_message_changes (workspace_id, original_message_id);

-- Customers' number changes, kept for a week so that messages from the old
-- number that arrive late still reach the customer's contact.
CREATE TABLE IF NOT EXISTS kapso_number_changes (
  workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  event_id varchar(255) NOT NULL,            -- the system message's id
  old_phone varchar(50) NOT NULL,
  new_phone varchar(50) NOT NULL,
  changed_at timestamptz NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workspace_id, event_id)
);
CREATE INDEX IF NOT EXISTS idx_number_changes_old
  ON kapso_number_changes (workspace_id, old_phone);
CREATE INDEX IF NOT EXISTS idx_number_changes_new
  ON kapso_number_changes (workspace_id, new_phone);

-- The inbox preview of a message's content as the server computes it
-- (http/preview.cpp): each ASCII whitespace becomes a space (CRLF one), none
-- at either end, at most 100 characters.
CREATE OR REPLACE FUNCTION kapso_preview(content text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT rtrim(left(regexp_replace(ltrim(coalesce(content, ''), E' \t\n\r\x0B\f'),
                                   E'\r\n|[\t\n\r\x0B\f]', ' ', 'g'), 100), ' ')
$$;

-- Times kept in metadata: ISO 8601 in UTC, which also sorts as text.
CREATE OR REPLACE FUNCTION kapso_iso_time(at timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
$$;

-- A conversation shows its newest message by (time, preview), the order the
-- batch insert keeps. Recomputed when that message changes or messages move;
-- with `p_since`, only while the conversation shows nothing newer than it.
CREATE OR REPLACE FUNCTION kapso_refresh_preview(p_conversation uuid, p_since timestamptz)
RETURNS void LANGUAGE sql AS $$
  UPDATE conversations v
  SET last_message_at = n.created_at, last_message_preview = n.preview, updated_at = now()
  FROM (SELECT x.created_at, kapso_preview(x.content) AS preview
        FROM messages x
        WHERE x.conversation_id = p_conversation AND x.created_at IS NOT NULL
        ORDER BY x.created_at DESC, kapso_preview(x.content) COLLATE "C" DESC
        LIMIT 1) n
  WHERE v.id = p_conversation
    AND (p_since IS NULL OR v.last_message_at IS NULL OR v.last_message_at <= p_since)
    AND (v.last_message_at, v.last_message_preview)
        IS DISTINCT FROM (n.created_at, n.preview)
$$;

-- A message's content and metadata after one more edit. The edits of a
-- message are a set ordered by (time, edit id): the newest is shown, and
-- metadata.edits lists every older version, oldest first, with the time and
-- id of the edit that replaced it. A late edit is slotted into that history;
-- a known one changes nothing. `is_newest`: the edit is now the shown one.
CREATE OR REPLACE FUNCTION kapso_edited(
    p_content text, p_metadata jsonb, p_edit_id text, p_edited_at text, p_edit_content text,
    OUT new_content text, OUT new_metadata jsonb, OUT is_newest boolean,
    OUT is_changed boolean)
LANGUAGE plpgsql STABLE AS $$
DECLARE
  history jsonb := p_metadata -> 'edits';
  known integer;
  first_content text;
  shown_at text;
  shown_id text;
BEGIN
  new_content := p_content;
  new_metadata := coalesce(p_metadata, '{}'::jsonb);
  is_newest := false;
  is_changed := false;
  IF history IS NULL OR jsonb_typeof(history) <> 'array' THEN
    history := '[]'::jsonb;
  END IF;
  known := jsonb_array_length(history);
  IF new_metadata ->> 'edit_id' = p_edit_id
     OR EXISTS (SELECT 1 FROM jsonb_array_elements(history) h(e)
                WHERE h.e ->> 'edit_id' = p_edit_id) THEN
    RETURN;
  END IF;
  first_content := CASE WHEN known > 0 THEN history -> 0 ->> 'content' ELSE p_content END;
  WITH versions AS (
    -- Entry k holds the version edit k replaced; the version edit k brought
    -- is entry k + 1's, or the shown content for the last edit.
    SELECT h.e ->> 'edited_at' AS at, h.e ->> 'edit_id' AS id,
           CASE WHEN h.k < known THEN history -> h.k::integer ->> 'content'
                ELSE p_content END AS body
    FROM jsonb_array_elements(history) WITH ORDINALITY AS h(e, k)
    UNION ALL
    SELECT p_edited_at, p_edit_id, p_edit_content),
  ordered AS (
    SELECT v.at, v.id, v.body,
           lag(v.body, 1, first_content) OVER w AS replaced,
           row_number() OVER w AS k, count(*) OVER () AS n
    FROM versions v
    WINDOW w AS (ORDER BY v.at COLLATE "C", v.id COLLATE "C"))
  SELECT jsonb_agg(jsonb_build_object('content', o.replaced, 'edited_at', o.at,
                                      'edit_id', o.id) ORDER BY o.k),
         max(o.body) FILTER (WHERE o.k = o.n),
         max(o.at) FILTER (WHERE o.k = o.n),
         max(o.id) FILTER (WHERE o.k = o.n)
  INTO history, new_content, shown_at, shown_id
  FROM ordered o;
  new_metadata := new_metadata || jsonb_build_object('edits', history, 'edited_at', shown_at,
                                                     'edit_id', shown_id);
  is_newest := shown_id = p_edit_id;
  is_changed := true;
END
$$;

-- Applies every waiting edit and deletion of these messages that are stored
-- now, then forgets them. A deletion is final: the text is kept nowhere
-- (metadata.edits goes too), media is cleared, and later edits change
-- nothing. Returns one row per stored original (event NULL) and one per
-- applied event, `changed` when it changed the message.
CREATE OR REPLACE FUNCTION kapso_apply_message_changes(p_originals jsonb)
RETURNS TABLE (r_workspace_id text, r_original_message_id text, r_event_id text,
               r_changed boolean)
LANGUAGE plpgsql AS $$
DECLARE
  o record;
  p record;
  e record;
  m messages%ROWTYPE;
  any_change boolean;
  this_change boolean;
  content_keys constant text[] := ARRAY[
    'edits', 'edited_at', 'edit_id', 'media', 'has_media', 'location', 'contacts',
    'interactive', 'button', 'reaction', 'order', 'template', 'transcript', 'referral'];
BEGIN
  FOR o IN SELECT DISTINCT i.workspace_id, i.original_message_id
           FROM jsonb_to_recordset(p_originals) AS i(workspace_id uuid, original_message_id text)
           ORDER BY 1, 2
  LOOP
    SELECT x.* INTO m FROM messages x
    WHERE x.workspace_id = o.workspace_id AND x.kapso_message_id = o.original_message_id
    FOR UPDATE;
    CONTINUE WHEN NOT FOUND;
    r_workspace_id := o.workspace_id::text;
    r_original_message_id := o.original_message_id;
    r_event_id := NULL;
    r_changed := false;
    RETURN NEXT;
    any_change := false;
    FOR p IN SELECT c.event_id, c.kind, c.changed_at, c.content, c.media_url, c.metadata
             FROM kapso_pending_message_changes c
             WHERE c.workspace_id = o.workspace_id
               AND c.original_message_id = o.original_message_id
             ORDER BY (c.kind = 'revoke') DESC, c.changed_at, c.event_id
             FOR UPDATE
    LOOP
      this_change := false;
      IF coalesce(m.metadata, '{}'::jsonb) ? 'deleted_at' THEN
        NULL;
      ELSIF p.kind = 'revoke' THEN
        m.content := '[Message deleted]';
        m.media_url := NULL;
        m.metadata := (coalesce(m.metadata, '{}'::jsonb) - content_keys)
                      || jsonb_build_object('deleted_at', kapso_iso_time(p.changed_at));
        this_change := true;
      ELSE
        SELECT * INTO e FROM kapso_edited(m.content, m.metadata, p.event_id,
                                          kapso_iso_time(p.changed_at), p.content);
        IF e.is_changed THEN
          m.content := e.new_content;
          m.metadata := e.new_metadata;
          -- A caption edit keeps its media; an edit that names media shows it.
          IF e.is_newest THEN
            m.media_url := coalesce(nullif(p.media_url, ''), m.media_url);
            IF p.metadata ? 'media' THEN
              m.metadata := m.metadata || jsonb_build_object('media', p.metadata -> 'media');
            END IF;
          END IF;
          this_change := true;
        END IF;
      END IF;
      any_change := any_change OR this_change;
      r_event_id := p.event_id;
      r_changed := this_change;
      RETURN NEXT;
    END LOOP;
    DELETE FROM kapso_pending_message_changes c
    WHERE c.workspace_id = o.workspace_id AND c.original_message_id = o.original_message_id;
    IF any_change THEN
      UPDATE messages x SET content = m.content, media_url = m.media_url, metadata = m.metadata
      WHERE x.id = m.id;
      PERFORM kapso_refresh_preview(m.conversation_id, m.created_at);
    END IF;
  END LOOP;
END
$$;

-- contacts.metadata.previous_phones: `p_first`'s numbers, then `p_second`'s,
-- then `p_added`, each once, never the contact's own number `p_own`.
CREATE OR REPLACE FUNCTION kapso_previous_phones(p_first jsonb, p_second jsonb,
                                                 p_added text, p_own text)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT coalesce(jsonb_agg(to_jsonb(l.phone) ORDER BY l.pos), '[]'::jsonb)
  FROM (SELECT a.phone, min(a.pos) AS pos
        FROM (SELECT f.phone, f.pos FROM jsonb_array_elements_text(
                CASE WHEN jsonb_typeof(p_first) = 'array' THEN p_first ELSE '[]' END)
                WITH ORDINALITY AS f(phone, pos)
              UNION ALL
              SELECT s.phone, 1000000 + s.pos FROM jsonb_array_elements_text(
                CASE WHEN jsonb_typeof(p_second) = 'array' THEN p_second ELSE '[]' END)
                WITH ORDINALITY AS s(phone, pos)
              UNION ALL
              SELECT p_added, 2000000 WHERE p_added IS NOT NULL) a
        WHERE a.phone IS DISTINCT FROM p_own
        GROUP BY a.phone) l
$$;

-- Moves the customer who changed from `p_old` to `p_new` at `p_at`: their
-- messages dated up to the change go to the contact of the new number.
--  * Nothing dated after the change: the whole contact takes the new number
--    (its id, name, tags and conversation stay). When a contact with the new
--    number exists too (the customer wrote from it before the change
--    arrived), the two are merged: the older contact row stays, the other's
--    messages, unread count and preview join its conversation, and the
--    newer row goes.
--  * Messages from the old number dated after the change belong to whoever
--    holds that number now: they stay, the earlier ones move.
-- A change is void once someone changed *into* `p_old` later (the customer
-- changed back), so messages never move back and forth. Returns true when
-- anything moved.
CREATE OR REPLACE FUNCTION kapso_move_contact(p_ws uuid, p_old text, p_new text,
                                              p_at timestamptz)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  old_contact contacts%ROWTYPE;
  new_contact contacts%ROWTYPE;
  keep contacts%ROWTYPE;
  gone contacts%ROWTYPE;
  keep_conv conversations%ROWTYPE;
  gone_conv conversations%ROWTYPE;
  old_conv conversations%ROWTYPE;
  new_contact_id uuid;
  new_conv_id uuid;
  moving integer := 0;
  staying integer := 0;
  staying_inbound integer := 0;
  moved_unread integer;
  gone_shows_newer boolean;
BEGIN
  IF p_old = p_new THEN
    RETURN false;
  END IF;
  IF EXISTS (SELECT 1 FROM kapso_number_changes n
             WHERE n.workspace_id = p_ws AND n.new_phone = p_old AND n.changed_at >= p_at) THEN
    RETURN false;
  END IF;
  SELECT c.* INTO old_contact FROM contacts c
  WHERE c.workspace_id = p_ws AND c.phone = p_old FOR UPDATE;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  SELECT v.* INTO old_conv FROM conversations v
  WHERE v.workspace_id = p_ws AND v.contact_id = old_contact.id FOR UPDATE;
  IF old_conv.id IS NOT NULL THEN
    SELECT count(*) FILTER (WHERE x.created_at IS NULL OR x.created_at <= p_at),
           count(*) FILTER (WHERE x.created_at > p_at),
           count(*) FILTER (WHERE x.created_at > p_at AND x.direction = 'inbound')
    INTO moving, staying, staying_inbound
    FROM messages x WHERE x.conversation_id = old_conv.id;
  END IF;

  IF staying = 0 THEN
    SELECT c.* INTO new_contact FROM contacts c
    WHERE c.workspace_id = p_ws AND c.phone = p_new FOR UPDATE;
    IF new_contact.id IS NULL THEN
      UPDATE contacts c SET
        phone = p_new,
        metadata = coalesce(c.metadata, '{}'::jsonb)
                   || jsonb_build_object('previous_phones', kapso_previous_phones(
                        c.metadata -> 'previous_phones', NULL, p_old, p_new)),
        updated_at = now()
      WHERE c.id = old_contact.id;
      RETURN true;
    END IF;
    -- The older row stays: it is the one notes and tasks may refer to.
    IF (new_contact.created_at, new_contact.id) < (old_contact.created_at, old_contact.id) THEN
      keep := new_contact;
      gone := old_contact;
    ELSE
      keep := old_contact;
      gone := new_contact;
    END IF;
    SELECT v.* INTO keep_conv FROM conversations v
    WHERE v.workspace_id = p_ws AND v.contact_id = keep.id FOR UPDATE;
    SELECT v.* INTO gone_conv FROM conversations v
    WHERE v.workspace_id = p_ws AND v.contact_id = gone.id FOR UPDATE;
    IF gone_conv.id IS NOT NULL AND keep_conv.id IS NOT NULL THEN
      UPDATE messages x SET conversation_id = keep_conv.id WHERE x.conversation_id = gone_conv.id;
      gone_shows_newer := gone_conv.last_message_at IS NOT NULL
        AND (keep_conv.last_message_at IS NULL
             OR gone_conv.last_message_at > keep_conv.last_message_at
             OR (gone_conv.last_message_at = keep_conv.last_message_at
                 AND coalesce(gone_conv.last_message_preview, '') COLLATE "C"
                     > coalesce(keep_conv.last_message_preview, '') COLLATE "C"));
      UPDATE conversations v SET
        unread_count = coalesce(v.unread_count, 0) + coalesce(gone_conv.unread_count, 0),
        last_message_at = CASE WHEN gone_shows_newer THEN gone_conv.last_message_at
                               ELSE v.last_message_at END,
        last_message_preview = CASE WHEN gone_shows_newer THEN gone_conv.last_message_preview
                                    ELSE v.last_message_preview END,
        assigned_to = coalesce(v.assigned_to, gone_conv.assigned_to),
        updated_at = now()
      WHERE v.id = keep_conv.id;
      DELETE FROM conversations v WHERE v.id = gone_conv.id;
    ELSIF gone_conv.id IS NOT NULL THEN
      UPDATE conversations v SET contact_id = keep.id, updated_at = now()
      WHERE v.id = gone_conv.id;
    END IF;
    DELETE FROM contacts c WHERE c.id = gone.id;
    UPDATE contacts c SET
      phone = p_new,
      name = CASE WHEN coalesce(c.name, '') = '' THEN coalesce(gone.name, c.name)
                  ELSE c.name END,
      email = coalesce(c.email, gone.email),
      tags = CASE WHEN cardinality(coalesce(gone.tags, '{}')) = 0 THEN c.tags
                  ELSE ARRAY(SELECT DISTINCT t FROM unnest(coalesce(c.tags, '{}') || gone.tags) t
                             ORDER BY t) END,
      metadata = coalesce(gone.metadata, '{}'::jsonb) || coalesce(c.metadata, '{}'::jsonb)
                 || jsonb_build_object('previous_phones', kapso_previous_phones(
                      old_contact.metadata -> 'previous_phones',
                      new_contact.metadata -> 'previous_phones', p_old, p_new)),
      updated_at = now()
    WHERE c.id = keep.id;
    RETURN true;
  END IF;

  IF moving = 0 THEN
    RETURN false;
  END IF;
  INSERT INTO contacts AS c (workspace_id, phone, metadata)
  VALUES (p_ws, p_new, jsonb_build_object('previous_phones', jsonb_build_array(p_old)))
  ON CONFLICT (workspace_id, phone) DO UPDATE
  SET metadata = coalesce(c.metadata, '{}'::jsonb)
                 || jsonb_build_object('previous_phones', kapso_previous_phones(
                      c.metadata -> 'previous_phones', NULL, p_old, p_new)),
      updated_at = now()
  RETURNING c.id INTO new_contact_id;
  INSERT INTO conversations (workspace_id, contact_id) VALUES (p_ws, new_contact_id)
  ON CONFLICT (workspace_id, contact_id) DO NOTHING;
  SELECT v.id INTO new_conv_id FROM conversations v
  WHERE v.workspace_id = p_ws AND v.contact_id = new_contact_id FOR UPDATE;
  UPDATE messages x SET conversation_id = new_conv_id
  WHERE x.conversation_id = old_conv.id AND (x.created_at IS NULL OR x.created_at <= p_at);
  -- Unread messages are the newest: those that stay keep theirs first.
  moved_unread := greatest(0, coalesce(old_conv.unread_count, 0) - staying_inbound);
  UPDATE conversations v SET unread_count = coalesce(v.unread_count, 0) - moved_unread,
                             updated_at = now()
  WHERE v.id = old_conv.id;
  UPDATE conversations v SET unread_count = coalesce(v.unread_count, 0) + moved_unread,
                             updated_at = now()
  WHERE v.id = new_conv_id;
  PERFORM kapso_refresh_preview(old_conv.id, NULL);
  PERFORM kapso_refresh_preview(new_conv_id, NULL);
  RETURN true;
END
$$;

-- Applies the recorded number changes away from these (workspace, phone)
-- keys, oldest change first, and onwards along a chain of changes. Returns
-- one row per change that moved something.
CREATE OR REPLACE FUNCTION kapso_apply_number_changes(p_keys jsonb)
RETURNS TABLE (r_workspace_id text, r_old_phone text, r_new_phone text)
LANGUAGE plpgsql AS $$
DECLARE
  k record;
  n record;
  todo text[];
  done text[];
  from_phone text;
  pos integer;
BEGIN
  FOR k IN SELECT x.workspace_id, array_agg(DISTINCT x.phone ORDER BY x.phone) AS phones
           FROM jsonb_to_recordset(p_keys) AS x(workspace_id uuid, phone text)
           GROUP BY x.workspace_id ORDER BY x.workspace_id
  LOOP
    todo := k.phones;
    done := '{}';
    pos := 1;
    WHILE pos <= cardinality(todo) LOOP
      from_phone := todo[pos];
      pos := pos + 1;
      CONTINUE WHEN from_phone = ANY (done);
      done := done || from_phone;
      FOR n IN SELECT c.new_phone, c.changed_at FROM kapso_number_changes c
               WHERE c.workspace_id = k.workspace_id AND c.old_phone = from_phone
               ORDER BY c.changed_at, c.event_id
      LOOP
        IF kapso_move_contact(k.workspace_id, from_phone, n.new_phone, n.changed_at) THEN
          r_workspace_id := k.workspace_id::text;
          r_old_phone := from_phone;
          r_new_phone := n.new_phone;
          RETURN NEXT;
          todo := todo || n.new_phone::text;
        END IF;
      END LOOP;
    END LOOP;
  END LOOP;
END
$$;

-- Notes identity changes on the contacts (created when unknown): the newest
-- change by (time, hash) is kept in metadata.identity_changed_at and
-- metadata.identity_hash. Returns `changed` per event.
CREATE OR REPLACE FUNCTION kapso_note_identity_changes(p_rows jsonb)
RETURNS TABLE (r_workspace_id text, r_event_id text, r_changed boolean)
LANGUAGE plpgsql AS $$
DECLARE
  i record;
  contact contacts%ROWTYPE;
  noted jsonb;
BEGIN
  FOR i IN SELECT * FROM jsonb_to_recordset(p_rows)
             AS x(workspace_id uuid, event_id text, phone text, bsuid text, name text,
                  ts bigint, hash text)
  LOOP
    noted := jsonb_build_object('identity_changed_at', kapso_iso_time(to_timestamp(i.ts)),
                                'identity_hash', coalesce(i.hash, ''));
    r_workspace_id := i.workspace_id::text;
    r_event_id := i.event_id;
    SELECT c.* INTO contact FROM contacts c
    WHERE c.workspace_id = i.workspace_id
      AND (c.phone = i.phone
           OR (coalesce(i.bsuid, '') <> '' AND c.metadata ? 'business_scoped_user_id'
               AND c.metadata ->> 'business_scoped_user_id' = i.bsuid))
    ORDER BY (c.phone = i.phone) DESC
    LIMIT 1
    FOR UPDATE;
    IF contact.id IS NULL THEN
      INSERT INTO contacts (workspace_id, phone, name, metadata)
      VALUES (i.workspace_id, i.phone, NULLIF(i.name, ''),
              noted || CASE WHEN coalesce(i.bsuid, '') = '' THEN '{}'::jsonb
                            ELSE jsonb_build_object('business_scoped_user_id', i.bsuid) END)
      ON CONFLICT (workspace_id, phone) DO NOTHING;
      IF FOUND THEN
        r_changed := true;
        RETURN NEXT;
        CONTINUE;
      END IF;
      SELECT c.* INTO contact FROM contacts c
      WHERE c.workspace_id = i.workspace_id AND c.phone = i.phone FOR UPDATE;
    END IF;
    r_changed := (coalesce(contact.metadata ->> 'identity_changed_at', ''),
                  coalesce(contact.metadata ->> 'identity_hash', ''))
                 < (noted ->> 'identity_changed_at', noted ->> 'identity_hash');
    IF r_changed THEN
      UPDATE contacts c SET metadata = coalesce(c.metadata, '{}'::jsonb) || noted,
                            updated_at = now()
      WHERE c.id = contact.id;
    END IF;
    RETURN NEXT;
  END LOOP;
END
$$;

-- Housekeeping (every few seconds, one writer): changes that waited while
-- their row was written by another writer or server, and what waited a week.
CREATE OR REPLACE FUNCTION kapso_sweep_lifecycle() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM kapso_pending_message_changes WHERE received_at < now() - interval '7 days';
  DELETE FROM kapso_number_changes WHERE received_at < now() - interval '7 days';
  PERFORM 1 FROM kapso_apply_message_changes((
    SELECT coalesce(jsonb_agg(jsonb_build_object('workspace_id', w.workspace_id,
                                                 'original_message_id', w.original_message_id)),
                    '[]'::jsonb)
    FROM (SELECT DISTINCT p.workspace_id, p.original_message_id
          FROM kapso_pending_message_changes p
          JOIN messages m ON m.workspace_id = p.workspace_id
                         AND m.kapso_message_id = p.original_message_id
          LIMIT 5000) w));
  PERFORM 1 FROM kapso_apply_number_changes((
    SELECT coalesce(jsonb_agg(jsonb_build_object('workspace_id', w.workspace_id,
                                                 'phone', w.old_phone)),
                    '[]'::jsonb)
    FROM (SELECT DISTINCT n.workspace_id, n.old_phone
          FROM kapso_number_changes n
          JOIN contacts c ON c.workspace_id = n.workspace_id AND c.phone = n.old_phone
          LIMIT 5000) w));
END
$$;
