// kapso-bench --verify: passes on a correct inbox and names each kind of damage.
#include "benchmarks/verify.hpp"

#include "tests/integration/harness.hpp"


#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>
#include <pqxx/pqxx>

using kapso::bench::expected_conversation;
using kapso::bench::expected_message;
using kapso::bench::expected_state;
using kapso::bench::verify_database;
using kapso::bench::verify_report;

namespace {

// Only what verify_database reads, and no unique constraints: the tests
// must be able to store the duplicates that the real schema forbids.
constexpr const char* scratch_schema = R"(
CREATE TABLE workspaces (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name varchar(255) NOT NULL,
  slug varchar(100) NOT NULL,
  kapso_phone_id varchar(100),
  kapso_webhook_secret text);
CREATE TABLE contacts (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES workspaces(id),
  phone varchar(50) NOT NULL,
  name varchar(255));
CREATE TABLE conversations (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES workspaces(id),
  contact_id uuid NOT NULL REFERENCES contacts(id),
  status varchar(50) DEFAULT 'open',
  unread_count int DEFAULT 0,
  last_message_at timestamptz,
  last_message_preview text);
CREATE TABLE messages (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  conversation_id uuid NOT NULL REFERENCES conversations(id),
  workspace_id uuid NOT NULL REFERENCES workspaces(id),
  direction varchar(20) NOT NULL,
  sender_type varchar(20) NOT NULL,
  content text,
  message_type varchar(50) DEFAULT 'text',
  media_url text,
  kapso_message_id varchar(255),
  metadata jsonb DEFAULT '{}',
  created_at timestamptz,
  status text);
)";

// A scratch database of its own per test case, with the seed schema above
// (no migrations: the verifier must not depend on them), dropped afterwards.
class scratch_database {
public:
  scratch_database() : connection_(database_.url()) {
    database_.exec_script(scratch_schema);
  }

  pqxx::connection& db() {
    return connection_;
  }

  void exec(const std::string& sql) {
    database_.exec_script(sql);
  }

private:
  kapso_test::test_database database_{false};
  pqxx::connection connection_; // closed before database_ drops the database
};

// Two workspaces, three conversations. Conversation 1 has a message whose
// answer was lost but which is stored anyway; conversation 2 has a newer
// unconfirmed message that never arrived -- neither may count as an error.
expected_state sample_state() {
  expected_state st;
  st.conversations = {
    {"7000000000", "+15550000000"},
    {"7000000001", "+15550000001"},
    {"7000000000", "+15550000002"},
  };
  auto msg = [&](const char* id, uint32_t conversation, int64_t ts, bool acked) {
    st.messages.push_back(
      {id, conversation, ts, std::string{"text of "} + id, acked});
  };
  msg("wamid.a1", 0, 1700000001, true);
  msg("wamid.a2", 0, 1700000002, true);
  msg("wamid.a3", 0, 1700000003, true);
  msg("wamid.b1", 1, 1700000101, true);
  msg("wamid.b2", 1, 1700000102, true);
  msg("wamid.b3", 1, 1700000103, false); // stored, answer lost
  msg("wamid.c1", 2, 1700000201, true);
  msg("wamid.c2", 2, 1700000299, false); // never stored
  return st;
}

// Writes what a correct server would have written for `st`; messages in
// `absent` were never stored.
void store_correctly(pqxx::connection& db, const expected_state& st,
                     const std::vector<std::string>& absent) {
  pqxx::work tx{db};
  std::map<std::string, std::string> workspace_of_phone;
  for (auto& conv : st.conversations) {
    if (workspace_of_phone.count(conv.phone_number_id) > 0)
      continue;
    workspace_of_phone[conv.phone_number_id]
      = tx.exec_params1("INSERT INTO workspaces (name, slug, kapso_phone_id) "
                        "VALUES ($1, $1, $1) RETURNING id::text",
                        conv.phone_number_id)[0]
          .c_str();
  }
  for (uint32_t c = 0; c < st.conversations.size(); ++c) {
    auto& conv = st.conversations[c];
    auto ws = workspace_of_phone[conv.phone_number_id];
    std::vector<const expected_message*> stored;
    for (auto& m : st.messages)
      if (m.conversation == c
          && std::find(absent.begin(), absent.end(), m.kapso_message_id) == absent.end())
        stored.push_back(&m);
    auto newest = *std::max_element(stored.begin(), stored.end(),
                                    [](auto* x, auto* y) { return x->timestamp < y->timestamp; });
    std::string contact = tx.exec_params1("INSERT INTO contacts (workspace_id, phone) "
                                          "VALUES ($1::uuid, $2) RETURNING id::text",
                                          ws, conv.contact_phone)[0]
                            .c_str();
    std::string conversation
      = tx.exec_params1(
            "INSERT INTO conversations (workspace_id, contact_id, unread_count, "
            "last_message_at, last_message_preview) VALUES ($1::uuid, $2::uuid, $3, "
            "to_timestamp($4), $5) RETURNING id::text",
            ws, contact, static_cast<int>(stored.size()), newest->timestamp,
            newest->preview)[0]
          .c_str();
    for (auto* m : stored)
      tx.exec_params0("INSERT INTO messages (conversation_id, workspace_id, direction, "
                      "sender_type, content, kapso_message_id, created_at) VALUES "
                      "($1::uuid, $2::uuid, 'inbound', 'contact', $3, $4, to_timestamp($5))",
                      conversation, ws, m->preview, m->kapso_message_id, m->timestamp);
  }
  tx.commit();
}

// Every count that is not named must stay zero: each damage is reported as
// exactly what it is.
void check_only(const verify_report& r, uint64_t lost, uint64_t duplicated,
                uint64_t wrong_unread, uint64_t wrong_preview) {
  BOOST_TEST_INFO("report: " << kapso::bench::to_string(r));
  BOOST_TEST(r.lost == lost);
  BOOST_TEST(r.duplicated == duplicated);
  BOOST_TEST(r.wrong_unread == wrong_unread);
  BOOST_TEST(r.wrong_preview == wrong_preview);
  BOOST_TEST(r.unexpected == 0u);
  BOOST_TEST(r.misrouted == 0u);
  BOOST_TEST(r.wrong_created_at == 0u);
  BOOST_TEST(r.missing_conversations == 0u);
  BOOST_TEST(r.duplicate_conversations == 0u);
  BOOST_TEST(r.unexpected_conversations == 0u);
  BOOST_TEST(r.missing_workspaces == 0u);
  BOOST_TEST(r.ok() == (lost + duplicated + wrong_unread + wrong_preview == 0));
}

struct verify_fixture {
  verify_fixture() : state(sample_state()) {
    store_correctly(scratch.db(), state, {"wamid.c2"});
  }

  verify_report verify() {
    return verify_database(scratch.db(), state);
  }

  scratch_database scratch;
  expected_state state;
};

} // namespace

BOOST_AUTO_TEST_SUITE(bench_verify)

BOOST_FIXTURE_TEST_CASE(correct_inbox_passes, verify_fixture) {
  auto r = verify();
  check_only(r, 0, 0, 0, 0);
  BOOST_TEST(r.ok());
  BOOST_TEST(r.expected_acknowledged == 6u);
  BOOST_TEST(r.expected_unconfirmed == 2u);
  BOOST_TEST(r.present == 7u);
  BOOST_TEST(r.conversations_checked == 3u);
  BOOST_TEST(kapso::bench::to_string(r).rfind("verify: OK", 0) == 0);
}

BOOST_FIXTURE_TEST_CASE(deleted_message_is_lost, verify_fixture) {
  scratch.exec("DELETE FROM messages WHERE kapso_message_id = 'wamid.a2'");
  auto r = verify();
  check_only(r, 1, 0, 0, 0);
  BOOST_TEST(kapso::bench::to_string(r).rfind("verify: FAILED", 0) == 0);
}

BOOST_FIXTURE_TEST_CASE(duplicate_row_is_reported, verify_fixture) {
  scratch.exec("INSERT INTO messages (conversation_id, workspace_id, direction, "
               "sender_type, content, kapso_message_id, created_at) "
               "SELECT conversation_id, workspace_id, direction, sender_type, content, "
               "kapso_message_id, created_at FROM messages "
               "WHERE kapso_message_id = 'wamid.b1'");
  check_only(verify(), 0, 1, 0, 0);
}

BOOST_FIXTURE_TEST_CASE(bumped_unread_count_is_reported, verify_fixture) {
  scratch.exec("UPDATE conversations SET unread_count = unread_count + 1 "
               "WHERE contact_id = (SELECT id FROM contacts WHERE phone = '+15550000000')");
  check_only(verify(), 0, 0, 1, 0);
}

BOOST_FIXTURE_TEST_CASE(changed_preview_is_reported, verify_fixture) {
  scratch.exec("UPDATE conversations SET last_message_preview = 'something else' "
               "WHERE contact_id = (SELECT id FROM contacts WHERE phone = '+15550000001')");
  check_only(verify(), 0, 0, 0, 1);
}

// The classic race: an older message arriving last overwrote the preview.
BOOST_FIXTURE_TEST_CASE(preview_of_older_message_is_reported, verify_fixture) {
  scratch.exec("UPDATE conversations SET last_message_preview = 'text of wamid.a2', "
               "last_message_at = to_timestamp(1700000002) "
               "WHERE contact_id = (SELECT id FROM contacts WHERE phone = '+15550000000')");
  check_only(verify(), 0, 0, 0, 1);
}

BOOST_AUTO_TEST_SUITE_END()
