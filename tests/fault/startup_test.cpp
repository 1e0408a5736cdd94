// PostgreSQL frozen when the server starts: it listens at once, spools what it can verify, and migrates and replays once the database answers.
#include <boost/test/unit_test.hpp>

#include "persistence/migrations.hpp"
#include "persistence/statements.hpp"
#include "tests/fault/fault_support.hpp"

using namespace kapso_test;
using namespace kapso_fault;
namespace utf = boost::unit_test;

namespace {

pg_cluster& cluster() { return pg_cluster::shared(); }

// The server must listen this soon whatever PostgreSQL does.
constexpr auto listen_limit = 5s;
// From the thaw to /readyz 200: the migrator's longest back-off (4 s), a
// connection and the migration or its check, with margin for 2 busy cores.
constexpr auto ready_limit = 20s;

// A server that counts as started once it listens (/healthz): /readyz is
// what the cases check.
server_options listening_server(const std::string& name) {
  auto options = fault_server(name);
  options.ready_path = "/healthz";
  options.ready_timeout = listen_limit;
  return options;
}

int readyz(uint16_t port) {
  try {
    http_client client{port, 5s};
    return client.get("/readyz").status;
  } catch (const http_error&) {
    return 0;
  }
}

// The server started at `starting` must listen by now.
void check_listened_soon(clock_type::time_point starting) {
  auto took = ms_since(starting);
  BOOST_TEST_MESSAGE("[fault] listening " << took << " ms after the start");
  BOOST_TEST(took < std::chrono::milliseconds(listen_limit).count(),
             "the server took " << took << " ms to listen");
}

size_t lines_of(const std::string& output) {
  size_t lines = 0;
  for (size_t pos = 0; pos < output.size();) {
    auto end = output.find('\n', pos);
    if (end == std::string::npos)
      end = output.size();
    if (end > pos)
      ++lines;
    pos = end + 1;
  }
  return lines;
}

// The migrator tried while PostgreSQL was frozen, and failed (it retries).
void check_migration_attempt_failed(const server_process& server) {
  bool failed = eventually(
    [&] { return server.log_tail(400).find("migrations not applied yet") != std::string::npos; },
    10s, 100ms);
  BOOST_TEST(failed, "no failed migration attempt logged while PostgreSQL was frozen:\n"
                       << server.log_tail());
}

// Thaws the cluster and waits for /readyz 200; the time it took.
long long thaw_until_ready(uint16_t port) {
  auto thawed = clock_type::now();
  cluster().thaw();
  bool ready = eventually([&] { return readyz(port) == 200; }, ready_limit, 100ms);
  BOOST_TEST(ready, "/readyz not 200 within " << ready_limit.count() << " s of the thaw");
  auto took = ms_since(thawed);
  BOOST_TEST_MESSAGE("[fault] /readyz 200 " << took << " ms after the thaw");
  return took;
}

load_options startup_load(const std::string& tag, const std::vector<workspace>& workspaces) {
  load_options o;
  o.tag = tag;
  o.workspaces = workspaces;
  o.conversations = 40;
  o.threads = 2;
  o.pause = 20ms;
  return o;
}

} // namespace

BOOST_AUTO_TEST_SUITE(startup)

// Issue 16: known workspaces (the snapshot an earlier run left next to the
// spool) are served into the spool while PostgreSQL is frozen from the very
// start; readiness waits for the database; after the thaw the spool drains
// and every 200 is stored exactly once.
BOOST_AUTO_TEST_CASE(frozen_database_at_start_listens_spools_and_replays_after_thaw,
                     *utf::timeout(150)) {
  fault_database db;
  auto workspaces = db.workspaces(2);
  server_process server{db.url(), listening_server("startup-frozen")};
  undo_on_exit undo{[] { cluster().heal(); }};
  BOOST_TEST_REQUIRE(eventually([&] { return readyz(server.port()) == 200; }, 15s, 100ms),
                     "the first run never became ready");
  auto options = startup_load("startfrozen", workspaces);
  expected_store expected;
  // One look-up per workspace: the snapshot of the spool directory knows them.
  expected.add(warm_up(server.port(), options), options);
  BOOST_TEST_REQUIRE(server.stop() == 0);

  cluster().freeze();
  auto starting = clock_type::now();
  server.start(true);
  check_listened_soon(starting);
  BOOST_TEST(readyz(server.port()) == 503, "/readyz must be 503 while PostgreSQL is frozen");

  load_driver load{server.port(), options};
  load.start();
  bool spooled = load.wait_acknowledged(100, 20s);
  load.stop();
  auto during = summarize(load.deliveries());
  BOOST_TEST_MESSAGE("[fault] frozen at start: " << during.describe());
  BOOST_TEST_REQUIRE(spooled, "signed deliveries of known workspaces were not answered 200 "
                              "while PostgreSQL was frozen: " << during.describe());
  BOOST_TEST(during.by_status.size() == 1u,
             "every delivery of a known workspace must be spooled: " << during.describe());
  BOOST_TEST(metric_sum(metrics_of(server.port()), "kapso_spooled_events_total") > 0.0);
  BOOST_TEST(readyz(server.port()) == 503, "/readyz 200 while PostgreSQL is still frozen");
  check_migration_attempt_failed(server);

  thaw_until_ready(server.port());
  bool drained = eventually(
    [&] { return metric_sum(metrics_of(server.port()), "kapso_spool_records") == 0.0; }, 20s,
    100ms);
  BOOST_TEST(drained, "the spool still holds records 20 s after /readyz became 200");
  check_answers(during);
  auto left = resend_unacknowledged(load.deliveries(), options, server.port(), 30s);
  BOOST_TEST(left == 0u, left << " deliveries still not answered 200 after 30 s of re-sending");
  expected.add(load.deliveries(), options);
  check_stored(db, expected, true);
}

// A brand-new database frozen at start: no snapshot, nothing migrated. The
// server listens, is not ready, cannot verify anything (503); after the
// thaw it migrates and writes.
BOOST_AUTO_TEST_CASE(unmigrated_database_frozen_at_start_migrates_after_thaw,
                     *utf::timeout(120)) {
  cluster().heal();
  test_database db{false, cluster().admin_url()};
  undo_on_exit undo{[] { cluster().heal(); }};
  cluster().freeze();
  auto starting = clock_type::now();
  server_process server{db.url(), listening_server("startup-fresh")};
  check_listened_soon(starting);
  BOOST_TEST(readyz(server.port()) == 503, "/readyz must be 503 while PostgreSQL is frozen");
  {
    http_client client{server.port(), 10s};
    workspace unknown{"", "990000000000999", std::nullopt};
    auto answer = post_webhook(
      client, kapso_event(text_message(unknown, "wamid.fresh.unknown", 1730000000, "x")).dump());
    BOOST_TEST(answer.status == 503,
               "a delivery that cannot be verified must not be answered " << answer.status);
  }
  check_migration_attempt_failed(server);

  thaw_until_ready(server.port());
  BOOST_TEST(db.count("SELECT count(*) FROM kapso_schema_migrations")
               == static_cast<int64_t>(kapso::embedded_migrations().size()),
             "not every migration is recorded");
  BOOST_TEST(db.value("SELECT to_regclass('messages')::text").has_value(),
             "the inbox tables were not created");
  // The writers write into the migrated schema.
  auto options = startup_load("startfresh", {db.insert_workspace()});
  expected_store expected;
  expected.add(warm_up(server.port(), options), options);
  check_stored(db, expected, true);
}

// The command-line tools against a frozen database: a bounded failure with
// one line saying why, never a hang.
BOOST_AUTO_TEST_CASE(cli_against_a_frozen_database_fails_within_its_deadline,
                     *utf::timeout(90)) {
  fault_database db;
  undo_on_exit undo{[] { cluster().heal(); }};
  cluster().freeze();
  for (const auto& command :
       std::vector<std::vector<std::string>>{{"migrate"},
                                             {"register-workspace", "--workspace.slug=frozen",
                                              "--workspace.phone-number-id=15550001111"}}) {
    auto args = command;
    args.push_back("--persistence.database-url=" + db.url());
    auto started = clock_type::now();
    auto result = run_cli(args, {}, 30s);
    auto took = ms_since(started);
    BOOST_TEST_CONTEXT(command.front()) {
      BOOST_TEST_MESSAGE("[fault] " << command.front() << " against a frozen database: exit "
                                    << result.exit_code << " after " << took << " ms");
      BOOST_TEST(!result.timed_out, "still running after 30 s");
      BOOST_TEST(result.exit_code == 1, result.output);
      // The default deadlines: a connection attempt of 1 s, a statement of 2 s.
      BOOST_TEST(took < 10000, "took " << took << " ms");
      BOOST_TEST(result.output.find("no answer from PostgreSQL") != std::string::npos,
                 result.output);
      BOOST_TEST(lines_of(result.output) == 1u, "not one line:\n" << result.output);
    }
  }
}

// Another session holding the migration lock (a concurrent migration that
// hangs): `migrate` waits no longer than persistence.migration-timeout-ms.
BOOST_AUTO_TEST_CASE(migration_lock_held_elsewhere_fails_within_the_migration_timeout,
                     *utf::timeout(90)) {
  cluster().heal();
  test_database db{false, cluster().admin_url()};
  pqxx::connection holder{db.url()};
  pqxx::nontransaction hold{holder};
  hold.exec(std::string{"SELECT pg_advisory_lock("} + kapso::sql::migration_lock_key + ")");
  std::vector<std::string> args{"migrate", "--persistence.database-url=" + db.url(),
                                "--persistence.migration-timeout-ms=1500"};
  auto started = clock_type::now();
  auto result = run_cli(args, {}, 30s);
  auto took = ms_since(started);
  BOOST_TEST_MESSAGE("[fault] migrate while the lock is held: exit " << result.exit_code
                                                                     << " after " << took << " ms");
  BOOST_TEST(!result.timed_out);
  BOOST_TEST(result.exit_code == 1, result.output);
  BOOST_TEST(took < 8000, "took " << took << " ms");
  BOOST_TEST(result.output.find("waiting for the migration lock") != std::string::npos,
             result.output);
  BOOST_TEST(lines_of(result.output) == 1u, "not one line:\n" << result.output);

  hold.exec(std::string{"SELECT pg_advisory_unlock("} + kapso::sql::migration_lock_key + ")");
  auto again = run_cli(args, {}, 60s);
  BOOST_TEST(again.exit_code == 0, again.output);
}

BOOST_AUTO_TEST_SUITE_END()
