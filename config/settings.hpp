// Plain structs holding every tunable of kapso-ingest, filled by config/.
// The initialisers here are the options' defaults (config/options.cpp reads them).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace kapso {

// The router waits this much longer than a workspace look-up's own deadline
// (router.timeout-ms), so that the directory's answer arrives rather than
// racing the router's timer; counted where the timeouts must nest.
inline constexpr std::chrono::milliseconds lookup_answer_margin{500};

struct settings {
  // http
  std::string host = "0.0.0.0";
  uint16_t port = 8080;
  size_t http_threads = 1;               // RESTinio's asio threads
  size_t body_limit = 1024 * 1024;       // bytes; larger -> 413
  size_t max_in_flight = 4096;           // deliveries in the pipeline; more -> 503
  size_t max_in_flight_bytes = 64ull << 20; // body bytes in the pipeline; more -> 503
  size_t max_connections = 1024;         // open client connections
  std::chrono::milliseconds idle_timeout{15000};   // no complete request -> closed
  std::chrono::milliseconds request_timeout{8000}; // HTTP handling, < Kapso's 10 s
  std::chrono::milliseconds shutdown_timeout{9000}; // SIGTERM: answering waiting requests

  // security
  std::vector<std::string> webhook_secrets; // global; several during rotation
  std::string verify_token;                 // GET verification; empty = none
  bool allow_unsigned = false;              // accept when no secret applies

  // router / conversations
  std::chrono::milliseconds workspace_lookup_timeout{1000};     // one workspace look-up
  size_t lookup_rate = 100;                  // look-ups/s of uncached ids, unsigned by a global secret
  std::chrono::milliseconds workspace_cache_ttl{500};
  std::chrono::milliseconds unknown_log_period{60000};
  std::chrono::milliseconds conversation_idle{5000};
  size_t conversation_max = 20000;           // conversations whose recent message ids writers keep

  // persistence
  std::string database_url;
  size_t writers = 2;                        // persistence actors, one connection each
  size_t batch_max = 500;                    // events per transaction
  std::chrono::milliseconds flush_interval{0}; // 0 = when queued writes are drained
  std::chrono::milliseconds statement_timeout{2000};
  std::chrono::milliseconds commit_timeout{3000};
  std::chrono::milliseconds connect_timeout{1000}; // one connection attempt
  bool migrate_on_start = true;
  std::chrono::milliseconds migration_timeout{60000}; // one migration run, lock included

  // spool
  std::string spool_dir = "spool";           // empty = spool disabled
  size_t spool_max_bytes = 1024ull * 1024 * 1024;
  std::chrono::milliseconds spool_replay_interval{1000};
  size_t spool_replay_batch_max = 2000;      // events per replay transaction
  size_t spool_quarantine_after = 5;         // failed attempts, others stored meanwhile

  // phones
  std::string default_region = "US";

  // logging
  std::string log_level = "info";
};

// What `kapso-ingest register-workspace` registers.
struct workspace_registration {
  std::string name = "Demo workspace";
  std::string slug = "demo";
  std::string phone_number_id;
  std::string secret;
};

} // namespace kapso
