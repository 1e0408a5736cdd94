// Workspace resolution, signature check and fan-out of one delivery.
#include "actors/router.hpp"

#include <ctime>
#include <optional>

#include <spdlog/spdlog.h>

#include "actors/conversation.hpp"
#include "actors/metrics.hpp"
#include "actors/persistence.hpp"
#include "http/signature.hpp"

namespace kapso {

struct delivery_job {
  delivery_ptr d;
  // Who is answered: the promise of a request, or `reply_to` with `ticket`.
  caf::typed_response_promise<delivery_result> rp;
  caf::actor reply_to;
  uint64_t ticket = 0;
  uint64_t id = 0; // key in router_state::open_jobs
  caf::actor_clock::time_point deadline;
  bool answered = false;
  size_t lookups_left = 0;
  bool lookup_failed = false;
  // Whether a global secret signs the body, once computed (an HMAC of a
  // large body is not free).
  std::optional<bool> global_signed;
};

namespace {

using clock_type = std::chrono::steady_clock;
using router_actor = caf::stateful_actor<router_state>;

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

// How often deliveries past their deadline are looked for: the precision of
// the timeout, at the cost of one timer per period instead of per delivery.
constexpr auto deadline_sweep_period = std::chrono::milliseconds(100);

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
bool take_lookup_token(router_state& st, caf::actor_clock::time_point now) {
  auto rate = static_cast<double>(st.cfg.lookup_rate);
  if (st.lookup_tokens_at != caf::actor_clock::time_point{}) {
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

// Answers a delivery once: later outcomes of a delivery that timed out are
// dropped.
void answer(router_actor* self, delivery_job& job, caf::expected<delivery_result> x) {
  if (job.answered)
    return;
  job.answered = true;
  if (job.reply_to) {
    if (x)
      self->send(job.reply_to, ingest_atom::value, job.ticket, *x);
    else
      self->send(job.reply_to, ingest_atom::value, job.ticket, x.error());
  } else if (x) {
    job.rp.deliver(*x);
  } else {
    job.rp.deliver(x.error());
  }
  // Last: this may release the job.
  self->state.open_jobs.erase(job.id);
}

// Answers `ingest_errc::timeout` for deliveries past their deadline.
void sweep_deadlines(router_actor* self) {
  auto& st = self->state;
  auto now = self->clock().now();
  while (!st.open_jobs.empty() && st.open_jobs.begin()->second->deadline <= now) {
    auto job = st.open_jobs.begin()->second;
    spdlog::warn("delivery of {} events not committed within {} ms: answered 503 "
                 "(Kapso retries)", job->d->events.size(), st.cfg.request_timeout.count());
    answer(self, *job, make_error(ingest_errc::timeout));
  }
  st.deadline_sweep_scheduled = !st.open_jobs.empty();
  if (st.deadline_sweep_scheduled)
    self->delayed_send(self, deadline_sweep_period, sweep_atom::value);
}

// Counts the outcomes of one delivery's events and answers once all are in.
struct tally {
  router_actor* self;
  std::shared_ptr<delivery_job> job;
  delivery_result result;
  size_t remaining = 0;
  bool failed = false; // an event was not written: the delivery is retried

  void add(write_outcome outcome) {
    switch (outcome) {
      case write_outcome::accepted: ++result.accepted; break;
      case write_outcome::duplicate: ++result.duplicates; break;
      case write_outcome::ignored: ++result.ignored; break;
      case write_outcome::retry: fail(); return;
    }
    done_one();
  }

  void fail() {
    failed = true;
    done_one();
  }

  void done_one() {
    if (--remaining > 0)
      return;
    if (failed)
      answer(self, *job, make_error(ingest_errc::unavailable));
    else
      answer(self, *job, result);
  }
};

// Whose serial order an event joins: its customer's conversation, or for a
// status without a customer, its message.
conversation_key key_for(const routed_event& r) {
  if (!r.ev.contact_key.empty())
    return {r.workspace_id, r.ev.contact_key};
  return {r.workspace_id, "msg:" + r.ev.message_id};
}

// Where an event goes: its conversation actor (spawned if needed), or at
// the cap straight to the writer owning the conversation, which serialises
// too.
struct event_target {
  caf::actor actor;
  bool is_writer = false;
};

event_target target_for(router_actor* self, const conversation_key& key) {
  auto& st = self->state;
  auto found = st.conversations.find(key);
  if (found != st.conversations.end())
    return {found->second};
  auto& writer = st.writers[writer_for(key, st.writers.size())];
  if (st.conversations.size() >= st.cfg.conversation_max)
    return {writer, true};
  // Monitored, not linked: a link puts every conversation in the router's
  // own attachable list, which each idle stop then walks (quadratic).
  auto actor = self->spawn(conversation, writer, st.cfg.conversation_idle);
  self->monitor(actor);
  st.key_of.emplace(actor.address(), key);
  st.conversations.emplace(key, actor);
  return {actor};
}

// Where an event comes from: its delivery and place in it, so a resend
// rebuilds it instead of every event carrying a spare copy.
struct event_source {
  delivery_ptr d;
  size_t index;
  std::string workspace_id;
  int64_t timestamp; // the event's own, or its arrival time when it had none
};

routed_event routed(const event_source& src) {
  routed_event r{src.workspace_id, src.d->events[src.index]};
  r.ev.timestamp = src.timestamp;
  return r;
}

void send_event(router_actor* self, event_source src, std::shared_ptr<tally> t,
                bool may_resend) {
  auto r = routed(src);
  auto key = key_for(r);
  auto [target, to_writer] = target_for(self, key);
  auto on_outcome = [=](write_outcome outcome) { t->add(outcome); };
  auto on_error = [=](caf::error& err) {
    // A conversation actor that stopped for idleness just before our
    // request arrived: start a fresh one and send again, once.
    if (may_resend && err == caf::sec::request_receiver_down) {
      auto& st = self->state;
      auto found = st.conversations.find(key);
      if (found != st.conversations.end() && found->second == target) {
        st.key_of.erase(target.address());
        st.conversations.erase(found);
      }
      send_event(self, src, t, false);
      return;
    }
    spdlog::warn("event {} not confirmed (delivery answered 503, Kapso retries): {}",
                 src.d->events[src.index].message_id, self->system().render(err));
    t->fail();
  };
  if (to_writer)
    self->request(target, within_delivery_deadline, persist_atom::value, std::move(r))
      .then(on_outcome, on_error);
  else
    self->request(target, within_delivery_deadline, ingest_atom::value, std::move(r))
      .then(on_outcome, on_error);
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
bool verify(const router_state& st, delivery_job& job,
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
    if (global && !job.global_signed)
      job.global_signed = signature_ok(d, secrets);
    if (global ? !*job.global_signed : !signature_ok(d, secrets))
      return false;
    checked.push_back(&secrets);
  }
  return true;
}

void process(router_actor* self, const std::shared_ptr<delivery_job>& job) {
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
    answer(self, *job, make_error(ingest_errc::bad_signature));
    return;
  }
  auto t = std::make_shared<tally>();
  t->self = self;
  t->job = job;
  t->result.ignored = d.malformed;
  if (d.malformed > 0)
    metrics::global().count_event("malformed", write_outcome::ignored, d.malformed);
  t->remaining = 1; // held until every event is sent
  auto now = self->clock().now();
  for (size_t i = 0; i < d.events.size(); ++i) {
    const auto& ev = d.events[i];
    auto* ws = entries[i];
    if (ev.phone_number_id.size() > max_phone_number_id_length) {
      spdlog::warn("event {} ignored: its phone_number_id is {} bytes long (at most {})",
                   ev.message_id.empty() ? "-" : ev.message_id.substr(0, max_type_length),
                   ev.phone_number_id.size(), max_phone_number_id_length);
      metrics::global().count_event(ev.event_type, write_outcome::ignored);
      ++t->result.ignored;
      continue;
    }
    if (ev.kind == event_kind::unknown) {
      if (ev.event_type.size() <= max_type_length
          && st.unknown_types_logged.size() < max_logged_types
          && st.unknown_types_logged.insert(ev.event_type).second)
        spdlog::info("event type '{}' is not handled: accepted and ignored", ev.event_type);
      metrics::global().count_event(ev.event_type, write_outcome::ignored);
      ++t->result.ignored;
      continue;
    }
    if (ws == nullptr || !ws->known) {
      // Bounded: ids come from the network, not from our own tables.
      if (st.unknown_logged.size() >= max_unknown_ids)
        st.unknown_logged.clear();
      auto& logged = st.unknown_logged[ev.phone_number_id];
      if (logged == clock_type::time_point{} || now - logged >= st.cfg.unknown_log_period) {
        logged = now;
        spdlog::warn("phone_number_id {} matches no workspace: its events are ignored",
                     ev.phone_number_id);
      }
      metrics::global().count_event(ev.event_type, write_outcome::ignored);
      ++t->result.ignored;
      continue;
    }
    if (ev.kind == event_kind::conversation_inactive) {
      metrics::global().count_event(ev.event_type, write_outcome::accepted);
      ++t->result.accepted;
      continue;
    }
    auto timestamp = ev.timestamp != 0 ? ev.timestamp : static_cast<int64_t>(std::time(nullptr));
    ++t->remaining;
    send_event(self, event_source{job->d, i, ws->info.id, timestamp}, t, true);
  }
  t->done_one();
}

void wake(router_actor* self, const std::vector<std::string>& ids, bool ok) {
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
      if (--job->lookups_left > 0)
        continue;
      if (job->answered)
        continue; // timed out while waiting for the look-up
      if (job->lookup_failed)
        answer(self, *job, make_error(ingest_errc::unavailable));
      else
        process(self, job);
    }
  }
}

void look_up(router_actor* self, std::vector<std::string> ids) {
  auto& st = self->state;
  // The directory's own deadline is actor_timeout; the margin lets its
  // answer arrive rather than racing it.
  self->request(st.directory, st.cfg.actor_timeout + std::chrono::milliseconds(500),
                resolve_atom::value, ids)
    .then(
      [=](std::vector<workspace_info>& found) {
        auto& st = self->state;
        auto now = self->clock().now();
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
        for (auto& info : found) {
          auto& entry = st.workspaces[info.phone_number_id];
          if (!entry.known)
            --st.unknown_entries;
          entry.known = true;
          entry.info = std::move(info);
        }
        metrics::global().workspace_cache_entries = static_cast<int64_t>(st.workspaces.size());
        wake(self, ids, true);
      },
      [=](caf::error&) {
        // PostgreSQL is away: a workspace we knew keeps working from the
        // cache (its events may go to the spool); unknown ones cannot.
        auto& st = self->state;
        st.directory_failed_at = self->clock().now();
        std::vector<std::string> stale_ok;
        std::vector<std::string> failed;
        for (const auto& id : ids) {
          auto found = st.workspaces.find(id);
          if (found != st.workspaces.end() && found->second.known)
            stale_ok.push_back(id);
          else
            failed.push_back(id);
        }
        wake(self, stale_ok, true);
        wake(self, failed, false);
      });
}

// Registers a new delivery under its deadline, then resolves its
// workspaces (from the cache or the directory) and processes it.
void start(router_actor* self, const std::shared_ptr<delivery_job>& job) {
  auto& st = self->state;
  auto now = self->clock().now();
  job->id = st.next_job++;
  job->deadline = now + st.cfg.request_timeout;
  st.open_jobs.emplace(job->id, job);
  if (!st.deadline_sweep_scheduled) {
    st.deadline_sweep_scheduled = true;
    self->delayed_send(self, deadline_sweep_period, sweep_atom::value);
  }
  std::vector<std::string> to_fetch;
  // A delivery that a global secret signs may look its workspaces up; one
  // that no global secret signs can only be valid for a workspace with a
  // secret of its own, so its look-ups of ids we do not know are rate
  // limited: an unsigned flood cannot crowd out signed traffic.
  if (!st.cfg.webhook_secrets.empty())
    job->global_signed = signature_ok(*job->d, st.cfg.webhook_secrets);
  bool global_signed = job->global_signed.value_or(false);
  bool directory_down = st.directory_failed_at != caf::actor_clock::time_point{}
                        && now - st.directory_failed_at < directory_down_hold;
  bool throttled = false;
  for (const auto& ev : job->d->events) {
    const auto& id = ev.phone_number_id;
    if (id.size() > max_phone_number_id_length)
      continue; // ignored by process()
    auto found = st.workspaces.find(id);
    bool known = found != st.workspaces.end();
    if (known && now - found->second.fetched < st.cfg.workspace_cache_ttl)
      continue;
    if (known && found->second.known && directory_down)
      continue; // its last known entry serves while the database is away
    if (!known && !global_signed && !take_lookup_token(st, now)) {
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
    spdlog::warn("delivery refused (503): look-ups of unknown phone_number_ids for deliveries "
                 "no global secret signs are over router.lookup-rate");
    answer(self, *job, make_error(ingest_errc::overloaded));
    return;
  }
  if (job->lookups_left == 0)
    process(self, job);
}

} // namespace

caf::behavior router(router_actor* self, settings cfg, caf::actor directory,
                     std::vector<caf::actor> writers) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.directory = std::move(directory);
  st.writers = std::move(writers);
  // When the router is told to stop, its conversations stop with it.
  self->set_exit_handler([=](caf::exit_msg& msg) {
    for (auto& [key, actor] : self->state.conversations)
      self->send_exit(actor, msg.reason);
    self->quit(msg.reason);
  });
  self->set_down_handler([=](caf::down_msg& msg) {
    auto& st = self->state;
    auto found = st.key_of.find(msg.source);
    if (found == st.key_of.end())
      return;
    auto conv = st.conversations.find(found->second);
    if (conv != st.conversations.end() && conv->second.address() == msg.source)
      st.conversations.erase(conv);
    st.key_of.erase(found);
  });
  return {
    [=](ingest_atom, delivery_ptr d) -> caf::result<delivery_result> {
      auto job = std::make_shared<delivery_job>();
      job->d = std::move(d);
      job->rp = self->make_response_promise<delivery_result>();
      start(self, job);
      return job->rp;
    },
    [=](ingest_atom, delivery_ptr d, uint64_t ticket) {
      auto job = std::make_shared<delivery_job>();
      job->d = std::move(d);
      job->reply_to = caf::actor_cast<caf::actor>(self->current_sender());
      job->ticket = ticket;
      if (!job->reply_to) {
        spdlog::error("delivery sent without a sender to answer: dropped");
        return;
      }
      start(self, job);
    },
    [=](sweep_atom) { sweep_deadlines(self); },
  };
}

} // namespace kapso
