// The directory actor: answers workspace look-ups and readiness from its
// own database connection, so the router never blocks.
#pragma once

#include <chrono>
#include <memory>

#include <caf/all.hpp>

#include "actors/protocol.hpp"
#include "config/settings.hpp"

namespace kapso {

class inbox_store;

struct directory_state {
  settings cfg;
  std::unique_ptr<inbox_store> store;
  std::chrono::steady_clock::time_point failed_at; // last failed call; {} = none
  directory_state();
  ~directory_state();
};

// Spawn with spawn<caf::detached>. Handles:
//   (resolve_atom, std::vector<std::string> phone_number_ids)
//     -> std::vector<workspace_info> (the ones that exist)
//   (readiness_atom) -> bool (database reachable and migrated)
caf::behavior directory(caf::stateful_actor<directory_state>* self, settings cfg);

} // namespace kapso
