// SPEC §5 schema and migrations: columns, constraints, idempotence, adopting an existing database.
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"

using namespace kapso_test;

namespace {

struct column_spec {
  const char* table;
  const char* column;
  const char* data_type;               // information_schema.columns.data_type
  int max_length;                      // character_maximum_length, 0 = not checked
  const char* nullable;                // "YES", "NO" or "" = not checked
  std::vector<std::string> defaults;   // any of these in column_default; empty = none checked
};

const std::vector<column_spec>& inbox_columns() {
  static const std::vector<std::string> uuid_default{"gen_random_uuid", "uuid_generate"};
  static const std::vector<std::string> now_default{"now()", "CURRENT_TIMESTAMP"};
  static const std::vector<column_spec> columns{
    {"workspaces", "id", "uuid", 0, "NO", uuid_default},
    {"workspaces", "name", "character varying", 255, "NO", {}},
    {"workspaces", "slug", "character varying", 100, "NO", {}},
    {"workspaces", "owner_id", "uuid", 0, "YES", {}},
    {"workspaces", "kapso_phone_id", "character varying", 100, "", {}},
    {"workspaces", "settings", "jsonb", 0, "", {"'{}'"}},
    {"workspaces", "created_at", "timestamp with time zone", 0, "", now_default},
    {"workspaces", "updated_at", "timestamp with time zone", 0, "", now_default},
    {"workspaces", "kapso_webhook_secret", "text", 0, "YES", {}},
    {"contacts", "id", "uuid", 0, "NO", uuid_default},
    {"contacts", "workspace_id", "uuid", 0, "NO", {}},
    {"contacts", "phone", "character varying", 50, "NO", {}},
    {"contacts", "name", "character varying", 255, "YES", {}},
    {"contacts", "email", "character varying", 255, "YES", {}},
    {"contacts", "lead_score", "integer", 0, "", {"0"}},
    {"contacts", "lead_status", "character varying", 50, "", {"'new'"}},
    {"contacts", "tags", "ARRAY", 0, "", {"'{}'"}},
    {"contacts", "metadata", "jsonb", 0, "", {"'{}'"}},
    {"contacts", "created_at", "timestamp with time zone", 0, "", now_default},
    {"contacts", "updated_at", "timestamp with time zone", 0, "", now_default},
    {"conversations", "id", "uuid", 0, "NO", uuid_default},
    {"conversations", "workspace_id", "uuid", 0, "NO", {}},
    {"conversations", "contact_id", "uuid", 0, "NO", {}},
    {"conversations", "status", "character varying", 50, "", {"'open'"}},
    {"conversations", "assigned_to", "uuid", 0, "YES", {}},
    {"conversations", "unread_count", "integer", 0, "", {"0"}},
    {"conversations", "last_message_at", "timestamp with time zone", 0, "YES", {}},
    {"conversations", "last_message_preview", "text", 0, "YES", {}},
    {"conversations", "created_at", "timestamp with time zone", 0, "", now_default},
    {"conversations", "updated_at", "timestamp with time zone", 0, "", now_default},
    {"messages", "id", "uuid", 0, "NO", uuid_default},
    {"messages", "conversation_id", "uuid", 0, "NO", {}},
    {"messages", "workspace_id", "uuid", 0, "NO", {}},
    {"messages", "direction", "character varying", 20, "NO", {}},
    {"messages", "sender_type", "character varying", 20, "NO", {}},
    {"messages", "sender_id", "uuid", 0, "YES", {}},
    {"messages", "content", "text", 0, "YES", {}},
    {"messages", "message_type", "character varying", 50, "", {"'text'"}},
    {"messages", "media_url", "text", 0, "YES", {}},
    {"messages", "kapso_message_id", "character varying", 255, "", {}},
    {"messages", "metadata", "jsonb", 0, "", {"'{}'"}},
    {"messages", "created_at", "timestamp with time zone", 0, "", {}},
    {"messages", "status", "text", 0, "YES", {}},
  };
  return columns;
}

void check_inbox_schema(const test_database& db) {
  for (auto& spec : inbox_columns()) {
    BOOST_TEST_CONTEXT(spec.table << "." << spec.column) {
      auto rows = db.query(
        "SELECT data_type, coalesce(character_maximum_length, 0), is_nullable, "
        "coalesce(column_default, '') FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = $1 AND column_name = $2",
        std::string{spec.table}, std::string{spec.column});
      BOOST_TEST_REQUIRE(rows.size() == 1u, "column missing");
      BOOST_TEST(text(rows[0][0]) == spec.data_type);
      if (spec.max_length > 0)
        BOOST_TEST(rows[0][1].as<int>() == spec.max_length);
      if (*spec.nullable != '\0')
        BOOST_TEST(text(rows[0][2]) == spec.nullable);
      if (!spec.defaults.empty()) {
        auto actual = text(rows[0][3]);
        bool found = false;
        for (auto& d : spec.defaults)
          found = found || actual.find(d) != std::string::npos;
        BOOST_TEST(found, "default is '" << actual << "'");
      }
    }
  }
  // Foreign keys of the inbox application.
  for (auto [from, to] : {std::pair{"contacts", "workspaces"}, {"conversations", "workspaces"},
                          {"conversations", "contacts"}, {"messages", "conversations"},
                          {"messages", "workspaces"}})
    BOOST_TEST(db.count("SELECT count(*) FROM pg_constraint WHERE contype = 'f' "
                        "AND conrelid = $1::regclass AND confrelid = $2::regclass",
                        std::string{from}, std::string{to})
                 >= 1,
               from << " -> " << to << " foreign key missing");
  // kapso_phone_id is indexed: every delivery looks a workspace up by it.
  BOOST_TEST(db.count("SELECT count(*) FROM pg_index i JOIN pg_attribute a "
                      "ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
                      "WHERE i.indrelid = 'workspaces'::regclass AND a.attname = 'kapso_phone_id'")
               >= 1,
             "no index on workspaces.kapso_phone_id");
}

// True when `sql` fails with a unique violation.
bool violates_unique(const test_database& db, const std::string& sql) {
  try {
    db.query(sql);
  } catch (const pqxx::unique_violation&) {
    return true;
  }
  return false;
}

void check_uniqueness(const test_database& db, const std::string& tag) {
  auto ws = db.value("INSERT INTO workspaces(name, slug, kapso_phone_id) VALUES ('U', 'uniq-"
                     + tag + "', '40400" + tag + "') RETURNING id::text");
  BOOST_TEST_REQUIRE(ws.has_value());
  auto contact = db.value("INSERT INTO contacts(workspace_id, phone) VALUES ('" + *ws
                          + "', '+15550000000') RETURNING id::text");
  BOOST_TEST_REQUIRE(contact.has_value());
  BOOST_TEST(violates_unique(db, "INSERT INTO contacts(workspace_id, phone) VALUES ('" + *ws
                                   + "', '+15550000000')"),
             "unique(workspace_id, phone) on contacts missing");
  auto conversation = db.value("INSERT INTO conversations(workspace_id, contact_id) VALUES ('"
                               + *ws + "', '" + *contact + "') RETURNING id::text");
  BOOST_TEST_REQUIRE(conversation.has_value());
  BOOST_TEST(violates_unique(db, "INSERT INTO conversations(workspace_id, contact_id) VALUES ('"
                                   + *ws + "', '" + *contact + "')"),
             "unique(workspace_id, contact_id) on conversations missing");
  auto insert_message = "INSERT INTO messages(conversation_id, workspace_id, direction, "
                        "sender_type, kapso_message_id, created_at) VALUES ('"
                        + *conversation + "', '" + *ws
                        + "', 'inbound', 'contact', 'wamid.uniq', now())";
  db.query(insert_message);
  BOOST_TEST(violates_unique(db, insert_message),
             "unique(workspace_id, kapso_message_id) on messages missing");
  BOOST_TEST(violates_unique(db, "INSERT INTO workspaces(name, slug) VALUES ('U2', 'uniq-" + tag
                                   + "')"),
             "unique slug on workspaces missing");
  // Leave no rows behind for the checks that follow; the inbox application's
  // foreign keys need not cascade.
  for (auto table : {"messages", "conversations", "contacts", "workspaces"})
    db.query(std::string{"DELETE FROM "} + table + " WHERE "
             + (std::string{table} == "workspaces" ? "id" : "workspace_id") + " = '" + *ws
             + "'::uuid");
}

// Rows recorded by the migration runner, in whatever table(s) it keeps them.
int64_t recorded_migrations(const test_database& db) {
  auto tables = db.query("SELECT quote_ident(table_name) FROM information_schema.tables "
                         "WHERE table_schema = 'public' AND table_name ILIKE '%migration%'");
  BOOST_TEST_REQUIRE(tables.size() >= 1u, "no migrations record table");
  int64_t rows = 0;
  for (auto row : tables)
    rows += db.count("SELECT count(*) FROM " + text(row[0]));
  return rows;
}

// SPEC §5 as the inbox application created it: no kapso_webhook_secret, no
// messages.status, no unique message id, no unique conversation per contact.
const char* legacy_schema = R"sql(
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
  updated_at timestamptz DEFAULT now(),
  UNIQUE(workspace_id, phone));
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
  created_at timestamptz DEFAULT now());
CREATE INDEX idx_messages_conversation ON messages(conversation_id, created_at DESC);
)sql";

// Every table column, index, constraint and function of the public schema,
// one line each, sorted: two databases with the same lines have the same
// schema.
std::vector<std::string> schema_of(const test_database& db) {
  auto rows = db.query(R"sql(
SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' '
       || coalesce(column_default, '') || ' ' || is_nullable
FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'constraint ' || conrelid::regclass || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT 'function ' || oid::regprocedure || ' ' || md5(pg_get_functiondef(oid))
FROM pg_proc WHERE pronamespace = 'public'::regnamespace
ORDER BY 1)sql");
  std::vector<std::string> lines;
  for (auto row : rows)
    lines.push_back(text(row[0]));
  return lines;
}

std::string migration_file(const std::string& name) {
  std::ifstream in{std::string{KAPSO_SOURCE_DIR} + "/persistence/migrations/" + name};
  BOOST_TEST_REQUIRE(in.good(), "cannot read migration " << name);
  std::ostringstream sql;
  sql << in.rdbuf();
  return sql.str();
}

} // namespace

BOOST_AUTO_TEST_SUITE(migrations)

// The functions of 0003 moved into the server's statements and 0004 drops
// them: a database that ran 0003 long ago ends where a fresh one does.
BOOST_AUTO_TEST_CASE(database_with_the_lifecycle_functions_ends_like_a_fresh_one) {
  test_database fresh;
  test_database upgraded;
  // Back to what a server before 0004 left: 0003's functions, 0004 not run.
  upgraded.exec_script(migration_file("0003_message_lifecycle.sql"));
  upgraded.query("DELETE FROM kapso_schema_migrations WHERE name = $1",
                 std::string{"0004_lifecycle_functions_dropped.sql"});
  BOOST_TEST_REQUIRE(schema_of(upgraded) != schema_of(fresh));
  upgraded.migrate();
  BOOST_TEST(schema_of(upgraded) == schema_of(fresh), boost::test_tools::per_element());
  // Of the functions 0003 creates, only kapso_preview is left.
  BOOST_TEST(fresh.value("SELECT string_agg(proname, ' ' ORDER BY proname) FROM pg_proc "
                         "WHERE pronamespace = 'public'::regnamespace AND proname = ANY($1)",
                         std::string{"{kapso_apply_message_changes,kapso_apply_number_changes,"
                                     "kapso_edited,kapso_iso_time,kapso_move_contact,"
                                     "kapso_note_identity_changes,kapso_preview,"
                                     "kapso_previous_phones,kapso_refresh_preview,"
                                     "kapso_sweep_lifecycle}"})
             == std::optional<std::string>{"kapso_preview"});
}

BOOST_AUTO_TEST_CASE(fresh_database_gets_the_inbox_schema) {
  test_database db;
  check_inbox_schema(db);
  check_uniqueness(db, "1");
}

BOOST_AUTO_TEST_CASE(migrate_twice_is_idempotent) {
  test_database db;
  auto recorded = recorded_migrations(db);
  BOOST_TEST(recorded >= 1);
  auto second = run_cli({"migrate"}, {{"DATABASE_URL", db.url()}});
  BOOST_TEST_REQUIRE(second.exit_code == 0, second.output);
  auto third = run_cli({"migrate", "--persistence.database-url=" + db.url()});
  BOOST_TEST_REQUIRE(third.exit_code == 0, third.output);
  BOOST_TEST(recorded_migrations(db) == recorded);
  check_inbox_schema(db);
  check_uniqueness(db, "2");
}

BOOST_AUTO_TEST_CASE(existing_inbox_database_is_adopted) {
  test_database db{false};
  db.exec_script(legacy_schema);
  // What the inbox application already stored before kapso-ingest arrived.
  auto ws = db.value("INSERT INTO workspaces(name, slug, kapso_phone_id) VALUES "
                     "('Legacy', 'legacy', '808080808080808') RETURNING id::text");
  BOOST_TEST_REQUIRE(ws.has_value());
  auto contact = db.value("INSERT INTO contacts(workspace_id, phone, name) VALUES ($1::uuid, "
                          "'+15551234567', 'Legacy Ana') RETURNING id::text",
                          *ws);
  BOOST_TEST_REQUIRE(contact.has_value());
  auto conversation = db.value(
    "INSERT INTO conversations(workspace_id, contact_id, unread_count, last_message_at, "
    "last_message_preview) VALUES ($1::uuid, $2::uuid, 3, to_timestamp(1700000000), 'legacy') "
    "RETURNING id::text",
    *ws, *contact);
  BOOST_TEST_REQUIRE(conversation.has_value());
  db.query("INSERT INTO messages(conversation_id, workspace_id, direction, sender_type, content, "
           "kapso_message_id, created_at) VALUES ($1::uuid, $2::uuid, 'inbound', 'contact', "
           "'legacy', 'wamid.legacy.1', to_timestamp(1700000000))",
           *conversation, *ws);

  auto migrate = run_cli({"migrate"}, {{"DATABASE_URL", db.url()}});
  BOOST_TEST_REQUIRE(migrate.exit_code == 0, migrate.output);
  check_inbox_schema(db);
  check_uniqueness(db, "3");
  // Three unread with one inbound message: counted more than once (the route's retries),
  // so capped by the inbound messages there are (migration 0002's recount).
  BOOST_TEST(db.value("SELECT c.name || '|' || cv.unread_count || '|' || cv.last_message_preview "
                      "FROM contacts c JOIN conversations cv ON cv.contact_id = c.id")
             == std::optional<std::string>{"Legacy Ana|1|legacy"});
  BOOST_TEST(db.count("SELECT count(*) FROM messages") == 1);
  auto again = run_cli({"migrate"}, {{"DATABASE_URL", db.url()}});
  BOOST_TEST_REQUIRE(again.exit_code == 0, again.output);

  server_process server{db.url(), server_options{{}, {}, "/readyz", std::nullopt, "adopted"}};
  auto legacy_phone_id = std::string{"808080808080808"};
  auto post = [&](const std::string& id, int64_t timestamp, const std::string& text) {
    kapso_message m;
    m.id = id;
    m.phone_number_id = legacy_phone_id;
    m.timestamp = timestamp;
    m.text = text;
    m.contact_name = "New Name";
    http_client client{server.port()};
    return post_webhook(client, kapso_event(m).dump());
  };
  auto legacy = post("wamid.legacy.1", 1700000000, "legacy");
  BOOST_TEST_REQUIRE(legacy.status == 200, legacy.body);
  BOOST_TEST(counts_of(legacy).duplicates == 1, legacy.body);

  std::vector<int> status(6, 0);
  std::vector<delivery_counts> counts(6);
  run_concurrently(6, [&](size_t i) {
    auto response = post("wamid.adopted.1", 1730000000, "after adoption");
    status[i] = response.status;
    if (response.status == 200)
      counts[i] = counts_of(response);
  });
  int64_t accepted = 0;
  for (size_t i = 0; i < status.size(); ++i) {
    BOOST_TEST(status[i] == 200);
    accepted += counts[i].accepted;
  }
  BOOST_TEST(accepted == 1);
  BOOST_TEST(db.count("SELECT count(*) FROM messages") == 2);
  BOOST_TEST(db.count("SELECT count(*) FROM contacts") == 1);
  BOOST_TEST(db.count("SELECT count(*) FROM conversations") == 1);
  BOOST_TEST(db.value("SELECT c.name || '|' || cv.unread_count || '|' || cv.last_message_preview "
                      "|| '|' || extract(epoch FROM cv.last_message_at)::bigint "
                      "FROM contacts c JOIN conversations cv ON cv.contact_id = c.id")
             == std::optional<std::string>{"Legacy Ana|2|after adoption|1730000000"});
}

BOOST_AUTO_TEST_SUITE_END()
