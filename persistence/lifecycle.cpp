// Edits, deletions, number and identity changes within the batch write.
#include "persistence/lifecycle.hpp"

#include <map>

#include <spdlog/spdlog.h>

#include "persistence/batch_plan.hpp"
#include "persistence/json_rows.hpp"
#include "persistence/statements.hpp"

namespace kapso::lifecycle {

namespace {

// Waits kept in memory per kind; beyond, every batch asks the database.
constexpr size_t max_waits = 100000;

// Events that create or touch a contact row: a number change recorded for
// their key may have to move it.
bool touches_contact(event_kind kind) {
  return needs_conversation(kind) || kind == event_kind::contact_identity_changed;
}

std::string message_rows(const std::set<row_key>& messages) {
  json_rows rows;
  for (const auto& [ws, id] : messages)
    rows.row().field("workspace_id", ws).field("original_message_id", id);
  return rows.str();
}

using sql::statement;

pg_rows run(pg_session& session, pg_deadline deadline, statement s, const std::string& json) {
  return session.exec_prepared(sql::name_of(s), {pg_param{json}}, deadline);
}

// The rows RETURNING gave back: what a statement wrote for the first time.
std::set<row_key> returned_keys(const pg_rows& rows) {
  std::set<row_key> out;
  for (size_t r = 0; r < rows.size(); ++r)
    out.emplace(rows.text(r, 0), rows.text(r, 1));
  return out;
}

// The outcome of a first occurrence: accepted when it is new and changed
// something (or waits to), else it only repeats what is stored.
write_outcome outcome_of(bool first_time, bool changed) {
  return first_time && changed ? write_outcome::accepted : write_outcome::duplicate;
}

// One statement applies waiting edits and revokes; returns which events it
// applied and whether each changed its message, and forgets the stored
// originals in the index.
std::map<row_key, bool> apply_message_changes(pg_session& session, pg_deadline deadline,
                                              waiting_index& index,
                                              const std::set<row_key>& originals,
                                              std::set<row_key>& stored) {
  std::map<row_key, bool> applied;
  auto rows = run(session, deadline, statement::apply_message_changes, message_rows(originals));
  for (size_t r = 0; r < rows.size(); ++r) {
    row_key original{std::string{rows.text(r, 0)}, std::string{rows.text(r, 1)}};
    index.remove_message(original);
    stored.insert(original);
    if (!rows.is_null(r, 2))
      applied[{original.first, std::string{rows.text(r, 2)}}] = rows.boolean(r, 3);
  }
  return applied;
}

} // namespace

bool handles(event_kind kind) {
  return kind == event_kind::message_edit || kind == event_kind::message_revoke
         || kind == event_kind::contact_number_changed
         || kind == event_kind::contact_identity_changed;
}

// -- waiting_index ---------------------------------------------------------------

void waiting_index::load(pg_session& session, pg_deadline deadline) {
  messages_.clear();
  numbers_.clear();
  size_t message_rows = 0;
  size_t number_rows = 0;
  auto rows = run(session, deadline, statement::select_lifecycle_waits, std::to_string(max_waits));
  for (size_t r = 0; r < rows.size(); ++r) {
    row_key k{std::string{rows.text(r, 1)}, std::string{rows.text(r, 2)}};
    if (rows.text(r, 0) == "m") {
      ++message_rows;
      messages_.insert(key(k));
    } else {
      ++number_rows;
      numbers_.insert(key(k));
    }
  }
  messages_overflow_ = message_rows >= max_waits;
  numbers_overflow_ = number_rows >= max_waits;
  loaded_ = true;
}

bool waiting_index::awaits_message(const row_key& message) const {
  return messages_overflow_ || (!messages_.empty() && messages_.count(key(message)) != 0);
}

bool waiting_index::has_number_change(const std::string& workspace_id,
                                      const std::string& phone) const {
  return numbers_overflow_
         || (!numbers_.empty() && numbers_.count(key(workspace_id, phone)) != 0);
}

void waiting_index::add_message(const row_key& message) {
  if (messages_.size() >= max_waits)
    messages_overflow_ = true;
  else
    messages_.insert(key(message));
}

void waiting_index::remove_message(const row_key& message) {
  if (!messages_.empty())
    messages_.erase(key(message));
}

void waiting_index::add_number(const row_key& contact) {
  if (numbers_.size() >= max_waits)
    numbers_overflow_ = true;
  else
    numbers_.insert(key(contact));
}

// -- the batch step ----------------------------------------------------------------

batch_effects write_batch(pg_session& session, pg_deadline deadline, waiting_index& index,
                          const std::vector<batch_entry>& events,
                          const std::vector<std::string_view>& keys,
                          const std::set<row_key>& inserted,
                          std::vector<write_outcome>& outcomes) {
  batch_effects effects;
  if (!index.loaded())
    index.load(session, deadline);

  // The first copy of each event is written; later copies in the batch
  // repeat it.
  std::map<row_key, size_t> first;
  json_rows staged;
  json_rows numbers;
  json_rows identities;
  std::set<row_key> originals;
  std::set<row_key> number_keys;
  for (size_t i = 0; i < events.size(); ++i) {
    std::string ws{events[i].workspace_id};
    const auto& ev = *events[i].ev;
    std::string key{keys[i]};
    if (touches_contact(ev.kind) && index.has_number_change(ws, key))
      number_keys.emplace(ws, key);
    if (!handles(ev.kind))
      continue;
    if (!first.emplace(row_key{ws, ev.message_id}, i).second) {
      outcomes[i] = write_outcome::duplicate;
      continue;
    }
    switch (ev.kind) {
      case event_kind::message_edit:
      case event_kind::message_revoke:
        staged.row()
          .field("workspace_id", ws)
          .field("event_id", ev.message_id)
          .field("original_message_id", ev.original_message_id)
          .field("kind", ev.kind == event_kind::message_edit ? "edit" : "revoke")
          .field("ts", events[i].timestamp)
          .field("content", ev.content)
          .field("media_url", ev.media_url)
          .raw_field("metadata", ev.metadata_json.empty() ? std::string_view{"{}"}
                                                          : ev.metadata_json);
        originals.emplace(ws, ev.original_message_id);
        break;
      case event_kind::contact_number_changed:
        numbers.row()
          .field("workspace_id", ws)
          .field("event_id", ev.message_id)
          .field("old_phone", key)
          .field("new_phone", ev.new_contact_phone)
          .field("ts", events[i].timestamp);
        number_keys.emplace(ws, key);
        index.add_number({ws, key});
        break;
      case event_kind::contact_identity_changed:
        identities.row()
          .field("workspace_id", ws)
          .field("event_id", ev.message_id)
          .field("phone", key)
          .field("bsuid", ev.contact_bsuid)
          .field("name", ev.contact_name)
          .field("ts", events[i].timestamp)
          .field("hash", ev.identity_hash);
        break;
      case event_kind::message_received:
      case event_kind::message_sent:
      case event_kind::message_status:
      case event_kind::conversation_created:
      case event_kind::conversation_ended:
      case event_kind::conversation_inactive:
      case event_kind::unknown:
        break; // not lifecycle events: handles() kept them out
    }
  }

  // 1. Edits and revokes, staged, then applied to the originals that are
  //    stored — this batch's own and those other events waited for.
  std::set<row_key> first_time;
  if (!staged.empty())
    first_time = returned_keys(run(session, deadline, statement::stage_message_changes,
                                   staged.str()));
  for (const auto& message : inserted)
    if (index.awaits_message(message))
      originals.insert(message);
  if (!originals.empty()) {
    std::set<row_key> stored;
    auto applied = apply_message_changes(session, deadline, index, originals, stored);
    for (const auto& [event_key, i] : first) {
      const auto& ev = *events[i].ev;
      if (ev.kind != event_kind::message_edit && ev.kind != event_kind::message_revoke)
        continue;
      bool is_new = first_time.count(event_key) != 0;
      auto found = applied.find(event_key);
      outcomes[i] = outcome_of(is_new, found == applied.end() || found->second);
      row_key original{event_key.first, ev.original_message_id};
      if (stored.count(original) == 0) {
        index.add_message(original);
        effects.waiting.push_back(std::move(original));
      }
    }
  }

  // 2. Identity changes, noted on their contacts (the newest one wins).
  if (!identities.empty()) {
    auto rows = run(session, deadline, statement::note_identity_changes, identities.str());
    for (size_t r = 0; r < rows.size(); ++r) {
      row_key event_key{std::string{rows.text(r, 0)}, std::string{rows.text(r, 1)}};
      bool changed = rows.boolean(r, 2);
      auto found = first.find(event_key);
      if (found != first.end())
        outcomes[found->second] = outcome_of(true, changed);
      if (changed)
        spdlog::info("customer identity changed (workspace {}, event {}): noted on the contact",
                     event_key.first, event_key.second);
    }
  }

  // 3. Number changes, recorded, then applied to the contacts of the old
  //    numbers — also when this batch wrote to an old number again.
  if (!numbers.empty()) {
    auto recorded = returned_keys(run(session, deadline, statement::record_number_changes,
                                      numbers.str()));
    for (const auto& [event_key, i] : first)
      if (events[i].ev->kind == event_kind::contact_number_changed)
        outcomes[i] = outcome_of(recorded.count(event_key) != 0, true);
  }
  if (!number_keys.empty()) {
    json_rows rows;
    for (const auto& [ws, phone] : number_keys)
      rows.row().field("workspace_id", ws).field("phone", phone);
    auto moved = run(session, deadline, statement::apply_number_changes, rows.str());
    for (size_t r = 0; r < moved.size(); ++r) {
      std::string ws{moved.text(r, 0)};
      effects.moved_contacts.emplace_back(ws, std::string{moved.text(r, 1)});
      effects.moved_contacts.emplace_back(ws, std::string{moved.text(r, 2)});
      spdlog::info("customer changed number (workspace {}): contact moved to the new number",
                   ws);
    }
  }
  return effects;
}

void apply_waiting(pg_session& session, pg_deadline deadline, waiting_index& index,
                   const std::vector<row_key>& messages) {
  if (messages.empty())
    return;
  std::set<row_key> originals(messages.begin(), messages.end());
  std::set<row_key> stored;
  apply_message_changes(session, deadline, index, originals, stored);
}

void sweep(pg_session& session, pg_deadline deadline) {
  session.exec_prepared(sql::name_of(statement::sweep_lifecycle), {}, deadline);
}

} // namespace kapso::lifecycle
