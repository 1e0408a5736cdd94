// The quarantine: spooled events that kept failing while other events were
// stored, kept next to the spool (spool.dir/writer-N.quarantine, the spool's
// own format with a note per event) until an operator puts them back.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <unordered_map>
#include <vector>

#include "domain/event.hpp"
#include "persistence/spool.hpp"

namespace kapso {

// Why a write failed, for the quarantine and the log: the SQLSTATE and the
// first line of PostgreSQL's message (not its DETAIL, which quotes key
// values such as phone numbers), or the text of an exception that is not the
// database's answer. One line, at most 200 bytes, cut on a UTF-8 boundary.
std::string failure_reason(const std::exception& e);

// Which failing events are poison. An event whose write fails unexplained
// (failure_kind::unexplained) counts an attempt only when other events (the
// writer passes the time it last stored events of the same kind) were
// stored since its previous failure, or, for its first, during the attempt
// that failed: when nothing like it is stored, the database is what fails,
// and nothing may be quarantined for it. Counts live in memory (a restart
// only delays a quarantine) and are bounded.
class suspect_tracker {
public:
  using time_point = std::chrono::steady_clock::time_point;
  struct count {
    uint32_t attempts = 0; // failed attempts that counted, this one included
    bool counted = false;  // this failure counted
  };
  // `r` failed in an attempt that began at `began`; the writer last stored
  // events of its kind at `last_stored`.
  count failed(const routed_event& r, time_point began, time_point last_stored, time_point now);
  // Stored or quarantined: its count goes.
  void forget(const routed_event& r);
  size_t size() const { return failures_.size(); }

private:
  struct failures {
    uint32_t attempts = 0;
    time_point last;
  };
  std::unordered_map<uint64_t, failures> failures_; // by a hash of the event's encoding
};

// One event of a quarantine file, as `kapso-ingest spool list` shows it.
struct quarantined_event {
  std::string file;   // file name inside the spool directory
  size_t writer = 0;
  routed_event event;
  quarantine_note note;
};

// Every event in the quarantine files of `spool_dir`, oldest first per file.
// Reads without writing anything (a server may be appending), so it works
// beside a running server. Throws std::runtime_error naming a file it cannot
// read.
std::vector<quarantined_event> list_quarantine(const std::string& spool_dir);

// The text `kapso-ingest spool list` prints: a header, one tab-separated line
// per event (file, writer, message id, event type, workspace id, attempts,
// time in UTC, reason; never the message's text) and the count.
std::string quarantine_listing(const std::vector<quarantined_event>& events);

struct requeue_result {
  size_t events = 0;  // moved back into a spool
  size_t files = 0;   // quarantine files emptied and removed
};

// Moves every quarantined event back into its writer's spool
// (writer-N.quarantine -> writer-N.spool), record by record: each is
// fdatasync'd in the spool before the quarantine's cursor passes it, so a
// crash at any point loses nothing (an event may be replayed twice, which
// stores it once). Emptied quarantine files are removed. The caller holds
// the directory's spool_dir_lock (no server runs on it). Throws
// std::runtime_error when a spool cannot take the events (over
// `spool_max_bytes`, a failed write): what is left stays quarantined.
requeue_result requeue_quarantine(const std::string& spool_dir, size_t spool_max_bytes);

} // namespace kapso
