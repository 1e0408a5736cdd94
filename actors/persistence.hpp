// The persistence actor (writer): owns a fixed share of conversations,
// batches the parts routed to it into few transactions, and answers each
// delivery part only after its commit (or after the outage spool took it).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "actors/protocol.hpp"
#include "config/settings.hpp"
#include "persistence/conversation_lanes.hpp"

namespace kapso {

class inbox_store;
class spool;
class suspect_tracker;

struct persistence_state {
  settings cfg;
  size_t index = 0;                         // which writer of the pool
  answer_sink_ptr sink;
  std::unique_ptr<inbox_store> store;
  std::unique_ptr<spool> outage_spool;      // null when the spool is disabled
  std::unique_ptr<spool> quarantine;        // null when the spool is disabled
  std::unique_ptr<conversation_lanes> lanes;
  std::vector<write_part> queued;           // parts waiting for the next commit
  size_t queued_events = 0;
  bool commit_scheduled = false;
  bool schema_ready = false;                // migrated: PostgreSQL may be written
  bool db_down = false;                     // the last attempt found PostgreSQL unavailable
  std::chrono::steady_clock::time_point db_down_since;
  // Spool files of writers that no longer exist (the pool shrank), replayed
  // before this writer's own file and deleted once replayed; never appended.
  std::vector<std::unique_ptr<spool>> orphans;
  // A replay round works through the spool as it was when the round began:
  // records appended later (events set aside to be tried again) wait for
  // the next round, one replay interval later.
  uint64_t replay_round_end = 0;
  bool replay_continues = false;            // the next replay_atom goes on with the round
  // Events the next replay transaction takes: sized so that one takes about
  // replay_batch_time (live parts wait for at most one), at most
  // spool.replay-batch-max.
  size_t replay_batch_events = 0;
  // The drain under way: since when, how many events so far (for its log line).
  std::chrono::steady_clock::time_point drain_began;
  uint64_t drained_events = 0;
  // When a commit last stored events of each kind: a failing event counts
  // only when others of its kind were stored (a trigger that fails every
  // message insert while statuses go through quarantines nothing).
  std::array<std::chrono::steady_clock::time_point, static_cast<size_t>(last_event_kind) + 1>
    last_stored{};
  // Events that failed unexplained: how often while others were stored.
  std::unique_ptr<suspect_tracker> suspects;
  bool replay_scheduled = false;
  std::chrono::steady_clock::time_point last_pending_sweep;
  int64_t reported_spool_bytes = 0;         // this writer's share of the gauges
  int64_t reported_spool_records = 0;
  int64_t reported_quarantine_events = 0;
  int64_t reported_lanes = 0;

  persistence_state();
  // Parts still queued when the writer stops are answered (503): nobody is
  // left waiting for a writer that is gone.
  ~persistence_state();
};

// Spawn with spawn<caf::detached>: every database call blocks (each with its
// own deadline). `schema_ready` false: until schema_atom arrives, batches go
// to the spool (503 without one) and the spool is not replayed, so nothing
// is written into a schema the migrator has not brought up to date.
writer_actor::behavior_type
persistence_writer(writer_actor::stateful_pointer<persistence_state> self, settings cfg,
                   size_t index, answer_sink_ptr sink, bool schema_ready);

} // namespace kapso
