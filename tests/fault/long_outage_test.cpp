// A long outage under a steady load, and a restart on a large spool: benchmarks/outage.sh scaled to the fault tier.
#include <thread>

#include <boost/test/unit_test.hpp>

#include "tests/fault/fault_support.hpp"

using namespace kapso_test;
using namespace kapso_fault;
namespace utf = boost::unit_test;

namespace {

pg_cluster& cluster() { return pg_cluster::shared(); }

double metric(uint16_t port, const std::string& name) {
  return metric_sum(metrics_of(port), name);
}

// Nothing waits for replay: kapso_spool_bytes and kapso_spool_records are 0.
bool spool_drained(uint16_t port) {
  auto metrics = metrics_of(port);
  return !metrics.empty() && metric_sum(metrics, "kapso_spool_bytes") == 0.0
         && metric_sum(metrics, "kapso_spool_records") == 0.0;
}

std::string join(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& line : lines)
    out += "\n    " + line;
  return out;
}

double seconds_between(clock_type::time_point from, clock_type::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

constexpr size_t rss_limit_kib = 200 * 1024;

} // namespace

BOOST_AUTO_TEST_SUITE(long_outage)

// benchmarks/outage.sh's outage scaled from 10 minutes to 30 s: under a
// steady load every request is answered 200 from the spool and the server's
// memory stays bounded; once PostgreSQL is back the spool drains at least
// three times as fast as new events arrive, the new deliveries answered 200
// meanwhile; then every 200 is stored exactly once.
BOOST_AUTO_TEST_CASE(thirty_seconds_down_under_load_then_a_drain_beside_new_deliveries,
                     *utf::timeout(240)) {
  fault_database db;
  auto workspaces = db.workspaces(3);
  server_process server{db.url(), fault_server("long-outage")};
  undo_on_exit undo{[] { cluster().heal(); }};
  rss_sampler rss{server.pid()};

  load_options options;
  options.tag = "long";
  options.workspaces = workspaces;
  options.conversations = 600;
  options.threads = 6;
  options.pause = 15ms;
  expected_store expected;
  load_driver load{server.port(), options};
  start_after_warm_up(load, expected, server.port(), options, 50);
  auto spooled_before = metric(server.port(), "kapso_spooled_events_total");
  auto began = clock_type::now();
  cluster().stop_immediate();
  std::this_thread::sleep_for(30s);
  auto at_return = metrics_of(server.port());
  auto spooled = metric_sum(at_return, "kapso_spooled_events_total") - spooled_before;
  auto spool_bytes_at_return = metric_sum(at_return, "kapso_spool_bytes");
  auto replayed_before = metric_sum(at_return, "kapso_replayed_events_total");
  cluster().start();
  auto back = clock_type::now();
  // The load goes on while the spool drains.
  BOOST_TEST_REQUIRE(eventually([&] { return spool_drained(server.port()); }, 90s, 20ms),
                     "the spool was not drained within 90 s of PostgreSQL's return");
  auto drained = clock_type::now();
  auto replayed = metric(server.port(), "kapso_replayed_events_total") - replayed_before;
  std::this_thread::sleep_for(1s);
  load.stop();

  auto summary = summarize(load.deliveries());
  BOOST_TEST_MESSAGE("[fault] long outage: " << summary.describe());
  check_answers(summary);
  BOOST_TEST(spooled > 0.0, "nothing was spooled during the outage");
  auto outage = answered_200_within(load.deliveries(), commit_timeout + 2s, began, back);
  BOOST_TEST(outage.requests > 0u, "no request was sent during the outage");
  BOOST_TEST(outage.count == 0u, outage.count << " of " << outage.requests
                                               << " requests during the outage were not "
                                                  "answered 200 within 3 s:"
                                               << join(outage.examples));
  // New deliveries during the drain: answered 200 (within the server's own
  // request deadline), while the spool replays at least 3x as many events.
  auto drain = answered_200_within(load.deliveries(), 8s, back, drained);
  auto drain_s = seconds_between(back, drained);
  BOOST_TEST(drain.count == 0u, drain.count << " of " << drain.requests
                                             << " requests during the drain were not answered "
                                                "200:"
                                             << join(drain.examples));
  BOOST_TEST(drain.messages > 0u, "no new delivery arrived during the drain");
  BOOST_TEST(replayed >= 3.0 * static_cast<double>(drain.messages),
             "the spool drained " << replayed << " events while " << drain.messages
                                  << " new ones arrived: not 3x as fast");
  BOOST_TEST(rss.max_kib() < rss_limit_kib, "server RSS reached " << rss.max_kib() / 1024
                                                                  << " MB");
  BOOST_TEST_MESSAGE("[fault] long outage: "
                     << outage.requests << " requests in " << seconds_between(began, back)
                     << " s down, " << spooled << " events spooled in " << spool_bytes_at_return
                     << " bytes (" << spool_bytes_at_return / std::max(spooled, 1.0)
                     << " per event); drained in " << drain_s << " s: " << replayed / drain_s
                     << " events/s replayed against " << drain.messages / drain_s
                     << " arriving, p99 of the new deliveries " << drain.p99_200.count()
                     << " ms; RSS at most " << rss.max_kib() / 1024 << " MB");

  auto left = resend_unacknowledged(load.deliveries(), options, server.port(), 60s);
  BOOST_TEST(left == 0u, left << " deliveries still not answered 200 after 60 s of re-sending");
  expected.add(load.deliveries(), options);
  check_stored(db, expected, true, 60s);
  BOOST_TEST(metric(server.port(), "kapso_quarantined_events_total") == 0.0);
}

// benchmarks/outage.sh's restart scaled from 1 GB to 128 MiB: a spool filled
// by the real server while PostgreSQL is stopped; the server restarted with
// PostgreSQL back is ready, and answers a new delivery, within 5 s (opening
// the spool reads none of its records; the replay streams beside new
// deliveries, which are written to PostgreSQL at once); then everything is
// stored exactly once.
BOOST_AUTO_TEST_CASE(a_restart_on_a_large_spool_is_ready_within_five_seconds,
                     *utf::timeout(300)) {
  fault_database db;
  auto workspaces = db.workspaces(2);
  server_process server{db.url(), fault_server("large-spool", {"--spool.max-bytes=1073741824"})};
  undo_on_exit undo{[] { cluster().heal(); }};

  load_options options;
  options.tag = "large";
  options.workspaces = workspaces;
  options.conversations = 2000;
  options.threads = 4;
  options.batch_share = 1.0;
  options.batch_min = 50;
  options.batch_max = 50;
  options.text_bytes = 2000;
  expected_store expected;
  expected.add(warm_up(server.port(), options), options);

  constexpr uint64_t target = 128ull << 20;
  cluster().stop_immediate();
  load_driver fill{server.port(), options};
  fill.start();
  auto filling = clock_type::now();
  BOOST_TEST_REQUIRE(eventually([&] { return spool_bytes(server.spool_dir()) >= target; }, 120s,
                                50ms),
                     "the spool did not reach " << target << " bytes within 120 s");
  fill.stop();
  auto fill_s = seconds_between(filling, clock_type::now());
  BOOST_TEST(server.stop() == 0);
  auto on_disk = spool_bytes(server.spool_dir());
  cluster().start();

  auto restarting = clock_type::now();
  server.start(true);
  auto ready_ms = ms_since(restarting);
  // A delivery the server has not seen, to a workspace it knows.
  load_options probe_options = options;
  probe_options.tag = "large-probe";
  probe_options.text_bytes = 60;
  delivery probe;
  probe.messages.push_back({"wamid.large-probe.1", 0, 1730800000});
  {
    http_client client{server.port(), 8s};
    while (!probe.acknowledged() && ms_since(restarting) < 10000) {
      send_once(client, probe, probe_options);
      if (!probe.acknowledged())
        std::this_thread::sleep_for(20ms);
    }
  }
  auto answered_ms = ms_since(restarting);
  auto replaying = metric(server.port(), "kapso_spool_bytes");
  // Written to PostgreSQL at once, not queued behind the spool.
  auto stored_at_once =
    db.query("SELECT 1 FROM messages WHERE kapso_message_id = 'wamid.large-probe.1'").size();
  BOOST_TEST_MESSAGE("[fault] large spool: " << on_disk << " bytes filled in " << fill_s
                                             << " s; restarted: /readyz 200 after " << ready_ms
                                             << " ms, a new delivery answered 200 after "
                                             << answered_ms << " ms, " << replaying
                                             << " spool bytes still to replay then");
  BOOST_TEST(on_disk >= target);
  BOOST_TEST(ready_ms <= 5000, "/readyz answered 200 only after " << ready_ms << " ms");
  BOOST_TEST(probe.acknowledged(), "the new delivery was not answered 200");
  BOOST_TEST(answered_ms <= 5000, "the new delivery was answered 200 after " << answered_ms
                                                                            << " ms");
  BOOST_TEST(stored_at_once == 1u, "the new delivery was not in PostgreSQL when it was "
                                   "answered (" << replaying << " spool bytes to replay)");

  auto left = resend_unacknowledged(fill.deliveries(), options, server.port(), 60s);
  BOOST_TEST(left == 0u, left << " deliveries still not answered 200 after 60 s of re-sending");
  expected.add(fill.deliveries(), options);
  expected.add({probe}, probe_options);
  BOOST_TEST_REQUIRE(eventually([&] { return spool_drained(server.port()); }, 120s, 100ms),
                     "the spool was not replayed within 120 s");
  check_stored(db, expected, true, 60s);
}

BOOST_AUTO_TEST_SUITE_END()
