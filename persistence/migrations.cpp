// Applies and checks the embedded SQL migrations.
#include "persistence/migrations.hpp"

#include <set>

#include "persistence/statements.hpp"

namespace kapso {

namespace {

std::set<std::string> applied_names(pqxx::transaction_base& txn) {
  std::set<std::string> names;
  for (const auto& row : txn.exec(sql::select_applied_migrations))
    names.insert(row[0].as<std::string>());
  return names;
}

} // namespace

std::vector<std::string> apply_migrations(pqxx::connection& conn) {
  std::vector<std::string> applied;
  // A session-level advisory lock: it outlives the short transactions below.
  auto run_alone = [&conn](const char* statement) {
    pqxx::nontransaction txn{conn};
    txn.exec(statement);
  };
  run_alone(sql::lock_migrations);
  try {
    {
      pqxx::work txn{conn};
      txn.exec(sql::create_migrations_table);
      txn.commit();
    }
    std::set<std::string> done;
    {
      pqxx::work txn{conn};
      done = applied_names(txn);
      txn.commit();
    }
    for (const auto& m : embedded_migrations()) {
      if (done.count(m.name) != 0)
        continue;
      pqxx::work txn{conn};
      txn.exec(m.sql);
      txn.exec_params(sql::record_migration, m.name);
      txn.commit();
      applied.push_back(m.name);
    }
  } catch (...) {
    if (conn.is_open())
      run_alone(sql::unlock_migrations);
    throw;
  }
  run_alone(sql::unlock_migrations);
  return applied;
}

bool schema_is_current(pqxx::connection& conn) {
  pqxx::read_transaction txn{conn};
  auto exists = txn.exec(sql::migrations_table_exists);
  if (exists.empty() || exists[0][0].is_null())
    return false;
  auto done = applied_names(txn);
  for (const auto& m : embedded_migrations())
    if (done.count(m.name) == 0)
      return false;
  return true;
}

} // namespace kapso
