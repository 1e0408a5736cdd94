// Drives the server with pre-built deliveries over keep-alive connections.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "benchmarks/bench_options.hpp"
#include "benchmarks/histogram.hpp"
#include "benchmarks/workload.hpp"

namespace kapso::bench {

// Per-delivery bits in run_result::delivery_flags.
enum delivery_flag : uint8_t {
  delivery_sent = 1,  // written to a connection at least once
  delivery_acked = 2, // answered 200 at least once
};

// One second of the run, by when answers completed: what --plot draws.
struct second_sample {
  double start = 0;         // seconds since the run started
  double length = 1;        // shorter for the last second, cut where the run ended
  uint64_t deliveries = 0;  // answered 200
  uint64_t events = 0;      // in those deliveries
  uint64_t failures = 0;    // non-200 answers, timeouts, I/O errors
  uint64_t p50_us = 0;      // of the 200 answers; 0 when there were none
  uint64_t p99_us = 0;
};

// One of --phases: the requests sent in it (by due time for the first send
// of an open-loop delivery, else by send time) and what they were answered.
struct phase_result {
  std::string name;
  double start = 0;      // seconds since the run started
  double seconds = 0;    // until the next phase began, or the run ended
  uint64_t attempts = 0;
  std::map<int, uint64_t> statuses;
  uint64_t timeouts = 0;
  uint64_t io_errors = 0;         // I/O and connect errors of requests under way
  uint64_t acked_deliveries = 0;  // answers 200
  uint64_t acked_events = 0;
  latency_histogram latency;      // of the answers 200
};

// What the PostgreSQL server wrote to its WAL over the load (--wal).
struct wal_usage {
  std::string from, to;         // insert positions (LSNs) before and after
  int64_t bytes = 0;            // their difference: exact
  int64_t records = 0;          // pg_stat_wal: flushed by backends about once a second
  int64_t full_page_images = 0;
  int64_t checkpoints = 0;      // timed and requested, begun during the load
};

struct run_result {
  // The measurement window: [warm-up end, duration end or last answer].
  double window_start = 0; // seconds since the run started
  double window_seconds = 0;
  uint64_t window_acked_deliveries = 0;
  uint64_t window_acked_events = 0;
  latency_histogram latency; // 200 answers that completed in the window

  std::map<int, uint64_t> statuses; // every HTTP answer of the run
  uint64_t attempts = 0;            // requests written, all kinds
  uint64_t first_sends = 0;         // schedule entries sent (incl. re-sends)
  uint64_t resends = 0;             // of which byte-for-byte re-sends
  uint64_t error_retries = 0;       // sends after a non-200, timeout or I/O error
  uint64_t timeouts = 0;
  uint64_t io_errors = 0;           // connection reset/closed mid-request, bad answer
  std::vector<std::string> io_error_examples; // the first few, with their cause
  uint64_t connect_errors = 0;
  uint64_t abandoned = 0;           // still in flight or waiting when the drain ended
  std::string stop_reason;          // duration | requests | pool exhausted
  double elapsed_seconds = 0;
  std::vector<second_sample> seconds; // the whole run: warm-up, window, drain
  std::vector<cpu_usage> cpu;          // --cpu-pid, filled in by the caller
  std::vector<phase_result> phases;    // --phases
  std::optional<wal_usage> wal;        // --wal, filled in by the caller

  std::vector<uint8_t> delivery_flags; // delivery_flag bits, per pool delivery
  uint64_t unique_sent = 0;
  uint64_t unique_acked = 0;
  uint64_t never_acked = 0;          // sent, but no attempt was answered 200
  uint64_t never_acked_events = 0;
  uint64_t acked_events = 0;
};

// Runs the load until duration, request count or pool runs out, then lets
// in-flight requests and retries finish (bounded by --drain). Throws on
// setup errors such as an unresolvable host.
run_result run_load(const bench_options& opts, const workload& wl);

} // namespace kapso::bench
