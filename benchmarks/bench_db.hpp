// The bench's own SQL: creating its workspaces, emptying (or filling) them before a run.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <pqxx/connection_base>

namespace kapso::bench {

struct setup_result {
  std::vector<std::string> workspace_ids; // one per phone_number_id, same order
  size_t created = 0;                     // workspaces that did not exist before
  size_t wiped_messages = 0;
  size_t foreign_workspaces = 0;          // other workspaces with the same phone ids
};

// Upserts one workspace per phone_number_id (slug "kapso-bench-<id>") and
// deletes its contacts, conversations and messages, so that unread counts
// and previews after the run come from this run alone. The workspaces get
// no kapso_webhook_secret: the server's global secret applies.
setup_result setup_workspaces(pqxx::connection_base& db,
                              const std::vector<std::string>& phone_number_ids);

// A large tenant whose conversations already exist: creates the contact
// ("+1555" and c as seven digits, named "Bench Customer <c>", as the server
// would from the bench's events) and the conversation of every c in
// [0, conversations) in workspace_ids[c % workspace_ids.size()], with no
// message, so unread counts and previews still come from the run alone.
// Then ANALYZEs both tables and, when allowed, runs a CHECKPOINT, so that
// the load neither meets empty statistics nor writes the prefill's pages.
struct prefill_result {
  size_t created = 0; // conversations
  bool checkpointed = false;
};
prefill_result prefill_conversations(pqxx::connection_base& db,
                                     const std::vector<std::string>& workspace_ids,
                                     uint32_t conversations);

// The WAL the whole PostgreSQL server has written so far: the insert
// position in bytes (exact), and pg_stat_wal's records and full-page images
// (flushed by each backend at most once a second) and the checkpoints done.
struct wal_counters {
  std::string lsn; // as PostgreSQL prints it, for pg_waldump --start/--end
  int64_t bytes = 0;
  int64_t records = 0;
  int64_t full_page_images = 0;
  int64_t checkpoints = 0;
};
wal_counters read_wal_counters(pqxx::connection_base& db);

} // namespace kapso::bench
