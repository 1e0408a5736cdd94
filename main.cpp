// kapso-ingest: assembles config, actors and the HTTP front end; nothing else.
#include <csignal>
#include <iostream>
#include <thread>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/directory.hpp"
#include "actors/persistence.hpp"
#include "actors/router.hpp"
#include "config/load.hpp"
#include "http/server.hpp"
#include "persistence/store.hpp"

namespace {

using namespace kapso;

std::vector<std::string> apply_migrations(const settings& cfg) {
  inbox_store store{cfg.database_url, std::chrono::minutes(10)};
  return store.migrate();
}

int run_migrate(const settings& cfg) {
  auto applied = apply_migrations(cfg);
  if (applied.empty())
    std::cout << "schema is up to date\n";
  for (const auto& name : applied)
    std::cout << "applied " << name << "\n";
  return 0;
}

int run_register(const settings& cfg, const workspace_registration& ws) {
  inbox_store store{cfg.database_url, std::chrono::seconds(30)};
  std::cout << store.register_workspace(ws.name, ws.slug, ws.phone_number_id, ws.secret) << "\n";
  return 0;
}

int run_server(caf::actor_system& sys, const settings& cfg, const sigset_t& signals) {
  if (cfg.migrate_on_start) {
    try {
      for (const auto& name : apply_migrations(cfg))
        spdlog::info("applied migration {}", name);
    } catch (const std::exception& e) {
      spdlog::error("migrations not applied (database unreachable?): {}", e.what());
    }
  }
  auto dir = sys.spawn<caf::detached>(directory, cfg);
  std::vector<caf::actor> writers;
  for (size_t i = 0; i < cfg.writers; ++i)
    writers.push_back(sys.spawn<caf::detached>(persistence_writer, cfg, i));
  auto route = sys.spawn(router, cfg, dir, writers);
  http_server server{sys, route, dir, cfg};
  server.start();
  spdlog::info("kapso-ingest listening on {}:{} ({} writers, batch-max {}, spool {})",
               cfg.host, cfg.port, cfg.writers, cfg.batch_max,
               cfg.spool_dir.empty() ? std::string{"disabled"} : cfg.spool_dir);
  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("signal {}: draining {} in-flight deliveries", sig, server.in_flight());
  server.begin_shutdown();
  auto deadline = std::chrono::steady_clock::now() + cfg.request_timeout;
  while (server.in_flight() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  server.stop();
  caf::anon_send_exit(route, caf::exit_reason::user_shutdown);
  for (auto& w : writers)
    caf::anon_send_exit(w, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(dir, caf::exit_reason::user_shutdown);
  spdlog::info("kapso-ingest stopped");
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  // Block termination signals before any thread exists so that every thread
  // inherits the mask and only sigwait() below sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  auto line = parse_command_line(argc, argv);
  if (!line.config) {
    (line.exit_code == 0 ? std::cout : std::cerr) << line.output;
    return line.exit_code;
  }
  const auto& values = line.config->values;
  spdlog::set_level(spdlog::level::from_str(values.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  try {
    if (line.command == "migrate")
      return run_migrate(values);
    if (line.command == "register-workspace")
      return run_register(values, line.config->workspace);
    caf::actor_system sys{*line.config};
    return run_server(sys, values, signals);
  } catch (const std::exception& e) {
    spdlog::critical("{}: {}", line.command, e.what());
    return 1;
  }
}
