// PostgreSQL refusing writes, frozen, stopped and misconfigured under load: a 200 is still a promise.
#include <functional>
#include <sstream>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "tests/fault/fault_support.hpp"

using namespace kapso_test;
using namespace kapso_fault;
namespace utf = boost::unit_test;

namespace {

pg_cluster& cluster() { return pg_cluster::shared(); }

} // namespace

BOOST_AUTO_TEST_SUITE(database_faults)

// Issue 10, case 1: SQLSTATE 25006 is the database's state, not the event's.
BOOST_AUTO_TEST_CASE(read_only_database_never_answers_200_without_the_row,
                     *utf::timeout(150)) {
  fault_database db;
  auto workspaces = db.workspaces(3);
  server_process server{db.url(), fault_server("read-only")};
  undo_on_exit undo{[] { cluster().heal(); }};
  refused_writes("ro", db, server, workspaces, [] { cluster().set_read_only(true); },
                 [] { cluster().set_read_only(false); });
}

// Issue 10, case 1: SQLSTATE 42501 (a grant lost in a deploy) is environmental too.
BOOST_AUTO_TEST_CASE(revoked_privileges_never_answer_200_without_the_row, *utf::timeout(150)) {
  fault_database db;
  db.grant_app_role();
  auto workspaces = db.workspaces(3);
  auto options = fault_server("revoked", {"--persistence.migrate-on-start=false"});
  server_process server{db.app_url(), options};
  refused_writes("priv", db, server, workspaces, [&] { db.set_app_writes(false); },
                 [&] { db.set_app_writes(true); });
}

// A full disk under the inbox tables (SQLSTATE 53100): a tablespace on a
// small tmpfs, filled by a filler table, freed by dropping it.
BOOST_AUTO_TEST_CASE(database_disk_full_never_answers_200_without_the_row,
                     *utf::timeout(150)) {
  fault_database db;
  auto tablespace = cluster().small_disk_tablespace("small_" + unique_suffix(), 16 << 20);
  db.exec_script("ALTER TABLE messages SET TABLESPACE " + tablespace
                 + "; ALTER TABLE contacts SET TABLESPACE " + tablespace
                 + "; ALTER TABLE conversations SET TABLESPACE " + tablespace
                 + "; CREATE TABLE kapso_fault_filler (pad text) TABLESPACE " + tablespace
                 + "; ALTER TABLE kapso_fault_filler ALTER COLUMN pad SET STORAGE PLAIN");
  auto workspaces = db.workspaces(3);
  server_process server{db.url(), fault_server("disk-full")};
  refused_writes(
    "disk", db, server, workspaces,
    [&] {
      // Fill in slices until PostgreSQL reports the disk full.
      for (int slice = 0; slice < 200; ++slice) {
        try {
          db.exec_script("INSERT INTO kapso_fault_filler "
                         "SELECT repeat('x', 1800) FROM generate_series(1, 2000)");
        } catch (const std::exception& e) {
          BOOST_TEST_MESSAGE("[fault] disk full: " << e.what());
          return;
        }
      }
      BOOST_FAIL("16 MB tmpfs never filled up");
    },
    [&] { db.exec_script("DROP TABLE kapso_fault_filler"); });
  server.stop();
  db.exec_script("ALTER TABLE messages SET TABLESPACE pg_default;"
                 "ALTER TABLE contacts SET TABLESPACE pg_default;"
                 "ALTER TABLE conversations SET TABLESPACE pg_default");
  cluster().exec("DROP TABLESPACE " + tablespace);
}

// Issue 10, case 2: a database that accepts and never answers.
BOOST_AUTO_TEST_CASE(frozen_database_spools_within_the_commit_timeout, *utf::timeout(150)) {
  fault_database db;
  auto workspaces = db.workspaces(3);
  server_process server{db.url(), fault_server("frozen")};
  undo_on_exit undo{[] { cluster().heal(); }};
  outage_under_load("frozen", db, server, workspaces, 6s, [] { cluster().freeze(); },
                    [] { cluster().thaw(); });
}

// Issue 10, case 3: PostgreSQL crashed and gone for 30 s.
BOOST_AUTO_TEST_CASE(stopped_database_for_30_s_loses_nothing, *utf::timeout(180)) {
  fault_database db;
  auto workspaces = db.workspaces(3);
  server_process server{db.url(), fault_server("stopped")};
  undo_on_exit undo{[] { cluster().heal(); }};
  outage_under_load("stopped", db, server, workspaces, 30s, [] { cluster().stop_immediate(); },
                    [] { cluster().start(); });
}

// Issue 10, case 3 (second part): the server is killed during the outage and
// restarted while PostgreSQL is still down; it must verify and spool signed
// deliveries of the workspaces it knew (its snapshot next to the spool).
BOOST_AUTO_TEST_CASE(server_restarted_during_a_database_outage_still_spools,
                     *utf::timeout(180)) {
  fault_database db;
  auto workspaces = db.workspaces(3);
  auto server_opts = fault_server("restart-in-outage");
  // Ready means listening: PostgreSQL will be down at the restart.
  server_opts.ready_path = "/healthz";
  server_process server{db.url(), server_opts};
  undo_on_exit undo{[] { cluster().heal(); }};

  auto options = database_load("restart", workspaces);
  options.pause = 20ms;
  expected_store expected;
  load_driver load{server.port(), options};
  start_after_warm_up(load, expected, server.port(), options);
  auto spooled_before = metric_of(server.port(), "kapso_spooled_events_total");
  cluster().stop_immediate();
  BOOST_TEST_REQUIRE(eventually(
                       [&] {
                         return metric_of(server.port(), "kapso_spooled_events_total")
                                >= spooled_before + 20;
                       },
                       20s, 100ms),
                     "the server spooled fewer than 20 events within 20 s of the outage");
  server.kill_hard();
  auto restarting = clock_type::now();
  server.start(true);
  auto restarted = clock_type::now();
  BOOST_TEST_MESSAGE("[fault] restarted without PostgreSQL in " << ms_since(restarting)
                                                                << " ms");
  // The restarted server serves the outage for a while (requests from a
  // second after it listened are checked below) and spools what it gets.
  BOOST_TEST(eventually(
               [&] {
                 return clock_type::now() - restarted >= 4s
                        && metric_of(server.port(), "kapso_spooled_events_total") >= 20;
               },
               30s, 100ms),
             "the restarted server spooled fewer than 20 events during the outage");
  auto back = clock_type::now();
  cluster().start();
  auto acknowledged = load.acknowledged();
  BOOST_TEST(load.wait_acknowledged(acknowledged + 40, 15s),
             "fewer than 40 new 200s within 15 s of the database coming back");
  load.stop();

  auto summary = summarize(load.deliveries());
  BOOST_TEST_MESSAGE("[fault] restart-in-outage: " << summary.describe());
  check_answers(summary);
  // From a second after the restarted server listened until PostgreSQL came
  // back, everything must have been verified and spooled.
  auto limit = commit_timeout + 2s;
  auto after_restart = answered_200_within(load.deliveries(), limit, restarted + 1s, back);
  BOOST_TEST(after_restart.requests > 0u, "no request was sent to the restarted server");
  BOOST_TEST(after_restart.count == 0u,
             after_restart.count << " of " << after_restart.requests
                                 << " requests to the server restarted during the outage were "
                                    "not answered 200 within "
                                 << limit.count() << " ms:" << after_restart.describe());

  auto left = resend_unacknowledged(load.deliveries(), options, server.port(), 60s);
  BOOST_TEST(left == 0u, left << " deliveries still not answered 200 after 60 s of re-sending");
  expected.add(load.deliveries(), options);
  check_stored(db, expected, true, 60s);
  check_nothing_quarantined(server);
}

// A cluster default of synchronous_commit = off must not make a 200
// non-durable: a statement trigger records the setting the server's own
// session has when it inserts messages.
BOOST_AUTO_TEST_CASE(synchronous_commit_is_on_for_the_servers_sessions, *utf::timeout(60)) {
  fault_database db;
  db.exec_script(
    "CREATE TABLE kapso_fault_probe (setting text NOT NULL);"
    "CREATE FUNCTION kapso_fault_probe_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "  INSERT INTO kapso_fault_probe VALUES (current_setting('synchronous_commit')); "
    "  RETURN NULL; END $$;"
    "CREATE TRIGGER kapso_fault_probe_trg AFTER INSERT ON messages "
    "  FOR EACH STATEMENT EXECUTE FUNCTION kapso_fault_probe_fn();");
  cluster().exec("ALTER DATABASE " + db.name() + " SET synchronous_commit = off");
  auto workspaces = db.workspaces(2);
  server_process server{db.url(), fault_server("sync-commit")};
  auto options = database_load("sync", workspaces);
  options.threads = 2;
  options.max_deliveries_per_thread = 10;
  load_driver load{server.port(), options};
  load.start();
  // Every thread sends its deliveries; stop() would cut them short.
  BOOST_TEST_REQUIRE(load.wait_acknowledged(options.threads * options.max_deliveries_per_thread,
                                            30s),
                     "the deliveries were not all answered 200");
  load.stop();
  auto summary = summarize(load.deliveries());
  BOOST_TEST_REQUIRE(summary.deliveries > 0u);
  BOOST_TEST_REQUIRE(summary.acknowledged_deliveries == summary.deliveries, summary.describe());
  auto settings = db.query("SELECT setting, count(*) FROM kapso_fault_probe GROUP BY 1");
  std::ostringstream seen;
  int64_t off = 0;
  int64_t total = 0;
  for (const auto& row : settings) {
    seen << " " << row[0].c_str() << "=" << row[1].c_str();
    total += row[1].as<int64_t>();
    if (std::string{row[0].c_str()} == "off")
      off += row[1].as<int64_t>();
  }
  BOOST_TEST(total > 0, "the probe trigger saw no insert into messages");
  BOOST_TEST(off == 0, off << " of " << total
                           << " inserts ran with synchronous_commit = off (the database "
                              "default); settings seen:"
                           << seen.str());
}

BOOST_AUTO_TEST_SUITE_END()
