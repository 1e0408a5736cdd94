// Applies and checks the embedded SQL migrations, every call with a deadline.
#include "persistence/migrations.hpp"

#include <algorithm>
#include <set>
#include <stdexcept>
#include <string_view>
#include <thread>

#include <spdlog/spdlog.h>

#include "persistence/statements.hpp"

namespace kapso {

namespace {

constexpr std::string_view step_marker = "-- kapso:step ";

// A migration starts over, this many times at most, when a concurrent
// unique index build fails on a duplicate written while it ran (the route,
// still live, racing itself: each attempt merges what arrived meanwhile),
// when a step that takes an ACCESS EXCLUSIVE lock gave up waiting for it
// (0002 waits a few seconds at most: a waiting ACCESS EXCLUSIVE request
// queues every reader and writer of the table behind it), or when a step
// was chosen as a deadlock's victim.
constexpr int migration_attempts = 3;
constexpr auto lock_busy_pause = std::chrono::seconds(2);

// A failure after which the migration may start over (its steps are idempotent).
class restartable : public db_error {
public:
  restartable(const db_error& e, std::string why)
    : db_error(e.sqlstate(), e.what(), e.connection_lost()), why_(std::move(why)) {}
  const std::string& why() const noexcept { return why_; }

private:
  std::string why_;
};

step_kind kind_named(std::string_view name, const std::string& file) {
  if (name == "transaction")
    return step_kind::transaction;
  if (name == "concurrently")
    return step_kind::concurrently;
  if (name == "route-merge")
    return step_kind::route_merge;
  if (name == "route-recount")
    return step_kind::route_recount;
  throw std::invalid_argument(file + ": unknown step kind '" + std::string{name} + "'");
}

bool is_blank(std::string_view text) {
  return text.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

// Nothing but blank lines and comments: PostgreSQL would answer it with an
// empty result.
bool is_comment_only(std::string_view sql) {
  size_t at = 0;
  while (at < sql.size()) {
    auto end = std::min(sql.find('\n', at), sql.size());
    auto line = sql.substr(at, end - at);
    auto first = line.find_first_not_of(" \t\r");
    if (first != std::string_view::npos && line.compare(first, 2, "--") != 0)
      return false;
    at = end + 1;
  }
  return true;
}

std::set<std::string> applied_names(pg_session& session, pg_deadline deadline) {
  std::set<std::string> names;
  auto rows = session.exec(sql::select_applied_migrations, deadline);
  for (size_t r = 0; r < rows.size(); ++r)
    names.emplace(rows.text(r, 0));
  return names;
}

// `record`: the migration recorded in the same transaction, or nullptr.
void run_transaction(pg_session& session, const std::string& sql, const std::string* record,
                     pg_deadline deadline) {
  try {
    session.exec("BEGIN", deadline);
    session.exec(sql, deadline);
    if (record != nullptr)
      session.exec_params(sql::record_migration, {pg_param{*record}}, deadline);
    session.exec("COMMIT", deadline);
  } catch (const db_error& e) {
    if (e.connection_lost())
      throw;
    session.exec("ROLLBACK", deadline);
    if (e.sqlstate() == "55P03")
      throw restartable(e, "a table lock is held by another transaction");
    if (e.sqlstate() == "40P01")
      throw restartable(e, "a deadlock with another transaction");
    throw;
  }
}

void run_concurrently(pg_session& session, const std::string& sql, pg_deadline deadline) {
  for (const auto& statement : statements_of(sql)) {
    try {
      session.exec(statement, deadline);
    } catch (const db_error& e) {
      if (e.sqlstate() == "23505")
        throw restartable(e, "a duplicate was written while a unique key was built");
      throw;
    }
  }
}

struct step_context {
  pg_session& session;
  const phone_normaliser& normalise;
  migration_report& report;
  pg_deadline deadline;
};

void run_step(step_context& ctx, const migration_step& step, const std::string* record) {
  switch (step.kind) {
    case step_kind::transaction:
      run_transaction(ctx.session, step.sql, record, ctx.deadline);
      return;
    case step_kind::concurrently:
      run_concurrently(ctx.session, step.sql, ctx.deadline);
      return;
    case step_kind::route_merge:
      if (!ctx.report.repair)
        ctx.report.repair.emplace();
      merge_route_duplicates(ctx.session, ctx.normalise, ctx.deadline, *ctx.report.repair);
      return;
    case step_kind::route_recount:
      if (!ctx.report.repair)
        ctx.report.repair.emplace();
      recount_route_conversations(ctx.session, ctx.deadline, *ctx.report.repair);
      return;
  }
}

// The steps in order; the migration is recorded with its last step when
// that is a transaction, else on its own after it (a run cut short in
// between repeats the steps, which are idempotent).
void run_steps(step_context& ctx, const migration& m) {
  auto steps = steps_of(m);
  for (size_t i = 0; i < steps.size(); ++i) {
    bool records = i + 1 == steps.size() && steps[i].kind == step_kind::transaction;
    run_step(ctx, steps[i], records ? &m.name : nullptr);
  }
  if (steps.empty() || steps.back().kind != step_kind::transaction)
    ctx.session.exec_params(sql::record_migration, {pg_param{m.name}}, ctx.deadline);
}

void apply_one(step_context& ctx, const migration& m) {
  for (int attempt = 1;; ++attempt) {
    try {
      run_steps(ctx, m);
      return;
    } catch (const restartable& e) {
      if (attempt == migration_attempts)
        throw db_error(e.sqlstate(),
                       m.name + ": " + e.why() + ", " + std::to_string(attempt)
                         + " times (is the route writing under heavy load, or a long "
                           "transaction holding a table?): " + e.what(),
                       e.connection_lost());
      spdlog::warn("{}: {}; starting it over (attempt {} of {})", m.name, e.why(), attempt + 1,
                   migration_attempts);
      std::this_thread::sleep_for(lock_busy_pause);
    }
  }
}

migration_report apply_missing(pg_session& session, pg_deadline deadline,
                               const phone_normaliser& normalise) {
  session.exec(sql::create_migrations_table, deadline);
  auto done = applied_names(session, deadline);
  migration_report report;
  step_context ctx{session, normalise, report, deadline};
  for (const auto& m : embedded_migrations()) {
    if (done.count(m.name) != 0)
      continue;
    apply_one(ctx, m);
    report.applied.push_back(m.name);
  }
  return report;
}

// Waits at most the session's lock_timeout / statement_timeout and the
// deadline; a failure says what was waited for.
void take_migration_lock(pg_session& session, pg_deadline deadline) {
  try {
    session.exec_params(sql::lock_migrations, {sql::migration_lock_key}, deadline);
  } catch (const db_error& e) {
    throw db_error(e.sqlstate(),
                   std::string{"waiting for the migration lock (held by another migration?): "}
                     + e.what(),
                   e.connection_lost());
  }
}

// The session of one migration run; the deadline of its calls is returned.
pg_deadline open_migration_session(pg_session& session, std::chrono::milliseconds timeout) {
  // PostgreSQL's own limits answer first, with its reason (a lock timeout);
  // the client's deadline, a little later, gives up on a database that does
  // not answer at all.
  constexpr auto server_first = std::chrono::seconds(1);
  return session.connect_within_budget(pg_clock::now() + timeout + server_first);
}

pg_session_options migration_session_options(const std::string& url,
                                              std::chrono::milliseconds connect_timeout,
                                              std::chrono::milliseconds timeout) {
  pg_session_options options;
  options.conninfo = url;
  options.connect_timeout = connect_timeout;
  // A long migration on a large table must not be cut short by the
  // writers' statement timeout; a lock another session holds (a concurrent
  // migration, a long transaction on a table to alter) is waited for no
  // longer than the run.
  options.statement_timeout = timeout;
  options.lock_timeout = timeout;
  options.application_name = "kapso-ingest migrate";
  return options;
}

} // namespace

std::vector<migration_step> steps_of(const migration& m) {
  std::vector<migration_step> steps(1);
  size_t at = 0;
  while (at < m.sql.size()) {
    auto end = m.sql.find('\n', at);
    if (end == std::string::npos)
      end = m.sql.size();
    std::string_view line{m.sql.data() + at, end - at};
    if (line.compare(0, step_marker.size(), step_marker) == 0) {
      auto name = line.substr(step_marker.size());
      while (!name.empty() && (name.back() == ' ' || name.back() == '\r'))
        name.remove_suffix(1);
      steps.push_back(migration_step{kind_named(name, m.name), {}});
    } else {
      steps.back().sql.append(line).append("\n");
    }
    at = end + 1;
  }
  std::vector<migration_step> kept;
  for (auto& step : steps)
    if (step.kind != step_kind::transaction || !is_comment_only(step.sql))
      kept.push_back(std::move(step));
  return kept;
}

std::vector<std::string> statements_of(const std::string& sql) {
  std::vector<std::string> statements;
  std::string current;
  size_t at = 0;
  while (at < sql.size()) {
    auto end = sql.find('\n', at);
    if (end == std::string::npos)
      end = sql.size();
    std::string_view line{sql.data() + at, end - at};
    at = end + 1;
    auto trimmed = line.substr(0, line.find_last_not_of(" \t\r") + 1);
    if (trimmed.compare(0, 2, "--") == 0 || is_blank(trimmed))
      continue;
    current.append(trimmed).append("\n");
    if (!trimmed.empty() && trimmed.back() == ';') {
      statements.push_back(std::move(current));
      current.clear();
    }
  }
  if (!is_blank(current))
    statements.push_back(std::move(current));
  return statements;
}

bool schema_is_current(pg_session& session, pg_deadline deadline) {
  auto exists = session.exec(sql::migrations_table_exists, deadline);
  if (exists.empty() || exists.is_null(0, 0))
    return false;
  auto done = applied_names(session, deadline);
  for (const auto& m : embedded_migrations())
    if (done.count(m.name) == 0)
      return false;
  return true;
}

migration_report apply_migrations(pg_session& session, pg_deadline deadline,
                                  const phone_normaliser& normalise) {
  try {
    take_migration_lock(session, deadline);
    auto report = apply_missing(session, deadline, normalise);
    session.exec_params(sql::unlock_migrations, {sql::migration_lock_key}, deadline);
    return report;
  } catch (...) {
    // Rolls back an open transaction and releases the lock, server side,
    // without waiting for a database that may not answer.
    session.close();
    throw;
  }
}

migration_report migrate_database(const std::string& url,
                                  std::chrono::milliseconds connect_timeout,
                                  std::chrono::milliseconds timeout,
                                  const phone_normaliser& normalise) {
  pg_session session{migration_session_options(url, connect_timeout, timeout)};
  auto deadline = open_migration_session(session, timeout);
  if (schema_is_current(session, deadline))
    return {};
  return apply_migrations(session, deadline, normalise);
}

route_repair_report repair_route_database(const std::string& url,
                                          std::chrono::milliseconds connect_timeout,
                                          std::chrono::milliseconds timeout,
                                          const phone_normaliser& normalise) {
  pg_session session{migration_session_options(url, connect_timeout, timeout)};
  auto deadline = open_migration_session(session, timeout);
  try {
    take_migration_lock(session, deadline);
    if (!schema_is_current(session, deadline))
      throw std::runtime_error("the schema is not migrated: run `kapso-ingest migrate` first "
                               "(it repairs the route's data on the way)");
    if (!session.exec(sql::repair_functions_exist, deadline).boolean(0, 0))
      throw std::runtime_error("this database's migration 0002 predates the route repair (an "
                               "earlier kapso-ingest migrated it): its functions are missing");
    route_repair_report report;
    merge_route_duplicates(session, normalise, deadline, report);
    recount_route_conversations(session, deadline, report);
    session.exec_params(sql::unlock_migrations, {sql::migration_lock_key}, deadline);
    return report;
  } catch (...) {
    session.close();
    throw;
  }
}

} // namespace kapso
