// Per-conversation ordering and in-memory deduplication of retries.
#include "actors/conversation.hpp"

#include "actors/metrics.hpp"

namespace kapso {

namespace {

constexpr size_t recent_capacity = 64;

using conversation_actor = caf::stateful_actor<conversation_state>;

bool is_message(const event& ev) {
  return ev.kind == event_kind::message_received || ev.kind == event_kind::message_sent;
}

void remember(conversation_state& st, const std::string& message_id) {
  if (!st.recent.insert(message_id).second)
    return;
  st.recent_order.push_back(message_id);
  if (st.recent_order.size() > recent_capacity) {
    st.recent.erase(st.recent_order.front());
    st.recent_order.pop_front();
  }
}

} // namespace

conversation_state::~conversation_state() {
  metrics::global().conversation_actors--;
}

caf::behavior conversation(conversation_actor* self, caf::actor writer,
                           std::chrono::milliseconds idle) {
  self->state.writer = std::move(writer);
  self->state.idle = idle;
  self->state.last_activity = self->clock().now();
  // One timer per idle period rather than a receive timeout re-armed on
  // every message: the clock is shared by all actors and not free.
  self->delayed_send(self, idle, idle_atom::value);
  metrics::global().conversation_actors++;
  return {
    [=](ingest_atom, routed_event& ev) -> caf::result<write_outcome> {
      auto& st = self->state;
      st.last_activity = self->clock().now();
      auto rp = self->make_response_promise<write_outcome>();
      std::string message_id;
      if (is_message(ev.ev)) {
        message_id = ev.ev.message_id;
        if (st.recent.count(message_id) != 0) {
          metrics::global().count_event(ev.ev.event_type, write_outcome::duplicate);
          rp.deliver(write_outcome::duplicate);
          return rp;
        }
        auto waiting = st.in_flight.find(message_id);
        if (waiting != st.in_flight.end()) {
          waiting->second.copies.push_back(rp);
          return rp;
        }
        st.in_flight.emplace(message_id, conversation_state::pending_message{ev.ev.event_type, {}});
      }
      ++st.outstanding;
      self->request(st.writer, within_delivery_deadline, persist_atom::value, std::move(ev))
        .then(
          [=](write_outcome outcome) mutable {
            auto& st = self->state;
            st.last_activity = self->clock().now();
            --st.outstanding;
            rp.deliver(outcome);
            if (message_id.empty())
              return;
            auto copies = st.in_flight.find(message_id);
            if (copies != st.in_flight.end()) {
              // The copies are retries of a message that is now stored.
              auto copy_outcome = outcome == write_outcome::accepted ? write_outcome::duplicate
                                                                     : outcome;
              for (auto& copy : copies->second.copies) {
                if (copy_outcome != write_outcome::retry)
                  metrics::global().count_event(copies->second.event_type, copy_outcome);
                copy.deliver(copy_outcome);
              }
              st.in_flight.erase(copies);
            }
            if (outcome == write_outcome::accepted || outcome == write_outcome::duplicate)
              remember(st, message_id);
          },
          [=](caf::error& err) mutable {
            auto& st = self->state;
            st.last_activity = self->clock().now();
            --st.outstanding;
            rp.deliver(err);
            if (message_id.empty())
              return;
            auto copies = st.in_flight.find(message_id);
            if (copies != st.in_flight.end()) {
              for (auto& copy : copies->second.copies)
                copy.deliver(err);
              st.in_flight.erase(copies);
            }
          });
      return rp;
    },
    [=](idle_atom) {
      auto& st = self->state;
      auto idle_for = self->clock().now() - st.last_activity;
      if (idle_for >= st.idle && st.outstanding == 0 && st.in_flight.empty()) {
        self->quit();
        return;
      }
      auto wait = idle_for >= st.idle ? st.idle
                                      : std::chrono::duration_cast<std::chrono::milliseconds>(
                                          st.idle - idle_for);
      self->delayed_send(self, wait, idle_atom::value);
    },
  };
}

} // namespace kapso
