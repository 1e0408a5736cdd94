// libFuzzer target: spool record payloads through decode_spool_batch; what
// decodes must re-encode to a stable form.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "persistence/spool.hpp"
#include "tests/fuzz/fuzz_checks.hpp"

using namespace kapso;
using kapso_fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view payload{reinterpret_cast<const char*>(data), size};
  std::vector<routed_event> out(1);
  out[0].workspace_id = "sentinel";
  if (!decode_spool_batch(payload, out)) {
    require(out.size() == 1 && out[0].workspace_id == "sentinel", "a failed decode leaves out");
    return 0;
  }
  // Unknown tags are dropped and duplicates collapse, so the first
  // re-encoding may differ from the input; from then on it is fixed.
  auto encoded = encode_spool_batch(out);
  std::vector<routed_event> again;
  require(decode_spool_batch(encoded, again), "an encoding decodes");
  require(again.size() == out.size(), "same number of events");
  require(encode_spool_batch(again) == encoded, "encoding is stable");
  return 0;
}
