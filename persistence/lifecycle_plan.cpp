// The lifecycle plan of a batch, its outcomes, and the walk of number changes.
#include "persistence/lifecycle_plan.hpp"

#include <algorithm>

namespace kapso::lifecycle {

namespace {

write_outcome outcome_of(bool first_time, bool changed) {
  return first_time && changed ? write_outcome::accepted : write_outcome::duplicate;
}

template <class T>
std::vector<T> sorted(std::set<T> items) {
  return {std::make_move_iterator(items.begin()), std::make_move_iterator(items.end())};
}

} // namespace

// -- waiting_index -----------------------------------------------------------------

void waiting_index::reload(const std::vector<row_key>& messages,
                           const std::vector<row_key>& numbers) {
  messages_.clear();
  numbers_.clear();
  for (const auto& m : messages)
    messages_.insert(key(m));
  for (const auto& n : numbers)
    numbers_.insert(key(n));
  messages_overflow_ = messages.size() >= capacity;
  numbers_overflow_ = numbers.size() >= capacity;
  loaded_ = true;
}

std::string waiting_index::key(std::string_view workspace_id, std::string_view id) {
  std::string k;
  k.reserve(workspace_id.size() + 1 + id.size());
  k.append(workspace_id).append(1, '\n').append(id);
  return k;
}

bool waiting_index::awaits_message(std::string_view workspace_id,
                                   std::string_view message_id) const {
  return messages_overflow_
         || (!messages_.empty() && messages_.count(key(workspace_id, message_id)) != 0);
}

bool waiting_index::has_number_change(std::string_view workspace_id,
                                      std::string_view phone) const {
  return numbers_overflow_
         || (!numbers_.empty() && numbers_.count(key(workspace_id, phone)) != 0);
}

void waiting_index::add_message(const row_key& message) {
  if (messages_.size() >= capacity)
    messages_overflow_ = true;
  else
    messages_.insert(key(message));
}

void waiting_index::remove_message(const row_key& message) {
  if (!messages_.empty())
    messages_.erase(key(message));
}

void waiting_index::add_number(const row_key& contact) {
  if (numbers_.size() >= capacity)
    numbers_overflow_ = true;
  else
    numbers_.insert(key(contact));
}

// -- the batch's plan and outcomes ---------------------------------------------------

lifecycle_plan plan_lifecycle(const std::vector<batch_entry>& entries,
                              const std::vector<std::string_view>& keys,
                              const waiting_index& waiting) {
  lifecycle_plan plan;
  std::set<row_key> written;
  std::set<row_key> originals;
  std::set<row_key> number_keys;
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& ev = *entries[i].ev;
    auto ws = entries[i].workspace_id;
    if (touches_contact(ev.kind) && waiting.has_number_change(ws, keys[i]))
      number_keys.emplace(ws, keys[i]);
    if (is_message(ev.kind) && waiting.awaits_message(ws, ev.message_id))
      originals.emplace(ws, ev.message_id);
    if (!is_change(ev.kind))
      continue;
    if (!written.emplace(ws, ev.message_id).second) {
      plan.repeats.push_back(i);
      continue;
    }
    if (is_message_change(ev.kind)) {
      plan.message_changes.push_back(i);
      originals.emplace(ws, ev.original_message_id);
    } else if (ev.kind == event_kind::contact_number_changed) {
      plan.number_changes.push_back(i);
      number_keys.emplace(ws, keys[i]);
    } else {
      plan.identity_changes.push_back(i);
    }
  }
  plan.originals = sorted(std::move(originals));
  plan.number_keys = sorted(std::move(number_keys));
  return plan;
}

lifecycle_outcomes settle(const lifecycle_plan& plan, const std::vector<batch_entry>& entries,
                          const lifecycle_answers& answers) {
  lifecycle_outcomes out;
  std::set<row_key> waiting;
  for (auto i : plan.repeats)
    out.outcomes.emplace_back(i, write_outcome::duplicate);
  for (auto i : plan.message_changes) {
    const auto& ev = *entries[i].ev;
    std::string ws{entries[i].workspace_id};
    row_key event_key{ws, ev.message_id};
    auto applied = answers.applied.find(event_key);
    // Not applied: it waits for its original, which is a change too.
    bool changed = applied == answers.applied.end() || applied->second;
    out.outcomes.emplace_back(i, outcome_of(answers.staged.count(event_key) != 0, changed));
    row_key original{ws, ev.original_message_id};
    if (answers.stored.count(original) == 0)
      waiting.insert(std::move(original));
  }
  for (auto i : plan.identity_changes) {
    auto noted = answers.identities.find({std::string{entries[i].workspace_id},
                                          entries[i].ev->message_id});
    if (noted != answers.identities.end())
      out.outcomes.emplace_back(i, outcome_of(true, noted->second));
  }
  for (auto i : plan.number_changes) {
    row_key event_key{std::string{entries[i].workspace_id}, entries[i].ev->message_id};
    out.outcomes.emplace_back(i, outcome_of(answers.recorded.count(event_key) != 0, true));
  }
  out.waiting = sorted(std::move(waiting));
  return out;
}

// -- number changes ----------------------------------------------------------------

contact_move plan_move(const number_change_state& s) {
  contact_move move;
  move.workspace_id = s.workspace_id;
  move.old_phone = s.old_phone;
  move.new_phone = s.new_phone;
  move.changed_at_us = s.changed_at_us;
  // A change back to an earlier number voids the earlier change, so that
  // messages never move back and forth.
  if (s.old_phone == s.new_phone || s.voided || s.old_contact.empty())
    return move;
  if (s.staying == 0) {
    if (s.new_contact.empty()) {
      move.kind = move_kind::rename;
      move.keep_contact = s.old_contact;
      return move;
    }
    // The older row stays: it is the one notes and tasks may refer to.
    move.kind = move_kind::merge;
    move.keep_is_old = !s.new_contact_is_older;
    move.keep_contact = move.keep_is_old ? s.old_contact : s.new_contact;
    move.gone_contact = move.keep_is_old ? s.new_contact : s.old_contact;
    move.keep_conversation = move.keep_is_old ? s.old_conversation : s.new_conversation;
    move.gone_conversation = move.keep_is_old ? s.new_conversation : s.old_conversation;
    return move;
  }
  if (s.moving == 0)
    return move;
  move.kind = move_kind::split;
  move.old_conversation = s.old_conversation;
  move.moved_unread = std::max<int64_t>(0, s.old_unread - s.staying_inbound);
  return move;
}

number_walk::number_walk(std::string workspace_id, std::vector<std::string> phones)
  : workspace_id_(std::move(workspace_id)), todo_(std::move(phones)) {}

std::vector<std::string> number_walk::phones_to_read() const {
  std::set<std::string> phones;
  if (phone_)
    phones.insert(*phone_);
  for (size_t k = next_phone_; k < todo_.size(); ++k)
    if (walked_.count(todo_[k]) == 0)
      phones.insert(todo_[k]);
  return sorted(std::move(phones));
}

std::optional<contact_move> number_walk::next_move(const std::vector<number_change_state>& states) {
  std::map<std::string, const number_change_state*> by_event;
  for (const auto& s : states)
    if (s.workspace_id == workspace_id_)
      by_event.emplace(s.event_id, &s);
  for (;;) {
    if (!phone_) {
      if (next_phone_ >= todo_.size())
        return std::nullopt;
      auto phone = todo_[next_phone_++];
      if (!walked_.insert(phone).second)
        continue;
      // The phone's changes as they are now; one recorded later by another
      // writer is left to a later batch or the sweep.
      change_ids_.clear();
      for (const auto& s : states)
        if (s.workspace_id == workspace_id_ && s.old_phone == phone)
          change_ids_.push_back(s.event_id);
      next_change_ = 0;
      phone_ = std::move(phone);
    }
    while (next_change_ < change_ids_.size()) {
      auto found = by_event.find(change_ids_[next_change_++]);
      if (found == by_event.end())
        continue; // expired meanwhile
      auto move = plan_move(*found->second);
      if (move.kind != move_kind::none) {
        todo_.push_back(move.new_phone);
        return move;
      }
    }
    phone_.reset();
  }
}

std::vector<number_walk> number_walks(const std::vector<row_key>& keys) {
  std::map<std::string, std::set<std::string>> phones_of;
  for (const auto& [ws, phone] : keys)
    phones_of[ws].insert(phone);
  std::vector<number_walk> walks;
  for (auto& [ws, phones] : phones_of)
    walks.emplace_back(ws, sorted(std::move(phones)));
  return walks;
}

} // namespace kapso::lifecycle
