// The persistence actor: batches the writes of its share of conversations
// into few transactions and answers each write only after its commit.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "actors/protocol.hpp"
#include "config/settings.hpp"

namespace kapso {

class inbox_store;
class spool;

struct persistence_state {
  settings cfg;
  size_t index = 0;                         // which writer of the pool
  std::unique_ptr<inbox_store> store;
  std::unique_ptr<spool> outage_spool;      // null when the spool is disabled
  std::vector<routed_event> batch;
  std::vector<caf::typed_response_promise<write_outcome>> waiting; // per entry
  bool commit_scheduled = false;
  bool db_down = false;                     // last attempt found PostgreSQL away
  std::chrono::steady_clock::time_point db_down_since;
  bool replay_scheduled = false;
  int64_t reported_spool_bytes = 0;         // this spool's share of the gauges
  int64_t reported_spool_records = 0;

  persistence_state();
  ~persistence_state();
};

// Spawn with spawn<caf::detached>: every libpqxx call blocks.
// Handles: (persist_atom, routed_event) -> write_outcome.
caf::behavior persistence_writer(caf::stateful_actor<persistence_state>* self,
                                 settings cfg, size_t index);

// Which writer owns a conversation: a fixed share by hash.
size_t writer_for(const conversation_key& key, size_t writers);

} // namespace kapso
