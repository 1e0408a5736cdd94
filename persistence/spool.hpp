// The outage spool: an append-only file of batches PostgreSQL did not commit
// in time, framed so a torn or corrupt record is found and skipped, and
// replayed as a stream from a durable cursor.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "domain/event.hpp"

namespace kapso {

// Why an event left the spool for the quarantine (persistence/quarantine.hpp):
// kept with the event, in the same record, so the two cannot part.
struct quarantine_note {
  std::string reason;          // SQLSTATE and PostgreSQL's message, or the exception's
  uint32_t attempts = 0;       // failed attempts while other events were stored
  int64_t quarantined_at = 0;  // unix seconds
};

// The payload of one record: one batch of routed events, every field of
// `event` and `routed_event` written from ONE field list (a table the encoder
// and decoder both walk), so a new field cannot be forgotten by one side.
// `notes` (one per event, or empty) add the quarantine's fields; a reader
// that does not ask for them skips them, so a quarantine file replays like
// a spool file.
std::string encode_spool_batch(const std::vector<routed_event>& events,
                               const std::vector<quarantine_note>& notes = {});
// The encoding builds up to 0.3.0 wrote (every field, fixed-width lengths):
// still read by decode_spool_batch; written only by tests, to prove that.
std::string encode_spool_batch_v1(const std::vector<routed_event>& events,
                                  const std::vector<quarantine_note>& notes = {});

// False when `payload` is not a valid encoding; `out` (and `notes`) are
// unchanged then. `notes`, when given, gets one note per event if the
// payload carries any, else stays empty. Never reads out of bounds,
// allocates no more than the payload's size (fuzzed); throws only
// std::bad_alloc, when memory runs out (the record is not corrupt then, and
// must not be skipped).
bool decode_spool_batch(std::string_view payload, std::vector<routed_event>& out,
                        std::vector<quarantine_note>* notes = nullptr);

// The files of writer N in a spool directory: "writer-N.spool", its outage
// spool, and "writer-N.quarantine", its quarantine (the same format, each
// event with its quarantine_note; never replayed by the server).
inline constexpr std::string_view spool_file_suffix = ".spool";
inline constexpr std::string_view quarantine_file_suffix = ".quarantine";
std::string writer_file(const std::string& dir, size_t writer, std::string_view suffix);
// N when `name` is exactly "writer-N<suffix>".
std::optional<size_t> writer_of_file(std::string_view name, std::string_view suffix);

// An exclusive flock(2) on a spool directory, held for the life of the
// process: a second kapso-ingest on the same directory refuses to start
// instead of truncating the first one's files.
class spool_dir_lock {
public:
  // Creates `dir` (mode 0700) if needed and locks it. Throws
  // std::runtime_error with a one-line message naming the directory (and the
  // pid of the holder when known) when another process holds the lock.
  explicit spool_dir_lock(const std::string& dir);
  ~spool_dir_lock();
  spool_dir_lock(const spool_dir_lock&) = delete;
  spool_dir_lock& operator=(const spool_dir_lock&) = delete;
private:
  int fd_ = -1;
};

class spool {
public:
  // `path` is the spool file (created mode 0600 on the first append; its
  // directory is fsync'd when the file is created). Opening an existing file
  // reads its header and its end, never the records in between: the header
  // keeps the cursor and the count of records after it, and the end is
  // checked for an append a crash cut short (files of builds up to 0.3.0,
  // whose header has no count, are walked once, streaming). Throws
  // std::runtime_error when the file has a header of an unknown version or
  // is not a spool file at all (the writer then refuses to start: never
  // truncate what we cannot read).
  // `read_only`: a look at a file another process may be appending to (the
  // `spool list` command beside a running server): it is opened read-only
  // and never written, cut or synced; a torn tail only ends the walk.
  enum class access { read_write, read_only };
  spool(std::string path, size_t max_bytes, access mode = access::read_write);
  ~spool();
  spool(const spool&) = delete;
  spool& operator=(const spool&) = delete;

  enum class append_status { ok, full, failed };
  // Appends one batch as one record and fdatasyncs before returning ok.
  // `full`: the record would take the file over max_bytes (nothing written).
  // `failed`: a write or sync failed (ENOSPC, EIO, EFBIG, ...): the file is
  // cut back (ftruncate) to the last whole record before returning, so the
  // next record cannot be glued to a fragment. Nothing was acknowledged.
  // `notes`: see encode_spool_batch (the quarantine's records).
  append_status append(const std::vector<routed_event>& events,
                       const std::vector<quarantine_note>& notes = {});

  // Replay. next() reads the first valid record at or after the durable
  // cursor, reading one record at a time (never the whole file). Records it
  // cannot read (bad magic, bad length, CRC mismatch, undecodable payload)
  // are skipped: each is logged (offset, reason) and counted, and the cursor
  // moves past it. A torn tail (an incomplete last record: a crash during an
  // append that was never acknowledged) ends the replay and is cut off.
  // nullopt when nothing is left. Calling next() again without consumed()
  // returns the same record. When memory runs out while reading or decoding
  // a record, std::bad_alloc propagates and the cursor stays before it. A
  // record whose header holds but whose length runs into the records after
  // it (an append glued to a torn one) is skipped like a corrupt one, never
  // followed by its length.
  struct record {
    std::vector<routed_event> events;
    std::vector<quarantine_note> notes; // one per event in a quarantine file, else empty
    uint64_t offset = 0;      // where it starts
    uint64_t end_offset = 0;  // where the next one starts
  };
  std::optional<record> next();

  // Reading ahead: the first valid record after `previous` (a record of
  // next() or next_after()), the cursor left where it is; corrupt records on
  // the way are counted once however often they are read.
  std::optional<record> next_after(const record& previous);

  // The record last returned by next() is stored in PostgreSQL: the durable
  // cursor (kept in the file's header, fdatasync'd) moves past it, so a crash
  // mid-replay resumes there. When the cursor reaches the end of the file,
  // the file is emptied (truncated to its header).
  void consumed(const record& r);
  // The same for a run read ahead: `first` from next(), `last` the last of
  // the `count` records up to it; one cursor write for all of them.
  void consumed(const record& first, const record& last, uint64_t count);

  uint64_t bytes() const noexcept;      // bytes of records not yet replayed
  // Records appended and not yet replayed (a corrupt one leaves the count
  // when the replay skips it); kept in the header with the cursor.
  uint64_t records() const noexcept;
  uint64_t file_bytes() const noexcept; // size on disk (what max_bytes limits)
  bool empty() const noexcept { return bytes() == 0; }
  uint64_t corrupt_records() const noexcept; // skipped since this object was made
  const std::string& path() const noexcept;

private:
  // What a walk over the file finds at one offset.
  enum class found { record, corrupt, torn_tail, garbage_tail, end, io_error };
  struct probe {
    found what = found::end;
    uint64_t next = 0;        // where the walk continues
    const char* reason = "";  // why it is not a record
  };
  // Looks at `pos`; the payload of a record is checked against its CRC (and
  // left in `payload` when that is not null).
  probe probe_at(uint64_t pos, std::string* payload);
  void open_existing();
  // A walk over every record after the cursor: counts them, cuts a torn tail.
  void scan_all();
  // Where the last whole record ends, read from the end of the file back.
  void find_end();
  struct located {
    uint64_t offset = 0;
    uint32_t size = 0;  // of the payload
    uint32_t crc = 0;   // of the payload
  };
  // The last offset in [from, below) where a valid record header starts.
  std::optional<located> last_header(uint64_t below, uint64_t from);
  void cut_torn(uint64_t at);
  // The header's count, plus the record appended after it was written (or
  // minus the one counted and then cut off as torn).
  void count_since(uint32_t counted, uint32_t counted_end_low);
  std::optional<record> read_from(uint64_t from);
  uint64_t resync(uint64_t from, bool& io_ok);
  bool payload_intact(uint64_t pos, uint32_t size, uint32_t crc, bool& io_ok);
  bool read_at(uint64_t pos, char* out, size_t size);
  void store_cursor(uint64_t cursor);
  void empty_file();
  bool cut_to(uint64_t size);
  void count_corrupt(uint64_t pos, uint64_t size, const char* reason);
  void skipped(uint64_t pos, uint64_t size, const char* reason);

  std::string path_;
  size_t max_bytes_;
  int fd_ = -1;
  uint64_t size_ = 0;           // valid bytes in the file (0 = no header yet)
  uint64_t cursor_ = 0;         // where replay starts (durable in the header)
  uint64_t records_ = 0;
  uint64_t corrupt_ = 0;
  uint64_t skipped_until_ = 0;  // corrupt records the replay skipped lie before this
  bool read_only_ = false;
  bool tail_dirty_ = false;     // bytes past size_ that a failed cut left
  bool directory_synced_ = false;
};

} // namespace kapso
