-- The database of the Next.js route kapso-ingest replaces, as the inbox application created
-- it (SPEC §5) with the status column the route wrote statuses into, and two tables of the
-- application that refer to contacts and messages. Used by tests/integration/route_model.cpp
-- (which leaves out the line marked contacts-unique for an older schema without that key)
-- and benchmarks/route_migration.sh.
CREATE TABLE workspaces (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name varchar(255) NOT NULL,
  slug varchar(100) UNIQUE NOT NULL,
  owner_id uuid,
  kapso_phone_id varchar(100),
  settings jsonb DEFAULT '{}',
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now());
CREATE INDEX idx_workspaces_kapso_phone_id ON workspaces(kapso_phone_id);
CREATE TABLE contacts (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  phone varchar(50) NOT NULL,
  name varchar(255),
  email varchar(255),
  lead_score int DEFAULT 0,
  lead_status varchar(50) DEFAULT 'new',
  tags text[] DEFAULT '{}',
  metadata jsonb DEFAULT '{}',
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now());
ALTER TABLE contacts ADD UNIQUE (workspace_id, phone); -- contacts-unique
CREATE TABLE conversations (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  contact_id uuid NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
  status varchar(50) DEFAULT 'open',
  assigned_to uuid,
  unread_count int DEFAULT 0,
  last_message_at timestamptz,
  last_message_preview text,
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now());
CREATE TABLE messages (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  conversation_id uuid NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  direction varchar(20) NOT NULL,
  sender_type varchar(20) NOT NULL,
  sender_id uuid,
  content text,
  message_type varchar(50) DEFAULT 'text',
  media_url text,
  kapso_message_id varchar(255),
  metadata jsonb DEFAULT '{}',
  created_at timestamptz DEFAULT now(),
  status text);
CREATE INDEX idx_messages_conversation ON messages(conversation_id, created_at DESC);
CREATE TABLE notes (
  id serial PRIMARY KEY,
  contact_id uuid NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
  body text NOT NULL);
CREATE INDEX notes_contact ON notes(contact_id); -- the application lists a contact's notes
CREATE TABLE message_stars (
  id serial PRIMARY KEY,
  message_id uuid NOT NULL REFERENCES messages(id) ON DELETE CASCADE);
CREATE INDEX message_stars_message ON message_stars(message_id);
