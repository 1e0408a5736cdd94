// SPEC §2 durability: ack-after-commit across kill -9, restart, spool during a database outage.
#include <atomic>
#include <memory>
#include <mutex>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"

using namespace kapso_test;

namespace {

std::string event_body(const workspace& ws, const std::string& id, int64_t timestamp,
                       const std::string& text = "durable") {
  return kapso_event(text_message(ws, id, timestamp, text)).dump();
}

int64_t rows_of_message(const test_database& db, const workspace& ws, const std::string& id) {
  return db.count("SELECT count(*) FROM messages WHERE workspace_id = $1::uuid "
                  "AND kapso_message_id = $2",
                  ws.id, id);
}

// The options of a server whose commits give up quickly so the spool (or the
// 503) comes well within Kapso's 10 s. Without a workspace cache, every
// delivery during an outage is routed by the directory's last known entries
// (what a cache older than its TTL falls back to).
server_options outage_options(std::string name, std::optional<std::string> spool_dir) {
  server_options options;
  options.args = {"--persistence.commit-timeout-ms=500", "--router.workspace-cache-ttl-ms=0"};
  options.spool_dir = std::move(spool_dir);
  options.name = std::move(name);
  return options;
}

// Posts once so the server has seen the workspace, then cuts the database
// off until the server notices (/readyz 503): a real outage, not a blip.
void warm_then_block(const test_database& db, server_process& server, const workspace& ws) {
  http_client client{server.port()};
  auto warm = post_webhook(client, event_body(ws, "wamid.warm", 1730000000, "warm"));
  BOOST_TEST_REQUIRE(warm.status == 200, warm.body);
  db.block_connections();
  BOOST_TEST_REQUIRE(eventually([&] { return client.get("/readyz").status == 503; }, 10s, 100ms),
                     "/readyz not 503 while the database is unreachable");
}

// True once the server's spool is empty again and it has replayed at least
// `events` events: nothing is left that could be stored twice later.
bool spool_replayed(server_process& server, double events, std::chrono::milliseconds timeout) {
  http_client client{server.port(), 5s};
  return eventually(
    [&] {
      auto metrics = client.get("/metrics").body;
      return metric_sum(metrics, "kapso_spool_records") == 0.0
             && metric_sum(metrics, "kapso_replayed_events_total") >= events;
    },
    timeout, 100ms);
}

} // namespace

BOOST_AUTO_TEST_SUITE(durability)

BOOST_AUTO_TEST_CASE(kill_9_right_after_200_loses_nothing) {
  test_database db;
  auto ws = db.insert_workspace();
  server_process server{db.url(), server_options{{}, {}, "/readyz", std::nullopt, "kill9"}};
  std::vector<std::string> acknowledged;
  for (int round = 0; round < 3; ++round) {
    std::mutex mutex;
    std::atomic<int> acks{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> senders;
    auto port = server.port();
    for (int t = 0; t < 5; ++t)
      senders.emplace_back([&, t] {
        try {
          http_client client{port, 5s};
          for (int i = 0; i < 200 && !stop.load(); ++i) {
            auto id = "wamid.kill." + std::to_string(round) + "." + std::to_string(t) + "."
                      + std::to_string(i);
            auto response = post_webhook(
              client, event_body(ws, id, 1730000000 + round * 1000 + t * 200 + i));
            if (response.status == 200 && counts_of(response).accepted == 1) {
              std::lock_guard<std::mutex> guard{mutex};
              acknowledged.push_back(id);
              ++acks;
            }
          }
        } catch (const std::exception&) {
          // The server died under us: expected.
        }
      });
    // Kill while requests are in flight, right after some were acknowledged.
    eventually([&] { return acks.load() >= 10; }, 20s, 1ms);
    server.kill_hard();
    stop = true;
    for (auto& s : senders)
      s.join();
    BOOST_TEST(acks.load() >= 10, "round " << round << ": only " << acks.load() << " acks");

    std::vector<std::string> lost;
    for (auto& id : acknowledged)
      if (rows_of_message(db, ws, id) != 1)
        lost.push_back(id);
    BOOST_TEST(lost.empty(), lost.size() << " acknowledged messages lost, e.g. "
                                         << (lost.empty() ? "" : lost.front()));
    server.start();
  }
  auto stored = db.count("SELECT count(*) FROM messages WHERE workspace_id = $1::uuid", ws.id);
  // Unread counts exactly the inserted messages, whatever the crashes interrupted.
  BOOST_TEST(db.count("SELECT unread_count FROM conversations WHERE workspace_id = $1::uuid", ws.id)
             == stored);

  // The restarted server works and remembers what was stored before.
  http_client client{server.port()};
  auto again = post_webhook(client, event_body(ws, acknowledged.front(), 1730000000));
  BOOST_TEST_REQUIRE(again.status == 200, again.body);
  BOOST_TEST(counts_of(again).duplicates == 1, again.body);
  auto fresh = post_webhook(client, event_body(ws, "wamid.kill.after", 1730009999));
  BOOST_TEST_REQUIRE(fresh.status == 200, fresh.body);
  BOOST_TEST(counts_of(fresh).accepted == 1, fresh.body);

  // SIGTERM is a clean shutdown.
  BOOST_TEST(server.stop(10s) == 0, "exit code after SIGTERM");
}

BOOST_AUTO_TEST_CASE(outage_is_spooled_and_replayed_in_order_once) {
  test_database db;
  auto ws = db.insert_workspace();
  server_process server{db.url(), outage_options("spool", std::nullopt)};
  warm_then_block(db, server, ws);

  http_client client{server.port(), 10s};
  BOOST_TEST(eventually([&] { return client.get("/readyz").status == 503; }, 10s, 200ms),
             "/readyz not 503 while the database is unreachable");
  std::vector<std::string> bodies{event_body(ws, "wamid.spool.1", 1730000101, "first"),
                                  event_body(ws, "wamid.spool.2", 1730000102, "second"),
                                  event_body(ws, "wamid.spool.3", 1730000103, "third")};
  bodies.push_back(bodies[1]); // Kapso's retry of the second one
  for (size_t i = 0; i < bodies.size(); ++i) {
    auto started = std::chrono::steady_clock::now();
    auto response = post_webhook(client, bodies[i]);
    auto took_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - started)
                     .count();
    BOOST_TEST(response.status == 200, "delivery " << i << " during the outage: "
                                                   << response.status << " " << response.body);
    BOOST_TEST(took_ms < 10000);
  }
  auto metrics = client.get("/metrics");
  BOOST_TEST(metric_sum(metrics.body, "kapso_spool_bytes") > 0.0, metrics.body);

  db.allow_connections();
  auto replayed = eventually(
    [&] {
      return db.count("SELECT count(*) FROM messages WHERE workspace_id = $1::uuid "
                      "AND kapso_message_id LIKE 'wamid.spool.%'",
                      ws.id)
             == 3;
    },
    15s, 200ms);
  BOOST_TEST_REQUIRE(replayed, "spooled messages not in the database 15 s after it came back");
  // Counted exactly once the spool is empty: no replay is left to double them.
  BOOST_TEST_REQUIRE(spool_replayed(server, 4, 15s), "the spool was not emptied by the replay");
  for (auto id : {"wamid.spool.1", "wamid.spool.2", "wamid.spool.3"})
    BOOST_TEST(rows_of_message(db, ws, id) == 1, id);
  // In order: the spool is replayed in the order the deliveries were
  // answered, several records to a transaction, so the rows' creating
  // transactions (xmin) and, within one, their places in the heap of this
  // test's own table follow the sending order. (Their timestamps rise too,
  // but nothing derived from timestamps depends on the order of writes.)
  std::vector<std::string> replay_order;
  for (const auto& row : db.query("SELECT kapso_message_id FROM messages "
                                  "WHERE workspace_id = $1::uuid "
                                  "AND kapso_message_id LIKE 'wamid.spool.%' "
                                  "ORDER BY xmin::text::bigint, ctid",
                                  ws.id))
    replay_order.push_back(row[0].c_str());
  BOOST_TEST(replay_order == (std::vector<std::string>{"wamid.spool.1", "wamid.spool.2",
                                                        "wamid.spool.3"}),
             boost::test_tools::per_element());
  BOOST_TEST(db.value("SELECT unread_count || '|' || last_message_preview || '|' "
                      "|| extract(epoch FROM last_message_at)::bigint FROM conversations "
                      "WHERE workspace_id = $1::uuid",
                      ws.id)
             == std::optional<std::string>{"4|third|1730000103"});
  BOOST_TEST(db.value("SELECT extract(epoch FROM created_at)::bigint::text FROM messages "
                      "WHERE workspace_id = $1::uuid AND kapso_message_id = 'wamid.spool.1'",
                      ws.id)
             == std::optional<std::string>{"1730000101"});
  BOOST_TEST(eventually([&] { return client.get("/readyz").status == 200; }, 10s, 200ms));
  auto retry = post_webhook(client, bodies[0]);
  BOOST_TEST_REQUIRE(retry.status == 200, retry.body);
  BOOST_TEST(counts_of(retry).duplicates == 1, retry.body);
}

BOOST_AUTO_TEST_CASE(spool_is_replayed_after_a_restart) {
  test_database db;
  auto ws = db.insert_workspace();
  auto spool = make_temp_dir("spool-restart");
  server_process crashed{db.url(), outage_options("spool-crash", spool)};
  warm_then_block(db, crashed, ws);
  http_client client{crashed.port(), 10s};
  auto response = post_webhook(client, event_body(ws, "wamid.restart.1", 1730000201, "kept"));
  BOOST_TEST_REQUIRE(response.status == 200, response.body);
  crashed.kill_hard();
  db.allow_connections();

  server_process restarted{db.url(), outage_options("spool-restart", spool)};
  auto replayed = eventually([&] { return rows_of_message(db, ws, "wamid.restart.1") >= 1; }, 15s,
                             200ms);
  BOOST_TEST_REQUIRE(replayed, "spooled message not replayed 15 s after the restart");
  BOOST_TEST_REQUIRE(spool_replayed(restarted, 1, 15s), "the spool was not emptied by the replay");
  BOOST_TEST(rows_of_message(db, ws, "wamid.restart.1") == 1);
  BOOST_TEST(db.value("SELECT unread_count || '|' || last_message_preview FROM conversations "
                      "WHERE workspace_id = $1::uuid",
                      ws.id)
             == std::optional<std::string>{"2|kept"});
}

BOOST_AUTO_TEST_CASE(outage_without_spool_is_503_and_writes_nothing_later) {
  test_database db;
  auto ws = db.insert_workspace();
  server_process server{db.url(), outage_options("nospool", std::string{})};
  warm_then_block(db, server, ws);
  http_client client{server.port(), 10s};
  auto body = event_body(ws, "wamid.nospool.1", 1730000301, "retry me");
  auto response = post_webhook(client, body);
  BOOST_TEST(response.status == 503, response.body);
  BOOST_TEST(!response.header("retry-after").empty(), "503 without Retry-After");

  db.allow_connections();
  // Once the server writes again, a delivery to the same conversation (the
  // same writer, behind anything it still held) is committed (re-sent, as
  // Kapso would, until the writer has reconnected).
  BOOST_TEST_REQUIRE(eventually([&] { return client.get("/readyz").status == 200; }, 10s, 200ms));
  http_response later;
  BOOST_TEST_REQUIRE(eventually(
                       [&] {
                         later = post_webhook(client, event_body(ws, "wamid.nospool.later",
                                                                 1730000302, "later"));
                         return later.status == 200;
                       },
                       10s, 200ms),
                     later.body);
  BOOST_TEST(rows_of_message(db, ws, "wamid.nospool.1") == 0,
             "a delivery answered 503 was written later");
  BOOST_TEST(db.value("SELECT unread_count::text FROM conversations WHERE workspace_id = $1::uuid",
                      ws.id)
             == std::optional<std::string>{"2"});

  // Kapso's retry after the outage goes through normally, as a new message.
  auto retry = post_webhook(client, body);
  BOOST_TEST_REQUIRE(retry.status == 200, retry.body);
  BOOST_TEST(counts_of(retry).accepted == 1, retry.body);
}

BOOST_AUTO_TEST_CASE(over_the_in_flight_limit_is_503_with_retry_after) {
  test_database db;
  auto ws = db.insert_workspace();
  // One delivery in flight at most. A database that hangs (tables locked by
  // another session) keeps the first one waiting for its commit timeout, so
  // a second one arriving meanwhile is over the limit. (An unreachable
  // database fails fast and is spooled at once: no use here.)
  server_options options;
  options.name = "inflight";
  options.args = {"--http.max-in-flight=1", "--persistence.commit-timeout-ms=3000"};
  server_process server{db.url(), options};
  http_client client{server.port(), 10s};
  auto warm = post_webhook(client, event_body(ws, "wamid.warm", 1730000000, "warm"));
  BOOST_TEST_REQUIRE(warm.status == 200, warm.body);

  pqxx::connection locker{db.url()};
  auto lock = std::make_unique<pqxx::work>(locker);
  lock->exec("LOCK TABLE contacts, conversations, messages IN ACCESS EXCLUSIVE MODE");

  http_response first;
  std::string first_error;
  auto port = server.port();
  std::thread slow{[&] {
    try {
      http_client own{port, 10s};
      first = post_webhook(own, event_body(ws, "wamid.inflight.1", 1730000401, "first"));
    } catch (const std::exception& e) {
      first_error = e.what();
    }
  }};
  // The first delivery is in flight once its write waits for the lock.
  BOOST_TEST(eventually(
               [&] {
                 return db.count("SELECT count(*) FROM pg_stat_activity "
                                 "WHERE datname = current_database() AND wait_event_type = 'Lock'")
                        > 0;
               },
               5s, 20ms),
             "the first delivery's write never waited for the lock");
  auto second = post_webhook(client, event_body(ws, "wamid.inflight.2", 1730000402, "second"));
  slow.join();
  lock->abort();
  lock.reset();
  BOOST_TEST(second.status == 503, second.body);
  BOOST_TEST(!second.header("retry-after").empty(), "503 without Retry-After");
  BOOST_TEST(first_error.empty(), first_error);
  BOOST_TEST(first.status == 200, first.body);

  BOOST_TEST(second.body.find("server busy") != std::string::npos, second.body);
  BOOST_TEST(eventually([&] { return rows_of_message(db, ws, "wamid.inflight.1") == 1; }, 15s,
                        200ms),
             "the acknowledged first delivery is not in the database");
  // Refused before the pipeline, the second one has nothing left to write.
  BOOST_TEST(rows_of_message(db, ws, "wamid.inflight.1") == 1);
  BOOST_TEST(rows_of_message(db, ws, "wamid.inflight.2") == 0,
             "a delivery answered 503 was written anyway");
}

BOOST_AUTO_TEST_CASE(full_spool_is_503_and_writes_nothing_later) {
  test_database db;
  auto ws = db.insert_workspace();
  auto options = outage_options("spoolfull", std::nullopt);
  options.args.push_back("--spool.max-bytes=16"); // smaller than any delivery
  server_process server{db.url(), options};
  warm_then_block(db, server, ws);
  http_client client{server.port(), 10s};
  auto response = post_webhook(client, event_body(ws, "wamid.full.1", 1730000501, "no room"));
  BOOST_TEST(response.status == 503, response.body);
  BOOST_TEST(!response.header("retry-after").empty(), "503 without Retry-After");
  db.allow_connections();
  // Once the server writes again, a later delivery to the same conversation
  // is committed (re-sent until the writer has reconnected): whatever the
  // writer held before it is done.
  BOOST_TEST_REQUIRE(eventually([&] { return client.get("/readyz").status == 200; }, 10s, 200ms));
  http_response later;
  BOOST_TEST_REQUIRE(eventually(
                       [&] {
                         later = post_webhook(client, event_body(ws, "wamid.full.later",
                                                                 1730000502, "later"));
                         return later.status == 200;
                       },
                       10s, 200ms),
                     later.body);
  BOOST_TEST(rows_of_message(db, ws, "wamid.full.1") == 0,
             "a delivery answered 503 was written later");
}

BOOST_AUTO_TEST_SUITE_END()
