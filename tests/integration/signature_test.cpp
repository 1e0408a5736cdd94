// SPEC §4 signatures end to end: headers, per-workspace secrets, rotation, unsigned mode.
#include <stdexcept>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"

using namespace kapso_test;

namespace {

constexpr const char* workspace_secret = "ws-secret";

// A server with the global secret, plus one workspace that has its own secret;
// every workspace exists before the server starts.
struct signature_suite : shared_suite<signature_suite> {
  signature_suite()
    : db(true),
      plain(make_plain(db)),
      own_secret(db.insert_workspace(std::string{workspace_secret})),
      server(db.url(), server_options{{}, {}, "/readyz", std::nullopt, "signatures"}) {}

  static std::vector<workspace> make_plain(const test_database& db) {
    std::vector<workspace> result;
    for (int i = 0; i < 12; ++i)
      result.push_back(db.insert_workspace());
    return result;
  }

  workspace take() {
    if (next >= plain.size())
      throw std::runtime_error("signature suite: no workspace left");
    return plain[next++];
  }

  test_database db;
  std::vector<workspace> plain;
  size_t next = 0;
  workspace own_secret;
  server_process server;
  };

signature_suite& suite() { return signature_suite::current(); }

std::string event_body(const workspace& ws, const std::string& id) {
  kapso_message m;
  m.id = id;
  m.phone_number_id = ws.phone_number_id;
  return kapso_event(m).dump();
}

header_list json_headers() {
  return {{"Content-Type", "application/json"},
          {"X-Webhook-Event", "whatsapp.message.received"},
          {"X-Webhook-Payload-Version", "v2"}};
}

http_response post_with(uint16_t port, const std::string& body, const header_list& signature) {
  http_client client{port};
  auto headers = json_headers();
  headers.insert(headers.end(), signature.begin(), signature.end());
  return client.request("POST", webhook_path, headers, body);
}

} // namespace

BOOST_AUTO_TEST_SUITE(signatures, *boost::unit_test::fixture<signature_suite>())

BOOST_AUTO_TEST_CASE(wrong_secret_is_401_and_writes_nothing) {
  auto ws = suite().take();
  auto body = event_body(ws, "wamid.sig.wrong");
  auto response = post_with(suite().server.port(), body,
                            {{"X-Webhook-Signature", sign(body, "not-the-secret")}});
  BOOST_TEST(response.status == 401, response.body);
  BOOST_TEST(inbox_rows(suite().db, ws.id) == 0);
  BOOST_TEST(suite().db.count("SELECT count(*) FROM messages") == 0);
  BOOST_TEST(suite().db.count("SELECT count(*) FROM contacts") == 0);
  BOOST_TEST(suite().db.count("SELECT count(*) FROM conversations") == 0);

  // The rejected attempt left no trace that would make the real one a duplicate.
  auto good = post_with(suite().server.port(), body,
                        {{"X-Webhook-Signature", sign(body, global_secret)}});
  BOOST_TEST_REQUIRE(good.status == 200, good.body);
  BOOST_TEST(counts_of(good).accepted == 1, good.body);
}

BOOST_AUTO_TEST_CASE(signature_of_another_body_is_401) {
  auto ws = suite().take();
  auto body = event_body(ws, "wamid.sig.tamper");
  auto other = event_body(ws, "wamid.sig.tampex"); // same length, one byte differs
  auto response = post_with(suite().server.port(), body,
                            {{"X-Webhook-Signature", sign(other, global_secret)}});
  BOOST_TEST(response.status == 401, response.body);
  // A signature of the pretty-printed body is not one of the exact raw bytes.
  auto pretty = json::parse(body).dump(2);
  auto reformatted = post_with(suite().server.port(), body,
                               {{"X-Webhook-Signature", sign(pretty, global_secret)}});
  BOOST_TEST(reformatted.status == 401, reformatted.body);
  BOOST_TEST(inbox_rows(suite().db, ws.id) == 0);
}

BOOST_AUTO_TEST_CASE(missing_signature_is_401) {
  auto ws = suite().take();
  auto body = event_body(ws, "wamid.sig.missing");
  auto response = post_with(suite().server.port(), body, {});
  BOOST_TEST(response.status == 401, response.body);
  auto empty = post_with(suite().server.port(), body, {{"X-Webhook-Signature", ""}});
  BOOST_TEST(empty.status == 401, empty.body);
  auto garbage = post_with(suite().server.port(), body, {{"X-Webhook-Signature", "zz"}});
  BOOST_TEST(garbage.status == 401, garbage.body);
  BOOST_TEST(inbox_rows(suite().db, ws.id) == 0);
}

BOOST_AUTO_TEST_CASE(x_kapso_signature_is_accepted) {
  auto ws = suite().take();
  auto body = event_body(ws, "wamid.sig.kapso");
  auto response = post_with(suite().server.port(), body,
                            {{"X-Kapso-Signature", sign(body, global_secret)}});
  BOOST_TEST_REQUIRE(response.status == 200, response.body);
  BOOST_TEST(counts_of(response).accepted == 1);
  auto bad = event_body(ws, "wamid.sig.kapso.bad");
  auto rejected = post_with(suite().server.port(), bad,
                            {{"X-Kapso-Signature", sign(bad, "not-the-secret")}});
  BOOST_TEST(rejected.status == 401, rejected.body);
  BOOST_TEST(suite().db.count("SELECT count(*) FROM messages WHERE kapso_message_id = "
                              "'wamid.sig.kapso.bad'")
             == 0);
}

BOOST_AUTO_TEST_CASE(workspace_secret_replaces_the_global_one) {
  auto& ws = suite().own_secret;
  auto body = event_body(ws, "wamid.sig.ws.global");
  auto with_global = post_with(suite().server.port(), body,
                               {{"X-Webhook-Signature", sign(body, global_secret)}});
  BOOST_TEST(with_global.status == 401, with_global.body);
  BOOST_TEST(inbox_rows(suite().db, ws.id) == 0);

  auto own = event_body(ws, "wamid.sig.ws.own");
  auto with_own = post_with(suite().server.port(), own,
                            {{"X-Webhook-Signature", sign(own, workspace_secret)}});
  BOOST_TEST_REQUIRE(with_own.status == 200, with_own.body);
  BOOST_TEST(counts_of(with_own).accepted == 1);
  auto kapso_header = event_body(ws, "wamid.sig.ws.kapso");
  auto with_kapso = post_with(suite().server.port(), kapso_header,
                              {{"X-Kapso-Signature", sign(kapso_header, workspace_secret)}});
  BOOST_TEST(with_kapso.status == 200, with_kapso.body);
  BOOST_TEST(suite().db.count("SELECT count(*) FROM messages WHERE workspace_id = $1::uuid",
                              ws.id)
             == 2);
  BOOST_TEST(suite().db.count("SELECT count(*) FROM messages WHERE kapso_message_id = "
                              "'wamid.sig.ws.global'")
             == 0);
}

BOOST_AUTO_TEST_CASE(meta_forward_hub_signature) {
  auto ws = suite().take();
  json value = json::object();
  value["contacts"] = json::array({json{{"wa_id", "15557654321"}, {"profile", {{"name", "B"}}}}});
  value["messages"] =
    json::array({meta_text_message("15557654321", "wamid.sig.meta.bad", 1730092900, "Oi")});
  auto bad_body = meta_forward(ws.phone_number_id, value).dump();
  http_client client{suite().server.port()};
  auto bad = post_meta(client, bad_body, "not-the-secret");
  BOOST_TEST(bad.status == 401, bad.body);
  BOOST_TEST(inbox_rows(suite().db, ws.id) == 0);

  value["messages"] =
    json::array({meta_text_message("15557654321", "wamid.sig.meta.good", 1730092901, "Oi")});
  auto good_body = meta_forward(ws.phone_number_id, value).dump();
  auto good = post_meta(client, good_body);
  BOOST_TEST_REQUIRE(good.status == 200, good.body);
  BOOST_TEST(counts_of(good).accepted == 1);

  // Kapso's own header scheme on a Meta-shaped body.
  value["messages"] =
    json::array({meta_text_message("15557654321", "wamid.sig.meta.kapso", 1730092902, "Oi")});
  auto kapso_body = meta_forward(ws.phone_number_id, value).dump();
  auto kapso = client.request("POST", webhook_path,
                              {{"Content-Type", "application/json"},
                               {"X-Webhook-Signature", sign(kapso_body, global_secret)}},
                              kapso_body);
  BOOST_TEST(kapso.status == 200, kapso.body);
  BOOST_TEST(suite().db.count("SELECT count(*) FROM messages WHERE workspace_id = $1::uuid",
                              ws.id)
             == 2);
}

BOOST_AUTO_TEST_CASE(unknown_workspace_with_wrong_signature_is_401) {
  auto body = event_body(workspace{"", "777000111222333", std::nullopt}, "wamid.sig.unknown");
  auto response = post_with(suite().server.port(), body,
                            {{"X-Webhook-Signature", sign(body, "not-the-secret")}});
  BOOST_TEST(response.status == 401, response.body);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(signature_configurations)

BOOST_AUTO_TEST_CASE(rotation_accepts_every_listed_secret) {
  test_database db;
  auto ws = db.insert_workspace();
  server_process server{db.url(),
                        server_options{{}, {{"KAPSO_WEBHOOK_SECRET", "old-secret,new-secret"}},
                                       "/readyz", std::nullopt, "rotation"}};
  auto old_body = event_body(ws, "wamid.rot.old");
  auto r_old = post_with(server.port(), old_body,
                         {{"X-Webhook-Signature", sign(old_body, "old-secret")}});
  BOOST_TEST(r_old.status == 200, r_old.body);
  auto new_body = event_body(ws, "wamid.rot.new");
  auto r_new = post_with(server.port(), new_body,
                         {{"X-Webhook-Signature", sign(new_body, "new-secret")}});
  BOOST_TEST(r_new.status == 200, r_new.body);
  auto other_body = event_body(ws, "wamid.rot.other");
  auto r_other = post_with(server.port(), other_body,
                           {{"X-Webhook-Signature", sign(other_body, "old-secret,new-secret")}});
  BOOST_TEST(r_other.status == 401, r_other.body);
  BOOST_TEST(db.count("SELECT count(*) FROM messages") == 2);
}

BOOST_AUTO_TEST_CASE(no_secret_anywhere_rejects_everything) {
  test_database db;
  auto ws = db.insert_workspace();
  server_process server{db.url(), server_options{{}, {{"KAPSO_WEBHOOK_SECRET", std::nullopt}},
                                                 "/readyz", std::nullopt, "nosecret"}};
  auto body = event_body(ws, "wamid.nosecret.1");
  auto unsigned_answer = post_with(server.port(), body, {});
  BOOST_TEST(unsigned_answer.status == 401, unsigned_answer.body);
  auto signed_answer = post_with(server.port(), body,
                                 {{"X-Webhook-Signature", sign(body, global_secret)}});
  BOOST_TEST(signed_answer.status == 401, signed_answer.body);
  auto empty_key = post_with(server.port(), body, {{"X-Webhook-Signature", sign(body, "")}});
  BOOST_TEST(empty_key.status == 401, empty_key.body);
  BOOST_TEST(inbox_rows(db, ws.id) == 0);
}

BOOST_AUTO_TEST_CASE(allow_unsigned_only_where_no_secret_applies) {
  test_database db;
  auto open_ws = db.insert_workspace();
  auto guarded_ws = db.insert_workspace(std::string{"guarded-secret"});
  server_process server{db.url(),
                        server_options{{"--security.allow-unsigned=true"},
                                       {{"KAPSO_WEBHOOK_SECRET", std::nullopt}},
                                       "/readyz", std::nullopt, "unsigned"}};
  auto body = event_body(open_ws, "wamid.unsigned.1");
  auto response = post_with(server.port(), body, {});
  BOOST_TEST_REQUIRE(response.status == 200, response.body);
  BOOST_TEST(counts_of(response).accepted == 1);

  // The workspace's own secret applies, so unsigned is not enough there.
  auto guarded = event_body(guarded_ws, "wamid.unsigned.2");
  auto rejected = post_with(server.port(), guarded, {});
  BOOST_TEST(rejected.status == 401, rejected.body);
  auto wrong = post_with(server.port(), guarded,
                         {{"X-Webhook-Signature", sign(guarded, "not-the-secret")}});
  BOOST_TEST(wrong.status == 401, wrong.body);
  BOOST_TEST(inbox_rows(db, guarded_ws.id) == 0);
  auto accepted = post_with(server.port(), guarded,
                            {{"X-Webhook-Signature", sign(guarded, "guarded-secret")}});
  BOOST_TEST(accepted.status == 200, accepted.body);
}

BOOST_AUTO_TEST_SUITE_END()
