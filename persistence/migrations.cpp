// Applies and checks the embedded SQL migrations, every call with a deadline.
#include "persistence/migrations.hpp"

#include <set>

#include "persistence/statements.hpp"

namespace kapso {

namespace {

std::set<std::string> applied_names(pg_session& session, pg_deadline deadline) {
  std::set<std::string> names;
  auto rows = session.exec(sql::select_applied_migrations, deadline);
  for (size_t r = 0; r < rows.size(); ++r)
    names.emplace(rows.text(r, 0));
  return names;
}

std::vector<std::string> apply_missing(pg_session& session, pg_deadline deadline) {
  session.exec(sql::create_migrations_table, deadline);
  auto done = applied_names(session, deadline);
  std::vector<std::string> applied;
  for (const auto& m : embedded_migrations()) {
    if (done.count(m.name) != 0)
      continue;
    session.exec("BEGIN", deadline);
    session.exec(m.sql, deadline);
    session.exec_params(sql::record_migration, {m.name}, deadline);
    session.exec("COMMIT", deadline);
    applied.push_back(m.name);
  }
  return applied;
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

} // namespace

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

std::vector<std::string> apply_migrations(pg_session& session, pg_deadline deadline) {
  try {
    take_migration_lock(session, deadline);
    auto applied = apply_missing(session, deadline);
    session.exec_params(sql::unlock_migrations, {sql::migration_lock_key}, deadline);
    return applied;
  } catch (...) {
    // Rolls back an open transaction and releases the lock, server side,
    // without waiting for a database that may not answer.
    session.close();
    throw;
  }
}

std::vector<std::string> migrate_database(const std::string& url,
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
  pg_session session{std::move(options)};
  // PostgreSQL's own limits answer first, with its reason (a lock timeout);
  // the client's deadline, a little later, gives up on a database that does
  // not answer at all.
  constexpr auto server_first = std::chrono::seconds(1);
  auto deadline = session.connect_within_budget(pg_clock::now() + timeout + server_first);
  if (schema_is_current(session, deadline))
    return {};
  return apply_migrations(session, deadline);
}

} // namespace kapso
