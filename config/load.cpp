// Declares every option with its default and checks the values at start-up.
#include "config/load.hpp"

#include <algorithm>
#include <cstdlib>

#include <caf/config_option_adder.hpp>

#include "config/secrets.hpp"

namespace kapso {

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::string{value} : fallback;
}

// Returns "" when lo <= value <= hi, else the one-line complaint.
std::string check_range(const char* option, int64_t value, int64_t lo, int64_t hi) {
  if (value >= lo && value <= hi)
    return {};
  return "invalid configuration: " + std::string{option} + " = "
         + std::to_string(value) + " (must be between " + std::to_string(lo)
         + " and " + std::to_string(hi) + ")";
}

// CAF 0.17 refuses "--flag=true" for booleans, so flags are read as text.
std::string parse_flag(const char* option, const std::string& text, bool& out) {
  if (text == "true" || text == "1" || text == "yes" || text == "on") {
    out = true;
  } else if (text == "false" || text == "0" || text == "no" || text == "off") {
    out = false;
  } else {
    return "invalid configuration: " + std::string{option} + " = " + text
           + " (must be true or false)";
  }
  return {};
}

} // namespace

ingest_config::ingest_config() {
  // CAF's defaults spin worker threads while they look for work; on a small
  // machine shared with PostgreSQL that spinning costs more than it saves.
  // Both stay tunable (--scheduler.max-threads, --work-stealing.*).
  set("scheduler.max-threads", size_t{1});
  set("work-stealing.aggressive-poll-attempts", size_t{1});
  set("work-stealing.moderate-poll-attempts", size_t{1});
  auto& v = values;
  opt_group{custom_options_, "http"}
    .add(v.host, "host", "address to listen on (default 0.0.0.0)")
    .add(port_, "port", "TCP port (default 8080)")
    .add(http_threads_, "threads", "RESTinio I/O threads (default 1)")
    .add(body_limit_, "body-limit", "largest accepted body in bytes; larger -> 413 (default 1048576)")
    .add(max_in_flight_, "max-in-flight", "deliveries in the pipeline before 503 (default 4096)")
    .add(request_timeout_ms_, "request-timeout-ms", "HTTP handling timeout, < Kapso's 10 s (default 8000)");
  opt_group{custom_options_, "security"}
    .add(secrets_, "secrets", "global webhook secrets, comma-separated (env KAPSO_WEBHOOK_SECRET)")
    .add(v.verify_token, "verify-token", "GET verification token (env KAPSO_VERIFY_TOKEN)")
    .add(allow_unsigned_, "allow-unsigned", "accept requests when no secret applies: true or false (default false)");
  opt_group{custom_options_, "router"}
    .add(actor_timeout_ms_, "timeout-ms", "deadline of one workspace look-up (default 1000)")
    .add(cache_ttl_ms_, "workspace-cache-ttl-ms", "workspace cache entry lifetime; a new workspace works after at most this (default 500)")
    .add(unknown_log_period_ms_, "unknown-log-period-ms", "log an unknown phone_number_id once per period (default 60000)");
  opt_group{custom_options_, "conversation"}
    .add(idle_ms_, "idle-ms", "stop a conversation actor after this idle time (default 5000)")
    .add(conversation_max_, "max", "most live conversation actors (default 20000)");
  opt_group{custom_options_, "persistence"}
    .add(v.database_url, "database-url", "PostgreSQL URL (env DATABASE_URL)")
    .add(writers_, "writers", "persistence actors, one connection each (default 2)")
    .add(batch_max_, "batch-max", "most events per transaction (default 500)")
    .add(flush_interval_ms_, "flush-interval-ms", "wait before committing a batch; 0 = as soon as queued writes are drained (default 0)")
    .add(statement_timeout_ms_, "statement-timeout-ms", "PostgreSQL statement_timeout (default 2000)")
    .add(commit_timeout_ms_, "commit-timeout-ms", "time a batch may take to commit before it is spooled (default 3000)")
    .add(migrate_on_start_, "migrate-on-start", "apply migrations at start-up: true or false (default true)");
  opt_group{custom_options_, "spool"}
    .add(v.spool_dir, "dir", "directory of the outage spool; empty = disabled (default spool)")
    .add(spool_max_bytes_, "max-bytes", "spool size limit; full -> 503 (default 1 GiB)")
    .add(spool_replay_ms_, "replay-interval-ms", "how often a non-empty spool is replayed (default 1000)");
  opt_group{custom_options_, "phone"}
    .add(v.default_region, "default-region", "region for numbers without country code (default US)");
  opt_group{custom_options_, "log"}
    .add(v.log_level, "level", "trace, debug, info, warn, error (default info)");
  opt_group{custom_options_, "workspace"}
    .add(workspace.name, "name", "register-workspace: name")
    .add(workspace.slug, "slug", "register-workspace: slug")
    .add(workspace.phone_number_id, "phone-number-id", "register-workspace: Kapso phone_number_id")
    .add(workspace.secret, "secret", "register-workspace: its own webhook secret (optional)");
}

std::string ingest_config::finish() {
  auto& v = values;
  v.database_url = v.database_url.empty() ? env_or("DATABASE_URL", "") : v.database_url;
  v.webhook_secrets = split_secrets(secrets_.empty() ? env_or("KAPSO_WEBHOOK_SECRET", "") : secrets_);
  v.verify_token = v.verify_token.empty() ? env_or("KAPSO_VERIFY_TOKEN", "") : v.verify_token;
  const std::string complaints[] = {
    parse_flag("security.allow-unsigned", allow_unsigned_, v.allow_unsigned),
    parse_flag("persistence.migrate-on-start", migrate_on_start_, v.migrate_on_start),
    check_range("http.port", port_, 0, 65535),
    check_range("http.threads", http_threads_, 1, 64),
    check_range("http.body-limit", body_limit_, 64, 256ll << 20),
    check_range("http.max-in-flight", max_in_flight_, 1, 1000000),
    check_range("http.request-timeout-ms", request_timeout_ms_, 100, 9500),
    check_range("router.timeout-ms", actor_timeout_ms_, 50, 9000),
    check_range("router.workspace-cache-ttl-ms", cache_ttl_ms_, 0, 1000),
    check_range("router.unknown-log-period-ms", unknown_log_period_ms_, 0, 86400000),
    check_range("conversation.idle-ms", idle_ms_, 10, 86400000),
    check_range("conversation.max", conversation_max_, 0, 10000000),
    check_range("persistence.writers", writers_, 1, 64),
    check_range("persistence.batch-max", batch_max_, 1, 100000),
    check_range("persistence.flush-interval-ms", flush_interval_ms_, 0, 1000),
    check_range("persistence.statement-timeout-ms", statement_timeout_ms_, 10, 60000),
    check_range("persistence.commit-timeout-ms", commit_timeout_ms_, 10, 60000),
    check_range("spool.max-bytes", spool_max_bytes_, 0, 1ll << 50),
    check_range("spool.replay-interval-ms", spool_replay_ms_, 10, 3600000),
  };
  for (const auto& complaint : complaints)
    if (!complaint.empty())
      return complaint;
  // Timeouts must nest so that an inner failure is reported before the
  // outer layer gives up: flush + commit < actor request < HTTP < Kapso.
  // Timeouts nest: a delivery waits for its workspace look-up, then for its
  // batch's commit (or the spool), and is answered before Kapso gives up.
  auto inner = actor_timeout_ms_ + flush_interval_ms_ + commit_timeout_ms_ + 1000;
  if (inner > request_timeout_ms_)
    return "invalid configuration: http.request-timeout-ms = " + std::to_string(request_timeout_ms_)
           + " (must be at least router.timeout-ms + persistence.flush-interval-ms + "
             "persistence.commit-timeout-ms + 1000 = " + std::to_string(inner) + ")";
  static const char* levels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
  if (std::find(std::begin(levels), std::end(levels), v.log_level) == std::end(levels))
    return "invalid configuration: log.level = " + v.log_level
           + " (must be trace, debug, info, warn, error, critical or off)";
  if (v.default_region.size() != 2)
    return "invalid configuration: phone.default-region = " + v.default_region
           + " (must be a two-letter region code such as US)";
  using ms = std::chrono::milliseconds;
  v.port = static_cast<uint16_t>(port_);
  v.http_threads = static_cast<size_t>(http_threads_);
  v.body_limit = static_cast<size_t>(body_limit_);
  v.max_in_flight = static_cast<size_t>(max_in_flight_);
  v.request_timeout = ms{request_timeout_ms_};
  v.actor_timeout = ms{actor_timeout_ms_};
  v.workspace_cache_ttl = ms{cache_ttl_ms_};
  v.unknown_log_period = ms{unknown_log_period_ms_};
  v.conversation_idle = ms{idle_ms_};
  v.conversation_max = static_cast<size_t>(conversation_max_);
  v.writers = static_cast<size_t>(writers_);
  v.batch_max = static_cast<size_t>(batch_max_);
  v.flush_interval = ms{flush_interval_ms_};
  v.statement_timeout = ms{statement_timeout_ms_};
  v.commit_timeout = ms{commit_timeout_ms_};
  v.spool_max_bytes = static_cast<size_t>(spool_max_bytes_);
  v.spool_replay_interval = ms{spool_replay_ms_};
  return {};
}

} // namespace kapso
