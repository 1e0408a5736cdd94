// libpq in non-blocking mode: every wait is a poll() bounded by the caller's
// deadline. libpqxx 6 offers no deadline for a call in progress, and a
// blocked writer cannot spool.
#include "persistence/pg_session.hpp"

#include <poll.h>

#include <cerrno>
#include <algorithm>
#include <cstdlib>
#include <string>

#include <libpq-fe.h>

namespace kapso {

namespace {

// TCP keepalive probes find a peer that vanished without a FIN (a dead
// machine, a cut network) while a connection is idle; tcp_user_timeout does
// the same for unacknowledged writes. The call's deadline covers the rest.
constexpr const char* keepalives_idle_s = "5";
constexpr const char* keepalives_interval_s = "2";
constexpr const char* keepalives_count = "3";
constexpr const char* tcp_user_timeout_ms = "10000";

int remaining_ms(pg_deadline deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - pg_clock::now());
  if (left.count() <= 0)
    return 0;
  return left.count() > 60000 ? 60000 : static_cast<int>(left.count());
}

std::string connection_message(PGconn* conn) {
  std::string message = conn != nullptr ? PQerrorMessage(conn) : "out of memory";
  while (!message.empty() && (message.back() == '\n' || message.back() == ' '))
    message.pop_back();
  return message.empty() ? std::string{"connection lost"} : message;
}

} // namespace

db_error::db_error(std::string sqlstate, const std::string& message, bool connection_lost)
  : std::runtime_error(message), sqlstate_(std::move(sqlstate)),
    connection_lost_(connection_lost) {
}

db_timeout::db_timeout(const std::string& what) : db_error({}, what, true) {
}

// -- pg_rows ---------------------------------------------------------------------

pg_rows::pg_rows(PGresult* result) noexcept : result_(result) {
}

pg_rows::~pg_rows() {
  if (result_ != nullptr)
    PQclear(result_);
}

pg_rows::pg_rows(pg_rows&& other) noexcept : result_(other.result_) {
  other.result_ = nullptr;
}

pg_rows& pg_rows::operator=(pg_rows&& other) noexcept {
  if (this != &other) {
    if (result_ != nullptr)
      PQclear(result_);
    result_ = other.result_;
    other.result_ = nullptr;
  }
  return *this;
}

size_t pg_rows::size() const noexcept {
  return result_ == nullptr ? 0 : static_cast<size_t>(PQntuples(result_));
}

bool pg_rows::is_null(size_t row, size_t column) const noexcept {
  return PQgetisnull(result_, static_cast<int>(row), static_cast<int>(column)) != 0;
}

std::string_view pg_rows::text(size_t row, size_t column) const noexcept {
  auto r = static_cast<int>(row);
  auto c = static_cast<int>(column);
  return {PQgetvalue(result_, r, c), static_cast<size_t>(PQgetlength(result_, r, c))};
}

bool pg_rows::boolean(size_t row, size_t column) const noexcept {
  auto value = text(row, column);
  return !value.empty() && value[0] == 't';
}

int64_t pg_rows::integer(size_t row, size_t column) const {
  return std::stoll(std::string{text(row, column)});
}

// -- pg_session -------------------------------------------------------------------

namespace {

std::vector<std::string> split_commas(const char* list) {
  std::vector<std::string> out;
  if (list == nullptr || *list == '\0')
    return out;
  std::string_view rest{list};
  for (;;) {
    auto comma = rest.find(',');
    out.emplace_back(rest.substr(0, comma));
    if (comma == std::string_view::npos)
      return out;
    rest.remove_prefix(comma + 1);
  }
}

} // namespace

// The hosts a conninfo names (host=a,b / hostaddr=... / port=p or p1,p2, or
// postgresql://a:p1,b:p2/...), one entry per host; empty for one host.
std::vector<pg_session::host> pg_session::hosts_of(const std::string& conninfo) {
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(conninfo.c_str(), &error);
  if (error != nullptr)
    PQfreemem(error);
  if (parsed == nullptr)
    return {};
  std::vector<std::string> names, addrs, ports;
  for (auto* o = parsed; o->keyword != nullptr; ++o) {
    std::string_view keyword{o->keyword};
    if (keyword == "host")
      names = split_commas(o->val);
    else if (keyword == "hostaddr")
      addrs = split_commas(o->val);
    else if (keyword == "port")
      ports = split_commas(o->val);
  }
  PQconninfoFree(parsed);
  auto count = std::max(names.size(), addrs.size());
  std::vector<host> out;
  if (count <= 1)
    return out;
  for (size_t i = 0; i < count; ++i) {
    host h;
    h.name = i < names.size() ? names[i] : std::string{};
    h.address = i < addrs.size() ? addrs[i] : std::string{};
    // One port applies to every host.
    h.port = ports.size() == 1 ? ports[0] : i < ports.size() ? ports[i] : std::string{};
    out.push_back(std::move(h));
  }
  return out;
}

pg_session::pg_session(pg_session_options options)
  : options_(std::move(options)), hosts_(hosts_of(options_.conninfo)) {
}

pg_deadline pg_session::connect_within_budget(pg_deadline deadline) {
  if (connected())
    return deadline;
  auto started = pg_clock::now();
  if (hosts_.empty())
    connect(std::min(deadline, started + options_.connect_timeout));
  else
    connect(started + options_.connect_timeout * static_cast<int64_t>(hosts_.size())
            + std::chrono::milliseconds(250));
  return std::max(deadline, pg_clock::now() + (deadline - started));
}

pg_session::~pg_session() {
  close();
}

void pg_session::add_prepared(std::string name, std::string sql) {
  prepared_.emplace_back(std::move(name), std::move(sql));
}

bool pg_session::connected() const noexcept {
  return conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK;
}

void pg_session::close() noexcept {
  if (conn_ != nullptr) {
    // Non-blocking: the goodbye message is sent if the socket takes it.
    PQfinish(conn_);
    conn_ = nullptr;
  }
}

void pg_session::fail_connection_(const std::string& what) {
  auto message = what + ": " + connection_message(conn_);
  close();
  throw db_error({}, message, true);
}

void pg_session::poll_(bool for_write, pg_deadline deadline, const char* what) {
  pollfd fd{};
  fd.fd = PQsocket(conn_);
  if (fd.fd < 0)
    fail_connection_(what);
  fd.events = static_cast<short>(for_write ? (POLLOUT | POLLIN) : POLLIN);
  for (;;) {
    int timeout = remaining_ms(deadline);
    if (timeout == 0) {
      close();
      throw db_timeout(std::string{what} + ": no answer from PostgreSQL before the deadline");
    }
    int n = ::poll(&fd, 1, timeout);
    if (n > 0)
      return;
    if (n < 0 && errno != EINTR)
      fail_connection_(what);
  }
}

void pg_session::connect(pg_deadline deadline) {
  if (connected())
    return;
  if (hosts_.empty()) {
    connect_to_(nullptr, deadline);
    return;
  }
  // A failover URL: libpq ignores connect_timeout on its non-blocking path,
  // so a host that accepts and never answers (a frozen machine) would hide
  // the next one. Each host gets its own attempt, connect_timeout long,
  // starting with the one that worked last; target_session_attrs still
  // applies to each.
  std::optional<db_error> last;
  for (size_t k = 0; k < hosts_.size(); ++k) {
    auto i = (preferred_host_ + k) % hosts_.size();
    try {
      connect_to_(&hosts_[i], std::min(deadline, pg_clock::now() + options_.connect_timeout));
      preferred_host_ = i;
      return;
    } catch (const db_error& e) {
      last = e;
      if (pg_clock::now() >= deadline)
        break;
    }
  }
  throw *last;
}

void pg_session::connect_to_(const host* only, pg_deadline deadline) {
  close();
  // Our settings come first and the caller's conninfo (URL or key=value,
  // target_session_attrs...) after them: expanded, its values win over
  // ours. One host of a failover URL is chosen by the entries after it.
  std::vector<const char*> keywords{"application_name", "keepalives", "keepalives_idle",
                                    "keepalives_interval", "keepalives_count",
                                    "tcp_user_timeout", "dbname"};
  std::vector<const char*> values{options_.application_name.c_str(), "1", keepalives_idle_s,
                                  keepalives_interval_s, keepalives_count, tcp_user_timeout_ms,
                                  options_.conninfo.c_str()};
  if (only != nullptr) {
    keywords.insert(keywords.end(), {"host", "hostaddr", "port"});
    values.insert(values.end(), {only->name.c_str(), only->address.c_str(), only->port.c_str()});
  }
  keywords.push_back(nullptr);
  values.push_back(nullptr);
  conn_ = PQconnectStartParams(keywords.data(), values.data(), 1);
  if (conn_ == nullptr || PQstatus(conn_) == CONNECTION_BAD)
    fail_connection_("connecting to PostgreSQL");
  for (;;) {
    auto state = PQconnectPoll(conn_);
    if (state == PGRES_POLLING_OK)
      break;
    if (state == PGRES_POLLING_FAILED)
      fail_connection_("connecting to PostgreSQL");
    poll_(state == PGRES_POLLING_WRITING, deadline, "connecting to PostgreSQL");
  }
  if (PQsetnonblocking(conn_, 1) != 0)
    fail_connection_("connecting to PostgreSQL");
  // Error messages end up in the log: PostgreSQL's DETAIL and CONTEXT lines
  // quote the failing row (message text, phone numbers), so only the
  // primary message is kept.
  PQsetErrorVerbosity(conn_, PQERRORS_TERSE);
  try {
    set_up_(deadline);
  } catch (...) {
    // A session without its settings or statements (a schema not migrated
    // yet) must not count as connected: the next call connects afresh.
    close();
    throw;
  }
}

void pg_session::set_up_(pg_deadline deadline) {
  // synchronous_commit is set here, whatever the cluster or database default:
  // a 200 promises that the rows survive a crash of the database server.
  std::string settings = "SET synchronous_commit = on; SET statement_timeout = "
                         + std::to_string(options_.statement_timeout.count());
  if (options_.lock_timeout.count() > 0)
    settings += "; SET lock_timeout = " + std::to_string(options_.lock_timeout.count());
  exec(settings, deadline);
  for (const auto& [name, sql] : prepared_) {
    if (PQsendPrepare(conn_, name.c_str(), sql.c_str(), 0, nullptr) != 1)
      fail_connection_("preparing " + name);
    collect_(deadline, "preparing a statement");
  }
}

void pg_session::wait_for_result_(pg_deadline deadline, const char* what) {
  // Send everything buffered, reading meanwhile so that a server that is
  // writing to us cannot deadlock the exchange.
  for (;;) {
    int flushed = PQflush(conn_);
    if (flushed == 0)
      break;
    if (flushed < 0)
      fail_connection_(what);
    poll_(true, deadline, what);
    if (PQconsumeInput(conn_) != 1)
      fail_connection_(what);
  }
  while (PQisBusy(conn_) != 0) {
    poll_(false, deadline, what);
    if (PQconsumeInput(conn_) != 1)
      fail_connection_(what);
  }
}

pg_rows pg_session::collect_(pg_deadline deadline, const char* what) {
  pg_rows last;
  std::optional<db_error> failure;
  for (;;) {
    wait_for_result_(deadline, what);
    PGresult* result = PQgetResult(conn_);
    if (result == nullptr)
      break;
    auto status = PQresultStatus(result);
    if (status == PGRES_FATAL_ERROR && !failure) {
      const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
      std::string message = PQresultErrorMessage(result);
      while (!message.empty() && (message.back() == '\n' || message.back() == ' '))
        message.pop_back();
      failure.emplace(state != nullptr ? state : "", message,
                      PQstatus(conn_) == CONNECTION_BAD);
    }
    last = pg_rows{result};
  }
  if (PQstatus(conn_) == CONNECTION_BAD) {
    if (failure) {
      close();
      throw db_error(failure->sqlstate(), failure->what(), true);
    }
    fail_connection_(what);
  }
  if (failure)
    throw *failure;
  return last;
}

// A call whose deadline passed before anything was sent fails without
// touching the connection: it stays usable for the next call.
void check_not_late(pg_deadline deadline, const std::string& what) {
  if (pg_clock::now() >= deadline)
    throw db_error({}, what + ": the deadline passed before it was sent", false);
}

namespace {

// Text parameters as libpq takes them: NUL-terminated copies, NULL for nullopt.
struct text_params {
  explicit text_params(const std::vector<pg_param>& params)
    : values(params.size(), nullptr), lengths(params.size(), 0) {
    owned.reserve(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      if (!params[i])
        continue;
      owned.emplace_back(*params[i]);
      values[i] = owned.back().c_str();
      lengths[i] = static_cast<int>(owned.back().size());
    }
  }
  text_params(const text_params&) = delete;
  text_params& operator=(const text_params&) = delete;
  int count() const { return static_cast<int>(values.size()); }

  std::vector<std::string> owned; // reserved: the pointers below stay valid
  std::vector<const char*> values;
  std::vector<int> lengths;
};

} // namespace

pg_rows pg_session::exec_prepared(const std::string& name, const std::vector<pg_param>& params,
                                  pg_deadline deadline) {
  connect(deadline);
  check_not_late(deadline, name);
  text_params text{params};
  if (PQsendQueryPrepared(conn_, name.c_str(), text.count(), text.values.data(),
                          text.lengths.data(), nullptr, 0)
      != 1)
    fail_connection_("sending " + name);
  return collect_(deadline, name.c_str());
}

pg_rows pg_session::exec_params(const std::string& sql, const std::vector<pg_param>& params,
                                pg_deadline deadline) {
  connect(deadline);
  check_not_late(deadline, "a query");
  text_params text{params};
  if (PQsendQueryParams(conn_, sql.c_str(), text.count(), nullptr, text.values.data(),
                        text.lengths.data(), nullptr, 0)
      != 1)
    fail_connection_("sending a query");
  return collect_(deadline, "a query");
}

size_t pg_pipeline::add(const std::string& prepared, std::vector<std::string> binary_params) {
  calls_.push_back(call{&prepared, std::move(binary_params)});
  return calls_.size() - 1;
}

std::vector<pg_rows> pg_session::run(const pg_pipeline& pipeline, pg_deadline deadline) {
  connect(deadline);
  check_not_late(deadline, "a pipeline");
  if (PQenterPipelineMode(conn_) != 1)
    fail_connection_("entering pipeline mode");
  std::vector<const char*> values;
  std::vector<int> lengths;
  std::vector<int> formats;
  for (const auto& c : pipeline.calls_) {
    values.clear();
    lengths.clear();
    for (const auto& p : c.params) {
      values.push_back(p.data());
      lengths.push_back(static_cast<int>(p.size()));
    }
    formats.assign(c.params.size(), 1);
    if (PQsendQueryPrepared(conn_, c.name->c_str(), static_cast<int>(c.params.size()),
                            values.data(), lengths.data(), formats.data(), 0)
        != 1)
      fail_connection_("sending " + *c.name);
  }
  // Sync ends the implicit transaction around the statements: COMMIT when
  // all succeeded, ROLLBACK otherwise.
  if (PQpipelineSync(conn_) != 1)
    fail_connection_("sending a pipeline");
  std::vector<pg_rows> answers;
  answers.reserve(pipeline.size());
  std::optional<db_error> failure;
  auto take_error = [&](PGresult* result) {
    if (failure)
      return;
    const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
    std::string message = PQresultErrorMessage(result);
    while (!message.empty() && (message.back() == '\n' || message.back() == ' '))
      message.pop_back();
    failure.emplace(state != nullptr ? state : "", message, false);
  };
  for (size_t i = 0; i < pipeline.size(); ++i) {
    pg_rows answer;
    for (;;) {
      wait_for_result_(deadline, "a pipeline");
      PGresult* result = PQgetResult(conn_);
      if (result == nullptr)
        break;
      if (PQresultStatus(result) == PGRES_FATAL_ERROR)
        take_error(result);
      answer = pg_rows{result};
    }
    answers.push_back(std::move(answer));
  }
  for (;;) {
    wait_for_result_(deadline, "a pipeline");
    PGresult* result = PQgetResult(conn_);
    if (result == nullptr)
      fail_connection_("a pipeline");
    auto status = PQresultStatus(result);
    PQclear(result);
    if (status == PGRES_PIPELINE_SYNC)
      break;
  }
  if (PQexitPipelineMode(conn_) != 1)
    fail_connection_("leaving pipeline mode");
  if (failure)
    throw *failure;
  return answers;
}

pg_rows pg_session::exec(const std::string& sql, pg_deadline deadline) {
  if (conn_ == nullptr)
    connect(deadline);
  check_not_late(deadline, "a query");
  if (PQsendQuery(conn_, sql.c_str()) != 1)
    fail_connection_("sending a query");
  return collect_(deadline, "a query");
}

pg_transaction::pg_transaction(pg_session& session, pg_deadline deadline)
  : session_(session), deadline_(deadline) {
  session_.exec("BEGIN", deadline_);
}

pg_transaction::~pg_transaction() {
  if (done_ || !session_.connected())
    return;
  // A little time of its own: the deadline may be what ended the work.
  constexpr auto rollback_grace = std::chrono::milliseconds(200);
  try {
    session_.exec("ROLLBACK", std::max(deadline_, pg_clock::now() + rollback_grace));
  } catch (const std::exception&) {
    session_.close();
  }
}

void pg_transaction::commit() {
  session_.exec("COMMIT", deadline_);
  done_ = true;
}

} // namespace kapso
