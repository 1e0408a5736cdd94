// kapso-ingest: assembles config, actors and the HTTP front end; nothing else.
#include <csignal>
#include <iostream>
#include <thread>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

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
  if (ws.phone_number_id.empty()) {
    std::cerr << "invalid configuration: workspace.phone-number-id is required\n";
    return 2;
  }
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
  // Type=notify: systemd counts the service as started only once it listens. Without
  // NOTIFY_SOCKET (not under systemd) both notifications are no-ops.
  sd_notify(0, "READY=1");
  spdlog::info("kapso-ingest listening on {}:{} ({} writers, batch-max {}, spool {})",
               cfg.host, cfg.port, cfg.writers, cfg.batch_max,
               cfg.spool_dir.empty() ? std::string{"disabled"} : cfg.spool_dir);
  int sig = 0;
  sigwait(&signals, &sig);
  sd_notify(0, "STOPPING=1");
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

  // The command comes first; CAF's parser sees only the options after it.
  std::string command = "serve";
  if (argc > 1 && argv[1][0] != '-') {
    command = argv[1];
    argv[1] = argv[0];
    --argc;
    ++argv;
  }
  // A bare boolean flag means true, and "--spool.dir=" means empty: CAF's
  // parser wants a value in both cases.
  std::vector<std::string> rewritten;
  rewritten.reserve(static_cast<size_t>(argc));
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--security.allow-unsigned" || arg == "--persistence.migrate-on-start")
      rewritten.push_back(arg + "=true");
    else if (arg.size() > 3 && arg.compare(0, 2, "--") == 0 && arg.back() == '=')
      rewritten.push_back(arg + "\"\"");
    else
      continue;
    argv[i] = rewritten.back().data();
  }
  ingest_config cfg;
  if (auto err = cfg.parse(argc, argv)) {
    std::cerr << "invalid configuration: " << caf::to_string(err) << "\n";
    return 2;
  }
  if (cfg.cli_helptext_printed)
    return 0;
  if (auto complaint = cfg.finish(); !complaint.empty()) {
    std::cerr << complaint << "\n";
    return 2;
  }
  const auto& values = cfg.values;
  spdlog::set_level(spdlog::level::from_str(values.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  if (!cfg.remainder.empty()) {
    std::cerr << "invalid configuration: unexpected argument '" << cfg.remainder.front() << "'\n";
    return 2;
  }
  if (values.database_url.empty()) {
    std::cerr << "invalid configuration: persistence.database-url is empty (set DATABASE_URL)\n";
    return 2;
  }
  try {
    if (command == "migrate")
      return run_migrate(values);
    if (command == "register-workspace")
      return run_register(values, cfg.workspace);
    if (command != "serve") {
      std::cerr << "unknown command '" << command
                << "' (expected serve, migrate or register-workspace)\n";
      return 2;
    }
    caf::actor_system sys{cfg};
    return run_server(sys, values, signals);
  } catch (const std::exception& e) {
    spdlog::critical("{}: {}", command, e.what());
    return 1;
  }
}
