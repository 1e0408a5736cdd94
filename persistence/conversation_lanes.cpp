// Per-conversation memory of committed message ids.
#include "persistence/conversation_lanes.hpp"

#include <algorithm>
#include <cstring>

namespace kapso {

namespace {

// A 64-bit multiply-and-shift hash over 8-byte words (MurmurHash64A's
// shape): a fingerprint of short ids costs a few nanoseconds, where a
// byte-wise hash cost more than the rest of the lookup.
constexpr uint64_t mix_multiplier = 0xc6a4a7935bd1e995ull;
constexpr int mix_shift = 47;

uint64_t hash_bytes(std::string_view bytes, uint64_t seed) {
  uint64_t h = seed ^ (bytes.size() * mix_multiplier);
  size_t at = 0;
  for (; at + sizeof(uint64_t) <= bytes.size(); at += sizeof(uint64_t)) {
    uint64_t word = 0;
    std::memcpy(&word, bytes.data() + at, sizeof word);
    word *= mix_multiplier;
    word ^= word >> mix_shift;
    word *= mix_multiplier;
    h ^= word;
    h *= mix_multiplier;
  }
  if (at < bytes.size()) {
    uint64_t tail = 0;
    std::memcpy(&tail, bytes.data() + at, bytes.size() - at);
    h ^= tail;
    h *= mix_multiplier;
  }
  h ^= h >> mix_shift;
  h *= mix_multiplier;
  h ^= h >> mix_shift;
  return h;
}

// The two halves of a fingerprint come from two seeds: a false match needs
// both 64-bit halves to collide.
constexpr uint64_t first_half_seed = 0xc70f6907ull;
constexpr uint64_t second_half_seed = 0x9e3779b97f4a7c15ull;

uint64_t hash_pair(std::string_view x, std::string_view y, uint64_t seed) {
  return hash_bytes(y, hash_bytes(x, seed));
}

} // namespace

conversation_lanes::conversation_lanes(size_t max_conversations, std::chrono::milliseconds idle)
  : max_(max_conversations), idle_(idle) {
}

conversation_lanes::fingerprint conversation_lanes::of(std::string_view workspace_id,
                                                       std::string_view id) {
  return {hash_pair(workspace_id, id, first_half_seed), hash_pair(workspace_id, id, second_half_seed)};
}

bool conversation_lanes::recently_committed(std::string_view workspace_id,
                                            const event& ev) const {
  if (!is_message(ev.kind) || ev.message_id.empty())
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
  if (!is_message(ev.kind) || ev.message_id.empty())
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
