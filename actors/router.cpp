// Workspace resolution, signature check and the split of one delivery into
// one part per writer.
#include "actors/router.hpp"

#include <algorithm>
#include <ctime>

#include <spdlog/spdlog.h>

#include "domain/signature.hpp"
#include "metrics/pipeline_metrics.hpp"

namespace kapso {

struct delivery_job {
  delivery_ptr d;
  uint64_t ticket = 0;
  bool answered = false;
  size_t lookups_left = 0;
  bool lookup_failed = false;
  // Whether a global secret signs the body: computed once in start() when
  // there are global secrets (an HMAC of a large body is not free).
  bool global_signed = false;
};

namespace {

using clock_type = std::chrono::steady_clock;
using router_self = router_actor::stateful_pointer<router_state>;

// Caps the maps keyed by values seen on the wire, in entries; the values
// themselves are bounded in length, so the maps are bounded in bytes too.
constexpr size_t max_unknown_ids = 10000;  // negative cache entries, log times
constexpr size_t max_logged_types = 1000;  // unknown event types logged once
constexpr size_t max_type_length = 100;
// kapso_phone_id is varchar(100): a longer id names no workspace.
constexpr size_t max_phone_number_id_length = 100;

// While the directory's last look-up failed this recently, a workspace we
// know is served from its last known entry without asking again.
constexpr auto directory_down_hold = std::chrono::milliseconds(1000);

// Drops the negative cache entries (ids that matched no workspace) that no
// delivery is waiting for; known workspaces stay.
void forget_unknown_workspaces(router_state& st) {
  for (auto it = st.workspaces.begin(); it != st.workspaces.end();) {
    if (!it->second.known && st.waiting.count(it->first) == 0) {
      it = st.workspaces.erase(it);
      --st.unknown_entries;
    } else {
      ++it;
    }
  }
}

// A token bucket of router.lookup-rate tokens per second, one second deep.
bool take_lookup_token(router_state& st, clock_type::time_point now) {
  auto rate = static_cast<double>(st.cfg.lookup_rate);
  if (st.lookup_tokens_at != clock_type::time_point{}) {
    auto elapsed = std::chrono::duration<double>(now - st.lookup_tokens_at).count();
    st.lookup_tokens = std::min(rate, st.lookup_tokens + elapsed * rate);
  } else {
    st.lookup_tokens = rate;
  }
  st.lookup_tokens_at = now;
  if (st.lookup_tokens < 1.0)
    return false;
  st.lookup_tokens -= 1.0;
  return true;
}

void refuse(router_state& st, delivery_job& job, ingest_errc why) {
  if (job.answered)
    return;
  job.answered = true;
  st.sink->failed(job.ticket, why);
}

const std::vector<std::string>& secrets_for(const router_state& st, const workspace_entry* ws) {
  if (ws != nullptr && ws->known && !ws->info.secrets.empty())
    return ws->info.secrets;
  return st.cfg.webhook_secrets;
}

bool signature_ok(const delivery& d, const std::vector<std::string>& secrets) {
  return (!d.kapso_signature.empty() && signature_matches(d.body, d.kapso_signature, secrets))
         || (!d.hub_signature.empty() && signature_matches(d.body, d.hub_signature, secrets));
}

// Every event's workspace must accept the signature; events of unknown
// workspaces are checked against the global secrets when there are any.
bool verify(const router_state& st, const delivery_job& job,
            const std::vector<const workspace_entry*>& entries) {
  const auto& d = *job.d;
  // A delivery without events still proves its signature against the
  // global secrets.
  if (entries.empty())
    return verify(st, job, {nullptr});
  std::vector<const std::vector<std::string>*> checked;
  for (auto* ws : entries) {
    const auto& secrets = secrets_for(st, ws);
    bool known = ws != nullptr && ws->known;
    if (secrets.empty()) {
      if (known && !st.cfg.allow_unsigned)
        return false;
      continue;
    }
    if (std::find(checked.begin(), checked.end(), &secrets) != checked.end())
      continue;
    bool global = &secrets == &st.cfg.webhook_secrets;
    if (global ? !job.global_signed : !signature_ok(d, secrets))
      return false;
    checked.push_back(&secrets);
  }
  return true;
}

// An event that needs no write: counted here, logged once where it says
// something about the sender.
bool settle_without_write(router_self self, const event& ev, const workspace_entry* ws,
                          delivery_result& counts) {
  auto& st = self->state;
  auto ignore = [&] {
    pipeline_metrics::global().count_event(ev.event_type, write_outcome::ignored);
    ++counts.ignored;
    return true;
  };
  if (ev.phone_number_id.size() > max_phone_number_id_length) {
    spdlog::warn("event {} ignored: its phone_number_id is {} bytes long (at most {})",
                 ev.message_id.substr(0, max_type_length), ev.phone_number_id.size(),
                 max_phone_number_id_length);
    return ignore();
  }
  if (ev.kind == event_kind::unknown) {
    if (ev.event_type.size() <= max_type_length
        && st.unknown_types_logged.size() < max_logged_types
        && st.unknown_types_logged.insert(ev.event_type).second)
      spdlog::info("event type '{}' is not handled: accepted and ignored", ev.event_type);
    return ignore();
  }
  if (ws == nullptr || !ws->known) {
    auto now = self->clock().now();
    if (st.unknown_logged.size() >= max_unknown_ids)
      st.unknown_logged.clear();
    auto& logged = st.unknown_logged[ev.phone_number_id];
    if (logged == clock_type::time_point{} || now - logged >= st.cfg.unknown_log_period) {
      logged = now;
      spdlog::warn("phone_number_id {} matches no workspace: its events are ignored",
                   ev.phone_number_id);
    }
    return ignore();
  }
  if (ev.kind == event_kind::conversation_inactive) {
    pipeline_metrics::global().count_event(ev.event_type, write_outcome::accepted);
    ++counts.accepted;
    return true;
  }
  return false;
}

// Verifies the delivery, then sends each writer the events of the
// conversations it owns: one message per (delivery, writer).
void process(router_self self, const std::shared_ptr<delivery_job>& job) {
  auto& st = self->state;
  const auto& d = *job->d;
  std::vector<const workspace_entry*> entries;
  entries.reserve(d.events.size());
  for (const auto& ev : d.events) {
    auto found = st.workspaces.find(ev.phone_number_id);
    entries.push_back(found == st.workspaces.end() ? nullptr : &found->second);
  }
  if (!verify(st, *job, entries)) {
    spdlog::warn("delivery rejected: signature missing or wrong ({} events)", d.events.size());
    refuse(st, *job, ingest_errc::bad_signature);
    return;
  }
  delivery_result counts;
  counts.ignored = d.malformed;
  if (d.malformed > 0)
    pipeline_metrics::global().count_event("malformed", write_outcome::ignored, d.malformed);
  std::vector<write_part> parts(st.writers.size());
  auto arrival = static_cast<int64_t>(std::time(nullptr));
  for (size_t i = 0; i < d.events.size(); ++i) {
    const auto& ev = d.events[i];
    if (settle_without_write(self, ev, entries[i], counts))
      continue;
    const auto& ws = entries[i]->info.id;
    auto& part = parts[writer_for(ws, ev, st.writers.size())];
    auto known = std::find(part.workspace_ids.begin(), part.workspace_ids.end(), ws);
    auto w = static_cast<uint32_t>(known - part.workspace_ids.begin());
    if (known == part.workspace_ids.end())
      part.workspace_ids.push_back(ws);
    part.items.push_back({static_cast<uint32_t>(i), w});
  }
  job->answered = true;
  auto used = static_cast<uint32_t>(
    std::count_if(parts.begin(), parts.end(), [](const auto& p) { return !p.items.empty(); }));
  if (used == 0) {
    st.sink->part_done(job->ticket, 1, counts);
    return;
  }
  bool first = true;
  for (size_t w = 0; w < parts.size(); ++w) {
    auto& part = parts[w];
    if (part.items.empty())
      continue;
    part.d = job->d;
    part.ticket = job->ticket;
    part.parts = used;
    part.arrival = arrival;
    if (first)
      part.counted = counts;
    first = false;
    self->send(st.writers[w], persist_atom::value, std::move(part));
  }
}

void wake(router_self self, const std::vector<std::string>& ids, bool ok) {
  auto& st = self->state;
  for (const auto& id : ids) {
    auto found = st.waiting.find(id);
    if (found == st.waiting.end())
      continue;
    auto jobs = std::move(found->second);
    st.waiting.erase(found);
    for (auto& job : jobs) {
      if (!ok)
        job->lookup_failed = true;
      if (--job->lookups_left > 0 || job->answered)
        continue;
      if (job->lookup_failed)
        refuse(st, *job, ingest_errc::unavailable);
      else
        process(self, job);
    }
  }
}

// The database did not answer for `ids`: those with a known entry (cached
// or from the directory's snapshot) are served from it; the others fail.
void wake_known(router_self self, const std::vector<std::string>& ids) {
  auto& st = self->state;
  std::vector<std::string> known;
  std::vector<std::string> failed;
  for (const auto& id : ids) {
    auto found = st.workspaces.find(id);
    if (found != st.workspaces.end() && found->second.known)
      known.push_back(id);
    else
      failed.push_back(id);
  }
  wake(self, known, true);
  wake(self, failed, false);
}

void look_up(router_self self, std::vector<std::string> ids) {
  auto& st = self->state;
  self->request(st.directory, st.cfg.workspace_lookup_timeout + lookup_answer_margin,
                resolve_atom::value, ids)
    .then(
      [=](workspace_lookup& answer) {
        auto& st = self->state;
        auto now = self->clock().now();
        if (answer.from_snapshot) {
          // PostgreSQL did not answer: the last known entries serve (stale,
          // so they are asked for again soon); ids without one cannot be
          // verified now.
          st.directory_failed_at = now;
          for (auto& info : answer.found) {
            auto [it, added] = st.workspaces.try_emplace(info.phone_number_id);
            auto& entry = it->second;
            if (!added && !entry.known)
              --st.unknown_entries;
            entry.known = true;
            entry.fetched = now - st.cfg.workspace_cache_ttl;
            entry.info = std::move(info);
          }
          wake_known(self, ids);
          return;
        }
        st.directory_failed_at = {};
        if (st.unknown_entries + ids.size() > max_unknown_ids)
          forget_unknown_workspaces(st);
        for (const auto& id : ids) {
          auto [it, added] = st.workspaces.try_emplace(id);
          auto& entry = it->second;
          if (added || entry.known)
            ++st.unknown_entries;
          entry.known = false;
          entry.info = workspace_info{};
          entry.fetched = now;
        }
        for (auto& info : answer.found) {
          auto& entry = st.workspaces[info.phone_number_id];
          if (!entry.known)
            --st.unknown_entries;
          entry.known = true;
          entry.info = std::move(info);
        }
        pipeline_metrics::global().workspace_cache_entries = static_cast<int64_t>(st.workspaces.size());
        wake(self, ids, true);
      },
      [=](caf::error&) {
        // PostgreSQL is away: a workspace we knew keeps working from the
        // cache (its events may go to the spool); unknown ones cannot.
        self->state.directory_failed_at = self->clock().now();
        wake_known(self, ids);
      });
}

// Resolves a new delivery's workspaces (from the cache or the directory),
// then processes it.
void start(router_self self, const std::shared_ptr<delivery_job>& job) {
  auto& st = self->state;
  auto now = self->clock().now();
  std::vector<std::string> to_fetch;
  // A delivery that a global secret signs may look its workspaces up; one
  // that no global secret signs can only be valid for a workspace with a
  // secret of its own, so its look-ups of ids we do not know are rate
  // limited: an unsigned flood cannot crowd out signed traffic.
  if (!st.cfg.webhook_secrets.empty()) {
    job->global_signed = signature_ok(*job->d, st.cfg.webhook_secrets);
    // No signature at all: a global secret applies to every event that has
    // no workspace secret of its own, and a workspace secret would need one
    // too, so no look-up can make it valid.
    const auto& d = *job->d;
    if (!st.cfg.allow_unsigned && d.kapso_signature.empty() && d.hub_signature.empty()) {
      spdlog::warn("delivery rejected: no signature ({} events)", d.events.size());
      refuse(st, *job, ingest_errc::bad_signature);
      return;
    }
  }
  bool directory_down = st.directory_failed_at != clock_type::time_point{}
                        && now - st.directory_failed_at < directory_down_hold;
  bool throttled = false;
  for (const auto& ev : job->d->events) {
    const auto& id = ev.phone_number_id;
    if (id.size() > max_phone_number_id_length)
      continue; // ignored by process()
    auto found = st.workspaces.find(id);
    bool cached = found != st.workspaces.end();
    if (cached && now - found->second.fetched < st.cfg.workspace_cache_ttl)
      continue;
    if (cached && found->second.known && directory_down)
      continue; // its last known entry serves while the database is away
    if (!cached && !job->global_signed && !take_lookup_token(st, now)) {
      throttled = true;
      break;
    }
    // Stale, known or not: ask the database before using it, so a new,
    // changed or re-created workspace takes effect within the TTL.
    auto& jobs = st.waiting[id];
    if (std::find(jobs.begin(), jobs.end(), job) != jobs.end())
      continue;
    if (jobs.empty())
      to_fetch.push_back(id);
    jobs.push_back(job);
    ++job->lookups_left;
  }
  if (!to_fetch.empty())
    look_up(self, std::move(to_fetch));
  if (throttled) {
    // Its signature matches no secret we can check without the database,
    // and look-ups for such deliveries are over router.lookup-rate: 401,
    // which Kapso retries like any other non-2xx answer.
    spdlog::warn("delivery rejected: its signature matches no known secret and look-ups of "
                 "unknown phone_number_ids are over router.lookup-rate");
    refuse(st, *job, ingest_errc::bad_signature);
    return;
  }
  if (job->lookups_left == 0)
    process(self, job);
}

} // namespace

router_state::~router_state() {
  if (!sink)
    return;
  for (auto& [id, jobs] : waiting)
    for (auto& job : jobs)
      refuse(*this, *job, ingest_errc::shutting_down);
}

router_actor::behavior_type router(router_self self, settings cfg, directory_actor directory,
                                   std::vector<writer_actor> writers, answer_sink_ptr sink) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.directory = std::move(directory);
  st.writers = std::move(writers);
  st.sink = std::move(sink);
  return {
    [=](ingest_atom, delivery_ptr& d, uint64_t ticket) {
      auto job = std::make_shared<delivery_job>();
      job->d = std::move(d);
      job->ticket = ticket;
      start(self, job);
    },
  };
}

} // namespace kapso
