// Overload, slow-loris, descriptor exhaustion and oversized wire data: the server keeps serving signed traffic.
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>

#include "tests/fault/fault_support.hpp"
#include "tests/fault/raw_client.hpp"

using namespace kapso_test;
using namespace kapso_fault;
namespace utf = boost::unit_test;

BOOST_AUTO_TEST_SUITE(hostile_traffic)

// Issue 10, case 6: ten times the in-flight bound in ~200 KB batch bodies.
BOOST_AUTO_TEST_CASE(overload_with_batch_bodies_sheds_load_and_keeps_memory_bounded,
                     *utf::timeout(150)) {
  constexpr size_t in_flight_bytes = 1 << 20;
  // Stated bound: 50 bodies of 200 KB on the wire are 10 MB, and only 1 MiB
  // of them may be in the pipeline; with its caches the server stays below
  // 192 MiB (today, without a bound in bytes, it reaches ~130 MiB with these
  // 50 clients, and GBs with thousands).
  constexpr size_t rss_bound_kib = 192 * 1024;
  fault_database db;
  auto flood_workspaces = db.workspaces(2);
  auto quiet_workspaces = db.workspaces(1);
  server_process server{
    db.url(), fault_server("overload", {"--http.max-in-flight-bytes="
                                        + std::to_string(in_flight_bytes)})};
  load_options flood;
  flood.tag = "flood";
  flood.workspaces = flood_workspaces;
  flood.conversations = 200;
  flood.threads = 50;
  flood.batch_share = 1.0;
  flood.batch_min = flood.batch_max = 20;
  flood.text_bytes = 10000;  // 20 x 10 KB: a ~205 KB body
  flood.client_timeout = 15s;
  load_options quiet;
  quiet.tag = "quiet";
  quiet.workspaces = quiet_workspaces;
  quiet.conversations = 20;
  quiet.threads = 1;
  quiet.batch_share = 0;
  quiet.pause = 100ms;
  expected_store expected;
  expected.add(warm_up(server.port(), flood), flood);
  expected.add(warm_up(server.port(), quiet), quiet);
  auto baseline_kib = server.rss_kib();

  rss_sampler rss{server.pid()};
  load_driver flooding{server.port(), flood};
  flooding.start();
  BOOST_TEST(eventually([&] { return flooding.requests() >= 100; }, 20s),
             "the flood made fewer than 100 requests in 20 s");
  auto busy_before = metric_of(server.port(), "kapso_http_requests_total", {"code=\"503\""});
  load_driver quietly{server.port(), quiet};
  quietly.start();
  // The flood goes on until it was shed (503s) while the second client
  // made enough requests to judge how it was served.
  BOOST_TEST(eventually(
               [&] {
                 return quietly.requests() >= 40
                        && metric_of(server.port(), "kapso_http_requests_total",
                                     {"code=\"503\""})
                             >= busy_before + 20;
               },
               30s, 100ms),
             "within 30 s of flooding, the second client made " << quietly.requests()
                                                                 << " requests (40 wanted) or "
                                                                    "fewer than 20 were shed");
  quietly.stop();
  flooding.stop();

  auto flood_summary = summarize(flooding.deliveries());
  auto quiet_summary = summarize(quietly.deliveries());
  BOOST_TEST_MESSAGE("[fault] flood: " << flood_summary.describe());
  BOOST_TEST_MESSAGE("[fault] quiet client: " << quiet_summary.describe());
  BOOST_TEST_MESSAGE("[fault] RSS " << baseline_kib / 1024 << " MiB before, max "
                                    << rss.max_kib() / 1024 << " MiB during the flood");
  check_answers(flood_summary);
  check_answers(quiet_summary);
  BOOST_TEST(flood_summary.by_status[503] > 0u,
             "no 503 at ten times the in-flight bound: " << flood_summary.describe());
  BOOST_TEST(rss.max_kib() < rss_bound_kib, "server RSS reached " << rss.max_kib() / 1024
                                                                  << " MiB (bound "
                                                                  << rss_bound_kib / 1024
                                                                  << " MiB)");
  // The small signed deliveries of another client are not crowded out.
  BOOST_TEST(quiet_summary.requests >= 10u, quiet_summary.describe());
  BOOST_TEST(quiet_summary.acknowledged_deliveries * 10 >= quiet_summary.deliveries * 9,
             "fewer than 90 % of the second client's deliveries were answered 200 during the "
             "flood: " << quiet_summary.describe());
  auto left = resend_unacknowledged(quietly.deliveries(), quiet, server.port(), 20s);
  BOOST_TEST(left == 0u, left << " small deliveries still not answered 200");
  expected.add(flooding.deliveries(), flood);
  expected.add(quietly.deliveries(), quiet);
  check_stored(db, expected, false, 60s);
  // "Nothing written": a delivery shed with 503 "server busy" (and never
  // answered 200) has no row, also once the spool is replayed.
  auto shed = refused_messages(flooding.deliveries(), flood);
  BOOST_TEST(shed.size() > 0u, "no flooded delivery was shed: " << flood_summary.describe());
  BOOST_TEST(eventually([&] { return metric_of(server.port(), "kapso_spool_records") == 0.0; },
                        20s, 100ms),
             "the spool was not replayed within 20 s");
  check_refused_not_stored(db, shed);
}

// Issue 10, case 7a: connections that send their request header one byte a
// second are closed after the idle timeout, and others are served meanwhile.
BOOST_AUTO_TEST_CASE(slow_loris_connections_are_closed_and_others_served, *utf::timeout(90)) {
  constexpr auto idle_timeout = 2000ms;
  constexpr auto close_margin = 3000ms;
  constexpr size_t slow_connections = 100;
  fault_database db;
  auto workspaces = db.workspaces(2);
  server_process server{
    db.url(), fault_server("slowloris", {"--http.idle-timeout-ms="
                                         + std::to_string(idle_timeout.count())})};
  load_options options;
  options.tag = "loris";
  options.workspaces = workspaces;
  options.threads = 2;
  options.pause = 50ms;
  expected_store expected;
  expected.add(warm_up(server.port(), options), options);

  const std::string header = "POST /api/webhook/kapso HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             "Content-Type: application/json\r\nX-Slow: "
                             + std::string(200, 'a');
  struct slow {
    int fd = -1;
    clock_type::time_point opened;
    std::optional<std::chrono::milliseconds> closed_after;
    size_t sent = 0;
  };
  std::vector<slow> slows(slow_connections);
  for (auto& s : slows) {
    s.fd = open_raw(server.port());
    s.opened = clock_type::now();
    BOOST_TEST_REQUIRE(s.fd >= 0, "cannot open a slow connection");
  }
  load_driver load{server.port(), options};
  load.start();
  auto started = clock_type::now();
  auto next_byte = started;
  while (clock_type::now() - started < idle_timeout + close_margin + 3s) {
    bool all_closed = true;
    auto now = clock_type::now();
    auto send_now = now >= next_byte;
    for (auto& s : slows) {
      if (s.closed_after)
        continue;
      if (closed_by_peer(s.fd)) {
        s.closed_after = std::chrono::duration_cast<std::chrono::milliseconds>(now - s.opened);
        continue;
      }
      all_closed = false;
      if (send_now && s.sent < header.size()) {
        auto n = ::send(s.fd, header.data() + s.sent, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == 1)
          ++s.sent;
        else if (errno == EPIPE || errno == ECONNRESET)
          s.closed_after =
            std::chrono::duration_cast<std::chrono::milliseconds>(now - s.opened);
      }
    }
    if (send_now)
      next_byte += 1s;
    if (all_closed)
      break;
    std::this_thread::sleep_for(50ms);
  }
  load.stop();
  size_t open = 0;
  size_t late = 0;
  std::chrono::milliseconds latest{0};
  for (auto& s : slows) {
    if (!s.closed_after)
      ++open;
    else if (*s.closed_after > idle_timeout + close_margin)
      ++late;
    if (s.closed_after)
      latest = std::max(latest, *s.closed_after);
    ::close(s.fd);
  }
  BOOST_TEST(open == 0u, open << " of " << slow_connections
                              << " slow-loris connections were still open after "
                              << (idle_timeout + close_margin + 3s).count() << " ms");
  BOOST_TEST(late == 0u, late << " slow-loris connections were closed later than "
                              << (idle_timeout + close_margin).count() << " ms (latest "
                              << latest.count() << " ms)");

  auto summary = summarize(load.deliveries());
  BOOST_TEST_MESSAGE("[fault] served during slow-loris: " << summary.describe());
  check_answers(summary);
  BOOST_TEST(summary.requests >= 20u, summary.describe());
  BOOST_TEST(summary.acknowledged_deliveries == summary.deliveries,
             "deliveries not answered 200 during slow-loris: " << summary.describe());
  BOOST_TEST(summary.max_latency.count() <= 2000, summary.describe());
  expected.add(load.deliveries(), options);
  check_stored(db, expected, false);
}

// Issue 10, case 7b: with 64 descriptors, a burst of 120 idle connections
// exhausts them; once they are closed the server accepts again.
BOOST_AUTO_TEST_CASE(descriptor_exhaustion_does_not_stop_accepting, *utf::timeout(90)) {
  fault_database db;
  auto workspaces = db.workspaces(1);
  auto server_opts =
    fault_server("nofile-64", {"--http.max-connections=32", "--persistence.writers=1"});
  server_opts.rlimit_nofile = 64;
  server_process server{db.url(), server_opts};
  load_options options;
  options.tag = "nofile";
  options.workspaces = workspaces;
  expected_store expected;
  expected.add(warm_up(server.port(), options), options);

  auto fds_before = open_descriptors(server.pid());
  std::vector<int> burst;
  for (int i = 0; i < 120; ++i)
    if (auto fd = open_raw(server.port()); fd >= 0)
      burst.push_back(fd);
  BOOST_TEST_MESSAGE("[fault] opened " << burst.size() << " idle connections");
  // Held until the server has taken all the connections it may.
  BOOST_TEST(eventually([&] { return open_descriptors(server.pid()) >= fds_before + 20; }, 5s,
                        20ms),
             "the server holds " << open_descriptors(server.pid()) - fds_before
                                 << " more descriptors after the burst (20 wanted; "
                                    "http.max-connections=32)");
  for (auto fd : burst)
    ::close(fd);

  auto closed = clock_type::now();
  bool healthy = eventually(
    [&] {
      try {
        http_client client{server.port(), 1s};
        return client.get("/healthz").status == 200;
      } catch (const std::exception&) {
        return false;
      }
    },
    5s, 100ms);
  BOOST_TEST(healthy, "/healthz not answered within 5 s after the burst of connections closed");
  BOOST_TEST_MESSAGE("[fault] /healthz after " << ms_since(closed) << " ms");
  auto took = signed_delivery_works(server.port(), options, "wamid.nofile.after", 5s);
  BOOST_TEST(took.has_value(), "a signed delivery got no 200 within 5 s after the burst");
  BOOST_TEST(server.running(), "the server exited");
}

// Issue 10, case 9: 3,000 unsigned (or wrongly signed) requests, each with a
// 300 KB conversation.phone_number and a new phone_number_id: all 401, and
// nothing keyed by that wire data stays in memory.
BOOST_AUTO_TEST_CASE(unsigned_requests_with_huge_wire_fields_do_not_grow_memory,
                     *utf::timeout(150)) {
  constexpr size_t requests = 3000;
  constexpr size_t threads = 4;
  // Stated bounds: peak RSS under 150 MiB, and no more than 32 MiB growth
  // from the first third of the requests to the end.
  constexpr size_t rss_bound_kib = 150 * 1024;
  constexpr size_t growth_bound_kib = 32 * 1024;
  fault_database db;
  auto workspaces = db.workspaces(1);
  server_process server{db.url(), fault_server("wire-memory")};
  load_options options;
  options.tag = "wire";
  options.workspaces = workspaces;
  warm_up(server.port(), options);
  auto baseline_kib = server.rss_kib();

  // The body with two markers replaced per request (phone, phone_number_id).
  // A business-scoped user id keeps the event well-formed whatever the
  // phone, so the signature is what rejects it.
  kapso_message m = text_message(workspaces[0], "wamid.wire.x", 1730600000, "hi", "@PHONE@");
  m.phone_number_id = "@PNID@";
  m.bsuid = "US.13491208655302741918";
  auto templ = kapso_event(m).dump();
  std::vector<std::string> pieces;
  std::vector<bool> is_phone;
  for (size_t pos = 0;;) {
    auto phone = templ.find("@PHONE@", pos);
    auto pnid = templ.find("@PNID@", pos);
    auto next = std::min(phone, pnid);
    pieces.push_back(templ.substr(pos, next - pos));
    if (next == std::string::npos)
      break;
    is_phone.push_back(next == phone);
    pos = next + (next == phone ? 7 : 6);
  }
  std::string huge_phone(300 * 1024, '0');
  for (size_t i = 0; i < huge_phone.size(); ++i)
    huge_phone[i] = static_cast<char>('0' + (i * 7) % 10);

  rss_sampler rss{server.pid()};
  std::atomic<size_t> sent{0};
  std::atomic<size_t> at_third_kib{0};
  std::vector<std::map<int, size_t>> statuses(threads);
  run_concurrently(threads, [&](size_t t) {
    http_client client{server.port(), 15s};
    for (size_t i = t; i < requests; i += threads) {
      std::string pnid = std::to_string(880000000000000ull + i);
      std::string body;
      body.reserve(templ.size() + huge_phone.size() * 2);
      for (size_t k = 0; k < pieces.size(); ++k) {
        body += pieces[k];
        if (k < is_phone.size()) {
          if (is_phone[k])
            body.append(pnid).append(huge_phone);  // a new phone every time
          else
            body += pnid;
        }
      }
      int status = 0;
      try {
        auto response = post_webhook(client, body,
                                     i % 2 == 0 ? std::nullopt
                                                : std::optional<std::string>{"not-the-secret"});
        status = response.status;
      } catch (const std::exception&) {
        client = http_client{server.port(), 15s};
      }
      ++statuses[t][status];
      if (++sent == requests / 3)
        at_third_kib = server.rss_kib();
    }
  });
  // Once every request is answered, the memory they took is given back:
  // RSS stays (or comes back) under the growth bound within 5 s.
  size_t end_kib = 0;
  eventually(
    [&] {
      end_kib = server.rss_kib();
      return end_kib < at_third_kib.load() + growth_bound_kib;
    },
    5s, 100ms);

  std::map<int, size_t> all;
  for (auto& per_thread : statuses)
    for (auto& [status, n] : per_thread)
      all[status] += n;
  std::string answers;
  for (auto& [status, n] : all)
    answers += " " + std::to_string(status) + "=" + std::to_string(n);
  BOOST_TEST_MESSAGE("[fault] wire memory: answers" << answers << "; RSS " << baseline_kib / 1024
                                                    << " MiB before, " << at_third_kib / 1024
                                                    << " MiB after a third, max "
                                                    << rss.max_kib() / 1024 << " MiB, "
                                                    << end_kib / 1024 << " MiB at the end");
  BOOST_TEST(all[401] == requests, "not every unsigned request was answered 401:" << answers);
  BOOST_TEST(rss.max_kib() < rss_bound_kib, "server RSS reached " << rss.max_kib() / 1024
                                                                  << " MiB (bound "
                                                                  << rss_bound_kib / 1024
                                                                  << " MiB)");
  BOOST_TEST(end_kib < at_third_kib.load() + growth_bound_kib,
             "server RSS kept growing: " << at_third_kib / 1024 << " MiB after "
                                         << requests / 3 << " requests, " << end_kib / 1024
                                         << " MiB after " << requests);
  auto took = signed_delivery_works(server.port(), options, "wamid.wire.after", 5s);
  BOOST_TEST(took.has_value(), "a signed delivery got no 200 within 5 s afterwards");
}

BOOST_AUTO_TEST_SUITE_END()
