-- The team-inbox tables as the inbox application defines them. IF NOT EXISTS
-- everywhere: on a database the application already created this is a no-op.
CREATE TABLE IF NOT EXISTS workspaces (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name varchar(255) NOT NULL,
  slug varchar(100) UNIQUE NOT NULL,
  owner_id uuid,
  kapso_phone_id varchar(100),
  settings jsonb DEFAULT '{}'::jsonb,
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS contacts (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  phone varchar(50) NOT NULL,
  name varchar(255),
  email varchar(255),
  lead_score integer DEFAULT 0,
  lead_status varchar(50) DEFAULT 'new',
  tags text[] DEFAULT '{}',
  metadata jsonb DEFAULT '{}'::jsonb,
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now(),
  UNIQUE (workspace_id, phone)
);

CREATE TABLE IF NOT EXISTS conversations (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  contact_id uuid NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
  status varchar(50) DEFAULT 'open',
  assigned_to uuid,
  unread_count integer DEFAULT 0,
  last_message_at timestamptz,
  last_message_preview text,
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS messages (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  conversation_id uuid NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  direction varchar(20) NOT NULL CHECK (direction IN ('inbound', 'outbound')),
  sender_type varchar(20) NOT NULL CHECK (sender_type IN ('contact', 'user', 'bot')),
  sender_id uuid,
  content text,
  message_type varchar(50) DEFAULT 'text',
  media_url text,
  kapso_message_id varchar(255),
  metadata jsonb DEFAULT '{}'::jsonb,
  created_at timestamptz DEFAULT now()
);

CREATE INDEX IF NOT EXISTS idx_workspaces_kapso_phone_id ON workspaces (kapso_phone_id);
CREATE INDEX IF NOT EXISTS idx_messages_conversation ON messages (conversation_id, created_at);
