// The migrator actor: applies the schema migrations at start, in the
// background, so that the server listens (and spools) whatever PostgreSQL
// does; retried with a back-off until they succeed.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "actors/protocol.hpp"
#include "config/settings.hpp"
#include "persistence/route_repair.hpp"

namespace kapso {

struct migrator_state {
  settings cfg;
  std::vector<writer_actor> writers;  // told when the schema is migrated
  directory_actor directory;
  phone_normaliser normalise;         // for the route repair in migration 0002
  std::chrono::milliseconds backoff{0};
  int attempts = 0;
  std::string last_failure;           // logged once per different failure
  std::chrono::steady_clock::time_point last_logged;
};

// Spawn with spawn<caf::detached> once the server listens: each attempt
// waits on PostgreSQL (one connection attempt of persistence.connect-timeout-ms,
// then persistence.migration-timeout-ms). On success it sends schema_atom to
// every writer and then to the directory (so that no delivery admitted by
// /readyz reaches a writer still waiting) and quits.
migrator_actor::behavior_type migrator(migrator_actor::stateful_pointer<migrator_state> self,
                                       settings cfg, std::vector<writer_actor> writers,
                                       directory_actor directory, phone_normaliser normalise);

} // namespace kapso
