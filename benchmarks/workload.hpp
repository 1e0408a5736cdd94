// The pre-built deliveries of one run: who says what, when, and in which order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "benchmarks/bench_options.hpp"

namespace kapso::bench {

// One inbound message of the run. Its id, text and timestamp are derived
// from its index and these two numbers, so they are never stored twice.
struct planned_event {
  uint32_t conversation = 0; // global conversation index
  uint32_t sequence = 0;     // 1-based position within its conversation
};

struct prepared_delivery {
  std::string request;       // complete HTTP/1.1 request: head and body
  uint32_t first_event = 0;  // index into workload::events
  uint32_t event_count = 0;
};

// Conversation c belongs to workspace c % W; its customer's phone is
// "+1555" followed by c as seven digits.
struct workload {
  std::string run_tag;                     // makes message ids unique per run
  std::vector<std::string> phone_number_ids; // one per workspace
  uint32_t conversations = 0;
  std::vector<uint32_t> messages_per_conversation;
  int64_t newest_timestamp = 0;            // every conversation ends here
  std::vector<planned_event> events;
  std::vector<prepared_delivery> deliveries;
  // Pool indices in send order: each delivery once, plus the byte-for-byte
  // re-sends that --retry-fraction asks for, placed later.
  std::vector<uint32_t> schedule;
  std::vector<bool> is_resend; // per schedule entry
  size_t resends = 0;

  uint32_t workspace_of(uint32_t conversation) const {
    return conversation % static_cast<uint32_t>(phone_number_ids.size());
  }
  std::string message_id(uint32_t event) const;
  std::string text(uint32_t event) const;
  int64_t timestamp(uint32_t event) const;
  std::string customer_phone(uint32_t conversation) const; // E.164
};

// How many distinct deliveries to pre-build for these options.
size_t planned_delivery_count(const bench_options& opts);

// Builds every delivery, body and signature before the run starts, so the
// harness spends no CPU on them while it measures.
workload build_workload(const bench_options& opts, size_t delivery_count);

// Lowercase hex HMAC-SHA256 of bodies under one secret, as Kapso signs
// webhooks. Keeps its keyed OpenSSL context: one-shot HMAC() looks the
// digest up again on every call, which dominated pre-building. Not
// thread-safe; one per thread.
class body_signer {
public:
  explicit body_signer(const std::string& secret);
  ~body_signer();
  body_signer(const body_signer&) = delete;
  body_signer& operator=(const body_signer&) = delete;

  std::string sign(const std::string& body);

private:
  struct impl;
  impl* impl_;
};

} // namespace kapso::bench
