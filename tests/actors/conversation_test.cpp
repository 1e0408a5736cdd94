// The conversation actor against a stub writer: forwarding, folding of
// concurrent retries, the recent-id cache, errors, idle stop and ordering.
#include "actors/conversation.hpp"

#include <boost/test/unit_test.hpp>

#include "tests/actors/fixture.hpp"

using namespace kapso;
using namespace kapso::testing;
using namespace std::chrono_literals;

namespace {

routed_event message(const std::string& message_id) {
  routed_event r;
  r.workspace_id = "ws-1";
  r.ev.kind = event_kind::message_received;
  r.ev.event_type = "whatsapp.message.received";
  r.ev.phone_number_id = "pn-1";
  r.ev.contact_key = "+15550001111";
  r.ev.message_id = message_id;
  r.ev.timestamp = 1700000000;
  return r;
}

routed_event status(const std::string& message_id, const std::string& value) {
  auto r = message(message_id);
  r.ev.kind = event_kind::message_status;
  r.ev.event_type = "whatsapp.message." + value;
  r.ev.status = value;
  return r;
}

struct conversation_fixture : actor_fixture {
  std::shared_ptr<writer_log> writer_seen = std::make_shared<writer_log>();
  caf::actor writer = spawn(stub_writer, writer_seen);

  // Idle 5 s; writes inside a delivery carry no timer, so only the idle rule
  // can end an actor.
  caf::actor start_conversation() {
    auto conv = spawn(conversation, writer, std::chrono::milliseconds(5s));
    run();
    return conv;
  }

  std::shared_ptr<reply<write_outcome>> ingest(const caf::actor& conv, routed_event r) {
    return ask<write_outcome>(conv, ingest_atom::value, std::move(r));
  }
};

} // namespace

BOOST_FIXTURE_TEST_SUITE(conversation_actor, conversation_fixture)

BOOST_AUTO_TEST_CASE(forwards_once_and_returns_the_writers_outcome) {
  auto conv = start_conversation();
  auto first = ingest(conv, message("wamid.1"));
  run();
  BOOST_REQUIRE(first->value.has_value());
  BOOST_TEST(*first->value == write_outcome::accepted);
  BOOST_REQUIRE_EQUAL(writer_seen->received.size(), 1u);
  BOOST_TEST(writer_seen->received[0].workspace_id == "ws-1");
  BOOST_TEST(writer_seen->received[0].ev.message_id == "wamid.1");
  BOOST_TEST(writer_seen->unexpected == 0u);

  // Not a constant: whatever the writer says is what the requester hears.
  writer_seen->outcome = write_outcome::ignored;
  auto second = ingest(conv, message("wamid.2"));
  run();
  BOOST_REQUIRE(second->value.has_value());
  BOOST_TEST(*second->value == write_outcome::ignored);
  BOOST_TEST(writer_seen->received.size() == 2u);
}

BOOST_AUTO_TEST_CASE(concurrent_copies_of_one_message_make_one_write) {
  auto conv = start_conversation();
  writer_seen->how = writer_log::mode::hold;
  auto first = ingest(conv, message("wamid.7"));
  auto copy1 = ingest(conv, message("wamid.7"));
  auto copy2 = ingest(conv, message("wamid.7"));
  run();
  BOOST_TEST(writer_seen->received.size() == 1u);
  BOOST_REQUIRE_EQUAL(writer_seen->held.size(), 1u);
  BOOST_TEST(!first->answered());
  BOOST_TEST(!copy1->answered());
  BOOST_TEST(!copy2->answered());

  caf::anon_send(writer, release_atom::value, write_outcome::accepted);
  run();
  BOOST_REQUIRE(first->value.has_value());
  BOOST_REQUIRE(copy1->value.has_value());
  BOOST_REQUIRE(copy2->value.has_value());
  BOOST_TEST(*first->value == write_outcome::accepted);
  BOOST_TEST(*copy1->value == write_outcome::duplicate);
  BOOST_TEST(*copy2->value == write_outcome::duplicate);
  BOOST_TEST(writer_seen->received.size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_retry_after_the_write_is_answered_from_memory) {
  auto conv = start_conversation();
  auto first = ingest(conv, message("wamid.9"));
  run();
  BOOST_REQUIRE(first->value.has_value());
  BOOST_TEST(*first->value == write_outcome::accepted);
  BOOST_REQUIRE_EQUAL(writer_seen->received.size(), 1u);

  auto retry = ingest(conv, message("wamid.9"));
  run();
  BOOST_REQUIRE(retry->value.has_value());
  BOOST_TEST(*retry->value == write_outcome::duplicate);
  BOOST_TEST(writer_seen->received.size() == 1u);

  // Another id is still written.
  auto other = ingest(conv, message("wamid.10"));
  run();
  BOOST_REQUIRE(other->value.has_value());
  BOOST_TEST(*other->value == write_outcome::accepted);
  BOOST_TEST(writer_seen->received.size() == 2u);
}

BOOST_AUTO_TEST_CASE(a_writer_error_reaches_the_requester_and_the_copies) {
  auto conv = start_conversation();
  writer_seen->how = writer_log::mode::hold;
  auto first = ingest(conv, message("wamid.3"));
  auto copy = ingest(conv, message("wamid.3"));
  run();
  BOOST_REQUIRE_EQUAL(writer_seen->held.size(), 1u);

  caf::anon_send(writer, release_atom::value, make_error(ingest_errc::unavailable));
  run();
  BOOST_REQUIRE(first->answered());
  BOOST_REQUIRE(copy->answered());
  BOOST_TEST(!first->value.has_value());
  BOOST_TEST(!copy->value.has_value());
  BOOST_TEST((first->error == make_error(ingest_errc::unavailable)));
  BOOST_TEST((copy->error == make_error(ingest_errc::unavailable)));

  // A failed write is not remembered: the next retry goes to the writer.
  writer_seen->how = writer_log::mode::answer;
  auto retry = ingest(conv, message("wamid.3"));
  run();
  BOOST_REQUIRE(retry->value.has_value());
  BOOST_TEST(*retry->value == write_outcome::accepted);
  BOOST_TEST(writer_seen->received.size() == 2u);
}

BOOST_AUTO_TEST_CASE(a_writer_error_answered_at_once_reaches_the_requester) {
  auto conv = start_conversation();
  writer_seen->how = writer_log::mode::fail;
  writer_seen->failure = make_error(ingest_errc::unavailable);
  auto first = ingest(conv, message("wamid.4"));
  run();
  BOOST_REQUIRE(first->answered());
  BOOST_TEST(!first->value.has_value());
  BOOST_TEST((first->error == make_error(ingest_errc::unavailable)));
}

BOOST_AUTO_TEST_CASE(stops_after_idle_with_nothing_outstanding) {
  auto conv = start_conversation();
  auto seen = watch(conv);
  run();
  advance(4s);
  BOOST_TEST(!seen->down);
  advance(2s);
  BOOST_TEST(seen->down);
  BOOST_TEST(!seen->reason); // a normal exit, not a failure

  auto late = ingest(conv, message("wamid.late"));
  run();
  BOOST_REQUIRE(late->answered());
  BOOST_TEST((late->error == caf::sec::request_receiver_down));
  BOOST_TEST(writer_seen->received.empty());
}

BOOST_AUTO_TEST_CASE(activity_restarts_the_idle_period) {
  auto conv = start_conversation();
  auto seen = watch(conv);
  run();
  advance(4s);
  auto r = ingest(conv, message("wamid.a"));
  run();
  BOOST_REQUIRE(r->value.has_value());
  advance(4s); // 8 s since start, 4 s since the last message
  BOOST_TEST(!seen->down);
  advance(2s);
  BOOST_TEST(seen->down);
}

BOOST_AUTO_TEST_CASE(does_not_stop_while_a_write_is_outstanding) {
  auto conv = start_conversation();
  auto seen = watch(conv);
  writer_seen->how = writer_log::mode::hold;
  auto pending = ingest(conv, message("wamid.slow"));
  run();
  BOOST_REQUIRE_EQUAL(writer_seen->held.size(), 1u);

  advance(6s);
  BOOST_TEST(!seen->down);
  advance(6s);
  BOOST_TEST(!seen->down);

  caf::anon_send(writer, release_atom::value, write_outcome::accepted);
  run();
  BOOST_REQUIRE(pending->value.has_value());
  BOOST_TEST(*pending->value == write_outcome::accepted);
  BOOST_TEST(!seen->down);

  // Once the write is answered, idleness ends it as usual.
  advance(6s);
  BOOST_TEST(seen->down);
}

BOOST_AUTO_TEST_CASE(events_reach_the_writer_in_send_order) {
  auto conv = start_conversation();
  // Held, so that order cannot come from the writer answering one by one.
  writer_seen->how = writer_log::mode::hold;
  std::vector<routed_event> events{message("wamid.o1"), status("wamid.o1", "delivered"),
                                   message("wamid.o2"), status("wamid.o1", "read"),
                                   message("wamid.o3")};
  auto replies = ingest_in_order(conv, events);
  run();
  BOOST_REQUIRE_EQUAL(writer_seen->received.size(), events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    BOOST_TEST_CONTEXT("event " << i) {
      BOOST_TEST(writer_seen->received[i].ev.message_id == events[i].ev.message_id);
      BOOST_TEST(writer_seen->received[i].ev.event_type == events[i].ev.event_type);
    }
  }
  caf::anon_send(writer, release_atom::value, write_outcome::accepted);
  run();
  for (auto& r : replies) {
    BOOST_REQUIRE(r->value.has_value());
    BOOST_TEST(*r->value == write_outcome::accepted);
  }
}

BOOST_AUTO_TEST_SUITE_END()
