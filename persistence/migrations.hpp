// Schema migrations: numbered SQL files compiled in, applied in order once.
#pragma once

#include <string>
#include <vector>

#include <pqxx/pqxx>

namespace kapso {

struct migration {
  std::string name; // file name, e.g. "0001_inbox_tables.sql"
  std::string sql;
};

// Every migrations/*.sql, sorted by name (generated at build time).
const std::vector<migration>& embedded_migrations();

// Applies the missing migrations, each in its own transaction, under an
// advisory lock so concurrent instances do not race. Returns the names applied.
std::vector<std::string> apply_migrations(pqxx::connection& conn);

// True when every embedded migration is recorded as applied.
bool schema_is_current(pqxx::connection& conn);

} // namespace kapso
