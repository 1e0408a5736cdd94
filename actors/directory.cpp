// Workspace look-ups and the readiness probe, off the router's thread.
#include "actors/directory.hpp"

#include <spdlog/spdlog.h>

#include "http/signature.hpp"
#include "persistence/store.hpp"

namespace kapso {

namespace {

using clock_type = std::chrono::steady_clock;

// After a failed call the directory answers "unavailable" at once for this
// long instead of making every queued look-up wait for its own deadline on
// a database that does not answer.
constexpr auto failure_hold = std::chrono::milliseconds(500);

using directory_actor = caf::stateful_actor<directory_state>;

bool holding_off(const directory_state& st) {
  return st.failed_at != clock_type::time_point{} && clock_type::now() - st.failed_at < failure_hold;
}

void failed(directory_state& st, const std::exception& e, const char* what) {
  if (!holding_off(st))
    spdlog::warn("{} failed: {}", what, e.what());
  st.failed_at = clock_type::now();
  st.store->disconnect();
}

} // namespace

directory_state::directory_state() = default;
directory_state::~directory_state() = default;

caf::behavior directory(directory_actor* self, settings cfg) {
  self->state.cfg = cfg;
  self->state.store = std::make_unique<inbox_store>(cfg.database_url, cfg.statement_timeout);
  return {
    [=](resolve_atom, std::vector<std::string>& phone_ids)
      -> caf::result<std::vector<workspace_info>> {
      auto& st = self->state;
      if (holding_off(st))
        return make_error(ingest_errc::unavailable);
      try {
        // Each look-up has its own deadline: the router falls back to the
        // last known entry of a workspace when it passes.
        auto deadline = clock_type::now() + st.cfg.actor_timeout;
        st.store->ensure_connected(std::min(deadline, clock_type::now() + st.cfg.connect_timeout));
        std::vector<workspace_info> found;
        for (auto& row : st.store->find_workspaces(phone_ids, deadline))
          found.push_back(workspace_info{std::move(row.id), std::move(row.phone_number_id),
                                         split_secrets(row.secret_list)});
        st.failed_at = {};
        return found;
      } catch (const std::exception& e) {
        failed(st, e, "workspace look-up");
        return make_error(ingest_errc::unavailable);
      }
    },
    [=](readiness_atom) -> bool {
      auto& st = self->state;
      if (holding_off(st))
        return false;
      try {
        auto deadline = clock_type::now() + st.cfg.actor_timeout;
        st.store->ensure_connected(std::min(deadline, clock_type::now() + st.cfg.connect_timeout));
        bool current = st.store->schema_current(deadline);
        st.failed_at = {};
        return current;
      } catch (const std::exception& e) {
        failed(st, e, "readiness check");
        return false;
      }
    },
  };
}

} // namespace kapso
