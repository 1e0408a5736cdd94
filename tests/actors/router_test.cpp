// The router against stub writers and a stub directory: signature check,
// workspace resolution and its cache, fan-out to conversations and writers.
#include "actors/router.hpp"

#include <boost/test/unit_test.hpp>

#include "actors/metrics.hpp"
#include "actors/persistence.hpp"
#include "http/signature.hpp"
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

// An empty caf::error has no category to read in 0.17: check it first.
bool is_ingest_error(const caf::error& err, ingest_errc code) {
  return err && err.category() == caf::atom("kapso") && err.code() == static_cast<uint8_t>(code);
}

struct router_fixture : actor_fixture {
  settings conf;
  std::shared_ptr<directory_log> directory_seen = std::make_shared<directory_log>();
  std::vector<std::shared_ptr<writer_log>> writer_seen;
  std::vector<caf::actor> writers;
  caf::actor directory;
  caf::actor router_actor;

  router_fixture() {
    conf.webhook_secrets = {global_secret};
    // Far beyond real elapsed time: only the test clock may expire entries.
    conf.workspace_cache_ttl = 1h;
    conf.actor_timeout = 1h;
    conf.conversation_idle = 5s;
    directory_seen->known["pn-1"] = workspace_info{"ws-1", "pn-1", {}};
    for (int i = 0; i < 2; ++i) {
      writer_seen.push_back(std::make_shared<writer_log>());
      writers.push_back(spawn(stub_writer, writer_seen.back()));
    }
    directory = spawn(stub_directory, directory_seen);
  }

  // Settings are read at spawn: tests change `conf` first.
  void start_router() {
    router_actor = spawn(router, conf, directory, writers);
    run();
  }

  // What the HTTP gateway gets back for deliveries it sent with a ticket.
  struct gateway_log {
    std::vector<std::pair<uint64_t, delivery_result>> results;
    std::vector<std::pair<uint64_t, caf::error>> errors;
  };

  // Sends a delivery the way the HTTP layer does: a plain message with a
  // ticket, answered by a message to the sender.
  std::shared_ptr<gateway_log> send_with_ticket(delivery_ptr d, uint64_t ticket) {
    auto log = std::make_shared<gateway_log>();
    spawn([=, target = router_actor](caf::event_based_actor* self) -> caf::behavior {
      self->send(target, ingest_atom::value, d, ticket);
      return {
        [=](ingest_atom, uint64_t t, const delivery_result& r) { log->results.emplace_back(t, r); },
        [=](ingest_atom, uint64_t t, const caf::error& e) { log->errors.emplace_back(t, e); },
      };
    });
    run();
    return log;
  }

  std::shared_ptr<reply<delivery_result>> ingest(delivery_ptr d) {
    auto r = ask<delivery_result>(router_actor, ingest_atom::value, std::move(d));
    run();
    return r;
  }

  size_t written() const {
    size_t n = 0;
    for (const auto& w : writer_seen)
      n += w->received.size();
    return n;
  }

  // Two customers of one workspace whose conversations belong to different
  // writers; if the hash gave every key to one writer there is none.
  std::pair<std::string, std::string> contacts_on_two_writers(const std::string& ws) {
    std::string first = "+1555000000";
    auto first_writer = writer_for(conversation_key{ws, first}, 2);
    for (int i = 1; i < 64; ++i) {
      auto other = "+1555000" + std::to_string(1000 + i);
      if (writer_for(conversation_key{ws, other}, 2) != first_writer)
        return {first, other};
    }
    return {first, first};
  }
};

} // namespace

BOOST_FIXTURE_TEST_SUITE(router_actor_tests, router_fixture)

BOOST_AUTO_TEST_CASE(signed_delivery_reaches_the_writer_of_its_conversation) {
  start_router();
  auto contact = std::string{"+15550001111"};
  auto r = ingest(signed_delivery({message("pn-1", contact, "wamid.a1"),
                                   message("pn-1", contact, "wamid.a2")},
                                  global_secret));
  BOOST_REQUIRE_MESSAGE(r->value.has_value(), "error: " << sys.render(r->error));
  BOOST_TEST(r->value->accepted == 2u);
  BOOST_TEST(r->value->duplicates == 0u);
  BOOST_TEST(r->value->ignored == 0u);

  auto owner = writer_for(conversation_key{"ws-1", contact}, 2);
  const auto& got = writer_seen[owner]->received;
  BOOST_REQUIRE_EQUAL(got.size(), 2u);
  BOOST_TEST(got[0].workspace_id == "ws-1");
  BOOST_TEST(got[0].ev.message_id == "wamid.a1");
  BOOST_TEST(got[1].ev.message_id == "wamid.a2");
  BOOST_TEST(writer_seen[1 - owner]->received.empty());
  BOOST_REQUIRE_EQUAL(directory_seen->asked.size(), 1u);
  BOOST_TEST(directory_seen->asked[0] == std::vector<std::string>{"pn-1"});
}

BOOST_AUTO_TEST_CASE(wrong_signature_is_rejected_before_any_write) {
  start_router();
  auto r = ingest(signed_delivery({message("pn-1", "+15550001111", "wamid.b1")}, "wrong"));
  BOOST_REQUIRE(r->answered());
  BOOST_TEST(!r->value.has_value());
  BOOST_TEST(is_ingest_error(r->error, ingest_errc::bad_signature),
             "got " << sys.render(r->error));
  BOOST_TEST(written() == 0u);

  auto unsigned_delivery = std::make_shared<delivery>(
    *signed_delivery({message("pn-1", "+15550001111", "wamid.b2")}, global_secret));
  unsigned_delivery->kapso_signature.clear();
  auto missing = ingest(unsigned_delivery);
  BOOST_REQUIRE(missing->answered());
  BOOST_TEST(is_ingest_error(missing->error, ingest_errc::bad_signature),
             "got " << sys.render(missing->error));
  BOOST_TEST(written() == 0u);
}

// SPEC §2: 401 when the signature is wrong and a secret applies; a global
// secret applies to every delivery, even one without usable events.
BOOST_AUTO_TEST_CASE(wrong_signature_without_events_is_rejected) {
  start_router();
  auto r = ingest(signed_delivery({}, "wrong", 2));
  BOOST_REQUIRE(r->answered());
  BOOST_TEST(is_ingest_error(r->error, ingest_errc::bad_signature),
             "got " << (r->value ? std::string{"a result"} : sys.render(r->error)));
}

BOOST_AUTO_TEST_CASE(unknown_phone_number_id_is_ignored) {
  start_router();
  auto r = ingest(signed_delivery({message("pn-unknown", "+15550001111", "wamid.c1")},
                                  global_secret));
  BOOST_REQUIRE_MESSAGE(r->value.has_value(), "error: " << sys.render(r->error));
  BOOST_TEST(r->value->ignored == 1u);
  BOOST_TEST(r->value->accepted == 0u);
  BOOST_REQUIRE_EQUAL(directory_seen->asked.size(), 1u);
  BOOST_TEST(directory_seen->asked[0] == std::vector<std::string>{"pn-unknown"});
  BOOST_TEST(written() == 0u);
}

BOOST_AUTO_TEST_CASE(a_workspace_secret_replaces_the_global_one) {
  directory_seen->known["pn-2"] = workspace_info{"ws-2", "pn-2", {"ws"}};
  start_router();
  auto global = ingest(signed_delivery({message("pn-2", "+15550002222", "wamid.d1")},
                                       global_secret));
  BOOST_REQUIRE(global->answered());
  BOOST_TEST(is_ingest_error(global->error, ingest_errc::bad_signature),
             "got " << (global->value ? std::string{"a result"} : sys.render(global->error)));
  BOOST_TEST(written() == 0u);

  auto own = ingest(signed_delivery({message("pn-2", "+15550002222", "wamid.d1")}, "ws"));
  BOOST_REQUIRE_MESSAGE(own->value.has_value(), "error: " << sys.render(own->error));
  BOOST_TEST(own->value->accepted == 1u);
  BOOST_TEST(written() == 1u);
}

BOOST_AUTO_TEST_CASE(conversations_go_to_their_writer_by_hash) {
  start_router();
  auto [a, b] = contacts_on_two_writers("ws-1");
  BOOST_REQUIRE_MESSAGE(a != b, "writer_for gives 64 keys to a single writer");
  auto r = ingest(signed_delivery({message("pn-1", a, "wamid.e1"), message("pn-1", b, "wamid.e2")},
                                  global_secret));
  BOOST_REQUIRE_MESSAGE(r->value.has_value(), "error: " << sys.render(r->error));
  BOOST_TEST(r->value->accepted == 2u);
  auto writer_a = writer_for(conversation_key{"ws-1", a}, 2);
  auto writer_b = writer_for(conversation_key{"ws-1", b}, 2);
  BOOST_REQUIRE_EQUAL(writer_seen[writer_a]->received.size(), 1u);
  BOOST_REQUIRE_EQUAL(writer_seen[writer_b]->received.size(), 1u);
  BOOST_TEST(writer_seen[writer_a]->received[0].ev.message_id == "wamid.e1");
  BOOST_TEST(writer_seen[writer_b]->received[0].ev.message_id == "wamid.e2");
}

BOOST_AUTO_TEST_CASE(workspaces_are_cached_for_the_ttl) {
  start_router();
  auto first = ingest(signed_delivery({message("pn-1", "+15550001111", "wamid.f1")},
                                      global_secret));
  BOOST_REQUIRE(first->value.has_value());
  BOOST_TEST(directory_seen->asked.size() == 1u);
  auto second = ingest(signed_delivery({message("pn-1", "+15550001111", "wamid.f2")},
                                       global_secret));
  BOOST_REQUIRE(second->value.has_value());
  BOOST_TEST(second->value->accepted == 1u);
  BOOST_TEST(directory_seen->asked.size() == 1u);

  // Unknown ids are cached too: a flood of them does not flood the directory.
  auto unknown = ingest(signed_delivery({message("pn-x", "+15550001111", "wamid.f3")},
                                        global_secret));
  BOOST_REQUIRE(unknown->value.has_value());
  BOOST_TEST(directory_seen->asked.size() == 2u);
  auto unknown_again = ingest(signed_delivery({message("pn-x", "+15550001111", "wamid.f4")},
                                              global_secret));
  BOOST_REQUIRE(unknown_again->value.has_value());
  BOOST_TEST(unknown_again->value->ignored == 1u);
  BOOST_TEST(directory_seen->asked.size() == 2u);

  // Past the TTL the unknown id is asked for again: it may have been added.
  directory_seen->known["pn-x"] = workspace_info{"ws-x", "pn-x", {}};
  advance(conf.workspace_cache_ttl + 1s);
  auto later = ingest(signed_delivery({message("pn-x", "+15550001111", "wamid.f5")},
                                      global_secret));
  BOOST_REQUIRE(later->value.has_value());
  BOOST_TEST(directory_seen->asked.size() == 3u);
  BOOST_TEST(later->value->accepted == 1u);
  BOOST_TEST(later->value->ignored == 0u);
}

BOOST_AUTO_TEST_CASE(at_the_conversation_cap_events_go_straight_to_the_writer) {
  conf.conversation_max = 0;
  start_router();
  auto before = metrics::global().conversation_actors.load();
  auto contact = std::string{"+15550001111"};
  auto r = ingest(signed_delivery({message("pn-1", contact, "wamid.g1")}, global_secret));
  BOOST_REQUIRE_MESSAGE(r->value.has_value(), "error: " << sys.render(r->error));
  BOOST_TEST(r->value->accepted == 1u);
  auto owner = writer_for(conversation_key{"ws-1", contact}, 2);
  BOOST_REQUIRE_EQUAL(writer_seen[owner]->received.size(), 1u);
  BOOST_TEST(writer_seen[owner]->received[0].ev.message_id == "wamid.g1");
  BOOST_TEST(writer_seen[owner]->unexpected == 0u);
  BOOST_TEST(metrics::global().conversation_actors.load() == before);
}

BOOST_AUTO_TEST_CASE(a_directory_error_fails_the_delivery_as_unavailable) {
  directory_seen->failure = caf::make_error(caf::sec::runtime_error);
  start_router();
  auto r = ingest(signed_delivery({message("pn-1", "+15550001111", "wamid.h1")},
                                  global_secret));
  BOOST_REQUIRE(r->answered());
  BOOST_TEST(!r->value.has_value());
  BOOST_TEST(is_ingest_error(r->error, ingest_errc::unavailable),
             "got " << sys.render(r->error));
  BOOST_TEST(written() == 0u);
}

BOOST_AUTO_TEST_CASE(inactive_unknown_and_malformed_events_are_only_counted) {
  start_router();
  auto inactive = ingest(signed_delivery(
    {of_kind(event_kind::conversation_inactive, "whatsapp.conversation.inactive", "pn-1")},
    global_secret));
  BOOST_REQUIRE_MESSAGE(inactive->value.has_value(), "error: " << sys.render(inactive->error));
  BOOST_TEST(inactive->value->accepted == 1u);
  BOOST_TEST(inactive->value->ignored == 0u);

  auto unknown = ingest(signed_delivery(
    {of_kind(event_kind::unknown, "whatsapp.something.new", "pn-1")}, global_secret));
  BOOST_REQUIRE_MESSAGE(unknown->value.has_value(), "error: " << sys.render(unknown->error));
  BOOST_TEST(unknown->value->ignored == 1u);
  BOOST_TEST(unknown->value->accepted == 0u);

  auto malformed = ingest(signed_delivery({}, global_secret, 2));
  BOOST_REQUIRE_MESSAGE(malformed->value.has_value(), "error: " << sys.render(malformed->error));
  BOOST_TEST(malformed->value->ignored == 2u);
  BOOST_TEST(malformed->value->accepted == 0u);
  BOOST_TEST(written() == 0u);
}

BOOST_AUTO_TEST_CASE(a_ticketed_delivery_is_answered_to_its_sender_with_its_ticket) {
  start_router();
  auto log = send_with_ticket(
    signed_delivery({message("pn-1", "+15550001111", "wamid.t1")}, global_secret), 41);
  BOOST_REQUIRE_EQUAL(log->results.size(), 1u);
  BOOST_TEST(log->errors.empty());
  BOOST_TEST(log->results[0].first == 41u);
  BOOST_TEST(log->results[0].second.accepted == 1u);

  auto rejected = send_with_ticket(
    signed_delivery({message("pn-1", "+15550001111", "wamid.t2")}, "wrong"), 42);
  BOOST_REQUIRE_EQUAL(rejected->errors.size(), 1u);
  BOOST_TEST(rejected->errors[0].first == 42u);
  BOOST_TEST(is_ingest_error(rejected->errors[0].second, ingest_errc::bad_signature));
}

BOOST_AUTO_TEST_CASE(a_delivery_not_committed_by_its_deadline_is_answered_timeout_once) {
  conf.request_timeout = 3s;
  for (auto& w : writer_seen)
    w->how = writer_log::mode::hold;
  start_router();
  auto log = send_with_ticket(
    signed_delivery({message("pn-1", "+15550001111", "wamid.slow")}, global_secret), 7);
  BOOST_REQUIRE_EQUAL(written(), 1u);
  advance(2s);
  BOOST_TEST(log->errors.empty(), "answered before its deadline");
  advance(1500ms);
  BOOST_REQUIRE_EQUAL(log->errors.size(), 1u);
  BOOST_TEST(log->errors[0].first == 7u);
  BOOST_TEST(is_ingest_error(log->errors[0].second, ingest_errc::timeout));
  // The write completing later does not answer the delivery a second time.
  for (auto& w : writers)
    caf::anon_send(w, release_atom::value, write_outcome::accepted);
  run();
  BOOST_TEST(log->errors.size() == 1u);
  BOOST_TEST(log->results.empty());
}

BOOST_AUTO_TEST_SUITE_END()
