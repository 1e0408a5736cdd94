// Workspaces end to end: unknown phone_number_id, workspaces added at run time, register-workspace.
#include <functional>
#include <regex>
#include <stdexcept>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"

using namespace kapso_test;

namespace {

struct workspace_suite : inbox_fixture, shared_suite<workspace_suite> {
  workspace_suite()
    : inbox_fixture(server_options{{}, {}, "/readyz", std::nullopt, "workspaces"}, 4) {}
};

workspace_suite& suite() { return workspace_suite::current(); }

std::string event_body(const std::string& phone_number_id, const std::string& id) {
  kapso_message m;
  m.id = id;
  m.phone_number_id = phone_number_id;
  return kapso_event(m).dump();
}

// Posts `body` (signed with `secret`) until the answer satisfies `wanted`,
// for at most `within`: a workspace change must take effect within the
// workspace cache's TTL (at most a second). The last answer.
http_response post_until(http_client& client, const std::string& body,
                         const std::function<bool(const http_response&)>& wanted,
                         const std::optional<std::string>& secret = global_secret,
                         std::chrono::milliseconds within = 1500ms) {
  http_response response;
  eventually(
    [&] {
      response = post_webhook(client, body, secret);
      return wanted(response);
    },
    within, 100ms);
  return response;
}

bool accepted_once(const http_response& r) {
  return r.status == 200 && counts_of(r).accepted == 1;
}

int64_t all_inbox_rows(const test_database& db) {
  return db.count("SELECT (SELECT count(*) FROM contacts) + (SELECT count(*) FROM conversations)"
                  " + (SELECT count(*) FROM messages)");
}

} // namespace

BOOST_AUTO_TEST_SUITE(workspaces, *boost::unit_test::fixture<workspace_suite>())

BOOST_AUTO_TEST_CASE(unknown_phone_number_id_is_ignored_not_an_error) {
  auto client = suite().client();
  auto before = all_inbox_rows(suite().db);
  for (int i = 0; i < 3; ++i) {
    // Kapso retries non-2xx forever-ish: this must be a 200 every time.
    auto response = post_webhook(client, event_body("111222333444555", "wamid.unknown.ws"));
    BOOST_TEST_REQUIRE(response.status == 200, response.body);
    BOOST_TEST(response.parsed()
               == json::parse(R"({"received":true,"accepted":0,"duplicates":0,"ignored":1})"),
               response.body);
  }
  BOOST_TEST(all_inbox_rows(suite().db) == before);
  // Logged once per id and period, not once per delivery.
  auto log = suite().server.log_tail(100000);
  size_t mentions = 0;
  for (size_t at = log.find("111222333444555"); at != std::string::npos;
       at = log.find("111222333444555", at + 1))
    ++mentions;
  BOOST_TEST(mentions == 1u, "the unknown id is logged " << mentions << " times");
}

BOOST_AUTO_TEST_CASE(batch_mixing_known_and_unknown_workspaces) {
  auto ws = suite().take_workspace();
  kapso_message known;
  known.id = "wamid.mixed.known";
  known.phone_number_id = ws.phone_number_id;
  kapso_message unknown = known;
  unknown.id = "wamid.mixed.unknown";
  unknown.phone_number_id = "111222333444556";
  auto client = suite().client();
  auto batch = kapso_batch({kapso_event(known), kapso_event(unknown)}).dump();
  auto response = post_webhook(client, batch,
                               global_secret, "whatsapp.message.received",
                               {{"X-Webhook-Batch", "true"}});
  BOOST_TEST_REQUIRE(response.status == 200, response.body);
  BOOST_TEST(response.parsed()
             == json::parse(R"({"received":true,"accepted":1,"duplicates":0,"ignored":1})"),
             response.body);
  BOOST_TEST(suite().db.count("SELECT count(*) FROM messages WHERE kapso_message_id = "
                              "'wamid.mixed.unknown'")
             == 0);
}

BOOST_AUTO_TEST_CASE(workspace_inserted_while_running_works_within_a_second) {
  auto ws = suite().db.insert_workspace();
  auto client = suite().client();
  auto response =
    post_until(client, event_body(ws.phone_number_id, "wamid.live.1"), accepted_once);
  BOOST_TEST_REQUIRE(response.status == 200, response.body);
  BOOST_TEST(counts_of(response).accepted == 1, response.body);
  BOOST_TEST(suite().db.count("SELECT count(*) FROM messages WHERE workspace_id = $1::uuid", ws.id)
             == 1);
}

BOOST_AUTO_TEST_CASE(workspace_inserted_after_being_answered_unknown) {
  const std::string phone_number_id = "123987456000111";
  auto client = suite().client();
  auto body = event_body(phone_number_id, "wamid.late.1");
  auto unknown = post_webhook(client, body);
  BOOST_TEST_REQUIRE(unknown.status == 200, unknown.body);
  BOOST_TEST(counts_of(unknown).ignored == 1, unknown.body);

  auto ws = suite().db.insert_workspace(std::nullopt, phone_number_id);
  // The very same delivery again: it was ignored, not stored, so it is new
  // now (within a second, the workspace cache's lifetime).
  auto known = post_until(client, body, accepted_once);
  BOOST_TEST_REQUIRE(known.status == 200, known.body);
  BOOST_TEST(known.parsed()
             == json::parse(R"({"received":true,"accepted":1,"duplicates":0,"ignored":0})"),
             known.body);
  BOOST_TEST(suite().db.count("SELECT count(*) FROM messages WHERE workspace_id = $1::uuid", ws.id)
             == 1);
}

BOOST_AUTO_TEST_CASE(secret_set_while_running_applies_within_a_second) {
  auto ws = suite().db.insert_workspace();
  auto client = suite().client();
  auto first =
    post_until(client, event_body(ws.phone_number_id, "wamid.rekey.1"), accepted_once);
  BOOST_TEST_REQUIRE(first.status == 200, first.body);
  // Another application gives the workspace its own secret: within a
  // second, the global one no longer signs for it.
  suite().db.query("UPDATE workspaces SET kapso_webhook_secret = 'fresh-secret' "
                   "WHERE id = $1::uuid",
                   ws.id);
  auto with_global = post_until(client, event_body(ws.phone_number_id, "wamid.rekey.2"),
                                [](const http_response& r) { return r.status == 401; });
  BOOST_TEST(with_global.status == 401, with_global.body);
  auto with_own = post_webhook(client, event_body(ws.phone_number_id, "wamid.rekey.3"),
                               std::string{"fresh-secret"});
  BOOST_TEST(with_own.status == 200, with_own.body);
}

BOOST_AUTO_TEST_CASE(register_workspace_cli_prints_the_uuid) {
  auto result = run_cli({"register-workspace", "--workspace.name=Acme Support",
                         "--workspace.slug=acme-support-cli",
                         "--workspace.phone-number-id=246813579024680",
                         "--workspace.secret=cli-secret"},
                        {{"DATABASE_URL", suite().db.url()}});
  BOOST_TEST_REQUIRE(result.exit_code == 0, result.output);
  std::smatch match;
  std::regex uuid{"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"};
  BOOST_TEST_REQUIRE(std::regex_search(result.output, match, uuid), result.output);
  auto id = match.str();
  BOOST_TEST(suite().db.value("SELECT name || '|' || slug || '|' || kapso_phone_id || '|' "
                              "|| kapso_webhook_secret FROM workspaces WHERE id = $1::uuid",
                              id)
             == std::optional<std::string>{
               "Acme Support|acme-support-cli|246813579024680|cli-secret"});

  auto client = suite().client();
  auto response = post_until(client, event_body("246813579024680", "wamid.cli.1"),
                             accepted_once, std::string{"cli-secret"});
  BOOST_TEST_REQUIRE(response.status == 200, response.body);
  BOOST_TEST(counts_of(response).accepted == 1, response.body);

  // Without a secret option the workspace uses the global secret.
  auto plain = run_cli({"register-workspace", "--workspace.name=Plain",
                        "--workspace.slug=plain-cli", "--workspace.phone-number-id=246813579024681",
                        "--persistence.database-url=" + suite().db.url()});
  BOOST_TEST_REQUIRE(plain.exit_code == 0, plain.output);
  BOOST_TEST(suite().db.value("SELECT coalesce(kapso_webhook_secret, '<NULL>') FROM workspaces "
                              "WHERE slug = 'plain-cli'")
             == std::optional<std::string>{"<NULL>"});

  // Registering the same slug again is idempotent provisioning: the same
  // workspace, updated, never a second row.
  auto again = run_cli({"register-workspace", "--workspace.name=Plain Again",
                        "--workspace.slug=plain-cli",
                        "--workspace.phone-number-id=246813579024682"},
                       {{"DATABASE_URL", suite().db.url()}});
  BOOST_TEST_REQUIRE(again.exit_code == 0, again.output);
  auto plain_id = suite().db.value("SELECT id::text FROM workspaces WHERE slug = 'plain-cli'");
  BOOST_TEST_REQUIRE(plain_id.has_value());
  BOOST_TEST(plain.output.find(*plain_id) != std::string::npos, plain.output);
  BOOST_TEST(again.output.find(*plain_id) != std::string::npos, again.output);
  BOOST_TEST(suite().db.count("SELECT count(*) FROM workspaces WHERE slug = 'plain-cli'") == 1);
  BOOST_TEST(suite().db.value("SELECT name || '|' || kapso_phone_id FROM workspaces "
                              "WHERE slug = 'plain-cli'")
             == std::optional<std::string>{"Plain Again|246813579024682"});

  // Missing required options fail with a message instead of inventing values.
  auto incomplete = run_cli({"register-workspace", "--workspace.name=No Slug"},
                            {{"DATABASE_URL", suite().db.url()}});
  BOOST_TEST(incomplete.exit_code != 0, incomplete.output);
  BOOST_TEST(suite().db.count("SELECT count(*) FROM workspaces WHERE name = 'No Slug'") == 0);
}

BOOST_AUTO_TEST_CASE(workspace_recreated_with_the_same_phone_id) {
  // Another application deletes a workspace and creates it again for the
  // same number: a new id the server's cache has never seen.
  const std::string phone_number_id = "135792468013579";
  auto old_ws = suite().db.insert_workspace(std::nullopt, phone_number_id);
  auto client = suite().client();
  auto first = post_until(client, event_body(phone_number_id, "wamid.recreate.1"), accepted_once);
  BOOST_TEST_REQUIRE(first.status == 200, first.body);
  BOOST_TEST(counts_of(first).accepted == 1, first.body);

  for (auto table : {"messages", "conversations", "contacts"})
    suite().db.query(std::string{"DELETE FROM "} + table + " WHERE workspace_id = $1::uuid",
                     old_ws.id);
  suite().db.query("DELETE FROM workspaces WHERE id = $1::uuid", old_ws.id);
  auto new_ws = suite().db.insert_workspace(std::nullopt, phone_number_id);

  // Within a second the new row is used (before, the old id is answered 503).
  auto second = post_until(client, event_body(phone_number_id, "wamid.recreate.2"), accepted_once);
  BOOST_TEST_REQUIRE(second.status == 200, second.body);
  BOOST_TEST(second.parsed()
             == json::parse(R"({"received":true,"accepted":1,"duplicates":0,"ignored":0})"),
             second.body);
  BOOST_TEST(suite().db.count("SELECT count(*) FROM messages WHERE workspace_id = $1::uuid",
                              new_ws.id)
             == 1);
}

BOOST_AUTO_TEST_SUITE_END()
