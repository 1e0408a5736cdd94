// Every SQL statement kapso-ingest runs (DDL lives in migrations/ only).
#pragma once

namespace kapso::sql {

// -- migrations ----------------------------------------------------------------
extern const char* const lock_migrations;
extern const char* const unlock_migrations;
extern const char* const create_migrations_table;
extern const char* const migrations_table_exists;
extern const char* const select_applied_migrations;
extern const char* const record_migration;

// -- workspaces ----------------------------------------------------------------
extern const char* const find_workspaces;     // $1 json array of phone_number_ids
extern const char* const register_workspace;  // $1 name $2 slug $3 phone id $4 secret

// -- the batch write (one json recordset parameter each) -------------------------
extern const char* const find_contacts_by_bsuid;
extern const char* const link_bsuid_contacts;
extern const char* const upsert_contacts;
extern const char* const select_contacts;
extern const char* const insert_conversations;
extern const char* const select_conversations;
extern const char* const insert_messages; // + the conversations' inbox metadata
extern const char* const close_conversations;
extern const char* const advance_statuses;
extern const char* const insert_pending_statuses;
extern const char* const apply_pending_statuses;  // $1 json [(workspace_id, kapso_message_id)]
extern const char* const apply_all_pending_statuses;

// -- edits, deletions and account changes (persistence/lifecycle.cpp) ---------------
extern const char* const stage_message_changes;  // edits/revokes -> (workspace_id, event_id) new
extern const char* const apply_message_changes;  // $1 json [(workspace_id, original_message_id)]
extern const char* const record_number_changes;  // -> (workspace_id, event_id) new
extern const char* const apply_number_changes;   // $1 json [(workspace_id, phone)]
extern const char* const note_identity_changes;  // -> (workspace_id, event_id, changed)
extern const char* const select_lifecycle_waits; // $1 limit: what waits, per kind
extern const char* const sweep_lifecycle;

// -- health ------------------------------------------------------------------------

} // namespace kapso::sql
