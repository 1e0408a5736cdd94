// Schema migrations: numbered SQL files compiled in, applied in order once.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "persistence/pg_session.hpp"
#include "persistence/route_repair.hpp"

namespace kapso {

struct migration {
  std::string name; // file name, e.g. "0001_inbox_tables.sql"
  std::string sql;
};

// Every migrations/*.sql, sorted by name (generated at build time).
const std::vector<migration>& embedded_migrations();

// A migration runs as one transaction, unless its file is divided by
// `-- kapso:step KIND` lines into steps of these kinds.
enum class step_kind {
  transaction,   // the step's SQL in one transaction
  concurrently,  // each statement (ending in ';' at a line's end) on its own,
                 // outside a transaction: CREATE INDEX CONCURRENTLY
  route_merge,   // merge_route_duplicates (persistence/route_repair.hpp)
  route_recount, // recount_route_conversations
};

struct migration_step {
  step_kind kind = step_kind::transaction;
  std::string sql; // transaction, concurrently: the statements
};

// The steps of `m` in file order; SQL before the first marker is a
// transaction step, transaction steps of comments only are left out.
// Throws std::invalid_argument for an unknown kind.
std::vector<migration_step> steps_of(const migration& m);

// The statements of a `concurrently` step, one per entry.
std::vector<std::string> statements_of(const std::string& sql);

struct migration_report {
  std::vector<std::string> applied;          // names, in order
  std::optional<route_repair_report> repair; // when a route step ran
};

// True when every embedded migration is recorded as applied (false when the
// record table does not exist yet). Throws db_error / db_timeout.
bool schema_is_current(pg_session& session, pg_deadline deadline);

// Applies the missing migrations, each recorded with its last step, under a
// session-level advisory lock so that concurrent instances do not race. A
// migration whose concurrent unique index build fails on a duplicate written
// meanwhile, or whose step gives up waiting for a table lock, starts over
// (its steps are idempotent), a few times at most.
// Every call, the wait for the lock included, ends before `deadline`; on
// any failure the session is closed, which releases the lock.
migration_report apply_migrations(pg_session& session, pg_deadline deadline,
                                  const phone_normaliser& normalise);

// One migration run on a connection of its own (`kapso-ingest migrate`, and
// each attempt of the server's migrator): one connection attempt of
// `connect_timeout`, then PostgreSQL's statement_timeout and lock_timeout
// of `timeout`, and every call within `timeout` + 1 s. Nothing is locked
// or created when the schema is current already. Throws db_error /
// db_timeout.
migration_report migrate_database(const std::string& url,
                                  std::chrono::milliseconds connect_timeout,
                                  std::chrono::milliseconds timeout,
                                  const phone_normaliser& normalise);

// `kapso-ingest repair-route`: the route repair's steps again, on a database
// migrated already, for what the route wrote between the migration and the
// switch of Kapso's webhook. On its own connection and deadlines like
// migrate_database, under the migration lock; refuses a database whose
// schema is not current or that was migrated before the repair existed.
// Safe beside running servers (a delivery that meets a merge is retried).
route_repair_report repair_route_database(const std::string& url,
                                          std::chrono::milliseconds connect_timeout,
                                          std::chrono::milliseconds timeout,
                                          const phone_normaliser& normalise);

} // namespace kapso
