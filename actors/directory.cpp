// Workspace look-ups and the readiness probe, off the router's thread.
#include "actors/directory.hpp"

#include <spdlog/spdlog.h>

#include "config/secrets.hpp"
#include "persistence/store.hpp"

namespace kapso {

namespace {

using clock_type = std::chrono::steady_clock;
using directory_self = directory_actor::stateful_pointer<directory_state>;

// After a failed call the directory answers from its snapshot at once for
// this long instead of making every queued look-up wait for its own deadline
// on a database that does not answer.
constexpr auto failure_hold = std::chrono::milliseconds(500);

bool holding_off(const directory_state& st) {
  return st.failed_at != clock_type::time_point{} && clock_type::now() - st.failed_at < failure_hold;
}

void failed(directory_state& st, const std::exception& e, const char* what) {
  if (!holding_off(st))
    spdlog::warn("{} failed: {}", what, e.what());
  st.failed_at = clock_type::now();
  st.store->disconnect();
}

workspace_info info_of(const known_workspace& ws) {
  return workspace_info{ws.id, ws.phone_number_id, split_secrets(ws.secret_list)};
}

// The last known entries of `ids`: what serves while PostgreSQL is away.
workspace_lookup from_snapshot(const directory_state& st, const std::vector<std::string>& ids) {
  workspace_lookup out;
  out.from_snapshot = true;
  for (const auto& id : ids)
    if (auto found = st.last_known.find(id); found != st.last_known.end())
      out.found.push_back(info_of(found->second));
  return out;
}

// Brings the last known entries in line with an answer of the database and
// writes them out when they changed.
void remember(directory_state& st, const std::vector<std::string>& ids,
              const std::vector<inbox_store::workspace_row>& rows) {
  bool changed = false;
  std::map<std::string, const inbox_store::workspace_row*> by_id;
  for (const auto& row : rows)
    by_id.emplace(row.phone_number_id, &row);
  for (const auto& id : ids) {
    auto row = by_id.find(id);
    auto known = st.last_known.find(id);
    if (row == by_id.end()) {
      if (known != st.last_known.end()) {
        st.last_known.erase(known);
        changed = true;
      }
      continue;
    }
    known_workspace now{row->second->id, row->second->phone_number_id,
                        row->second->secret_list};
    if (known == st.last_known.end() || known->second.id != now.id
        || known->second.secret_list != now.secret_list) {
      st.last_known[id] = std::move(now);
      changed = true;
    }
  }
  if (!changed || st.snapshot_path.empty())
    return;
  std::vector<known_workspace> all;
  all.reserve(st.last_known.size());
  for (const auto& [id, ws] : st.last_known)
    all.push_back(ws);
  save_workspace_snapshot(st.snapshot_path, all);
}

} // namespace

std::string workspace_snapshot_path(const std::string& spool_dir) {
  return spool_dir.empty() ? std::string{} : spool_dir + "/workspaces.snapshot";
}

directory_state::directory_state() = default;
directory_state::~directory_state() = default;

directory_actor::behavior_type directory(directory_self self, settings cfg,
                                         bool schema_migrated) {
  auto& st = self->state;
  st.cfg = cfg;
  st.schema_migrated = schema_migrated;
  st.store = std::make_unique<inbox_store>(cfg.database_url, cfg.statement_timeout,
                                           cfg.connect_timeout);
  st.snapshot_path = workspace_snapshot_path(cfg.spool_dir);
  if (!st.snapshot_path.empty()) {
    for (auto& ws : load_workspace_snapshot(st.snapshot_path))
      st.last_known.emplace(ws.phone_number_id, std::move(ws));
    if (!st.last_known.empty())
      spdlog::info("{} workspaces known from {}", st.last_known.size(), st.snapshot_path);
  }
  return {
    [=](resolve_atom, std::vector<std::string>& phone_ids) -> workspace_lookup {
      auto& st = self->state;
      if (holding_off(st))
        return from_snapshot(st, phone_ids);
      try {
        // Each look-up has its own deadline; past it, the last known
        // entries answer.
        auto rows = st.store->find_workspaces(phone_ids, clock_type::now() + st.cfg.workspace_lookup_timeout);
        st.failed_at = {};
        remember(st, phone_ids, rows);
        workspace_lookup out;
        for (const auto& row : rows)
          out.found.push_back(
            workspace_info{row.id, row.phone_number_id, split_secrets(row.secret_list)});
        return out;
      } catch (const std::exception& e) {
        failed(st, e, "workspace look-up");
        return from_snapshot(st, phone_ids);
      }
    },
    [=](readiness_atom) -> bool {
      auto& st = self->state;
      if (!st.schema_migrated || holding_off(st))
        return false;
      try {
        bool current = st.store->schema_current(clock_type::now() + st.cfg.workspace_lookup_timeout);
        st.failed_at = {};
        return current;
      } catch (const std::exception& e) {
        failed(st, e, "readiness check");
        return false;
      }
    },
    [=](schema_atom) { self->state.schema_migrated = true; },
  };
}

} // namespace kapso
