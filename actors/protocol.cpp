// The answer sink's destructor, and the writer a conversation belongs to.
#include "actors/protocol.hpp"

#include <functional>

namespace kapso {

answer_sink::~answer_sink() = default;

namespace {

// A customer without a key is placed by its message id, apart from customers
// whose key hashes alike; the 64-bit FNV prime spreads the customer's hash
// before it is mixed with the workspace's.
constexpr size_t message_key_factor = 31;
constexpr size_t customer_spread = 1099511628211ull;

} // namespace

size_t writer_for(std::string_view workspace_id, const event& ev, size_t writers) {
  if (writers <= 1)
    return 0;
  std::hash<std::string_view> hash;
  auto customer = ev.contact_key.empty() ? hash(ev.message_id) * message_key_factor
                                         : hash(ev.contact_key);
  return (hash(workspace_id) ^ (customer * customer_spread)) % writers;
}

} // namespace kapso
