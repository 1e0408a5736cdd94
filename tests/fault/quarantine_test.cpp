// A poison event (a trigger raising XX000 for one message id, an exception of
// ours for one spooled record): quarantined while everything around it is
// stored at once, listed, put back, stored once; an outage quarantines nothing.
#include <filesystem>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "persistence/spool.hpp"
#include "tests/fault/fault_support.hpp"

using namespace kapso_test;
using namespace kapso_fault;
namespace utf = boost::unit_test;

namespace {

pg_cluster& cluster() { return pg_cluster::shared(); }

load_options poison_load(const std::string& tag, const std::vector<workspace>& workspaces) {
  load_options o;
  o.tag = tag;
  o.workspaces = workspaces;
  o.conversations = 40;
  o.threads = 3;
  o.pause = 20ms;
  return o;
}

// Every write of message `id` fails with an internal error, as a corrupt
// index entry or a broken trigger would make it.
void poison_message(const fault_database& db, const std::string& id) {
  db.exec_script("CREATE FUNCTION kapso_fault_poison() RETURNS trigger LANGUAGE plpgsql AS $$ "
                 "BEGIN IF NEW.kapso_message_id = '" + id + "' THEN "
                 "RAISE EXCEPTION 'poison for a fault test' USING ERRCODE = 'XX000'; END IF; "
                 "RETURN NEW; END $$;"
                 "CREATE TRIGGER kapso_fault_poison BEFORE INSERT ON messages FOR EACH ROW "
                 "EXECUTE FUNCTION kapso_fault_poison()");
}

void cure(const fault_database& db) {
  db.exec_script("DROP TRIGGER kapso_fault_poison ON messages");
}

// One single delivery of message `id` to workspace 0.
delivery single(const std::string& id, int64_t timestamp) {
  delivery d;
  d.workspace = 0;
  d.messages.push_back(message_ref{id, 0, timestamp});
  return d;
}

process_result spool_command(const std::string& action, const std::string& spool_dir) {
  return run_cli({"spool", action, "--spool.dir=" + spool_dir}, {}, 30s);
}

double metric(uint16_t port, const std::string& name) {
  return metric_sum(metrics_of(port), name);
}

int64_t rows_of(const fault_database& db, const std::string& id) {
  return db.count("SELECT count(*) FROM messages WHERE kapso_message_id = $1", id);
}

} // namespace

BOOST_AUTO_TEST_SUITE(quarantine)

// Issue 16, acceptance 4: a trigger raising XX000 for one message id. That
// delivery is answered 200 and quarantined; every delivery sent before and
// after it is stored at once (none goes to the spool); `spool list` shows
// it with its reason; after the trigger is dropped, `spool requeue` (server
// stopped) and a restart store it exactly once.
BOOST_AUTO_TEST_CASE(a_poison_event_is_quarantined_and_the_writer_moves_on, *utf::timeout(180)) {
  fault_database db;
  auto workspaces = db.workspaces(2);
  auto options = poison_load("poison", workspaces);
  auto poison_id = "wamid.poison." + unique_suffix();
  poison_message(db, poison_id);
  server_process server{db.url(), fault_server("poison", {"--spool.quarantine-after=3"})};
  expected_store expected;
  expected.add(warm_up(server.port(), options), options);
  auto spooled_before = metric(server.port(), "kapso_spooled_events_total");

  load_driver load{server.port(), options};
  load.start();
  BOOST_TEST_REQUIRE(load.wait_acknowledged(30, 15s), "the load got no 200s");
  auto poison = single(poison_id, 1730500000);
  http_client client{server.port(), 12s};
  send_once(client, poison, options);
  BOOST_TEST_REQUIRE(poison.attempts.back().status == 200,
                     "the poison delivery: " << poison.attempts.back().status << " "
                                             << poison.attempts.back().detail);
  BOOST_TEST(poison.attempts.back().accepted == 1, "a poison event is kept, not ignored");
  auto sent = clock_type::now();
  // Its failures count while the load is stored around it.
  bool quarantined = eventually(
    [&] { return metric(server.port(), "kapso_quarantine_events") == 1.0; }, 20s, 100ms);
  auto took = ms_since(sent);
  auto acknowledged = load.acknowledged();
  BOOST_TEST(load.wait_acknowledged(acknowledged + 20, 10s), "the load stalled afterwards");
  load.stop();
  BOOST_TEST_REQUIRE(quarantined, "not quarantined within 20 s:\n" << server.log_tail(30));
  BOOST_TEST_MESSAGE("[fault] poison quarantined " << took << " ms after its 200");

  auto summary = summarize(load.deliveries());
  BOOST_TEST_MESSAGE("[fault] poison: " << summary.describe());
  check_answers(summary);
  BOOST_TEST(summary.acknowledged_deliveries == summary.deliveries, summary.describe());
  BOOST_TEST(summary.max_latency_200.count() < 3000,
             "a delivery around the poison waited " << summary.max_latency_200.count() << " ms");
  // Nothing but the poison went to the spool, and the spool is empty again.
  BOOST_TEST(metric(server.port(), "kapso_spooled_events_total") - spooled_before == 1.0);
  BOOST_TEST(metric(server.port(), "kapso_spool_records") == 0.0);
  BOOST_TEST(metric(server.port(), "kapso_quarantined_events_total") == 1.0);
  BOOST_TEST(rows_of(db, poison_id) == 0);
  expected.add(load.deliveries(), options);
  // Everything answered 200 but the poison is in PostgreSQL already.
  auto report = check_store(db.url(), expected, false);
  BOOST_TEST(report.ok(), report.describe());

  auto listed = spool_command("list", server.spool_dir());
  BOOST_TEST(listed.exit_code == 0, listed.output);
  BOOST_TEST(listed.output.find(poison_id) != std::string::npos, listed.output);
  BOOST_TEST(listed.output.find("SQLSTATE XX000: poison for a fault test") != std::string::npos,
             listed.output);
  BOOST_TEST(listed.output.find("1 quarantined event\n") != std::string::npos, listed.output);
  BOOST_TEST(listed.output.find(text_of(poison.messages[0], options)) == std::string::npos,
             "the listing shows the message text");
  // The running server holds the spool directory: requeue refuses, untouched.
  auto refused = spool_command("requeue", server.spool_dir());
  BOOST_TEST(refused.exit_code == 1, refused.output);
  BOOST_TEST(refused.output.find("in use by another kapso-ingest") != std::string::npos,
             refused.output);
  BOOST_TEST(spool_command("list", server.spool_dir()).output.find("1 quarantined event")
             != std::string::npos);

  cure(db);
  BOOST_TEST(server.stop() == 0);
  auto requeued = spool_command("requeue", server.spool_dir());
  BOOST_TEST(requeued.exit_code == 0, requeued.output);
  BOOST_TEST(requeued.output.find("requeued 1 event ") != std::string::npos, requeued.output);
  server.start(true);
  BOOST_TEST(eventually([&] { return rows_of(db, poison_id) == 1; }, 15s, 100ms),
             "the requeued event was not stored within 15 s");
  BOOST_TEST(spool_command("list", server.spool_dir()).output == "0 quarantined events\n");
  expected.add({poison}, options);
  check_stored(db, expected, false);
  BOOST_TEST(rows_of(db, poison_id) == 1);
}

// An outage is never a poison: with a failing event waiting in the spool,
// a read-only database (SQLSTATE 25006) for several replay intervals under
// load quarantines nothing; once writable and cured, everything is stored.
BOOST_AUTO_TEST_CASE(a_read_only_database_quarantines_nothing, *utf::timeout(150)) {
  fault_database db;
  auto workspaces = db.workspaces(2);
  auto options = poison_load("ro-poison", workspaces);
  auto poison_id = "wamid.ro-poison." + unique_suffix();
  poison_message(db, poison_id);
  server_process server{db.url(), fault_server("ro-poison", {"--spool.quarantine-after=2",
                                                             "--persistence.writers=1"})};
  undo_on_exit heal{[] { cluster().heal(); }};
  expected_store expected;
  expected.add(warm_up(server.port(), options), options);
  auto poison = single(poison_id, 1730500000);
  http_client client{server.port(), 12s};
  send_once(client, poison, options);
  BOOST_TEST_REQUIRE(poison.attempts.back().status == 200, poison.attempts.back().detail);

  cluster().set_read_only(true);
  load_driver load{server.port(), options};
  load.start();
  // Twelve replay intervals of a failing spool under load.
  std::this_thread::sleep_for(6s);
  load.stop();
  BOOST_TEST(metric(server.port(), "kapso_quarantined_events_total") == 0.0);
  BOOST_TEST(metric(server.port(), "kapso_quarantine_events") == 0.0);
  BOOST_TEST(metric(server.port(), "kapso_spool_records") > 1.0, "the load was not spooled");
  auto listed = spool_command("list", server.spool_dir());
  BOOST_TEST(listed.output == "0 quarantined events\n", listed.output);

  // Cured first, on a session that is never read-only: the poison must not
  // fail again once the database is writable.
  cluster().exec("DROP TRIGGER kapso_fault_poison ON messages", db.name());
  cluster().set_read_only(false);
  auto left = resend_unacknowledged(load.deliveries(), options, server.port(), 60s);
  BOOST_TEST(left == 0u, left << " deliveries not answered 200 after 60 s of re-sending");
  expected.add(load.deliveries(), options);
  expected.add({poison}, options);
  check_stored(db, expected, true);
  BOOST_TEST(metric(server.port(), "kapso_quarantined_events_total") == 0.0);
  BOOST_TEST(!std::filesystem::exists(server.spool_dir() + "/writer-0.quarantine"));
}

// An exception that is not PostgreSQL's on one spooled record (its
// workspace id is no UUID: building the batch throws std::logic_error)
// must not block the writer: the server replays it at start, the live load
// is stored meanwhile, and the record ends in the quarantine.
BOOST_AUTO_TEST_CASE(a_spooled_record_our_code_cannot_write_is_quarantined, *utf::timeout(120)) {
  fault_database db;
  auto workspaces = db.workspaces(2);
  auto options = poison_load("broken", workspaces);
  auto spool_dir = make_temp_dir("quarantine-broken");
  {
    kapso::routed_event broken;
    broken.workspace_id = "not-a-uuid";
    broken.ev.kind = kapso::event_kind::message_received;
    broken.ev.event_type = "whatsapp.message.received";
    broken.ev.contact_key = "+15550009999";
    broken.ev.contact_phone = "+15550009999";
    broken.ev.message_id = "wamid.broken." + unique_suffix();
    broken.ev.timestamp = 1730600000;
    broken.ev.direction = "inbound";
    broken.ev.sender_type = "contact";
    broken.ev.message_type = "text";
    broken.ev.status = "received";
    kapso::spool file{kapso::writer_file(spool_dir, 0, kapso::spool_file_suffix), SIZE_MAX};
    BOOST_REQUIRE(file.append({broken}) == kapso::spool::append_status::ok);
  }
  auto server_opts = fault_server("broken", {"--spool.quarantine-after=3",
                                             "--persistence.writers=1"});
  server_opts.spool_dir = spool_dir;
  server_process server{db.url(), server_opts};
  expected_store expected;
  expected.add(warm_up(server.port(), options), options);
  load_driver load{server.port(), options};
  load.start();
  bool quarantined = eventually(
    [&] { return metric(server.port(), "kapso_quarantine_events") == 1.0; }, 20s, 100ms);
  load.stop();
  BOOST_TEST_REQUIRE(quarantined, "not quarantined within 20 s:\n" << server.log_tail(30));
  auto summary = summarize(load.deliveries());
  check_answers(summary);
  BOOST_TEST(summary.acknowledged_deliveries == summary.deliveries, summary.describe());
  BOOST_TEST(summary.max_latency_200.count() < 3000,
             "a delivery waited " << summary.max_latency_200.count() << " ms");
  BOOST_TEST(eventually([&] { return metric(server.port(), "kapso_spool_records") == 0.0; },
                        10s, 100ms));
  auto listed = spool_command("list", spool_dir);
  BOOST_TEST(listed.output.find("not a database error: an id from the database is not a UUID")
               != std::string::npos,
             listed.output);
  expected.add(load.deliveries(), options);
  check_stored(db, expected, true);
}

BOOST_AUTO_TEST_SUITE_END()
