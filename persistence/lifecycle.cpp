// Edits, deletions, number and identity changes: their statements and the
// reading of their answers.
#include "persistence/lifecycle.hpp"

#include <map>
#include <set>
#include <tuple>

#include <spdlog/spdlog.h>

#include "persistence/pg_array.hpp"
#include "persistence/statements.hpp"

namespace kapso::lifecycle {

namespace {

using sql::statement;

size_t add(pg_pipeline& pipeline, statement s, std::initializer_list<pg_array*> columns) {
  return pipeline.add(sql::name_of(s), take_columns(columns));
}

// (workspace_id[], text[]) of `keys`.
size_t add_keyed(pg_pipeline& pipeline, statement s, const std::vector<row_key>& keys) {
  pg_array ws{pg_type::uuid};
  pg_array text{pg_type::text};
  for (const auto& [workspace, id] : keys) {
    add_own_uuid(ws, workspace);
    text.add_text(id);
  }
  return add(pipeline, s, {&ws, &text});
}

// The (workspace, id) pairs of the first two columns.
std::set<row_key> read_keys(const pg_rows& rows) {
  std::set<row_key> out;
  for (size_t r = 0; r < rows.size(); ++r)
    out.emplace(rows.text(r, 0), rows.text(r, 1));
  return out;
}

std::vector<row_key> read_key_list(const pg_rows& rows) {
  auto keys = read_keys(rows);
  return {keys.begin(), keys.end()};
}

// (workspace, event id) -> the third column.
std::map<row_key, bool> read_changed(const pg_rows& rows) {
  std::map<row_key, bool> out;
  for (size_t r = 0; r < rows.size(); ++r)
    out.emplace(row_key{rows.text(r, 0), rows.text(r, 1)}, rows.boolean(r, 2));
  return out;
}

// The columns of a statement over the batch's entries `which`, one array
// each (a statement spends its arrays: each call builds a new one).
class entry_columns {
public:
  entry_columns(const std::vector<size_t>& which, const std::vector<batch_entry>& entries)
    : which_(which), entries_(entries) {}

  // `fill(array, event)` adds the event's value.
  template <class Fill>
  pg_array of(pg_type type, Fill fill) const {
    pg_array out{type};
    for (auto i : which_)
      fill(out, *entries_[i].ev);
    return out;
  }
  pg_array text(const std::string event::*field) const {
    return of(pg_type::text, [field](pg_array& a, const event& ev) { a.add_text(ev.*field); });
  }
  pg_array text_or_null(const std::string event::*field) const {
    return of(pg_type::text,
              [field](pg_array& a, const event& ev) { a.add_text_or_null(ev.*field); });
  }
  pg_array workspaces() const {
    pg_array out{pg_type::uuid};
    for (auto i : which_)
      add_own_uuid(out, entries_[i].workspace_id);
    return out;
  }
  pg_array timestamps() const {
    pg_array out{pg_type::int8};
    for (auto i : which_)
      out.add_int8(entries_[i].timestamp);
    return out;
  }
  // The contact keys as the batch resolved them.
  pg_array keys(const std::vector<std::string_view>& keys) const {
    pg_array out{pg_type::text};
    for (auto i : which_)
      out.add_text(keys[i]);
    return out;
  }

private:
  const std::vector<size_t>& which_;
  const std::vector<batch_entry>& entries_;
};

// -- edits and revokes ------------------------------------------------------------

size_t add_stage_message_changes(pg_pipeline& pipeline, const entry_columns& changes) {
  auto ws = changes.workspaces();
  auto event_id = changes.text(&event::message_id);
  auto original = changes.text(&event::original_message_id);
  auto kind = changes.of(pg_type::text, [](pg_array& a, const event& ev) {
    a.add_text(ev.kind == event_kind::message_edit ? "edit" : "revoke");
  });
  auto ts = changes.timestamps();
  auto content = changes.text_or_null(&event::content);
  auto media_url = changes.text_or_null(&event::media_url);
  auto metadata = changes.of(pg_type::jsonb,
                             [](pg_array& a, const event& ev) { a.add_jsonb(ev.metadata_json); });
  return add(pipeline, statement::stage_message_changes,
             {&ws, &event_id, &original, &kind, &ts, &content, &media_url, &metadata});
}

// Locks the stored ones of `originals`, then applies what waits for them:
// the slots of both answers.
std::pair<size_t, size_t> add_apply_message_changes(pg_pipeline& pipeline,
                                                    const std::vector<row_key>& originals) {
  auto stored = add_keyed(pipeline, statement::lock_message_originals, originals);
  auto applied = add_keyed(pipeline, statement::apply_message_changes, originals);
  return {stored, applied};
}

// -- identity and number changes ----------------------------------------------------

size_t add_note_identity_changes(pg_pipeline& pipeline, const entry_columns& identities,
                                 const std::vector<std::string_view>& keys) {
  {
    auto ws = identities.workspaces();
    auto phone = identities.keys(keys);
    auto bsuid = identities.text_or_null(&event::contact_bsuid);
    add(pipeline, statement::lock_identity_contacts, {&ws, &phone, &bsuid});
  }
  auto ws = identities.workspaces();
  auto event_id = identities.text(&event::message_id);
  auto phone = identities.keys(keys);
  auto bsuid = identities.text_or_null(&event::contact_bsuid);
  auto name = identities.text_or_null(&event::contact_name);
  auto ts = identities.timestamps();
  auto hash = identities.text(&event::identity_hash);
  return add(pipeline, statement::note_identity_changes,
             {&ws, &event_id, &phone, &bsuid, &name, &ts, &hash});
}

size_t add_record_number_changes(pg_pipeline& pipeline, const entry_columns& changes,
                                 const std::vector<std::string_view>& keys) {
  auto ws = changes.workspaces();
  auto event_id = changes.text(&event::message_id);
  auto old_phone = changes.keys(keys);
  auto new_phone = changes.text(&event::new_contact_phone);
  auto ts = changes.timestamps();
  return add(pipeline, statement::record_number_changes,
             {&ws, &event_id, &old_phone, &new_phone, &ts});
}

// Locks the contacts the changes away from `keys` would move, then reads
// the changes' states: the slot of those.
size_t add_read_number_changes(pg_pipeline& pipeline, const std::vector<row_key>& keys) {
  add_keyed(pipeline, statement::lock_number_change_contacts, keys);
  return add_keyed(pipeline, statement::read_number_changes, keys);
}

std::vector<number_change_state> read_number_states(const pg_rows& rows) {
  std::vector<number_change_state> states(rows.size());
  for (size_t r = 0; r < rows.size(); ++r) {
    auto& s = states[r];
    size_t c = 0;
    for (auto* text : {&s.workspace_id, &s.event_id, &s.old_phone, &s.new_phone})
      *text = rows.text(r, c++);
    s.changed_at_us = rows.integer(r, c++);
    s.voided = rows.boolean(r, c++);
    s.old_contact = rows.text(r, c++);
    s.old_conversation = rows.text(r, c++);
    for (auto* count : {&s.old_unread, &s.moving, &s.staying, &s.staying_inbound})
      *count = rows.integer(r, c++);
    s.new_contact = rows.text(r, c++);
    s.new_conversation = rows.text(r, c++);
    s.new_contact_is_older = rows.boolean(r, c++);
  }
  return states;
}

// -- moving contacts --------------------------------------------------------------

using move_list = std::vector<const contact_move*>;

template <class Keep>
move_list moves_where(const std::vector<contact_move>& moves, Keep keep) {
  move_list out;
  for (const auto& m : moves)
    if (keep(m))
      out.push_back(&m);
  return out;
}

// One column of a move statement: `fill` adds each move's value. A
// statement spends its arrays, so each builds its own.
template <class Fill>
pg_array column(pg_type type, const move_list& moves, Fill fill) {
  pg_array out{type};
  for (const auto* m : moves)
    fill(out, *m);
  return out;
}

void workspace_of(pg_array& a, const contact_move& m) { add_own_uuid(a, m.workspace_id); }
void old_phone_of(pg_array& a, const contact_move& m) { a.add_text(m.old_phone); }
void new_phone_of(pg_array& a, const contact_move& m) { a.add_text(m.new_phone); }
void keep_contact_of(pg_array& a, const contact_move& m) { add_own_uuid(a, m.keep_contact); }
void gone_contact_of(pg_array& a, const contact_move& m) { add_own_uuid(a, m.gone_contact); }
void keep_conversation_of(pg_array& a, const contact_move& m) {
  add_own_uuid(a, m.keep_conversation);
}
void gone_conversation_of(pg_array& a, const contact_move& m) {
  add_own_uuid(a, m.gone_conversation);
}
void old_conversation_of(pg_array& a, const contact_move& m) {
  add_own_uuid(a, m.old_conversation);
}

void add_rename_contacts(pg_pipeline& pipeline, const move_list& renames) {
  auto contact = column(pg_type::uuid, renames, keep_contact_of);
  auto old_phone = column(pg_type::text, renames, old_phone_of);
  auto new_phone = column(pg_type::text, renames, new_phone_of);
  add(pipeline, statement::rename_contacts, {&contact, &old_phone, &new_phone});
}

// Both contacts have a conversation: the one that goes joins the other.
void add_merge_conversations(pg_pipeline& pipeline, const move_list& merges) {
  for (auto s : {statement::move_conversation_messages, statement::merge_conversations}) {
    auto keep = column(pg_type::uuid, merges, keep_conversation_of);
    auto gone = column(pg_type::uuid, merges, gone_conversation_of);
    add(pipeline, s, {&keep, &gone});
  }
}

// Only the contact that goes has one: it passes to the one that stays.
void add_reassign_conversations(pg_pipeline& pipeline, const move_list& merges) {
  auto conversation = column(pg_type::uuid, merges, gone_conversation_of);
  auto contact = column(pg_type::uuid, merges, keep_contact_of);
  add(pipeline, statement::reassign_conversations, {&conversation, &contact});
}

void add_merge_contacts(pg_pipeline& pipeline, const move_list& merges) {
  auto keep = column(pg_type::uuid, merges, keep_contact_of);
  auto gone = column(pg_type::uuid, merges, gone_contact_of);
  auto old_phone = column(pg_type::text, merges, old_phone_of);
  auto new_phone = column(pg_type::text, merges, new_phone_of);
  auto keep_is_old = column(pg_type::boolean, merges, [](pg_array& a, const contact_move& m) {
    a.add_bool(m.keep_is_old);
  });
  add(pipeline, statement::merge_contacts, {&keep, &gone, &old_phone, &new_phone, &keep_is_old});
}

void add_upsert_moved_contacts(pg_pipeline& pipeline, const move_list& splits) {
  auto ws = column(pg_type::uuid, splits, workspace_of);
  auto new_phone = column(pg_type::text, splits, new_phone_of);
  auto old_phone = column(pg_type::text, splits, old_phone_of);
  add(pipeline, statement::upsert_moved_contacts, {&ws, &new_phone, &old_phone});
}

void add_insert_conversations(pg_pipeline& pipeline, const move_list& splits) {
  auto ws = column(pg_type::uuid, splits, workspace_of);
  auto new_phone = column(pg_type::text, splits, new_phone_of);
  add(pipeline, statement::insert_conversations, {&ws, &new_phone});
}

void add_move_messages_up_to(pg_pipeline& pipeline, const move_list& splits) {
  auto old_conversation = column(pg_type::uuid, splits, old_conversation_of);
  auto ws = column(pg_type::uuid, splits, workspace_of);
  auto new_phone = column(pg_type::text, splits, new_phone_of);
  auto at = column(pg_type::int8, splits, [](pg_array& a, const contact_move& m) {
    a.add_int8(m.changed_at_us);
  });
  add(pipeline, statement::move_messages_up_to, {&old_conversation, &ws, &new_phone, &at});
}

void add_settle_split_conversations(pg_pipeline& pipeline, const move_list& splits) {
  auto old_conversation = column(pg_type::uuid, splits, old_conversation_of);
  auto ws = column(pg_type::uuid, splits, workspace_of);
  auto new_phone = column(pg_type::text, splits, new_phone_of);
  auto unread = column(pg_type::int8, splits, [](pg_array& a, const contact_move& m) {
    a.add_int8(m.moved_unread);
  });
  add(pipeline, statement::settle_split_conversations,
      {&old_conversation, &ws, &new_phone, &unread});
}

// The statements of one round of moves, in the order they must run.
void add_moves(pg_pipeline& pipeline, const std::vector<contact_move>& moves) {
  auto is = [](move_kind kind) { return [kind](const contact_move& m) { return m.kind == kind; }; };
  if (auto renames = moves_where(moves, is(move_kind::rename)); !renames.empty())
    add_rename_contacts(pipeline, renames);
  // A merge moves conversations while both contacts exist, then the contacts.
  auto both = moves_where(moves, [](const contact_move& m) {
    return m.kind == move_kind::merge && !m.gone_conversation.empty()
           && !m.keep_conversation.empty();
  });
  if (!both.empty())
    add_merge_conversations(pipeline, both);
  auto passed = moves_where(moves, [](const contact_move& m) {
    return m.kind == move_kind::merge && !m.gone_conversation.empty()
           && m.keep_conversation.empty();
  });
  if (!passed.empty())
    add_reassign_conversations(pipeline, passed);
  if (auto merges = moves_where(moves, is(move_kind::merge)); !merges.empty())
    add_merge_contacts(pipeline, merges);
  if (auto splits = moves_where(moves, is(move_kind::split)); !splits.empty()) {
    add_upsert_moved_contacts(pipeline, splits);
    add_insert_conversations(pipeline, splits);
    add_move_messages_up_to(pipeline, splits);
    add_settle_split_conversations(pipeline, splits);
  }
}

// Walks the recorded changes from `keys`, given their states as first read:
// one round of moves at a time (one per workspace, independent of each
// other), each round sent with the read of the states it leaves.
void move_contacts(pg_session& session, pg_deadline deadline, const std::vector<row_key>& keys,
                   std::vector<number_change_state> states) {
  auto walks = number_walks(keys);
  for (;;) {
    std::vector<contact_move> moves;
    for (auto& walk : walks)
      if (auto move = walk.next_move(states))
        moves.push_back(std::move(*move));
    if (moves.empty())
      return;
    pg_pipeline round;
    add_moves(round, moves);
    std::vector<row_key> unwalked;
    for (const auto& walk : walks)
      for (auto& phone : walk.phones_to_read())
        unwalked.emplace_back(walk.workspace_id(), std::move(phone));
    auto read = add_read_number_changes(round, unwalked);
    states = read_number_states(session.run(round, deadline)[read]);
    for (const auto& m : moves)
      spdlog::info("customer changed number (workspace {}): contact moved to the new number",
                   m.workspace_id);
  }
}

void forget_stored(waiting_index& index, const std::set<row_key>& stored) {
  for (const auto& original : stored)
    index.remove_message(original);
}

} // namespace

void load_waiting(pg_session& session, pg_deadline deadline, waiting_index& index) {
  auto rows = session.exec_prepared(sql::name_of(statement::select_lifecycle_waits),
                                    {pg_param{std::to_string(waiting_index::capacity)}},
                                    deadline);
  std::vector<row_key> messages;
  std::vector<row_key> numbers;
  for (size_t r = 0; r < rows.size(); ++r)
    (rows.text(r, 0) == "m" ? messages : numbers).emplace_back(rows.text(r, 1),
                                                               rows.text(r, 2));
  index.reload(messages, numbers);
}

pipeline_slots add_batch(pg_pipeline& pipeline, const lifecycle_plan& plan,
                         const std::vector<batch_entry>& entries,
                         const std::vector<std::string_view>& keys) {
  // Edits and revokes, staged, then applied to the originals that are
  // stored: this batch's own, and those other events waited for.
  pipeline_slots slots;
  if (!plan.message_changes.empty())
    slots.staged = add_stage_message_changes(pipeline, {plan.message_changes, entries});
  if (!plan.originals.empty())
    std::tie(slots.stored, slots.applied) = add_apply_message_changes(pipeline, plan.originals);
  if (!plan.identity_changes.empty())
    slots.identities = add_note_identity_changes(pipeline, {plan.identity_changes, entries}, keys);
  // Number changes, recorded, then read with the contacts of the old
  // numbers: also when this batch wrote to an old number again.
  if (!plan.number_changes.empty())
    slots.recorded = add_record_number_changes(pipeline, {plan.number_changes, entries}, keys);
  if (!plan.number_keys.empty())
    slots.number_states = add_read_number_changes(pipeline, plan.number_keys);
  return slots;
}

lifecycle_outcomes finish_batch(pg_session& session, pg_deadline deadline, waiting_index& index,
                                const lifecycle_plan& plan,
                                const std::vector<batch_entry>& entries,
                                const pipeline_slots& slots, const std::vector<pg_rows>& answers) {
  lifecycle_answers read;
  if (slots.staged)
    read.staged = read_keys(answers[*slots.staged]);
  if (slots.stored)
    read.stored = read_keys(answers[*slots.stored]);
  if (slots.applied)
    read.applied = read_changed(answers[*slots.applied]);
  if (slots.identities)
    read.identities = read_changed(answers[*slots.identities]);
  if (slots.recorded)
    read.recorded = read_keys(answers[*slots.recorded]);
  if (slots.number_states)
    move_contacts(session, deadline, plan.number_keys,
                  read_number_states(answers[*slots.number_states]));

  forget_stored(index, read.stored);
  for (const auto& contact : plan.number_keys)
    index.add_number(contact);
  for (const auto& [key, changed] : read.identities)
    if (changed)
      spdlog::info("customer identity changed (workspace {}, event {}): noted on the contact",
                   key.first, key.second);
  auto outcomes = settle(plan, entries, read);
  for (const auto& original : outcomes.waiting)
    index.add_message(original);
  return outcomes;
}

void apply_waiting(pg_session& session, pg_deadline deadline, waiting_index& index,
                   const std::vector<row_key>& messages) {
  std::vector<row_key> awaited;
  for (const auto& m : messages)
    if (index.awaits_message(m.first, m.second))
      awaited.push_back(m);
  if (awaited.empty())
    return;
  pg_pipeline pipeline;
  auto stored = add_apply_message_changes(pipeline, awaited).first;
  forget_stored(index, read_keys(session.run(pipeline, deadline)[stored]));
}

void sweep(pg_session& session, pg_deadline deadline, waiting_index& index) {
  // What waited a week goes, and what is left to apply is found: one round
  // trip, the common case's only one.
  pg_pipeline look;
  look.add(sql::name_of(statement::expire_lifecycle_waits), {});
  auto originals_at = look.add(sql::name_of(statement::select_stored_originals), {});
  auto numbers_at = look.add(sql::name_of(statement::select_changed_numbers), {});
  auto found = session.run(look, deadline);
  auto originals = read_key_list(found[originals_at]);
  auto numbers = read_key_list(found[numbers_at]);
  if (originals.empty() && numbers.empty())
    return;

  // Contacts move after their states are read: in the transaction that
  // locked them.
  std::optional<pg_transaction> transaction;
  if (!numbers.empty())
    transaction.emplace(session, deadline);
  pg_pipeline apply;
  std::optional<size_t> stored;
  std::optional<size_t> states;
  if (!originals.empty())
    stored = add_apply_message_changes(apply, originals).first;
  if (!numbers.empty())
    states = add_read_number_changes(apply, numbers);
  auto answers = session.run(apply, deadline);
  if (stored)
    forget_stored(index, read_keys(answers[*stored]));
  if (states)
    move_contacts(session, deadline, numbers, read_number_states(answers[*states]));
  if (transaction)
    transaction->commit();
}

} // namespace kapso::lifecycle
