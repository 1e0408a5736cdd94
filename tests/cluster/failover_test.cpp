// Issue 12, acceptance 3: kill -9 of the PostgreSQL primary under load; pg_auto_failover
// promotes the standby and every delivery answered 200 is on the new primary exactly once.
// Then the same for a planned switchover, where the old primary turns read-only under the
// instances' open connections instead of vanishing.
#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "tests/cluster/topology.hpp"

using namespace kapso_cluster;
using namespace kapso_test;

namespace {

using steady = std::chrono::steady_clock;

// The stated bound: from the kill until both instances are ready on the new primary
// (pg_auto_failover as cluster.sh sets it up: ~3 s to call the node unhealthy, a 5 s
// demote timeout, the promotion; then the instances' next connection attempt).
constexpr auto reconnect_bound = std::chrono::seconds(30);

bool ready(uint16_t port) {
  try {
    http_client client{port, 2s};
    return client.get("/readyz").status == 200;
  } catch (const std::exception&) {
    return false;
  }
}

bool writable(const std::string& url) {
  try {
    pqxx::connection connection{url};
    pqxx::nontransaction tx{connection};
    return tx.exec("SELECT NOT pg_is_in_recovery() AND NOT current_setting("
                   "'default_transaction_read_only')::bool").at(0).at(0).as<bool>();
  } catch (const std::exception&) {
    return false;
  }
}

std::string other(const std::string& node) {
  return node == "pg-node-1" ? "pg-node-2" : "pg-node-1";
}

// Runs Kapso-like load through HAProxy (each delivery retried for up to `retry_window`),
// does `change` once 300 deliveries were answered,
// waits until `next_primary` takes writes and both instances are ready, lets 300 more
// through, then checks that every delivery answered 200 is on `next_primary` exactly once.
void change_primary_under_load(const topology& fleet, const std::string& label,
                               const std::string& next_primary,
                               const std::function<void()>& change,
                               std::chrono::seconds retry_window = 120s) {
  auto ws = insert_workspace(fleet.database_url(), label);
  load_options options;
  options.max_deliveries = 100000; // bounded by the controller below
  options.conversations = 30;
  options.pause = 25ms;
  options.label = label;
  options.retry_window = retry_window;
  std::atomic<bool> stop{false};
  std::atomic<size_t> answered{0};
  steady::time_point changed_at{}, reconnected_at{};
  size_t before = 0, during = 0;
  std::string controller_error;
  std::thread controller{[&] {
    try {
      eventually([&] { return answered.load() >= 300; }, 60s, 5ms);
      before = answered.load();
      changed_at = steady::now();
      change();
      if (eventually([&] {
            return writable(fleet.node_url(next_primary)) && ready(fleet.ingest_port(1))
                   && ready(fleet.ingest_port(2));
          }, 60s, 200ms)) {
        reconnected_at = steady::now();
        during = answered.load() - before;
      }
      eventually([&] { return answered.load() >= before + during + 300; }, 60s, 5ms);
    } catch (const std::exception& e) {
      controller_error = e.what();
    }
    stop = true;
  }};
  auto messages = run_load(fleet.front_port(), fleet.secret(), ws, options, stop, answered);
  controller.join();
  BOOST_TEST_REQUIRE(controller_error.empty(), controller_error);
  bool reconnected = reconnected_at != steady::time_point{};
  auto reconnect = std::chrono::duration_cast<std::chrono::milliseconds>(reconnected_at - changed_at);
  size_t retried = 0, delivered = 0;
  int most_attempts = 0;
  for (auto& m : messages) {
    retried += m.attempts > 1;
    delivered += m.delivered;
    most_attempts = std::max(most_attempts, m.attempts);
  }
  BOOST_TEST_MESSAGE(label << ": " << messages.size() << " deliveries through HAProxy ("
                     << delivered << " answered 200), " << before << " answered before, "
                     << during << " while changing over; " << next_primary
                     << " writable and both instances ready "
                     << (reconnected ? "after " + std::to_string(reconnect.count()) + " ms"
                                     : std::string{"never (60 s)"})
                     << "; " << retried << " deliveries needed more than one attempt (at most "
                     << most_attempts << ")");
  BOOST_TEST(reconnected, "the instances were not ready on " << next_primary << " 60 s later");
  if (reconnected)
    BOOST_TEST((reconnect <= reconnect_bound), "reconnected after " << reconnect.count() << " ms");
  // The monitor may still report the nodes in transition (e.g. the new primary as
  // "wait_primary>primary") for a moment after the writes moved.
  BOOST_TEST(eventually([&] { return fleet.primary() == next_primary; }, 30s, 250ms),
             "the monitor does not report " << next_primary << " as primary: '"
                                            << fleet.primary() << "'");
  // Whatever was spooled meanwhile is replayed into the new primary.
  if (reconnected)
    BOOST_TEST(eventually([&] { return fleet.spool_records(1) == 0 && fleet.spool_records(2) == 0; },
                          60s, 250ms),
               "spools: " << fleet.spool_records(1) << ", " << fleet.spool_records(2));
  BOOST_TEST_MESSAGE(label << ": events replayed from the spools so far: ingest-1 "
                     << fleet.metric(1, "kapso_replayed_events_total") << ", ingest-2 "
                     << fleet.metric(2, "kapso_replayed_events_total"));
  check_inbox(fleet.node_url(next_primary), ws, messages);
}

} // namespace

BOOST_AUTO_TEST_SUITE(cluster)

BOOST_AUTO_TEST_CASE(kill_9_of_the_primary_under_load) {
  auto fleet = topology::ensure_up();
  auto old_primary = fleet.primary();
  BOOST_TEST_REQUIRE(!old_primary.empty(), "no primary in scripts/cluster.sh status");
  // A COMMIT waits for the standby: what lets a promotion lose nothing.
  auto sync = replication_state(fleet.node_url(old_primary));
  BOOST_TEST_REQUIRE((sync == "quorum" || sync == "sync"), "replication is " << sync);
  change_primary_under_load(fleet, "failover", other(old_primary),
                            [&] { fleet.kill_node(old_primary); });
}

BOOST_AUTO_TEST_CASE(planned_switchover_under_load) {
  // cluster.sh up brings the node killed above back; it rejoins as the standby.
  auto fleet = topology::ensure_up();
  auto old_primary = fleet.primary();
  BOOST_TEST_REQUIRE(!old_primary.empty(), "no primary in scripts/cluster.sh status");
  auto sync = replication_state(fleet.node_url(old_primary));
  BOOST_TEST_REQUIRE((sync == "quorum" || sync == "sync"), "replication is " << sync);
  change_primary_under_load(fleet, "switchover", other(old_primary), [&] {
    pqxx::connection monitor{fleet.monitor_url()};
    pqxx::nontransaction tx{monitor};
    tx.exec("SELECT pgautofailover.perform_failover('default', 0)");
  });
}

BOOST_AUTO_TEST_CASE(frozen_primary_under_load) {
  // The standby left by the switchover rejoins first.
  auto fleet = topology::ensure_up();
  auto old_primary = fleet.primary();
  BOOST_TEST_REQUIRE(!old_primary.empty(), "no primary in scripts/cluster.sh status");
  // A hang, not a crash: the instances' connections to it stay open and never answer, so
  // only their own deadlines get them to the new primary. Kapso's window is 2.5 minutes;
  // a minute per delivery keeps a failing run short.
  // The machine "reboots" at the end, whatever the outcome: nothing frozen outlives the test.
  struct reboot {
    const topology& fleet;
    std::string node;
    bool frozen = false;
    ~reboot() {
      try {
        if (frozen)
          fleet.kill_node(node);
      } catch (const std::exception& e) {
        BOOST_TEST_MESSAGE("could not kill the frozen " << node << ": " << e.what());
      }
    }
  } frozen_node{fleet, old_primary};
  change_primary_under_load(fleet, "freeze", other(old_primary), [&] {
    frozen_node.frozen = true;
    fleet.freeze_node(old_primary);
  }, 60s);
}

BOOST_AUTO_TEST_SUITE_END()
