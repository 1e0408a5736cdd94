// kapso-bench's command line: what to send, how hard, and what to check after.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "benchmarks/process_cpu.hpp"

namespace kapso::bench {

enum class payload_form { single, batch, meta };

const char* to_string(payload_form form);

struct bench_options {
  // target
  std::string url = "http://127.0.0.1:8080/api/webhook/kapso";
  std::string host;         // from url
  uint16_t port = 80;       // from url
  std::string path;         // from url

  // load shape
  size_t connections = 64;
  size_t threads = 1;        // event-loop threads of the harness
  double duration = 10;      // seconds of measurement after warm-up
  bool duration_given = false;
  uint64_t requests = 0;     // 0 = unlimited (duration decides)
  double rate = 0;           // deliveries/s; 0 = closed loop
  double warmup = 0;         // seconds before measurement starts
  uint32_t timeout_ms = 10000; // Kapso gives up after 10 s
  uint32_t max_retries = 5;  // re-sends of a delivery answered non-200
  uint32_t retry_base_ms = 200;
  double drain = 15;         // seconds to finish in-flight work and retries
  // Named phases of the run: the first from the start, each SIGUSR1 moves
  // to the next; answers and latency are reported per phase (a request
  // belongs to the phase it was due or re-sent in).
  std::vector<std::string> phases;

  // payloads
  payload_form form = payload_form::single;
  uint32_t batch_size = 50;
  uint32_t workspaces = 1;
  uint32_t conversations = 1000;
  double zipf = 0;
  double retry_fraction = 0.05;
  std::string secret;        // default: $KAPSO_WEBHOOK_SECRET
  std::string phone_number_id_prefix = "9000000000";
  uint64_t seed = 0;
  bool seed_given = false;
  size_t pool = 0;           // distinct deliveries to pre-build; 0 = estimate
  bool cycle = false;        // send the schedule again when it runs out
  size_t max_pool_mb = 2048; // memory for pre-built deliveries

  // database
  std::string database_url;  // default: $DATABASE_URL
  bool setup = false;
  bool prefill = false;      // with setup: create every conversation before the run
  bool verify = false;
  bool wal = false;          // report the WAL PostgreSQL wrote over the load

  // output
  std::string json_file;
  std::string plot_file;     // SVG of throughput and latency per second
  std::string label;         // the run's name in the plot title and the JSON
  bool quiet = false;        // no progress lines
  std::vector<cpu_target> cpu_targets; // processes whose CPU time to report
};

// Parses argv. Prints usage and returns nullopt for --help; throws
// std::invalid_argument with a one-line message on bad input.
std::optional<bench_options> parse_bench_options(int argc, char** argv);

} // namespace kapso::bench
