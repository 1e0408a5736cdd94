// /metrics as ops read it: bounded and escaped labels, request durations,
// process_* metrics, build info, and Prometheus' own promtool on the result.
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <regex>
#include <sstream>

#include <boost/test/unit_test.hpp>

#include "config/version.hpp"
#include "tests/integration/harness.hpp"

using namespace kapso_test;

namespace {

// Every delivery waits this long for its commit, so its measured duration
// shows whether the clock started when the request arrived.
constexpr int flush_interval_ms = 200;

struct metrics_suite : inbox_fixture, shared_suite<metrics_suite> {
  metrics_suite()
    : inbox_fixture(server_options{
        {"--persistence.flush-interval-ms=" + std::to_string(flush_interval_ms)},
        {},
        "/readyz",
        std::nullopt,
        "metrics"}) {}
};

metrics_suite& suite() { return metrics_suite::current(); }

std::string scrape(http_client& client) {
  auto response = client.get("/metrics");
  BOOST_TEST_REQUIRE(response.status == 200, response.body);
  return response.body;
}

// The lines of `exposition` that are not in the text format 0.0.4: "# HELP
// name text", "# TYPE name type", or "name{label="escaped",...} value".
std::vector<std::string> malformed_lines(const std::string& exposition) {
  static const std::regex comment{R"(# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|untyped)))"};
  static const std::string label_value = R"("([^"\\\n]|\\[\\"n])*")";
  static const std::string label = "[a-zA-Z_][a-zA-Z0-9_]*=" + label_value;
  static const std::regex sample{"[a-zA-Z_:][a-zA-Z0-9_:]*(\\{" + label + "(," + label
                                 + ")*\\})? [-+0-9.eE]+|[a-zA-Z_:][a-zA-Z0-9_:]*(\\{" + label
                                 + "(," + label + ")*\\})? [+-]Inf"};
  std::vector<std::string> bad;
  std::istringstream lines{exposition};
  for (std::string line; std::getline(lines, line);) {
    bool ok = line.size() < 4096
              && std::regex_match(line, line[0] == '#' ? comment : sample);
    if (!ok)
      bad.push_back(line.substr(0, 200));
  }
  return bad;
}

std::string signed_event(const workspace& ws, const std::string& id, const std::string& type) {
  kapso_message m;
  m.id = id;
  m.phone_number_id = ws.phone_number_id;
  auto body = kapso_event(m);
  if (!type.empty())
    body["type"] = type;
  return body.dump();
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(metrics, metrics_suite)

BOOST_AUTO_TEST_CASE(event_types_from_the_wire_are_bounded_and_escaped) {
  auto ws = suite().take_workspace();
  auto client = suite().client();
  auto before = scrape(client);
  // The type comes from the body (no X-Webhook-Event header): quotes, a
  // backslash, newlines and 300 KB of it, then many distinct made-up types.
  std::string weird = "we\"ird\\type\nwith\nnewlines" + std::string(300 * 1024, 'x');
  auto response = post_webhook(client, signed_event(ws, "wamid.weird.0", weird), global_secret, "");
  BOOST_TEST_REQUIRE(response.status == 200, response.body.substr(0, 300));
  BOOST_TEST(counts_of(response).ignored == 1);
  for (int i = 0; i < 50; ++i) {
    auto made_up = "whatsapp.made.up." + std::to_string(i) + "\"}\n";
    auto r = post_webhook(client, signed_event(ws, "wamid.weird." + std::to_string(i + 1), made_up),
                          global_secret, "");
    BOOST_TEST_REQUIRE(r.status == 200, r.body);
  }
  auto inactive = post_webhook(client, signed_event(ws, "wamid.weird.known", ""), global_secret,
                               "whatsapp.conversation.inactive");
  BOOST_TEST_REQUIRE(inactive.status == 200, inactive.body);

  auto after = scrape(client);
  auto delta = [&](const std::vector<std::string>& labels) {
    return metric_sum(after, "kapso_events_total", labels)
           - metric_sum(before, "kapso_events_total", labels);
  };
  BOOST_TEST(delta({"type=\"other\"", "result=\"ignored\""}) == 51.0, after);
  BOOST_TEST(delta({"type=\"whatsapp.conversation.inactive\""}) == 1.0, after);
  BOOST_TEST(after.find("ird") == std::string::npos, "a wire type reached a label");
  BOOST_TEST(after.find("made.up") == std::string::npos, "a wire type reached a label");
  // Small: the 300 KB type and 50 more types added one series (the rest is
  // this test's own request counts and durations).
  BOOST_TEST(after.size() < before.size() + 8192,
             "/metrics grew from " << before.size() << " to " << after.size() << " bytes");
  auto bad = malformed_lines(after);
  BOOST_TEST(bad.empty(), "not in the exposition format: " << (bad.empty() ? "" : bad.front()));
}

BOOST_AUTO_TEST_CASE(request_durations_are_measured_from_arrival) {
  auto ws = suite().take_workspace();
  auto client = suite().client();
  auto before = scrape(client);
  const std::vector<std::string> webhook_ok{"route=\"webhook\"", "code=\"200\""};
  for (int i = 0; i < 3; ++i) {
    auto r = post_webhook(client, signed_event(ws, "wamid.duration." + std::to_string(i), ""));
    BOOST_TEST_REQUIRE(r.status == 200, r.body);
  }
  BOOST_TEST_REQUIRE(client.get("/no/such/path").status == 404);
  auto after = scrape(client);
  auto delta = [&](const std::string& metric, std::vector<std::string> labels) {
    return metric_sum(after, metric, labels) - metric_sum(before, metric, labels);
  };
  auto count = delta("kapso_http_request_duration_seconds_count", webhook_ok);
  BOOST_TEST(count == 3.0, after);
  auto with_le = [&](const std::string& le) {
    auto labels = webhook_ok;
    labels.push_back("le=\"" + le + "\"");
    return delta("kapso_http_request_duration_seconds_bucket", labels);
  };
  BOOST_TEST(with_le("+Inf") == count);
  // Each delivery waited for a commit delayed by the flush interval.
  BOOST_TEST(with_le("0.1") == 0.0, after);
  BOOST_TEST(delta("kapso_http_request_duration_seconds_sum", webhook_ok)
               >= 3 * flush_interval_ms / 1000.0 * 0.9,
             after);
  BOOST_TEST(delta("kapso_http_request_duration_seconds_count",
                   {"route=\"other\"", "code=\"404\""}) == 1.0);
  BOOST_TEST(delta("kapso_http_requests_total", webhook_ok) == 3.0);
}

BOOST_AUTO_TEST_CASE(process_metrics_and_build_info) {
  auto client = suite().client();
  auto text = scrape(client);
  auto version = std::string{kapso::kapso_version};
  BOOST_TEST(text.find("\nkapso_build_info{version=\"" + version + "\"} 1\n") != std::string::npos,
             text);
  BOOST_TEST(metric_sum(text, "process_resident_memory_bytes") > 1e6);
  BOOST_TEST(metric_sum(text, "process_virtual_memory_bytes")
             >= metric_sum(text, "process_resident_memory_bytes"));
  BOOST_TEST(metric_sum(text, "process_cpu_seconds_total") > 0.0);
  auto open_fds = metric_sum(text, "process_open_fds");
  BOOST_TEST(open_fds >= 3.0);
  BOOST_TEST(open_fds <= metric_sum(text, "process_max_fds"));
  auto now = std::chrono::duration<double>(
               std::chrono::system_clock::now().time_since_epoch()).count();
  auto started = metric_sum(text, "process_start_time_seconds");
  // The server started with this suite, minutes ago at most.
  BOOST_TEST(started <= now + 2);
  BOOST_TEST(started >= now - 900);
}

BOOST_AUTO_TEST_SUITE_END()

// Run as its own CTest test (metrics_promtool), not in the integration_tests
// run: it needs Prometheus' promtool (Debian package prometheus).
BOOST_AUTO_TEST_SUITE(metrics_exposition, *boost::unit_test::disabled())

BOOST_AUTO_TEST_CASE(promtool_accepts_metrics_after_traffic) {
  BOOST_TEST_REQUIRE(std::system("command -v promtool >/dev/null 2>&1") == 0,
                     "promtool not found: install the Debian package prometheus "
                     "(scripts/lib.sh lists it)");
  test_database db;
  auto ws = db.insert_workspace();
  server_options options;
  options.name = "promtool";
  server_process server{db.url(), options};
  http_client client{server.port()};
  // Every route and outcome: accepted, duplicate, ignored (unknown type and
  // unknown workspace), 400, 401, 404, 405, batch, readiness.
  BOOST_TEST_REQUIRE(post_webhook(client, signed_event(ws, "wamid.prom.1", "")).status == 200);
  BOOST_TEST_REQUIRE(post_webhook(client, signed_event(ws, "wamid.prom.1", "")).status == 200);
  BOOST_TEST_REQUIRE(post_webhook(client, signed_event(ws, "wamid.prom.2",
                                                       "odd\"type\\\n" + std::string(1000, 'y')),
                                  global_secret, "")
                       .status
                     == 200);
  workspace nowhere{"", "999000999000999", std::nullopt};
  BOOST_TEST_REQUIRE(post_webhook(client, signed_event(nowhere, "wamid.prom.3", "")).status == 200);
  auto batch = kapso_batch({json::parse(signed_event(ws, "wamid.prom.4", "")),
                            json::parse(signed_event(ws, "wamid.prom.5", ""))});
  BOOST_TEST_REQUIRE(post_webhook(client, batch.dump()).status == 200);
  BOOST_TEST_REQUIRE(post_webhook(client, "{not json").status == 400);
  BOOST_TEST_REQUIRE(post_webhook(client, signed_event(ws, "wamid.prom.6", ""),
                                  std::string{"wrong"})
                       .status
                     == 401);
  BOOST_TEST_REQUIRE(client.get("/nowhere").status == 404);
  BOOST_TEST_REQUIRE(client.request("DELETE", "/metrics").status == 405);
  BOOST_TEST_REQUIRE(client.get("/readyz").status == 200);
  BOOST_TEST_REQUIRE(client.get("/healthz").status == 200);
  auto text = scrape(client);

  auto dir = make_temp_dir("promtool");
  {
    std::ofstream out{dir + "/metrics.txt"};
    out << text;
  }
  auto command = "promtool check metrics <" + dir + "/metrics.txt >" + dir + "/promtool.txt 2>&1";
  auto status = std::system(command.c_str());
  std::ifstream report_file{dir + "/promtool.txt"};
  std::string report{std::istreambuf_iterator<char>{report_file},
                     std::istreambuf_iterator<char>{}};
  BOOST_TEST(status == 0, "promtool check metrics:\n" << report << "\n/metrics:\n" << text);
  for (auto name : {"kapso_http_request_duration_seconds_bucket", "process_cpu_seconds_total",
                    "process_resident_memory_bytes", "process_virtual_memory_bytes",
                    "process_open_fds", "process_max_fds", "process_start_time_seconds",
                    "kapso_build_info", "kapso_events_total"})
    BOOST_TEST(text.find(name) != std::string::npos, "no " << name << " in:\n" << text);
}

BOOST_AUTO_TEST_SUITE_END()
