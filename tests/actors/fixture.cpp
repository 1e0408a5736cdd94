// The deterministic actor system and the stub peers of the tier-2 tests.
#include "tests/actors/fixture.hpp"

namespace kapso::testing {

namespace {

caf::actor_system_config& deterministic(caf::actor_system_config& cfg) {
  cfg.set("scheduler.policy", caf::atom("testing"));
  cfg.set("logger.file-verbosity", caf::atom("quiet"));
  cfg.set("logger.console-verbosity", caf::atom("quiet"));
  return cfg;
}

} // namespace

caf::behavior stub_writer(caf::event_based_actor* self, std::shared_ptr<writer_log> log) {
  // Anything but a persist request is counted, so a test can notice it.
  self->set_default_handler(
    [=](caf::scheduled_actor*, caf::message_view&) -> caf::result<caf::message> {
      ++log->unexpected;
      return caf::sec::unexpected_message;
    });
  return {
    [=](persist_atom, routed_event& r) -> caf::result<write_outcome> {
      log->received.push_back(r);
      switch (log->how) {
        case writer_log::mode::answer: return log->outcome;
        case writer_log::mode::fail: return log->failure;
        case writer_log::mode::hold: break;
      }
      auto rp = self->make_response_promise<write_outcome>();
      log->held.push_back(rp);
      return rp;
    },
    [=](release_atom, write_outcome outcome) {
      auto held = std::move(log->held);
      log->held.clear();
      for (auto& rp : held)
        rp.deliver(outcome);
    },
    [=](release_atom, caf::error& err) {
      auto held = std::move(log->held);
      log->held.clear();
      for (auto& rp : held)
        rp.deliver(err);
    },
  };
}

caf::behavior stub_directory(caf::event_based_actor*, std::shared_ptr<directory_log> log) {
  return {
    [=](resolve_atom, std::vector<std::string>& ids)
      -> caf::result<std::vector<workspace_info>> {
      log->asked.push_back(ids);
      if (log->failure)
        return log->failure;
      std::vector<workspace_info> found;
      for (const auto& id : ids) {
        auto known = log->known.find(id);
        if (known != log->known.end())
          found.push_back(known->second);
      }
      return found;
    },
  };
}

actor_fixture::actor_fixture()
  : sys(deterministic(cfg)),
    sched(dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())) {
  // Time zero is the "never" of steady_clock time points; start later.
  sched.clock().current_time += std::chrono::hours(1);
}

actor_fixture::~actor_fixture() {
  run();
  for (auto& actor : spawned)
    caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
  run();
  spawned.clear();
  // Nothing runs the remaining jobs once the test is over: waiting would hang.
  sys.await_actors_before_shutdown(false);
}

void actor_fixture::run() {
  sched.run();
}

void actor_fixture::advance(caf::timespan d) {
  sched.clock().advance_time(d);
  run();
}

std::vector<std::shared_ptr<reply<write_outcome>>>
actor_fixture::ingest_in_order(const caf::actor& target, const std::vector<routed_event>& events) {
  std::vector<std::shared_ptr<reply<write_outcome>>> replies;
  for (size_t i = 0; i < events.size(); ++i)
    replies.push_back(std::make_shared<reply<write_outcome>>());
  sys.spawn([=](caf::event_based_actor* self) {
    for (size_t i = 0; i < events.size(); ++i) {
      auto r = replies[i];
      self->request(target, client_timeout, ingest_atom::value, events[i])
        .then([=](write_outcome x) { r->value = x; },
              [=](caf::error& err) { r->error = std::move(err); });
    }
  });
  return replies;
}

std::shared_ptr<down_log> actor_fixture::watch(const caf::actor& target) {
  auto log = std::make_shared<down_log>();
  spawn([=](caf::event_based_actor* self) -> caf::behavior {
    self->monitor(target);
    self->set_down_handler([=](caf::down_msg& msg) {
      log->down = true;
      log->reason = msg.reason;
    });
    // A behaviour keeps the watcher alive until the down message comes.
    return {[](release_atom) {}};
  });
  return log;
}

} // namespace kapso::testing
