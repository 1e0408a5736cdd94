// The router actor: resolves each event's workspace (cached), checks the
// signature against that workspace's secrets, and hands the events to the
// writers that own their conversations — one part per writer.
#pragma once

#include <chrono>
#include <cstdint>
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

struct delivery_job; // one delivery waiting for workspace look-ups

struct router_state {
  settings cfg;
  directory_actor directory;
  std::vector<writer_actor> writers;
  answer_sink_ptr sink;
  std::unordered_map<std::string, workspace_entry> workspaces; // by phone_number_id
  size_t unknown_entries = 0; // of `workspaces`: ids that matched no workspace
  std::chrono::steady_clock::time_point directory_failed_at; // last failed look-up; {} = none
  double lookup_tokens = 0;   // router.lookup-rate bucket
  std::chrono::steady_clock::time_point lookup_tokens_at;
  // Deliveries waiting for the look-up of a phone_number_id, by that id.
  std::unordered_map<std::string, std::vector<std::shared_ptr<delivery_job>>> waiting;
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> unknown_logged;
  std::unordered_set<std::string> unknown_types_logged;

  // Deliveries still waiting when the router stops are answered (503).
  ~router_state();
};

// (ingest_atom, delivery, ticket): answered through `sink` — by the writers
// after commit, or here for deliveries refused or needing no write.
router_actor::behavior_type router(router_actor::stateful_pointer<router_state> self,
                                   settings cfg, directory_actor directory,
                                   std::vector<writer_actor> writers, answer_sink_ptr sink);

} // namespace kapso
