// The outage spool on disk: framed records after a versioned header, a
// durable replay cursor, a streaming reader that skips what it cannot read.
//
// File layout (integers little-endian):
//   header, 32 bytes: "KAPSOSPL", u32 version (1), u32 0, u64 cursor,
//                     u32 CRC32C of the 24 bytes before, u32 0
//   records:          u32 sync magic, u32 payload length, u32 CRC32C of the
//                     payload, u32 CRC32C of the 12 bytes before; payload
// The cursor is the offset of the first record not yet replayed.
#include "persistence/spool.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "persistence/crc32c.hpp"
#include "persistence/file_io.hpp"

namespace kapso {

namespace {

// -- the payload codec ---------------------------------------------------------
//
// Two encodings of a batch. The decoder tells them apart by the first four
// bytes, so one file may hold records of both.
//
// Version 1 (builds up to 0.3.0): every field of every event.
//   payload := u32 event count, then per event: u32 size of its fields, fields
//   field   := u8 tag, u32 length, bytes
// Version 2 (written since): the same tags, about half the bytes for webhook
// traffic, which repeats itself from one event to the next.
//   payload := u32 0xFFFFFFFF (a count no version-1 payload can hold), u8 2,
//              varint event count, then per event: varint size of its fields,
//              fields
//   field   := u8 tag, varint length, bytes
//            | u8 (tag | 0x80): the previous event's value of that text field
//   An empty text field is left out, the timestamp is a zigzag varint, and a
//   preview equal to the content (a contact phone equal to the contact key)
//   is a field of length 0 of its own tag.
// Unknown tags below 0x80 are skipped, so a file written by a newer build
// stays readable; absent fields keep their defaults (version 2: empty). A
// quarantine file is a spool file whose events also carry the fields of
// their quarantine_note.

enum : uint8_t {
  tag_workspace_id = 1,
  tag_kind = 2,
  tag_timestamp = 3,
  // A quarantined event's note; absent from the spool's own records.
  tag_reason = 4,
  tag_attempts = 5,
  tag_quarantined_at = 6,
  // Version 2: `preview` is `content`, `contact_phone` is `contact_key`.
  tag_preview_is_content = 7,
  tag_phone_is_key = 8,
  // Tags of the text fields of `event` follow; never reuse a number.
};

// Version 2: the high bit of a tag says "as in the previous event".
constexpr uint8_t repeat_bit = 0x80;
constexpr uint32_t compact_marker = 0xffffffffu;
constexpr uint8_t compact_version = 2;

struct text_field {
  uint8_t tag;
  std::string event::*member;
};

// Every text field of `event`: the encoder writes and the decoder reads
// exactly this list (plus workspace_id, kind and timestamp above).
constexpr text_field event_texts[] = {
  {10, &event::event_type},
  {11, &event::phone_number_id},
  {12, &event::contact_key},
  {13, &event::contact_phone},
  {14, &event::contact_bsuid},
  {15, &event::contact_username},
  {16, &event::contact_name},
  {17, &event::whatsapp_conversation_id},
  {18, &event::message_id},
  {19, &event::direction},
  {20, &event::sender_type},
  {21, &event::message_type},
  {22, &event::content},
  {23, &event::preview},
  {24, &event::media_url},
  {25, &event::metadata_json},
  {26, &event::status},
  {27, &event::status_error_json},
  {28, &event::original_message_id},
  {29, &event::new_contact_phone},
  {30, &event::identity_hash},
};

// A field added to `event` changes its size: this fails until the field is
// in the list above (and in the tests' round trip). The first 8 bytes are
// the kind and its padding.
static_assert(sizeof(event)
                == 8 + std::size(event_texts) * sizeof(std::string) + sizeof(int64_t),
              "event has a field the spool codec does not write: add it to event_texts");

// The text field of `r` a tag names (workspace_id included); null if none.
const std::string* text_of(const routed_event& r, uint8_t tag) {
  if (tag == tag_workspace_id)
    return &r.workspace_id;
  for (const auto& field : event_texts)
    if (field.tag == tag)
      return &(r.ev.*field.member);
  return nullptr;
}

std::string* text_of(routed_event& r, uint8_t tag) {
  return const_cast<std::string*>(text_of(static_cast<const routed_event&>(r), tag));
}

void put_varint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out += static_cast<char>((value & 0x7f) | 0x80);
    value >>= 7;
  }
  out += static_cast<char>(value);
}

uint64_t zigzag(int64_t value) {
  return (static_cast<uint64_t>(value) << 1) ^ (value < 0 ? ~uint64_t{0} : 0);
}

int64_t unzigzag(uint64_t value) {
  return static_cast<int64_t>((value >> 1) ^ (~(value & 1) + 1));
}

void put_field(std::string& out, uint8_t tag, std::string_view value) {
  out += static_cast<char>(tag);
  put_le32(out, static_cast<uint32_t>(value.size()));
  out.append(value);
}

void put_compact_field(std::string& out, uint8_t tag, std::string_view value) {
  out += static_cast<char>(tag);
  put_varint(out, value.size());
  out.append(value);
}

// A text field of version 2: left out when empty, one byte when the
// previous event had the same value.
void put_compact_text(std::string& out, uint8_t tag, const std::string& value,
                      const std::string* previous) {
  if (value.empty())
    return;
  if (previous != nullptr && *previous == value) {
    out += static_cast<char>(tag | repeat_bit);
    return;
  }
  put_compact_field(out, tag, value);
}

// Reads from a bounded window; every read checks what is left first.
class reader {
public:
  explicit reader(std::string_view bytes) : rest_(bytes) {}

  bool u32(uint32_t& out) {
    if (rest_.size() < 4)
      return false;
    out = get_le32(rest_.data());
    rest_.remove_prefix(4);
    return true;
  }

  bool u8(uint8_t& out) {
    if (rest_.empty())
      return false;
    out = static_cast<uint8_t>(rest_.front());
    rest_.remove_prefix(1);
    return true;
  }

  // LEB128, at most 10 bytes.
  bool varint(uint64_t& out) {
    out = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
      uint8_t byte = 0;
      if (!u8(byte))
        return false;
      out |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0)
        return true;
    }
    return false;
  }

  bool bytes(size_t size, std::string_view& out) {
    if (rest_.size() < size)
      return false;
    out = rest_.substr(0, size);
    rest_.remove_prefix(size);
    return true;
  }

  size_t left() const { return rest_.size(); }

private:
  std::string_view rest_;
};

// A note field sets `noted`; its value is checked whether or not the
// caller keeps notes, so that every reader agrees on what is valid.
bool decode_note_field(uint8_t tag, std::string_view value, quarantine_note& note,
                       bool& noted) {
  noted = true;
  switch (tag) {
    case tag_reason:
      note.reason.assign(value);
      return true;
    case tag_attempts:
      if (value.size() != 4)
        return false;
      note.attempts = get_le32(value.data());
      return true;
    default: // tag_quarantined_at
      if (value.size() != 8)
        return false;
      note.quarantined_at = static_cast<int64_t>(get_le64(value.data()));
      return true;
  }
}

// The fields both versions write alike (the timestamp is version 1's).
bool decode_field(uint8_t tag, std::string_view value, routed_event& r,
                  quarantine_note& note, bool& noted) {
  switch (tag) {
    case tag_reason:
    case tag_attempts:
    case tag_quarantined_at:
      return decode_note_field(tag, value, note, noted);
    case tag_kind:
      if (value.size() != 1
          || static_cast<uint8_t>(value[0]) > static_cast<uint8_t>(last_event_kind))
        return false;
      r.ev.kind = static_cast<event_kind>(value[0]);
      return true;
    case tag_timestamp:
      if (value.size() != 8)
        return false;
      r.ev.timestamp = static_cast<int64_t>(get_le64(value.data()));
      return true;
    default:
      if (auto* text = text_of(r, tag)) {
        text->assign(value);
        return true;
      }
      return true; // a field of a newer build: skipped
  }
}

bool decode_event(std::string_view fields, routed_event& r, quarantine_note& note,
                  bool& noted) {
  reader in{fields};
  while (in.left() > 0) {
    uint8_t tag = 0;
    uint32_t size = 0;
    std::string_view value;
    if (!in.u8(tag) || !in.u32(size) || !in.bytes(size, value)
        || !decode_field(tag, value, r, note, noted))
      return false;
  }
  return true;
}

bool decode_compact_event(std::string_view fields, routed_event& r,
                          const routed_event* previous, quarantine_note& note, bool& noted) {
  r.ev.metadata_json.clear(); // absent means empty here
  bool preview_is_content = false;
  bool phone_is_key = false;
  reader in{fields};
  while (in.left() > 0) {
    uint8_t tag = 0;
    if (!in.u8(tag))
      return false;
    if ((tag & repeat_bit) != 0) {
      auto* text = text_of(r, static_cast<uint8_t>(tag & ~repeat_bit));
      if (previous == nullptr || text == nullptr)
        return false;
      *text = *text_of(*previous, static_cast<uint8_t>(tag & ~repeat_bit));
      continue;
    }
    uint64_t size = 0;
    std::string_view value;
    if (!in.varint(size) || size > in.left() || !in.bytes(static_cast<size_t>(size), value))
      return false;
    switch (tag) {
      case tag_preview_is_content:
      case tag_phone_is_key:
        if (!value.empty())
          return false;
        (tag == tag_preview_is_content ? preview_is_content : phone_is_key) = true;
        break;
      case tag_timestamp: {
        reader number{value};
        uint64_t zigzagged = 0;
        if (!number.varint(zigzagged) || number.left() != 0)
          return false;
        r.ev.timestamp = unzigzag(zigzagged);
        break;
      }
      default:
        if (!decode_field(tag, value, r, note, noted))
          return false;
    }
  }
  if (preview_is_content)
    r.ev.preview = r.ev.content;
  if (phone_is_key)
    r.ev.contact_phone = r.ev.contact_key;
  return true;
}

// A quarantine note's fields, each written by `put` (the field framing of
// version 1 or 2).
void put_note(std::string& fields, const quarantine_note& note,
              void (*put)(std::string&, uint8_t, std::string_view)) {
  put(fields, tag_reason, note.reason);
  std::string number;
  put_le32(number, note.attempts);
  put(fields, tag_attempts, number);
  number.clear();
  put_le64(number, static_cast<uint64_t>(note.quarantined_at));
  put(fields, tag_quarantined_at, number);
}

// One event of version 2, against the one before it in the batch.
void put_compact_event(std::string& fields, const routed_event& r,
                       const routed_event* previous) {
  put_compact_text(fields, tag_workspace_id, r.workspace_id,
                   previous ? &previous->workspace_id : nullptr);
  char kind = static_cast<char>(r.ev.kind);
  put_compact_field(fields, tag_kind, {&kind, 1});
  if (r.ev.timestamp != 0) {
    std::string timestamp;
    put_varint(timestamp, zigzag(r.ev.timestamp));
    put_compact_field(fields, tag_timestamp, timestamp);
  }
  for (const auto& field : event_texts) {
    const auto& value = r.ev.*field.member;
    if (!value.empty() && field.member == &event::preview && value == r.ev.content) {
      put_compact_field(fields, tag_preview_is_content, {});
      continue;
    }
    if (!value.empty() && field.member == &event::contact_phone && value == r.ev.contact_key) {
      put_compact_field(fields, tag_phone_is_key, {});
      continue;
    }
    put_compact_text(fields, field.tag, value, previous ? &(previous->ev.*field.member) : nullptr);
  }
}

// -- the file ------------------------------------------------------------------

constexpr char file_magic[8] = {'K', 'A', 'P', 'S', 'O', 'S', 'P', 'L'};
// Version 1 headers carry only the cursor; version 2 also the count of
// records after it, so that opening a large file reads none of them.
constexpr uint32_t file_version = 2;
constexpr uint32_t first_file_version = 1;
constexpr uint64_t file_header_size = 32;

// Bytes 0xFF and 0xFE never occur in UTF-8, which most payload bytes are:
// a resynchronising scan rarely stops on a false candidate.
constexpr uint32_t record_magic = 0x52fe4bffu; // FF 'K' FE 'R' on disk
constexpr uint64_t record_header_size = 16;
// A corrupt length must not make the reader allocate wildly.
constexpr uint32_t max_record_payload = 256u << 20;

constexpr size_t scan_chunk = 64 * 1024;

// The CRC of a header: version 1 covers bytes 0..23, version 2 also 28..31.
uint32_t header_crc(const char* bytes, uint32_t version) {
  auto crc = crc32c(0, bytes, 24);
  return version == first_file_version ? crc : crc32c(crc, bytes + 28, 4);
}

// `records` records lie between `cursor` and `counted_end` (its low 32
// bits: where the file ended when they were counted).
std::string file_header(uint64_t cursor, uint64_t records, uint64_t counted_end) {
  std::string out{file_magic, sizeof(file_magic)};
  put_le32(out, file_version);
  put_le32(out, static_cast<uint32_t>(std::min<uint64_t>(records, UINT32_MAX)));
  put_le64(out, cursor);
  std::string end_low;
  put_le32(end_low, static_cast<uint32_t>(counted_end));
  put_le32(out, crc32c(crc32c(0, out.data(), out.size()), end_low.data(), end_low.size()));
  out += end_low;
  return out;
}

struct record_header {
  uint32_t size = 0;
  uint32_t crc = 0;
};

bool parse_record_header(const char* bytes, record_header& out) {
  if (get_le32(bytes) != record_magic || crc32c(0, bytes, 12) != get_le32(bytes + 12))
    return false;
  out.size = get_le32(bytes + 4);
  out.crc = get_le32(bytes + 8);
  return out.size <= max_record_payload;
}

std::string errno_text() {
  return std::strerror(errno);
}

} // namespace

std::string encode_spool_batch(const std::vector<routed_event>& events,
                               const std::vector<quarantine_note>& notes) {
  std::string out;
  put_le32(out, compact_marker);
  out += static_cast<char>(compact_version);
  put_varint(out, events.size());
  std::string fields;
  for (size_t i = 0; i < events.size(); ++i) {
    fields.clear();
    put_compact_event(fields, events[i], i > 0 ? &events[i - 1] : nullptr);
    if (i < notes.size())
      put_note(fields, notes[i], put_compact_field);
    put_varint(out, fields.size());
    out += fields;
  }
  return out;
}

std::string encode_spool_batch_v1(const std::vector<routed_event>& events,
                                  const std::vector<quarantine_note>& notes) {
  std::string out;
  put_le32(out, static_cast<uint32_t>(events.size()));
  std::string fields;
  for (size_t i = 0; i < events.size(); ++i) {
    const auto& r = events[i];
    fields.clear();
    put_field(fields, tag_workspace_id, r.workspace_id);
    char kind = static_cast<char>(r.ev.kind);
    put_field(fields, tag_kind, {&kind, 1});
    std::string timestamp;
    put_le64(timestamp, static_cast<uint64_t>(r.ev.timestamp));
    put_field(fields, tag_timestamp, timestamp);
    for (const auto& field : event_texts)
      put_field(fields, field.tag, r.ev.*field.member);
    if (i < notes.size())
      put_note(fields, notes[i], put_field);
    put_le32(out, static_cast<uint32_t>(fields.size()));
    out += fields;
  }
  return out;
}

// Every allocation is bounded by the payload's own size, so std::bad_alloc
// means that memory ran out, not that the record is bad: it propagates, and
// the record stays in the spool (skipping it as corrupt would lose events
// that were acknowledged).
bool decode_spool_batch(std::string_view payload, std::vector<routed_event>& out,
                        std::vector<quarantine_note>* notes) {
  reader in{payload};
  uint32_t first = 0;
  if (!in.u32(first))
    return false;
  bool compact = first == compact_marker;
  uint64_t count = first;
  if (compact) {
    uint8_t version = 0;
    if (!in.u8(version) || version != compact_version || !in.varint(count))
      return false;
  }
  // Each event takes at least its size: 4 bytes in version 1, 1 in 2.
  if (count > in.left() / (compact ? 1 : 4))
    return false;
  std::vector<routed_event> events;
  std::vector<quarantine_note> read_notes;
  bool noted = false;
  events.reserve(std::min<size_t>(static_cast<size_t>(count), 1024));
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t size = 0;
    uint32_t size32 = 0;
    std::string_view fields;
    events.emplace_back();
    read_notes.emplace_back();
    bool sized = compact ? in.varint(size) : (in.u32(size32) && ((size = size32), true));
    if (!sized || size > in.left() || !in.bytes(static_cast<size_t>(size), fields))
      return false;
    bool decoded =
      compact ? decode_compact_event(fields, events.back(),
                                     i > 0 ? &events[events.size() - 2] : nullptr,
                                     read_notes.back(), noted)
              : decode_event(fields, events.back(), read_notes.back(), noted);
    if (!decoded)
      return false;
  }
  if (in.left() != 0)
    return false;
  out = std::move(events);
  if (notes != nullptr) {
    notes->clear();
    if (noted)
      *notes = std::move(read_notes);
  }
  return true;
}

std::string writer_file(const std::string& dir, size_t writer, std::string_view suffix) {
  return (std::filesystem::path{dir} / ("writer-" + std::to_string(writer) + std::string{suffix}))
    .string();
}

std::optional<size_t> writer_of_file(std::string_view name, std::string_view suffix) {
  constexpr std::string_view prefix = "writer-";
  if (name.size() <= prefix.size() + suffix.size() || name.substr(0, prefix.size()) != prefix
      || name.substr(name.size() - suffix.size()) != suffix)
    return std::nullopt;
  auto digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  size_t writer = 0;
  auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), writer);
  // "writer-01.spool" is not writer 1's file: it would be adopted twice.
  if (error != std::errc{} || end != digits.data() + digits.size()
      || std::to_string(writer) != digits)
    return std::nullopt;
  return writer;
}

// -- spool_dir_lock --------------------------------------------------------------

spool_dir_lock::spool_dir_lock(const std::string& dir) {
  std::string clean = dir;
  while (clean.size() > 1 && clean.back() == '/')
    clean.pop_back();
  auto parent = std::filesystem::path{clean}.parent_path();
  std::error_code ec;
  if (!parent.empty())
    std::filesystem::create_directories(parent, ec);
  if (::mkdir(clean.c_str(), 0700) != 0 && errno != EEXIST)
    throw std::runtime_error("spool directory " + dir + " cannot be created: " + errno_text());
  auto lock_path = clean + "/kapso-ingest.lock";
  fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0)
    throw std::runtime_error("spool directory " + dir + ": cannot open " + lock_path + ": "
                             + errno_text());
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    char text[32] = {};
    auto n = ::pread(fd_, text, sizeof(text) - 1, 0);
    std::string pid;
    for (ssize_t i = 0; i < n && text[i] >= '0' && text[i] <= '9'; ++i)
      pid += text[i];
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK)
      throw std::runtime_error("spool directory " + dir + " is in use by another kapso-ingest"
                               + (pid.empty() ? std::string{} : " (pid " + pid + ")"));
    throw std::runtime_error("spool directory " + dir + " cannot be locked: "
                             + std::strerror(err));
  }
  // Only for the message a second process prints; the lock is the flock.
  auto pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || !write_all_at(fd_, pid, 0))
    spdlog::warn("spool directory {}: could not write the pid into {}", dir, lock_path);
}

spool_dir_lock::~spool_dir_lock() {
  // The file stays: unlinking it would let a third process lock a new file
  // while a second one still holds the old one.
  if (fd_ >= 0)
    ::close(fd_);
}

// -- spool -------------------------------------------------------------------------

spool::spool(std::string path, size_t max_bytes, access mode)
  : path_(std::move(path)), max_bytes_(max_bytes), cursor_(file_header_size),
    read_only_(mode == access::read_only) {
  fd_ = ::open(path_.c_str(), (read_only_ ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (fd_ < 0) {
    if (errno == ENOENT)
      return;
    throw std::runtime_error("spool " + path_ + " cannot be opened: " + errno_text());
  }
  try {
    open_existing();
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
}

void spool::open_existing() {
  directory_synced_ = true;
  struct stat st {};
  if (::fstat(fd_, &st) != 0)
    throw std::runtime_error("spool " + path_ + " cannot be read: " + errno_text());
  auto file_size = static_cast<uint64_t>(st.st_size);
  if (file_size == 0)
    return; // created, never written: the first append writes the header
  std::string header(file_header_size, '\0');
  auto readable = std::min(file_size, file_header_size);
  if (!read_at(0, header.data(), readable))
    throw std::runtime_error("spool " + path_ + " cannot be read: " + errno_text());
  if (file_size < file_header_size) {
    // The first append died while writing the header: nothing in it was
    // acknowledged. Anything else this short is not ours.
    auto head = std::string_view{header}.substr(0, readable);
    bool zeros = head.find_first_not_of('\0') == std::string_view::npos;
    bool ours = std::string_view{file_magic, sizeof(file_magic)}.substr(0, readable)
                == head.substr(0, std::min<uint64_t>(readable, sizeof(file_magic)));
    if (!zeros && !ours)
      throw std::runtime_error("spool " + path_ + " is not a kapso-ingest spool file; "
                               "refusing to touch it");
    if (!read_only_)
      spdlog::warn("spool {}: cut off a header that was never completed ({} bytes)", path_,
                   file_size);
    size_ = file_size;
    cut_to(0);
    return;
  }
  if (std::memcmp(header.data(), file_magic, sizeof(file_magic)) != 0)
    throw std::runtime_error("spool " + path_ + " is not a kapso-ingest spool file; "
                             "refusing to touch it");
  auto version = get_le32(header.data() + 8);
  if (version != file_version && version != first_file_version)
    throw std::runtime_error("spool " + path_ + " has format version " + std::to_string(version)
                             + "; this kapso-ingest reads versions "
                             + std::to_string(first_file_version) + " to "
                             + std::to_string(file_version) + ": refusing to touch it");
  size_ = file_size;
  auto cursor = get_le64(header.data() + 16);
  bool header_intact = header_crc(header.data(), version) == get_le32(header.data() + 24);
  if (!header_intact) {
    // Replaying from the start is harmless (every write is idempotent).
    spdlog::warn("spool {}: replay cursor unreadable (CRC mismatch), replaying from the start",
                 path_);
    cursor = file_header_size;
  } else if (cursor < file_header_size || cursor > file_size) {
    // Beyond the end: the file was emptied and the crash came before the
    // header said so.
    header_intact = false;
    cursor = file_header_size;
  }
  cursor_ = cursor;
  if (version == file_version && header_intact) {
    // Only the end of the file is read: where the last whole record ends,
    // and the records the header had not counted yet.
    find_end();
    count_since(get_le32(header.data() + 12), get_le32(header.data() + 28));
  } else {
    // Files of earlier builds, and a header that cannot be trusted: one
    // walk over every record after the cursor.
    scan_all();
  }
}

void spool::scan_all() {
  records_ = 0;
  // Count what is left, and cut off an append that never finished so the
  // next one is not glued to it. Corrupt records in between are left for
  // next() to skip, log and count.
  auto pos = cursor_;
  for (;;) {
    auto p = probe_at(pos, nullptr);
    switch (p.what) {
      case found::record:
      case found::corrupt:
        ++records_;
        pos = p.next;
        continue;
      case found::torn_tail:
        if (!read_only_)
          spdlog::warn("spool {}: cut off an unfinished record at offset {} ({} bytes, never "
                       "acknowledged): {}",
                       path_, pos, size_ - pos, p.reason);
        cut_to(pos);
        break;
      case found::garbage_tail:
        count_corrupt(pos, size_ - pos, p.reason);
        cut_to(pos);
        break;
      case found::io_error:
        throw std::runtime_error("spool " + path_ + " cannot be read at offset "
                                 + std::to_string(pos) + ": " + errno_text());
      case found::end: break;
    }
    break;
  }
}

std::optional<spool::located> spool::last_header(uint64_t below, uint64_t from) {
  if (size_ < record_header_size)
    return std::nullopt;
  auto top = std::min(below, size_ - record_header_size + 1); // candidates lie below
  std::string window;
  while (top > from) {
    auto start = top - from > scan_chunk ? top - scan_chunk : from;
    window.resize(static_cast<size_t>(top - start) + record_header_size - 1);
    if (!read_at(start, window.data(), window.size()))
      throw std::runtime_error("spool " + path_ + " cannot be read at offset "
                               + std::to_string(start) + ": " + errno_text());
    for (auto i = top - start; i-- > 0;) {
      record_header head;
      if (static_cast<unsigned char>(window[i]) == (record_magic & 0xffu)
          && parse_record_header(window.data() + i, head))
        return located{start + i, head.size, head.crc};
    }
    top = start;
  }
  return std::nullopt;
}

void spool::find_end() {
  auto last = last_header(size_, cursor_);
  while (last) {
    auto end = last->offset + record_header_size + last->size;
    if (end == size_)
      return; // the file ends where a record does
    if (end < size_) {
      bool io_ok = true;
      if (!payload_intact(last->offset + record_header_size, last->size, last->crc,
                          io_ok)) {
        if (!io_ok)
          throw std::runtime_error("spool " + path_ + " cannot be read: " + errno_text());
        return; // not a whole record either: next() skips what it cannot read
      }
      if (size_ - end < record_header_size) {
        if (!read_only_)
          spdlog::warn("spool {}: cut off an unfinished record at offset {} ({} bytes, never "
                       "acknowledged): incomplete record header",
                       path_, end, size_ - end);
      } else {
        count_corrupt(end, size_ - end,
                      "bad record header (magic, length or CRC) and no valid record after it");
      }
      cut_to(end);
      return;
    }
    // A record cut short: the crash of an append that was never
    // acknowledged, if it really starts a record — at the cursor, or where
    // the whole record before it ends.
    if (last->offset == cursor_) {
      cut_torn(last->offset);
      return;
    }
    auto before = last_header(last->offset, cursor_);
    if (!before)
      return; // nothing certain: next() resynchronises
    auto before_end = before->offset + record_header_size + before->size;
    if (before_end == last->offset) {
      bool io_ok = true;
      if (payload_intact(before->offset + record_header_size, before->size,
                         before->crc, io_ok))
        cut_torn(last->offset);
      else if (!io_ok)
        throw std::runtime_error("spool " + path_ + " cannot be read: " + errno_text());
      return;
    }
    if (before_end < last->offset)
      return; // nothing certain: next() resynchronises
    last = before; // the candidate lay inside this record's payload
  }
  // No record header after the cursor at all.
  if (size_ > cursor_) {
    if (size_ - cursor_ < record_header_size)
      cut_torn(cursor_);
    else {
      count_corrupt(cursor_, size_ - cursor_,
                    "bad record header (magic, length or CRC) and no valid record after it");
      cut_to(cursor_);
    }
  }
}

void spool::cut_torn(uint64_t at) {
  if (!read_only_)
    spdlog::warn("spool {}: cut off an unfinished record at offset {} ({} bytes, never "
                 "acknowledged)",
                 path_, at, size_ - at);
  cut_to(at);
}

void spool::count_since(uint32_t counted, uint32_t counted_end_low) {
  records_ = counted;
  // The header is written right after each record (same fdatasync), so at
  // most the last append is not counted, or counted but cut off above.
  auto ahead = static_cast<uint32_t>(static_cast<uint32_t>(size_) - counted_end_low);
  auto one_record = static_cast<uint32_t>(record_header_size + max_record_payload);
  if (ahead == 0)
    return;
  if (ahead <= one_record && ahead <= size_ - cursor_) {
    for (auto pos = size_ - ahead; pos < size_;) {
      auto p = probe_at(pos, nullptr);
      if (p.what != found::record && p.what != found::corrupt)
        break;
      ++records_;
      pos = p.next;
    }
    return;
  }
  if (static_cast<uint32_t>(0u - ahead) <= one_record) {
    if (records_ > 0)
      --records_;
    return;
  }
  spdlog::warn("spool {}: record count of the header does not fit the file, counting again",
               path_);
  scan_all();
}

spool::~spool() {
  if (fd_ >= 0)
    ::close(fd_);
}

spool::append_status spool::append(const std::vector<routed_event>& events,
                                   const std::vector<quarantine_note>& notes) {
  if (read_only_)
    return append_status::failed;
  auto payload = encode_spool_batch(events, notes);
  if (payload.size() > max_record_payload) {
    spdlog::error("spool {}: a batch of {} bytes is over the record limit", path_,
                  payload.size());
    return append_status::full;
  }
  // A file without a header gets it in the same write as its first record;
  // otherwise the header follows the record (its count of records), and
  // one fdatasync makes both durable.
  uint64_t base = size_;
  std::string head;
  put_le32(head, record_magic);
  put_le32(head, static_cast<uint32_t>(payload.size()));
  put_le32(head, crc32c(payload));
  put_le32(head, crc32c(head));
  auto frame_size = head.size() + payload.size() + (base == 0 ? file_header_size : 0);
  if (frame_size > max_bytes_ || base > max_bytes_ - frame_size)
    return append_status::full;
  auto end = base + frame_size;
  std::string frame =
    base == 0 ? file_header(file_header_size, 1, end) : std::string{};
  frame += head;
  frame += payload;
  if (fd_ < 0) {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0) {
      spdlog::error("spool {}: cannot create: {}", path_, errno_text());
      return append_status::failed;
    }
  }
  if (tail_dirty_ && !cut_to(size_))
    return append_status::failed;
  if (!write_all_at(fd_, frame, base)
      || (base != 0 && !write_all_at(fd_, file_header(cursor_, records_ + 1, end), 0))
      || ::fdatasync(fd_) != 0 || (!directory_synced_ && !sync_parent_directory(path_))) {
    spdlog::error("spool {}: append of {} bytes at offset {} failed: {}", path_, frame.size(),
                  base, errno_text());
    // The next record must not be glued to a fragment of this one, nor
    // the header count it.
    cut_to(base);
    if (base != 0)
      write_all_at(fd_, file_header(cursor_, records_, base), 0);
    return append_status::failed;
  }
  directory_synced_ = true;
  size_ = end;
  ++records_;
  return append_status::ok;
}

std::optional<spool::record> spool::next() {
  return read_from(cursor_);
}

std::optional<spool::record> spool::next_after(const record& previous) {
  return read_from(std::max(previous.end_offset, cursor_));
}

std::optional<spool::record> spool::read_from(uint64_t from) {
  if (fd_ < 0 || size_ == 0)
    return std::nullopt;
  bool at_cursor = from == cursor_;
  auto pos = from;
  std::string payload;
  for (bool done = false; !done;) {
    auto p = probe_at(pos, &payload);
    switch (p.what) {
      case found::record: {
        record r;
        if (!decode_spool_batch(payload, r.events, &r.notes)) {
          skipped(pos, p.next - pos, "payload is not a valid batch");
          pos = p.next;
          continue;
        }
        // Corrupt records before it are behind us for good.
        if (at_cursor && pos != cursor_)
          store_cursor(pos);
        r.offset = pos;
        r.end_offset = p.next;
        return r;
      }
      case found::corrupt:
        skipped(pos, p.next - pos, p.reason);
        pos = p.next;
        continue;
      case found::torn_tail:
        if (!read_only_)
          spdlog::warn("spool {}: cut off an unfinished record at offset {} ({} bytes): {}",
                       path_, pos, size_ - pos, p.reason);
        cut_to(pos);
        done = true;
        break;
      case found::garbage_tail:
        count_corrupt(pos, size_ - pos, p.reason);
        cut_to(pos);
        done = true;
        break;
      case found::io_error:
        // Skipping or cutting what could not be read might lose records.
        spdlog::error("spool {}: read failed at offset {}, replay stops here: {}", path_, pos,
                      errno_text());
        return std::nullopt;
      case found::end: done = true; break;
    }
  }
  // Everything from the cursor on is replayed or unreadable.
  if (at_cursor && (size_ > file_header_size || cursor_ != file_header_size))
    empty_file();
  return std::nullopt;
}

void spool::consumed(const record& r) {
  consumed(r, r, 1);
}

void spool::consumed(const record& first, const record& last, uint64_t count) {
  if (fd_ < 0 || first.offset != cursor_ || last.offset < first.offset
      || last.end_offset <= last.offset || last.end_offset > size_) {
    // Moving the cursor anywhere else could skip a record never replayed.
    spdlog::error("spool {}: consumed() of the records at offsets {}..{} while the cursor is "
                  "at {}: ignored",
                  path_, first.offset, last.offset, cursor_);
    return;
  }
  records_ -= std::min(records_, count);
  if (last.end_offset == size_)
    empty_file();
  else
    store_cursor(last.end_offset);
}

uint64_t spool::bytes() const noexcept {
  return size_ > cursor_ ? size_ - cursor_ : 0;
}

uint64_t spool::records() const noexcept {
  return records_;
}

uint64_t spool::file_bytes() const noexcept {
  return size_;
}

uint64_t spool::corrupt_records() const noexcept {
  return corrupt_;
}

const std::string& spool::path() const noexcept {
  return path_;
}

spool::probe spool::probe_at(uint64_t pos, std::string* payload) {
  if (pos >= size_)
    return {found::end, pos, ""};
  if (size_ - pos < record_header_size)
    return {found::torn_tail, size_, "incomplete record header"};
  char bytes[record_header_size];
  if (!read_at(pos, bytes, sizeof(bytes)))
    return {found::io_error, pos, ""};
  // What follows a record that cannot be read: the next valid one, found
  // byte by byte (a length is not trusted: an append glued to a torn
  // record would hide inside it), or nothing.
  auto skip = [&](const char* reason, found nothing_after, const char* tail_reason) -> probe {
    bool io_ok = true;
    auto next = resync(pos + 1, io_ok);
    if (!io_ok)
      return {found::io_error, pos, ""};
    if (next >= size_)
      return {nothing_after, size_, tail_reason};
    return {found::corrupt, next, reason};
  };
  record_header head;
  if (!parse_record_header(bytes, head))
    return skip("bad record header (magic, length or CRC)", found::garbage_tail,
                "bad record header (magic, length or CRC) and no valid record after it");
  auto end = pos + record_header_size + head.size;
  if (end > size_)
    return skip("record longer than the records after it", found::torn_tail,
                "payload shorter than its length");
  if (payload) {
    payload->resize(head.size);
    if (!read_at(pos + record_header_size, payload->data(), head.size))
      return {found::io_error, pos, ""};
    if (crc32c(*payload) != head.crc)
      return skip("payload CRC mismatch", found::garbage_tail,
                  "payload CRC mismatch and no valid record after it");
    return {found::record, end, ""};
  }
  bool io_ok = true;
  if (!payload_intact(pos + record_header_size, head.size, head.crc, io_ok))
    return io_ok ? skip("payload CRC mismatch", found::garbage_tail,
                        "payload CRC mismatch and no valid record after it")
                 : probe{found::io_error, pos, ""};
  return {found::record, end, ""};
}

uint64_t spool::resync(uint64_t from, bool& io_ok) {
  std::string window;
  auto pos = from;
  while (pos < size_ && size_ - pos >= record_header_size) {
    auto size = static_cast<size_t>(std::min<uint64_t>(size_ - pos, scan_chunk));
    window.resize(size);
    if (!read_at(pos, window.data(), size)) {
      io_ok = false;
      return size_;
    }
    for (size_t i = 0; i + record_header_size <= size; ++i) {
      record_header head;
      if (static_cast<unsigned char>(window[i]) != (record_magic & 0xffu)
          || !parse_record_header(window.data() + i, head))
        continue;
      auto candidate = pos + i;
      auto end = candidate + record_header_size + head.size;
      if (end <= size_ && payload_intact(candidate + record_header_size, head.size, head.crc, io_ok))
        return candidate;
      if (!io_ok)
        return size_;
    }
    // The last bytes of this window may start a header that ends in the next.
    pos += size - (record_header_size - 1);
  }
  return size_;
}

bool spool::payload_intact(uint64_t pos, uint32_t size, uint32_t crc, bool& io_ok) {
  char buffer[scan_chunk];
  uint32_t sum = 0;
  while (size > 0) {
    auto n = std::min<size_t>(size, sizeof(buffer));
    if (!read_at(pos, buffer, n)) {
      io_ok = false;
      return false;
    }
    sum = crc32c(sum, buffer, n);
    pos += n;
    size -= static_cast<uint32_t>(n);
  }
  return sum == crc;
}

bool spool::read_at(uint64_t pos, char* out, size_t size) {
  size_t done = 0;
  while (done < size) {
    auto n = ::pread(fd_, out + done, size - done, static_cast<off_t>(pos + done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      if (n == 0)
        errno = EIO; // shorter than we knew it: someone else cut it
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

void spool::store_cursor(uint64_t cursor) {
  cursor_ = cursor;
  if (read_only_)
    return;
  // A cursor that did not reach the disk only means a record replayed twice.
  if (!write_all_at(fd_, file_header(cursor, records_, size_), 0) || ::fdatasync(fd_) != 0)
    spdlog::warn("spool {}: replay cursor not saved: {}", path_, errno_text());
}

void spool::empty_file() {
  records_ = 0;
  skipped_until_ = 0;
  // Should the cut fail, the records behind the cursor are cut by the next
  // append (or replayed once more after a restart: harmless).
  cut_to(file_header_size);
  store_cursor(file_header_size);
}

bool spool::cut_to(uint64_t size) {
  size_ = size;
  // A reader beside the writer: what looks torn may be an append under way.
  if (read_only_)
    return true;
  if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
    spdlog::error("spool {}: cannot cut the file back to {} bytes: {}", path_, size,
                  errno_text());
    tail_dirty_ = true;
    return false;
  }
  tail_dirty_ = false;
  return true;
}

void spool::skipped(uint64_t pos, uint64_t size, const char* reason) {
  // Records read ahead are read again when their batch could not be
  // stored: a corrupt one is counted (and logged) once, and leaves the
  // record count (it was counted when it was appended) once.
  if (pos < skipped_until_)
    return;
  skipped_until_ = pos + size;
  count_corrupt(pos, size, reason);
  if (records_ > 0)
    --records_;
}

void spool::count_corrupt(uint64_t pos, uint64_t size, const char* reason) {
  ++corrupt_;
  spdlog::warn("spool {}: skipped a corrupt record at offset {} ({} bytes): {}", path_, pos,
               size, reason);
}

} // namespace kapso
