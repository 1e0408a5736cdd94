// Test harness of the integration and fault tiers: scratch databases, server processes, a loopback HTTP client.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

namespace kapso_test {

using namespace std::chrono_literals;
using json = nlohmann::json;

// The global webhook secret every server gets unless a test says otherwise.
inline constexpr const char* global_secret = "itest-global-secret";
inline constexpr const char* webhook_path = "/api/webhook/kapso";

// -- environment ---------------------------------------------------------------

// KAPSO_TEST_DATABASE_URL; throws when unset so that tests fail instead of
// silently passing on a machine without PostgreSQL.
std::string admin_database_url();

// The server binary under test (KAPSO_BINARY_DIR "/kapso-ingest").
std::string server_binary();

// A fresh, empty directory under KAPSO_BINARY_DIR/test-tmp.
std::string make_temp_dir(std::string_view prefix);

// A loopback port nobody listens on right now.
uint16_t free_port();

// Unique within this test run and across concurrent runs (pid + counter).
std::string unique_suffix();

// Number of failed assertions / caught exceptions so far in this run; lets
// destructors decide whether a server log is worth printing.
size_t failures_so_far();

// Lowercase hex HMAC-SHA256 of `body` under `secret`. Computed with OpenSSL
// here rather than through kapso_core so a bug in the server's own HMAC
// cannot cancel itself out.
std::string sign(std::string_view body, std::string_view secret);

// Polls `condition` until it holds or `timeout` passes; true if it held.
bool eventually(const std::function<bool()>& condition,
                std::chrono::milliseconds timeout,
                std::chrono::milliseconds poll = 50ms);

// Runs body(0..n-1) on n threads released together; rethrows the first
// exception. Boost.Test assertions are not thread-safe: collect results in
// the threads and assert on the calling thread.
void run_concurrently(size_t n, const std::function<void(size_t)>& body);

// -- child processes -----------------------------------------------------------

// Environment changes for a child: a value sets the variable, nullopt unsets it.
using env_overrides = std::map<std::string, std::optional<std::string>>;

struct process_result {
  int exit_code = -1;   // -1 when killed by a signal or timed out
  bool timed_out = false;
  std::string output;   // stdout and stderr interleaved
};

// Runs any program to completion with `env` over the test's environment,
// from directory `cwd` ("" = the test-log directory); output is captured.
process_result run_program(const std::vector<std::string>& argv,
                           const env_overrides& env = {},
                           std::chrono::milliseconds timeout = 60s,
                           const std::string& cwd = {});

// Resident set size of process `pid` in KiB (VmRSS in /proc/<pid>/status);
// 0 when the process does not exist.
size_t rss_kib(int pid);

// Runs kapso-ingest with `args` to completion (CLI sub-commands). The child
// does not inherit DATABASE_URL / KAPSO_WEBHOOK_SECRET / KAPSO_VERIFY_TOKEN
// from the test's own environment; `env` adds what the test wants.
process_result run_cli(const std::vector<std::string>& args,
                       const env_overrides& env = {},
                       std::chrono::milliseconds timeout = 60s);

// -- database ------------------------------------------------------------------

// `url` with its database name replaced (URL or key=value conninfo).
std::string with_database(std::string_view url, std::string_view dbname);

struct workspace {
  std::string id;
  std::string phone_number_id;
  std::optional<std::string> secret;
};

// A fresh, uniquely named database, dropped (after terminating its backends)
// in the destructor. Every query opens its own connection, so a query made
// after an HTTP answer really is a separate session.
class test_database {
 public:
  // `admin_url` is a superuser URL of the cluster to create the database in
  // (default: admin_database_url()).
  explicit test_database(bool migrate = true, std::optional<std::string> admin_url = {});
  ~test_database();
  test_database(const test_database&) = delete;
  test_database& operator=(const test_database&) = delete;

  const std::string& name() const { return name_; }
  const std::string& url() const { return url_; }
  const std::string& admin_url() const { return admin_url_; }

  // `kapso-ingest migrate --persistence.database-url=...`; throws on failure.
  void migrate() const;

  template <class... Args>
  pqxx::result query(const std::string& sql, Args&&... args) const {
    pqxx::connection connection{url_};
    pqxx::work work{connection};
    auto result = work.exec_params(sql, std::forward<Args>(args)...);
    work.commit();
    return result;
  }

  // Runs a script of several statements in one transaction (no parameters).
  void exec_script(const std::string& sql) const {
    pqxx::connection connection{url_};
    pqxx::work work{connection};
    work.exec(sql);
    work.commit();
  }

  // First column of the first row as an integer (e.g. count(*)).
  template <class... Args>
  int64_t count(const std::string& sql, Args&&... args) const {
    auto result = query(sql, std::forward<Args>(args)...);
    return result.at(0).at(0).template as<int64_t>();
  }

  // First column of the first row; nullopt for SQL NULL or no row.
  template <class... Args>
  std::optional<std::string> value(const std::string& sql, Args&&... args) const {
    auto result = query(sql, std::forward<Args>(args)...);
    if (result.empty() || result[0][0].is_null())
      return std::nullopt;
    return std::string{result[0][0].c_str()};
  }

  // INSERT INTO workspaces(name, slug, kapso_phone_id, kapso_webhook_secret)
  // the way other applications do; an empty phone id picks a unique one.
  workspace insert_workspace(std::optional<std::string> secret = std::nullopt,
                             std::string phone_number_id = {}) const;

  // TRUNCATE every public table except the migrations record, CASCADE.
  void truncate_inbox() const;

  // Makes the database unreachable for everyone (the server included) and
  // back: ALTER DATABASE ... ALLOW_CONNECTIONS + pg_terminate_backend.
  void block_connections() const;
  void allow_connections() const;

 private:
  std::string admin_url_;
  std::string name_;
  std::string url_;
};

// -- server process ------------------------------------------------------------

struct server_options {
  std::vector<std::string> args;   // extra "--section.option=value" arguments
  env_overrides env;               // over DATABASE_URL + KAPSO_WEBHOOK_SECRET
  std::string ready_path = "/readyz"; // "/healthz" for unmigrated databases
  // nullopt: a private fresh spool dir (so tests never replay each other's
  // spools); a value is passed as --spool.dir=<value> ("" disables the spool).
  std::optional<std::string> spool_dir;
  std::string name = "server";     // log file prefix
  std::string command = "serve";   // "" runs the bare default command
  // Resource limits set in the child before exec (soft = hard). With a file
  // size limit SIGXFSZ is ignored in the child, so a write past it fails
  // with EFBIG the way a full disk fails with ENOSPC instead of killing it.
  std::optional<uint64_t> rlimit_nofile = std::nullopt;
  std::optional<uint64_t> rlimit_fsize = std::nullopt;
  std::chrono::milliseconds ready_timeout = 20s;
};

// How a server process ended after a signal.
struct exit_status {
  bool exited = false;          // false: still running when the wait ended
  int exit_code = -1;           // when exited normally
  int signal = 0;               // when killed by a signal
  std::chrono::milliseconds took{0}; // from the signal to the exit
};

// kapso-ingest serving on a free loopback port; output goes to a log file
// under KAPSO_BINARY_DIR/test-logs. Start it and stop it from the main test
// thread only (the child dies with the thread that forked it).
class server_process {
 public:
  server_process(std::string database_url, server_options options = {});
  ~server_process();
  server_process(const server_process&) = delete;
  server_process& operator=(const server_process&) = delete;

  // Forks a new process on a new free port (the previous one when
  // `same_port`, so clients keep their address across a restart) and waits
  // up to options.ready_timeout for `ready_path` to answer 200; throws with
  // the log tail otherwise.
  void start(bool same_port = false);

  // SIGTERM, then SIGKILL after `grace`; returns the exit code (-1: signal).
  int stop(std::chrono::milliseconds grace = 10s);

  // SIGKILL now and reap.
  void kill_hard();

  // Sends `signal` and waits up to `timeout` for the exit, measuring it; the
  // process is left running (exited == false) when it does not exit in time.
  exit_status signal_and_wait(int signal, std::chrono::milliseconds timeout);

  // Waits up to `timeout` for the process to exit by itself.
  exit_status wait_exit(std::chrono::milliseconds timeout);

  bool running();
  int pid() const { return pid_; }
  size_t rss_kib() const { return pid_ > 0 ? kapso_test::rss_kib(pid_) : 0; }
  uint16_t port() const { return port_; }
  const std::string& log_path() const { return log_path_; }
  const std::string& spool_dir() const { return spool_dir_; }
  std::string log_tail(size_t lines = 40) const;

 private:
  std::string database_url_;
  server_options options_;
  std::string log_path_;
  std::string spool_dir_;
  int pid_ = -1;
  uint16_t port_ = 0;
  size_t failures_at_start_ = 0;
};

// -- HTTP client ---------------------------------------------------------------

using header_list = std::vector<std::pair<std::string, std::string>>;

struct http_response {
  int status = 0;
  std::map<std::string, std::string> headers; // names lower-cased
  std::string body;

  std::string header(std::string_view name) const; // "" when absent
  json parsed() const;                             // throws with the body
};

// Why a request got no HTTP answer.
struct http_error : std::runtime_error {
  enum class kind {
    connect,    // no connection (refused, or timed out connecting)
    send,       // the request could not be written completely
    no_answer,  // written, then the connection closed or reset before an answer
    timeout,    // written, and no complete answer within the timeout
  };
  http_error(kind k, const std::string& what) : std::runtime_error(what), why(k) {}
  kind why;
};

// Blocking HTTP/1.1 over 127.0.0.1 with keep-alive; one per thread. Throws
// http_error when the server cannot be reached or does not answer within the
// timeout. A kept-alive connection the server closed before answering is
// retried once on a new connection, unless `retry_closed` is false (load
// drivers that must see every unanswered request).
class http_client {
 public:
  explicit http_client(uint16_t port, std::chrono::milliseconds timeout = 15s,
                       bool retry_closed = true);
  ~http_client();
  http_client(http_client&&) noexcept;
  http_client& operator=(http_client&&) noexcept;

  // Sends exactly the given headers (plus Host and Content-Length) and body.
  http_response request(std::string_view method, std::string_view target,
                        const header_list& headers = {}, std::string_view body = {});
  http_response get(std::string_view target, const header_list& headers = {}) {
    return request("GET", target, headers);
  }

  // A kept-alive connection is open (the next request reuses it).
  bool connected() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// -- webhook deliveries --------------------------------------------------------

struct delivery_counts {
  bool received = false;
  int64_t accepted = -1;
  int64_t duplicates = -1;
  int64_t ignored = -1;
};

// The counts of a 200 answer; throws when the body is not the expected JSON.
delivery_counts counts_of(const http_response& response);

// POSTs `body` as application/json with X-Webhook-Event (unless empty),
// X-Webhook-Payload-Version v2 and X-Webhook-Signature (unless no secret).
http_response post_webhook(http_client& client, const std::string& body,
                           const std::optional<std::string>& secret = global_secret,
                           const std::string& event_type = "whatsapp.message.received",
                           const header_list& extra = {});

// The same deliveries sent to two servers at the same moment, `threads`
// senders at a time: what each server answered to each delivery.
struct twin_answer {
  int status = 0;
  delivery_counts counts; // of a 200
  std::string body;
};
struct twin_answers {
  std::vector<twin_answer> first, second;
};
twin_answers send_to_both(uint16_t first_port, uint16_t second_port,
                          const std::vector<std::string>& bodies, size_t threads,
                          const std::optional<std::string>& secret = global_secret);

// Checks that both servers answered every delivery 200 and that exactly one
// of them accepted it; returns the counts summed over both.
delivery_counts check_accepted_by_one(const twin_answers& answers);

// A Kapso v2 event as Kapso documents it (SPEC §3); fields left empty are
// left out of the payload.
struct kapso_message {
  std::string id;
  std::string phone_number_id;
  int64_t timestamp = 1730092801;
  std::string phone = "+15551234567";          // conversation.phone_number
  std::optional<std::string> contact_name = "Ana";
  std::string bsuid;                            // business_scoped_user_id
  std::string type = "text";
  std::string text = "Hola";                    // text.body for type text
  json type_object;                             // image/document/...: the object
  std::string media_url;                        // kapso.media_url
  std::string direction = "inbound";
  std::string status = "received";
  std::string origin = "cloud_api";
  json context;                                 // message.context when set
};

json kapso_event(const kapso_message& message);

// A text message from `phone` to workspace `ws`; other fields keep their defaults.
kapso_message text_message(const workspace& ws, std::string id, int64_t timestamp,
                           std::string text, std::string phone = "+15551234567");

// {"type": ..., "batch": true, "data": events}
json kapso_batch(const std::vector<json>& events,
                 const std::string& type = "whatsapp.message.received");

// Meta's raw webhook (Kapso forward) with one change carrying `value_fields`
// (messages / statuses / contacts) merged into the standard value.
json meta_forward(const std::string& phone_number_id, const json& value_fields);

json meta_text_message(const std::string& from, const std::string& id,
                       int64_t timestamp, const std::string& text);

// POSTs a Meta-forward body signed with X-Hub-Signature-256 only.
http_response post_meta(http_client& client, const std::string& body,
                        const std::string& secret = global_secret);

// -- suites --------------------------------------------------------------------

// Boost.Test builds a suite's fixture once for all its test cases; the
// suite's free helper functions reach it through current(). Derive the
// fixture from shared_suite<itself>.
template <class Suite>
class shared_suite {
 public:
  shared_suite() { instance_ = static_cast<Suite*>(this); }
  ~shared_suite() { instance_ = nullptr; }
  shared_suite(const shared_suite&) = delete;
  shared_suite& operator=(const shared_suite&) = delete;

  static Suite& current() {
    if (instance_ == nullptr)
      throw std::runtime_error("the suite's fixture is not set up");
    return *instance_;
  }

 private:
  static inline Suite* instance_ = nullptr;
};

// One migrated database and one server for a whole suite. Workspaces are
// created before the server starts so tests can take one each and post at
// once, without waiting for any workspace cache.
class inbox_fixture {
 public:
  explicit inbox_fixture(server_options options = {}, size_t workspaces = 40,
                         std::optional<std::string> workspace_secret = std::nullopt);

  workspace take_workspace();
  http_client client(std::chrono::milliseconds timeout = 15s) const {
    return http_client{server.port(), timeout};
  }

  // Declaration order is construction order: the pool exists before the
  // server starts, and the server stops before the database is dropped.
  test_database db;
  std::vector<workspace> pool;
  size_t next = 0;
  server_process server;
};

// A field as text for comparisons; "<NULL>" for SQL NULL.
inline std::string text(const pqxx::field& field) {
  return field.is_null() ? std::string{"<NULL>"} : std::string{field.c_str()};
}

// Total rows in contacts + conversations + messages of workspace `id`.
int64_t inbox_rows(const test_database& db, const std::string& workspace_id);

// The sum of every sample of `metric` whose labels contain all `labels`
// (e.g. {"result=\"accepted\""}) in Prometheus text; 0 when none.
double metric_sum(const std::string& exposition, const std::string& metric,
                  const std::vector<std::string>& labels = {});

} // namespace kapso_test

// Lets BOOST_TEST print query results (optional strings) when they differ.
namespace boost::test_tools::tt_detail {
template <>
struct print_log_value<std::optional<std::string>> {
  void operator()(std::ostream& out, const std::optional<std::string>& value) {
    if (value)
      out << '"' << *value << '"';
    else
      out << "nullopt";
  }
};
} // namespace boost::test_tools::tt_detail
