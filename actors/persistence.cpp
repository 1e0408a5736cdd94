// Group commit: writes queue in the mailbox while a transaction runs, and
// the next commit takes all of them at once.
#include "actors/persistence.hpp"

#include <filesystem>
#include <optional>

#include <spdlog/spdlog.h>

#include "actors/metrics.hpp"
#include "persistence/spool.hpp"
#include "persistence/store.hpp"

namespace kapso {

namespace {

using clock_type = std::chrono::steady_clock;
constexpr auto sweep_period = std::chrono::seconds(10);
// After a failed attempt, batches go straight to the spool for this long
// instead of each waiting on a dead database.
constexpr auto down_grace = std::chrono::milliseconds(1000);

using writer_actor = caf::stateful_actor<persistence_state>;

// Answers every write of a batch with its outcome.
void finish(const std::vector<write_outcome>& outcomes,
            std::vector<caf::typed_response_promise<write_outcome>>& waiting,
            const std::vector<routed_event>& batch) {
  for (size_t i = 0; i < waiting.size(); ++i) {
    if (outcomes[i] == write_outcome::retry) {
      waiting[i].deliver(make_error(ingest_errc::unavailable));
      continue;
    }
    metrics::global().count_event(batch[i].ev.event_type, outcomes[i]);
    waiting[i].deliver(outcomes[i]);
  }
}

// Commits `batch`, retrying conflicts and isolating events the database
// rejects. Throws only when the database is unavailable.
std::vector<write_outcome> commit_with_retries(writer_actor* self,
                                               const std::vector<routed_event>& batch) {
  auto& st = self->state;
  auto deadline = clock_type::now() + st.cfg.commit_timeout;
  for (int attempt = 0;; ++attempt) {
    try {
      auto started = clock_type::now();
      auto result = st.store->commit_batch(batch);
      metrics::global().commit_seconds.observe(
        std::chrono::duration<double>(clock_type::now() - started).count());
      metrics::global().batch_size.observe(static_cast<double>(batch.size()));
      if (!result.pending.empty()) {
        // A message committed by another writer while this transaction ran
        // is not seen by it: look again now that both are committed.
        try {
          st.store->apply_pending(result.pending);
        } catch (const std::exception& e) {
          spdlog::warn("writer {}: re-applying pending statuses failed: {}", st.index, e.what());
        }
      }
      return std::move(result.outcomes);
    } catch (const std::exception& e) {
      metrics::global().commit_failures_total++;
      auto kind = classify_failure(e);
      if (kind == failure_kind::conflict && clock_type::now() < deadline && attempt < 8) {
        spdlog::debug("writer {}: conflict, retrying batch of {}: {}", st.index, batch.size(), e.what());
        continue;
      }
      if (kind == failure_kind::unavailable) {
        st.store->disconnect();
        if (attempt == 0 && clock_type::now() < deadline)
          continue; // one reconnect: the server may just have dropped us
        throw;
      }
      if (attempt == 0) {
        // Perhaps a cached conversation was deleted by another application:
        // look the ids up again before blaming an event.
        st.store->forget_cached_ids();
        continue;
      }
      if (batch.size() == 1 && kind == failure_kind::stale_reference) {
        const auto& ev = batch.front().ev;
        spdlog::warn("event {} ({}) refers to a workspace row that no longer exists; "
                     "answered 503 so it is delivered again: {}",
                     ev.message_id.empty() ? "-" : ev.message_id, ev.event_type, e.what());
        return {write_outcome::retry};
      }
      if (batch.size() == 1) {
        const auto& ev = batch.front().ev;
        spdlog::warn("event {} ({}) rejected by the database, ignored: {}",
                     ev.message_id.empty() ? "-" : ev.message_id, ev.event_type, e.what());
        return {write_outcome::ignored};
      }
      // One bad event must not block the others: write them one by one.
      std::vector<write_outcome> outcomes;
      outcomes.reserve(batch.size());
      for (const auto& ev : batch)
        outcomes.push_back(commit_with_retries(self, {ev})[0]);
      return outcomes;
    }
  }
}

void schedule_replay(writer_actor* self) {
  auto& st = self->state;
  if (st.replay_scheduled)
    return;
  st.replay_scheduled = true;
  self->delayed_send(self, st.cfg.spool_replay_interval, replay_atom::value);
}

// Brings the process-wide spool gauges in line with this writer's spool.
void sync_spool_gauges(persistence_state& st) {
  auto bytes = static_cast<int64_t>(st.outage_spool->bytes());
  auto records = static_cast<int64_t>(st.outage_spool->records());
  metrics::global().spool_bytes += bytes - st.reported_spool_bytes;
  metrics::global().spool_records += records - st.reported_spool_records;
  st.reported_spool_bytes = bytes;
  st.reported_spool_records = records;
}

// The spool's next record; the corrupt ones it skipped on the way are counted.
std::optional<spool::record> next_record(spool& s) {
  auto corrupt_before = s.corrupt_records();
  auto record = s.next();
  metrics::global().spool_corrupt_records_total += s.corrupt_records() - corrupt_before;
  return record;
}

// Replays the spool in order, one record at a time; true when it is empty
// afterwards. A record leaves the spool only once committed.
bool replay(writer_actor* self) {
  auto& st = self->state;
  if (!st.outage_spool || st.outage_spool->empty())
    return true;
  size_t events = 0;
  bool drained = true;
  try {
    while (auto record = next_record(*st.outage_spool)) {
      commit_with_retries(self, record->events);
      st.outage_spool->consumed(*record);
      events += record->events.size();
    }
  } catch (const std::exception& e) {
    drained = false;
    spdlog::debug("writer {}: spool replay postponed: {}", st.index, e.what());
  }
  sync_spool_gauges(st);
  metrics::global().replayed_events_total += events;
  if (!drained) {
    st.db_down = true;
    st.db_down_since = clock_type::now();
    schedule_replay(self);
    return false;
  }
  st.db_down = false;
  spdlog::info("writer {}: replayed {} spooled events into PostgreSQL", st.index, events);
  return true;
}

void commit_now(writer_actor* self) {
  auto& st = self->state;
  if (st.batch.empty())
    return;
  std::vector<routed_event> batch;
  std::vector<caf::typed_response_promise<write_outcome>> waiting;
  batch.swap(st.batch);
  waiting.swap(st.waiting);
  metrics::global().writer_queue -= static_cast<int64_t>(batch.size());
  bool spooled_before = st.outage_spool && !st.outage_spool->empty();
  bool recently_down = st.db_down && clock_type::now() - st.db_down_since < down_grace;
  if (!recently_down && (!spooled_before || replay(self))) {
    try {
      auto outcomes = commit_with_retries(self, batch);
      st.db_down = false;
      finish(outcomes, waiting, batch);
      return;
    } catch (const std::exception& e) {
      if (!st.db_down)
        spdlog::error("writer {}: PostgreSQL unavailable, batch of {} not committed: {}",
                      st.index, batch.size(), e.what());
      st.db_down = true;
      st.db_down_since = clock_type::now();
    }
  }
  // PostgreSQL is away: the spool keeps the batch durably, or we refuse it.
  if (st.outage_spool) {
    auto status = st.outage_spool->append(batch);
    if (status == spool::append_status::ok) {
      sync_spool_gauges(st);
      metrics::global().spooled_events_total += batch.size();
      schedule_replay(self);
      finish(std::vector<write_outcome>(batch.size(), write_outcome::accepted), waiting, batch);
      return;
    }
    spdlog::error("writer {}: spool {} {}, answering 503", st.index, st.outage_spool->path(),
                  status == spool::append_status::full ? "full" : "unwritable");
  }
  for (auto& rp : waiting)
    rp.deliver(make_error(ingest_errc::unavailable));
}

void adopt_orphan_spools(persistence_state& st, const std::filesystem::path& dir) {
  // Files of writers that no longer exist (the pool shrank) go to a writer
  // of the current pool, so a restart never strands acknowledged events.
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    auto name = entry.path().filename().string();
    size_t other = 0;
    if (std::sscanf(name.c_str(), "writer-%zu.spool", &other) != 1 || other < st.cfg.writers
        || other % st.cfg.writers != st.index)
      continue;
    spool orphan{entry.path().string(), SIZE_MAX};
    metrics::global().spool_corrupt_records_total += orphan.corrupt_records();
    while (auto record = next_record(orphan)) {
      if (st.outage_spool->append(record->events) != spool::append_status::ok) {
        // What is left stays in the orphan's file for the next start.
        spdlog::error("writer {}: cannot take over the rest of {}", st.index, name);
        break;
      }
      orphan.consumed(*record);
    }
    if (orphan.empty() && orphan.bytes() == 0)
      std::filesystem::remove(entry.path(), ec);
  }
}

} // namespace

persistence_state::persistence_state() = default;

persistence_state::~persistence_state() {
  metrics::global().writer_queue -= static_cast<int64_t>(batch.size());
}

size_t writer_for(const conversation_key& key, size_t writers) {
  return writers <= 1 ? 0 : conversation_key_hash{}(key) % writers;
}

caf::behavior persistence_writer(writer_actor* self, settings cfg, size_t index) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.index = index;
  st.store = std::make_unique<inbox_store>(st.cfg.database_url, st.cfg.statement_timeout,
                                           st.cfg.commit_timeout);
  if (!st.cfg.spool_dir.empty()) {
    std::filesystem::path dir{st.cfg.spool_dir};
    std::filesystem::create_directories(dir);
    auto file = dir / ("writer-" + std::to_string(index) + ".spool");
    st.outage_spool = std::make_unique<spool>(file.string(),
                                              st.cfg.spool_max_bytes / st.cfg.writers);
    metrics::global().spool_corrupt_records_total += st.outage_spool->corrupt_records();
    adopt_orphan_spools(st, dir);
    sync_spool_gauges(st);
    if (!st.outage_spool->empty()) {
      spdlog::info("writer {}: {} spooled batches to replay", index, st.outage_spool->records());
      self->send(self, replay_atom::value);
      st.replay_scheduled = true;
    }
  }
  try {
    st.store->ensure_connected();
  } catch (const std::exception& e) {
    spdlog::warn("writer {}: PostgreSQL not reachable yet: {}", index, e.what());
  }
  if (index == 0)
    self->delayed_send(self, sweep_period, sweep_atom::value);
  return {
    [=](persist_atom, routed_event& ev) -> caf::result<write_outcome> {
      auto& st = self->state;
      auto rp = self->make_response_promise<write_outcome>();
      st.batch.push_back(std::move(ev));
      st.waiting.push_back(rp);
      metrics::global().writer_queue++;
      if (st.batch.size() >= st.cfg.batch_max) {
        commit_now(self);
      } else if (!st.commit_scheduled) {
        // A message to ourselves queues behind every write already in the
        // mailbox: the commit takes all of them (group commit).
        st.commit_scheduled = true;
        if (st.cfg.flush_interval.count() == 0)
          self->send(self, commit_atom::value);
        else
          self->delayed_send(self, st.cfg.flush_interval, commit_atom::value);
      }
      return rp;
    },
    [=](commit_atom) {
      self->state.commit_scheduled = false;
      commit_now(self);
    },
    [=](replay_atom) {
      self->state.replay_scheduled = false;
      replay(self);
    },
    [=](sweep_atom) {
      try {
        self->state.store->sweep_pending();
      } catch (const std::exception& e) {
        spdlog::debug("pending-status sweep skipped: {}", e.what());
      }
      self->delayed_send(self, sweep_period, sweep_atom::value);
    },
  };
}

} // namespace kapso
