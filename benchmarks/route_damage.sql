-- The Next.js route's database at scale, with the damage its check-then-insert and
-- read-modify-write leave under Kapso's retries, in the kinds and about the proportions
-- tests/integration/route_migration_test.cpp builds through a model of the route:
--   * customers: 4 in 5 with a US number, 1 in 5 British; 2 in 3 named;
--   * phone forms: the first contact stored "+E.164" (60 %) or as bare digits (40 %);
--     8 % of customers also have a contact under the other form (the name on either),
--     and 1 in 8 British customers one under the national form ("07...");
--   * 3 % of customers have a second conversation on their first contact (a race);
--   * messages: 70 % inbound, 15 % bot and 8 % person echoes, 7 % sent from the inbox
--     application (no Kapso id); statuses on the outbound ones; 15 % of a customer's
--     messages land in another of its conversations;
--   * 2 % of the messages with a Kapso id stored twice, half in another conversation,
--     the second copy's status behind;
--   * unread counts: 10 % counted retries (+1 or +2), 5 % lost an update (-1), 40 % read
--     (0); last_message_at an arrival time 1-30 s after the newest message, and 20 % of
--     the previews from a message that is not the newest;
--   * notes on 10 % of the contacts, stars on 1 % of the messages (the application's
--     tables whose rows must follow merges).
-- Needs tests/integration/route_schema.sql first. psql -v messages=N: the rows of messages,
-- copies included.
\set ON_ERROR_STOP on
SET session_replication_role = replica; -- consistent by construction: no foreign key checks
SELECT setseed(0.17) AS seed \gset
SELECT greatest(:messages / 20, 10) AS customers, (:messages * 0.98)::bigint AS originals \gset

INSERT INTO workspaces (name, slug, kapso_phone_id)
SELECT 'Bench ' || w, 'bench-' || w, (880000000000000 + w)::text FROM generate_series(0, 9) w;
CREATE TEMP TABLE ws AS
SELECT (row_number() OVER (ORDER BY slug) - 1)::int AS k, id FROM workspaces;

CREATE TEMP TABLE customer AS
SELECT n, ws.id AS workspace_id,
       CASE WHEN n % 5 = 4 THEN '+447' || lpad((n * 7 % 1000000000)::text, 9, '0')
            ELSE '+1555' || lpad((n * 7 % 10000000)::text, 7, '0') END AS e164,
       CASE WHEN n % 3 <> 0 THEN 'Customer ' || n END AS name,
       random() AS r1, random() AS r2, random() AS r3
FROM generate_series(0, :customers - 1) n JOIN ws ON ws.k = n % 10;
ALTER TABLE customer ADD PRIMARY KEY (n);

-- First contacts, second forms, national forms.
INSERT INTO contacts (workspace_id, phone, name, created_at)
SELECT workspace_id, CASE WHEN r1 < 0.6 THEN e164 ELSE substr(e164, 2) END, name,
       to_timestamp(1690000000 + n)
FROM customer;
INSERT INTO contacts (workspace_id, phone, name, created_at)
SELECT workspace_id, CASE WHEN r1 < 0.6 THEN substr(e164, 2) ELSE e164 END,
       CASE WHEN name IS NULL AND r3 < 0.5 THEN 'Customer ' || n || ' (2)' END,
       to_timestamp(1690000000 + n) + interval '1 day'
FROM customer WHERE r2 < 0.08;
INSERT INTO contacts (workspace_id, phone, created_at)
SELECT workspace_id, '0' || substr(e164, 4), to_timestamp(1690000000 + n) + interval '2 days'
FROM customer WHERE e164 LIKE '+44%' AND r2 >= 0.08 AND r2 < 0.205;

CREATE TEMP TABLE customer_contact AS
SELECT cu.n, ct.id AS contact_id, ct.created_at
FROM customer cu
JOIN contacts ct ON ct.workspace_id = cu.workspace_id
 AND ct.phone IN (cu.e164, substr(cu.e164, 2), '0' || substr(cu.e164, 4));

INSERT INTO conversations (workspace_id, contact_id, created_at)
SELECT workspace_id, id, created_at FROM contacts;
INSERT INTO conversations (workspace_id, contact_id, created_at)
SELECT cu.workspace_id, cc.contact_id, cc.created_at + interval '1 second'
FROM customer cu
JOIN LATERAL (SELECT x.contact_id, x.created_at FROM customer_contact x WHERE x.n = cu.n
              ORDER BY x.created_at LIMIT 1) cc ON true
WHERE cu.r3 < 0.03;

CREATE TEMP TABLE customer_conversations AS
SELECT cc.n, array_agg(v.id ORDER BY v.created_at, v.id) AS ids
FROM customer_contact cc JOIN conversations v ON v.contact_id = cc.contact_id
GROUP BY cc.n;
ALTER TABLE customer_conversations ADD PRIMARY KEY (n);

-- Message m belongs to customer m % customers, at its own time: each customer's messages
-- ten minutes apart.
INSERT INTO messages (conversation_id, workspace_id, direction, sender_type, content,
                      kapso_message_id, created_at, status)
SELECT cv.ids[CASE WHEN g.h < 0.85 THEN 1 ELSE 1 + (g.m % cardinality(cv.ids)) END],
       cu.workspace_id,
       CASE WHEN g.kind < 0.70 THEN 'inbound' ELSE 'outbound' END,
       CASE WHEN g.kind < 0.70 THEN 'contact' WHEN g.kind < 0.85 THEN 'bot' ELSE 'user' END,
       CASE WHEN g.m % 100 = 0 THEN repeat('a long message ' || g.m || ' ', 10)
            ELSE 'message ' || g.m END,
       CASE WHEN g.kind < 0.93 THEN 'wamid.bench.' || g.m END,
       to_timestamp(1700000000 + (g.m / :customers) * 600 + g.m % :customers % 600),
       CASE WHEN g.kind < 0.70 THEN 'received'
            ELSE (ARRAY['sent', 'delivered', 'read', 'failed'])[1 + g.m % 4] END
FROM (SELECT m, m % :customers AS n, random() AS h, random() AS kind
      FROM generate_series(0, :originals - 1) m) g
JOIN customer cu ON cu.n = g.n
JOIN customer_conversations cv ON cv.n = g.n;

INSERT INTO messages (conversation_id, workspace_id, direction, sender_type, content,
                      kapso_message_id, created_at, status)
SELECT CASE WHEN random() < 0.5 THEN cv.ids[cardinality(cv.ids)] ELSE m.conversation_id END,
       m.workspace_id, m.direction, m.sender_type, m.content, m.kapso_message_id, m.created_at,
       CASE WHEN m.direction = 'outbound' THEN 'sent' ELSE m.status END
FROM messages m
JOIN customer_conversations cv
  ON cv.n = substr(m.kapso_message_id, 13)::bigint % :customers
WHERE m.kapso_message_id IS NOT NULL
  AND random() < (:messages - :originals)::float8 / (0.93 * :originals);

-- The route's inbox state.
CREATE TEMP TABLE conversation_state AS
SELECT conversation_id, max(created_at) AS newest,
       (array_agg(content ORDER BY created_at DESC))[1:2] AS contents,
       count(*) FILTER (WHERE direction = 'inbound') AS inbound
FROM messages GROUP BY conversation_id;
UPDATE conversations v SET
  unread_count = CASE WHEN r.x < 0.10 THEN s.inbound + 1 + (r.x * 100)::int % 2
                      WHEN r.x < 0.15 THEN greatest(s.inbound - 1, 0)
                      WHEN r.x < 0.55 THEN 0
                      ELSE s.inbound END,
  last_message_at = s.newest + make_interval(secs => 1 + (r.x * 1000)::int % 30),
  last_message_preview = left(CASE WHEN r.x >= 0.80 AND cardinality(s.contents) > 1
                                   THEN s.contents[2] ELSE s.contents[1] END, 100)
FROM conversation_state s CROSS JOIN LATERAL (SELECT random() AS x) r
WHERE v.id = s.conversation_id;

INSERT INTO notes (contact_id, body) SELECT id, 'note' FROM contacts WHERE random() < 0.1;
INSERT INTO message_stars (message_id) SELECT id FROM messages WHERE random() < 0.01;
RESET session_replication_role;
ANALYZE;
