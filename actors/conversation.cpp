// Per-conversation memory of committed message ids.
#include "actors/conversation.hpp"

#include <algorithm>

namespace kapso {

namespace {

// FNV-1a over both strings with a separator, from a given basis.
uint64_t fnv1a(std::string_view x, std::string_view y, uint64_t basis) {
  uint64_t h = basis;
  auto mix = [&h](std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ull;
    }
  };
  mix(x);
  h ^= 0xff;
  h *= 1099511628211ull;
  mix(y);
  return h;
}

bool is_message(const event& ev) {
  return ev.kind == event_kind::message_received || ev.kind == event_kind::message_sent;
}

} // namespace

conversation_lanes::conversation_lanes(size_t max_conversations, std::chrono::milliseconds idle)
  : max_(max_conversations), idle_(idle) {
}

conversation_lanes::fingerprint conversation_lanes::of(std::string_view workspace_id,
                                                       std::string_view id) {
  return {fnv1a(workspace_id, id, 14695981039346656037ull),
          fnv1a(workspace_id, id, 0x9e3779b97f4a7c15ull)};
}

bool conversation_lanes::recently_committed(std::string_view workspace_id,
                                            const event& ev) const {
  if (!is_message(ev) || ev.message_id.empty())
    return false;
  auto found = lanes_.find(of(workspace_id, ev.contact_key));
  if (found == lanes_.end())
    return false;
  auto id = of(workspace_id, ev.message_id);
  const auto& l = found->second;
  return std::find(l.recent.begin(), l.recent.begin() + l.count, id) != l.recent.begin() + l.count;
}

void conversation_lanes::committed(std::string_view workspace_id, const event& ev,
                                   clock_type::time_point now) {
  if (!is_message(ev) || ev.message_id.empty())
    return;
  auto key = of(workspace_id, ev.contact_key);
  auto found = lanes_.find(key);
  if (found == lanes_.end()) {
    if (lanes_.size() >= max_)
      return;
    found = lanes_.emplace(key, lane{}).first;
  }
  auto& l = found->second;
  l.last_activity = now;
  auto id = of(workspace_id, ev.message_id);
  if (std::find(l.recent.begin(), l.recent.begin() + l.count, id) != l.recent.begin() + l.count)
    return;
  l.recent[l.next] = id;
  l.next = static_cast<uint8_t>((l.next + 1) % recent_per_lane);
  if (l.count < recent_per_lane)
    ++l.count;
}

size_t conversation_lanes::drop_idle(clock_type::time_point now) {
  for (auto it = lanes_.begin(); it != lanes_.end();) {
    if (now - it->second.last_activity >= idle_)
      it = lanes_.erase(it);
    else
      ++it;
  }
  return lanes_.size();
}

} // namespace kapso
