// The outage spool: payload codec, framing, torn and corrupt records, failed
// writes, the durable cursor and the directory lock (files in a temp dir).
#include "persistence/spool.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>

#include <boost/test/unit_test.hpp>

#include "persistence/crc32c.hpp"

using namespace kapso;
namespace fs = std::filesystem;

namespace {

// A private directory, removed with everything in it.
struct temp_dir {
  fs::path path;

  temp_dir() {
    auto pattern = (fs::temp_directory_path() / "kapso-spool-test-XXXXXX").string();
    BOOST_REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// Every field set, each to a value no other event or field has.
routed_event distinct_event(int n) {
  auto tag = [n](const char* field) { return std::string{field} + "-" + std::to_string(n); };
  routed_event r;
  r.workspace_id = tag("workspace");
  auto& e = r.ev;
  e.kind = event_kind::message_status;
  e.event_type = tag("event_type");
  e.phone_number_id = tag("phone_number_id");
  e.contact_key = tag("contact_key");
  e.contact_phone = tag("contact_phone");
  e.contact_bsuid = tag("contact_bsuid");
  e.contact_username = tag("contact_username");
  e.contact_name = tag("contact_name");
  e.whatsapp_conversation_id = tag("whatsapp_conversation_id");
  e.message_id = tag("message_id");
  e.timestamp = 1730000000 + n;
  e.direction = tag("direction");
  e.sender_type = tag("sender_type");
  e.message_type = tag("message_type");
  e.content = tag("content");
  e.preview = tag("preview");
  e.media_url = tag("media_url");
  e.metadata_json = tag("metadata_json");
  e.status = tag("status");
  e.status_error_json = tag("status_error_json");
  e.original_message_id = tag("original_message_id");
  e.new_contact_phone = tag("new_contact_phone");
  e.identity_hash = tag("identity_hash");
  return r;
}

void check_equal(const routed_event& x, const routed_event& y) {
  BOOST_TEST(x.workspace_id == y.workspace_id);
  const auto& a = x.ev;
  const auto& b = y.ev;
  BOOST_TEST(static_cast<int>(a.kind) == static_cast<int>(b.kind));
  BOOST_TEST(a.event_type == b.event_type);
  BOOST_TEST(a.phone_number_id == b.phone_number_id);
  BOOST_TEST(a.contact_key == b.contact_key);
  BOOST_TEST(a.contact_phone == b.contact_phone);
  BOOST_TEST(a.contact_bsuid == b.contact_bsuid);
  BOOST_TEST(a.contact_username == b.contact_username);
  BOOST_TEST(a.contact_name == b.contact_name);
  BOOST_TEST(a.whatsapp_conversation_id == b.whatsapp_conversation_id);
  BOOST_TEST(a.message_id == b.message_id);
  BOOST_TEST(a.timestamp == b.timestamp);
  BOOST_TEST(a.direction == b.direction);
  BOOST_TEST(a.sender_type == b.sender_type);
  BOOST_TEST(a.message_type == b.message_type);
  BOOST_TEST(a.content == b.content);
  BOOST_TEST(a.preview == b.preview);
  BOOST_TEST(a.media_url == b.media_url);
  BOOST_TEST(a.metadata_json == b.metadata_json);
  BOOST_TEST(a.status == b.status);
  BOOST_TEST(a.status_error_json == b.status_error_json);
  BOOST_TEST(a.original_message_id == b.original_message_id);
  BOOST_TEST(a.new_contact_phone == b.new_contact_phone);
  BOOST_TEST(a.identity_hash == b.identity_hash);
}

void check_equal(const std::vector<routed_event>& x, const std::vector<routed_event>& y) {
  BOOST_REQUIRE_EQUAL(x.size(), y.size());
  for (size_t i = 0; i < x.size(); ++i)
    check_equal(x[i], y[i]);
}

// Batch `n` of a test: a few events, distinct from every other batch.
std::vector<routed_event> batch(int n, int events = 2) {
  std::vector<routed_event> out;
  for (int i = 0; i < events; ++i)
    out.push_back(distinct_event(n * 100 + i));
  return out;
}

// Replays everything, as the writer does.
std::vector<std::vector<routed_event>> drain(spool& s) {
  std::vector<std::vector<routed_event>> out;
  while (auto r = s.next()) {
    out.push_back(r->events);
    s.consumed(*r);
  }
  return out;
}

struct span {
  uint64_t offset;
  uint64_t end;
};

// Where each record of the file at `path` lies, read from a copy.
std::vector<span> record_spans(const std::string& path) {
  auto copy = path + ".copy";
  fs::copy_file(path, copy, fs::copy_options::overwrite_existing);
  std::vector<span> out;
  {
    spool s{copy, std::numeric_limits<size_t>::max()};
    while (auto r = s.next()) {
      out.push_back({r->offset, r->end_offset});
      s.consumed(*r);
    }
  }
  fs::remove(copy);
  return out;
}

uint64_t size_on_disk(const std::string& path) {
  return fs::file_size(path);
}

void flip_byte(const std::string& path, uint64_t offset) {
  int fd = ::open(path.c_str(), O_RDWR);
  BOOST_REQUIRE(fd >= 0);
  unsigned char byte = 0;
  BOOST_REQUIRE(::pread(fd, &byte, 1, static_cast<off_t>(offset)) == 1);
  byte ^= 0x5a;
  BOOST_REQUIRE(::pwrite(fd, &byte, 1, static_cast<off_t>(offset)) == 1);
  ::close(fd);
}

std::string read_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

constexpr size_t unlimited = std::numeric_limits<size_t>::max();

} // namespace

BOOST_AUTO_TEST_SUITE(spool_codec)

BOOST_AUTO_TEST_CASE(crc32c_known_value_and_streaming) {
  // The check value of CRC-32C (RFC 3720 appendix B.4 family).
  BOOST_TEST(crc32c(std::string_view{"123456789"}) == 0xe3069283u);
  std::string text(1000, '\0');
  for (size_t i = 0; i < text.size(); ++i)
    text[i] = static_cast<char>(i * 7 + 3);
  auto whole = crc32c(text);
  for (size_t cut : {0, 1, 7, 8, 9, 500, 999, 1000})
    BOOST_TEST(crc32c(crc32c(0, text.data(), cut), text.data() + cut, text.size() - cut)
               == whole);
}

BOOST_AUTO_TEST_CASE(round_trip_keeps_every_field) {
  std::vector<routed_event> events{distinct_event(1), distinct_event(2)};
  // Empty strings everywhere, the other kind values, extreme timestamps.
  routed_event empty;
  empty.ev.metadata_json.clear();
  empty.ev.timestamp = std::numeric_limits<int64_t>::min();
  events.push_back(empty);
  for (int kind = 0; kind <= static_cast<int>(last_event_kind); ++kind) {
    auto r = distinct_event(10 + kind);
    r.ev.kind = static_cast<event_kind>(kind);
    r.ev.timestamp = kind % 2 ? std::numeric_limits<int64_t>::max() : -kind;
    events.push_back(r);
  }
  // Bytes that are not UTF-8, and NULs inside strings.
  auto binary = distinct_event(30);
  binary.ev.content = std::string{"\xff\xfe\x00\x80 \xc3\x28 end", 12};
  binary.ev.contact_name = std::string(3, '\0');
  binary.workspace_id = "\xed\xa0\x80";
  events.push_back(binary);
  // A large field.
  auto large = distinct_event(31);
  large.ev.metadata_json = std::string(3 << 20, 'm');
  events.push_back(large);

  // Both encodings: version 2 is written, version 1 (builds up to 0.3.0)
  // still read.
  for (const auto& payload : {encode_spool_batch(events), encode_spool_batch_v1(events)}) {
    std::vector<routed_event> decoded;
    BOOST_REQUIRE(decode_spool_batch(payload, decoded));
    check_equal(decoded, events);
  }
  for (const auto& payload : {encode_spool_batch({}), encode_spool_batch_v1({})}) {
    std::vector<routed_event> none;
    BOOST_REQUIRE(decode_spool_batch(payload, none));
    BOOST_TEST(none.empty());
  }
}

// What webhook traffic looks like: the same workspace, type and number in
// every event of a batch, the preview equal to the text, the phone equal to
// the contact key, many fields empty.
std::vector<routed_event> webhook_batch(int events) {
  std::vector<routed_event> out;
  for (int i = 0; i < events; ++i) {
    routed_event r;
    r.workspace_id = "0b6f6c4e-8d1a-4a57-9f0e-3c2d1b0a9f8e";
    auto& e = r.ev;
    e.kind = event_kind::message_received;
    e.event_type = "whatsapp.message.received";
    e.phone_number_id = "123456789012345";
    e.contact_key = "+1555000" + std::to_string(1000 + i);
    e.contact_phone = e.contact_key;
    e.contact_name = "Customer " + std::to_string(i);
    e.whatsapp_conversation_id = "conv-" + std::to_string(i);
    e.message_id = "wamid.HBgLMTU1NTAwMDEwMDAVAgASGBQzQTk" + std::to_string(100000 + i);
    e.timestamp = 1730092801 + i;
    e.direction = "inbound";
    e.sender_type = "contact";
    e.message_type = "text";
    e.content = "Hello, I would like to know whether my order number " + std::to_string(i)
                + " has shipped";
    e.preview = e.content;
    e.metadata_json = "{}";
    e.status = "received";
    out.push_back(r);
  }
  return out;
}

BOOST_AUTO_TEST_CASE(the_compact_encoding_repeats_nothing_it_can_refer_to) {
  for (int n : {1, 10}) {
    auto events = webhook_batch(n);
    auto compact = encode_spool_batch(events);
    auto full = encode_spool_batch_v1(events);
    std::vector<routed_event> decoded;
    BOOST_REQUIRE(decode_spool_batch(compact, decoded));
    check_equal(decoded, events);
    BOOST_TEST_MESSAGE(n << " events: " << compact.size() / n << " bytes per event (version 1: "
                          << full.size() / n << ")");
    // Less than two thirds of version 1 for a single event, and less than
    // half within a batch, where the workspace, type and number repeat.
    BOOST_TEST(compact.size() * 3 < full.size() * 2, compact.size() << " vs " << full.size());
    if (n > 1)
      BOOST_TEST(compact.size() * 2 < full.size(), compact.size() << " vs " << full.size());
  }
  // A field equal to the previous event's, then different again; a
  // preview that is not the text; a phone that is not the key.
  auto events = webhook_batch(3);
  events[1].ev.preview = "cut";
  events[2].workspace_id = "other";
  events[2].ev.contact_phone.clear();
  events[2].ev.metadata_json.clear();
  std::vector<routed_event> decoded;
  BOOST_REQUIRE(decode_spool_batch(encode_spool_batch(events), decoded));
  check_equal(decoded, events);
}

BOOST_AUTO_TEST_CASE(decoding_rejects_what_is_not_an_encoding) {
  std::vector<routed_event> out{distinct_event(99)};
  for (const auto& payload : {encode_spool_batch(batch(1, 3)), encode_spool_batch_v1(batch(1, 3))}) {
    // Every truncation, and a byte too many.
    for (size_t size = 0; size < payload.size(); ++size)
      BOOST_TEST(!decode_spool_batch(std::string_view{payload}.substr(0, size), out), size);
    BOOST_TEST(!decode_spool_batch(payload + "x", out));
  }
  // A count no payload of this size can hold: version 1's is bytes 0..3,
  // version 2's the varint after its marker and version byte.
  auto counted = encode_spool_batch_v1(batch(1, 3));
  counted[3] = '\x7f';
  BOOST_TEST(!decode_spool_batch(counted, out));
  counted = encode_spool_batch(batch(1, 3));
  BOOST_REQUIRE(counted[5] == 3);
  counted[5] = '\x7f';
  BOOST_TEST(!decode_spool_batch(counted, out));
  // A version 2 payload of another version.
  auto other_version = encode_spool_batch(batch(1, 3));
  other_version[4] = 3;
  BOOST_TEST(!decode_spool_batch(other_version, out));
  // A kind past the last one: the kind field (tag 2, length 1) follows the
  // workspace id field of the first event.
  auto one = batch(1, 1);
  auto bad_kind = encode_spool_batch_v1(one);
  auto at = 4 + 4 + 5 + one[0].workspace_id.size();
  BOOST_REQUIRE(bad_kind[at] == 2);
  bad_kind[at + 5] = static_cast<char>(static_cast<int>(last_event_kind) + 1);
  BOOST_TEST(!decode_spool_batch(bad_kind, out));
  bad_kind = encode_spool_batch(one);
  at = bad_kind.find(std::string{"\x02\x01", 2}, 6);
  BOOST_REQUIRE(at != std::string::npos);
  bad_kind[at + 2] = static_cast<char>(static_cast<int>(last_event_kind) + 1);
  BOOST_TEST(!decode_spool_batch(bad_kind, out));
  // "As in the previous event" (tag | 0x80) is valid for a text field of a
  // second event (here the workspace id, tag 1, after an event that only
  // has a kind), not in the first event nor for the kind (tag 2).
  std::string marker{"\xff\xff\xff\xff\x02", 5};
  std::string kind_only{"\x03\x02\x01\x00", 4};
  std::vector<routed_event> control;
  BOOST_REQUIRE(decode_spool_batch(marker + '\x02' + kind_only + std::string{"\x01\x81", 2},
                                   control));
  BOOST_TEST(control.size() == 2u);
  BOOST_TEST(!decode_spool_batch(marker + std::string{"\x01\x01\x81", 3}, out));
  BOOST_TEST(!decode_spool_batch(marker + '\x02' + kind_only + std::string{"\x01\x82", 2}, out));
  // `out` untouched by every failure.
  BOOST_REQUIRE_EQUAL(out.size(), 1u);
  check_equal(out[0], distinct_event(99));
}

BOOST_AUTO_TEST_CASE(quarantine_notes_ride_along_and_plain_readers_skip_them) {
  auto events = batch(2, 2);
  std::vector<quarantine_note> notes{{"SQLSTATE XX000: poison", 5, 1760000000},
                                     {"", 0, -1}};
  auto noted = encode_spool_batch(events, notes);
  std::vector<routed_event> decoded;
  std::vector<quarantine_note> read;
  BOOST_REQUIRE(decode_spool_batch(noted, decoded, &read));
  check_equal(decoded, events);
  BOOST_REQUIRE_EQUAL(read.size(), 2u);
  for (size_t i = 0; i < notes.size(); ++i) {
    BOOST_TEST(read[i].reason == notes[i].reason);
    BOOST_TEST(read[i].attempts == notes[i].attempts);
    BOOST_TEST(read[i].quarantined_at == notes[i].quarantined_at);
  }
  // A reader that does not ask for notes reads the same events: a
  // quarantine record replays like a spool record.
  std::vector<routed_event> plain;
  BOOST_REQUIRE(decode_spool_batch(noted, plain));
  check_equal(plain, events);
  // The spool's own records are what they were, and carry no notes.
  BOOST_TEST(encode_spool_batch(events, {}) == encode_spool_batch(events));
  read.push_back({});
  BOOST_REQUIRE(decode_spool_batch(encode_spool_batch(events), decoded, &read));
  BOOST_TEST(read.empty());
  // A note field of the wrong size is not an encoding: attempts (tag 5)
  // must be 4 bytes. Its field sits right before the quarantine time field.
  auto one = batch(3, 1);
  auto bad = encode_spool_batch(one, {{"r", 1, 2}});
  auto at = bad.size() - (2 + 8) - (2 + 4);
  BOOST_REQUIRE(bad[at] == 5);
  bad[at + 1] = 3; // length 3 instead of 4, one byte left over for the next field
  BOOST_TEST(!decode_spool_batch(bad, decoded, &read));
  BOOST_TEST(!decode_spool_batch(bad, decoded));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(spool_file)

BOOST_AUTO_TEST_CASE(writer_files_are_named_by_writer_and_kind) {
  BOOST_TEST(writer_file("dir", 3, spool_file_suffix) == "dir/writer-3.spool");
  BOOST_TEST(writer_file("dir/", 0, quarantine_file_suffix) == "dir/writer-0.quarantine");
  BOOST_TEST(writer_of_file("writer-3.spool", spool_file_suffix).value_or(0) == 3u);
  BOOST_TEST(writer_of_file("writer-12.quarantine", quarantine_file_suffix).value_or(0) == 12u);
  for (const char* other : {"writer-3.quarantine", "writer-03.spool", "writer-.spool",
                            "writer-3.spool.tmp", "writer-x.spool", "kapso-ingest.lock",
                            "writer--1.spool", "writer-3"})
    BOOST_TEST(!writer_of_file(other, spool_file_suffix).has_value(), other);
}

BOOST_AUTO_TEST_CASE(a_read_only_reader_never_changes_the_file) {
  temp_dir dir;
  auto path = dir.file("writer-0.quarantine");
  {
    spool s{path, unlimited};
    BOOST_REQUIRE(s.append(batch(1), {{"a", 1, 1}, {"b", 2, 2}}) == spool::append_status::ok);
    BOOST_REQUIRE(s.append(batch(2)) == spool::append_status::ok);
  }
  // An append under way in another process: a torn tail to a writer.
  {
    std::ofstream out{path, std::ios::binary | std::ios::app};
    out << std::string("\xff\x4b\xfe\x52\x10\x00", 6);
  }
  auto before = read_file(path);
  {
    spool reader{path, unlimited, spool::access::read_only};
    auto first = reader.next();
    BOOST_REQUIRE(first.has_value());
    check_equal(first->events, batch(1));
    BOOST_REQUIRE_EQUAL(first->notes.size(), 2u);
    BOOST_TEST(first->notes[1].reason == "b");
    reader.consumed(*first);
    auto second = reader.next();
    BOOST_REQUIRE(second.has_value());
    BOOST_TEST(second->notes.empty());
    reader.consumed(*second);
    BOOST_TEST(!reader.next().has_value());
    BOOST_TEST((reader.append(batch(3)) == spool::append_status::failed));
  }
  BOOST_TEST(read_file(path) == before, "the read-only reader changed the file");
  // The writer itself cuts the torn tail and still has both records.
  spool writer{path, unlimited};
  BOOST_TEST(writer.records() == 2u);
}

BOOST_AUTO_TEST_CASE(missing_file_is_empty_and_created_mode_0600_on_first_append) {
  temp_dir dir;
  auto path = dir.file("writer-0.spool");
  spool s{path, unlimited};
  BOOST_TEST(s.empty());
  BOOST_TEST(s.file_bytes() == 0u);
  BOOST_TEST(!s.next().has_value());
  BOOST_TEST(!fs::exists(path));
  BOOST_REQUIRE(s.append(batch(1)) == spool::append_status::ok);
  struct stat st {};
  BOOST_REQUIRE(::stat(path.c_str(), &st) == 0);
  BOOST_TEST((st.st_mode & 0777) == 0600u);
  BOOST_TEST(s.records() == 1u);
  BOOST_TEST(s.file_bytes() == size_on_disk(path));

  // An existing empty file is as good as none.
  auto empty_path = dir.file("empty.spool");
  std::ofstream{empty_path}.close();
  spool e{empty_path, unlimited};
  BOOST_TEST(e.empty());
  BOOST_REQUIRE(e.append(batch(2)) == spool::append_status::ok);
  spool reopened{empty_path, unlimited};
  auto replayed = drain(reopened);
  BOOST_REQUIRE_EQUAL(replayed.size(), 1u);
  check_equal(replayed[0], batch(2));
}

BOOST_AUTO_TEST_CASE(batches_come_back_in_order_after_a_reopen) {
  temp_dir dir;
  auto path = dir.file("s");
  {
    spool s{path, unlimited};
    for (int n = 1; n <= 3; ++n)
      BOOST_REQUIRE(s.append(batch(n, n)) == spool::append_status::ok);
  }
  spool s{path, unlimited};
  BOOST_TEST(s.records() == 3u);
  BOOST_TEST(s.bytes() > 0u);
  // Without consumed(), next() stays on the same record.
  auto first = s.next();
  auto again = s.next();
  BOOST_REQUIRE(first && again);
  BOOST_TEST(first->offset == again->offset);
  auto replayed = drain(s);
  BOOST_REQUIRE_EQUAL(replayed.size(), 3u);
  for (int n = 1; n <= 3; ++n)
    check_equal(replayed[n - 1], batch(n, n));
  BOOST_TEST(s.empty());
  BOOST_TEST(s.bytes() == 0u);
  BOOST_TEST(s.corrupt_records() == 0u);
}

BOOST_AUTO_TEST_CASE(cursor_survives_a_restart_and_the_drained_file_is_emptied) {
  temp_dir dir;
  auto path = dir.file("s");
  uint64_t header_only = 0;
  {
    spool s{path, unlimited};
    for (int n = 1; n <= 6; ++n)
      BOOST_REQUIRE(s.append(batch(n)) == spool::append_status::ok);
    for (int n = 1; n <= 3; ++n) {
      auto r = s.next();
      BOOST_REQUIRE(r);
      check_equal(r->events, batch(n));
      s.consumed(*r);
    }
    BOOST_TEST(s.records() == 3u);
  }
  {
    spool s{path, unlimited};
    BOOST_TEST(s.records() == 3u);
    auto r = s.next();
    BOOST_REQUIRE(r);
    check_equal(r->events, batch(4));
    // A record replayed but not marked consumed comes again after a crash.
  }
  {
    spool s{path, unlimited};
    auto replayed = drain(s);
    BOOST_REQUIRE_EQUAL(replayed.size(), 3u);
    for (int n = 4; n <= 6; ++n)
      check_equal(replayed[n - 4], batch(n));
    header_only = s.file_bytes();
    BOOST_TEST(header_only == size_on_disk(path));
    BOOST_TEST(s.bytes() == 0u);
  }
  spool s{path, unlimited};
  BOOST_TEST(s.empty());
  BOOST_TEST(!s.next().has_value());
  // The emptied file takes new records as before.
  BOOST_REQUIRE(s.append(batch(7)) == spool::append_status::ok);
  BOOST_TEST(s.file_bytes() > header_only);
  auto replayed = drain(s);
  BOOST_REQUIRE_EQUAL(replayed.size(), 1u);
  check_equal(replayed[0], batch(7));
}

BOOST_AUTO_TEST_CASE(torn_tail_is_cut_off_and_the_next_append_is_readable) {
  temp_dir dir;
  auto path = dir.file("s");
  {
    spool s{path, unlimited};
    for (int n = 1; n <= 3; ++n)
      BOOST_REQUIRE(s.append(batch(n)) == spool::append_status::ok);
  }
  auto spans = record_spans(path);
  BOOST_REQUIRE_EQUAL(spans.size(), 3u);
  // A crash in the middle of the third record's payload, then one in the
  // middle of a header.
  for (uint64_t cut : {spans[2].end - 5, spans[2].offset + 7}) {
    fs::resize_file(path, cut);
    spool s{path, unlimited};
    BOOST_TEST(s.records() == 2u);
    BOOST_TEST(size_on_disk(path) == spans[1].end);
    BOOST_TEST(s.file_bytes() == spans[1].end);
    BOOST_TEST(s.corrupt_records() == 0u);
    BOOST_REQUIRE(s.append(batch(3)) == spool::append_status::ok);
  }
  spool s{path, unlimited};
  auto replayed = drain(s);
  BOOST_REQUIRE_EQUAL(replayed.size(), 3u);
  for (int n = 1; n <= 3; ++n)
    check_equal(replayed[n - 1], batch(n));
  BOOST_TEST(s.corrupt_records() == 0u);
}

BOOST_AUTO_TEST_CASE(corrupt_payload_byte_is_skipped_and_counted) {
  temp_dir dir;
  auto path = dir.file("s");
  {
    spool s{path, unlimited};
    for (int n = 1; n <= 3; ++n)
      BOOST_REQUIRE(s.append(batch(n)) == spool::append_status::ok);
  }
  auto spans = record_spans(path);
  BOOST_REQUIRE_EQUAL(spans.size(), 3u);
  flip_byte(path, spans[1].end - 1);
  spool s{path, unlimited};
  // Opening reads no record: the count is the header's, and the corrupt
  // record leaves it when the replay skips it.
  BOOST_TEST(s.records() == 3u);
  BOOST_TEST(s.corrupt_records() == 0u);
  auto replayed = drain(s);
  BOOST_REQUIRE_EQUAL(replayed.size(), 2u);
  check_equal(replayed[0], batch(1));
  check_equal(replayed[1], batch(3));
  BOOST_TEST(s.corrupt_records() == 1u);
  BOOST_TEST(s.empty());
}

BOOST_AUTO_TEST_CASE(corrupt_length_resynchronises_on_the_next_record) {
  temp_dir dir;
  auto path = dir.file("s");
  {
    spool s{path, unlimited};
    for (int n = 1; n <= 4; ++n)
      BOOST_REQUIRE(s.append(batch(n)) == spool::append_status::ok);
  }
  auto spans = record_spans(path);
  BOOST_REQUIRE_EQUAL(spans.size(), 4u);
  // Bytes 4..7 of a record header are the payload length (spool.cpp):
  // the second record's length and the last record's.
  flip_byte(path, spans[1].offset + 4);
  flip_byte(path, spans[3].offset + 5);
  uint64_t corrupt_at_open = 0;
  {
    spool s{path, unlimited};
    // The last record has nothing valid after it: cut off when opening (and
    // out of the header's count); the second is found by the replay.
    BOOST_TEST(s.records() == 3u);
    corrupt_at_open = s.corrupt_records();
    BOOST_TEST(corrupt_at_open == 1u);
    BOOST_TEST(s.file_bytes() == spans[2].end);
    auto replayed = drain(s);
    BOOST_REQUIRE_EQUAL(replayed.size(), 2u);
    check_equal(replayed[0], batch(1));
    check_equal(replayed[1], batch(3));
    BOOST_TEST(s.corrupt_records() == 2u);
  }
  spool s{path, unlimited};
  BOOST_TEST(s.empty());
  BOOST_TEST(s.corrupt_records() == 0u);
}

BOOST_AUTO_TEST_CASE(opening_reads_the_header_and_the_end_not_the_records) {
  temp_dir dir;
  auto path = dir.file("s");
  {
    spool s{path, unlimited};
    for (int n = 1; n <= 50; ++n)
      BOOST_REQUIRE(s.append(batch(n)) == spool::append_status::ok);
  }
  auto spans = record_spans(path);
  BOOST_REQUIRE_EQUAL(spans.size(), 50u);
  flip_byte(path, spans[24].end - 3);
  spool s{path, unlimited};
  BOOST_TEST(s.records() == 50u);
  BOOST_TEST(s.corrupt_records() == 0u, "opening read the middle of the file");
  BOOST_TEST(s.bytes() == spans[49].end - spans[0].offset);
  auto replayed = drain(s);
  BOOST_REQUIRE_EQUAL(replayed.size(), 49u);
  check_equal(replayed[24], batch(26));
  BOOST_TEST(s.corrupt_records() == 1u);
  BOOST_TEST(s.records() == 0u);
}

// A crash between an append's record and its header (one fdatasync for
// both): the record is there, the count is one short.
BOOST_AUTO_TEST_CASE(a_record_the_header_did_not_count_yet_is_counted_at_open) {
  temp_dir dir;
  auto path = dir.file("s");
  std::string header_before;
  {
    spool s{path, unlimited};
    for (int n = 1; n <= 2; ++n)
      BOOST_REQUIRE(s.append(batch(n)) == spool::append_status::ok);
    header_before = read_file(path).substr(0, 32);
    BOOST_REQUIRE(s.append(batch(3)) == spool::append_status::ok);
  }
  {
    int fd = ::open(path.c_str(), O_RDWR);
    BOOST_REQUIRE(fd >= 0);
    BOOST_REQUIRE(::pwrite(fd, header_before.data(), 32, 0) == 32);
    ::close(fd);
  }
  spool s{path, unlimited};
  BOOST_TEST(s.records() == 3u);
  auto replayed = drain(s);
  BOOST_REQUIRE_EQUAL(replayed.size(), 3u);
  check_equal(replayed[2], batch(3));
}

// A torn record that cannot be told from a corrupt one at open (the record
// before it is corrupt too) and a whole record appended after it: the
// replay finds the appended record instead of following the torn one's
// length past it.
BOOST_AUTO_TEST_CASE(a_record_glued_to_a_torn_one_is_not_hidden_by_its_length) {
  temp_dir dir;
  auto donor = dir.file("donor");
  {
    spool s{donor, unlimited};
    BOOST_REQUIRE(s.append(batch(1)) == spool::append_status::ok);
    BOOST_REQUIRE(s.append(batch(4, 1)) == spool::append_status::ok);
  }
  auto donor_spans = record_spans(donor);
  auto fourth = read_file(donor).substr(donor_spans[1].offset,
                                        donor_spans[1].end - donor_spans[1].offset);
  auto path = dir.file("s");
  {
    spool s{path, unlimited};
    BOOST_REQUIRE(s.append(batch(1)) == spool::append_status::ok);
    BOOST_REQUIRE(s.append(batch(2)) == spool::append_status::ok);
    BOOST_REQUIRE(s.append(batch(3, 40)) == spool::append_status::ok);
  }
  auto spans = record_spans(path);
  flip_byte(path, spans[1].end - 2);
  fs::resize_file(path, spans[2].offset + (spans[2].end - spans[2].offset) / 2);
  {
    std::ofstream out{path, std::ios::binary | std::ios::app};
    out << fourth;
  }
  spool s{path, unlimited};
  auto replayed = drain(s);
  BOOST_REQUIRE_EQUAL(replayed.size(), 2u);
  check_equal(replayed[0], batch(1));
  check_equal(replayed[1], batch(4, 1));
  BOOST_TEST(s.corrupt_records() == 1u);
}

BOOST_AUTO_TEST_CASE(a_run_read_ahead_is_consumed_with_one_cursor_write) {
  temp_dir dir;
  auto path = dir.file("s");
  {
    spool s{path, unlimited};
    for (int n = 1; n <= 5; ++n)
      BOOST_REQUIRE(s.append(batch(n)) == spool::append_status::ok);
    auto first = s.next();
    BOOST_REQUIRE(first);
    auto second = s.next_after(*first);
    BOOST_REQUIRE(second);
    auto third = s.next_after(*second);
    BOOST_REQUIRE(third);
    check_equal(second->events, batch(2));
    check_equal(third->events, batch(3));
    // Reading ahead moves nothing.
    BOOST_TEST(s.next()->offset == first->offset);
    BOOST_TEST(s.records() == 5u);
    s.consumed(*first, *third, 3);
    BOOST_TEST(s.records() == 2u);
    auto fifth = s.next_after(*s.next());
    BOOST_REQUIRE(fifth);
    BOOST_TEST(!s.next_after(*fifth).has_value());
    BOOST_TEST(s.records() == 2u, "reading ahead to the end emptied the file");
  }
  spool s{path, unlimited};
  BOOST_TEST(s.records() == 2u);
  auto replayed = drain(s);
  BOOST_REQUIRE_EQUAL(replayed.size(), 2u);
  check_equal(replayed[0], batch(4));
  check_equal(replayed[1], batch(5));
}

// tests/fixtures/spool-v1 was written by the spool of builds up to 0.3.0
// (file header version 1, payload encoding 1): four batches of 1..4 events
// made by fixture_event(10 * b + i), the first replayed already (the cursor
// is past it), the last with an empty content and metadata in its second
// event; and a quarantine file of one event with its note.
routed_event fixture_event(int n) {
  auto r = distinct_event(n);
  r.ev.kind = static_cast<event_kind>(n % (static_cast<int>(last_event_kind) + 1));
  return r;
}

std::vector<routed_event> fixture_batch(int b) {
  std::vector<routed_event> out;
  for (int i = 0; i <= b; ++i)
    out.push_back(fixture_event(b * 10 + i));
  if (b == 3) {
    out[1].ev.metadata_json.clear();
    out[1].ev.content.clear();
  }
  return out;
}

BOOST_AUTO_TEST_CASE(files_of_earlier_builds_still_replay) {
  temp_dir dir;
  auto fixtures = fs::path{KAPSO_SOURCE_DIR} / "tests/fixtures/spool-v1";
  fs::copy_file(fixtures / "writer-0.spool", dir.file("writer-0.spool"));
  fs::copy_file(fixtures / "writer-0.quarantine", dir.file("writer-0.quarantine"));
  auto path = dir.file("writer-0.spool");
  {
    spool s{path, unlimited};
    BOOST_TEST(s.records() == 3u);
    auto first = s.next();
    BOOST_REQUIRE(first);
    check_equal(first->events, fixture_batch(1));
    s.consumed(*first);
    // A new record (of this build's encoding) after the old ones.
    BOOST_REQUIRE(s.append(batch(7)) == spool::append_status::ok);
  }
  spool s{path, unlimited};
  BOOST_TEST(s.records() == 3u);
  auto replayed = drain(s);
  BOOST_REQUIRE_EQUAL(replayed.size(), 3u);
  check_equal(replayed[0], fixture_batch(2));
  check_equal(replayed[1], fixture_batch(3));
  check_equal(replayed[2], batch(7));
  BOOST_TEST(s.corrupt_records() == 0u);

  spool quarantine{dir.file("writer-0.quarantine"), unlimited, spool::access::read_only};
  auto noted = quarantine.next();
  BOOST_REQUIRE(noted);
  check_equal(noted->events, {fixture_event(77)});
  BOOST_REQUIRE_EQUAL(noted->notes.size(), 1u);
  BOOST_TEST(noted->notes[0].reason == "SQLSTATE XX000: poison");
  BOOST_TEST(noted->notes[0].attempts == 5u);
  BOOST_TEST(noted->notes[0].quarantined_at == 1760000000);
}

BOOST_AUTO_TEST_CASE(failed_write_is_cut_back_to_the_last_whole_record) {
  temp_dir dir;
  auto path = dir.file("s");
  uint64_t before = 0;
  {
    spool s{path, unlimited};
    for (int n = 1; n <= 2; ++n)
      BOOST_REQUIRE(s.append(batch(n)) == spool::append_status::ok);
    before = s.file_bytes();
  }
  // A file-size limit a couple of kilobytes past the end: the write of a large
  // record stops part-way with EFBIG (SIGXFSZ ignored, as the server does).
  pid_t child = ::fork();
  BOOST_REQUIRE(child >= 0);
  if (child == 0) {
    std::signal(SIGXFSZ, SIG_IGN);
    rlimit limit{};
    ::getrlimit(RLIMIT_FSIZE, &limit);
    limit.rlim_cur = static_cast<rlim_t>(before + 2000);
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0)
      ::_exit(10);
    spool s{path, unlimited};
    auto big = batch(3, 50);
    auto status = s.append(big);
    if (status != spool::append_status::failed)
      ::_exit(11);
    if (fs::file_size(path) != before || s.file_bytes() != before || s.records() != 2)
      ::_exit(12);
    // A small record still fits under the limit and lands whole.
    if (s.append(batch(4, 1)) != spool::append_status::ok)
      ::_exit(13);
    ::_exit(0);
  }
  int status = 0;
  BOOST_REQUIRE(::waitpid(child, &status, 0) == child);
  BOOST_REQUIRE(WIFEXITED(status));
  BOOST_TEST(WEXITSTATUS(status) == 0, "child exit " << WEXITSTATUS(status));

  spool s{path, unlimited};
  BOOST_TEST(s.records() == 3u);
  BOOST_REQUIRE(s.append(batch(5)) == spool::append_status::ok);
  auto replayed = drain(s);
  BOOST_REQUIRE_EQUAL(replayed.size(), 4u);
  check_equal(replayed[0], batch(1));
  check_equal(replayed[1], batch(2));
  check_equal(replayed[2], batch(4, 1));
  check_equal(replayed[3], batch(5));
  BOOST_TEST(s.corrupt_records() == 0u);
}

BOOST_AUTO_TEST_CASE(max_bytes_refuses_with_full_and_writes_nothing) {
  temp_dir dir;
  uint64_t one_record = 0;
  {
    spool probe{dir.file("probe"), unlimited};
    BOOST_REQUIRE(probe.append(batch(1)) == spool::append_status::ok);
    one_record = probe.file_bytes();
  }
  auto path = dir.file("s");
  spool tiny{path, 16};
  BOOST_TEST((tiny.append(batch(1)) == spool::append_status::full));
  BOOST_TEST(!fs::exists(path));

  spool s{path, one_record};
  BOOST_REQUIRE(s.append(batch(1)) == spool::append_status::ok);
  BOOST_TEST((s.append(batch(2)) == spool::append_status::full));
  BOOST_TEST(size_on_disk(path) == one_record);
  BOOST_TEST(s.records() == 1u);
}

BOOST_AUTO_TEST_CASE(a_file_that_is_not_a_spool_of_this_version_is_refused_untouched) {
  temp_dir dir;
  auto path = dir.file("s");
  {
    spool s{path, unlimited};
    BOOST_REQUIRE(s.append(batch(1)) == spool::append_status::ok);
  }
  // Bytes 8..11 of the file header are the format version.
  flip_byte(path, 8);
  auto contents = read_file(path);
  BOOST_CHECK_THROW((spool{path, unlimited}), std::runtime_error);
  BOOST_TEST(read_file(path) == contents);

  // The JSON-lines spool of earlier builds, and any other file.
  auto foreign = dir.file("old.spool");
  std::ofstream{foreign} << R"([{"w":"ws","k":0}])" << "\n";
  auto before = read_file(foreign);
  BOOST_CHECK_THROW((spool{foreign, unlimited}), std::runtime_error);
  BOOST_TEST(read_file(foreign) == before);
  auto short_foreign = dir.file("short");
  std::ofstream{short_foreign} << "hello";
  BOOST_CHECK_THROW((spool{short_foreign, unlimited}), std::runtime_error);
  BOOST_TEST(read_file(short_foreign) == "hello");
}

BOOST_AUTO_TEST_CASE(directory_lock_refuses_a_second_holder) {
  temp_dir dir;
  auto spool_dir = (dir.path / "nested" / "spool").string();
  {
    spool_dir_lock first{spool_dir};
    struct stat st {};
    BOOST_REQUIRE(::stat(spool_dir.c_str(), &st) == 0);
    BOOST_TEST((st.st_mode & 0777) == 0700u);
    try {
      spool_dir_lock second{spool_dir};
      BOOST_FAIL("a second lock on the same directory succeeded");
    } catch (const std::runtime_error& e) {
      std::string message = e.what();
      BOOST_TEST(message == "spool directory " + spool_dir
                              + " is in use by another kapso-ingest (pid "
                              + std::to_string(::getpid()) + ")");
    }
  }
  // Released with its holder.
  BOOST_CHECK_NO_THROW(spool_dir_lock{spool_dir});
}

BOOST_AUTO_TEST_SUITE_END()
