// What every fault case shares: databases on the private cluster, server options, RSS and metrics probes.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tests/fault/checker.hpp"
#include "tests/fault/load.hpp"
#include "tests/fault/pg_cluster.hpp"
#include "tests/integration/harness.hpp"

namespace kapso_fault {

// A migrated database on the run's private cluster (migrations as the
// superuser). grant_app_role() lets `kapso_app` read and write every table,
// for servers that connect as that non-superuser role (app_url()).
class fault_database : public kapso_test::test_database {
 public:
  fault_database();
  void grant_app_role() const;
  std::string app_url() const;
  // The INSERT/UPDATE privileges of kapso_app on the inbox tables.
  void set_app_writes(bool allowed) const;
  std::vector<kapso_test::workspace> workspaces(size_t n) const;
};

// The options every fault case's server gets, plus `extra`: deadlines short
// enough that a fault shows within seconds (commit 1 s, connect 0.5 s,
// workspace look-up 1 s, HTTP 8 s) and a quick spool replay.
//
// Options the server does not know yet make it refuse to start: that is the
// intended failure. To see how today's binary behaves past that, set
// KAPSO_FAULT_DROP_OPTIONS to a comma-separated list of option names to
// leave out, "unknown" meaning every option `kapso-ingest --long-help` does
// not list (e.g. KAPSO_FAULT_DROP_OPTIONS=unknown,router.timeout-ms).
kapso_test::server_options fault_server(const std::string& name,
                                        std::vector<std::string> extra = {});
// `args` without the options KAPSO_FAULT_DROP_OPTIONS names (see above).
std::vector<std::string> filter_options(std::vector<std::string> args);

inline constexpr auto commit_timeout = std::chrono::milliseconds{1000};

// GET /metrics of a server ("" when it does not answer).
std::string metrics_of(uint16_t port);

// Samples the RSS of a process every 20 ms from a thread; max and last in KiB.
class rss_sampler {
 public:
  explicit rss_sampler(int pid);
  ~rss_sampler();
  rss_sampler(const rss_sampler&) = delete;
  rss_sampler& operator=(const rss_sampler&) = delete;
  size_t max_kib() const { return max_.load(); }
  size_t last_kib() const { return last_.load(); }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<size_t> max_{0};
  std::atomic<size_t> last_{0};
  std::thread thread_;
};

// Regular files in `dir` whose name ends in ".spool", and their total size.
std::vector<std::string> spool_files(const std::string& dir);
uint64_t spool_bytes(const std::string& dir);

// One delivery per workspace, each re-sent until answered 200 (at most
// `timeout`), so the server knows every workspace before a fault; they
// belong to the expected store like any other delivery.
std::vector<delivery> warm_up(uint16_t port, const load_options& options,
                              std::chrono::milliseconds timeout = 15s);

// Before a fault: every workspace warmed up (into `expected`), then `load`
// started and `acknowledged` of its deliveries answered 200 (within 10 s),
// so the fault meets a server that is storing.
void start_after_warm_up(load_driver& load, expected_store& expected, uint16_t port,
                         const load_options& options, size_t acknowledged = 20);

// The requests of `deliveries` sent in [from, until] that were not answered
// 200 within `limit` (a few as examples), and what their 200s took.
struct slow_or_failed {
  size_t count = 0;
  size_t requests = 0;
  size_t messages = 0;                       // in the requests
  std::vector<std::string> examples;
  std::chrono::milliseconds p99_200{0};      // of the answers 200
  std::string describe() const;              // the examples, one per line
};
slow_or_failed answered_200_within(const std::vector<delivery>& deliveries,
                                   std::chrono::milliseconds limit,
                                   clock_type::time_point from = {},
                                   clock_type::time_point until = clock_type::time_point::max());

// Every answer of a load was one a correct server may give: no 200 that
// says "ignored" (every event sent is valid and of a known workspace), the
// counts of a 200 add up, and every 503 carries Retry-After.
void check_answers(const load_summary& summary);

// Waits (bounded) until the store holds what it must, then checks it
// exactly (see check_store) and reports the result as a test assertion.
void check_stored(const kapso_test::test_database& db, const expected_store& expected,
                  bool require_all, std::chrono::milliseconds timeout = 30s);

// One sample of a metric of a running server (0 when it does not answer).
double metric_of(uint16_t port, const std::string& name,
                 const std::vector<std::string>& labels = {});

// The load the database faults run: 240 conversations over `workspaces`,
// 6 threads, 20 ms between two requests of a thread.
load_options database_load(const std::string& tag,
                           const std::vector<kapso_test::workspace>& workspaces);

// A load runs while PostgreSQL refuses writes for a reason of its own (not
// the event's data); then writes work again. The fault is held until the
// server has met it (commit failures counted, and 20 events spooled or 20
// deliveries answered 503). During the fault, every 200 must be backed by
// its row or by the spool, and no 200 may say "ignored"; afterwards (Kapso
// re-sending what was not answered 200) every message is stored exactly once.
// `readable_during_fault` false: the fault hides the tables from the checker
// too (a table or column renamed away), so only the end is checked (a 200
// with neither a row nor a spool record shows there as missing: Kapso does
// not re-send what was answered 200).
// An outage is never a poison event: nothing went to the quarantine.
void check_nothing_quarantined(const kapso_test::server_process& server);

void refused_writes(const std::string& tag, const fault_database& db,
                    kapso_test::server_process& server,
                    const std::vector<kapso_test::workspace>& workspaces,
                    const std::function<void()>& break_writes,
                    const std::function<void()>& repair_writes,
                    bool readable_during_fault = true);

// A load runs through an outage (the database frozen or stopped) of at
// least `outage`, held until the server spooled 20 events during it: every
// request is answered 200 within the commit timeout + 2 s (spooled); after
// the database is back everything is stored exactly once.
void outage_under_load(const std::string& tag, const fault_database& db,
                       kapso_test::server_process& server,
                       const std::vector<kapso_test::workspace>& workspaces,
                       std::chrono::milliseconds outage, const std::function<void()>& begin,
                       const std::function<void()>& end);

// True once a session of `db` (other than the asking one) waits for a lock,
// within `timeout`: a write of the server is held by the test's lock.
bool wait_for_lock_waiter(const kapso_test::test_database& db,
                          std::chrono::milliseconds timeout);

// Messages of `deliveries` never answered 200 whose every attempt was
// refused before the pipeline: 401 (signature) or 503 "server busy" (over
// http.max-in-flight or http.max-in-flight-bytes). (workspace id, message id)
std::vector<std::pair<std::string, std::string>> refused_messages(
  const std::vector<delivery>& deliveries, const load_options& options);

// Asserts that none of `refused` has a row in messages: a refused delivery
// writes nothing, now or later.
void check_refused_not_stored(const kapso_test::test_database& db,
                              const std::vector<std::pair<std::string, std::string>>& refused);

// Runs `undo` when the scope ends, failed or not (a fault must not outlive
// its case).
struct undo_on_exit {
  std::function<void()> undo;
  undo_on_exit(const undo_on_exit&) = delete;
  undo_on_exit& operator=(const undo_on_exit&) = delete;
  ~undo_on_exit();
};

// Milliseconds since `t`.
inline long long ms_since(clock_type::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - t).count();
}

} // namespace kapso_fault
