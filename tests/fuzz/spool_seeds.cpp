// Writes seed inputs for the spool fuzzers in the current format:
//   fuzz_spool_seeds <dir>  ->  <dir>/spool_batch/*, <dir>/spool_file/*
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "persistence/spool.hpp"

using namespace kapso;
namespace fs = std::filesystem;

namespace {

std::vector<routed_event> sample_batch(int n) {
  std::vector<routed_event> out;
  for (int i = 0; i < n; ++i) {
    routed_event r;
    r.workspace_id = "8f0c7c2e-0000-4000-8000-00000000000" + std::to_string(i % 10);
    auto& e = r.ev;
    e.kind = static_cast<event_kind>(i % 7);
    e.event_type = "whatsapp.message.received";
    e.phone_number_id = "123456789012345";
    e.contact_key = "+15551234567";
    e.contact_phone = "+15551234567";
    e.contact_bsuid = i % 2 ? "US.1001" : "";
    e.contact_name = "Ana";
    e.whatsapp_conversation_id = "conv_123";
    e.message_id = "wamid.HBgL" + std::to_string(i);
    e.timestamp = 1730092801 + i;
    e.direction = "inbound";
    e.sender_type = "contact";
    e.message_type = "text";
    e.content = i % 3 ? "Hola \xc3\xb1" "and\xc3\xba" : "";
    e.preview = e.content;
    e.metadata_json = R"({"origin":"cloud_api"})";
    e.status = "received";
    out.push_back(r);
  }
  return out;
}

void write(const fs::path& path, const std::string& bytes) {
  std::ofstream{path, std::ios::binary | std::ios::trunc} << bytes;
}

std::string read(const fs::path& path) {
  std::ifstream in{path, std::ios::binary};
  return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <seed dir>\n", argv[0]);
    return 2;
  }
  fs::path root{argv[1]};
  fs::create_directories(root / "spool_batch");
  fs::create_directories(root / "spool_file");
  for (int n : {0, 1, 3})
    write(root / "spool_batch" / ("batch-" + std::to_string(n)), encode_spool_batch(sample_batch(n)));

  // Raw files (mode byte 0): fresh, partly consumed, emptied.
  auto scratch = root / ("scratch-" + std::to_string(::getpid()));
  fs::remove(scratch);
  {
    spool s{scratch.string(), std::numeric_limits<size_t>::max()};
    for (int n : {1, 2, 3})
      s.append(sample_batch(n));
    write(root / "spool_file" / "raw-three-records", std::string(1, '\0') + read(scratch));
    if (auto r = s.next())
      s.consumed(*r);
    write(root / "spool_file" / "raw-one-consumed", std::string(1, '\0') + read(scratch));
    while (auto r = s.next())
      s.consumed(*r);
    write(root / "spool_file" / "raw-drained", std::string(1, '\0') + read(scratch));
  }
  fs::remove(scratch);
  // Damage descriptions (mode byte 1) for FuzzedDataProvider: mostly bytes
  // that become batch seeds, the choices come from the end.
  write(root / "spool_file" / "damaged-a", std::string("\x01") + "abcdefgh\\ijklmnop\\qrst" + "\x03\x01\x02\x10\x20\x30\x40\x05");
  write(root / "spool_file" / "damaged-b", std::string("\x01") + std::string(200, 'z') + "\x07\x03\x00\xff\x11\x22\x33\x01");
  return 0;
}
