// Issue 12, acceptance 2: kill -9 of one instance under load through HAProxy loses nothing.
#include <atomic>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "tests/cluster/topology.hpp"

using namespace kapso_cluster;
using namespace kapso_test;

BOOST_AUTO_TEST_SUITE(cluster)

BOOST_AUTO_TEST_CASE(kill_9_of_an_instance_under_load) {
  auto fleet = topology::ensure_up();
  auto ws = insert_workspace(fleet.database_url(), "kill");
  load_options options;
  options.max_deliveries = 1500;
  options.conversations = 40;
  options.label = "kill";
  std::atomic<bool> stop{false};
  std::atomic<size_t> answered{0};
  std::string kill_error;
  // A third of the way in, ingest-1 dies with deliveries in flight.
  std::thread killer{[&] {
    eventually([&] { return answered.load() >= options.max_deliveries / 3; }, 60s, 5ms);
    try {
      fleet.kill_ingest("ingest-1");
    } catch (const std::exception& e) {
      kill_error = e.what();
    }
  }};
  auto messages = run_load(fleet.front_port(), fleet.secret(), ws, options, stop, answered);
  killer.join();
  BOOST_TEST_REQUIRE(kill_error.empty(), kill_error);
  BOOST_TEST(fleet.find("ingest-1").role == "down");

  size_t retried = 0, duplicates = 0;
  int most_attempts = 0;
  for (auto& m : messages) {
    retried += m.attempts > 1;
    duplicates += m.delivered && !m.accepted;
    most_attempts = std::max(most_attempts, m.attempts);
  }
  BOOST_TEST_MESSAGE(messages.size() << " deliveries through HAProxy, ingest-1 killed after "
                     << options.max_deliveries / 3 << ": " << retried
                     << " needed a second attempt (at most " << most_attempts << "), "
                     << duplicates << " were answered as duplicates of a commit whose answer "
                     << "was lost");
  BOOST_TEST(messages.size() == options.max_deliveries);
  check_inbox(fleet.database_url(), ws, messages);

  // Back up (cluster.sh up restarts it); whatever its spool held is replayed, nothing twice.
  auto again = topology::ensure_up();
  BOOST_TEST(again.find("ingest-1").role == "up");
  BOOST_TEST(eventually([&] { return again.spool_records(1) == 0; }, 30s));
  check_inbox(again.database_url(), ws, messages);
}

BOOST_AUTO_TEST_SUITE_END()
