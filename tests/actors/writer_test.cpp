// The persistence writer against a real PostgreSQL: one answer per part and
// only after commit, folding of concurrent copies, retries answered from
// memory, per-conversation order, the spool when the database is away.
#include "actors/persistence.hpp"

#include <filesystem>

#include <boost/test/unit_test.hpp>

#include "metrics/pipeline_metrics.hpp"
#include "persistence/quarantine.hpp"
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

  // One part whose event i belongs to workspace_ids[workspace_of[i]].
  uint64_t send_part(std::vector<event> events, std::vector<std::string> workspace_ids,
                     const std::vector<uint32_t>& workspace_of) {
    auto d = std::make_shared<delivery>();
    d->events = std::move(events);
    write_part part;
    part.d = d;
    part.ticket = next_ticket++;
    part.arrival = 1700000000;
    part.workspace_ids = std::move(workspace_ids);
    for (uint32_t i = 0; i < d->events.size(); ++i)
      part.items.push_back({i, workspace_of[i]});
    caf::anon_send(writer, persist_atom::value, std::move(part));
    return next_ticket - 1;
  }

  const recording_sink::answer& answer(uint64_t ticket) {
    BOOST_REQUIRE_MESSAGE(sink->record.answers.count(ticket) == 1,
                          "part of delivery " << ticket << " not answered");
    return sink->record.answers[ticket];
  }
};

// A writer with a spool (and so a quarantine) in a private directory, and a
// trigger that fails every write of one message id with an internal error
// (XX000), as a corrupt index entry or a broken trigger would.
struct poison_fixture : writer_fixture {
  std::filesystem::path dir = std::filesystem::temp_directory_path()
                              / ("kapso-writer-quarantine-" + std::to_string(::getpid()));
  std::string phone = "+15550008000";
  int next_good = 0;

  poison_fixture() {
    std::filesystem::remove_all(dir);
    conf.spool_dir = dir.string();
    conf.spool_replay_interval = 1s;
    conf.spool_quarantine_after = 2;
    db.exec("CREATE FUNCTION kapso_test_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.kapso_message_id = 'wamid.bad' THEN "
            "RAISE EXCEPTION 'poison for a test' USING ERRCODE = 'XX000'; END IF; "
            "RETURN NEW; END $$;"
            "CREATE TRIGGER kapso_test_poison BEFORE INSERT ON messages FOR EACH ROW "
            "EXECUTE FUNCTION kapso_test_poison()");
  }
  ~poison_fixture() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

  event good() {
    ++next_good;
    return inbound(phone, "wamid.good" + std::to_string(next_good), 1700000100 + next_good,
                   "good");
  }
  event bad() { return inbound(phone, "wamid.bad", 1700000050, "bad"); }

  std::string messages() const { return db.value("SELECT count(*) FROM messages"); }
  size_t spooled_records() const {
    spool s{(dir / "writer-0.spool").string(), SIZE_MAX, spool::access::read_only};
    return s.records();
  }
  std::vector<quarantined_event> quarantined() const { return list_quarantine(dir.string()); }
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

// Batches committed so far, from the kapso_batch_size histogram.
uint64_t batches_committed() {
  std::string text;
  pipeline_metrics::global().batch_size.render(text, "b", "");
  auto at = text.find("\nb_count ");
  BOOST_REQUIRE(at != std::string::npos);
  return std::stoull(text.substr(at + 9));
}

// After an outage, new deliveries are written to PostgreSQL beside the
// replay, waiting for at most one replay batch (not behind the spool), and
// the replay stores many records per transaction.
BOOST_AUTO_TEST_CASE(after_an_outage_new_parts_wait_for_one_replay_batch_not_the_spool) {
  auto dir = std::filesystem::temp_directory_path()
             / ("kapso-writer-drain-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  conf.spool_dir = dir.string();
  conf.spool_replay_interval = 1s;
  conf.spool_replay_batch_max = 3;
  db.exec_as_admin("ALTER DATABASE " + db.name() + " SET default_transaction_read_only = on");
  start_writer();
  // Nine records, one event each, in one conversation.
  for (int i = 1; i <= 9; ++i) {
    send({inbound("+15550006100", "wamid.sp" + std::to_string(i), 1700000000 + i, "old")});
    run();
  }
  {
    spool s{(dir / "writer-0.spool").string(), SIZE_MAX, spool::access::read_only};
    BOOST_REQUIRE(s.records() == 9u);
  }
  db.exec_as_admin("ALTER DATABASE " + db.name() + " SET default_transaction_read_only = off");
  db.exec_as_admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '"
                   + db.name() + "'");
  auto batches_before = batches_committed();
  // Step the writer one message at a time until the first replay batch is
  // stored (the first attempt may meet the terminated connection).
  auto stored = [&] { return db.value("SELECT count(*) FROM messages"); };
  for (int round = 0; round < 5 && stored() == "0"; ++round) {
    sched.clock().advance_time(1s);
    while (stored() == "0" && sched.try_run_once()) {
    }
  }
  BOOST_REQUIRE_EQUAL(stored(), "3");
  auto replay_batches_before_live = batches_committed() - batches_before;
  // A new message of the same conversation arrives while the replay goes on.
  sink->rows_at_answer.clear();
  auto live = send({inbound("+15550006100", "wamid.live", 1700000100, "new")});
  run();
  BOOST_TEST(answer(live).counts.accepted == 1u);
  BOOST_REQUIRE_EQUAL(sink->rows_at_answer.size(), 1u);
  // The batch under way when it arrived, then it: 3 + 3 + 1.
  BOOST_TEST(sink->rows_at_answer[0] == "7", "the new part waited for the spool");
  BOOST_TEST(stored() == "10");
  // Three replay transactions of three records each, and the live batch.
  BOOST_TEST(replay_batches_before_live == 1u);
  BOOST_TEST(batches_committed() - batches_before == 4u);
  BOOST_TEST(db.value("SELECT unread_count FROM conversations") == "10");
  BOOST_TEST(db.value("SELECT last_message_preview FROM conversations") == "new");
  {
    spool s{(dir / "writer-0.spool").string(), SIZE_MAX, spool::access::read_only};
    BOOST_TEST(s.empty());
  }
  std::filesystem::remove_all(dir);
}

// The spool files of writers that no longer exist are replayed where they
// are (not copied first) and deleted once replayed.
BOOST_AUTO_TEST_CASE(spools_of_writers_that_no_longer_exist_are_replayed_in_place) {
  auto dir = std::filesystem::temp_directory_path()
             / ("kapso-writer-orphan-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  {
    spool orphan{(dir / "writer-2.spool").string(), SIZE_MAX};
    for (int i = 1; i <= 3; ++i) {
      routed_event r{workspace_id,
                     inbound("+15550006200", "wamid.or" + std::to_string(i), 1700000000 + i, "o")};
      BOOST_REQUIRE(orphan.append({r}) == spool::append_status::ok);
    }
  }
  conf.spool_dir = dir.string();
  start_writer();
  run();
  BOOST_TEST(db.value("SELECT count(*) FROM messages") == "3");
  BOOST_TEST(!std::filesystem::exists(dir / "writer-2.spool"));
  {
    spool own{(dir / "writer-0.spool").string(), SIZE_MAX, spool::access::read_only};
    BOOST_TEST(own.file_bytes() == 0u, "the orphan was copied into the writer's spool");
  }
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

BOOST_FIXTURE_TEST_SUITE(writer_quarantine_tests, poison_fixture)

BOOST_AUTO_TEST_CASE(an_event_that_keeps_failing_while_others_are_stored_is_quarantined) {
  start_writer();
  auto first = send({good(), bad(), good()});
  run();
  // Its siblings are stored, it waits in the spool: all three acknowledged.
  BOOST_TEST(answer(first).counts.accepted == 3u);
  BOOST_TEST(answer(first).counts.ignored == 0u);
  BOOST_TEST(messages() == "2");
  BOOST_TEST(spooled_records() == 1u);
  for (int round = 0; round < 3 && quarantined().empty(); ++round) {
    auto next = send({good()});
    run();
    BOOST_TEST(answer(next).counts.accepted == 1u);
    advance(1s);
  }
  auto q = quarantined();
  BOOST_REQUIRE_EQUAL(q.size(), 1u);
  BOOST_TEST(q[0].event.ev.message_id == "wamid.bad");
  BOOST_TEST(q[0].event.workspace_id == workspace_id);
  BOOST_TEST(q[0].note.attempts == 2u);
  BOOST_TEST(q[0].note.reason == "SQLSTATE XX000: poison for a test");
  BOOST_TEST(q[0].note.quarantined_at > 1700000000);
  BOOST_TEST(spooled_records() == 0u);
  // Every delivery around it went straight to PostgreSQL.
  BOOST_TEST(messages() == std::to_string(next_good));

  // Fixed, and put back with the writer stopped: stored once by the replay.
  db.exec("DROP TRIGGER kapso_test_poison ON messages");
  caf::anon_send_exit(writer, caf::exit_reason::user_shutdown);
  run();
  BOOST_TEST(requeue_quarantine(dir.string(), SIZE_MAX).events == 1u);
  BOOST_TEST(quarantined().empty());
  start_writer();
  run();
  BOOST_TEST(db.value("SELECT count(*) FROM messages WHERE kapso_message_id = 'wamid.bad'")
             == "1");
  BOOST_TEST(db.value("SELECT unread_count FROM conversations") == messages());
}

BOOST_AUTO_TEST_CASE(a_failing_event_alone_is_not_quarantined_while_nothing_else_is_stored) {
  start_writer();
  auto lone = send({bad()});
  run();
  BOOST_TEST(answer(lone).counts.accepted == 1u);
  for (int i = 0; i < 6; ++i)
    advance(1s);
  BOOST_TEST(quarantined().empty(), "quarantined although nothing else was stored");
  BOOST_TEST(spooled_records() == 1u);
  // New events do not queue behind it, and once they are stored its
  // failures count.
  auto next = send({good()});
  run();
  BOOST_TEST(answer(next).counts.accepted == 1u);
  BOOST_TEST(messages() == "1");
  for (int round = 0; round < 3 && quarantined().empty(); ++round) {
    advance(1s);
    send({good()});
    run();
  }
  BOOST_TEST(quarantined().size() == 1u);
}

BOOST_AUTO_TEST_CASE(an_outage_quarantines_nothing_even_with_a_failing_event_spooled) {
  auto quarantined_before = pipeline_metrics::global().quarantined_events_total.load();
  start_writer();
  send({good(), bad()}); // one failure counted: its sibling was stored
  run();
  BOOST_TEST(spooled_records() == 1u);
  db.exec_as_admin("ALTER DATABASE " + db.name() + " SET default_transaction_read_only = on");
  db.exec_as_admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '"
                   + db.name() + "'");
  for (int round = 0; round < 5; ++round) {
    auto next = send({good()});
    run();
    BOOST_TEST(answer(next).counts.accepted == 1u); // spooled
    advance(1s);
  }
  BOOST_TEST(quarantined().empty(), "a read-only database quarantined an event");
  BOOST_TEST(!std::filesystem::exists(dir / "writer-0.quarantine"));
  BOOST_TEST(messages() == "1");

  db.exec_as_admin("ALTER DATABASE " + db.name() + " SET default_transaction_read_only = off");
  db.exec_as_admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '"
                   + db.name() + "'");
  db.exec("DROP TRIGGER kapso_test_poison ON messages");
  for (int i = 0; i < 4 && spooled_records() > 0; ++i)
    advance(2s);
  BOOST_TEST(spooled_records() == 0u);
  BOOST_TEST(messages() == std::to_string(2 + 5));
  BOOST_TEST(quarantined().empty());
  BOOST_TEST(pipeline_metrics::global().quarantined_events_total.load() == quarantined_before);
}

BOOST_AUTO_TEST_CASE(an_exception_that_is_not_the_databases_is_quarantined_too) {
  start_writer();
  // The middle event's workspace id is no UUID: building the batch throws
  // std::logic_error, which no retry can cure and no outage explains.
  auto first = send_part({good(), good(), good()}, {workspace_id, "not-a-uuid"}, {0, 1, 0});
  run();
  BOOST_TEST(answer(first).counts.accepted == 3u);
  BOOST_TEST(messages() == "2");
  for (int round = 0; round < 3 && quarantined().empty(); ++round) {
    send({good()});
    run();
    advance(1s);
  }
  auto q = quarantined();
  BOOST_REQUIRE_EQUAL(q.size(), 1u);
  BOOST_TEST(q[0].event.workspace_id == "not-a-uuid");
  BOOST_TEST(q[0].note.reason == "not a database error: an id from the database is not a UUID");
  BOOST_TEST(spooled_records() == 0u);
}

BOOST_AUTO_TEST_SUITE_END()
