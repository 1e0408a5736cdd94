// Issue 17, acceptance 1: `scripts/cluster.sh roll` replaces both instances under a steady
// load through HAProxy; the client sees nothing but 200 and every delivery is stored once.
#include <atomic>
#include <chrono>
#include <sstream>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "tests/cluster/topology.hpp"

using namespace kapso_cluster;
using namespace kapso_test;

namespace {

using steady = std::chrono::steady_clock;

// The lines of the roll's output that say what it did and how long it took.
std::string roll_summary(const std::string& output) {
  std::istringstream lines{output};
  std::string summary;
  for (std::string line; std::getline(lines, line);)
    if (line.find(" replaced ") != std::string::npos || line.find("roll done") != std::string::npos)
      summary += "\n  " + line;
  return summary;
}

} // namespace

BOOST_AUTO_TEST_SUITE(cluster)

BOOST_AUTO_TEST_CASE(rolling_restart_under_load) {
  auto fleet = topology::ensure_up();
  auto before_1 = fleet.find("ingest-1").pid, before_2 = fleet.find("ingest-2").pid;
  auto ws = insert_workspace(fleet.database_url(), "roll");
  load_options options;
  options.max_deliveries = 100000; // bounded by the scenario
  options.conversations = 30;
  options.pause = 20ms;
  options.label = "roll";
  std::string output;
  steady::time_point rolled_from{}, rolled_to{};
  // What HAProxy had to do about the drain: requests sent again (on the same instance or
  // another one) and 5xx answers it got from the instances.
  auto haproxy_work = [&] {
    return std::vector<double>{fleet.haproxy_counter("kapso_ready", "BACKEND", "wretr"),
                               fleet.haproxy_counter("kapso_ready", "BACKEND", "wredis"),
                               fleet.haproxy_counter("kapso_ready", "ingest-1", "hrsp_5xx")
                                 + fleet.haproxy_counter("kapso_ready", "ingest-2", "hrsp_5xx"),
                               fleet.haproxy_counter("kapso_ready", "BACKEND", "eresp")};
  };
  std::vector<double> work_before, work_after;
  auto messages = load_during(fleet, ws, options, [&](const std::atomic<size_t>& answered) {
    wait_for_answers(answered, 300);
    work_before = haproxy_work();
    rolled_from = steady::now();
    output = fleet.roll();
    rolled_to = steady::now();
    work_after = haproxy_work();
    wait_for_answers(answered, answered.load() + 300);
  });
  auto roll_ms = std::chrono::duration_cast<std::chrono::milliseconds>(rolled_to - rolled_from);
  size_t during = 0, not_at_once = 0;
  std::string example;
  for (auto& m : messages) {
    during += m.delivered && m.answered_at >= rolled_from && m.first_sent <= rolled_to;
    if (m.attempts > 1 || !m.delivered) {
      ++not_at_once;
      if (example.empty())
        example = m.id + ": " + (m.failures.empty() ? std::string{"no answer"} : m.failures[0]);
    }
  }
  BOOST_TEST_MESSAGE("roll: " << messages.size() << " deliveries through HAProxy, " << during
                     << " of them while both instances were replaced in " << roll_ms.count()
                     << " ms; longest wait between two 200s meanwhile "
                     << longest_gap_between_answers(messages, rolled_from, rolled_to).count()
                     << " ms, longest delivery "
                     << longest_delivery(messages, rolled_from, rolled_to).count() << " ms; "
                     << "HAProxy meanwhile: " << work_after[0] - work_before[0] << " retries, "
                     << work_after[1] - work_before[1] << " redispatches, "
                     << work_after[2] - work_before[2] << " answers 5xx from the instances, "
                     << work_after[3] - work_before[3] << " response errors"
                     << roll_summary(output));
  // HAProxy's health checks and retries absorb the drain: no delivery saw anything else.
  BOOST_TEST(not_at_once == 0u, not_at_once << " deliveries were not answered 200 at the first "
                                            << "attempt, e.g. " << example);
  BOOST_TEST(during > 0u);
  // Withdrawn first, an instance gets nothing more once HAProxy has taken it out, so HAProxy
  // has nothing to send again. Without that step the same roll costs ~200 redispatches
  // (deliveries refused by a stopped instance that HAProxy still counted up); a few may come
  // from a kept-alive connection closed as HAProxy reuses it.
  auto resent_by_haproxy = work_after[0] - work_before[0] + work_after[1] - work_before[1];
  BOOST_TEST(resent_by_haproxy < 10, "HAProxy sent " << resent_by_haproxy
                                      << " requests again during the roll");
  BOOST_TEST(work_after[2] - work_before[2] == 0, "instances answered 5xx during the roll");
  auto after_1 = fleet.find("ingest-1"), after_2 = fleet.find("ingest-2");
  BOOST_TEST((after_1.pid > 0 && after_1.pid != before_1), "ingest-1 was not replaced");
  BOOST_TEST((after_2.pid > 0 && after_2.pid != before_2), "ingest-2 was not replaced");
  BOOST_TEST(after_1.role == "up");
  BOOST_TEST(after_2.role == "up");
  check_inbox(fleet.database_url(), ws, messages);
}

BOOST_AUTO_TEST_SUITE_END()
