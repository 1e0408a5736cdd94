// Workspace look-ups and the readiness probe, off the router's thread.
#include "actors/directory.hpp"

#include <spdlog/spdlog.h>

#include "persistence/store.hpp"

namespace kapso {

directory_state::directory_state() = default;
directory_state::~directory_state() = default;

caf::behavior directory(caf::stateful_actor<directory_state>* self, settings cfg) {
  // A short connect timeout: a look-up waits on it while PostgreSQL is down.
  self->state.store = std::make_unique<inbox_store>(cfg.database_url, cfg.statement_timeout,
                                                    std::chrono::seconds(2));
  return {
    [=](resolve_atom, std::vector<std::string>& phone_ids)
      -> caf::result<std::vector<workspace_info>> {
      try {
        return self->state.store->find_workspaces(phone_ids);
      } catch (const std::exception& e) {
        spdlog::warn("workspace look-up failed: {}", e.what());
        self->state.store->disconnect();
        return make_error(ingest_errc::unavailable);
      }
    },
    [=](readiness_atom) -> bool {
      try {
        return self->state.store->schema_current();
      } catch (const std::exception& e) {
        spdlog::debug("readiness check failed: {}", e.what());
        self->state.store->disconnect();
        return false;
      }
    },
  };
}

} // namespace kapso
