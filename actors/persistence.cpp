// Group commit: parts queue in the mailbox while a transaction runs, and the
// next commit takes all of them at once; each part is answered after it.
#include "actors/persistence.hpp"

#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>

#include <spdlog/spdlog.h>

#include "actors/pipeline_metrics.hpp"
#include "persistence/spool.hpp"
#include "persistence/store.hpp"

namespace kapso {

namespace {

using clock_type = std::chrono::steady_clock;
using writer_self = writer_actor::stateful_pointer<persistence_state>;

constexpr auto pending_sweep_period = std::chrono::seconds(10);
// After a failed attempt, batches go straight to the spool for this long
// instead of each waiting on a database that just failed.
constexpr auto down_grace = std::chrono::milliseconds(1000);
// Replay runs in slices so that parts arriving meanwhile are not held up.
constexpr auto replay_slice = std::chrono::milliseconds(200);
// Conflicts (deadlock, serialization failure) between writers or instances
// are retried this often within the deadline before the batch counts as not
// storable now (spooled or 503, never ignored).
constexpr int max_conflict_retries = 8;

// The batch could not be stored for a reason of the database's own: the
// caller spools it or answers 503.
class database_unavailable : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

std::string_view id_for_log(const event& ev) {
  return ev.message_id.empty() ? std::string_view{"-"} : std::string_view{ev.message_id};
}

// Commits `entries` before `deadline`, retrying conflicts and isolating
// events whose own data the database rejects (ignored, logged). Throws
// database_unavailable for everything else.
std::vector<write_outcome> commit_with_retries(writer_self self,
                                               const std::vector<batch_entry>& entries,
                                               pg_deadline deadline) {
  auto& st = self->state;
  bool retried_once = false;
  for (int attempt = 0;; ++attempt) {
    try {
      auto started = clock_type::now();
      auto result = st.store->commit_batch(entries, deadline);
      pipeline_metrics::global().commit_seconds.observe(
        std::chrono::duration<double>(clock_type::now() - started).count());
      pipeline_metrics::global().batch_size.observe(static_cast<double>(entries.size()));
      if (!result.pending.empty()) {
        // A message committed by another writer while this transaction ran
        // is not seen by it: look again now that both are committed (the
        // periodic sweep catches what this misses).
        try {
          st.store->apply_pending(result.pending, deadline);
        } catch (const std::exception& e) {
          spdlog::warn("writer {}: re-applying pending statuses failed: {}", st.index, e.what());
        }
      }
      return std::move(result.outcomes);
    } catch (const std::exception& e) {
      pipeline_metrics::global().commit_failures_total++;
      auto kind = classify_failure(e);
      if (kind == failure_kind::unavailable)
        throw database_unavailable(e.what());
      if (kind == failure_kind::conflict) {
        if (attempt < max_conflict_retries && clock_type::now() < deadline) {
          spdlog::debug("writer {}: conflict, retrying a batch of {}: {}", st.index,
                        entries.size(), e.what());
          continue;
        }
        throw database_unavailable(std::string{"conflicts outlasted their retries: "} + e.what());
      }
      if (!retried_once) {
        // Perhaps a conversation was deleted by another application while
        // the batch was written: the next attempt creates it again.
        retried_once = true;
        continue;
      }
      if (entries.size() == 1) {
        const auto& ev = *entries.front().ev;
        if (kind == failure_kind::stale_reference) {
          spdlog::warn("event {} ({}) refers to a workspace row that no longer exists; "
                       "answered 503 so it is delivered again: {}",
                       id_for_log(ev), ev.event_type, e.what());
          return {write_outcome::retry};
        }
        spdlog::warn("event {} ({}) rejected by the database for its own data, ignored: {}",
                     id_for_log(ev), ev.event_type, e.what());
        return {write_outcome::ignored};
      }
      // One bad event must not block the others: write them one by one.
      std::vector<write_outcome> outcomes;
      outcomes.reserve(entries.size());
      for (const auto& entry : entries)
        outcomes.push_back(commit_with_retries(self, {entry}, deadline)[0]);
      return outcomes;
    }
  }
}

std::vector<batch_entry> entries_of(const std::vector<routed_event>& events) {
  std::vector<batch_entry> entries;
  entries.reserve(events.size());
  for (const auto& r : events)
    entries.push_back({&r.ev, r.workspace_id, r.ev.timestamp});
  return entries;
}

void schedule_replay(writer_self self, bool now) {
  auto& st = self->state;
  if (st.replay_scheduled || !st.outage_spool)
    return;
  st.replay_scheduled = true;
  if (now)
    self->send(self, replay_atom::value);
  else
    self->delayed_send(self, st.cfg.spool_replay_interval, replay_atom::value);
}

// Brings the process-wide spool gauges in line with this writer's spool.
void sync_spool_gauges(persistence_state& st) {
  if (!st.outage_spool)
    return;
  auto bytes = static_cast<int64_t>(st.outage_spool->bytes());
  auto records = static_cast<int64_t>(st.outage_spool->records());
  pipeline_metrics::global().spool_bytes += bytes - st.reported_spool_bytes;
  pipeline_metrics::global().spool_records += records - st.reported_spool_records;
  st.reported_spool_bytes = bytes;
  st.reported_spool_records = records;
}

void sync_lane_gauge(persistence_state& st) {
  auto lanes = static_cast<int64_t>(st.lanes->size());
  pipeline_metrics::global().conversations_active += lanes - st.reported_lanes;
  st.reported_lanes = lanes;
}

// The spool's next record; the corrupt ones it skipped on the way are counted.
std::optional<spool::record> next_record(spool& s) {
  auto corrupt_before = s.corrupt_records();
  auto record = s.next();
  pipeline_metrics::global().spool_corrupt_records_total += s.corrupt_records() - corrupt_before;
  return record;
}

// The batch durably in the spool: every event is acknowledged (accepted) and
// will be written by the replay. Nullopt when there is no room.
std::optional<std::vector<write_outcome>> to_spool(writer_self self,
                                                    const std::vector<batch_entry>& entries) {
  auto& st = self->state;
  if (!st.outage_spool)
    return std::nullopt;
  std::vector<routed_event> copies;
  copies.reserve(entries.size());
  for (const auto& e : entries) {
    copies.push_back(routed_event{std::string{e.workspace_id}, *e.ev});
    copies.back().ev.timestamp = e.timestamp;
  }
  auto status = st.outage_spool->append(copies);
  if (status != spool::append_status::ok) {
    spdlog::error("writer {}: spool {} {}: a batch of {} answered 503", st.index,
                  st.outage_spool->path(),
                  status == spool::append_status::full ? "is full" : "could not be written",
                  entries.size());
    return std::nullopt;
  }
  sync_spool_gauges(st);
  pipeline_metrics::global().spooled_events_total += entries.size();
  schedule_replay(self, false);
  return std::vector<write_outcome>(entries.size(), write_outcome::accepted);
}

// Stores `entries` in PostgreSQL or, when it is unavailable, in the spool.
// `in_database` tells which; nullopt when neither took them.
std::optional<std::vector<write_outcome>> store(writer_self self,
                                                 const std::vector<batch_entry>& entries,
                                                 bool& in_database) {
  auto& st = self->state;
  in_database = false;
  if (!st.schema_ready)
    return to_spool(self, entries);
  auto now = clock_type::now();
  bool spool_first = st.outage_spool && !st.outage_spool->empty();
  bool recently_down = st.db_down && now - st.db_down_since < down_grace;
  // While the spool holds records, new batches queue behind them (replay
  // keeps arrival order); right after a failure they go there at once.
  if (spool_first || (recently_down && st.outage_spool))
    return to_spool(self, entries);
  if (!recently_down) {
    try {
      auto outcomes = commit_with_retries(self, entries, now + st.cfg.commit_timeout);
      if (st.db_down)
        spdlog::info("writer {}: PostgreSQL is writable again", st.index);
      st.db_down = false;
      in_database = true;
      return outcomes;
    } catch (const database_unavailable& e) {
      if (!st.db_down)
        spdlog::error("writer {}: PostgreSQL unavailable, a batch of {} not committed: {}",
                      st.index, entries.size(), e.what());
      st.db_down = true;
      st.db_down_since = clock_type::now();
    }
  }
  return to_spool(self, entries);
}

// Counts per (event type, outcome), reported once per batch.
class outcome_tally {
public:
  void add(const std::string& type, write_outcome outcome) {
    if (outcome != write_outcome::retry)
      ++counts_[{type, outcome}];
  }
  void report() {
    for (const auto& [key, n] : counts_)
      pipeline_metrics::global().count_event(key.first, key.second, n);
  }

private:
  std::map<std::pair<std::string, write_outcome>, uint64_t> counts_;
};

void commit_now(writer_self self) {
  auto& st = self->state;
  if (st.queued.empty())
    return;
  // Whole parts, up to batch-max events (a larger part is one batch alone).
  std::vector<write_part> parts;
  size_t events = 0;
  size_t taken = 0;
  while (taken < st.queued.size() && (events == 0 || events + st.queued[taken].items.size()
                                                       <= st.cfg.batch_max)) {
    events += st.queued[taken].items.size();
    parts.push_back(std::move(st.queued[taken]));
    ++taken;
  }
  st.queued.erase(st.queued.begin(), st.queued.begin() + static_cast<ptrdiff_t>(taken));
  st.queued_events -= events;
  pipeline_metrics::global().writer_queue -= static_cast<int64_t>(events);
  if (!st.queued.empty() && !st.commit_scheduled) {
    st.commit_scheduled = true;
    self->send(self, commit_atom::value);
  }

  // A retry of a message this writer committed lately is answered from
  // memory; everything else goes into the batch.
  std::vector<std::vector<write_outcome>> outcomes(parts.size());
  std::vector<batch_entry> entries;
  std::vector<std::pair<size_t, size_t>> slot_of; // entry -> (part, item)
  entries.reserve(events);
  slot_of.reserve(events);
  for (size_t p = 0; p < parts.size(); ++p) {
    const auto& part = parts[p];
    outcomes[p].assign(part.items.size(), write_outcome::duplicate);
    for (size_t k = 0; k < part.items.size(); ++k) {
      const auto& item = part.items[k];
      const auto& ev = part.d->events[item.index];
      std::string_view ws = part.workspace_ids[item.workspace];
      if (st.lanes->recently_committed(ws, ev))
        continue;
      entries.push_back({&ev, ws, ev.timestamp != 0 ? ev.timestamp : part.arrival});
      slot_of.emplace_back(p, k);
    }
  }
  std::vector<bool> part_failed(parts.size(), false);
  if (!entries.empty()) {
    bool in_database = false;
    auto written = store(self, entries, in_database);
    auto now = clock_type::now();
    for (size_t i = 0; i < entries.size(); ++i) {
      auto [p, k] = slot_of[i];
      if (!written) {
        part_failed[p] = true;
        continue;
      }
      auto outcome = (*written)[i];
      outcomes[p][k] = outcome;
      if (outcome == write_outcome::retry)
        part_failed[p] = true;
      else if (in_database && outcome != write_outcome::ignored)
        st.lanes->committed(entries[i].workspace_id, *entries[i].ev, now);
    }
    sync_lane_gauge(st);
  }
  outcome_tally tally;
  for (size_t p = 0; p < parts.size(); ++p) {
    const auto& part = parts[p];
    if (part_failed[p]) {
      st.sink->failed(part.ticket, ingest_errc::unavailable);
      continue;
    }
    auto counts = part.counted;
    for (size_t k = 0; k < part.items.size(); ++k) {
      auto outcome = outcomes[p][k];
      tally.add(part.d->events[part.items[k].index].event_type, outcome);
      switch (outcome) {
        case write_outcome::accepted: ++counts.accepted; break;
        case write_outcome::duplicate: ++counts.duplicates; break;
        case write_outcome::ignored: ++counts.ignored; break;
        case write_outcome::retry: break;
      }
    }
    st.sink->part_done(part.ticket, part.parts, counts);
  }
  tally.report();
}

// Replays the spool in order, a slice at a time; a record leaves the spool
// only once its events are stored (or can never be: invalid data, a deleted
// workspace — logged).
void replay(writer_self self) {
  auto& st = self->state;
  st.replay_scheduled = false;
  // Before the migration the spool waits; schema_atom starts the replay.
  if (!st.schema_ready || !st.outage_spool || st.outage_spool->empty())
    return;
  auto slice_end = clock_type::now() + replay_slice;
  size_t events = 0;
  try {
    while (clock_type::now() < slice_end) {
      auto record = next_record(*st.outage_spool);
      if (!record)
        break;
      auto entries = entries_of(record->events);
      auto outcomes = commit_with_retries(self, entries, clock_type::now() + st.cfg.commit_timeout);
      for (size_t i = 0; i < outcomes.size(); ++i)
        if (outcomes[i] == write_outcome::retry) {
          const auto& ev = record->events[i].ev;
          spdlog::error("writer {}: spooled event {} ({}) dropped: its workspace no longer "
                        "exists", st.index, id_for_log(ev), ev.event_type);
          pipeline_metrics::global().spool_dropped_events_total++;
        }
      st.outage_spool->consumed(*record);
      events += entries.size();
    }
  } catch (const database_unavailable& e) {
    pipeline_metrics::global().replayed_events_total += events;
    sync_spool_gauges(st);
    if (!st.db_down)
      spdlog::warn("writer {}: spool replay postponed: {}", st.index, e.what());
    st.db_down = true;
    st.db_down_since = clock_type::now();
    schedule_replay(self, false);
    return;
  }
  pipeline_metrics::global().replayed_events_total += events;
  sync_spool_gauges(st);
  if (st.outage_spool->empty()) {
    if (st.db_down || events > 0)
      spdlog::info("writer {}: spool replayed into PostgreSQL", st.index);
    st.db_down = false;
    return;
  }
  schedule_replay(self, true); // more to do: after the parts that queued meanwhile
}

void adopt_orphan_spools(persistence_state& st, const std::filesystem::path& dir) {
  // Files of writers that no longer exist (the pool shrank) go to a writer
  // of the current pool, so a restart never strands acknowledged events.
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    auto name = entry.path().filename().string();
    size_t other = 0;
    if (std::sscanf(name.c_str(), "writer-%zu", &other) != 1
        || name != "writer-" + std::to_string(other) + ".spool" || other < st.cfg.writers
        || other % st.cfg.writers != st.index)
      continue;
    spool orphan{entry.path().string(), SIZE_MAX};
    pipeline_metrics::global().spool_corrupt_records_total += orphan.corrupt_records();
    while (auto record = next_record(orphan)) {
      if (st.outage_spool->append(record->events) != spool::append_status::ok) {
        // What is left stays in the orphan's file for the next start.
        spdlog::error("writer {}: cannot take over the rest of {}", st.index, name);
        break;
      }
      orphan.consumed(*record);
    }
    if (orphan.empty())
      std::filesystem::remove(entry.path(), ec);
  }
}

void start_spool(writer_self self) {
  auto& st = self->state;
  if (st.cfg.spool_dir.empty())
    return;
  std::filesystem::path dir{st.cfg.spool_dir};
  std::filesystem::create_directories(dir);
  auto file = dir / ("writer-" + std::to_string(st.index) + ".spool");
  st.outage_spool = std::make_unique<spool>(file.string(), st.cfg.spool_max_bytes / st.cfg.writers);
  pipeline_metrics::global().spool_corrupt_records_total += st.outage_spool->corrupt_records();
  adopt_orphan_spools(st, dir);
  sync_spool_gauges(st);
  if (!st.outage_spool->empty()) {
    spdlog::info("writer {}: {} spooled batches to replay", st.index,
                 st.outage_spool->records());
    schedule_replay(self, true);
  }
}

} // namespace

persistence_state::persistence_state() = default;

persistence_state::~persistence_state() {
  pipeline_metrics::global().writer_queue -= static_cast<int64_t>(queued_events);
  if (lanes)
    pipeline_metrics::global().conversations_active -= reported_lanes;
  if (sink)
    for (const auto& part : queued)
      sink->failed(part.ticket, ingest_errc::shutting_down);
}

writer_actor::behavior_type persistence_writer(writer_self self, settings cfg, size_t index,
                                               answer_sink_ptr sink, bool schema_ready) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.index = index;
  st.sink = std::move(sink);
  st.schema_ready = schema_ready;
  st.store = std::make_unique<inbox_store>(st.cfg.database_url, st.cfg.statement_timeout,
                                           st.cfg.connect_timeout);
  st.lanes = std::make_unique<conversation_lanes>(st.cfg.conversation_max / st.cfg.writers,
                                                  st.cfg.conversation_idle);
  start_spool(self);
  if (st.schema_ready) {
    try {
      st.store->ensure_connected(clock_type::now() + st.cfg.connect_timeout);
    } catch (const std::exception& e) {
      spdlog::warn("writer {}: PostgreSQL not reachable yet: {}", index, e.what());
    }
  }
  st.last_pending_sweep = clock_type::now();
  auto sweep_period = std::min<std::chrono::milliseconds>(st.cfg.conversation_idle,
                                                          pending_sweep_period);
  self->delayed_send(self, sweep_period, sweep_atom::value);
  return {
    [=](persist_atom, write_part& part) {
      auto& st = self->state;
      auto n = part.items.size();
      st.queued.push_back(std::move(part));
      st.queued_events += n;
      pipeline_metrics::global().writer_queue += static_cast<int64_t>(n);
      if (st.queued_events >= st.cfg.batch_max) {
        commit_now(self);
      } else if (!st.commit_scheduled) {
        // A message to ourselves queues behind every part already in the
        // mailbox: the commit takes all of them (group commit).
        st.commit_scheduled = true;
        if (st.cfg.flush_interval.count() == 0)
          self->send(self, commit_atom::value);
        else
          self->delayed_send(self, st.cfg.flush_interval, commit_atom::value);
      }
    },
    [=](commit_atom) {
      self->state.commit_scheduled = false;
      commit_now(self);
    },
    [=](schema_atom) {
      self->state.schema_ready = true;
      schedule_replay(self, true);
    },
    [=](replay_atom) { replay(self); },
    [=](sweep_atom) {
      auto& st = self->state;
      auto now = clock_type::now();
      st.lanes->drop_idle(now);
      sync_lane_gauge(st);
      // Statuses whose message another writer committed meanwhile; one
      // writer is enough to look.
      if (st.index == 0 && st.schema_ready && !st.db_down
          && now - st.last_pending_sweep >= pending_sweep_period) {
        st.last_pending_sweep = now;
        try {
          st.store->sweep_pending(now + st.cfg.commit_timeout);
        } catch (const std::exception& e) {
          spdlog::debug("pending-status sweep skipped: {}", e.what());
        }
      }
      self->delayed_send(self, sweep_period, sweep_atom::value);
    },
  };
}

} // namespace kapso
