// Edits, deletions, number and identity changes: what they change in the
// stored rows, written inside the batch transaction (store.cpp, step 6).
#pragma once

#include <set>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "persistence/batch_plan.hpp"
#include "persistence/event.hpp"
#include "persistence/pg_session.hpp"

namespace kapso::lifecycle {

// (workspace_id, message id or contact key).
using row_key = std::pair<std::string, std::string>;

// True for the event kinds this file writes.
bool handles(event_kind kind);

// What waits in the database for rows this writer may write: originals of
// early edits and revokes, and old numbers of recorded number changes. It
// lets every batch that touches none of them skip the statements here.
// What other writers or servers stage is found by the after-commit re-check
// and the sweep.
class waiting_index {
public:
  bool loaded() const noexcept { return loaded_; }
  void load(pg_session& session, pg_deadline deadline);

  bool awaits_message(const row_key& message) const;
  bool has_number_change(const std::string& workspace_id, const std::string& phone) const;

  void add_message(const row_key& message);
  void remove_message(const row_key& message);
  void add_number(const row_key& contact);

private:
  static std::string key(const std::string& ws, const std::string& id) { return ws + '\n' + id; }
  static std::string key(const row_key& k) { return key(k.first, k.second); }

  std::unordered_set<std::string> messages_;
  std::unordered_set<std::string> numbers_;
  bool loaded_ = false;
  // More waits than kept in memory: every check answers yes.
  bool messages_overflow_ = false;
  bool numbers_overflow_ = false;
};

struct batch_effects {
  // (workspace, contact key) whose cached contact/conversation ids are stale.
  std::vector<row_key> moved_contacts;
  // Originals still missing after this batch: re-checked after commit.
  std::vector<row_key> waiting;
};

// Writes the batch's edits, revokes, number and identity changes, applies
// those that waited for rows this batch inserted, and sets the outcome of
// each of the batch's own lifecycle events. `keys` is each event's contact
// key as the batch resolved it; `inserted` the (workspace, message id) of
// the messages it inserted. Runs after every other step of the batch.
// Runs inside the batch's open transaction on `session`.
batch_effects write_batch(pg_session& session, pg_deadline deadline, waiting_index& index,
                          const std::vector<batch_entry>& events,
                          const std::vector<std::string_view>& keys,
                          const std::set<row_key>& inserted,
                          std::vector<write_outcome>& outcomes);

// Applies waiting edits and revokes of these messages if they are stored
// now (the re-check after commit).
void apply_waiting(pg_session& session, pg_deadline deadline, waiting_index& index,
                   const std::vector<row_key>& messages);

// Housekeeping: applies what waited while another writer wrote its row,
// drops what waited a week.
void sweep(pg_session& session, pg_deadline deadline);

} // namespace kapso::lifecycle
