// The directory actor: answers workspace look-ups and readiness from its
// own database connection, so the router never blocks; keeps the last known
// entries on disk next to the spool for a start while PostgreSQL is down.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include <caf/all.hpp>

#include "actors/protocol.hpp"
#include "config/settings.hpp"
#include "persistence/workspace_snapshot.hpp"

namespace kapso {

class inbox_store;

struct directory_state {
  settings cfg;
  std::unique_ptr<inbox_store> store;
  std::chrono::steady_clock::time_point failed_at; // last failed call; {} = none
  std::map<std::string, known_workspace> last_known; // by phone_number_id
  std::string snapshot_path;                         // "" = not kept (no spool)
  bool schema_migrated = false;                      // readiness is false until then
  directory_state();
  ~directory_state();
};

// Spawn with spawn<caf::detached>: every call waits on PostgreSQL (each with
// its own deadline, router.timeout-ms). `schema_migrated` false: readiness
// stays false until the migrator's schema_atom.
directory_actor::behavior_type
directory(directory_actor::stateful_pointer<directory_state> self, settings cfg,
          bool schema_migrated);

// Where the snapshot of a spool directory lives.
std::string workspace_snapshot_path(const std::string& spool_dir);

} // namespace kapso
