// The conversation actor: serialises every write of one conversation and
// folds concurrent retries of one message into a single database write.
#pragma once

#include <deque>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <caf/all.hpp>

#include "actors/protocol.hpp"

namespace kapso {

struct conversation_state {
  caf::actor writer;
  // Messages on their way to the database: later copies wait for the first.
  struct pending_message {
    std::string event_type; // for counting the copies
    std::vector<caf::typed_response_promise<write_outcome>> copies;
  };
  std::unordered_map<std::string, pending_message> in_flight; // by message id
  // Recently committed message ids: a retry is answered without a query.
  std::unordered_set<std::string> recent;
  std::deque<std::string> recent_order;
  size_t outstanding = 0; // requests to the writer not yet answered
  caf::actor_clock::time_point last_activity;
  std::chrono::milliseconds idle{5000};

  ~conversation_state();
};

// Handles (ingest_atom, routed_event) -> write_outcome. Stops itself after
// `idle` without messages and without outstanding writes.
caf::behavior conversation(caf::stateful_actor<conversation_state>* self, caf::actor writer,
                           std::chrono::milliseconds idle);

} // namespace kapso
