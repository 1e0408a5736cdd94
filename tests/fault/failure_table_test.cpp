// README's "Failure behaviour" table, row by row: each fault provoked on the real server, each promise checked.
#include <sys/resource.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <memory>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "tests/fault/fault_support.hpp"

using namespace kapso_test;
using namespace kapso_fault;
namespace utf = boost::unit_test;

namespace {

pg_cluster& cluster() { return pg_cluster::shared(); }

// A few conversations on `workspaces`, one thread: the cases below send
// their own deliveries and need no crowd.
load_options small_load(const std::string& tag, const std::vector<workspace>& workspaces) {
  load_options o;
  o.tag = tag;
  o.workspaces = workspaces;
  o.conversations = 8 * workspaces.size();
  o.threads = 2;
  o.pause = 20ms;
  return o;
}

// Delivery `name` to the workspace of conversation `conversations[0]`: a
// single event, or a Kapso batch of one message per conversation listed.
delivery make_delivery(const load_options& o, const std::string& name,
                       const std::vector<size_t>& conversations) {
  delivery d;
  d.workspace = workspace_of(conversations.front(), o);
  d.batch = conversations.size() > 1;
  for (size_t k = 0; k < conversations.size(); ++k)
    d.messages.push_back(message_ref{"wamid." + o.tag + "." + name + "." + std::to_string(k),
                                     conversations[k],
                                     1731000000 + static_cast<int64_t>(k)});
  return d;
}

// Sends `d` once on a client of its own; the attempt is appended to d.
const attempt& send_alone(uint16_t port, delivery& d, const load_options& o,
                          std::chrono::milliseconds timeout = 15s) {
  http_client client{port, timeout, false};
  send_once(client, d, o);
  return d.attempts.back();
}

std::string describe(const attempt& a) {
  return std::to_string(a.status) + " after " + std::to_string(a.latency.count()) + " ms: "
         + "accepted " + std::to_string(a.accepted) + ", duplicates "
         + std::to_string(a.duplicates) + ", ignored " + std::to_string(a.ignored) + " "
         + a.detail.substr(0, 200);
}

size_t occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
    ++n;
  return n;
}

// The whole log of a server process (every start appends to the same file).
std::string whole_log(const server_process& server) {
  std::ifstream in{server.log_path()};
  return std::string{std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

// A session of the test that holds PostgreSQL locks until released (or
// destroyed): the server's writes wait on it like on a slow other client.
class lock_holder {
 public:
  explicit lock_holder(const test_database& db)
    : connection_(std::make_unique<pqxx::connection>(db.url())),
      work_(std::make_unique<pqxx::work>(*connection_)) {}
  ~lock_holder() { release(); }
  lock_holder(const lock_holder&) = delete;
  lock_holder& operator=(const lock_holder&) = delete;

  template <class... Args>
  void exec(const std::string& sql, Args&&... args) {
    work_->exec_params(sql, std::forward<Args>(args)...);
  }
  void commit() {
    work_->commit();
    work_.reset();
  }
  void release() {
    if (!work_)
      return;
    try {
      work_->abort();
    } catch (const std::exception&) {
      // The session is gone: so are its locks.
    }
    work_.reset();
  }

 private:
  std::unique_ptr<pqxx::connection> connection_;
  std::unique_ptr<pqxx::work> work_;
};

// Row "deadlock or serialization failure": a trigger on messages raises
// `sqlstate` the first time it sees the marked event (a sequence counts the
// firings: nextval survives the rollback), so only the first attempt fails.
void conflict_on_the_first_attempt(const std::string& sqlstate) {
  fault_database db;
  auto workspaces = db.workspaces(1);
  server_process server{db.url(), fault_server("conflict-" + sqlstate)};
  auto options = small_load("conflict" + sqlstate, workspaces);
  expected_store expected;
  expected.add(warm_up(server.port(), options), options);

  auto batch = make_delivery(options, "batch", {1, 2, 3});
  const auto& marked = batch.messages[1].id;
  db.exec_script("CREATE SEQUENCE kapso_fault_firings;"
                 "CREATE FUNCTION kapso_fault_conflict() RETURNS trigger LANGUAGE plpgsql AS $$ "
                 "BEGIN "
                 "  IF NEW.kapso_message_id = '" + marked + "' THEN "
                 "    IF nextval('kapso_fault_firings') = 1 THEN "
                 "      RAISE EXCEPTION 'injected by the fault test' USING ERRCODE = '"
                 + sqlstate + "'; "
                 "    END IF; "
                 "  END IF; "
                 "  RETURN NEW; "
                 "END $$;"
                 "CREATE TRIGGER kapso_fault_conflict_trg BEFORE INSERT ON messages "
                 "  FOR EACH ROW EXECUTE FUNCTION kapso_fault_conflict();");
  auto failures_before = metric_of(server.port(), "kapso_commit_failures_total");

  const auto& answer = send_alone(server.port(), batch, options);
  BOOST_TEST(answer.status == 200, describe(answer));
  BOOST_TEST(answer.accepted == 3, describe(answer));
  BOOST_TEST(answer.duplicates == 0, describe(answer));
  BOOST_TEST(answer.ignored == 0, describe(answer));
  auto firings = db.count("SELECT CASE WHEN is_called THEN last_value ELSE 0 END "
                          "FROM kapso_fault_firings");
  BOOST_TEST(firings >= 2, "the trigger saw the marked event " << firings
                             << " times: the failed first attempt was not retried");
  auto failures = metric_of(server.port(), "kapso_commit_failures_total") - failures_before;
  BOOST_TEST(failures >= 1.0, "kapso_commit_failures_total rose by " << failures);
  BOOST_TEST(server.log_tail(200).find("rejected by the database") == std::string::npos,
             "a conflict was taken for the event's data:\n" << server.log_tail(20));

  expected.add({batch}, options);
  check_stored(db, expected, true);
}

// VmSize of a process in bytes (0 when it does not exist).
uint64_t address_space_bytes(int pid) {
  std::ifstream status{"/proc/" + std::to_string(pid) + "/status"};
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmSize:", 0) == 0)
      return std::stoull(line.substr(7)) * 1024;
  return 0;
}

} // namespace

BOOST_AUTO_TEST_SUITE(failure_table)

// Row "deadlock or serialization failure": retried, stored once.
BOOST_AUTO_TEST_CASE(serialization_failure_on_the_first_attempt_is_retried_and_stored_once,
                     *utf::timeout(90)) {
  conflict_on_the_first_attempt("40001");
}

BOOST_AUTO_TEST_CASE(deadlock_on_the_first_attempt_is_retried_and_stored_once,
                     *utf::timeout(90)) {
  conflict_on_the_first_attempt("40P01");
}

// Row "an event's own invalid data": a CHECK constraint refuses one event's
// text (SQLSTATE 23514). That event alone is answered "ignored" and not
// stored; the rest of its batch is stored; the log names it by id only.
BOOST_AUTO_TEST_CASE(an_events_own_invalid_data_is_ignored_and_the_rest_of_its_batch_stored,
                     *utf::timeout(90)) {
  fault_database db;
  auto workspaces = db.workspaces(1);
  server_process server{db.url(), fault_server("invalid-data")};
  auto options = small_load("invalid", workspaces);
  expected_store expected;
  expected.add(warm_up(server.port(), options), options);
  // The text of every message holds its id (text_of): ".refused." marks the
  // ones PostgreSQL must refuse.
  db.exec_script("ALTER TABLE messages ADD CONSTRAINT kapso_fault_refused_text "
                 "CHECK (content IS NULL OR content NOT LIKE '%.refused.%')");
  auto ignored_before = metric_of(server.port(), "kapso_events_total", {"result=\"ignored\""});

  // The refused event shares its conversation with a stored one, so a
  // partial write would show in the unread count the checker compares.
  auto batch = make_delivery(options, "batch", {1, 2, 1, 3});
  batch.messages[2].id = "wamid.invalid.refused.in-batch";
  auto single = make_delivery(options, "single", {4});
  single.messages[0].id = "wamid.invalid.refused.alone";

  const auto& in_batch = send_alone(server.port(), batch, options);
  BOOST_TEST(in_batch.status == 200, describe(in_batch));
  BOOST_TEST(in_batch.accepted == 3, describe(in_batch));
  BOOST_TEST(in_batch.ignored == 1, describe(in_batch));
  const auto& alone = send_alone(server.port(), single, options);
  BOOST_TEST(alone.status == 200, describe(alone));
  BOOST_TEST(alone.accepted == 0, describe(alone));
  BOOST_TEST(alone.ignored == 1, describe(alone));
  auto ignored = metric_of(server.port(), "kapso_events_total", {"result=\"ignored\""})
                 - ignored_before;
  BOOST_TEST(ignored == 2.0, "kapso_events_total{result=\"ignored\"} rose by " << ignored);

  auto log = whole_log(server);
  for (const auto* refused : {&batch.messages[2], &single.messages[0]}) {
    BOOST_TEST_CONTEXT("event " << refused->id) {
      BOOST_TEST(occurrences(log, "event " + refused->id) >= 1u,
                 "the log does not name the refused event:\n" << server.log_tail(20));
      BOOST_TEST(log.find("rejected by the database for its own data") != std::string::npos,
                 server.log_tail(20));
      // Neither its text nor the customer's phone: the id is enough.
      BOOST_TEST(log.find(text_of(*refused, options)) == std::string::npos,
                 "the log holds the refused event's text:\n" << server.log_tail(20));
      BOOST_TEST(log.find(phone_of(refused->conversation)) == std::string::npos,
                 "the log holds the customer's full phone number:\n" << server.log_tail(20));
    }
  }

  expected.add({batch, single}, options);
  expected.remove(workspaces[0].id, batch.messages[2].id);
  expected.remove(workspaces[0].id, single.messages[0].id);
  check_stored(db, expected, true);
}

// Row "the workspace row deleted while its events are on their way": the
// test deletes the workspace in a transaction of its own while the
// server's write of a delivery to it waits for that row, then commits. The
// delivery is answered 503; Kapso's retry then meets an unknown
// phone_number_id (200, ignored); nothing of the workspace is left, and
// another workspace's delivery in the same moment is stored.
BOOST_AUTO_TEST_CASE(workspace_deleted_while_its_delivery_waits_is_answered_503,
                     *utf::timeout(90)) {
  fault_database db;
  auto gone = db.workspaces(1);
  auto live = db.workspaces(1);
  server_process server{db.url(), fault_server("workspace-gone",
                                               {"--persistence.commit-timeout-ms=5000"})};
  auto gone_options = small_load("wsgone", gone);
  auto live_options = small_load("wslive", live);
  warm_up(server.port(), gone_options);
  expected_store expected;
  expected.add(warm_up(server.port(), live_options), live_options);

  lock_holder deleter{db};
  deleter.exec("DELETE FROM workspaces WHERE id = $1::uuid", gone[0].id);
  auto doomed = make_delivery(gone_options, "doomed", {1});
  auto other = make_delivery(live_options, "other", {1});
  std::thread sender{[&] { send_alone(server.port(), doomed, gone_options); }};
  std::thread other_sender{[&] { send_alone(server.port(), other, live_options); }};
  auto waiting = wait_for_lock_waiter(db, 5s);
  deleter.commit();
  sender.join();
  other_sender.join();
  BOOST_TEST_REQUIRE(waiting, "the server's write never waited for the workspace row");

  const auto& answer = doomed.attempts.back();
  BOOST_TEST(answer.status == 503, describe(answer));
  BOOST_TEST(answer.retry_after, "503 without Retry-After");
  BOOST_TEST(other.attempts.back().status == 200, describe(other.attempts.back()));
  BOOST_TEST(whole_log(server).find("event " + doomed.messages[0].id + " ")
               != std::string::npos,
             "no log line names the event of the deleted workspace:\n" << server.log_tail(20));

  // Kapso's retries: once the server has forgotten the workspace, its
  // phone_number_id is unknown and the delivery is ignored.
  bool ignored = eventually(
    [&] {
      const auto& retry = send_alone(server.port(), doomed, gone_options);
      return retry.status == 200 && retry.ignored == 1;
    },
    10s, 200ms);
  BOOST_TEST(ignored, "Kapso's retry was not answered 200 ignored within 10 s: "
                        << describe(doomed.attempts.back()));
  BOOST_TEST(inbox_rows(db, gone[0].id) == 0, "rows of the deleted workspace remain");
  expected.add({other}, live_options);
  check_stored(db, expected, true);
}

// The same row, spooled: the write waits for the workspace row longer than
// the commit timeout, so the delivery is spooled and answered 200; the
// workspace is deleted; the replay drops its event and counts it.
BOOST_AUTO_TEST_CASE(spooled_events_of_a_deleted_workspace_are_dropped_at_replay,
                     *utf::timeout(90)) {
  fault_database db;
  auto gone = db.workspaces(1);
  auto live = db.workspaces(1);
  server_process server{db.url(), fault_server("workspace-gone-spooled")};
  auto gone_options = small_load("spgone", gone);
  auto live_options = small_load("splive", live);
  warm_up(server.port(), gone_options);
  expected_store expected;
  expected.add(warm_up(server.port(), live_options), live_options);
  auto spooled_before = metric_of(server.port(), "kapso_spooled_events_total");

  lock_holder deleter{db};
  deleter.exec("DELETE FROM workspaces WHERE id = $1::uuid", gone[0].id);
  auto doomed = make_delivery(gone_options, "doomed", {1});
  const auto& answer = send_alone(server.port(), doomed, gone_options);
  BOOST_TEST_REQUIRE(answer.status == 200,
                     "a delivery whose write outlasted the commit timeout: " << describe(answer));
  BOOST_TEST(metric_of(server.port(), "kapso_spooled_events_total") >= spooled_before + 1,
             "the delivery was answered 200 without being spooled");
  // Another workspace's deliveries queue behind it in the spool.
  std::vector<delivery> others;
  for (size_t n = 0; n < 3; ++n) {
    others.push_back(make_delivery(live_options, "other" + std::to_string(n), {1 + n}));
    const auto& other = send_alone(server.port(), others.back(), live_options);
    BOOST_TEST(other.status == 200, describe(other));
  }
  deleter.commit();

  BOOST_TEST(eventually(
               [&] {
                 auto metrics = metrics_of(server.port());
                 return metric_sum(metrics, "kapso_spool_dropped_events_total") >= 1.0
                        && metric_sum(metrics, "kapso_spool_records") == 0.0;
               },
               20s, 100ms),
             "the spooled event of the deleted workspace was not dropped within 20 s:\n"
               << server.log_tail(20));
  BOOST_TEST(metric_of(server.port(), "kapso_spool_dropped_events_total") == 1.0);
  BOOST_TEST(whole_log(server).find("spooled event " + doomed.messages[0].id + " ")
               != std::string::npos,
             "no log line names the dropped event:\n" << server.log_tail(20));
  BOOST_TEST(inbox_rows(db, gone[0].id) == 0, "rows of the deleted workspace remain");
  expected.add(others, live_options);
  check_stored(db, expected, true);
}

// Row "a missing table or column": a column renamed under load (SQLSTATE
// 42703) is the database's state, not the events': spooled, never
// "ignored", replayed once it is back.
BOOST_AUTO_TEST_CASE(a_missing_column_is_spooled_never_ignored_and_replayed_once,
                     *utf::timeout(150)) {
  fault_database db;
  auto workspaces = db.workspaces(3);
  server_process server{db.url(), fault_server("missing-column")};
  refused_writes(
    "column", db, server, workspaces,
    [&] { db.exec_script("ALTER TABLE messages RENAME COLUMN content TO kapso_fault_moved"); },
    [&] { db.exec_script("ALTER TABLE messages RENAME COLUMN kapso_fault_moved TO content"); },
    false);
}

// The same row without a spool: a table renamed away (SQLSTATE 42P01) is
// answered 503, never 200 "ignored"; Kapso's retries store everything once
// the table is back.
BOOST_AUTO_TEST_CASE(a_missing_table_without_spool_is_answered_503_never_ignored,
                     *utf::timeout(150)) {
  fault_database db;
  auto workspaces = db.workspaces(3);
  auto options = fault_server("missing-table");
  options.spool_dir = std::string{};
  server_process server{db.url(), options};
  refused_writes(
    "table", db, server, workspaces,
    [&] { db.exec_script("ALTER TABLE messages RENAME TO kapso_fault_moved"); },
    [&] { db.exec_script("ALTER TABLE kapso_fault_moved RENAME TO messages"); }, false);
}

// Row "shutdown": PostgreSQL shut down cleanly (`pg_ctl -m fast`, sessions
// ended with SQLSTATE 57P01) under load, and started again.
BOOST_AUTO_TEST_CASE(a_clean_database_shutdown_under_load_is_spooled_and_replayed_once,
                     *utf::timeout(150)) {
  fault_database db;
  auto workspaces = db.workspaces(3);
  server_process server{db.url(), fault_server("fast-shutdown")};
  undo_on_exit undo{[] { cluster().heal(); }};
  outage_under_load("fast", db, server, workspaces, 3s, [] { cluster().stop_fast(); },
                    [] { cluster().start(); });
}

// Row "an actor of the pipeline stops": the only writer is stopped by a real
// fault from outside. During an outage it spools a large delivery (16 MB of
// text) and a few small ones; then the process's address space is limited,
// as `ulimit -v` (systemd's LimitAS=) would, to what it uses plus that
// record and half its text. The writer's next replay attempt reads the
// record and cannot copy its text: the writer stops (std::bad_alloc). The
// deliveries that wait for it are answered 503, the process exits 70, and a
// fresh process (as systemd would start) replays the spool once PostgreSQL
// is back: everything answered 200 is stored once. The server's allocator
// (jemalloc) is told to give freed memory back at once (MALLOC_CONF), so the
// limit measures what is live; by default freed extents stay mapped and are
// reused without a new mapping.
BOOST_AUTO_TEST_CASE(a_writer_stopped_by_a_failed_allocation_answers_503_exits_70_and_keeps_its_spool,
                     *utf::timeout(150)) {
  constexpr size_t big_text = 16 << 20;
  fault_database db;
  auto workspaces = db.workspaces(1);
  auto server_opts = fault_server(
    "writer-stops", {"--persistence.writers=1", "--persistence.commit-timeout-ms=5000",
                     "--http.shutdown-timeout-ms=4000",
                     "--http.body-limit=" + std::to_string(128 << 20),
                     // A waiting delivery holds its body twice (request and
                     // parsed copy): room for this one.
                     "--http.max-in-flight-bytes=" + std::to_string(256 << 20)});
  server_opts.env["MALLOC_CONF"] = "retain:false,dirty_decay_ms:0,muzzy_decay_ms:0";
  server_process server{db.url(), server_opts};
  undo_on_exit heal{[] { cluster().heal(); }};
  auto options = small_load("stops", workspaces);
  expected_store expected;
  expected.add(warm_up(server.port(), options), options);

  cluster().stop_immediate();
  auto big_options = options;
  big_options.text_bytes = big_text;
  std::vector<delivery> spooled{make_delivery(options, "big", {1})};
  const auto& big_answer = send_alone(server.port(), spooled[0], big_options, 30s);
  BOOST_TEST_REQUIRE(big_answer.status == 200,
                     "the large delivery during the outage: " << describe(big_answer));
  auto big_record = static_cast<uint64_t>(metric_of(server.port(), "kapso_spool_bytes"));
  for (size_t n = 0; n < 3; ++n) {
    spooled.push_back(make_delivery(options, "small" + std::to_string(n), {2 + n}));
    const auto& answer = send_alone(server.port(), spooled.back(), options);
    BOOST_TEST_REQUIRE(answer.status == 200, "a small delivery during the outage: "
                                               << describe(answer));
  }
  BOOST_TEST_REQUIRE(metric_of(server.port(), "kapso_spool_records") == 4.0,
                     "the four deliveries are not four records in the spool");

  auto pid = server.pid();
  rlimit limit{};
  // Room for the large record's payload, not for it and a copy of its text.
  auto headroom = big_record + big_text / 2;
  limit.rlim_cur = limit.rlim_max = address_space_bytes(pid) + headroom;
  BOOST_TEST_MESSAGE("[fault] large record " << big_record / 1024 << " KiB; address space "
                                             << address_space_bytes(pid) / 1024 << " KiB, "
                                             << "limited to " << limit.rlim_cur / 1024 << " KiB");
  BOOST_TEST_REQUIRE(::prlimit(pid, RLIMIT_AS, &limit, nullptr) == 0,
                     "prlimit(RLIMIT_AS) on the server: " << std::strerror(errno));
  load_driver load{server.port(), options};
  auto limited = clock_type::now();
  load.start();
  auto exit = server.wait_exit(30s);
  load.stop();
  if (!exit.exited)
    server.kill_hard();
  BOOST_TEST_MESSAGE("[fault] exit " << ms_since(limited) << " ms after the limit");
  auto log = whole_log(server);
  BOOST_TEST(exit.exited, "the server did not exit within 30 s of the limit:\n"
                            << server.log_tail(30));
  BOOST_TEST(exit.exit_code == 70, "exit code " << exit.exit_code << " (signal " << exit.signal
                                                << ")\n" << server.log_tail(30));
  BOOST_TEST(log.find("writer 0 stopped") != std::string::npos,
             "the log does not say which actor stopped:\n" << server.log_tail(30));
  BOOST_TEST(log.find("payload is not a valid batch") == std::string::npos,
             "a spooled record was taken for corrupt:\n" << server.log_tail(30));

  // What waited for the writer was answered 503: every request sent until
  // the process began to stop got an HTTP answer, and some were 503.
  auto summary = summarize(load.deliveries());
  BOOST_TEST_MESSAGE("[fault] writer stopped: " << summary.describe());
  check_answers(summary);
  BOOST_TEST(summary.by_status[503] > 0u, "no delivery was answered 503: "
                                            << summary.describe());
  size_t unanswered = 0;
  for (const auto& d : load.deliveries())
    for (const auto& a : d.attempts)
      if (a.status == 0 && a.error != http_error::kind::connect
          && a.sent + a.latency + 500ms < limited + exit.took)
        ++unanswered;
  BOOST_TEST(unanswered == 0u, unanswered << " requests got no HTTP answer before the exit: "
                                          << summary.describe());

  // systemd starts a fresh process on the same spool; Kapso re-sends.
  cluster().start();
  server.start(true);
  auto left = resend_unacknowledged(load.deliveries(), options, server.port(), 30s);
  BOOST_TEST(left == 0u, left << " deliveries not answered 200 by the fresh process");
  expected.add({spooled[0]}, big_options);
  expected.add({spooled.begin() + 1, spooled.end()}, options);
  expected.add(load.deliveries(), options);
  check_stored(db, expected, true, 60s);
}

// Row "SIGTERM": with deliveries waiting for a lock, /readyz answers 503 at
// once, new deliveries 503; a second SIGTERM ends the process at once, well
// before http.shutdown-timeout-ms; the next process serves Kapso's retries.
BOOST_AUTO_TEST_CASE(sigterm_makes_readyz_503_at_once_and_a_second_signal_exits_at_once,
                     *utf::timeout(120)) {
  constexpr auto shutdown_timeout = 20000ms;
  fault_database db;
  auto workspaces = db.workspaces(2);
  server_process server{
    db.url(), fault_server("sigterm-twice", {"--persistence.commit-timeout-ms=6500",
                                             "--http.request-timeout-ms=9500",
                                             "--http.shutdown-timeout-ms="
                                               + std::to_string(shutdown_timeout.count())})};
  auto options = small_load("twice", workspaces);
  options.threads = 4;
  options.max_deliveries_per_thread = 1;
  options.client_timeout = 15s;
  expected_store expected;
  expected.add(warm_up(server.port(), options), options);

  lock_holder locker{db};
  locker.exec("LOCK TABLE contacts, conversations, messages IN EXCLUSIVE MODE");
  load_driver load{server.port(), options};
  load.start();
  BOOST_TEST_REQUIRE(wait_for_lock_waiter(db, 10s), "no write of the server waits for the lock");
  BOOST_TEST_REQUIRE(eventually(
                       [&] {
                         return metric_of(server.port(), "kapso_in_flight_deliveries")
                                >= static_cast<double>(options.threads);
                       },
                       10s, 20ms),
                     "the deliveries are not all waiting in the server");
  http_client probe{server.port(), 5s};
  BOOST_TEST_REQUIRE(probe.get("/readyz").status == 200,
                     "/readyz is not 200 before the signal (the lock must not change it)");

  auto signalled = clock_type::now();
  BOOST_TEST_REQUIRE(::kill(server.pid(), SIGTERM) == 0);
  std::chrono::milliseconds to_503{-1};
  while (clock_type::now() - signalled < 2s) {
    http_client fresh{server.port(), 2s};
    if (fresh.get("/readyz").status == 503) {
      to_503 = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now()
                                                                     - signalled);
      break;
    }
  }
  BOOST_TEST(to_503.count() >= 0, "/readyz never answered 503 within 2 s of SIGTERM");
  BOOST_TEST(to_503.count() <= 200, "/readyz answered 503 only " << to_503.count()
                                                                 << " ms after SIGTERM");
  // Still draining: the waiting deliveries have no answer yet.
  BOOST_TEST(load.requests() == 0u, load.requests() << " waiting deliveries were answered");
  for (int n = 0; n < 5; ++n)
    BOOST_TEST(probe.get("/readyz").status == 503, "/readyz during the drain");
  auto late = make_delivery(options, "after-sigterm", {1});
  const auto& refused = send_alone(server.port(), late, options);
  BOOST_TEST(refused.status == 503, "a delivery after SIGTERM: " << describe(refused));

  auto exit = server.signal_and_wait(SIGTERM, 5s);
  BOOST_TEST(exit.exited, "still running 5 s after the second SIGTERM");
  if (!exit.exited)
    server.kill_hard();
  BOOST_TEST(exit.took.count() < 1000,
             "the second SIGTERM took " << exit.took.count() << " ms to end the process "
                                        << "(http.shutdown-timeout-ms "
                                        << shutdown_timeout.count() << ")");
  BOOST_TEST(exit.signal == 0, "killed by signal " << exit.signal);
  BOOST_TEST_MESSAGE("[fault] /readyz 503 " << to_503.count() << " ms after SIGTERM; exit "
                                            << exit.took.count()
                                            << " ms after the second one (code "
                                            << exit.exit_code << ")");
  locker.release();
  load.stop();
  auto summary = summarize(load.deliveries());
  BOOST_TEST_MESSAGE("[fault] SIGTERM twice: " << summary.describe());
  BOOST_TEST(summary.acknowledged_deliveries == 0u,
             "a delivery waiting for the lock was answered 200: " << summary.describe());

  server.start(true);
  auto left = resend_unacknowledged(load.deliveries(), options, server.port(), 30s);
  BOOST_TEST(left == 0u, left << " deliveries not answered 200 after the restart");
  std::vector<delivery> refused_after{late};
  left = resend_unacknowledged(refused_after, options, server.port(), 30s);
  BOOST_TEST(left == 0u, "the delivery refused after SIGTERM was not answered 200 later");
  expected.add(load.deliveries(), options);
  expected.add(refused_after, options);
  check_stored(db, expected, true);
}

// Rows "more than http.max-in-flight deliveries" and "unsigned or wrongly
// signed floods": whatever is refused at the door (503 "server busy", 401)
// leaves no row, now or after the spool is replayed.
BOOST_AUTO_TEST_CASE(deliveries_refused_over_the_bounds_or_unsigned_leave_no_rows,
                     *utf::timeout(120)) {
  fault_database db;
  auto workspaces = db.workspaces(2);
  server_process server{db.url(), fault_server("refused", {"--http.max-in-flight=2",
                                                           "--persistence.commit-timeout-ms=2000"})};
  auto options = small_load("busy", workspaces);
  options.threads = 8;
  options.pause = 5ms;
  expected_store expected;
  expected.add(warm_up(server.port(), options), options);

  // Two deliveries wait for a lock; every other one is over the bound.
  auto busy_before = metric_of(server.port(), "kapso_http_requests_total", {"code=\"503\""});
  load_driver load{server.port(), options};
  {
    lock_holder locker{db};
    locker.exec("LOCK TABLE contacts, conversations, messages IN EXCLUSIVE MODE");
    load.start();
    BOOST_TEST(eventually(
                 [&] {
                   return metric_of(server.port(), "kapso_http_requests_total",
                                    {"code=\"503\""})
                          >= busy_before + 50;
                 },
                 10s, 20ms),
               "fewer than 50 deliveries were answered 503 over http.max-in-flight=2");
  }
  auto acknowledged = load.acknowledged();
  BOOST_TEST(load.wait_acknowledged(acknowledged + 20, 15s), "no 200s after the lock");
  load.stop();

  std::vector<std::pair<std::string, std::string>> refused = refused_messages(load.deliveries(),
                                                                              options);
  BOOST_TEST(refused.size() > 0u, "no delivery was refused: " << summarize(load.deliveries())
                                                                  .describe());
  // Floods of unsigned and of wrongly signed deliveries of new messages.
  for (auto sign : {signing::none, signing::wrong_secret}) {
    auto flood = small_load(sign == signing::none ? "unsigned" : "wrongsig", workspaces);
    flood.sign = sign;
    // Refused at the door: by the signature, or (when a request arrives
    // before the previous one left the in-flight count) by the bound.
    flood.threads = 2;
    flood.pause = 0ms;
    flood.max_deliveries_per_thread = 100;
    load_driver flooding{server.port(), flood};
    flooding.start();
    BOOST_TEST(eventually([&] { return flooding.requests() >= 200; }, 30s),
               "the flood did not finish");
    flooding.stop();
    auto summary = summarize(flooding.deliveries());
    BOOST_TEST_MESSAGE("[fault] flood: " << summary.describe());
    BOOST_TEST(summary.by_status[401] * 2 >= summary.requests,
               "fewer than half of the flooded deliveries were answered 401: "
                 << summary.describe());
    auto more = refused_messages(flooding.deliveries(), flood);
    BOOST_TEST(more.size() == summary.messages,
               "not every flooded delivery was refused (401 or 503 server busy): "
                 << summary.describe());
    refused.insert(refused.end(), more.begin(), more.end());
  }

  // What was answered 200 is all there, the spool is replayed; then nothing
  // refused may be there.
  expected.add(load.deliveries(), options);
  check_stored(db, expected, false);
  BOOST_TEST(eventually([&] { return metric_of(server.port(), "kapso_spool_records") == 0.0; },
                        20s, 100ms),
             "the spool was not replayed");
  check_refused_not_stored(db, refused);
}

BOOST_AUTO_TEST_SUITE_END()
