// Edits, deletions, number and identity changes: one function per
// statement. A batch adds them to its pipeline after the messages they may
// apply to, inside an explicit transaction (store.cpp); what to write and
// what the answers mean are lifecycle_plan.hpp's.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "persistence/lifecycle_plan.hpp"
#include "persistence/pg_session.hpp"

namespace kapso::lifecycle {

// Reads what waits in the database into `index`.
void load_waiting(pg_session& session, pg_deadline deadline, waiting_index& index);

// Where the batch's lifecycle statements answer in its pipeline.
struct pipeline_slots {
  std::optional<size_t> staged;        // stage_message_changes
  std::optional<size_t> stored;        // lock_message_originals
  std::optional<size_t> applied;       // apply_message_changes
  std::optional<size_t> identities;    // note_identity_changes
  std::optional<size_t> recorded;      // record_number_changes
  std::optional<size_t> number_states; // read_number_changes
};

// Adds the statements of `plan` to the batch's pipeline, after every other
// step. `keys[i]` is entry i's contact key as the batch resolved it.
pipeline_slots add_batch(pg_pipeline& pipeline, const lifecycle_plan& plan,
                         const std::vector<batch_entry>& entries,
                         const std::vector<std::string_view>& keys);

// Reads the pipeline's answers, moves the contacts of number changes (a
// round trip per move, in the batch's still open transaction) and keeps
// `index` up to date.
lifecycle_outcomes finish_batch(pg_session& session, pg_deadline deadline, waiting_index& index,
                                const lifecycle_plan& plan,
                                const std::vector<batch_entry>& entries,
                                const pipeline_slots& slots, const std::vector<pg_rows>& answers);

// The re-check after commit: applies the waiting edits and revokes of those
// of these messages that `index` knows changes wait for, if they are stored
// now (one round trip, none when it knows of none).
void apply_waiting(pg_session& session, pg_deadline deadline, waiting_index& index,
                   const std::vector<row_key>& messages);

// Housekeeping: drops what waited a week, applies what waited while another
// writer or server wrote its row (one round trip when there is none).
void sweep(pg_session& session, pg_deadline deadline, waiting_index& index);

} // namespace kapso::lifecycle
