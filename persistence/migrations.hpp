// Schema migrations: numbered SQL files compiled in, applied in order once.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "persistence/pg_session.hpp"

namespace kapso {

struct migration {
  std::string name; // file name, e.g. "0001_inbox_tables.sql"
  std::string sql;
};

// Every migrations/*.sql, sorted by name (generated at build time).
const std::vector<migration>& embedded_migrations();

// True when every embedded migration is recorded as applied (false when the
// record table does not exist yet). Throws db_error / db_timeout.
bool schema_is_current(pg_session& session, pg_deadline deadline);

// Applies the missing migrations, each in its own transaction, under a
// session-level advisory lock so that concurrent instances do not race.
// Every call, the wait for the lock included, ends before `deadline`; on
// any failure the session is closed, which releases the lock. Returns the
// names applied.
std::vector<std::string> apply_migrations(pg_session& session, pg_deadline deadline);

// One migration run on a connection of its own (`kapso-ingest migrate`, and
// each attempt of the server's migrator): one connection attempt of
// `connect_timeout`, then PostgreSQL's statement_timeout and lock_timeout
// of `timeout`, and every call within `timeout` + 1 s. Nothing is locked
// or created when the schema is current already. Throws db_error /
// db_timeout.
std::vector<std::string> migrate_database(const std::string& url,
                                          std::chrono::milliseconds connect_timeout,
                                          std::chrono::milliseconds timeout);

} // namespace kapso
