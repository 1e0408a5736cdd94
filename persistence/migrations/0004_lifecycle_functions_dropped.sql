-- The logic of edits, deletions and account changes moved from the
-- functions of 0003 into the server's own statements
-- (persistence/statements.cpp), where a fix is a change of the code rather
-- than a migration. The tables stay. kapso_preview stays too: the
-- statements cut previews with it, and it must cut exactly like the server
-- (http/preview.cpp), which a test checks against the database.
-- A server of an earlier version that still calls these fails its
-- lifecycle batches (they are retried, spooled or answered 503) until it is
-- upgraded as well.
DROP FUNCTION IF EXISTS kapso_sweep_lifecycle();
DROP FUNCTION IF EXISTS kapso_apply_number_changes(jsonb);
DROP FUNCTION IF EXISTS kapso_move_contact(uuid, text, text, timestamptz);
DROP FUNCTION IF EXISTS kapso_previous_phones(jsonb, jsonb, text, text);
DROP FUNCTION IF EXISTS kapso_note_identity_changes(jsonb);
DROP FUNCTION IF EXISTS kapso_apply_message_changes(jsonb);
DROP FUNCTION IF EXISTS kapso_edited(text, jsonb, text, text, text);
DROP FUNCTION IF EXISTS kapso_refresh_preview(uuid, timestamptz);
DROP FUNCTION IF EXISTS kapso_iso_time(timestamptz);
