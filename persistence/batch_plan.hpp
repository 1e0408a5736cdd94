// What one batch asks of the database, worked out before any SQL runs:
// which contacts, conversations, messages and statuses each statement gets,
// and which events share the outcome of another. Pure, unit-tested.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "domain/event.hpp"

namespace kapso {

// One event of a batch, bound to its workspace; it points into the
// delivery (or spool record) that holds the event, which outlives the batch.
struct batch_entry {
  const event* ev = nullptr;
  std::string_view workspace_id;
  int64_t timestamp = 0; // the event's own, or its arrival time when it had none
};

struct batch_plan {
  // Distinct (workspace, contact key), sorted: upserted, each with its
  // conversation. `name`/`bsuid`: the first non-empty of its events.
  struct contact {
    std::string_view workspace_id;
    std::string_view key;
    std::string_view name;
    std::string_view bsuid;
  };
  std::vector<contact> contacts;

  // A customer first known by a business-scoped id and now seen with a
  // phone: the bsuid contact takes the phone (unless one with it exists).
  struct bsuid_link {
    std::string_view workspace_id;
    std::string_view phone;
    std::string bsuid_key; // bsuid_key(<id>), domain/contact_key.hpp
  };
  std::vector<bsuid_link> bsuid_links;

  std::vector<size_t> messages;  // entries written: the first of each (workspace, message id)
  std::vector<size_t> outbound;  // of `messages`: outbound ones (statuses may wait for them)
  std::vector<size_t> closings;  // conversation_ended entries, one per conversation
  std::vector<size_t> statuses;  // every status entry (the SQL applies the highest)

  // Per entry: the entry whose outcome it takes — itself, or for a later
  // copy of a message in the same batch, the first copy (it then counts as
  // a duplicate of it).
  std::vector<size_t> outcome_of;
};

// `keys[i]` is entry i's contact key (the event's own, or the phone its
// business-scoped id was linked to).
batch_plan plan_batch(const std::vector<batch_entry>& entries,
                      const std::vector<std::string_view>& keys);

// Entries whose customer is known only by a business-scoped id: their key
// may resolve to a phone contact (a look-up before the batch).
std::vector<size_t> bsuid_only_entries(const std::vector<batch_entry>& entries);

} // namespace kapso
