// The admission policy every client socket's watch is built from.
#include "http/admitting_socket.hpp"

#include <mutex>

namespace kapso {

namespace {

std::mutex policy_mutex;
std::shared_ptr<const admission_policy> policy_in_use;

} // namespace

void install_admission_policy(std::shared_ptr<const admission_policy> policy) {
  std::lock_guard<std::mutex> guard{policy_mutex};
  policy_in_use = std::move(policy);
}

std::shared_ptr<const admission_policy> installed_admission_policy() {
  std::lock_guard<std::mutex> guard{policy_mutex};
  if (!policy_in_use)
    policy_in_use = std::make_shared<admission_policy>(admission_policy{
      {}, std::make_shared<byte_budget>(64u << 20), std::chrono::milliseconds(500), 1u << 20});
  return policy_in_use;
}

} // namespace kapso
