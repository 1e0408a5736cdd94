// One PostgreSQL connection driven through libpq's non-blocking API, so that
// every call has a client-side deadline: a database that accepts and never
// answers costs a caller at most its deadline, never a blocked thread.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct pg_conn;
struct pg_result;

namespace kapso {

using pg_clock = std::chrono::steady_clock;
using pg_deadline = pg_clock::time_point;

// A failed database call. `sqlstate` is PostgreSQL's error code when the
// server answered with an error, empty when the connection itself failed.
class db_error : public std::runtime_error {
public:
  db_error(std::string sqlstate, const std::string& message, bool connection_lost);

  const std::string& sqlstate() const noexcept { return sqlstate_; }
  // The session is closed: its transaction (if any) is gone, committed or not.
  bool connection_lost() const noexcept { return connection_lost_; }

private:
  std::string sqlstate_;
  bool connection_lost_;
};

// The deadline passed before the server answered. The connection was
// dropped, so whatever the call was doing may or may not have happened.
class db_timeout : public db_error {
public:
  explicit db_timeout(const std::string& what);
};

// The rows of one statement, as text.
class pg_rows {
public:
  pg_rows() = default;
  explicit pg_rows(::pg_result* result) noexcept;
  ~pg_rows();
  pg_rows(pg_rows&& other) noexcept;
  pg_rows& operator=(pg_rows&& other) noexcept;
  pg_rows(const pg_rows&) = delete;
  pg_rows& operator=(const pg_rows&) = delete;

  size_t size() const noexcept;
  bool empty() const noexcept { return size() == 0; }
  bool is_null(size_t row, size_t column) const noexcept;
  std::string_view text(size_t row, size_t column) const noexcept; // "" for NULL
  bool boolean(size_t row, size_t column) const noexcept;           // 't'
  int64_t integer(size_t row, size_t column) const;

private:
  ::pg_result* result_ = nullptr;
};

// A parameter in text format; nullopt is SQL NULL.
using pg_param = std::optional<std::string_view>;

// The statements of one transaction, sent together and answered together:
// one network round trip however many there are. A statement sees what the
// ones before it wrote; an error in any rolls all of them back.
class pg_pipeline {
public:
  // A prepared statement whose parameters are all in PostgreSQL's binary
  // format (e.g. arrays built by pg_array); returns its index in the answer.
  size_t add(const std::string& prepared, std::vector<std::string> binary_params);

  bool empty() const noexcept { return calls_.empty(); }
  size_t size() const noexcept { return calls_.size(); }

private:
  friend class pg_session;
  struct call {
    const std::string* name;
    std::vector<std::string> params;
  };
  std::vector<call> calls_;
};

struct pg_session_options {
  std::string conninfo; // URL or key=value string; several hosts are fine
  std::chrono::milliseconds statement_timeout{2000}; // server side
  std::chrono::milliseconds lock_timeout{0};         // server side; 0 = the server's default
  std::chrono::milliseconds connect_timeout{1000};   // one connection attempt
  std::string application_name = "kapso-ingest";
};

class pg_session {
public:
  explicit pg_session(pg_session_options options);
  ~pg_session();
  pg_session(const pg_session&) = delete;
  pg_session& operator=(const pg_session&) = delete;

  // A statement prepared on every (re)connection.
  void add_prepared(std::string name, std::string sql);

  bool connected() const noexcept;

  // Connects (if needed), sets the session up and prepares the statements,
  // all before `deadline`. Throws db_error / db_timeout.
  void connect(pg_deadline deadline);

  // Connects if needed within the connection budget: connect_timeout for
  // one host, bounded by the caller's `deadline`; with several hosts (a
  // failover URL) each host gets its own connect_timeout, so that a host
  // that accepts and never answers cannot hide the next one, and the budget
  // covers all of them whatever the caller's deadline. Returns the
  // deadline for the call's statements: after a fresh connection the call
  // gets its whole allowance again, so a slow connect is not followed by a
  // statement that has no time left (and a connection dropped again).
  pg_deadline connect_within_budget(pg_deadline deadline);

  // Drops the connection without waiting for anything.
  void close() noexcept;

  // Runs a prepared statement. Throws db_error / db_timeout; on a timeout or
  // a lost connection the session is closed.
  pg_rows exec_prepared(const std::string& name, const std::vector<pg_param>& params,
                        pg_deadline deadline);

  // Runs one or more SQL statements without parameters; the rows of the last.
  pg_rows exec(const std::string& sql, pg_deadline deadline);

  // Runs one statement with text parameters, unprepared (for statements run
  // once, or on tables that may not exist when the session connects).
  pg_rows exec_params(const std::string& sql, const std::vector<pg_param>& params,
                      pg_deadline deadline);

  // Runs `pipeline` as one transaction (committed when this returns); the
  // rows of each statement, in order. Throws the first statement's error
  // (nothing committed then) or db_timeout (outcome unknown).
  std::vector<pg_rows> run(const pg_pipeline& pipeline, pg_deadline deadline);

private:
  struct host {
    std::string name;    // host=
    std::string address; // hostaddr=
    std::string port;
  };
  static std::vector<host> hosts_of(const std::string& conninfo);
  void connect_to_(const host* only, pg_deadline deadline);
  void set_up_(pg_deadline deadline);
  void wait_for_result_(pg_deadline deadline, const char* what);
  pg_rows collect_(pg_deadline deadline, const char* what);
  [[noreturn]] void fail_connection_(const std::string& what);
  void poll_(bool for_write, pg_deadline deadline, const char* what);

  pg_session_options options_;
  std::vector<host> hosts_;   // of a failover URL; empty for one host
  size_t preferred_host_ = 0; // the one that worked last
  std::vector<std::pair<std::string, std::string>> prepared_;
  ::pg_conn* conn_ = nullptr;
};

// An explicit transaction on a session, for work whose later statements
// depend on what earlier ones answered (pipelines run inside it do not
// commit): rolled back unless committed. A session that cannot roll back
// in time is closed; the server then aborts the transaction itself.
class pg_transaction {
public:
  pg_transaction(pg_session& session, pg_deadline deadline);
  ~pg_transaction();
  pg_transaction(const pg_transaction&) = delete;
  pg_transaction& operator=(const pg_transaction&) = delete;

  void commit();

private:
  pg_session& session_;
  pg_deadline deadline_;
  bool done_ = false;
};

} // namespace kapso
