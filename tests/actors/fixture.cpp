// The deterministic actor system, the stub peers and the scratch databases
// of the tier-2 tests.
#include "tests/actors/fixture.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <stdexcept>

#include <pqxx/pqxx>

#include "http/phone.hpp"
#include "persistence/migrations.hpp"

namespace kapso::testing {

namespace {

caf::actor_system_config& deterministic(caf::actor_system_config& cfg) {
  cfg.set("scheduler.policy", caf::atom("testing"));
  cfg.set("logger.file-verbosity", caf::atom("quiet"));
  cfg.set("logger.console-verbosity", caf::atom("quiet"));
  return cfg;
}

// `url` with its database name replaced (URL or key=value conninfo).
std::string with_database(const std::string& url, const std::string& name) {
  if (url.rfind("postgres://", 0) == 0 || url.rfind("postgresql://", 0) == 0) {
    auto query = url.find('?');
    auto path = url.find('/', url.find("//") + 2);
    auto base = path == std::string::npos ? url.substr(0, query) : url.substr(0, path);
    return base + "/" + name + (query == std::string::npos ? "" : url.substr(query));
  }
  return url + " dbname=" + name;
}

} // namespace

void recording_sink::part_done(uint64_t ticket, uint32_t parts, const delivery_result& counts) {
  auto& a = answers[ticket];
  a.parts = parts;
  ++a.parts_done;
  a.counts += counts;
}

void recording_sink::failed(uint64_t ticket, ingest_errc why) {
  auto& a = answers[ticket];
  ++a.failures;
  if (!a.failure)
    a.failure = why;
}

bool recording_sink::complete(uint64_t ticket) const {
  auto found = answers.find(ticket);
  if (found == answers.end())
    return false;
  return found->second.failure || found->second.parts_done >= found->second.parts;
}

writer_actor::behavior_type stub_writer(writer_actor::pointer, std::shared_ptr<writer_log> log,
                                        answer_sink_ptr sink) {
  return {
    [=](persist_atom, write_part& part) {
      if (log->answer) {
        auto counts = part.counted;
        counts.accepted += static_cast<uint32_t>(part.items.size());
        sink->part_done(part.ticket, part.parts, counts);
      }
      log->received.push_back(std::move(part));
    },
    [](schema_atom) {},
    [](commit_atom) {},
    [](replay_atom) {},
    [](sweep_atom) {},
  };
}

directory_actor::behavior_type stub_directory(directory_actor::pointer,
                                              std::shared_ptr<directory_log> log) {
  return {
    [=](resolve_atom, std::vector<std::string>& ids) -> caf::result<workspace_lookup> {
      log->asked.push_back(ids);
      if (log->fail)
        return caf::make_error(caf::sec::runtime_error);
      workspace_lookup out;
      out.from_snapshot = log->from_snapshot;
      for (const auto& id : ids) {
        auto known = log->known.find(id);
        if (known != log->known.end())
          out.found.push_back(known->second);
      }
      return out;
    },
    [](readiness_atom) { return true; },
    [](schema_atom) {},
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

scratch_database::scratch_database() {
  const char* admin = std::getenv("KAPSO_TEST_DATABASE_URL");
  if (admin == nullptr || *admin == '\0')
    throw std::runtime_error("KAPSO_TEST_DATABASE_URL is not set (scripts/test.sh sets it)");
  admin_url_ = admin;
  static std::atomic<int> counter{0};
  name_ = "kapso_actor_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
  url_ = with_database(admin_url_, name_);
  {
    pqxx::connection conn{admin_url_};
    pqxx::nontransaction txn{conn};
    txn.exec("CREATE DATABASE " + name_);
  }
  migrate_database(url_, std::chrono::seconds(5), std::chrono::seconds(60),
                   [](std::string_view raw) { return normalise_phone(raw, "US"); });
}

scratch_database::~scratch_database() {
  try {
    pqxx::connection conn{admin_url_};
    pqxx::nontransaction txn{conn};
    txn.exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
  } catch (const std::exception&) {
    // A database left behind is harmless; the test's result stands.
  }
}

std::string scratch_database::value(const std::string& sql) const {
  pqxx::connection conn{url_};
  pqxx::nontransaction txn{conn};
  auto rows = txn.exec(sql);
  if (rows.empty() || rows[0][0].is_null())
    return {};
  return rows[0][0].c_str();
}

void scratch_database::exec(const std::string& sql) const {
  pqxx::connection conn{url_};
  pqxx::nontransaction txn{conn};
  txn.exec(sql);
}

void scratch_database::exec_as_admin(const std::string& sql) const {
  pqxx::connection conn{admin_url_};
  pqxx::nontransaction txn{conn};
  txn.exec(sql);
}

std::string scratch_database::insert_workspace(const std::string& phone_number_id) const {
  return value("INSERT INTO workspaces (name, slug, kapso_phone_id) VALUES ('t', 't-"
               + phone_number_id + "', '" + phone_number_id + "') RETURNING id::text");
}

} // namespace kapso::testing
