// The server killed (-9) or terminated (SIGTERM) under load: what was answered 200 is stored once.
#include <csignal>
#include <random>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "tests/fault/fault_support.hpp"

using namespace kapso_test;
using namespace kapso_fault;
namespace utf = boost::unit_test;

namespace {

constexpr auto shutdown_limit = 5000ms;
constexpr auto shutdown_margin = 2000ms;

// Requests written well before `signalled` were waiting in the server: each
// must have an HTTP answer. (Later ones may meet a closed listener.)
void check_answered_before(const std::vector<delivery>& deliveries,
                           clock_type::time_point signalled) {
  size_t unanswered = 0;
  std::string examples;
  for (const auto& d : deliveries)
    for (const auto& a : d.attempts)
      if (a.sent + 50ms < signalled && a.status == 0) {
        if (++unanswered <= 5)
          examples += "\n    " + d.messages.front().id + " sent "
                      + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         signalled - a.sent)
                                         .count())
                      + " ms before SIGTERM: " + a.detail;
      }
  BOOST_TEST(unanswered == 0u,
             unanswered << " requests sent before SIGTERM got no HTTP answer" << examples);
}

void check_clean_exit(const exit_status& exit) {
  BOOST_TEST(exit.exited, "still running " << exit.took.count() << " ms after SIGTERM (limit "
                                            << shutdown_limit.count() << " ms + "
                                            << shutdown_margin.count() << " ms margin)");
  if (!exit.exited)
    return;
  BOOST_TEST(exit.exit_code == 0, "exit code " << exit.exit_code << " (signal " << exit.signal
                                               << ") after SIGTERM");
  BOOST_TEST_MESSAGE("[fault] exit " << exit.took.count() << " ms after SIGTERM");
}

} // namespace

BOOST_AUTO_TEST_SUITE(server_crashes)

// Issue 10, case 4: kill -9 at a random point of a load of single and
// batched deliveries over hundreds of conversations, twice; the server
// restarts on the same spool directory and Kapso re-sends what was not
// answered 200.
BOOST_AUTO_TEST_CASE(kill_9_under_load_then_kapso_retries_store_every_message_once,
                     *utf::timeout(180)) {
  fault_database db;
  auto workspaces = db.workspaces(5);
  server_process server{db.url(), fault_server("kill9-load")};
  load_options options;
  options.tag = "kill";
  options.workspaces = workspaces;
  options.conversations = 400;
  options.threads = 8;
  options.batch_share = 0.4;
  options.batch_max = 8;
  expected_store expected;
  expected.add(warm_up(server.port(), options), options);

  std::random_device seed_source;
  auto seed = seed_source();
  std::mt19937 random{seed};
  BOOST_TEST_MESSAGE("[fault] kill points from seed " << seed);
  load_driver load{server.port(), options};
  load.start();
  for (int round = 0; round < 2; ++round) {
    auto ack_target = load.acknowledged() + std::uniform_int_distribution<size_t>{50, 600}(random);
    BOOST_TEST_REQUIRE(load.wait_acknowledged(ack_target, 30s),
                       "round " << round << ": the load did not reach " << ack_target
                                << " answers 200");
    std::this_thread::sleep_for(
      std::chrono::milliseconds{std::uniform_int_distribution<int>{0, 50}(random)});
    server.kill_hard();
    server.start(true);
    auto acknowledged = load.acknowledged();
    BOOST_TEST_REQUIRE(load.wait_acknowledged(acknowledged + 50, 20s),
                       "round " << round << ": no answers 200 after the restart");
  }
  load.stop();

  auto summary = summarize(load.deliveries());
  BOOST_TEST_MESSAGE("[fault] kill -9: " << summary.describe());
  check_answers(summary);
  auto left = resend_unacknowledged(load.deliveries(), options, server.port(), 60s);
  BOOST_TEST(left == 0u, left << " deliveries still not answered 200 after 60 s of re-sending");
  expected.add(load.deliveries(), options);
  check_stored(db, expected, true);
}

// Issue 10, case 5: SIGTERM under load. Every request the server had
// received is answered (200 or 503, no reset), every 200 is stored, and the
// process exits 0 within its shutdown limit.
BOOST_AUTO_TEST_CASE(sigterm_under_load_answers_every_request_and_exits_in_time,
                     *utf::timeout(120)) {
  fault_database db;
  auto workspaces = db.workspaces(3);
  server_process server{
    db.url(), fault_server("sigterm", {"--http.shutdown-timeout-ms="
                                       + std::to_string(shutdown_limit.count())})};
  load_options options;
  options.tag = "term";
  options.workspaces = workspaces;
  options.threads = 8;
  options.batch_share = 0.3;
  expected_store expected;
  expected.add(warm_up(server.port(), options), options);
  load_driver load{server.port(), options};
  load.start();
  BOOST_TEST_REQUIRE(load.wait_acknowledged(300, 20s), "the load got too few answers 200");
  auto signalled = clock_type::now();
  auto exit = server.signal_and_wait(SIGTERM, shutdown_limit + shutdown_margin);
  if (!exit.exited)
    server.kill_hard();
  load.stop();
  check_clean_exit(exit);
  check_answered_before(load.deliveries(), signalled);
  auto summary = summarize(load.deliveries());
  BOOST_TEST_MESSAGE("[fault] SIGTERM: " << summary.describe());
  check_answers(summary);

  // A 200 may rest in the spool: the next start replays it.
  server.start(true);
  expected.add(load.deliveries(), options);
  check_stored(db, expected, false);
  BOOST_TEST(server.stop() == 0);
}

// Issue 10, case 5, the hard part: SIGTERM while every writer waits on a
// PostgreSQL that does not answer. Waiting requests are still answered (200
// when spooled, else 503) and the process exits within its limit.
BOOST_AUTO_TEST_CASE(sigterm_while_the_database_hangs_answers_and_exits_in_time,
                     *utf::timeout(120)) {
  fault_database db;
  auto workspaces = db.workspaces(3);
  server_process server{
    db.url(), fault_server("sigterm-frozen", {"--http.shutdown-timeout-ms="
                                              + std::to_string(shutdown_limit.count())})};
  load_options options;
  options.tag = "termfrozen";
  options.workspaces = workspaces;
  options.threads = 8;
  expected_store expected;
  expected.add(warm_up(server.port(), options), options);
  load_driver load{server.port(), options};
  load.start();
  BOOST_TEST_REQUIRE(load.wait_acknowledged(50, 20s), "the load got too few answers 200");
  pg_cluster::shared().freeze();
  undo_on_exit thaw{[] { pg_cluster::shared().heal(); }};
  // Signalled once deliveries pile up on the frozen database.
  BOOST_TEST(eventually(
               [&] { return metric_of(server.port(), "kapso_in_flight_deliveries") >= 4.0; },
               5s, 20ms),
             "fewer than 4 deliveries waited on the frozen database");
  auto signalled = clock_type::now();
  auto exit = server.signal_and_wait(SIGTERM, shutdown_limit + shutdown_margin);
  if (!exit.exited)
    server.kill_hard();
  load.stop();
  pg_cluster::shared().thaw();
  check_clean_exit(exit);
  check_answered_before(load.deliveries(), signalled);
  auto summary = summarize(load.deliveries());
  BOOST_TEST_MESSAGE("[fault] SIGTERM, database frozen: " << summary.describe());
  check_answers(summary);

  server.start(true);
  expected.add(load.deliveries(), options);
  check_stored(db, expected, false);
}

BOOST_AUTO_TEST_SUITE_END()
