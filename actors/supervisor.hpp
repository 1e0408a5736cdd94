// The supervisor actor: watches the pipeline's actors and reports the first
// one that stops while the process is meant to be serving.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <caf/all.hpp>

namespace kapso {

struct supervisor_state {
  std::function<void(const std::string&)> on_failure;
  bool reported = false;
};

// Monitors every actor of `watched`; the first one that stops makes the
// supervisor call `on_failure` (once) with a line naming it and the reason.
// A half-alive process must not keep serving: the caller exits non-zero so
// that systemd (or any supervisor) starts a fresh one, and the spool keeps
// what was acknowledged. Stop the supervisor before stopping the others.
caf::behavior supervisor(caf::stateful_actor<supervisor_state>* self,
                         std::vector<std::pair<std::string, caf::actor>> watched,
                         std::function<void(const std::string&)> on_failure);

} // namespace kapso
