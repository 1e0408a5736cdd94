// The router actor: resolves each event's workspace (cached), checks the
// signature against that workspace's secrets, and fans the events out to
// conversation actors; answers the delivery when all of them committed.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <caf/all.hpp>

#include "actors/protocol.hpp"
#include "config/settings.hpp"

namespace kapso {

struct workspace_entry {
  bool known = false; // false: no workspace has this phone_number_id
  workspace_info info;
  std::chrono::steady_clock::time_point fetched;
};

struct delivery_job; // one delivery waiting for look-ups or writes

struct router_state {
  settings cfg;
  caf::actor directory;
  std::vector<caf::actor> writers;
  std::unordered_map<std::string, workspace_entry> workspaces; // by phone_number_id
  size_t unknown_entries = 0; // of `workspaces`: ids that matched no workspace
  caf::actor_clock::time_point directory_failed_at; // last failed look-up; {} = none
  double lookup_tokens = 0;   // router.lookup-rate bucket
  caf::actor_clock::time_point lookup_tokens_at;
  std::unordered_map<std::string, std::vector<std::shared_ptr<delivery_job>>> waiting;
  std::unordered_map<conversation_key, caf::actor, conversation_key_hash> conversations;
  std::unordered_map<caf::actor_addr, conversation_key> key_of;
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> unknown_logged;
  std::unordered_set<std::string> unknown_types_logged;
  // Deliveries not yet answered, in arrival order (which is deadline order:
  // all share cfg.request_timeout); one sweep timer serves all of them.
  std::map<uint64_t, std::shared_ptr<delivery_job>> open_jobs;
  uint64_t next_job = 0;
  bool deadline_sweep_scheduled = false;
};

// Handles (ingest_atom, delivery_ptr) -> delivery_result, or an error made
// from ingest_errc (bad_signature, unavailable, timeout). The same delivery
// sent as (ingest_atom, delivery_ptr, ticket) is answered with a message to
// its sender instead: (ingest_atom, ticket, delivery_result) or
// (ingest_atom, ticket, caf::error). Every delivery is answered within
// cfg.request_timeout (ingest_errc::timeout after that).
caf::behavior router(caf::stateful_actor<router_state>* self, settings cfg,
                     caf::actor directory, std::vector<caf::actor> writers);

} // namespace kapso
