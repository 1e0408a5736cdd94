// The bench's own SQL: creating its workspaces and emptying them before a run.
#pragma once

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

} // namespace kapso::bench
