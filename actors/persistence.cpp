// Group commit: parts queue in the mailbox while a transaction runs, and the
// next commit takes all of them at once; each part is answered after it.
#include "actors/persistence.hpp"

#include <filesystem>
#include <map>
#include <optional>

#include <spdlog/spdlog.h>

#include "metrics/pipeline_metrics.hpp"
#include "persistence/quarantine.hpp"
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
// A replay transaction should take about this long: parts arriving
// meanwhile wait for it, and larger ones gain little throughput.
constexpr auto replay_batch_time = std::chrono::milliseconds(100);
// The first replay transaction of a drain, before its cost is known, and
// the fewest events one takes (a commit per handful of events would make a
// slow database slower still).
constexpr size_t first_replay_batch = 200;
constexpr size_t least_replay_batch = 50;
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

// What one attempt made of a batch: an outcome per entry and, for the
// entries whose write failed unexplained, why.
struct attempt_result {
  std::vector<write_outcome> outcomes; // one per entry; `retry` where it failed
  // Empty, or one per entry: the reason it failed unexplained ("" if not).
  std::vector<std::string> unexplained;

  bool failed(size_t i) const { return !unexplained.empty() && !unexplained[i].empty(); }
};

attempt_result commit_with_retries(writer_self self, const std::vector<batch_entry>& entries,
                                   pg_deadline deadline);

// One bad event must not block the others: each entry on its own.
attempt_result isolate(writer_self self, const std::vector<batch_entry>& entries,
                       pg_deadline deadline) {
  attempt_result result;
  result.outcomes.reserve(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    auto single = commit_with_retries(self, {entries[i]}, deadline);
    result.outcomes.push_back(single.outcomes[0]);
    if (single.failed(0)) {
      result.unexplained.resize(entries.size());
      result.unexplained[i] = std::move(single.unexplained[0]);
    }
  }
  return result;
}

// A single event that failed twice for a reason that is not the database's
// state; `kind` says whose it is.
attempt_result single_failure(const persistence_state& st, const event& ev, failure_kind kind,
                              const std::exception& e) {
  if (kind == failure_kind::stale_reference) {
    spdlog::warn("event {} ({}) refers to a workspace row that no longer exists; "
                 "answered 503 so it is delivered again: {}",
                 id_for_log(ev), ev.event_type, e.what());
    return {{write_outcome::retry}, {}};
  }
  if (kind == failure_kind::unexplained) {
    // The caller logs it: it knows whether others were stored meanwhile.
    spdlog::debug("writer {}: event {} ({}) failed unexplained: {}", st.index, id_for_log(ev),
                  ev.event_type, e.what());
    return {{write_outcome::retry}, {failure_reason(e)}};
  }
  spdlog::warn("event {} ({}) rejected by the database for its own data, ignored: {}",
               id_for_log(ev), ev.event_type, e.what());
  return {{write_outcome::ignored}, {}};
}

// Commits `entries` before `deadline`, retrying conflicts and isolating
// events whose own data the database rejects (ignored, logged) or whose
// write fails unexplained (reported in the result). Throws
// database_unavailable for everything else.
attempt_result commit_with_retries(writer_self self, const std::vector<batch_entry>& entries,
                                   pg_deadline deadline) {
  auto& st = self->state;
  bool retried_once = false;
  for (int attempt = 0;; ++attempt) {
    try {
      auto started = clock_type::now();
      auto result = st.store->commit_batch(entries, deadline);
      auto stored = clock_type::now();
      for (const auto& entry : entries)
        st.last_stored[static_cast<size_t>(entry.ev->kind)] = stored;
      pipeline_metrics::global().commit_seconds.observe(
        std::chrono::duration<double>(stored - started).count());
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
      return {std::move(result.outcomes), {}};
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
      if (entries.size() > 1)
        return isolate(self, entries, deadline);
      return single_failure(st, *entries.front().ev, kind, e);
    }
  }
}

// `now`: a replay begins (or goes on) behind what the mailbox holds; else
// in a replay interval. `continues`: it goes on with the round under way.
void schedule_replay(writer_self self, bool now, bool continues = false) {
  auto& st = self->state;
  if (st.replay_scheduled || !st.outage_spool)
    return;
  st.replay_scheduled = true;
  st.replay_continues = continues;
  if (now)
    self->send(self, replay_atom::value);
  else
    self->delayed_send(self, st.cfg.spool_replay_interval, replay_atom::value);
}

// Whether anything waits for replay: this writer's spool or an orphan's.
bool spool_pending(const persistence_state& st) {
  if (!st.outage_spool)
    return false;
  if (!st.outage_spool->empty())
    return true;
  for (const auto& orphan : st.orphans)
    if (!orphan->empty())
      return true;
  return false;
}

// Brings the process-wide spool and quarantine gauges in line with this
// writer's files.
void sync_spool_gauges(persistence_state& st) {
  if (!st.outage_spool)
    return;
  auto& metrics = pipeline_metrics::global();
  auto bytes = static_cast<int64_t>(st.outage_spool->bytes());
  auto records = static_cast<int64_t>(st.outage_spool->records());
  for (const auto& orphan : st.orphans) {
    bytes += static_cast<int64_t>(orphan->bytes());
    records += static_cast<int64_t>(orphan->records());
  }
  // One event per quarantine record.
  auto quarantined = static_cast<int64_t>(st.quarantine->records());
  metrics.spool_bytes += bytes - st.reported_spool_bytes;
  metrics.spool_records += records - st.reported_spool_records;
  metrics.quarantine_events += quarantined - st.reported_quarantine_events;
  st.reported_spool_bytes = bytes;
  st.reported_spool_records = records;
  st.reported_quarantine_events = quarantined;
}

void sync_lane_gauge(persistence_state& st) {
  auto lanes = static_cast<int64_t>(st.lanes->size());
  pipeline_metrics::global().conversations_active += lanes - st.reported_lanes;
  st.reported_lanes = lanes;
}

// The spool's next record (after `previous`, read ahead, when given); the
// corrupt ones it skipped on the way are counted.
std::optional<spool::record> next_record(spool& s, const spool::record* previous = nullptr) {
  auto corrupt_before = s.corrupt_records();
  auto record = previous ? s.next_after(*previous) : s.next();
  pipeline_metrics::global().spool_corrupt_records_total += s.corrupt_records() - corrupt_before;
  return record;
}

routed_event copy_of(const batch_entry& e) {
  routed_event copy{std::string{e.workspace_id}, *e.ev};
  copy.ev.timestamp = e.timestamp;
  return copy;
}

// Appends `events` as one record to the spool and schedules its replay.
bool append_to_spool(writer_self self, const std::vector<routed_event>& events) {
  auto& st = self->state;
  auto status = st.outage_spool->append(events);
  if (status != spool::append_status::ok) {
    spdlog::error("writer {}: spool {} {}: a batch of {} answered 503", st.index,
                  st.outage_spool->path(),
                  status == spool::append_status::full ? "is full" : "could not be written",
                  events.size());
    return false;
  }
  sync_spool_gauges(st);
  pipeline_metrics::global().spooled_events_total += events.size();
  schedule_replay(self, false);
  return true;
}

// The batch durably in the spool: every event is acknowledged (accepted) and
// will be written by the replay; every one `retry` (503) when there is no room.
attempt_result to_spool(writer_self self, const std::vector<batch_entry>& entries) {
  auto& st = self->state;
  std::vector<routed_event> copies;
  if (st.outage_spool) {
    copies.reserve(entries.size());
    for (const auto& e : entries)
      copies.push_back(copy_of(e));
  }
  bool kept = st.outage_spool && append_to_spool(self, copies);
  return {std::vector<write_outcome>(entries.size(),
                                     kept ? write_outcome::accepted : write_outcome::retry),
          {}};
}

// Events that failed unexplained, one by one into the quarantine, each with
// its note; false when the file could not take one (the rest stay where
// they are and are tried again).
bool quarantine_events(writer_self self, const std::vector<routed_event>& events,
                       const std::vector<quarantine_note>& notes) {
  auto& st = self->state;
  for (size_t i = 0; i < events.size(); ++i) {
    const auto& r = events[i];
    auto status = st.quarantine->append({r}, {notes[i]});
    if (status != spool::append_status::ok) {
      spdlog::error("writer {}: quarantine {} {}: event {} ({}) stays in the spool", st.index,
                    st.quarantine->path(),
                    status == spool::append_status::full ? "is full" : "could not be written",
                    id_for_log(r.ev), r.ev.event_type);
      sync_spool_gauges(st);
      return false;
    }
    st.suspects->forget(r);
    pipeline_metrics::global().quarantined_events_total++;
    spdlog::error("writer {}: event {} ({}) of workspace {} quarantined after {} failed "
                  "attempts while others of its kind were stored: {}. `kapso-ingest spool "
                  "list` shows it, `kapso-ingest spool requeue` puts it back for replay",
                  st.index, id_for_log(r.ev), r.ev.event_type, r.workspace_id,
                  notes[i].attempts, notes[i].reason);
  }
  sync_spool_gauges(st);
  return true;
}

// Events of one attempt that failed unexplained, counted and sorted: those
// that failed often enough while others were stored go to the quarantine,
// the others back to the spool to be tried again.
struct suspects_found {
  std::vector<routed_event> again;
  std::vector<routed_event> quarantined;
  std::vector<quarantine_note> notes; // of `quarantined`
  bool all_counted = true;            // others were stored around every failure
};

void sort_suspect(persistence_state& st, routed_event r, const std::string& reason,
                  clock_type::time_point began, suspects_found& found) {
  auto now = clock_type::now();
  auto last_stored = st.last_stored[static_cast<size_t>(r.ev.kind)];
  auto count = st.suspects->failed(r, began, last_stored, now);
  found.all_counted = found.all_counted && count.counted;
  // Not counted: perhaps the database fails everything, and then every
  // event would log a line.
  spdlog::log(count.counted ? spdlog::level::warn : spdlog::level::debug,
              "writer {}: event {} ({}) failed {}: {}", st.index, id_for_log(r.ev),
              r.ev.event_type,
              count.counted ? "while others of its kind were stored (attempt "
                                + std::to_string(count.attempts) + " of "
                                + std::to_string(st.cfg.spool_quarantine_after) + ")"
                            : std::string{"while no other of its kind was stored (not counted)"},
              reason);
  if (count.attempts < st.cfg.spool_quarantine_after) {
    found.again.push_back(std::move(r));
    return;
  }
  auto wall = std::chrono::system_clock::now().time_since_epoch();
  found.notes.push_back({reason, count.attempts,
                         std::chrono::duration_cast<std::chrono::seconds>(wall).count()});
  found.quarantined.push_back(std::move(r));
}

// The entries of a live batch that failed unexplained: acknowledged once
// durably kept (accepted, like any spooled event) — in the spool, whose
// replay tries them again, or, when they failed often enough, in the
// quarantine. Without a spool, or when a file cannot take them, 503.
void set_aside_live(writer_self self, const std::vector<batch_entry>& entries,
                    attempt_result& attempt, clock_type::time_point began) {
  auto& st = self->state;
  if (!st.outage_spool) {
    for (size_t i = 0; i < entries.size(); ++i)
      if (attempt.failed(i))
        spdlog::warn("writer {}: event {} ({}) failed and the spool is disabled: answered 503: "
                     "{}",
                     st.index, id_for_log(*entries[i].ev), entries[i].ev->event_type,
                     attempt.unexplained[i]);
    return;
  }
  suspects_found found;
  std::vector<size_t> failed;
  for (size_t i = 0; i < entries.size(); ++i)
    if (attempt.failed(i)) {
      failed.push_back(i);
      sort_suspect(st, copy_of(entries[i]), attempt.unexplained[i], began, found);
    }
  bool kept = (found.again.empty() || append_to_spool(self, found.again))
              && (found.quarantined.empty()
                  || quarantine_events(self, found.quarantined, found.notes));
  if (!kept)
    return;
  for (auto i : failed)
    attempt.outcomes[i] = write_outcome::accepted;
}

// Stores `entries` in PostgreSQL or, when it is unavailable, in the spool;
// an entry answered 503 has outcome `retry`. `in_database`: the batch was
// committed (its entries that failed unexplained are set aside, see
// set_aside_live).
attempt_result store(writer_self self, const std::vector<batch_entry>& entries,
                     bool& in_database) {
  auto& st = self->state;
  in_database = false;
  if (!st.schema_ready)
    return to_spool(self, entries);
  auto now = clock_type::now();
  bool recently_down = st.db_down && now - st.db_down_since < down_grace;
  // While PostgreSQL is down, batches go to the spool without waiting on
  // it: the replay tries it once per replay interval, and once it stores a
  // batch the new ones go to PostgreSQL again, beside the replay (README,
  // "in order"). Without anything to replay, right after a failure too.
  bool replay_probes = st.db_down && spool_pending(st);
  if (replay_probes || (recently_down && st.outage_spool))
    return to_spool(self, entries);
  if (!recently_down) {
    try {
      auto attempt = commit_with_retries(self, entries, now + st.cfg.commit_timeout);
      if (st.db_down)
        spdlog::info("writer {}: PostgreSQL is writable again", st.index);
      st.db_down = false;
      in_database = true;
      if (!attempt.unexplained.empty())
        set_aside_live(self, entries, attempt, now);
      return attempt;
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
      const auto& ev = part.d->events[item.event_index];
      std::string_view ws = part.workspace_ids[item.workspace_index];
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
      auto outcome = written.outcomes[i];
      outcomes[p][k] = outcome;
      if (outcome == write_outcome::retry)
        part_failed[p] = true;
      else if (in_database && !written.failed(i) && outcome != write_outcome::ignored)
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
      tally.add(part.d->events[part.items[k].event_index].event_type, outcome);
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

// The events of a spooled record that failed unexplained. When others were
// stored around every failure, those that failed often enough go to the
// quarantine and the others to the back of the spool (tried again at the
// next replay), each durably before the record leaves the head. False: the
// record stays at the head — nothing else was stored, so it may be the
// database that fails (new batches then go to PostgreSQL, not behind it: if
// they are stored, the next attempt counts), or a file could not be written.
bool set_aside_spooled(writer_self self, const spool::record& record,
                       const attempt_result& attempt, clock_type::time_point began) {
  auto& st = self->state;
  suspects_found found;
  for (size_t i = 0; i < record.events.size(); ++i)
    if (attempt.failed(i))
      sort_suspect(st, record.events[i], attempt.unexplained[i], began, found);
  if (!found.all_counted)
    return false;
  // The spool first: should the quarantine fail, the record stays and the
  // events rotated meanwhile are only replayed twice.
  if (!found.again.empty() && st.outage_spool->append(found.again) != spool::append_status::ok)
    return false;
  return found.quarantined.empty() || quarantine_events(self, found.quarantined, found.notes);
}

// The part of `attempt` that belongs to the `count` entries from `first`.
attempt_result slice_of(const attempt_result& attempt, size_t first, size_t count) {
  attempt_result part;
  part.outcomes.assign(attempt.outcomes.begin() + static_cast<ptrdiff_t>(first),
                       attempt.outcomes.begin() + static_cast<ptrdiff_t>(first + count));
  if (!attempt.unexplained.empty())
    part.unexplained.assign(attempt.unexplained.begin() + static_cast<ptrdiff_t>(first),
                            attempt.unexplained.begin() + static_cast<ptrdiff_t>(first + count));
  return part;
}

// Replay sources, oldest first: the files of writers that no longer exist,
// then this writer's own. An orphan replayed to its end is deleted.
spool* replay_source(persistence_state& st) {
  while (!st.orphans.empty() && st.orphans.front()->empty()) {
    auto path = st.orphans.front()->path();
    st.orphans.erase(st.orphans.begin());
    std::error_code ec;
    std::filesystem::remove(path, ec);
    if (ec)
      spdlog::warn("writer {}: replayed {} but cannot delete it: {}", st.index, path,
                   ec.message());
    else
      spdlog::info("writer {}: replayed and deleted {}", st.index, path);
  }
  return st.orphans.empty() ? st.outage_spool.get() : st.orphans.front().get();
}

// One replay batch: records from the head of `source` up to `limit`
// events, stored in one transaction (events whose workspace is gone are
// dropped, those that fail unexplained set aside) and consumed with one
// cursor write. `events`: how many it tried. False: the batch ends at a
// record that waits for the next round. Throws database_unavailable.
bool replay_batch(writer_self self, spool& source, size_t limit, size_t& events,
                  size_t& replayed) {
  auto& st = self->state;
  bool own = &source == st.outage_spool.get();
  std::vector<spool::record> records;
  events = 0;
  bool held = false;
  while (events < limit) {
    auto record = next_record(source, records.empty() ? nullptr : &records.back());
    if (!record)
      break;
    if (own && record->offset >= st.replay_round_end) {
      held = true;
      break;
    }
    events += record->events.size();
    records.push_back(std::move(*record));
  }
  if (records.empty())
    return !held && source.empty(); // else a read failed: try again in an interval
  std::vector<batch_entry> entries;
  entries.reserve(events);
  for (const auto& record : records)
    for (const auto& r : record.events)
      entries.push_back({&r.ev, r.workspace_id, r.ev.timestamp});
  auto began = clock_type::now();
  auto attempt = commit_with_retries(self, entries, began + st.cfg.commit_timeout);
  size_t first = 0;
  size_t done = 0; // records stored or set aside
  size_t stored = 0;
  for (const auto& record : records) {
    auto n = record.events.size();
    auto part = slice_of(attempt, first, n);
    size_t set_aside = 0;
    for (size_t i = 0; i < n; ++i) {
      if (part.failed(i)) {
        ++set_aside;
      } else if (part.outcomes[i] == write_outcome::retry) {
        const auto& ev = record.events[i].ev;
        spdlog::error("writer {}: spooled event {} ({}) dropped: its workspace no longer "
                      "exists", st.index, id_for_log(ev), ev.event_type);
        pipeline_metrics::global().spool_dropped_events_total++;
      }
    }
    if (set_aside > 0 && !set_aside_spooled(self, record, part, began)) {
      // It stays at the head; the records after it were stored as well and
      // are replayed once more with it (which changes nothing).
      held = true;
      break;
    }
    stored += n - set_aside;
    first += n;
    ++done;
  }
  if (done > 0)
    source.consumed(records.front(), records[done - 1], done);
  replayed += stored;
  return !held;
}

// Replays the spool in order, one batch per message: live parts that
// arrived meanwhile are committed first, so new deliveries wait for at most
// one replay batch. A record leaves the spool only once its events are
// stored (or can never be: invalid data, a deleted workspace — logged), or
// set aside (see set_aside_spooled).
void replay(writer_self self) {
  auto& st = self->state;
  st.replay_scheduled = false;
  // Before the migration the spool waits; schema_atom starts the replay.
  if (!st.schema_ready || !st.outage_spool)
    return;
  if (!st.replay_continues)
    st.replay_round_end = st.outage_spool->file_bytes();
  commit_now(self);
  auto* source = replay_source(st);
  if (source->empty()) {
    sync_spool_gauges(st);
    return;
  }
  if (st.replay_batch_events == 0)
    st.replay_batch_events = std::min(first_replay_batch, st.cfg.spool_replay_batch_max);
  auto began = clock_type::now();
  size_t tried = 0;
  size_t replayed = 0;
  bool more = false;
  try {
    more = replay_batch(self, *source, st.replay_batch_events, tried, replayed);
  } catch (const database_unavailable& e) {
    sync_spool_gauges(st);
    if (!st.db_down)
      spdlog::warn("writer {}: spool replay postponed: {}", st.index, e.what());
    st.db_down = true;
    st.db_down_since = clock_type::now();
    schedule_replay(self, false);
    return;
  }
  if (st.db_down)
    spdlog::info("writer {}: PostgreSQL is writable again, replaying the spool", st.index);
  st.db_down = false;
  if (st.drain_began == clock_type::time_point{})
    st.drain_began = began;
  // The next batch sized from this one's cost per event (at most doubling).
  if (tried > 0) {
    auto took = std::max(clock_type::now() - began, clock_type::duration{1});
    auto fitting = static_cast<size_t>(static_cast<double>(tried) * replay_batch_time / took);
    auto most = std::min(2 * tried, st.cfg.spool_replay_batch_max);
    st.replay_batch_events =
      std::clamp<size_t>(fitting, std::min(least_replay_batch, most), most);
  }
  pipeline_metrics::global().replayed_events_total += replayed;
  st.drained_events += replayed;
  replay_source(st); // deletes an orphan replayed to its end
  sync_spool_gauges(st);
  if (!spool_pending(st)) {
    auto seconds =
      std::chrono::duration<double>(clock_type::now() - st.drain_began).count();
    spdlog::info("writer {}: spool replayed into PostgreSQL: {} events in {:.1f} s ({:.0f}/s)",
                 st.index, st.drained_events, seconds,
                 seconds > 0 ? static_cast<double>(st.drained_events) / seconds : 0.0);
    st.drained_events = 0;
    st.drain_began = {};
    st.replay_batch_events = 0;
    return;
  }
  // More to do: after the parts that queued meanwhile; a record of the next
  // round waits for the replay interval.
  schedule_replay(self, more, more);
}

// Quarantine files of writers that no longer exist (the pool shrank) go into
// this writer's quarantine, so `spool list` and `requeue` find them with the
// others. Spool files of such writers are not copied: the replay reads them
// where they are (persistence_state::orphans).
void adopt_orphan_quarantines(persistence_state& st, const std::filesystem::path& dir) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    auto name = entry.path().filename().string();
    auto other = writer_of_file(name, quarantine_file_suffix);
    if (!other || *other < st.cfg.writers || *other % st.cfg.writers != st.index)
      continue;
    spool orphan{entry.path().string(), SIZE_MAX};
    while (auto record = next_record(orphan)) {
      if (st.quarantine->append(record->events, record->notes) != spool::append_status::ok) {
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

// Spool files of writers that no longer exist: this writer replays those
// whose number falls to it, in the order of their numbers.
void open_orphan_spools(persistence_state& st, const std::filesystem::path& dir) {
  std::error_code ec;
  std::map<size_t, std::string> found;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    auto other = writer_of_file(entry.path().filename().string(), spool_file_suffix);
    if (other && *other >= st.cfg.writers && *other % st.cfg.writers == st.index)
      found.emplace(*other, entry.path().string());
  }
  for (const auto& [writer, path] : found) {
    auto orphan = std::make_unique<spool>(path, SIZE_MAX);
    if (orphan->empty()) {
      orphan.reset();
      std::filesystem::remove(path, ec);
      continue;
    }
    st.orphans.push_back(std::move(orphan));
    pipeline_metrics::global().spool_corrupt_records_total +=
      st.orphans.back()->corrupt_records();
    spdlog::info("writer {}: will replay {} of writer {} ({} bytes)", st.index, path, writer,
                 st.orphans.back()->bytes());
  }
}

void start_spool(writer_self self) {
  auto& st = self->state;
  if (st.cfg.spool_dir.empty())
    return;
  std::filesystem::path dir{st.cfg.spool_dir};
  std::filesystem::create_directories(dir);
  auto share = st.cfg.spool_max_bytes / st.cfg.writers;
  st.outage_spool =
    std::make_unique<spool>(writer_file(st.cfg.spool_dir, st.index, spool_file_suffix), share);
  // The quarantine has a limit of its own, the same share: a flood of
  // poison events then waits in the spool instead of filling the disk.
  st.quarantine = std::make_unique<spool>(
    writer_file(st.cfg.spool_dir, st.index, quarantine_file_suffix), share);
  pipeline_metrics::global().spool_corrupt_records_total += st.outage_spool->corrupt_records();
  open_orphan_spools(st, dir);
  adopt_orphan_quarantines(st, dir);
  sync_spool_gauges(st);
  if (!st.quarantine->empty())
    spdlog::warn("writer {}: {} quarantined events in {} (`kapso-ingest spool list`)",
                 st.index, st.quarantine->records(), st.quarantine->path());
  if (spool_pending(st)) {
    // Opening read no record: the replay streams them once the schema is
    // known, batch by batch beside live traffic.
    spdlog::info("writer {}: {} spooled batches ({} bytes) to replay", st.index,
                 st.reported_spool_records, st.reported_spool_bytes);
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
  st.suspects = std::make_unique<suspect_tracker>();
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
