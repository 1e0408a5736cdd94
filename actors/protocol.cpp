// Error values of the ingest pipeline, and the writer a conversation belongs to.
#include "actors/protocol.hpp"

#include <functional>

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

void register_ingest_errors(caf::actor_system_config& cfg) {
  cfg.add_error_category(caf::atom("kapso"), [](uint8_t code, caf::atom_value,
                                                const caf::message&) {
    return std::string{"kapso: "} + to_string(static_cast<ingest_errc>(code));
  });
}

answer_sink::~answer_sink() = default;

size_t writer_for(std::string_view workspace_id, const event& ev, size_t writers) {
  if (writers <= 1)
    return 0;
  std::hash<std::string_view> hash;
  auto customer = ev.contact_key.empty() ? hash(ev.message_id) * 31 : hash(ev.contact_key);
  return (hash(workspace_id) ^ (customer * 1099511628211ull)) % writers;
}

} // namespace kapso
