// What a batch's edits, deletions, number and identity changes ask of the
// database, worked out before any SQL runs, and what the answers mean for
// each event; the order in which recorded number changes move contacts.
// Pure, unit-tested (tests/unit/lifecycle_plan_test.cpp); the statements
// are persistence/lifecycle.cpp's.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "domain/event.hpp"
#include "persistence/batch_plan.hpp"

namespace kapso::lifecycle {

// (workspace_id, message id or contact key).
using row_key = std::pair<std::string, std::string>;

// What waits in the database for rows this writer may write: originals of
// early edits and revokes, and old numbers of recorded number changes. It
// lets every batch that touches none of them skip the lifecycle statements.
// What other writers or servers stage is found by the after-commit re-check
// and the sweep.
class waiting_index {
public:
  // Waits kept in memory per kind; beyond, every check answers yes.
  static constexpr size_t capacity = 100000;

  bool loaded() const noexcept { return loaded_; }
  // Replaces what is known with what the database holds (read with at most
  // `capacity` rows per kind: a full read means that more may wait).
  void reload(const std::vector<row_key>& messages, const std::vector<row_key>& numbers);

  bool awaits_message(std::string_view workspace_id, std::string_view message_id) const;
  bool has_number_change(std::string_view workspace_id, std::string_view phone) const;

  void add_message(const row_key& message);
  void remove_message(const row_key& message);
  void add_number(const row_key& contact);

private:
  static std::string key(std::string_view workspace_id, std::string_view id);
  static std::string key(const row_key& k) { return key(k.first, k.second); }

  std::unordered_set<std::string> messages_;
  std::unordered_set<std::string> numbers_;
  bool loaded_ = false;
  bool messages_overflow_ = false;
  bool numbers_overflow_ = false;
};

// The lifecycle statements one batch needs. Entries are indices into the
// batch; each step gets the first copy of each (workspace, event id).
struct lifecycle_plan {
  std::vector<size_t> message_changes;  // edits and revokes: staged
  std::vector<size_t> identity_changes; // noted on their contacts
  std::vector<size_t> number_changes;   // recorded
  std::vector<size_t> repeats;          // later copies: duplicates of the first

  // Stored messages whose waiting edits and revokes are applied: the
  // originals of `message_changes`, and the batch's messages that an
  // earlier change waits for. Sorted, distinct.
  std::vector<row_key> originals;
  // (workspace, phone) whose recorded number changes are applied: those of
  // `number_changes`, and every contact the batch writes under a number
  // that changed. Sorted, distinct.
  std::vector<row_key> number_keys;

  bool empty() const noexcept {
    return message_changes.empty() && identity_changes.empty() && number_changes.empty()
           && originals.empty() && number_keys.empty();
  }
};

// `keys[i]` is entry i's contact key as the batch resolved it.
lifecycle_plan plan_lifecycle(const std::vector<batch_entry>& entries,
                              const std::vector<std::string_view>& keys,
                              const waiting_index& waiting);

// What the batch's lifecycle statements answered.
struct lifecycle_answers {
  std::set<row_key> staged;               // (workspace, event id) staged for the first time
  std::set<row_key> stored;               // originals that are stored (changes applied)
  std::map<row_key, bool> applied;        // (workspace, event id) -> changed its message
  std::map<row_key, bool> identities;     // (workspace, event id) -> changed its contact
  std::set<row_key> recorded;             // number changes recorded for the first time
};

struct lifecycle_outcomes {
  std::vector<std::pair<size_t, write_outcome>> outcomes; // per lifecycle entry
  // Originals of the batch's edits and revokes that are not stored yet:
  // their changes wait (re-checked after commit).
  std::vector<row_key> waiting;
};

// A change counts as accepted the first time it changes something or is
// kept waiting, as a duplicate when it repeats what is stored.
lifecycle_outcomes settle(const lifecycle_plan& plan, const std::vector<batch_entry>& entries,
                          const lifecycle_answers& answers);

// -- number changes ----------------------------------------------------------------

// One recorded number change as the database holds it now, with the rows
// its move would touch ("" = no such row).
struct number_change_state {
  std::string workspace_id;
  std::string event_id;
  std::string old_phone;
  std::string new_phone;
  int64_t changed_at_us = 0; // microseconds since the Unix epoch
  bool voided = false;       // someone changed *into* old_phone at or after it
  std::string old_contact;
  std::string old_conversation;
  int64_t old_unread = 0;
  int64_t moving = 0;          // old conversation's messages dated up to the change (or undated)
  int64_t staying = 0;         // ... dated after it
  int64_t staying_inbound = 0; // ... of them inbound
  std::string new_contact;     // the contact that has new_phone already
  std::string new_conversation;
  bool new_contact_is_older = false; // by (created_at, id)
};

enum class move_kind {
  none,   // nothing to move, or the change is void
  rename, // nothing dated after the change: the whole contact takes the new number
  merge,  // ... and a contact with the new number exists: the older row stays
  split,  // messages dated after the change stay with the old number
};

// What one change moves, with the rows each statement of its kind needs.
struct contact_move {
  move_kind kind = move_kind::none;
  std::string workspace_id;
  std::string old_phone;
  std::string new_phone;
  int64_t changed_at_us = 0;
  // rename: the old contact; merge: the row that stays, and the one that goes.
  std::string keep_contact;
  std::string gone_contact;
  bool keep_is_old = true;
  // merge: their conversations ("" = none).
  std::string keep_conversation;
  std::string gone_conversation;
  // split: the conversation the earlier messages leave, and how many of
  // its unread go with them (the newest are unread: those that stay keep
  // theirs first).
  std::string old_conversation;
  int64_t moved_unread = 0;
};

contact_move plan_move(const number_change_state& state);

// The recorded changes of one workspace in the order they apply: its
// phones sorted, each phone's changes oldest first; a change that moved a
// contact is followed on from the phone it moved to. Each phone is walked
// once. The database's state changes with every move, so the walk stops
// at each one and continues with states read afresh.
class number_walk {
public:
  number_walk(std::string workspace_id, std::vector<std::string> phones);

  const std::string& workspace_id() const noexcept { return workspace_id_; }

  // The phones whose changes the next call needs the states of.
  std::vector<std::string> phones_to_read() const;

  // Walks on through `states` (the states of every change from
  // phones_to_read(), oldest first per phone; other workspaces' are
  // skipped) up to the next change that moves a contact; nullopt when
  // none is left.
  std::optional<contact_move> next_move(const std::vector<number_change_state>& states);

private:
  std::string workspace_id_;
  std::vector<std::string> todo_;
  size_t next_phone_ = 0;
  std::set<std::string> walked_;
  // The phone being walked: its changes as first read, and how far.
  std::optional<std::string> phone_;
  std::vector<std::string> change_ids_;
  size_t next_change_ = 0;
};

// One walk per workspace of `keys` (sorted by workspace).
std::vector<number_walk> number_walks(const std::vector<row_key>& keys);

} // namespace kapso::lifecycle
