// libFuzzer target: spool files through spool's open scan, next() and
// consumed(), in an in-memory file (memfd) so the disk does not dominate.
// First byte even: the rest is the file as it is. Odd: the rest describes
// batches to append, records to consume, then bytes to flip and a length to
// cut to; the replay must return intact records in order and skip none.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>
#include <spdlog/spdlog.h>

#include "domain/hex.hpp"
#include "persistence/spool.hpp"
#include "tests/fuzz/fuzz_checks.hpp"

using namespace kapso;
using kapso_fuzz::require;

namespace {

constexpr size_t unlimited = std::numeric_limits<size_t>::max();
constexpr uint64_t file_header_size = 32; // spool.cpp's layout
constexpr size_t max_replays = 4096;

int memory_file() {
  static int fd = [] {
    int made = ::memfd_create("kapso-spool-fuzz", 0);
    require(made >= 0, "memfd_create");
    return made;
  }();
  return fd;
}

std::string memory_path() {
  return "/proc/self/fd/" + std::to_string(memory_file());
}

void set_contents(const std::string& bytes) {
  int fd = memory_file();
  require(::ftruncate(fd, 0) == 0, "truncate memfd");
  size_t done = 0;
  while (done < bytes.size()) {
    auto n = ::pwrite(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    require(n > 0, "write memfd");
    done += static_cast<size_t>(n);
  }
}

// Events whose bytes cannot hold a record header (hex text, fixed numbers):
// a resynchronising scan must never find a record inside them.
std::vector<routed_event> batch_of(const std::string& seed, size_t index) {
  std::string hex;
  for (unsigned char c : seed)
    append_hex(hex, c);
  std::vector<routed_event> out(1 + seed.size() % 3);
  for (size_t i = 0; i < out.size(); ++i) {
    out[i].workspace_id = "ws-" + std::to_string(index);
    out[i].ev.kind = static_cast<event_kind>(i);
    out[i].ev.timestamp = static_cast<int64_t>(index * 10 + i);
    out[i].ev.content = hex;
    out[i].ev.message_id = "wamid." + std::to_string(index) + "." + std::to_string(i);
  }
  return out;
}

void replay_raw(const std::string& file) {
  set_contents(file);
  try {
    spool s{memory_path(), unlimited};
    uint64_t last_end = 0;
    size_t replays = 0;
    while (auto r = s.next()) {
      require(r->offset >= last_end && r->end_offset > r->offset, "records move forward");
      last_end = r->end_offset;
      s.consumed(*r);
      require(++replays < max_replays, "replay ends");
    }
    require(s.empty() && s.bytes() == 0, "a drained spool is empty");
    // A record appended after whatever was there comes back whole.
    auto extra = batch_of("extra", 9999);
    require(s.append(extra) == spool::append_status::ok, "append after replay");
    auto r = s.next();
    require(r && encode_spool_batch(r->events) == encode_spool_batch(extra), "append readable");
  } catch (const std::runtime_error&) {
    // Not a spool file of this version: refused, which is the contract.
  }
}

void replay_damaged(FuzzedDataProvider& in) {
  set_contents({});
  struct appended {
    std::string encoding;
    uint64_t offset;
    uint64_t end;
  };
  std::vector<appended> records;
  size_t consumed = 0;
  {
    spool s{memory_path(), unlimited};
    auto count = in.ConsumeIntegralInRange<size_t>(0, 8);
    for (size_t i = 0; i < count; ++i) {
      auto events = batch_of(in.ConsumeRandomLengthString(64), i);
      auto before = s.file_bytes();
      require(s.append(events) == spool::append_status::ok, "append to memfd");
      records.push_back({encode_spool_batch(events), before == 0 ? file_header_size : before,
                         s.file_bytes()});
    }
    auto consume = in.ConsumeIntegralInRange<size_t>(0, count);
    for (; consumed < consume; ++consumed) {
      auto r = s.next();
      require(r && encode_spool_batch(r->events) == records[consumed].encoding,
              "undamaged replay in order");
      s.consumed(*r);
    }
  }
  // Damage: flipped bytes, then maybe a cut.
  std::string file(static_cast<size_t>(::lseek(memory_file(), 0, SEEK_END)), '\0');
  require(::pread(memory_file(), file.data(), file.size(), 0) == static_cast<ssize_t>(file.size()),
          "read memfd");
  std::vector<uint64_t> flipped;
  auto flips = in.ConsumeIntegralInRange<int>(0, 4);
  for (int i = 0; i < flips && !file.empty(); ++i) {
    auto at = in.ConsumeIntegral<uint32_t>() % file.size();
    file[at] = static_cast<char>(file[at] ^ in.ConsumeIntegralInRange<int>(1, 255));
    flipped.push_back(at);
  }
  if (in.ConsumeBool())
    file.resize(in.ConsumeIntegral<uint32_t>() % (file.size() + 1));
  set_contents(file);

  auto damaged = [&](uint64_t from, uint64_t to) {
    if (to > file.size())
      return true;
    for (auto at : flipped)
      if (at >= from && at < to)
        return true;
    return false;
  };
  // Bytes 0..11 are magic and version: damage there may refuse the file.
  bool header_damaged = damaged(0, 12) || file.size() < file_header_size;
  try {
    spool s{memory_path(), unlimited};
    // A damaged header (bytes 8..31: a version that is still one we read,
    // count, cursor, CRC, counted end) or a cut below the cursor replays from
    // the start; otherwise nothing consumed comes back.
    uint64_t cursor = consumed < records.size() ? records[consumed].offset : file_header_size;
    bool cursor_lost = damaged(8, 32) || file.size() < cursor;
    size_t next_expected = 0;
    size_t replays = 0;
    while (auto r = s.next()) {
      auto encoding = encode_spool_batch(r->events);
      size_t found = next_expected;
      while (found < records.size() && records[found].encoding != encoding)
        ++found;
      require(found < records.size(), "a replayed record was appended, in order");
      require(records[found].offset == r->offset, "at the offset it was written to");
      require(found >= consumed || cursor_lost, "nothing consumed is replayed again");
      for (size_t skipped = next_expected; skipped < found; ++skipped)
        require(skipped < consumed
                  || damaged(records[skipped].offset, records[skipped].end),
                "no intact unconsumed record is skipped");
      next_expected = found + 1;
      s.consumed(*r);
      require(++replays < max_replays, "replay ends");
    }
    for (size_t rest = std::max(next_expected, consumed); rest < records.size(); ++rest)
      require(damaged(records[rest].offset, records[rest].end),
              "every intact unconsumed record is replayed");
    auto extra = batch_of("extra", 9999);
    require(s.append(extra) == spool::append_status::ok, "append after a damaged replay");
    auto r = s.next();
    require(r && encode_spool_batch(r->events) == encode_spool_batch(extra),
            "append after damage readable");
  } catch (const std::runtime_error&) {
    require(header_damaged, "only a damaged file header refuses the file");
  }
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Skipped records are logged: far too often to print here.
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  if (data[0] % 2 == 0) {
    replay_raw(std::string{reinterpret_cast<const char*>(data + 1), size - 1});
    return 0;
  }
  FuzzedDataProvider in{data + 1, size - 1};
  replay_damaged(in);
  return 0;
}
