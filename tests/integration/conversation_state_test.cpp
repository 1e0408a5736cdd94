// SPEC §6 bounded per-conversation state: forgetting idle conversations and a
// low cap must not change what the tables show.
#include <algorithm>
#include <random>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"

using namespace kapso_test;

namespace {

double conversations_now(http_client& client) {
  auto metrics = client.get("/metrics");
  return metric_sum(metrics.body, "kapso_conversations_active");
}

} // namespace

BOOST_AUTO_TEST_SUITE(conversation_state)

BOOST_AUTO_TEST_CASE(forgetting_and_the_cap_keep_the_tables_right) {
  test_database db;
  auto ws = db.insert_workspace();
  server_options options;
  options.name = "conversation-state";
  options.args = {"--conversation.idle-ms=200", "--conversation.max=3"};
  server_process server{db.url(), options};

  constexpr int conversations = 10;
  constexpr int per_conversation = 4;
  constexpr int64_t base = 1730800000;
  std::vector<std::string> bodies;
  for (int c = 0; c < conversations; ++c)
    for (int k = 0; k < per_conversation; ++k) {
      auto m = text_message(ws, "wamid.actor." + std::to_string(c) + "." + std::to_string(k),
                            base + k, "a " + std::to_string(c) + " " + std::to_string(k),
                            "+1555500000" + std::to_string(c));
      bodies.push_back(kapso_event(m).dump());
    }
  std::shuffle(bodies.begin(), bodies.end(), std::mt19937{42});
  std::vector<int> failures(8, 0);
  auto port = server.port();
  run_concurrently(8, [&](size_t t) {
    http_client client{port};
    for (size_t i = t; i < bodies.size(); i += 8)
      if (post_webhook(client, bodies[i]).status != 200)
        ++failures[t];
  });
  for (auto f : failures)
    BOOST_TEST(f == 0);

  http_client client{port};
  BOOST_TEST(conversations_now(client) <= 3.0, "more conversations remembered than the cap");
  // Idle conversations are forgotten.
  BOOST_TEST(eventually([&] { return conversations_now(client) == 0.0; }, 10s, 100ms),
             "conversations still remembered long after going idle: " << conversations_now(client));

  // A forgotten conversation must not lose what was written: an older
  // message arriving now keeps the newest preview.
  kapso_message late;
  late.id = "wamid.actor.late";
  late.phone_number_id = ws.phone_number_id;
  late.phone = "+15555000000";
  late.timestamp = base - 100;
  late.text = "very old";
  auto response = post_webhook(client, kapso_event(late).dump());
  BOOST_TEST_REQUIRE(response.status == 200, response.body);
  BOOST_TEST(counts_of(response).accepted == 1, response.body);

  auto rows = db.query(
    "SELECT c.phone, cv.unread_count, extract(epoch FROM cv.last_message_at)::bigint, "
    "cv.last_message_preview FROM conversations cv JOIN contacts c ON c.id = cv.contact_id "
    "ORDER BY c.phone");
  BOOST_TEST_REQUIRE(rows.size() == static_cast<size_t>(conversations));
  for (int c = 0; c < conversations; ++c) {
    BOOST_TEST_CONTEXT("conversation " << c) {
      BOOST_TEST(text(rows[c][1]) == std::to_string(per_conversation + (c == 0 ? 1 : 0)));
      BOOST_TEST(text(rows[c][2]) == std::to_string(base + per_conversation - 1));
      BOOST_TEST(text(rows[c][3])
                 == "a " + std::to_string(c) + " " + std::to_string(per_conversation - 1));
    }
  }
  BOOST_TEST(db.count("SELECT count(*) FROM messages") == conversations * per_conversation + 1);
}

BOOST_AUTO_TEST_SUITE_END()
