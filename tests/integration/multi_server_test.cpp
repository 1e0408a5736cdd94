// SPEC §6: two server processes on one database, fed the same deliveries, give the same tables.
#include <algorithm>
#include <random>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"

using namespace kapso_test;

BOOST_AUTO_TEST_SUITE(multi_server)

BOOST_AUTO_TEST_CASE(two_servers_same_deliveries_same_tables) {
  test_database db;
  auto ws = db.insert_workspace();
  // Different writer pools too: three writers sharing conversations by hash
  // in one process, one in the other, must still give the same tables.
  server_process first{db.url(), server_options{{"--persistence.writers=3"}, {}, "/readyz",
                                                std::nullopt, "multi-a"}};
  server_process second{db.url(), server_options{{"--persistence.writers=1"}, {}, "/readyz",
                                                 std::nullopt, "multi-b"}};

  constexpr int conversations = 10;
  constexpr int per_conversation = 10;
  constexpr int64_t base = 1730700000;
  struct delivery {
    int conversation;
    int index;
    std::string body;
  };
  std::vector<delivery> deliveries;
  for (int c = 0; c < conversations; ++c)
    for (int k = 0; k < per_conversation; ++k) {
      auto m = text_message(ws, "wamid.multi." + std::to_string(c) + "." + std::to_string(k),
                            base + k, "m " + std::to_string(c) + " " + std::to_string(k),
                            "+1555400000" + std::to_string(c));
      m.contact_name = "Customer " + std::to_string(c);
      deliveries.push_back({c, k, kapso_event(m).dump()});
    }
  std::shuffle(deliveries.begin(), deliveries.end(), std::mt19937{20241028});

  std::vector<std::string> bodies;
  for (const auto& d : deliveries)
    bodies.push_back(d.body);
  auto answers = send_to_both(first.port(), second.port(), bodies, 10);
  auto sum = check_accepted_by_one(answers);
  BOOST_TEST(sum.accepted == conversations * per_conversation);
  BOOST_TEST(sum.duplicates == conversations * per_conversation);
  BOOST_TEST(sum.ignored == 0);

  BOOST_TEST(db.count("SELECT count(*) FROM messages") == conversations * per_conversation);
  BOOST_TEST(db.count("SELECT count(DISTINCT kapso_message_id) FROM messages")
             == conversations * per_conversation);
  BOOST_TEST(db.count("SELECT count(*) FROM contacts") == conversations);
  BOOST_TEST(db.count("SELECT count(DISTINCT phone) FROM contacts") == conversations);
  BOOST_TEST(db.count("SELECT count(*) FROM conversations") == conversations);
  BOOST_TEST(db.count("SELECT count(DISTINCT contact_id) FROM conversations") == conversations);
  // Every message hangs off the conversation of its own customer.
  BOOST_TEST(db.count("SELECT count(*) FROM messages m JOIN conversations cv "
                      "ON cv.id = m.conversation_id JOIN contacts c ON c.id = cv.contact_id "
                      "WHERE split_part(m.kapso_message_id, '.', 3) "
                      "<> right(c.phone, 1)")
             == 0);
  auto rows = db.query(
    "SELECT c.phone, c.name, cv.unread_count, extract(epoch FROM cv.last_message_at)::bigint, "
    "cv.last_message_preview FROM conversations cv JOIN contacts c ON c.id = cv.contact_id "
    "ORDER BY c.phone");
  BOOST_TEST_REQUIRE(rows.size() == static_cast<size_t>(conversations));
  for (int c = 0; c < conversations; ++c) {
    BOOST_TEST_CONTEXT("conversation " << c) {
      BOOST_TEST(text(rows[c][0]) == "+1555400000" + std::to_string(c));
      BOOST_TEST(text(rows[c][1]) == "Customer " + std::to_string(c));
      BOOST_TEST(text(rows[c][2]) == std::to_string(per_conversation));
      BOOST_TEST(text(rows[c][3]) == std::to_string(base + per_conversation - 1));
      BOOST_TEST(text(rows[c][4])
                 == "m " + std::to_string(c) + " " + std::to_string(per_conversation - 1));
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
