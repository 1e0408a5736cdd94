// Turns the stop of a pipeline actor into one failure report.
#include "actors/supervisor.hpp"

#include <unordered_map>

namespace kapso {

caf::behavior supervisor(caf::stateful_actor<supervisor_state>* self,
                         std::vector<std::pair<std::string, caf::actor>> watched,
                         std::function<void(const std::string&)> on_failure) {
  self->state.on_failure = std::move(on_failure);
  auto names = std::make_shared<std::unordered_map<caf::actor_addr, std::string>>();
  for (auto& [name, actor] : watched) {
    names->emplace(actor.address(), name);
    self->monitor(actor);
  }
  self->set_down_handler([=](caf::down_msg& msg) {
    auto& st = self->state;
    if (st.reported)
      return;
    st.reported = true;
    auto found = names->find(msg.source);
    auto name = found != names->end() ? found->second : std::string{"an actor"};
    st.on_failure(name + " stopped: " + self->system().render(msg.reason));
  });
  return {
    [](caf::unit_t) {
      // Never sent: the supervisor only waits for down messages.
    },
  };
}

} // namespace kapso
