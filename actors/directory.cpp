// Workspace look-ups and the readiness probe, off the router's thread.
#include "actors/directory.hpp"

#include <spdlog/spdlog.h>

#include "http/signature.hpp"
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
        std::vector<workspace_info> found;
        for (auto& row : self->state.store->find_workspaces(phone_ids))
          found.push_back(workspace_info{std::move(row.id), std::move(row.phone_number_id),
                                         split_secrets(row.secret_list)});
        return found;
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
