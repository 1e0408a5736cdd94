// POST /api/webhook/kapso end to end: columns, ack-after-commit, concurrency, order, batches.
#include <algorithm>
#include <random>
#include <stdexcept>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"

using namespace kapso_test;

namespace {

struct webhook_suite : inbox_fixture, shared_suite<webhook_suite> {
  webhook_suite() : inbox_fixture(server_options{{}, {}, "/readyz", std::nullopt, "webhook"}) {}
};

webhook_suite& suite() { return webhook_suite::current(); }

int64_t message_rows(const workspace& ws, const std::string& kapso_message_id) {
  return suite().db.count(
    "SELECT count(*) FROM messages WHERE workspace_id = $1::uuid AND kapso_message_id = $2",
    ws.id, kapso_message_id);
}

std::string first_few(const std::vector<std::string>& problems) {
  std::string out;
  for (size_t i = 0; i < problems.size() && i < 5; ++i)
    out += "\n  " + problems[i];
  return out;
}

} // namespace

BOOST_AUTO_TEST_SUITE(webhook, *boost::unit_test::fixture<webhook_suite>())

BOOST_AUTO_TEST_CASE(single_message_is_stored_with_every_column) {
  auto ws = suite().take_workspace();
  auto client = suite().client();
  auto m = text_message(ws, "wamid.single.1", 1730092801, "Hola");
  m.context = json{{"from", "15550001111"}, {"id", "wamid.prev"}};
  auto response = post_webhook(client, kapso_event(m).dump());

  BOOST_TEST_REQUIRE(response.status == 200, "status " << response.status << ": " << response.body);
  BOOST_TEST(response.header("content-type").find("application/json") != std::string::npos,
             "content-type: " << response.header("content-type"));
  BOOST_TEST(response.parsed()
               == json::parse(R"({"received":true,"accepted":1,"duplicates":0,"ignored":0})"),
             "body: " << response.body);

  auto& db = suite().db;
  auto contacts = db.query(
    "SELECT id::text, phone, name FROM contacts WHERE workspace_id = $1::uuid", ws.id);
  BOOST_TEST_REQUIRE(contacts.size() == 1u);
  BOOST_TEST(text(contacts[0][1]) == "+15551234567");
  BOOST_TEST(text(contacts[0][2]) == "Ana");

  auto conversations = db.query(
    "SELECT id::text, contact_id::text, status, unread_count, "
    "extract(epoch FROM last_message_at)::bigint, last_message_preview "
    "FROM conversations WHERE workspace_id = $1::uuid",
    ws.id);
  BOOST_TEST_REQUIRE(conversations.size() == 1u);
  BOOST_TEST(text(conversations[0][1]) == text(contacts[0][0]));
  BOOST_TEST(text(conversations[0][2]) == "open");
  BOOST_TEST(text(conversations[0][3]) == "1");
  BOOST_TEST(text(conversations[0][4]) == "1730092801");
  BOOST_TEST(text(conversations[0][5]) == "Hola");

  auto messages = db.query(
    "SELECT direction, sender_type, content, message_type, kapso_message_id, "
    "workspace_id::text, conversation_id::text, extract(epoch FROM created_at)::bigint, "
    "metadata->'context'->>'id', metadata->'context'->>'from', status, media_url, "
    "sender_id::text FROM messages WHERE workspace_id = $1::uuid",
    ws.id);
  BOOST_TEST_REQUIRE(messages.size() == 1u);
  auto row = messages[0];
  BOOST_TEST(text(row[0]) == "inbound");
  BOOST_TEST(text(row[1]) == "contact");
  BOOST_TEST(text(row[2]) == "Hola");
  BOOST_TEST(text(row[3]) == "text");
  BOOST_TEST(text(row[4]) == "wamid.single.1");
  BOOST_TEST(text(row[5]) == ws.id);
  BOOST_TEST(text(row[6]) == text(conversations[0][0]));
  // The WhatsApp timestamp, not the arrival time (which is years later).
  BOOST_TEST(text(row[7]) == "1730092801");
  BOOST_TEST(text(row[8]) == "wamid.prev");
  BOOST_TEST(text(row[9]) == "15550001111");
  BOOST_TEST(text(row[10]) == "received");
  BOOST_TEST(text(row[11]) == "<NULL>");
  BOOST_TEST(text(row[12]) == "<NULL>");
}

BOOST_AUTO_TEST_CASE(redelivery_is_a_duplicate_and_changes_nothing) {
  auto ws = suite().take_workspace();
  auto client = suite().client();
  auto body = kapso_event(text_message(ws, "wamid.redeliver.1", 1730092801, "Hola")).dump();
  auto first = post_webhook(client, body);
  BOOST_TEST_REQUIRE(first.status == 200, first.body);
  auto conversation_state = [&] {
    return suite().db.value(
      "SELECT unread_count::text || '|' || last_message_preview || '|' "
      "|| extract(epoch FROM last_message_at)::bigint FROM conversations "
      "WHERE workspace_id = $1::uuid",
      ws.id);
  };
  auto before = conversation_state();
  BOOST_TEST(before == std::optional<std::string>{"1|Hola|1730092801"});
  auto second = post_webhook(client, body);
  BOOST_TEST_REQUIRE(second.status == 200, second.body);
  BOOST_TEST(second.parsed()
             == json::parse(R"({"received":true,"accepted":0,"duplicates":1,"ignored":0})"),
             second.body);
  BOOST_TEST(conversation_state() == before);
  BOOST_TEST(message_rows(ws, "wamid.redeliver.1") == 1);
}

BOOST_AUTO_TEST_CASE(every_200_is_visible_to_a_new_connection_sequential) {
  auto ws = suite().take_workspace();
  auto client = suite().client();
  std::vector<std::string> problems;
  for (int i = 0; i < 200; ++i) {
    auto id = "wamid.ack.seq." + std::to_string(i);
    // Spread over a few conversations so several actors and batches are involved.
    auto phone = "+1555200000" + std::to_string(i % 5);
    auto response = post_webhook(
      client, kapso_event(text_message(ws, id, 1730000000 + i, "seq " + std::to_string(i), phone))
                .dump());
    if (response.status != 200) {
      problems.push_back(id + ": HTTP " + std::to_string(response.status) + " " + response.body);
      continue;
    }
    // A separate session opened only now: the row must already be committed.
    auto rows = message_rows(ws, id);
    if (rows != 1)
      problems.push_back(id + ": answered 200 but " + std::to_string(rows) + " rows visible");
  }
  BOOST_TEST(problems.empty(), problems.size() << " problems:" << first_few(problems));
}

BOOST_AUTO_TEST_CASE(every_200_is_visible_to_a_new_connection_concurrent) {
  auto ws = suite().take_workspace();
  constexpr size_t threads = 8;
  constexpr int per_thread = 25;
  std::vector<std::vector<std::string>> problems(threads);
  auto port = suite().server.port();
  run_concurrently(threads, [&](size_t t) {
    http_client client{port};
    for (int i = 0; i < per_thread; ++i) {
      auto n = static_cast<int>(t) * per_thread + i;
      auto id = "wamid.ack.par." + std::to_string(n);
      auto phone = "+1555210000" + std::to_string(n % 7);
      auto response = post_webhook(
        client, kapso_event(text_message(ws, id, 1730000000 + n, "par", phone)).dump());
      if (response.status != 200) {
        problems[t].push_back(id + ": HTTP " + std::to_string(response.status) + " "
                              + response.body);
        continue;
      }
      auto rows = message_rows(ws, id);
      if (rows != 1)
        problems[t].push_back(id + ": answered 200 but " + std::to_string(rows)
                              + " rows visible");
    }
  });
  std::vector<std::string> all;
  for (auto& p : problems)
    all.insert(all.end(), p.begin(), p.end());
  BOOST_TEST(all.empty(), all.size() << " problems:" << first_few(all));
  BOOST_TEST(suite().db.count("SELECT count(*) FROM messages WHERE workspace_id = $1::uuid",
                              ws.id)
             == static_cast<int64_t>(threads * per_thread));
}

BOOST_AUTO_TEST_CASE(same_delivery_40_times_concurrently_is_stored_once) {
  auto ws = suite().take_workspace();
  auto body = kapso_event(text_message(ws, "wamid.storm.1", 1730092801, "storm")).dump();
  constexpr size_t n = 40;
  std::vector<int> status(n, 0);
  std::vector<delivery_counts> counts(n);
  std::vector<std::string> bodies(n);
  auto port = suite().server.port();
  run_concurrently(n, [&](size_t i) {
    http_client client{port};
    auto response = post_webhook(client, body);
    status[i] = response.status;
    bodies[i] = response.body;
    if (response.status == 200)
      counts[i] = counts_of(response);
  });
  int64_t accepted = 0, duplicates = 0, ignored = 0;
  for (size_t i = 0; i < n; ++i) {
    BOOST_TEST(status[i] == 200, "request " << i << ": " << status[i] << " " << bodies[i]);
    accepted += counts[i].accepted;
    duplicates += counts[i].duplicates;
    ignored += counts[i].ignored;
  }
  BOOST_TEST(accepted == 1);
  BOOST_TEST(duplicates == 39);
  BOOST_TEST(ignored == 0);
  auto& db = suite().db;
  BOOST_TEST(message_rows(ws, "wamid.storm.1") == 1);
  BOOST_TEST(db.count("SELECT count(*) FROM contacts WHERE workspace_id = $1::uuid", ws.id) == 1);
  BOOST_TEST(db.value("SELECT unread_count::text FROM conversations WHERE workspace_id = $1::uuid",
                      ws.id)
             == std::optional<std::string>{"1"});
  BOOST_TEST(db.count("SELECT count(*) FROM conversations WHERE workspace_id = $1::uuid", ws.id)
             == 1);
}

BOOST_AUTO_TEST_CASE(sixty_messages_from_twelve_clients_to_one_conversation) {
  auto ws = suite().take_workspace();
  constexpr size_t clients = 12;
  constexpr int total = 60;
  constexpr int64_t base = 1730100000;
  std::vector<std::vector<std::string>> problems(clients);
  auto port = suite().server.port();
  run_concurrently(clients, [&](size_t k) {
    std::vector<int> mine;
    for (int i = static_cast<int>(k); i < total; i += static_cast<int>(clients))
      mine.push_back(i);
    std::shuffle(mine.begin(), mine.end(), std::mt19937{static_cast<unsigned>(k) + 7});
    http_client client{port};
    for (int i : mine) {
      auto response = post_webhook(
        client, kapso_event(text_message(ws, "wamid.fan." + std::to_string(i), base + i,
                                         "message " + std::to_string(i)))
                  .dump());
      if (response.status != 200 || counts_of(response).accepted != 1)
        problems[k].push_back("message " + std::to_string(i) + ": HTTP "
                              + std::to_string(response.status) + " " + response.body);
    }
  });
  for (auto& p : problems)
    BOOST_TEST(p.empty(), first_few(p));
  auto& db = suite().db;
  BOOST_TEST(db.count("SELECT count(*) FROM messages WHERE workspace_id = $1::uuid", ws.id)
             == total);
  BOOST_TEST(db.count("SELECT count(*) FROM contacts WHERE workspace_id = $1::uuid", ws.id) == 1);
  auto conversation = db.query(
    "SELECT unread_count, extract(epoch FROM last_message_at)::bigint, last_message_preview "
    "FROM conversations WHERE workspace_id = $1::uuid",
    ws.id);
  BOOST_TEST_REQUIRE(conversation.size() == 1u);
  BOOST_TEST(text(conversation[0][0]) == "60");
  BOOST_TEST(text(conversation[0][1]) == std::to_string(base + total - 1));
  BOOST_TEST(text(conversation[0][2]) == "message 59");
}

BOOST_AUTO_TEST_CASE(older_message_arriving_last_keeps_the_newest_preview) {
  auto ws = suite().take_workspace();
  auto client = suite().client();
  auto newer = post_webhook(
    client, kapso_event(text_message(ws, "wamid.order.new", 1730200000, "newer")).dump());
  auto older = post_webhook(
    client, kapso_event(text_message(ws, "wamid.order.old", 1730100000, "older")).dump());
  BOOST_TEST_REQUIRE(newer.status == 200, newer.body);
  BOOST_TEST_REQUIRE(older.status == 200, older.body);
  BOOST_TEST(counts_of(older).accepted == 1);
  auto conversation = suite().db.query(
    "SELECT unread_count, extract(epoch FROM last_message_at)::bigint, last_message_preview "
    "FROM conversations WHERE workspace_id = $1::uuid",
    ws.id);
  BOOST_TEST_REQUIRE(conversation.size() == 1u);
  BOOST_TEST(text(conversation[0][0]) == "2");
  BOOST_TEST(text(conversation[0][1]) == "1730200000");
  BOOST_TEST(text(conversation[0][2]) == "newer");
  BOOST_TEST(suite().db.value("SELECT extract(epoch FROM created_at)::bigint::text FROM messages "
                              "WHERE kapso_message_id = 'wamid.order.old' "
                              "AND workspace_id = $1::uuid",
                              ws.id)
             == std::optional<std::string>{"1730100000"});
}

BOOST_AUTO_TEST_CASE(batch_of_25_events_across_five_conversations) {
  auto ws = suite().take_workspace();
  auto client = suite().client();
  constexpr int64_t base = 1730300000;
  std::vector<json> events;
  for (int i = 0; i < 25; ++i)
    events.push_back(kapso_event(text_message(ws, "wamid.batch." + std::to_string(i), base + i,
                                              "batch " + std::to_string(i),
                                              "+1555300000" + std::to_string(i % 5))));
  auto body = kapso_batch(events).dump();
  auto response = post_webhook(client, body, global_secret, "whatsapp.message.received",
                               {{"X-Webhook-Batch", "true"}});
  BOOST_TEST_REQUIRE(response.status == 200, response.body);
  BOOST_TEST(response.parsed()
             == json::parse(R"({"received":true,"accepted":25,"duplicates":0,"ignored":0})"),
             response.body);

  auto& db = suite().db;
  BOOST_TEST(db.count("SELECT count(*) FROM messages WHERE workspace_id = $1::uuid", ws.id) == 25);
  BOOST_TEST(db.count("SELECT count(*) FROM contacts WHERE workspace_id = $1::uuid", ws.id) == 5);
  auto conversations = db.query(
    "SELECT c.phone, cv.unread_count, extract(epoch FROM cv.last_message_at)::bigint, "
    "cv.last_message_preview FROM conversations cv JOIN contacts c ON c.id = cv.contact_id "
    "WHERE cv.workspace_id = $1::uuid ORDER BY c.phone",
    ws.id);
  BOOST_TEST_REQUIRE(conversations.size() == 5u);
  for (int j = 0; j < 5; ++j) {
    auto row = conversations[j];
    // The newest message of conversation j is number 20 + j.
    BOOST_TEST_CONTEXT("conversation " << j) {
      BOOST_TEST(text(row[0]) == "+1555300000" + std::to_string(j));
      BOOST_TEST(text(row[1]) == "5");
      BOOST_TEST(text(row[2]) == std::to_string(base + 20 + j));
      BOOST_TEST(text(row[3]) == "batch " + std::to_string(20 + j));
    }
  }

  // Kapso retries whole batches: all duplicates, nothing changes.
  auto again = post_webhook(client, body, global_secret, "whatsapp.message.received",
                            {{"X-Webhook-Batch", "true"}});
  BOOST_TEST_REQUIRE(again.status == 200, again.body);
  BOOST_TEST(again.parsed()
             == json::parse(R"({"received":true,"accepted":0,"duplicates":25,"ignored":0})"),
             again.body);
  BOOST_TEST(db.count("SELECT sum(unread_count) FROM conversations WHERE workspace_id = $1::uuid",
                      ws.id)
             == 25);
}

BOOST_AUTO_TEST_CASE(batch_with_one_malformed_event_stores_the_rest) {
  auto ws = suite().take_workspace();
  auto client = suite().client();
  auto good1 = kapso_event(text_message(ws, "wamid.partial.1", 1730400001, "one"));
  auto bad = kapso_event(text_message(ws, "", 1730400002, "no id"));
  auto good2 = kapso_event(text_message(ws, "wamid.partial.3", 1730400003, "three"));
  auto response = post_webhook(client, kapso_batch({good1, bad, good2}).dump(), global_secret,
                               "whatsapp.message.received", {{"X-Webhook-Batch", "true"}});
  BOOST_TEST_REQUIRE(response.status == 200, response.body);
  BOOST_TEST(response.parsed()
             == json::parse(R"({"received":true,"accepted":2,"duplicates":0,"ignored":1})"),
             response.body);
  BOOST_TEST(message_rows(ws, "wamid.partial.1") == 1);
  BOOST_TEST(message_rows(ws, "wamid.partial.3") == 1);
  BOOST_TEST(suite().db.count("SELECT count(*) FROM messages WHERE workspace_id = $1::uuid", ws.id)
             == 2);
  BOOST_TEST(suite().db.value("SELECT unread_count::text FROM conversations "
                              "WHERE workspace_id = $1::uuid",
                              ws.id)
             == std::optional<std::string>{"2"});
}

BOOST_AUTO_TEST_CASE(batch_signalled_by_header_or_body_alone) {
  auto ws = suite().take_workspace();
  auto client = suite().client();
  // Only the header says "batch"; the body is the data envelope.
  json header_only = json::object();
  header_only["type"] = "whatsapp.message.received";
  header_only["data"] = json::array(
    {kapso_event(text_message(ws, "wamid.hdrbatch.1", 1730500001, "h1")),
     kapso_event(text_message(ws, "wamid.hdrbatch.2", 1730500002, "h2"))});
  auto by_header = post_webhook(client, header_only.dump(), global_secret,
                                "whatsapp.message.received", {{"X-Webhook-Batch", "true"}});
  BOOST_TEST(by_header.status == 200, by_header.body);
  if (by_header.status == 200)
    BOOST_TEST(counts_of(by_header).accepted == 2, by_header.body);

  // Only the body says "batch"; the event type comes from its "type" field
  // (no message.kapso.direction to fall back on).
  auto untyped = kapso_event(text_message(ws, "wamid.bodybatch.1", 1730500003, "b1"));
  untyped["message"]["kapso"].erase("direction");
  auto by_body = post_webhook(client, kapso_batch({untyped}).dump(), global_secret, "");
  BOOST_TEST(by_body.status == 200, by_body.body);
  if (by_body.status == 200)
    BOOST_TEST(counts_of(by_body).accepted == 1, by_body.body);
  BOOST_TEST(suite().db.count("SELECT count(*) FROM messages WHERE workspace_id = $1::uuid", ws.id)
             == 3);
}

BOOST_AUTO_TEST_CASE(event_type_from_body_event_or_type_field) {
  auto ws = suite().take_workspace();
  auto client = suite().client();
  // Without message.kapso.direction the type can only come from the body.
  auto with_event = kapso_event(text_message(ws, "wamid.bodytype.1", 1730600001, "e"));
  with_event["message"]["kapso"].erase("direction");
  with_event["event"] = "whatsapp.message.received";
  auto r1 = post_webhook(client, with_event.dump(), global_secret, "");
  BOOST_TEST(r1.status == 200, r1.body);
  if (r1.status == 200)
    BOOST_TEST(counts_of(r1).accepted == 1, r1.body);

  auto with_type = kapso_event(text_message(ws, "wamid.bodytype.2", 1730600002, "t"));
  with_type["message"]["kapso"].erase("direction");
  with_type["type"] = "whatsapp.message.received";
  auto r2 = post_webhook(client, with_type.dump(), global_secret, "");
  BOOST_TEST(r2.status == 200, r2.body);
  if (r2.status == 200)
    BOOST_TEST(counts_of(r2).accepted == 1, r2.body);

  // A missing payload version header means v2.
  auto plain = kapso_event(text_message(ws, "wamid.bodytype.3", 1730600003, "p"));
  auto body = plain.dump();
  auto r3 = client.request("POST", webhook_path,
                           {{"Content-Type", "application/json"},
                            {"X-Webhook-Event", "whatsapp.message.received"},
                            {"X-Webhook-Signature", sign(body, global_secret)}},
                           body);
  BOOST_TEST(r3.status == 200, r3.body);
  BOOST_TEST(suite().db.count("SELECT count(*) FROM messages WHERE workspace_id = $1::uuid", ws.id)
             == 3);
}

BOOST_AUTO_TEST_CASE(meta_forward_stores_message_with_profile_name) {
  auto ws = suite().take_workspace();
  auto client = suite().client();
  json value = json::object();
  value["contacts"] =
    json::array({json{{"wa_id", "15557654321"}, {"profile", {{"name", "Bruno"}}}}});
  value["messages"] =
    json::array({meta_text_message("15557654321", "wamid.meta.1", 1730092900, "Oi")});
  auto body = meta_forward(ws.phone_number_id, value).dump();
  auto response = post_meta(client, body);
  BOOST_TEST_REQUIRE(response.status == 200, response.body);
  BOOST_TEST(response.parsed()
             == json::parse(R"({"received":true,"accepted":1,"duplicates":0,"ignored":0})"),
             response.body);
  auto& db = suite().db;
  auto contact = db.query("SELECT phone, name FROM contacts WHERE workspace_id = $1::uuid", ws.id);
  BOOST_TEST_REQUIRE(contact.size() == 1u);
  BOOST_TEST(text(contact[0][0]) == "+15557654321");
  BOOST_TEST(text(contact[0][1]) == "Bruno");
  auto message = db.query(
    "SELECT direction, sender_type, content, message_type, "
    "extract(epoch FROM created_at)::bigint, status FROM messages WHERE workspace_id = $1::uuid "
    "AND kapso_message_id = 'wamid.meta.1'",
    ws.id);
  BOOST_TEST_REQUIRE(message.size() == 1u);
  BOOST_TEST(text(message[0][0]) == "inbound");
  BOOST_TEST(text(message[0][1]) == "contact");
  BOOST_TEST(text(message[0][2]) == "Oi");
  BOOST_TEST(text(message[0][3]) == "text");
  BOOST_TEST(text(message[0][4]) == "1730092900");
  BOOST_TEST(db.value("SELECT unread_count::text || '|' || last_message_preview FROM conversations "
                      "WHERE workspace_id = $1::uuid",
                      ws.id)
             == std::optional<std::string>{"1|Oi"});

  // The same message redelivered via Meta is a duplicate.
  auto again = post_meta(client, body);
  BOOST_TEST_REQUIRE(again.status == 200, again.body);
  BOOST_TEST(counts_of(again).duplicates == 1, again.body);
}

BOOST_AUTO_TEST_SUITE_END()
