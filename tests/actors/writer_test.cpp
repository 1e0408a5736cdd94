// The persistence writer against a real PostgreSQL: one answer per part and
// only after commit, folding of concurrent copies, retries answered from
// memory, per-conversation order, the spool when the database is away.
#include "actors/persistence.hpp"

#include <filesystem>

#include <boost/test/unit_test.hpp>

#include "persistence/spool.hpp"
#include "tests/actors/fixture.hpp"

using namespace kapso;
using namespace kapso::testing;
using namespace std::chrono_literals;

namespace {

event inbound(const std::string& phone, const std::string& id, int64_t ts,
              const std::string& text) {
  event ev;
  ev.kind = event_kind::message_received;
  ev.event_type = "whatsapp.message.received";
  ev.phone_number_id = "pn-w";
  ev.contact_key = phone;
  ev.contact_phone = phone;
  ev.message_id = id;
  ev.timestamp = ts;
  ev.direction = "inbound";
  ev.sender_type = "contact";
  ev.message_type = "text";
  ev.content = text;
  ev.preview = text;
  ev.status = "received";
  return ev;
}

event status_of(const std::string& phone, const std::string& id, const std::string& status) {
  event ev;
  ev.kind = event_kind::message_status;
  ev.event_type = "whatsapp.message." + status;
  ev.phone_number_id = "pn-w";
  ev.contact_key = phone;
  ev.message_id = id;
  ev.status = status;
  return ev;
}

// A sink that reads the database while it is told about a part: what a
// client asking right after its 200 would see.
struct checking_sink final : answer_sink {
  recording_sink record;
  const scratch_database* db = nullptr;
  std::vector<std::string> rows_at_answer; // messages count at each part_done

  void part_done(uint64_t ticket, uint32_t parts, const delivery_result& counts) override {
    if (db != nullptr)
      rows_at_answer.push_back(db->value("SELECT count(*) FROM messages"));
    record.part_done(ticket, parts, counts);
  }
  void failed(uint64_t ticket, ingest_errc why) override { record.failed(ticket, why); }
};

struct writer_fixture : actor_fixture {
  scratch_database db;
  std::string workspace_id = db.insert_workspace("pn-w");
  std::shared_ptr<checking_sink> sink = std::make_shared<checking_sink>();
  settings conf;
  writer_actor writer;
  uint64_t next_ticket = 1;

  writer_fixture() {
    sink->db = &db;
    conf.database_url = db.url();
    conf.writers = 1;
    conf.spool_dir.clear();
  }

  void start_writer() {
    writer = spawn(persistence_writer, conf, size_t{0}, answer_sink_ptr{sink}, true);
    run();
  }

  // Sends one delivery's events as one part, without running the writer.
  uint64_t send(std::vector<event> events) {
    auto d = std::make_shared<delivery>();
    d->events = std::move(events);
    write_part part;
    part.d = d;
    part.ticket = next_ticket++;
    part.arrival = 1700000000;
    part.workspace_ids = {workspace_id};
    for (uint32_t i = 0; i < d->events.size(); ++i)
      part.items.push_back({i, 0});
    caf::anon_send(writer, persist_atom::value, std::move(part));
    return next_ticket - 1;
  }

  const recording_sink::answer& answer(uint64_t ticket) {
    BOOST_REQUIRE_MESSAGE(sink->record.answers.count(ticket) == 1,
                          "part of delivery " << ticket << " not answered");
    return sink->record.answers[ticket];
  }
};

} // namespace

BOOST_FIXTURE_TEST_SUITE(writer_actor_tests, writer_fixture)

BOOST_AUTO_TEST_CASE(a_part_is_answered_once_and_only_after_its_commit) {
  start_writer();
  auto ticket = send({inbound("+15550001000", "wamid.w1", 1700000001, "one"),
                      inbound("+15550001000", "wamid.w2", 1700000002, "two")});
  BOOST_TEST(sink->record.answers.empty()); // nothing before the writer ran
  run();
  const auto& a = answer(ticket);
  BOOST_TEST(a.parts_done == 1u);
  BOOST_TEST(a.counts.accepted == 2u);
  BOOST_TEST(!a.failure.has_value());
  // Seen from another connection at the moment of the answer: committed.
  BOOST_REQUIRE_EQUAL(sink->rows_at_answer.size(), 1u);
  BOOST_TEST(sink->rows_at_answer[0] == "2");
  BOOST_TEST(db.value("SELECT unread_count FROM conversations") == "2");
  BOOST_TEST(db.value("SELECT last_message_preview FROM conversations") == "two");
}

BOOST_AUTO_TEST_CASE(concurrent_copies_of_a_message_are_folded_into_one_write) {
  start_writer();
  std::vector<uint64_t> tickets;
  for (int i = 0; i < 5; ++i)
    tickets.push_back(send({inbound("+15550002000", "wamid.copy", 1700000001, "hola")}));
  run();
  uint32_t accepted = 0;
  uint32_t duplicates = 0;
  for (auto t : tickets) {
    accepted += answer(t).counts.accepted;
    duplicates += answer(t).counts.duplicates;
  }
  BOOST_TEST(accepted == 1u);
  BOOST_TEST(duplicates == 4u);
  BOOST_TEST(db.value("SELECT count(*) FROM messages") == "1");
  BOOST_TEST(db.value("SELECT unread_count FROM conversations") == "1");
}

BOOST_AUTO_TEST_CASE(a_retry_of_a_committed_message_is_answered_from_memory) {
  start_writer();
  auto first = send({inbound("+15550003000", "wamid.mem", 1700000001, "hola")});
  run();
  BOOST_TEST(answer(first).counts.accepted == 1u);
  // Behind the writer's back: if the retry reached the database, the row
  // would come back.
  db.exec("DELETE FROM messages");
  auto retry = send({inbound("+15550003000", "wamid.mem", 1700000001, "hola")});
  run();
  BOOST_TEST(answer(retry).counts.duplicates == 1u);
  BOOST_TEST(db.value("SELECT count(*) FROM messages") == "0");
}

BOOST_AUTO_TEST_CASE(a_conversations_events_apply_in_order_across_parts) {
  start_writer();
  auto phone = std::string{"+15550004000"};
  auto t1 = send({inbound(phone, "wamid.o1", 1700000001, "first")});
  auto t2 = send({status_of(phone, "wamid.o1", "delivered")});
  auto t3 = send({inbound(phone, "wamid.o2", 1700000003, "second"),
                  status_of(phone, "wamid.o1", "read")});
  run();
  BOOST_TEST(answer(t1).counts.accepted == 1u);
  BOOST_TEST(answer(t2).counts.accepted == 1u);
  BOOST_TEST(answer(t3).counts.accepted == 2u);
  BOOST_TEST(db.value("SELECT status FROM messages WHERE kapso_message_id = 'wamid.o1'")
             == "read");
  BOOST_TEST(db.value("SELECT last_message_preview FROM conversations") == "second");
  BOOST_TEST(db.value("SELECT unread_count FROM conversations") == "2");
}

BOOST_AUTO_TEST_CASE(parts_still_queued_when_the_writer_stops_are_answered) {
  start_writer();
  auto ticket = send({inbound("+15550005000", "wamid.q1", 1700000001, "late")});
  caf::anon_send_exit(writer, caf::exit_reason::user_shutdown);
  run();
  BOOST_TEST(answer(ticket).failure == ingest_errc::shutting_down);
  BOOST_TEST(db.value("SELECT count(*) FROM messages") == "0");
}

BOOST_AUTO_TEST_CASE(a_read_only_database_sends_the_batch_to_the_spool_never_to_ignored) {
  auto dir = std::filesystem::temp_directory_path()
             / ("kapso-writer-spool-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  conf.spool_dir = dir.string();
  conf.spool_replay_interval = 1s;
  db.exec_as_admin("ALTER DATABASE " + db.name() + " SET default_transaction_read_only = on");
  start_writer();
  auto ticket = send({inbound("+15550006000", "wamid.ro1", 1700000001, "kept")});
  run();
  BOOST_TEST(answer(ticket).counts.accepted == 1u);
  BOOST_TEST(answer(ticket).counts.ignored == 0u);
  BOOST_TEST(db.value("SELECT count(*) FROM messages") == "0");
  {
    spool s{(dir / "writer-0.spool").string(), SIZE_MAX};
    BOOST_TEST(s.records() == 1u);
  }
  // Writable again: the replay stores it.
  db.exec_as_admin("ALTER DATABASE " + db.name() + " SET default_transaction_read_only = off");
  db.exec_as_admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '"
                   + db.name() + "'");
  advance(2s);
  advance(2s);
  BOOST_TEST(db.value("SELECT count(*) FROM messages") == "1");
  std::filesystem::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(without_a_spool_an_unreachable_database_is_a_503) {
  conf.database_url = "postgresql://postgres@127.0.0.1:1/none";
  conf.connect_timeout = 200ms;
  start_writer();
  auto ticket = send({inbound("+15550007000", "wamid.down", 1700000001, "lost?")});
  run();
  BOOST_TEST(answer(ticket).failure == ingest_errc::unavailable);
}

BOOST_AUTO_TEST_SUITE_END()
