// The router against stub writers and a stub directory: signature check,
// workspace resolution and its cache, one part per (delivery, writer).
#include "actors/router.hpp"

#include <boost/test/unit_test.hpp>

#include "domain/signature.hpp"
#include "tests/actors/fixture.hpp"

using namespace kapso;
using namespace kapso::testing;
using namespace std::chrono_literals;

namespace {

const std::string global_secret = "s3cret";

event message(const std::string& phone_number_id, const std::string& contact_key,
              const std::string& message_id) {
  event ev;
  ev.kind = event_kind::message_received;
  ev.event_type = "whatsapp.message.received";
  ev.phone_number_id = phone_number_id;
  ev.contact_key = contact_key;
  ev.message_id = message_id;
  ev.timestamp = 1700000000;
  return ev;
}

event of_kind(event_kind kind, const std::string& type, const std::string& phone_number_id) {
  event ev;
  ev.kind = kind;
  ev.event_type = type;
  ev.phone_number_id = phone_number_id;
  ev.contact_key = "+15550009999";
  return ev;
}

// A delivery as the HTTP layer hands it over; the body only has to be the
// bytes the signature covers.
delivery_ptr signed_delivery(std::vector<event> events, const std::string& secret,
                             uint32_t malformed = 0) {
  auto d = std::make_shared<delivery>();
  d->body = "{\"events\":[";
  for (const auto& ev : events)
    d->body += "\"" + ev.message_id + "\",";
  d->body += "]}";
  d->kapso_signature = hmac_sha256_hex(secret, d->body);
  d->events = std::move(events);
  d->malformed = malformed;
  return d;
}

struct router_fixture : actor_fixture {
  settings conf;
  std::shared_ptr<recording_sink> sink = std::make_shared<recording_sink>();
  std::shared_ptr<directory_log> directory_seen = std::make_shared<directory_log>();
  std::vector<std::shared_ptr<writer_log>> writer_seen;
  std::vector<writer_actor> writers;
  directory_actor directory;
  router_actor route;
  uint64_t next_ticket = 1;

  router_fixture() {
    conf.webhook_secrets = {global_secret};
    conf.writers = 2;
    // Far beyond real elapsed time: only the test clock may expire entries.
    conf.workspace_cache_ttl = 1h;
    conf.workspace_lookup_timeout = 1h;
    directory_seen->known["pn-1"] = workspace_info{"ws-1", "pn-1", {}};
    for (int i = 0; i < 2; ++i) {
      writer_seen.push_back(std::make_shared<writer_log>());
      writers.push_back(spawn(stub_writer, writer_seen.back(), answer_sink_ptr{sink}));
    }
    directory = spawn(stub_directory, directory_seen);
  }

  // Settings are read at spawn: tests change `conf` first.
  void start_router() {
    route = spawn(router, conf, directory, writers, answer_sink_ptr{sink});
    run();
  }

  // Sends a delivery the way the HTTP layer does; its ticket.
  uint64_t ingest(delivery_ptr d) {
    auto ticket = next_ticket++;
    caf::anon_send(route, ingest_atom::value, std::move(d), ticket);
    run();
    return ticket;
  }

  const recording_sink::answer& answer(uint64_t ticket) {
    BOOST_REQUIRE_MESSAGE(sink->answers.count(ticket) == 1, "delivery " << ticket
                                                                        << " not answered");
    return sink->answers[ticket];
  }

  size_t parts_written() const {
    size_t n = 0;
    for (const auto& w : writer_seen)
      n += w->received.size();
    return n;
  }

  // Two customers of one workspace whose conversations belong to different
  // writers; if the hash gave every key to one writer there is none.
  std::pair<std::string, std::string> contacts_on_two_writers(const std::string& ws) {
    std::string first = "+1555000000";
    auto first_writer = writer_for(ws, message("", first, ""), 2);
    for (int i = 1; i < 64; ++i) {
      auto other = "+1555000" + std::to_string(1000 + i);
      if (writer_for(ws, message("", other, ""), 2) != first_writer)
        return {first, other};
    }
    return {first, first};
  }
};

} // namespace

BOOST_FIXTURE_TEST_SUITE(router_actor_tests, router_fixture)

BOOST_AUTO_TEST_CASE(a_delivery_reaches_the_writer_of_its_conversation_as_one_part) {
  start_router();
  auto contact = std::string{"+15550001111"};
  auto ticket = ingest(signed_delivery({message("pn-1", contact, "wamid.a1"),
                                        message("pn-1", contact, "wamid.a2")},
                                       global_secret));
  const auto& a = answer(ticket);
  BOOST_TEST(!a.failure.has_value());
  BOOST_TEST(a.parts == 1u);
  BOOST_TEST(a.counts.accepted == 2u);

  auto owner = writer_for("ws-1", message("pn-1", contact, ""), 2);
  const auto& got = writer_seen[owner]->received;
  BOOST_REQUIRE_EQUAL(got.size(), 1u); // one message for both events
  BOOST_TEST(got[0].ticket == ticket);
  BOOST_TEST(got[0].parts == 1u);
  BOOST_REQUIRE_EQUAL(got[0].items.size(), 2u);
  BOOST_TEST(got[0].d->events[got[0].items[0].event_index].message_id == "wamid.a1");
  BOOST_TEST(got[0].d->events[got[0].items[1].event_index].message_id == "wamid.a2");
  BOOST_TEST(got[0].workspace_ids == std::vector<std::string>{"ws-1"});
  BOOST_TEST(writer_seen[1 - owner]->received.empty());
  BOOST_REQUIRE_EQUAL(directory_seen->asked.size(), 1u);
  BOOST_TEST(directory_seen->asked[0] == std::vector<std::string>{"pn-1"});
}

BOOST_AUTO_TEST_CASE(a_batch_over_two_writers_is_two_parts_answered_once) {
  start_router();
  auto [a, b] = contacts_on_two_writers("ws-1");
  BOOST_REQUIRE_MESSAGE(a != b, "writer_for gives 64 keys to a single writer");
  std::vector<event> events;
  for (int i = 0; i < 10; ++i)
    events.push_back(message("pn-1", i % 2 == 0 ? a : b, "wamid.e" + std::to_string(i)));
  events.push_back(of_kind(event_kind::unknown, "whatsapp.something.new", "pn-1"));
  auto ticket = ingest(signed_delivery(std::move(events), global_secret, 1));
  // One message per (delivery, writer), not one per event.
  BOOST_REQUIRE_EQUAL(writer_seen[0]->received.size(), 1u);
  BOOST_REQUIRE_EQUAL(writer_seen[1]->received.size(), 1u);
  BOOST_TEST(writer_seen[0]->received[0].items.size() == 5u);
  BOOST_TEST(writer_seen[1]->received[0].items.size() == 5u);
  BOOST_TEST(writer_seen[0]->received[0].parts == 2u);
  // What the router settled itself (one unknown type, one malformed) is
  // counted once, by one of the parts.
  auto counted = writer_seen[0]->received[0].counted.ignored
                 + writer_seen[1]->received[0].counted.ignored;
  BOOST_TEST(counted == 2u);
  const auto& ans = answer(ticket);
  BOOST_TEST(ans.parts_done == 2u);
  BOOST_TEST(ans.counts.accepted == 10u);
  BOOST_TEST(ans.counts.ignored == 2u);
}

BOOST_AUTO_TEST_CASE(wrong_or_missing_signature_is_refused_before_any_write) {
  start_router();
  auto wrong = ingest(signed_delivery({message("pn-1", "+15550001111", "wamid.b1")}, "wrong"));
  BOOST_TEST(answer(wrong).failure == ingest_errc::bad_signature);

  auto unsigned_delivery = std::make_shared<delivery>(
    *signed_delivery({message("pn-1", "+15550001111", "wamid.b2")}, global_secret));
  unsigned_delivery->kapso_signature.clear();
  auto missing = ingest(unsigned_delivery);
  BOOST_TEST(answer(missing).failure == ingest_errc::bad_signature);

  // A global secret applies to a delivery without usable events too.
  auto empty = ingest(signed_delivery({}, "wrong", 2));
  BOOST_TEST(answer(empty).failure == ingest_errc::bad_signature);
  BOOST_TEST(parts_written() == 0u);
}

BOOST_AUTO_TEST_CASE(unknown_phone_number_id_is_ignored) {
  start_router();
  auto ticket = ingest(signed_delivery({message("pn-unknown", "+15550001111", "wamid.c1")},
                                       global_secret));
  const auto& a = answer(ticket);
  BOOST_TEST(!a.failure.has_value());
  BOOST_TEST(a.counts.ignored == 1u);
  BOOST_TEST(a.counts.accepted == 0u);
  BOOST_TEST(parts_written() == 0u);
}

BOOST_AUTO_TEST_CASE(a_workspace_secret_replaces_the_global_one) {
  directory_seen->known["pn-2"] = workspace_info{"ws-2", "pn-2", {"ws"}};
  start_router();
  auto global = ingest(signed_delivery({message("pn-2", "+15550002222", "wamid.d1")},
                                       global_secret));
  BOOST_TEST(answer(global).failure == ingest_errc::bad_signature);
  BOOST_TEST(parts_written() == 0u);
  auto own = ingest(signed_delivery({message("pn-2", "+15550002222", "wamid.d1")}, "ws"));
  BOOST_TEST(!answer(own).failure.has_value());
  BOOST_TEST(answer(own).counts.accepted == 1u);
  BOOST_TEST(parts_written() == 1u);
}

BOOST_AUTO_TEST_CASE(workspaces_are_cached_for_the_ttl) {
  start_router();
  ingest(signed_delivery({message("pn-1", "+15550001111", "wamid.f1")}, global_secret));
  ingest(signed_delivery({message("pn-1", "+15550001111", "wamid.f2")}, global_secret));
  BOOST_TEST(directory_seen->asked.size() == 1u);

  // Unknown ids are cached too: a flood of them does not flood the directory.
  ingest(signed_delivery({message("pn-x", "+15550001111", "wamid.f3")}, global_secret));
  auto again = ingest(signed_delivery({message("pn-x", "+15550001111", "wamid.f4")},
                                      global_secret));
  BOOST_TEST(answer(again).counts.ignored == 1u);
  BOOST_TEST(directory_seen->asked.size() == 2u);

  // Past the TTL the unknown id is asked for again: it may have been added.
  directory_seen->known["pn-x"] = workspace_info{"ws-x", "pn-x", {}};
  advance(conf.workspace_cache_ttl + 1s);
  auto later = ingest(signed_delivery({message("pn-x", "+15550001111", "wamid.f5")},
                                      global_secret));
  BOOST_TEST(directory_seen->asked.size() == 3u);
  BOOST_TEST(answer(later).counts.accepted == 1u);
}

BOOST_AUTO_TEST_CASE(a_failed_look_up_refuses_unknown_ids_and_serves_known_ones_stale) {
  conf.workspace_cache_ttl = 1s;
  start_router();
  auto first = ingest(signed_delivery({message("pn-1", "+15550001111", "wamid.h0")},
                                      global_secret));
  BOOST_TEST(answer(first).counts.accepted == 1u);
  directory_seen->fail = true;
  advance(2s);
  auto known = ingest(signed_delivery({message("pn-1", "+15550001111", "wamid.h1")},
                                      global_secret));
  BOOST_TEST(!answer(known).failure.has_value());
  BOOST_TEST(answer(known).counts.accepted == 1u);
  auto unknown = ingest(signed_delivery({message("pn-9", "+15550001111", "wamid.h2")},
                                        global_secret));
  BOOST_TEST(answer(unknown).failure == ingest_errc::unavailable);
}

BOOST_AUTO_TEST_CASE(the_last_known_entries_serve_after_a_restart_while_the_database_is_away) {
  directory_seen->from_snapshot = true;
  start_router();
  auto known = ingest(signed_delivery({message("pn-1", "+15550001111", "wamid.s1")},
                                      global_secret));
  BOOST_TEST(!answer(known).failure.has_value());
  BOOST_TEST(answer(known).counts.accepted == 1u);
  // Not in the snapshot: unknown for now, not "matches no workspace".
  auto unknown = ingest(signed_delivery({message("pn-7", "+15550001111", "wamid.s2")},
                                        global_secret));
  BOOST_TEST(answer(unknown).failure == ingest_errc::unavailable);
}

BOOST_AUTO_TEST_CASE(a_cached_workspace_missing_from_the_snapshot_is_served_stale) {
  conf.workspace_cache_ttl = 1s;
  start_router();
  auto first = ingest(signed_delivery({message("pn-1", "+15550001111", "wamid.c1")},
                                      global_secret));
  BOOST_TEST(answer(first).counts.accepted == 1u);
  // PostgreSQL goes away and the directory's snapshot lacks pn-1 (say it
  // was written before pn-1 was registered): the router's own entry serves.
  directory_seen->from_snapshot = true;
  directory_seen->known.erase("pn-1");
  advance(2s);
  auto stale = ingest(signed_delivery({message("pn-1", "+15550001111", "wamid.c2")},
                                      global_secret));
  BOOST_TEST(directory_seen->asked.size() == 2u);
  BOOST_TEST(!answer(stale).failure.has_value());
  BOOST_TEST(answer(stale).counts.accepted == 1u);
}

BOOST_AUTO_TEST_CASE(look_ups_for_deliveries_no_global_secret_signs_are_rate_limited) {
  conf.lookup_rate = 3;
  start_router();
  for (int i = 0; i < 10; ++i) {
    auto ticket = ingest(signed_delivery(
      {message("pn-flood-" + std::to_string(i), "+15550001111", "wamid.r")}, "not-ours"));
    BOOST_TEST(answer(ticket).failure == ingest_errc::bad_signature);
  }
  // Three look-ups, then refused without asking.
  BOOST_TEST(directory_seen->asked.size() == 3u);
  // Without any signature no look-up is needed at all.
  auto bare = std::make_shared<delivery>(
    *signed_delivery({message("pn-flood-x", "+15550001111", "wamid.r0")}, global_secret));
  bare->kapso_signature.clear();
  advance(2s);
  auto refused = ingest(bare);
  BOOST_TEST(answer(refused).failure == ingest_errc::bad_signature);
  BOOST_TEST(directory_seen->asked.size() == 3u);
  // Signed traffic of a known workspace is not affected.
  auto ticket = ingest(signed_delivery({message("pn-1", "+15550001111", "wamid.r1")},
                                       global_secret));
  BOOST_TEST(answer(ticket).counts.accepted == 1u);
}

BOOST_AUTO_TEST_CASE(inactive_unknown_and_malformed_events_are_only_counted) {
  start_router();
  auto inactive = ingest(signed_delivery(
    {of_kind(event_kind::conversation_inactive, "whatsapp.conversation.inactive", "pn-1")},
    global_secret));
  BOOST_TEST(answer(inactive).counts.accepted == 1u);
  auto unknown = ingest(signed_delivery(
    {of_kind(event_kind::unknown, "whatsapp.something.new", "pn-1")}, global_secret));
  BOOST_TEST(answer(unknown).counts.ignored == 1u);
  auto malformed = ingest(signed_delivery({}, global_secret, 2));
  BOOST_TEST(answer(malformed).counts.ignored == 2u);
  BOOST_TEST(parts_written() == 0u);
}

BOOST_AUTO_TEST_CASE(a_look_up_the_directory_cannot_answer_is_refused) {
  start_router();
  // The directory never answers: its behaviour is replaced by nothing.
  caf::anon_send_exit(directory, caf::exit_reason::user_shutdown);
  run();
  auto ticket = next_ticket++;
  caf::anon_send(route, ingest_atom::value,
                 signed_delivery({message("pn-new", "+15550001111", "wamid.w1")}, global_secret),
                 ticket);
  run();
  // The request to the dead directory fails at once: unknown id, unavailable.
  BOOST_TEST(answer(ticket).failure == ingest_errc::unavailable);
}

BOOST_AUTO_TEST_SUITE_END()
