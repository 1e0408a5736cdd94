// kapso-bench: load generator and end-to-end checker for kapso-ingest.
#include <chrono>
#include <cstdio>
#include <exception>
#include <fstream>
#include <optional>
#include <random>
#include <stdexcept>
#include <thread>

#include <pqxx/connection>

#include "benchmarks/bench_db.hpp"
#include "benchmarks/bench_options.hpp"
#include "benchmarks/load_driver.hpp"
#include "benchmarks/process_cpu.hpp"
#include "benchmarks/report.hpp"
#include "benchmarks/verify.hpp"
#include "benchmarks/workload.hpp"

using namespace kapso::bench;

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>{std::chrono::steady_clock::now() - start}.count();
}

void run_setup(const bench_options& opts, const workload& wl) {
  pqxx::connection db{opts.database_url};
  auto result = setup_workspaces(db, wl.phone_number_ids);
  std::fprintf(stderr,
               "setup: %zu workspaces ready (%zu new), %zu old messages removed\n",
               result.workspace_ids.size(), result.created, result.wiped_messages);
  if (result.foreign_workspaces > 0)
    std::fprintf(stderr,
                 "setup: warning: %zu other workspaces share the bench phone ids; "
                 "routing and --verify may not be meaningful\n",
                 result.foreign_workspaces);
  if (opts.prefill) {
    auto start = std::chrono::steady_clock::now();
    auto filled = prefill_conversations(db, result.workspace_ids, wl.conversations);
    std::fprintf(stderr, "setup: %zu empty conversations created in %.1f s (--prefill)%s\n",
                 filled.created, seconds_since(start),
                 filled.checkpointed ? "" : "; no CHECKPOINT (not a superuser)");
  }
  // The server may cache "no workspace for this number" for about a second
  // (SPEC: new workspaces work within a second); do not test that window.
  if (result.created > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds{1500});
}

// The insert position right after the load; pg_stat_wal once the backends
// have flushed their last second's counters (PostgreSQL 15 flushes them at
// most once a second, and within a second of going idle).
wal_usage wal_over_load(pqxx::connection_base& db, const wal_counters& before) {
  auto end = read_wal_counters(db);
  std::this_thread::sleep_for(std::chrono::milliseconds{1200});
  auto after = read_wal_counters(db);
  return {before.lsn, end.lsn, end.bytes - before.bytes, after.records - before.records,
          after.full_page_images - before.full_page_images,
          after.checkpoints - before.checkpoints};
}

expected_state expected_from(const bench_options& opts, const workload& wl,
                             const run_result& result) {
  expected_state expected;
  expected.workspaces_were_empty = opts.setup;
  expected.conversations.reserve(wl.conversations);
  for (uint32_t c = 0; c < wl.conversations; ++c)
    expected.conversations.push_back(
      {wl.phone_number_ids[wl.workspace_of(c)], wl.customer_phone(c)});
  for (size_t d = 0; d < wl.deliveries.size(); ++d) {
    auto bits = result.delivery_flags[d];
    if ((bits & delivery_sent) == 0)
      continue;
    auto& dl = wl.deliveries[d];
    for (uint32_t e = dl.first_event; e < dl.first_event + dl.event_count; ++e) {
      expected_message msg;
      msg.kapso_message_id = wl.message_id(e);
      msg.conversation = wl.events[e].conversation;
      msg.timestamp = wl.timestamp(e);
      msg.preview = wl.text(e); // ASCII and shorter than the 100-character cut
      msg.acknowledged = (bits & delivery_acked) != 0;
      expected.messages.push_back(std::move(msg));
    }
  }
  return expected;
}

int run(bench_options opts) {
  if (!opts.seed_given)
    opts.seed = std::random_device{}()
                ^ static_cast<uint64_t>(
                  std::chrono::system_clock::now().time_since_epoch().count());
  if (opts.secret.empty())
    std::fprintf(stderr, "kapso-bench: warning: no --secret or $KAPSO_WEBHOOK_SECRET; "
                         "requests go out unsigned\n");
  if (opts.verify && !opts.setup)
    std::fprintf(stderr, "kapso-bench: warning: --verify without --setup checks only "
                         "lost and duplicated messages\n");

  auto build_start = std::chrono::steady_clock::now();
  auto count = planned_delivery_count(opts);
  auto wl = build_workload(opts, count);
  size_t bytes = 0;
  for (auto& dl : wl.deliveries)
    bytes += dl.request.size();
  std::fprintf(stderr,
               "kapso-bench: seed %llu, run %s: built %zu deliveries (%zu events, %zu "
               "scheduled sends incl. %zu re-sends, %.0f MB) in %.1f s\n",
               static_cast<unsigned long long>(opts.seed), wl.run_tag.c_str(),
               wl.deliveries.size(), wl.events.size(), wl.schedule.size(), wl.resends,
               static_cast<double>(bytes) / (1024.0 * 1024.0), seconds_since(build_start));

  if (opts.setup)
    run_setup(opts, wl);

  // The WAL connection is opened before the load and idle during it.
  std::optional<pqxx::connection> wal_db;
  std::optional<wal_counters> wal_before;
  if (opts.wal) {
    wal_db.emplace(opts.database_url);
    wal_before = read_wal_counters(*wal_db);
  }
  std::vector<std::optional<double>> cpu_before;
  for (auto& target : opts.cpu_targets)
    cpu_before.push_back(process_tree_cpu_seconds(target.pid));
  auto result = run_load(opts, wl);
  if (wal_before)
    result.wal = wal_over_load(*wal_db, *wal_before);
  for (size_t i = 0; i < opts.cpu_targets.size(); ++i) {
    auto& target = opts.cpu_targets[i];
    auto after = process_tree_cpu_seconds(target.pid);
    if (!cpu_before[i] || !after) {
      std::fprintf(stderr, "kapso-bench: warning: cannot read the CPU time of %s (pid %d)\n",
                   target.name.c_str(), target.pid);
      continue;
    }
    result.cpu.push_back({target.name, target.pid, *after - *cpu_before[i]});
  }
  print_summary(stdout, opts, wl, result);
  std::fflush(stdout);

  // Before --verify, which throws when the database is gone: that run is
  // the one to look at.
  if (!opts.plot_file.empty()) {
    std::ofstream out{opts.plot_file};
    out << plot_of(opts, wl, result);
    if (!out)
      throw std::runtime_error("cannot write " + opts.plot_file);
  }

  std::optional<verify_report> verified;
  if (opts.verify) {
    auto expected = expected_from(opts, wl, result);
    pqxx::connection db{opts.database_url};
    verified = verify_database(db, expected);
    std::printf("%s\n", to_string(*verified).c_str());
  }

  if (!opts.json_file.empty()) {
    std::ofstream out{opts.json_file};
    out << to_json(opts, wl, result, verified ? &*verified : nullptr).dump(2) << '\n';
    if (!out)
      throw std::runtime_error("cannot write " + opts.json_file);
  }

  if (verified && !verified->ok())
    return 1;
  if (result.unique_acked == 0) {
    std::fprintf(stderr, "kapso-bench: no delivery was acknowledged\n");
    return 1;
  }
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  std::optional<bench_options> opts;
  try {
    opts = parse_bench_options(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kapso-bench: %s\n", e.what());
    return 2;
  }
  if (!opts)
    return 0;
  try {
    return run(std::move(*opts));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kapso-bench: %s\n", e.what());
    return 1;
  }
}
