// An actor system on CAF 0.17.6's deterministic scheduler, stub peers for the
// actors under test, and a way to read replies without a blocking receive.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include <caf/all.hpp>

#include "actors/protocol.hpp"

namespace kapso {

// Boost.Test prints values of failed checks through this (found by ADL).
inline std::ostream& boost_test_print_type(std::ostream& out, write_outcome x) {
  switch (x) {
    case write_outcome::accepted: return out << "accepted";
    case write_outcome::duplicate: return out << "duplicate";
    case write_outcome::ignored: return out << "ignored";
    case write_outcome::retry: return out << "retry";
  }
  return out << "write_outcome(" << static_cast<int>(x) << ")";
}

namespace testing {

// Tells a stub writer to answer the requests it holds.
using release_atom = caf::atom_constant<caf::atom("trelease")>;

// What a stub writer saw, and how it answers. The test reads and changes it
// between scheduler runs; everything runs on the test thread.
struct writer_log {
  enum class mode { answer, fail, hold };
  mode how = mode::answer;
  write_outcome outcome = write_outcome::accepted;
  caf::error failure;
  std::vector<routed_event> received; // every (persist_atom, routed_event)
  size_t unexpected = 0;              // any other message
  std::vector<caf::typed_response_promise<write_outcome>> held;
};

// Stands in for a persistence writer: records, then answers per its log.
caf::behavior stub_writer(caf::event_based_actor* self, std::shared_ptr<writer_log> log);

// What a stub directory knows and saw.
struct directory_log {
  std::map<std::string, workspace_info> known; // by phone_number_id
  caf::error failure;                          // set: every look-up fails
  std::vector<std::vector<std::string>> asked; // ids of each resolve request
};

// Stands in for the directory: (resolve_atom, ids) -> the known workspaces.
caf::behavior stub_directory(caf::event_based_actor* self, std::shared_ptr<directory_log> log);

// A reply read through a request handle; empty until the scheduler ran.
template <class T>
struct reply {
  std::optional<T> value;
  caf::error error;
  bool answered() const {
    return value.has_value() || static_cast<bool>(error);
  }
};

// Whether (and why) a monitored actor terminated.
struct down_log {
  bool down = false;
  caf::error reason;
};

// Far beyond every clock advance of the tests: a client never times out.
constexpr std::chrono::seconds client_timeout{24 * 3600};

struct actor_fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys;
  caf::scheduler::test_coordinator& sched;
  std::vector<caf::actor> spawned;

  actor_fixture();
  ~actor_fixture();

  // Runs every runnable actor until all mailboxes are empty; no timeouts.
  void run();

  // Moves the deterministic clock (firing due timeouts), then runs.
  void advance(caf::timespan d);

  // Spawns and remembers the actor, so the fixture can stop it at the end.
  template <class F, class... Ts>
  caf::actor spawn(F fun, Ts&&... xs) {
    auto actor = sys.spawn(fun, std::forward<Ts>(xs)...);
    spawned.push_back(actor);
    return actor;
  }

  // Sends one request from a fresh client actor; read the reply after run().
  template <class T, class... Ts>
  std::shared_ptr<reply<T>> ask(const caf::actor& target, Ts... xs) {
    auto r = std::make_shared<reply<T>>();
    sys.spawn([=](caf::event_based_actor* self) {
      self->request(target, client_timeout, xs...)
        .then([=](T& x) { r->value = std::move(x); },
              [=](caf::error& err) { r->error = std::move(err); });
    });
    return r;
  }

  // Sends several ingest requests from one client, in order.
  std::vector<std::shared_ptr<reply<write_outcome>>>
  ingest_in_order(const caf::actor& target, const std::vector<routed_event>& events);

  // Monitors `target` from a watcher actor.
  std::shared_ptr<down_log> watch(const caf::actor& target);
};

} // namespace testing
} // namespace kapso
