// Every SQL statement kapso-ingest runs (DDL lives in migrations/ only).
#pragma once

#include <cstddef>
#include <string>

namespace kapso::sql {

// -- migrations and register-workspace (run once, unprepared) ----------------------
// The session-level advisory lock that keeps concurrent instances from
// migrating at the same time (any kapso-ingest version uses this key).
inline constexpr const char* migration_lock_key = "7351620913";
extern const char* const lock_migrations;    // $1 migration_lock_key
extern const char* const unlock_migrations;  // $1 migration_lock_key
extern const char* const create_migrations_table;
extern const char* const migrations_table_exists;
extern const char* const select_applied_migrations;
extern const char* const record_migration;
extern const char* const register_workspace;  // $1 name $2 slug $3 phone id $4 secret

// -- the repair of the Next.js route's data (persistence/route_repair.cpp) ----------
// Its functions come with migration 0002; each call is one short transaction.
extern const char* const repair_functions_exist;
extern const char* const repair_select_contacts;            // -> (id, workspace_id, phone)
extern const char* const repair_select_split_conversations; // -> contact_id
extern const char* const repair_merge_customers;            // $1 [{id, phone}] -> 3 counts
extern const char* const repair_select_message_copies;      // -> "id,id,..." per message
extern const char* const repair_merge_message_copies;       // $1 uuid[] -> copies gone
extern const char* const repair_select_conversations;       // -> id, in id order
extern const char* const repair_recount_conversations;      // $1 uuid[] -> rows changed

// -- prepared on every connection of the writers and the directory -----------------
// Batch statements take one binary array per column (persistence/pg_array.hpp)
// and read them with unnest(), so a batch is one parameter set per statement
// whatever its size.
enum class statement : size_t {
  find_workspaces,          // phone_number_id[] -> (id, phone id, secret)
  find_contacts_by_bsuid,   // (workspace_id[], bsuid[]) -> (workspace, bsuid, phone)
  link_bsuid_contacts,      // (workspace_id[], phone[], bsuid_key[])
  upsert_contacts,          // (workspace_id[], phone[], name[], bsuid[])
  insert_conversations,     // (workspace_id[], phone[])
  insert_messages,          // one array per message column -> inserted / unresolved
  insert_known_messages,    // the same + contact names, without the upserts before
  close_conversations,      // (workspace_id[], phone[])
  write_statuses,           // (workspace_id[], message id[], status[], error[]) -> per message
  apply_pending_statuses,   // (workspace_id[], message id[])
  apply_all_pending_statuses,
  // edits, deletions and account changes (persistence/lifecycle.cpp)
  select_lifecycle_waits,       // $1 limit -> ('m' | 'n', workspace, message id | old phone)
  stage_message_changes,        // one array per column -> (workspace, event id) staged anew
  lock_message_originals,       // (workspace_id[], message id[]) -> the stored ones
  apply_message_changes,        // (workspace_id[], message id[]) -> (workspace, event, changed)
  lock_identity_contacts,       // (workspace_id[], phone[], bsuid[])
  note_identity_changes,        // one array per column -> (workspace, event id, changed)
  record_number_changes,        // one array per column -> (workspace, event id) recorded anew
  lock_number_change_contacts,  // (workspace_id[], phone[])
  read_number_changes,          // (workspace_id[], phone[]) -> a number_change_state per row
  rename_contacts,              // (contact[], old phone[], new phone[])
  move_conversation_messages,   // (keep conversation[], gone conversation[])
  merge_conversations,          // (keep conversation[], gone conversation[])
  reassign_conversations,       // (conversation[], contact[])
  merge_contacts,               // (keep[], gone[], old phone[], new phone[], keep_is_old[])
  upsert_moved_contacts,        // (workspace_id[], new phone[], old phone[])
  move_messages_up_to,          // (old conversation[], workspace_id[], new phone[], at_us[])
  settle_split_conversations,   // (old conversation[], workspace_id[], new phone[], unread[])
  expire_lifecycle_waits,
  select_stored_originals,      // -> (workspace, message id) that changes wait for
  select_changed_numbers,       // -> (workspace, old phone) with a contact to move
  count_
};

constexpr size_t statement_count = static_cast<size_t>(statement::count_);

// The name it is prepared under, and its text.
const std::string& name_of(statement s);
const char* text_of(statement s);

} // namespace kapso::sql
