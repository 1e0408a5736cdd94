-- Watches a `kapso-ingest migrate` run from two other sessions (benchmarks/route_migration.sh):
--   bench.sample_locks()  every ~2 ms, the table locks the migration's session holds
--                         (pg_locks; a hold = one transaction's samples of one mode)
--   bench.probe_writes()  the route's own writes and the inbox's reads, one each per ~10 ms,
--                         each timed: how long a live route or inbox waited on the migration
-- Both run until bench.control.stop, each statement committed on its own. Nothing here has
-- a foreign key onto the inbox tables, so the migration's merges never touch it.
\set ON_ERROR_STOP on
CREATE SCHEMA bench;
CREATE TABLE bench.control (stop boolean NOT NULL);
INSERT INTO bench.control VALUES (false);
CREATE TABLE bench.lock_samples (
  at timestamptz NOT NULL, relation text NOT NULL, mode text NOT NULL, granted boolean,
  xact_start timestamptz, query text);
CREATE TABLE bench.probes (
  at timestamptz NOT NULL, kind text NOT NULL, ms double precision NOT NULL);

-- The probe's customer: a workspace of its own, its number already E.164.
INSERT INTO workspaces (name, slug, kapso_phone_id) VALUES ('Probe', 'probe', '889999999999999');
INSERT INTO contacts (workspace_id, phone)
SELECT id, '+15559999999' FROM workspaces WHERE slug = 'probe';
INSERT INTO conversations (workspace_id, contact_id)
SELECT workspace_id, id FROM contacts WHERE phone = '+15559999999';

CREATE PROCEDURE bench.sample_locks() LANGUAGE plpgsql AS $$
BEGIN
  WHILE NOT (SELECT stop FROM bench.control) LOOP
    INSERT INTO bench.lock_samples
    SELECT clock_timestamp(), c.relname, l.mode, l.granted, a.xact_start,
           left(regexp_replace(a.query, '\s+', ' ', 'g'), 200)
    FROM pg_locks l
    JOIN pg_stat_activity a ON a.pid = l.pid
    JOIN pg_class c ON c.oid = l.relation
    WHERE l.locktype = 'relation' AND a.application_name = 'kapso-ingest migrate'
      AND c.relname IN ('workspaces', 'contacts', 'conversations', 'messages');
    COMMIT;
    PERFORM pg_sleep(0.002);
  END LOOP;
END
$$;

-- One probe statement, timed; a failure (a deadlock's victim, say) is recorded, not fatal.
CREATE FUNCTION bench.probe(kind text, statement text, ws uuid, conversation uuid, i bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  started timestamptz := clock_timestamp();
BEGIN
  BEGIN
    EXECUTE statement USING ws, conversation, i;
  EXCEPTION WHEN OTHERS THEN
    kind := kind || ' (failed: ' || SQLSTATE || ')';
  END;
  INSERT INTO bench.probes VALUES (started, kind,
    extract(epoch FROM clock_timestamp() - started) * 1000);
END
$$;

CREATE PROCEDURE bench.probe_writes() LANGUAGE plpgsql AS $$
DECLARE
  ws uuid;
  conversation uuid;
  i bigint := 0;
BEGIN
  SELECT v.workspace_id, v.id INTO ws, conversation FROM conversations v
  JOIN workspaces w ON w.id = v.workspace_id WHERE w.slug = 'probe';
  WHILE NOT (SELECT stop FROM bench.control) LOOP
    i := i + 1;
    PERFORM bench.probe('workspaces read',
      $q$SELECT id FROM workspaces WHERE kapso_phone_id = '880000000000000'$q$,
      ws, conversation, i);
    COMMIT;
    PERFORM bench.probe('contacts insert',
      $q$INSERT INTO contacts (workspace_id, phone) VALUES ($1, '+1555' || lpad($3::text, 7, '0'))$q$,
      ws, conversation, i);
    COMMIT;
    PERFORM bench.probe('messages insert',
      $q$INSERT INTO messages (conversation_id, workspace_id, direction, sender_type, content,
         kapso_message_id, created_at)
         VALUES ($2, $1, 'inbound', 'contact', 'probe', 'wamid.probe.' || $3, now())$q$,
      ws, conversation, i);
    COMMIT;
    PERFORM bench.probe('conversations update',
      $q$UPDATE conversations SET unread_count = coalesce(unread_count, 0) + 1,
         last_message_at = now(), last_message_preview = 'probe' WHERE id = $2$q$,
      ws, conversation, i);
    COMMIT;
    PERFORM bench.probe('messages read',
      $q$SELECT count(*) FROM (SELECT 1 FROM messages WHERE conversation_id = $2
         ORDER BY created_at DESC LIMIT 20) x$q$,
      ws, conversation, i);
    COMMIT;
    PERFORM pg_sleep(0.01);
  END LOOP;
END
$$;

-- The figures, once bench.control.stop is set and both sessions ended.
CREATE VIEW bench.longest_holds AS
WITH holds AS (
  SELECT relation, mode, xact_start, min(at) AS first_seen, max(at) AS last_seen,
         (array_agg(query ORDER BY at))[1] AS query
  FROM bench.lock_samples WHERE granted
  GROUP BY relation, mode, xact_start)
SELECT DISTINCT ON (relation, mode) relation AS "table", mode,
       round(extract(epoch FROM last_seen - first_seen) * 1000)::int AS held_ms,
       left(query, 100) AS "statement (its start)"
FROM holds
ORDER BY relation, mode, last_seen - first_seen DESC;

CREATE VIEW bench.probe_waits AS
SELECT DISTINCT ON (p.kind) p.kind AS "route/inbox statement",
       (SELECT count(*) FROM bench.probes q WHERE q.kind = p.kind) AS probes,
       (SELECT round(percentile_cont(0.99) WITHIN GROUP (ORDER BY q.ms)::numeric, 1)
        FROM bench.probes q WHERE q.kind = p.kind) AS p99_ms,
       round(p.ms::numeric, 1) AS max_ms,
       (SELECT left(s.query, 80) FROM bench.lock_samples s
        WHERE s.at BETWEEN p.at AND p.at + p.ms * interval '1 millisecond'
        ORDER BY s.at LIMIT 1) AS "the migration meanwhile"
FROM bench.probes p
ORDER BY p.kind, p.ms DESC;
