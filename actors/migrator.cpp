// Migrations off the start-up path: attempts with deadlines, a back-off
// between them, and one message to the pipeline when the schema is ready.
#include "actors/migrator.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "persistence/migrations.hpp"

namespace kapso {

namespace {

using migrator_self = migrator_actor::stateful_pointer<migrator_state>;

// From the first retry's wait to the longest: the schema is ready within
// this much of PostgreSQL answering again.
constexpr auto first_backoff = std::chrono::milliseconds(250);
constexpr auto max_backoff = std::chrono::milliseconds(4000);
// The same failure is logged again after this long, so an outage that
// lasts stays visible without a line per attempt.
constexpr auto repeat_log_after = std::chrono::minutes(1);

void report_failure(migrator_state& st, const std::exception& e) {
  auto now = std::chrono::steady_clock::now();
  if (e.what() == st.last_failure && now - st.last_logged < repeat_log_after) {
    spdlog::debug("migrations not applied (attempt {}): {}", st.attempts, e.what());
    return;
  }
  st.last_failure = e.what();
  st.last_logged = now;
  spdlog::warn("migrations not applied yet (attempt {}, retried every {} ms at most; /readyz "
               "503 and deliveries spooled until then): {}",
               st.attempts, max_backoff.count(), e.what());
}

void attempt(migrator_self self) {
  auto& st = self->state;
  ++st.attempts;
  try {
    auto report = migrate_database(st.cfg.database_url, st.cfg.connect_timeout,
                                   st.cfg.migration_timeout, st.normalise);
    for (const auto& name : report.applied)
      spdlog::info("applied migration {}", name);
    if (report.repair)
      spdlog::info("route data repaired: {}", describe(*report.repair));
    if (st.attempts > 1 || !report.applied.empty())
      spdlog::info("schema current (attempt {}): writing into PostgreSQL", st.attempts);
    for (const auto& writer : st.writers)
      self->send(writer, schema_atom::value);
    self->send(st.directory, schema_atom::value);
    self->quit();
  } catch (const std::exception& e) {
    report_failure(st, e);
    st.backoff = std::min<std::chrono::milliseconds>(
      st.backoff.count() == 0 ? first_backoff : st.backoff * 2, max_backoff);
    self->delayed_send(self, st.backoff, migrate_atom::value);
  }
}

} // namespace

migrator_actor::behavior_type migrator(migrator_self self, settings cfg,
                                       std::vector<writer_actor> writers,
                                       directory_actor directory, phone_normaliser normalise) {
  auto& st = self->state;
  st.normalise = std::move(normalise);
  st.cfg = std::move(cfg);
  st.writers = std::move(writers);
  st.directory = std::move(directory);
  self->send(self, migrate_atom::value);
  return {
    [=](migrate_atom) { attempt(self); },
  };
}

} // namespace kapso
