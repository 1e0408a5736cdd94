// What every fault case shares: databases on the private cluster, server options, RSS and metrics probes.
#include "tests/fault/fault_support.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>

namespace kapso_fault {

namespace fs = std::filesystem;
using namespace kapso_test;

namespace {

const char* const inbox_tables = "contacts, conversations, messages, kapso_pending_statuses";

// Option names `kapso-ingest --long-help` lists ("http.port", ...).
const std::set<std::string>& known_options() {
  static std::once_flag once;
  static std::set<std::string> names;
  std::call_once(once, [] {
    auto help = run_cli({"--long-help"}, {}, 30s);
    std::regex option{R"(--([a-z0-9-]+\.[a-z0-9.-]+)=)"};
    for (std::sregex_iterator i{help.output.begin(), help.output.end(), option}, end; i != end;
         ++i)
      names.insert((*i)[1]);
  });
  return names;
}

std::string option_name(const std::string& arg) {
  auto start = arg.compare(0, 2, "--") == 0 ? 2 : 0;
  auto eq = arg.find('=');
  return arg.substr(start, eq == std::string::npos ? std::string::npos : eq - start);
}

} // namespace

namespace {

// Heals the cluster before the database is created on it.
std::string healed_admin_url() {
  auto& cluster = pg_cluster::shared();
  cluster.heal();
  return cluster.admin_url();
}

} // namespace

fault_database::fault_database() : test_database(true, healed_admin_url()) {}

void fault_database::grant_app_role() const {
  exec_script("GRANT USAGE ON SCHEMA public TO kapso_app;"
              "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO kapso_app;"
              "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO kapso_app;");
}

std::string fault_database::app_url() const {
  return pg_cluster::shared().url_as("kapso_app", name());
}

void fault_database::set_app_writes(bool allowed) const {
  exec_script(std::string{allowed ? "GRANT" : "REVOKE"} + " INSERT, UPDATE ON " + inbox_tables
              + (allowed ? " TO" : " FROM") + " kapso_app");
}

std::vector<workspace> fault_database::workspaces(size_t n) const {
  std::vector<workspace> result;
  for (size_t i = 0; i < n; ++i)
    result.push_back(insert_workspace());
  return result;
}

std::vector<std::string> filter_options(std::vector<std::string> args) {
  auto env = std::getenv("KAPSO_FAULT_DROP_OPTIONS");
  if (env == nullptr || *env == '\0')
    return args;
  std::set<std::string> drop;
  bool unknown = false;
  std::istringstream list{env};
  for (std::string name; std::getline(list, name, ',');) {
    if (name == "unknown")
      unknown = true;
    else if (!name.empty())
      drop.insert(name);
  }
  std::vector<std::string> kept;
  for (auto& arg : args) {
    auto name = option_name(arg);
    if (drop.count(name) != 0 || (unknown && known_options().count(name) == 0)) {
      std::cerr << "[fault] KAPSO_FAULT_DROP_OPTIONS: leaving out " << arg << "\n";
      continue;
    }
    kept.push_back(arg);
  }
  return kept;
}

server_options fault_server(const std::string& name, std::vector<std::string> extra) {
  std::vector<std::string> args{"--persistence.commit-timeout-ms=1000",
                                "--persistence.connect-timeout-ms=500",
                                "--router.timeout-ms=1000",
                                "--http.request-timeout-ms=8000",
                                "--spool.replay-interval-ms=500"};
  // A later option overrides an earlier one of the same name.
  for (auto& arg : extra) {
    auto name_of_extra = option_name(arg);
    args.erase(std::remove_if(args.begin(), args.end(),
                              [&](const std::string& a) {
                                return option_name(a) == name_of_extra;
                              }),
               args.end());
    args.push_back(arg);
  }
  server_options options;
  options.args = filter_options(std::move(args));
  options.name = "fault-" + name;
  return options;
}

void start_after_warm_up(load_driver& load, expected_store& expected, uint16_t port,
                         const load_options& options, size_t acknowledged) {
  expected.add(warm_up(port, options), options);
  load.start();
  BOOST_TEST_REQUIRE(load.wait_acknowledged(acknowledged, 10s),
                     "the load got no 200s before the fault");
}

slow_or_failed answered_200_within(const std::vector<delivery>& deliveries,
                                   std::chrono::milliseconds limit, clock_type::time_point from,
                                   clock_type::time_point until) {
  slow_or_failed result;
  std::vector<std::chrono::milliseconds> latencies;
  for (const auto& d : deliveries)
    for (const auto& a : d.attempts) {
      if (a.sent < from || a.sent > until)
        continue;
      ++result.requests;
      result.messages += d.messages.size();
      if (a.status == 200)
        latencies.push_back(a.latency);
      if (a.status == 200 && a.latency <= limit)
        continue;
      ++result.count;
      if (result.examples.size() < 5)
        result.examples.push_back(d.messages.front().id + ": " + std::to_string(a.status)
                                  + " after " + std::to_string(a.latency.count()) + " ms "
                                  + a.detail.substr(0, 120));
    }
  if (!latencies.empty()) {
    auto rank = (latencies.size() * 99 + 99) / 100 - 1;
    std::nth_element(latencies.begin(), latencies.begin() + static_cast<ptrdiff_t>(rank),
                     latencies.end());
    result.p99_200 = latencies[rank];
  }
  return result;
}

std::string metrics_of(uint16_t port) {
  try {
    http_client client{port, 5s};
    auto response = client.get("/metrics");
    return response.status == 200 ? response.body : std::string{};
  } catch (const std::exception&) {
    return {};
  }
}

rss_sampler::rss_sampler(int pid) {
  thread_ = std::thread{[this, pid] {
    while (!stop_.load()) {
      auto now = rss_kib(pid);
      if (now > 0) {
        last_ = now;
        if (now > max_.load())
          max_ = now;
      }
      std::this_thread::sleep_for(20ms);
    }
  }};
}

rss_sampler::~rss_sampler() {
  stop_ = true;
  thread_.join();
}

std::vector<delivery> warm_up(uint16_t port, const load_options& options,
                              std::chrono::milliseconds timeout) {
  std::vector<delivery> warm;
  auto deadline = clock_type::now() + timeout;
  http_client client{port, 10s};
  for (size_t w = 0; w < options.workspaces.size(); ++w) {
    delivery d;
    d.workspace = w;
    // Conversation w belongs to workspace w.
    d.messages.push_back(message_ref{"wamid." + options.tag + ".warm." + std::to_string(w), w,
                                     1729999000 + static_cast<int64_t>(w)});
    for (;;) {
      send_once(client, d, options);
      if (d.attempts.back().status == 200)
        break;
      if (clock_type::now() >= deadline)
        throw std::runtime_error("warm-up delivery to workspace " + std::to_string(w)
                                 + " not answered 200 within "
                                 + std::to_string(timeout.count()) + " ms; last answer "
                                 + std::to_string(d.attempts.back().status) + " "
                                 + d.attempts.back().detail);
      if (d.attempts.back().error)
        client = http_client{port, 10s};
      std::this_thread::sleep_for(200ms);
    }
    warm.push_back(std::move(d));
  }
  return warm;
}

void check_answers(const load_summary& summary) {
  BOOST_TEST(summary.ignored_in_200 == 0u,
             summary.ignored_in_200 << " answers 200 said an event was ignored although every "
                                       "event sent was valid: " << summary.describe());
  BOOST_TEST(summary.wrong_counts_in_200 == 0u,
             summary.wrong_counts_in_200 << " answers 200 whose accepted + duplicates + ignored "
                                            "is not the number of events: " << summary.describe());
  BOOST_TEST(summary.status_503_without_retry_after == 0u,
             summary.status_503_without_retry_after << " answers 503 without Retry-After: "
                                                    << summary.describe());
  for (auto& [status, n] : summary.by_status)
    BOOST_TEST((status == 0 || status == 200 || status == 503),
               n << " answers " << status << " (expected only 200 or 503): "
                 << summary.describe());
}

void check_stored(const test_database& db, const expected_store& expected, bool require_all,
                  std::chrono::milliseconds timeout) {
  auto report = wait_until_stored(db.url(), expected, require_all, timeout);
  BOOST_TEST(report.ok(), "the inbox does not hold exactly what was "
                            << (require_all ? "sent" : "answered 200") << ": "
                            << report.describe());
  BOOST_TEST_MESSAGE("[fault] store: " << report.describe());
}

double metric_of(uint16_t port, const std::string& name, const std::vector<std::string>& labels) {
  return metric_sum(metrics_of(port), name, labels);
}

load_options database_load(const std::string& tag, const std::vector<workspace>& workspaces) {
  load_options o;
  o.tag = tag;
  o.workspaces = workspaces;
  o.conversations = 240;
  o.threads = 6;
  o.pause = 20ms;
  return o;
}

std::string slow_or_failed::describe() const {
  std::string out;
  for (auto& e : examples)
    out += "\n    " + e;
  return out;
}

void check_nothing_quarantined(const server_process& server) {
  auto metrics = metrics_of(server.port());
  BOOST_TEST(metrics.find("kapso_quarantined_events_total") != std::string::npos,
             "no kapso_quarantined_events_total in /metrics");
  BOOST_TEST(metric_sum(metrics, "kapso_quarantined_events_total") == 0.0);
}

void refused_writes(const std::string& tag, const fault_database& db, server_process& server,
                    const std::vector<workspace>& workspaces,
                    const std::function<void()>& break_writes,
                    const std::function<void()>& repair_writes, bool readable_during_fault) {
  auto options = database_load(tag, workspaces);
  expected_store expected;
  load_driver load{server.port(), options};
  start_after_warm_up(load, expected, server.port(), options);
  auto spooled_before = metric_of(server.port(), "kapso_spooled_events_total");
  auto failures_before = metric_of(server.port(), "kapso_commit_failures_total");
  auto refused_before = metric_of(server.port(), "kapso_http_requests_total", {"code=\"503\""});
  break_writes();
  // Held until the server met the fault: commits failed, and batches went
  // to the spool (or, without one, were answered 503).
  auto met = eventually(
    [&] {
      auto metrics = metrics_of(server.port());
      return metric_sum(metrics, "kapso_commit_failures_total") > failures_before
             && (metric_sum(metrics, "kapso_spooled_events_total") >= spooled_before + 20
                 || metric_sum(metrics, "kapso_http_requests_total", {"code=\"503\""})
                      >= refused_before + 20);
    },
    20s, 100ms);
  load.stop();
  BOOST_TEST(met, "within 20 s of the fault the server neither counted a failed commit nor "
                  "spooled (or answered 503 to) 20 deliveries: the fault did not bite");

  // Still broken: whatever was answered 200 and has no row must be spooled.
  if (readable_during_fault) {
    expected_store so_far = expected;
    so_far.add(load.deliveries(), options);
    auto report = check_store(db.url(), so_far, false);
    auto spooled = metric_of(server.port(), "kapso_spooled_events_total") - spooled_before;
    BOOST_TEST(static_cast<double>(report.missing) <= spooled,
               report.missing << " messages answered 200 during the fault have no row, and the "
                                 "spool took only " << spooled << " events (kapso_spooled_events_total): "
                              << report.describe() << "\n  answers: "
                              << summarize(load.deliveries()).describe());
  }

  repair_writes();
  auto acknowledged = load.acknowledged();
  load.start();
  BOOST_TEST(load.wait_acknowledged(acknowledged + 40, 15s),
             "fewer than 40 new 200s within 15 s of the database accepting writes again");
  load.stop();

  auto summary = summarize(load.deliveries());
  BOOST_TEST_MESSAGE("[fault] " << tag << ": " << summary.describe());
  check_answers(summary);
  auto left = resend_unacknowledged(load.deliveries(), options, server.port(), 60s);
  BOOST_TEST(left == 0u, left << " deliveries still not answered 200 after 60 s of re-sending");
  expected.add(load.deliveries(), options);
  check_stored(db, expected, true);
  check_nothing_quarantined(server);
}

void outage_under_load(const std::string& tag, const fault_database& db, server_process& server,
                       const std::vector<workspace>& workspaces, std::chrono::milliseconds outage,
                       const std::function<void()>& begin, const std::function<void()>& end) {
  auto options = database_load(tag, workspaces);
  // Many clients: while the database does not answer, each waits up to the
  // commit timeout, and the outage should still meet many conversations.
  options.threads = 16;
  options.pause = 150ms;
  expected_store expected;
  load_driver load{server.port(), options};
  start_after_warm_up(load, expected, server.port(), options);
  auto spooled_before = metric_of(server.port(), "kapso_spooled_events_total");
  auto began = clock_type::now();
  begin();
  // The outage lasts `outage`, and until the load has met it.
  auto met = eventually(
    [&] {
      return clock_type::now() - began >= outage
             && metric_of(server.port(), "kapso_spooled_events_total") >= spooled_before + 20;
    },
    outage + 30s, 100ms);
  end();
  auto ended = clock_type::now();
  BOOST_TEST(met, "the server spooled fewer than 20 events during the outage");
  auto acknowledged = load.acknowledged();
  BOOST_TEST(load.wait_acknowledged(acknowledged + 40, 15s),
             "fewer than 40 new 200s within 15 s of the database coming back");
  load.stop();

  auto summary = summarize(load.deliveries());
  BOOST_TEST_MESSAGE("[fault] " << tag << ": " << summary.describe());
  check_answers(summary);
  auto limit = commit_timeout + 2s;
  auto during = answered_200_within(load.deliveries(), limit, began, ended);
  BOOST_TEST(during.requests > 0u, "no request was sent during the outage");
  BOOST_TEST(during.count == 0u,
             during.count << " of " << during.requests << " requests sent during the "
                          << ms_since(began) << " ms outage were not answered 200 within "
                          << limit.count() << " ms:" << during.describe());
  auto all = answered_200_within(load.deliveries(), limit);
  BOOST_TEST(all.count == 0u, all.count << " of " << all.requests
                                        << " requests in all were not answered 200 within "
                                        << limit.count() << " ms:" << all.describe());

  auto left = resend_unacknowledged(load.deliveries(), options, server.port(), 60s);
  BOOST_TEST(left == 0u, left << " deliveries still not answered 200 after 60 s of re-sending");
  expected.add(load.deliveries(), options);
  check_stored(db, expected, true, 60s);
  check_nothing_quarantined(server);
}

bool wait_for_lock_waiter(const test_database& db, std::chrono::milliseconds timeout) {
  return eventually(
    [&] {
      return db.count("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                      "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
             > 0;
    },
    timeout, 20ms);
}

std::vector<std::pair<std::string, std::string>> refused_messages(
  const std::vector<delivery>& deliveries, const load_options& options) {
  std::vector<std::pair<std::string, std::string>> refused;
  for (const auto& d : deliveries) {
    if (d.acknowledged() || d.attempts.empty())
      continue;
    bool at_the_door = std::all_of(d.attempts.begin(), d.attempts.end(), [](const attempt& a) {
      return a.status == 401
             || (a.status == 503 && a.detail.find("server busy") != std::string::npos);
    });
    if (!at_the_door)
      continue;
    for (const auto& m : d.messages)
      refused.emplace_back(options.workspaces.at(d.workspace).id, m.id);
  }
  return refused;
}

void check_refused_not_stored(const test_database& db,
                              const std::vector<std::pair<std::string, std::string>>& refused) {
  std::string ids = "{";
  std::string workspaces = "{";
  for (const auto& [ws, id] : refused) {
    ids += (ids.size() > 1 ? "," : "") + id;
    workspaces += (workspaces.size() > 1 ? "," : "") + ws;
  }
  ids += "}";
  workspaces += "}";
  auto stored = db.query(
    "SELECT m.kapso_message_id FROM messages m "
    "JOIN unnest($1::uuid[], $2::text[]) AS r(workspace_id, id) "
    "  ON m.workspace_id = r.workspace_id AND m.kapso_message_id = r.id LIMIT 5",
    workspaces, ids);
  std::string examples;
  for (const auto& row : stored)
    examples += std::string{" "} + row[0].c_str();
  BOOST_TEST(stored.empty(), "messages of deliveries refused with 401 or 503 \"server busy\" "
                             "(and never answered 200) were stored:" << examples);
  BOOST_TEST_MESSAGE("[fault] " << refused.size() << " refused messages, none stored");
}

undo_on_exit::~undo_on_exit() {
  try {
    undo();
  } catch (const std::exception& e) {
    std::cerr << "[fault] could not undo a fault: " << e.what() << "\n";
  }
}

std::vector<std::string> spool_files(const std::string& dir) {
  std::vector<std::string> result;
  std::error_code error;
  for (auto& entry : fs::directory_iterator{dir, error})
    if (entry.is_regular_file() && entry.path().extension() == ".spool")
      result.push_back(entry.path().string());
  std::sort(result.begin(), result.end());
  return result;
}

uint64_t spool_bytes(const std::string& dir) {
  uint64_t total = 0;
  for (auto& file : spool_files(dir))
    total += fs::file_size(file);
  return total;
}

} // namespace kapso_fault
