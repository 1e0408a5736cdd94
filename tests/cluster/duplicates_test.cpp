// Issue 12, acceptance 1: every delivery reaches both instances of the fleet at the same moment.
#include <algorithm>
#include <random>

#include <boost/test/unit_test.hpp>

#include "tests/cluster/topology.hpp"

using namespace kapso_cluster;
using namespace kapso_test;

BOOST_AUTO_TEST_SUITE(cluster)

BOOST_AUTO_TEST_CASE(same_delivery_to_both_instances_at_once) {
  auto fleet = topology::ensure_up();
  auto ws = insert_workspace(fleet.database_url(), "duplicates");
  constexpr int conversations = 20;
  constexpr int per_conversation = 15;
  constexpr int total = conversations * per_conversation;
  constexpr int64_t base = 1731000000;
  struct delivery {
    int conversation;
    int index;
    std::string body;
  };
  std::vector<delivery> deliveries;
  for (int c = 0; c < conversations; ++c)
    for (int k = 0; k < per_conversation; ++k)
      deliveries.push_back({c, k,
                            delivery_body(ws, "wamid.dup." + std::to_string(c) + "." + std::to_string(k),
                                          base + k, "dup " + std::to_string(c) + " " + std::to_string(k),
                                          "+1555660" + std::to_string(1000 + c))});
  // Any arrival order: the newest message must still win the preview.
  std::shuffle(deliveries.begin(), deliveries.end(), std::mt19937{20261201});

  std::vector<std::string> bodies;
  for (const auto& d : deliveries)
    bodies.push_back(d.body);
  auto answers = send_to_both(fleet.ingest_port(1), fleet.ingest_port(2), bodies, 8,
                              fleet.secret());
  auto sum = check_accepted_by_one(answers);
  BOOST_TEST(sum.accepted == total);
  BOOST_TEST(sum.duplicates == total);
  BOOST_TEST(sum.ignored == 0);

  pqxx::connection primary{fleet.database_url()};
  auto count = [&](const std::string& sql) {
    pqxx::nontransaction tx{primary};
    return tx.exec_params(sql, ws.id).at(0).at(0).as<int64_t>();
  };
  BOOST_TEST(count("SELECT count(*) FROM messages WHERE workspace_id = $1::uuid") == total);
  BOOST_TEST(count("SELECT count(DISTINCT kapso_message_id) FROM messages "
                   "WHERE workspace_id = $1::uuid") == total);
  BOOST_TEST(count("SELECT count(*) FROM contacts WHERE workspace_id = $1::uuid") == conversations);
  BOOST_TEST(count("SELECT count(*) FROM conversations WHERE workspace_id = $1::uuid")
             == conversations);
  pqxx::nontransaction tx{primary};
  auto rows = tx.exec_params(
    "SELECT c.phone, cv.unread_count, extract(epoch FROM cv.last_message_at)::bigint, "
    "cv.last_message_preview FROM conversations cv JOIN contacts c ON c.id = cv.contact_id "
    "WHERE cv.workspace_id = $1::uuid ORDER BY c.phone",
    ws.id);
  BOOST_TEST_REQUIRE(rows.size() == static_cast<size_t>(conversations));
  for (int c = 0; c < conversations; ++c) {
    BOOST_TEST_CONTEXT("conversation " << c) {
      BOOST_TEST(text(rows[c][0]) == "+1555660" + std::to_string(1000 + c));
      BOOST_TEST(text(rows[c][1]) == std::to_string(per_conversation));
      BOOST_TEST(text(rows[c][2]) == std::to_string(base + per_conversation - 1));
      BOOST_TEST(text(rows[c][3])
                 == "dup " + std::to_string(c) + " " + std::to_string(per_conversation - 1));
    }
  }

  // Synchronous replication: the standby holds the same rows (replayed within moments).
  auto standby = fleet.primary() == "pg-node-1" ? "pg-node-2" : "pg-node-1";
  int64_t on_standby = -1;
  BOOST_TEST(eventually([&] {
               pqxx::connection connection{fleet.node_url(standby)};
               pqxx::nontransaction read{connection};
               on_standby = read.exec_params("SELECT count(*) FROM messages "
                                             "WHERE workspace_id = $1::uuid", ws.id)
                              .at(0).at(0).as<int64_t>();
               return on_standby == total;
             }, 10s),
             "the standby has " << on_standby << " of " << total << " messages");
}

BOOST_AUTO_TEST_SUITE_END()
