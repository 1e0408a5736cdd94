// The bench's own SQL: creating its workspaces, emptying (or filling) them before a run.
#include "benchmarks/bench_db.hpp"

#include <pqxx/pqxx>

namespace kapso::bench {

setup_result setup_workspaces(pqxx::connection_base& db,
                              const std::vector<std::string>& phone_number_ids) {
  setup_result result;
  pqxx::work tx{db, "bench_setup"};
  // Older schemas lack the column; the server's migrations add it.
  auto has_secret_column = !tx.exec(
    "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
    "AND table_name = 'workspaces' AND column_name = 'kapso_webhook_secret'").empty();
  for (auto& phone_id : phone_number_ids) {
    auto slug = "kapso-bench-" + phone_id;
    // xmax = 0 only on a freshly inserted row: tells created from updated.
    auto row = tx.exec_params1(
      "INSERT INTO workspaces (name, slug, kapso_phone_id) VALUES ($1, $2, $3) "
      "ON CONFLICT (slug) DO UPDATE SET name = EXCLUDED.name, "
      "kapso_phone_id = EXCLUDED.kapso_phone_id "
      "RETURNING id::text, (xmax = 0)",
      "kapso-bench " + phone_id, slug, phone_id);
    std::string id = row[0].c_str();
    if (row[1].as<bool>())
      ++result.created;
    result.workspace_ids.push_back(id);
    if (has_secret_column)
      tx.exec_params0("UPDATE workspaces SET kapso_webhook_secret = NULL WHERE id = $1::uuid",
                      id);
    result.wiped_messages
      += tx.exec_params0("DELETE FROM messages WHERE workspace_id = $1::uuid", id)
           .affected_rows();
    tx.exec_params0("DELETE FROM conversations WHERE workspace_id = $1::uuid", id);
    tx.exec_params0("DELETE FROM contacts WHERE workspace_id = $1::uuid", id);
    result.foreign_workspaces += tx.exec_params1(
      "SELECT count(*) FROM workspaces WHERE kapso_phone_id = $1 AND id <> $2::uuid",
      phone_id, id)[0].as<size_t>();
  }
  tx.commit();
  return result;
}

prefill_result prefill_conversations(pqxx::connection_base& db,
                                     const std::vector<std::string>& workspace_ids,
                                     uint32_t conversations) {
  prefill_result result;
  auto workspaces = static_cast<uint32_t>(workspace_ids.size());
  pqxx::work tx{db, "bench_prefill"};
  for (uint32_t w = 0; w < workspaces && w < conversations; ++w) {
    // One set-based statement per table: 500,000 conversations take seconds.
    tx.exec_params0(
      "INSERT INTO contacts (workspace_id, phone, name) "
      "SELECT $1::uuid, '+1555' || lpad(c::text, 7, '0'), 'Bench Customer ' || c "
      "FROM generate_series($2::int8, $3::int8, $4::int8) AS c ON CONFLICT DO NOTHING",
      workspace_ids[w], w, int64_t{conversations} - 1, workspaces);
    result.created += tx.exec_params0(
      "INSERT INTO conversations (workspace_id, contact_id) "
      "SELECT workspace_id, id FROM contacts WHERE workspace_id = $1::uuid "
      "ON CONFLICT DO NOTHING", workspace_ids[w]).affected_rows();
  }
  tx.commit();
  // A real large tenant's tables have statistics; do not measure a planner
  // that still thinks they are empty.
  pqxx::nontransaction after{db, "bench_prefill_after"};
  after.exec("ANALYZE contacts, conversations");
  // Nor one that writes the prefill's pages out while it runs. CHECKPOINT
  // needs a superuser (or pg_checkpoint); without one the load may pay for it.
  try {
    after.exec("CHECKPOINT");
    result.checkpointed = true;
  } catch (const pqxx::sql_error&) {
    result.checkpointed = false;
  }
  return result;
}

wal_counters read_wal_counters(pqxx::connection_base& db) {
  pqxx::nontransaction tx{db, "bench_wal"};
  auto row = tx.exec1(
    "SELECT l::text, (l - '0/0'::pg_lsn)::int8, w.wal_records, w.wal_fpi, "
    "b.checkpoints_timed + b.checkpoints_req "
    "FROM pg_current_wal_lsn() l, pg_stat_wal w, pg_stat_bgwriter b");
  return {row[0].c_str(), row[1].as<int64_t>(), row[2].as<int64_t>(), row[3].as<int64_t>(),
          row[4].as<int64_t>()};
}

} // namespace kapso::bench
