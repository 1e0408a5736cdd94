// An actor system on CAF 0.17.6's deterministic scheduler, stub peers for the
// actors under test, a recording answer sink, and scratch databases for the
// writer's tests.
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

// Boost.Test prints values of failed checks through these (found by ADL).
inline std::ostream& boost_test_print_type(std::ostream& out, ingest_errc x) {
  switch (x) {
    case ingest_errc::bad_signature: return out << "bad_signature";
    case ingest_errc::overloaded: return out << "overloaded";
    case ingest_errc::unavailable: return out << "unavailable";
    case ingest_errc::shutting_down: return out << "shutting_down";
    case ingest_errc::timeout: return out << "timeout";
  }
  return out << "ingest_errc " << static_cast<int>(x);
}
inline std::ostream& boost_test_print_type(std::ostream& out,
                                           const std::optional<ingest_errc>& x) {
  return x ? boost_test_print_type(out, *x) : out << "no failure";
}

} // namespace kapso

namespace kapso::testing {

// What the HTTP layer would have been told, per ticket.
struct recording_sink final : answer_sink {
  struct answer {
    uint32_t parts = 0;           // parts announced by the last part_done
    uint32_t parts_done = 0;      // part_done calls
    delivery_result counts;       // summed over the parts
    std::optional<ingest_errc> failure;
    uint32_t failures = 0;        // failed calls
  };
  std::map<uint64_t, answer> answers;

  void part_done(uint64_t ticket, uint32_t parts, const delivery_result& counts) override;
  void failed(uint64_t ticket, ingest_errc why) override;

  // A delivery is complete when every part is in or it failed.
  bool complete(uint64_t ticket) const;
};

// What a stub writer saw, and whether it answers the sink (all accepted).
struct writer_log {
  bool answer = true;
  std::vector<write_part> received; // every (persist_atom, part)
};

writer_actor::behavior_type stub_writer(writer_actor::pointer self,
                                        std::shared_ptr<writer_log> log,
                                        answer_sink_ptr sink);

// What a stub directory knows and saw.
struct directory_log {
  std::map<std::string, workspace_info> known; // by phone_number_id
  bool from_snapshot = false;                  // answer as if PostgreSQL were away
  bool fail = false;                           // answer with an error
  std::vector<std::vector<std::string>> asked; // ids of each resolve request
};

directory_actor::behavior_type stub_directory(directory_actor::pointer self,
                                              std::shared_ptr<directory_log> log);

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
  auto spawn(F fun, Ts&&... xs) {
    auto actor = sys.spawn(fun, std::forward<Ts>(xs)...);
    spawned.push_back(caf::actor_cast<caf::actor>(actor));
    return actor;
  }
};

// A fresh, migrated database on the test PostgreSQL (KAPSO_TEST_DATABASE_URL),
// dropped at the end; throws when the variable is unset.
class scratch_database {
public:
  scratch_database();
  ~scratch_database();
  scratch_database(const scratch_database&) = delete;
  scratch_database& operator=(const scratch_database&) = delete;

  const std::string& url() const { return url_; }
  // First column of the first row, as text ("" for NULL or no row).
  std::string value(const std::string& sql) const;
  void exec(const std::string& sql) const;
  // Runs on the admin database: for changing this database's own settings.
  void exec_as_admin(const std::string& sql) const;
  const std::string& name() const { return name_; }
  // A workspace the way other applications insert one; its id.
  std::string insert_workspace(const std::string& phone_number_id) const;

private:
  std::string admin_url_;
  std::string name_;
  std::string url_;
};

} // namespace kapso::testing
