// CAF config file + command line + environment -> one validated settings.
#pragma once

#include <string>

#include <caf/actor_system_config.hpp>

#include "config/settings.hpp"

namespace kapso {

// What `kapso-ingest register-workspace` registers.
struct workspace_registration {
  std::string name = "Demo workspace";
  std::string slug = "demo";
  std::string phone_number_id;
  std::string secret;
};

// The actor system's config with every kapso option in its section
// (http, security, router, conversation, persistence, spool, phone, log,
// workspace). Options live in caf-application.ini or on the command line as
// --section.name=value.
class ingest_config : public caf::actor_system_config {
public:
  ingest_config();

  // After parse(): reads the environment, converts and checks every value.
  // Returns "" or a one-line message naming the offending option.
  std::string finish();

  settings values;
  workspace_registration workspace;

private:
  // Raw option storage bound to CAF's parser; converted by finish().
  std::string secrets_;
  std::string allow_unsigned_ = "false";
  std::string migrate_on_start_ = "true";
  int64_t port_ = 8080;
  int64_t http_threads_ = 1;
  int64_t body_limit_ = 1024 * 1024;
  int64_t max_in_flight_ = 4096;
  int64_t request_timeout_ms_ = 8000;
  int64_t actor_timeout_ms_ = 6000;
  int64_t cache_ttl_ms_ = 500;
  int64_t unknown_log_period_ms_ = 60000;
  int64_t idle_ms_ = 5000;
  int64_t conversation_max_ = 20000;
  int64_t writers_ = 2;
  int64_t batch_max_ = 500;
  int64_t flush_interval_ms_ = 0;
  int64_t statement_timeout_ms_ = 2000;
  int64_t commit_timeout_ms_ = 3000;
  int64_t spool_max_bytes_ = 1024ll * 1024 * 1024;
  int64_t spool_replay_ms_ = 1000;
};

} // namespace kapso
