// The writers' per-conversation memory: a retry of a committed message is
// recognised, nothing else is, and the memory stays within its bounds.
#include "persistence/conversation_lanes.hpp"

#include <boost/test/unit_test.hpp>

using namespace kapso;
using namespace std::chrono_literals;

namespace {

using clock_type = conversation_lanes::clock_type;

event message(std::string customer, std::string id) {
  event ev;
  ev.kind = event_kind::message_received;
  ev.contact_key = std::move(customer);
  ev.message_id = std::move(id);
  return ev;
}

} // namespace

BOOST_AUTO_TEST_SUITE(conversation_lanes_memory)

BOOST_AUTO_TEST_CASE(a_committed_message_is_recognised_and_only_in_its_workspace) {
  conversation_lanes lanes{100, 5s};
  auto now = clock_type::now();
  auto ev = message("+15551234567", "wamid.A");
  BOOST_TEST(!lanes.recently_committed("ws-1", ev));
  lanes.committed("ws-1", ev, now);
  BOOST_TEST(lanes.recently_committed("ws-1", ev));
  BOOST_TEST(!lanes.recently_committed("ws-2", ev));
  BOOST_TEST(!lanes.recently_committed("ws-1", message("+15551234567", "wamid.B")));
  BOOST_TEST(!lanes.recently_committed("ws-1", message("+15550000000", "wamid.A")));
}

BOOST_AUTO_TEST_CASE(no_false_match_among_many_similar_ids) {
  // A false match would answer "duplicate" for a message never stored.
  conversation_lanes lanes{100000, 60s};
  auto now = clock_type::now();
  for (int i = 0; i < 20000; ++i)
    lanes.committed("ws", message("+1555" + std::to_string(i), "wamid." + std::to_string(i)), now);
  size_t false_matches = 0;
  for (int i = 0; i < 20000; ++i) {
    // The same customers with ids never committed, and ids of others.
    false_matches += lanes.recently_committed(
      "ws", message("+1555" + std::to_string(i), "wamid." + std::to_string(i + 1)));
    false_matches += lanes.recently_committed(
      "ws", message("+1555" + std::to_string(i), "wamid.x" + std::to_string(i)));
  }
  BOOST_TEST(false_matches == 0u);
}

BOOST_AUTO_TEST_CASE(only_the_latest_ids_of_a_conversation_are_kept) {
  conversation_lanes lanes{10, 5s};
  auto now = clock_type::now();
  for (int i = 0; i < 40; ++i)
    lanes.committed("ws", message("c", "m" + std::to_string(i)), now);
  BOOST_TEST(lanes.recently_committed("ws", message("c", "m39")));
  BOOST_TEST(!lanes.recently_committed("ws", message("c", "m0")));
  BOOST_TEST(lanes.size() == 1u);
}

BOOST_AUTO_TEST_CASE(conversations_past_the_cap_are_not_remembered) {
  conversation_lanes lanes{3, 5s};
  auto now = clock_type::now();
  for (int i = 0; i < 10; ++i)
    lanes.committed("ws", message("c" + std::to_string(i), "m"), now);
  BOOST_TEST(lanes.size() == 3u);
  BOOST_TEST(!lanes.recently_committed("ws", message("c9", "m")));
}

BOOST_AUTO_TEST_CASE(idle_conversations_are_forgotten) {
  conversation_lanes lanes{10, 5s};
  auto now = clock_type::now();
  lanes.committed("ws", message("old", "m1"), now);
  lanes.committed("ws", message("new", "m2"), now + 4s);
  BOOST_TEST(lanes.drop_idle(now + 6s) == 1u);
  BOOST_TEST(!lanes.recently_committed("ws", message("old", "m1")));
  BOOST_TEST(lanes.recently_committed("ws", message("new", "m2")));
}

BOOST_AUTO_TEST_CASE(statuses_and_messages_without_id_are_never_answered_from_memory) {
  conversation_lanes lanes{10, 5s};
  auto now = clock_type::now();
  auto status = message("c", "m");
  status.kind = event_kind::message_status;
  lanes.committed("ws", message("c", "m"), now);
  BOOST_TEST(!lanes.recently_committed("ws", status));
  BOOST_TEST(!lanes.recently_committed("ws", message("c", "")));
}

BOOST_AUTO_TEST_SUITE_END()
