// SPEC §2 HTTP surface: 400/413/415, GET verification, health, readiness, /metrics.
#include <csignal>
#include <stdexcept>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"

using namespace kapso_test;

namespace {

constexpr size_t body_limit = 4096;

struct http_suite : inbox_fixture, shared_suite<http_suite> {
  http_suite()
    : inbox_fixture(server_options{{"--http.body-limit=" + std::to_string(body_limit)},
                                   {{"KAPSO_VERIFY_TOKEN", std::nullopt}},
                                   "/readyz",
                                   std::nullopt,
                                   "http"}) {}
};

http_suite& suite() { return http_suite::current(); }

int64_t all_inbox_rows(const test_database& db) {
  return db.count("SELECT (SELECT count(*) FROM contacts) + (SELECT count(*) FROM conversations)"
                  " + (SELECT count(*) FROM messages)");
}

std::string event_body(const workspace& ws, const std::string& id, std::string text = "Hola") {
  kapso_message m;
  m.id = id;
  m.phone_number_id = ws.phone_number_id;
  m.text = std::move(text);
  return kapso_event(m).dump();
}

} // namespace

BOOST_AUTO_TEST_SUITE(http_surface, *boost::unit_test::fixture<http_suite>())

BOOST_AUTO_TEST_CASE(bodies_of_no_accepted_form_are_400_and_write_nothing) {
  auto client = suite().client();
  auto before = all_inbox_rows(suite().db);
  for (std::string body : {"this is not json", "{\"message\": {\"id\": ", "", "{}",
                           "{\"foo\": 1}", "[]", "\"text\"", "42", "null",
                           "{\"object\": \"whatsapp_business_account\", \"entry\": 7}"}) {
    BOOST_TEST_CONTEXT("body " << body) {
      auto response = post_webhook(client, body);
      BOOST_TEST(response.status == 400, response.body);
    }
  }
  BOOST_TEST(all_inbox_rows(suite().db) == before);
}

BOOST_AUTO_TEST_CASE(content_type_not_json_is_415) {
  auto ws = suite().take_workspace();
  auto client = suite().client();
  auto body = event_body(ws, "wamid.http.415");
  for (std::string type : {"text/plain", "application/x-www-form-urlencoded"}) {
    auto response = client.request("POST", webhook_path,
                                   {{"Content-Type", type},
                                    {"X-Webhook-Event", "whatsapp.message.received"},
                                    {"X-Webhook-Signature", sign(body, global_secret)}},
                                   body);
    BOOST_TEST(response.status == 415, type << ": " << response.status << " " << response.body);
  }
  BOOST_TEST(inbox_rows(suite().db, ws.id) == 0);

  // A charset parameter is still JSON.
  auto charset = client.request("POST", webhook_path,
                                {{"Content-Type", "application/json; charset=utf-8"},
                                 {"X-Webhook-Event", "whatsapp.message.received"},
                                 {"X-Webhook-Signature", sign(body, global_secret)}},
                                body);
  BOOST_TEST(charset.status == 200, charset.body);
}

BOOST_AUTO_TEST_CASE(body_over_the_limit_is_413_and_writes_nothing) {
  auto ws = suite().take_workspace();
  auto big = event_body(ws, "wamid.http.413", std::string(2 * body_limit, 'x'));
  BOOST_TEST_REQUIRE(big.size() > body_limit);
  http_client client{suite().server.port()};
  auto response = post_webhook(client, big);
  BOOST_TEST(response.status == 413, response.body);
  BOOST_TEST(inbox_rows(suite().db, ws.id) == 0);

  // Just under the limit is fine: the limit is the configured one.
  // The text appears twice in a Kapso event (text.body and kapso.content).
  auto fits = event_body(ws, "wamid.http.fits", std::string((body_limit - 1200) / 2, 'y'));
  BOOST_TEST_REQUIRE(fits.size() < body_limit);
  BOOST_TEST_REQUIRE(fits.size() > body_limit / 2);
  http_client fresh{suite().server.port()};
  auto ok = post_webhook(fresh, fits);
  BOOST_TEST(ok.status == 200, ok.body);
  BOOST_TEST(inbox_rows(suite().db, ws.id) == 3);
}

BOOST_AUTO_TEST_CASE(body_far_over_the_limit_is_still_answered_413) {
  // Far larger than the limit (and than the 8 MiB RESTinio cut-off it once
  // had): an answer, not a dropped connection, and nothing written.
  auto ws = suite().take_workspace();
  auto huge = event_body(ws, "wamid.http.huge", std::string(10u << 20, 'z'));
  http_client client{suite().server.port(), 60s};
  auto response = post_webhook(client, huge);
  BOOST_TEST(response.status == 413, response.body);
  BOOST_TEST(inbox_rows(suite().db, ws.id) == 0);
}

BOOST_AUTO_TEST_CASE(trailing_slash_is_the_same_route) {
  auto ws = suite().take_workspace();
  auto body = event_body(ws, "wamid.http.slash", "with a slash");
  http_client client{suite().server.port()};
  auto response = client.request("POST", "/api/webhook/kapso/",
                                 {{"Content-Type", "application/json"},
                                  {"X-Webhook-Event", "whatsapp.message.received"},
                                  {"X-Webhook-Signature", sign(body, global_secret)}},
                                 body);
  BOOST_TEST(response.status == 200, response.body);
  BOOST_TEST(inbox_rows(suite().db, ws.id) == 3);
}

BOOST_AUTO_TEST_CASE(get_without_challenge_is_ready) {
  auto client = suite().client();
  auto response = client.get(webhook_path);
  BOOST_TEST_REQUIRE(response.status == 200, response.body);
  BOOST_TEST(response.parsed() == json::parse(R"({"status":"ready"})"), response.body);
}

BOOST_AUTO_TEST_CASE(get_challenge_without_configured_token_echoes_it) {
  auto client = suite().client();
  auto hub = client.get(std::string{webhook_path} + "?hub.mode=subscribe&hub.challenge=abc");
  BOOST_TEST(hub.status == 200, hub.body);
  BOOST_TEST(hub.body == "abc");
  BOOST_TEST(hub.header("content-type").rfind("text/plain", 0) == 0,
             "content-type: " << hub.header("content-type"));
  auto plain = client.get(std::string{webhook_path} + "?challenge=abc");
  BOOST_TEST(plain.status == 200, plain.body);
  BOOST_TEST(plain.body == "abc");
  auto with_token = client.get(std::string{webhook_path}
                               + "?hub.mode=subscribe&hub.challenge=1158201444"
                                 "&hub.verify_token=anything");
  BOOST_TEST(with_token.status == 200, with_token.body);
  BOOST_TEST(with_token.body == "1158201444");
}

BOOST_AUTO_TEST_CASE(health_and_readiness) {
  auto client = suite().client();
  auto health = client.get("/healthz");
  BOOST_TEST(health.status == 200, health.body);
  auto ready = client.get("/readyz");
  BOOST_TEST(ready.status == 200, ready.body);
  auto missing = client.get("/no/such/path");
  BOOST_TEST(missing.status == 404, missing.body);
}

BOOST_AUTO_TEST_CASE(metrics_count_events_and_requests) {
  auto ws = suite().take_workspace();
  auto client = suite().client();
  auto scrape = [&] {
    auto response = client.get("/metrics");
    BOOST_TEST_REQUIRE(response.status == 200, response.body);
    BOOST_TEST(response.header("content-type").rfind("text/plain", 0) == 0,
               "content-type: " << response.header("content-type"));
    return response.body;
  };
  auto before = scrape();
  for (auto name : {"kapso_http_requests_total", "kapso_events_total", "kapso_batch_size",
                    "kapso_commit_seconds", "kapso_conversations_active",
                    "kapso_in_flight_deliveries", "kapso_spool_bytes"})
    BOOST_TEST(before.find(name) != std::string::npos, "metric " << name << " missing");

  for (int i = 0; i < 3; ++i) {
    auto response = post_webhook(client, event_body(ws, "wamid.metrics." + std::to_string(i)));
    BOOST_TEST_REQUIRE(response.status == 200, response.body);
  }
  auto duplicate = post_webhook(client, event_body(ws, "wamid.metrics.0"));
  BOOST_TEST_REQUIRE(duplicate.status == 200, duplicate.body);
  auto unknown = post_webhook(client, event_body(workspace{"", "555000111222333", std::nullopt},
                                                 "wamid.metrics.unknown"));
  BOOST_TEST_REQUIRE(unknown.status == 200, unknown.body);
  auto rejected_body = event_body(ws, "wamid.metrics.401");
  auto rejected = post_webhook(client, rejected_body, std::string{"wrong"});
  BOOST_TEST_REQUIRE(rejected.status == 401, rejected.body);

  auto after = scrape();
  auto delta = [&](const std::string& metric, const std::vector<std::string>& labels) {
    return metric_sum(after, metric, labels) - metric_sum(before, metric, labels);
  };
  BOOST_TEST(delta("kapso_events_total", {"result=\"accepted\""}) == 3.0, after);
  BOOST_TEST(delta("kapso_events_total", {"result=\"duplicate\""}) == 1.0);
  BOOST_TEST(delta("kapso_events_total", {"result=\"ignored\""}) == 1.0);
  BOOST_TEST(delta("kapso_http_requests_total", {"code=\"401\""}) == 1.0);
  BOOST_TEST(delta("kapso_http_requests_total", {"code=\"200\""}) >= 5.0);
  BOOST_TEST(metric_sum(after, "kapso_batch_size_count") >= 1.0);
  BOOST_TEST(metric_sum(after, "kapso_commit_seconds_count") >= 1.0);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(http_configurations)

BOOST_AUTO_TEST_CASE(verify_token_guards_the_challenge) {
  test_database db;
  server_process server{db.url(), server_options{{}, {{"KAPSO_VERIFY_TOKEN", "tok"}}, "/readyz",
                                                 std::nullopt, "verify"}};
  http_client client{server.port()};
  auto path = std::string{webhook_path} + "?hub.mode=subscribe&hub.challenge=abc";
  auto good = client.get(path + "&hub.verify_token=tok");
  BOOST_TEST(good.status == 200, good.body);
  BOOST_TEST(good.body == "abc");
  auto wrong = client.get(path + "&hub.verify_token=nope");
  BOOST_TEST(wrong.status == 403, wrong.body);
  BOOST_TEST(wrong.body.find("abc") == std::string::npos, wrong.body);
  auto missing = client.get(path);
  BOOST_TEST(missing.status == 403, missing.body);
  auto plain = client.get(std::string{webhook_path} + "?challenge=abc&hub.verify_token=tok");
  BOOST_TEST(plain.status == 200, plain.body);
  BOOST_TEST(plain.body == "abc");
  auto plain_wrong = client.get(std::string{webhook_path} + "?challenge=abc");
  BOOST_TEST(plain_wrong.status == 403, plain_wrong.body);
  auto ready = client.get(webhook_path);
  BOOST_TEST(ready.status == 200, ready.body);
  BOOST_TEST(ready.parsed() == json::parse(R"({"status":"ready"})"), ready.body);
}

BOOST_AUTO_TEST_CASE(readyz_is_503_on_an_unmigrated_database) {
  test_database db{false};
  server_process server{db.url(),
                        server_options{{"--persistence.migrate-on-start=false"}, {}, "/healthz",
                                       std::nullopt, "unmigrated"}};
  http_client client{server.port()};
  auto ready = client.get("/readyz");
  BOOST_TEST(ready.status == 503, ready.body);
  BOOST_TEST(client.get("/healthz").status == 200);

  // Migrating while it runs makes it ready without a restart.
  db.migrate();
  auto became_ready = eventually([&] { return client.get("/readyz").status == 200; }, 15s, 200ms);
  BOOST_TEST(became_ready, "/readyz still " << client.get("/readyz").status
                                            << " 15 s after migrating");
}

BOOST_AUTO_TEST_CASE(server_migrates_a_fresh_database_on_start_by_default) {
  test_database db{false};
  server_process server{db.url(), server_options{{}, {}, "/readyz", std::nullopt, "autmigrate"}};
  auto ws = db.insert_workspace();
  // Inserted after start-up: usable within a second.
  http_client client{server.port()};
  kapso_message m;
  m.id = "wamid.automigrate.1";
  m.phone_number_id = ws.phone_number_id;
  http_response response;
  BOOST_TEST(eventually(
               [&] {
                 response = post_webhook(client, kapso_event(m).dump());
                 return response.status == 200 && counts_of(response).accepted == 1;
               },
               1500ms, 100ms),
             "the workspace inserted after start-up was not served within a second: "
               << response.status << " " << response.body);
}

// SIGUSR1, the first step of a rolling restart: /readyz turns 503 so that load balancers stop
// sending, while deliveries that still arrive are answered and stored as before; SIGUSR2 puts
// the instance back; SIGTERM still drains and exits 0 while it is withdrawn.
BOOST_AUTO_TEST_CASE(sigusr1_withdraws_readiness_while_deliveries_are_still_served) {
  test_database db;
  auto ws = db.insert_workspace();
  server_process server{db.url(), server_options{{}, {}, "/readyz", std::nullopt, "withdraw"}};
  http_client client{server.port()};
  auto readyz = [&] { return client.get("/readyz").status; };
  BOOST_TEST_REQUIRE(readyz() == 200);

  BOOST_TEST_REQUIRE(::kill(server.pid(), SIGUSR1) == 0);
  BOOST_TEST_REQUIRE(eventually([&] { return readyz() == 503; }, 5s, 20ms),
                     "/readyz still " << readyz() << " after SIGUSR1");
  auto withdrawn = client.get("/readyz");
  BOOST_TEST(withdrawn.body.find("withdrawn") != std::string::npos, withdrawn.body);
  auto health = client.get("/healthz");
  BOOST_TEST(health.status == 200, health.body);
  BOOST_TEST(health.parsed() == json::parse(R"({"status":"ok"})"), health.body);
  auto response = post_webhook(client, event_body(ws, "wamid.withdrawn.1"));
  BOOST_TEST_REQUIRE(response.status == 200, response.body);
  BOOST_TEST(counts_of(response).accepted == 1, response.body);
  BOOST_TEST(db.count("SELECT count(*) FROM messages WHERE kapso_message_id = "
                      "'wamid.withdrawn.1'") == 1);
  // Still withdrawn a while later: nothing but SIGUSR2 or the end of the process undoes it.
  std::this_thread::sleep_for(300ms);
  BOOST_TEST(readyz() == 503);

  BOOST_TEST_REQUIRE(::kill(server.pid(), SIGUSR2) == 0);
  BOOST_TEST(eventually([&] { return readyz() == 200; }, 5s, 20ms),
             "/readyz still " << readyz() << " after SIGUSR2");

  BOOST_TEST_REQUIRE(::kill(server.pid(), SIGUSR1) == 0);
  BOOST_TEST_REQUIRE(eventually([&] { return readyz() == 503; }, 5s, 20ms));
  response = post_webhook(client, event_body(ws, "wamid.withdrawn.2"));
  BOOST_TEST(response.status == 200, response.body);
  BOOST_TEST(server.stop(10s) == 0, "exit code after SIGTERM while withdrawn");
  BOOST_TEST(db.count("SELECT count(*) FROM messages") == 2);
}

BOOST_AUTO_TEST_SUITE_END()
