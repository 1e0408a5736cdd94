// The lifecycle plan: which statements a batch's edits, deletions, number and
// identity changes need, what their answers count as, and the order in which
// recorded number changes move contacts.
#include "persistence/lifecycle_plan.hpp"

#include <boost/test/unit_test.hpp>

using namespace kapso;
using namespace kapso::lifecycle;

namespace {

event message(const std::string& key, const std::string& id) {
  event ev;
  ev.kind = event_kind::message_received;
  ev.contact_key = key;
  ev.message_id = id;
  return ev;
}

event change(event_kind kind, const std::string& key, const std::string& id,
             const std::string& original = "") {
  auto ev = message(key, id);
  ev.kind = kind;
  ev.original_message_id = original;
  return ev;
}

event status(const std::string& id) {
  auto ev = message("", id);
  ev.kind = event_kind::message_status;
  return ev;
}

// A batch of `events` in one workspace, keyed by their own contact keys.
struct batch {
  explicit batch(std::vector<event> evs) : events(std::move(evs)) {
    for (auto& ev : events) {
      entries.push_back({&ev, workspace_id, 1730000000});
      keys.push_back(ev.contact_key);
    }
  }
  std::string workspace_id = "ws";
  std::vector<event> events;
  std::vector<batch_entry> entries;
  std::vector<std::string_view> keys;
};

waiting_index loaded(const std::vector<row_key>& messages = {},
                     const std::vector<row_key>& numbers = {}) {
  waiting_index index;
  index.reload(messages, numbers);
  return index;
}

write_outcome outcome_of(const lifecycle_outcomes& out, size_t entry) {
  for (const auto& [i, outcome] : out.outcomes)
    if (i == entry)
      return outcome;
  BOOST_FAIL("no outcome for entry " << entry);
  return write_outcome::retry;
}

number_change_state state(const std::string& id, const std::string& from, const std::string& to) {
  number_change_state s;
  s.workspace_id = "ws";
  s.event_id = id;
  s.old_phone = from;
  s.new_phone = to;
  s.changed_at_us = 1730000200000000;
  s.old_contact = "contact-" + from;
  s.old_conversation = "conversation-" + from;
  s.moving = 1;
  return s;
}

} // namespace

BOOST_AUTO_TEST_SUITE(lifecycle_plan_tests)

// -- the plan ----------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(plain_messages_and_statuses_need_nothing) {
  batch b{{message("+1", "m1"), status("m1"), message("+2", "m2")}};
  BOOST_TEST(plan_lifecycle(b.entries, b.keys, loaded()).empty());
}

BOOST_AUTO_TEST_CASE(each_change_is_written_once_later_copies_repeat_it) {
  batch b{{change(event_kind::message_edit, "+1", "e1", "m1"),
           change(event_kind::message_revoke, "+1", "r1", "m2"),
           change(event_kind::contact_identity_changed, "+1", "i1"),
           change(event_kind::contact_number_changed, "+1", "n1"),
           change(event_kind::message_edit, "+1", "e1", "m1")}};
  auto plan = plan_lifecycle(b.entries, b.keys, loaded());
  BOOST_TEST(plan.message_changes == (std::vector<size_t>{0, 1}));
  BOOST_TEST(plan.identity_changes == (std::vector<size_t>{2}));
  BOOST_TEST(plan.number_changes == (std::vector<size_t>{3}));
  BOOST_TEST(plan.repeats == (std::vector<size_t>{4}));
  BOOST_TEST(plan.originals == (std::vector<row_key>{{"ws", "m1"}, {"ws", "m2"}}));
  // The number change's own key: its contact moves now if it exists.
  BOOST_TEST(plan.number_keys == (std::vector<row_key>{{"ws", "+1"}}));
}

BOOST_AUTO_TEST_CASE(messages_an_earlier_change_waits_for_are_applied_to) {
  batch b{{message("+1", "m1"), message("+1", "m2"), status("m3")}};
  auto plan = plan_lifecycle(b.entries, b.keys, loaded({{"ws", "m2"}, {"ws", "m3"}}));
  // Only messages: a status does not store the original.
  BOOST_TEST(plan.originals == (std::vector<row_key>{{"ws", "m2"}}));
  BOOST_TEST(plan.message_changes.empty());
  BOOST_TEST(!plan.empty());
}

BOOST_AUTO_TEST_CASE(contacts_written_under_a_changed_number_are_moved) {
  batch b{{message("+1", "m1"), message("+2", "m2"), status("m3"),
           change(event_kind::contact_identity_changed, "+3", "i1")}};
  auto plan =
    plan_lifecycle(b.entries, b.keys, loaded({}, {{"ws", "+1"}, {"ws", "+3"}, {"other", "+2"}}));
  BOOST_TEST(plan.number_keys == (std::vector<row_key>{{"ws", "+1"}, {"ws", "+3"}}));
}

BOOST_AUTO_TEST_CASE(an_overflowing_index_answers_yes_to_everything) {
  std::vector<row_key> many;
  for (size_t i = 0; i < waiting_index::capacity; ++i)
    many.emplace_back("ws", "m" + std::to_string(i));
  auto index = loaded(many, many);
  BOOST_TEST(index.awaits_message("elsewhere", "anything"));
  BOOST_TEST(index.has_number_change("elsewhere", "+9"));
  auto small = loaded({{"ws", "m1"}});
  BOOST_TEST(small.awaits_message("ws", "m1"));
  BOOST_TEST(!small.awaits_message("ws", "m2"));
  small.remove_message({"ws", "m1"});
  BOOST_TEST(!small.awaits_message("ws", "m1"));
  BOOST_TEST(!waiting_index{}.loaded());
}

// -- what the answers count as ---------------------------------------------------------

BOOST_AUTO_TEST_CASE(edits_count_by_whether_they_are_new_and_change_something) {
  batch b{{change(event_kind::message_edit, "+1", "applied", "m1"),
           change(event_kind::message_edit, "+1", "known", "m1"),
           change(event_kind::message_edit, "+1", "early", "m9"),
           change(event_kind::message_revoke, "+1", "again", "m9"),
           change(event_kind::message_edit, "+1", "applied", "m1")}};
  auto plan = plan_lifecycle(b.entries, b.keys, loaded());
  lifecycle_answers answers;
  answers.staged = {{"ws", "applied"}, {"ws", "known"}, {"ws", "early"}};
  answers.stored = {{"ws", "m1"}};
  answers.applied = {{{"ws", "applied"}, true}, {{"ws", "known"}, false}};
  auto out = settle(plan, b.entries, answers);
  BOOST_TEST((outcome_of(out, 0) == write_outcome::accepted));
  // Staged anew but already in the history: it repeats what is stored.
  BOOST_TEST((outcome_of(out, 1) == write_outcome::duplicate));
  // Kept waiting for its original: accepted the first time only.
  BOOST_TEST((outcome_of(out, 2) == write_outcome::accepted));
  BOOST_TEST((outcome_of(out, 3) == write_outcome::duplicate));
  BOOST_TEST((outcome_of(out, 4) == write_outcome::duplicate));
  BOOST_TEST(out.waiting == (std::vector<row_key>{{"ws", "m9"}}));
}

BOOST_AUTO_TEST_CASE(identity_and_number_changes_count_by_their_answers) {
  batch b{{change(event_kind::contact_identity_changed, "+1", "i-new"),
           change(event_kind::contact_identity_changed, "+1", "i-old"),
           change(event_kind::contact_number_changed, "+1", "n-new"),
           change(event_kind::contact_number_changed, "+2", "n-again")}};
  auto plan = plan_lifecycle(b.entries, b.keys, loaded());
  lifecycle_answers answers;
  answers.identities = {{{"ws", "i-new"}, true}, {{"ws", "i-old"}, false}};
  answers.recorded = {{"ws", "n-new"}};
  auto out = settle(plan, b.entries, answers);
  BOOST_TEST((outcome_of(out, 0) == write_outcome::accepted));
  BOOST_TEST((outcome_of(out, 1) == write_outcome::duplicate));
  BOOST_TEST((outcome_of(out, 2) == write_outcome::accepted));
  BOOST_TEST((outcome_of(out, 3) == write_outcome::duplicate));
  BOOST_TEST(out.waiting.empty());
}

// -- moving contacts -------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(a_change_moves_nothing_when_void_or_nothing_is_there) {
  auto same = state("c", "+1", "+1");
  auto voided = state("c", "+1", "+2");
  voided.voided = true;
  auto no_contact = state("c", "+1", "+2");
  no_contact.old_contact.clear();
  auto only_later = state("c", "+1", "+2");
  only_later.moving = 0;
  only_later.staying = 3;
  for (const auto& s : {same, voided, no_contact, only_later})
    BOOST_TEST((plan_move(s).kind == move_kind::none));
}

BOOST_AUTO_TEST_CASE(a_contact_with_nothing_after_the_change_takes_the_new_number) {
  auto s = state("c", "+1", "+2");
  auto move = plan_move(s);
  BOOST_TEST((move.kind == move_kind::rename));
  BOOST_TEST(move.keep_contact == "contact-+1");
  // A contact without a conversation moves all the same.
  s.old_conversation.clear();
  s.moving = 0;
  BOOST_TEST((plan_move(s).kind == move_kind::rename));
}

BOOST_AUTO_TEST_CASE(a_contact_of_the_new_number_is_merged_the_older_row_stays) {
  auto s = state("c", "+1", "+2");
  s.new_contact = "contact-+2";
  s.new_conversation = "conversation-+2";
  auto move = plan_move(s);
  BOOST_TEST((move.kind == move_kind::merge));
  BOOST_TEST(move.keep_is_old);
  BOOST_TEST(move.keep_contact == "contact-+1");
  BOOST_TEST(move.gone_contact == "contact-+2");
  BOOST_TEST(move.keep_conversation == "conversation-+1");
  BOOST_TEST(move.gone_conversation == "conversation-+2");
  s.new_contact_is_older = true;
  move = plan_move(s);
  BOOST_TEST(!move.keep_is_old);
  BOOST_TEST(move.keep_contact == "contact-+2");
  BOOST_TEST(move.gone_conversation == "conversation-+1");
}

BOOST_AUTO_TEST_CASE(messages_after_the_change_stay_the_unread_ones_first) {
  auto s = state("c", "+1", "+2");
  s.moving = 2;
  s.staying = 2;
  s.staying_inbound = 1;
  s.old_unread = 3;
  auto move = plan_move(s);
  BOOST_TEST((move.kind == move_kind::split));
  BOOST_TEST(move.old_conversation == "conversation-+1");
  BOOST_TEST(move.moved_unread == 2);
  s.old_unread = 1;
  BOOST_TEST(plan_move(s).moved_unread == 0);
}

BOOST_AUTO_TEST_CASE(a_walk_follows_moves_phone_by_phone_each_phone_once) {
  auto walks = number_walks({{"ws", "+3"}, {"ws", "+1"}, {"other", "+7"}});
  BOOST_REQUIRE_EQUAL(walks.size(), 2u);
  auto& walk = walks[1];
  BOOST_TEST(walk.workspace_id() == "ws");
  BOOST_TEST(walk.phones_to_read() == (std::vector<std::string>{"+1", "+3"}));

  // +1 has two changes: the first moves nothing, the second moves to +2.
  auto idle = state("a", "+1", "+5");
  idle.old_contact.clear();
  std::vector<number_change_state> states{idle, state("b", "+1", "+2"), state("c", "+3", "+4")};
  auto first = walk.next_move(states);
  BOOST_REQUIRE(first.has_value());
  BOOST_TEST(first->old_phone == "+1");
  BOOST_TEST(first->new_phone == "+2");
  // The phone it moved to is walked after the others.
  BOOST_TEST(walk.phones_to_read() == (std::vector<std::string>{"+1", "+2", "+3"}));

  // States read afresh after the move; +2 changed back to +1 meanwhile.
  auto back = state("d", "+2", "+1");
  states = {idle, state("c", "+3", "+4"), back};
  auto second = walk.next_move(states);
  BOOST_REQUIRE(second.has_value());
  BOOST_TEST(second->old_phone == "+3");
  auto third = walk.next_move(states);
  BOOST_REQUIRE(third.has_value());
  BOOST_TEST(third->old_phone == "+2");
  BOOST_TEST(third->new_phone == "+1");
  // +1 was walked already: the walk ends there.
  BOOST_TEST(!walk.next_move(states).has_value());
  BOOST_TEST(walk.phones_to_read().empty());
}

BOOST_AUTO_TEST_CASE(a_walk_skips_other_workspaces_and_expired_changes) {
  auto walks = number_walks({{"ws", "+1"}});
  auto elsewhere = state("a", "+1", "+2");
  elsewhere.workspace_id = "other";
  auto local = state("b", "+1", "+3");
  local.old_contact.clear();
  auto& walk = walks[0];
  BOOST_TEST(!walk.next_move({elsewhere, local}).has_value());
  BOOST_TEST(walk.phones_to_read().empty());

  auto expiring = number_walks({{"ws", "+1"}});
  auto first = state("c", "+1", "+2");
  auto second = state("d", "+1", "+3");
  BOOST_TEST(expiring[0].next_move({first, second}).has_value());
  // Read again after the move, the second change is gone (expired).
  BOOST_TEST(!expiring[0].next_move({}).has_value());
}

BOOST_AUTO_TEST_SUITE_END()
