// Per-conversation memory of committed message ids.
#include "actors/conversation.hpp"

#include <algorithm>
#include <functional>

namespace kapso {

namespace {

// libstdc++'s Murmur-based hash of a byte range from a seed; two seeds give
// the two independent halves of a fingerprint.
uint64_t hash_pair(std::string_view x, std::string_view y, size_t seed) {
  return std::_Hash_bytes(y.data(), y.size(), std::_Hash_bytes(x.data(), x.size(), seed));
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
  return {hash_pair(workspace_id, id, 0xc70f6907ul), hash_pair(workspace_id, id, 0x9e3779b9ul)};
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
