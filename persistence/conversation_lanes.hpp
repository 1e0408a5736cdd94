// What a writer keeps of each conversation it owns while the conversation is
// active: the message ids it committed lately, so a retry of one of them is
// answered without a database round trip. Bounded in number
// (conversation.max) and dropped after conversation.idle-ms without traffic.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string_view>
#include <unordered_map>

#include "domain/event.hpp"

namespace kapso {

class conversation_lanes {
public:
  using clock_type = std::chrono::steady_clock;

  conversation_lanes(size_t max_conversations, std::chrono::milliseconds idle);

  // True when `ev` (a message) was committed by this writer lately.
  bool recently_committed(std::string_view workspace_id, const event& ev) const;

  // Remembers a message that is now stored. Beyond the cap a conversation
  // gets no lane: nothing is remembered for it, which costs only a database
  // probe on a retry.
  void committed(std::string_view workspace_id, const event& ev, clock_type::time_point now);

  // Drops the lanes idle for longer than the idle time; how many remain.
  size_t drop_idle(clock_type::time_point now);

  size_t size() const noexcept { return lanes_.size(); }

private:
  // 128 bits of two independent hashes: a false match would answer
  // "duplicate" for a message never stored, so 64 bits are not enough.
  struct fingerprint {
    uint64_t a = 0;
    uint64_t b = 0;
    bool operator==(const fingerprint& o) const noexcept { return a == o.a && b == o.b; }
  };
  struct fingerprint_hash {
    size_t operator()(const fingerprint& f) const noexcept { return static_cast<size_t>(f.a); }
  };
  static constexpr size_t recent_per_lane = 16;
  struct lane {
    clock_type::time_point last_activity;
    std::array<fingerprint, recent_per_lane> recent{};
    uint8_t next = 0;  // ring position
    uint8_t count = 0;
  };

  static fingerprint of(std::string_view workspace_id, std::string_view id);

  size_t max_;
  std::chrono::milliseconds idle_;
  std::unordered_map<fingerprint, lane, fingerprint_hash> lanes_; // by (workspace, customer)
};

} // namespace kapso
