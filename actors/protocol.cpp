// Error values of the ingest pipeline.
#include "actors/protocol.hpp"

namespace kapso {

caf::error make_error(ingest_errc x) {
  return {static_cast<uint8_t>(x), caf::atom("kapso")};
}

const char* to_string(ingest_errc x) {
  switch (x) {
    case ingest_errc::bad_signature: return "bad_signature";
    case ingest_errc::overloaded: return "overloaded";
    case ingest_errc::unavailable: return "unavailable";
    case ingest_errc::shutting_down: return "shutting_down";
    case ingest_errc::timeout: return "timeout";
  }
  return "unknown";
}

} // namespace kapso
