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
  // Raw option storage bound to CAF's parser; converted by finish(). The
  // defaults are settings{}'s, so they are written in one place.
  static inline const settings defaults_{};
  std::string secrets_;
  std::string allow_unsigned_ = defaults_.allow_unsigned ? "true" : "false";
  std::string migrate_on_start_ = defaults_.migrate_on_start ? "true" : "false";
  int64_t port_ = defaults_.port;
  int64_t http_threads_ = static_cast<int64_t>(defaults_.http_threads);
  int64_t body_limit_ = static_cast<int64_t>(defaults_.body_limit);
  int64_t max_in_flight_ = static_cast<int64_t>(defaults_.max_in_flight);
  int64_t request_timeout_ms_ = defaults_.request_timeout.count();
  int64_t actor_timeout_ms_ = defaults_.actor_timeout.count();
  int64_t cache_ttl_ms_ = defaults_.workspace_cache_ttl.count();
  int64_t unknown_log_period_ms_ = defaults_.unknown_log_period.count();
  int64_t idle_ms_ = defaults_.conversation_idle.count();
  int64_t conversation_max_ = static_cast<int64_t>(defaults_.conversation_max);
  int64_t writers_ = static_cast<int64_t>(defaults_.writers);
  int64_t batch_max_ = static_cast<int64_t>(defaults_.batch_max);
  int64_t flush_interval_ms_ = defaults_.flush_interval.count();
  int64_t statement_timeout_ms_ = defaults_.statement_timeout.count();
  int64_t commit_timeout_ms_ = defaults_.commit_timeout.count();
  int64_t spool_max_bytes_ = static_cast<int64_t>(defaults_.spool_max_bytes);
  int64_t spool_replay_ms_ = defaults_.spool_replay_interval.count();
};

} // namespace kapso
