// kapso-ingest: assembles config, actors and the HTTP front end; nothing else.
#include <sys/resource.h>

#include <atomic>
#include <csignal>
#include <ctime>
#include <iostream>
#include <optional>
#include <thread>

#include <caf/all.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include "actors/directory.hpp"
#include "actors/migrator.hpp"
#include "actors/persistence.hpp"
#include "actors/router.hpp"
#include "actors/supervisor.hpp"
#include "config/load.hpp"
#include "http/phone.hpp"
#include "http/server.hpp"
#include "http/watchdog.hpp"
#include "persistence/migrations.hpp"
#include "persistence/quarantine.hpp"
#include "persistence/spool.hpp"
#include "persistence/store.hpp"

namespace {

using namespace kapso;

// The server's own phone normalisation for the route repair's merges.
phone_normaliser normaliser_for(const settings& cfg) {
  return [region = cfg.default_region](std::string_view raw) {
    return normalise_phone(raw, region);
  };
}

int run_migrate(const settings& cfg) {
  auto report = migrate_database(cfg.database_url, cfg.connect_timeout, cfg.migration_timeout,
                                 normaliser_for(cfg));
  if (report.applied.empty())
    std::cout << "schema is up to date\n";
  for (const auto& name : report.applied)
    std::cout << "applied " << name << "\n";
  if (report.repair)
    std::cout << "route data repaired: " << describe(*report.repair) << "\n";
  return 0;
}

int run_repair_route(const settings& cfg) {
  auto report = repair_route_database(cfg.database_url, cfg.connect_timeout,
                                      cfg.migration_timeout, normaliser_for(cfg));
  std::cout << "route data repaired: " << describe(report) << "\n";
  return 0;
}

int run_register(const settings& cfg, const workspace_registration& ws) {
  std::cout << register_workspace(cfg.database_url, ws, cfg.connect_timeout,
                                  cfg.statement_timeout)
            << "\n";
  return 0;
}

// `spool list` only reads, so it works beside a running server; `spool
// requeue` writes the spool, so it takes the directory's lock like a server
// and refuses while one holds it: the server replays what it finds at start.
int run_spool(const settings& cfg, const std::string& action) {
  // Warnings about unreadable records must not mix with the listing.
  spdlog::set_default_logger(spdlog::stderr_color_mt("spool"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  if (action == "list") {
    std::cout << quarantine_listing(list_quarantine(cfg.spool_dir));
    return 0;
  }
  std::optional<spool_dir_lock> lock;
  try {
    lock.emplace(cfg.spool_dir);
  } catch (const std::runtime_error& e) {
    std::cerr << e.what() << ": nothing requeued. Stop that server, run `kapso-ingest spool "
                             "requeue` again, then start it: it replays the requeued events.\n";
    return 1;
  }
  auto moved = requeue_quarantine(cfg.spool_dir, cfg.spool_max_bytes / cfg.writers);
  std::cout << "requeued " << moved.events << (moved.events == 1 ? " event" : " events")
            << " into the spool of " << cfg.spool_dir
            << "; kapso-ingest replays them when it starts\n";
  return 0;
}

// sysexits' EX_SOFTWARE: an actor of the pipeline stopped, so the process
// exits for systemd (Restart=on-failure) to start a fresh one.
constexpr int exit_pipeline_failed = 70;

// What ended serving: a termination signal, or an actor of the pipeline
// that stopped (then the process must not go on half alive).
struct stop_cause {
  int signal = 0;
  std::string failure;
};

// SIGUSR1 withdraws the instance from load balancers (/readyz 503 while
// deliveries are still served), SIGUSR2 puts it back: a rolling restart sends
// SIGUSR1, waits until the balancers stop sending here, then SIGTERM.
constexpr int withdraw_signal = SIGUSR1;
constexpr int return_signal = SIGUSR2;

sigset_t with_admin_signals(sigset_t signals) {
  sigaddset(&signals, withdraw_signal);
  sigaddset(&signals, return_signal);
  return signals;
}

stop_cause wait_for_stop(const sigset_t& signals, http_server& server,
                         const std::atomic<bool>& failed, const std::string& failure) {
  auto waited = with_admin_signals(signals);
  for (;;) {
    timespec tick{0, 100 * 1000 * 1000};
    int sig = sigtimedwait(&waited, nullptr, &tick);
    if (sig == withdraw_signal || sig == return_signal) {
      server.withdraw(sig == withdraw_signal);
      if (sig == withdraw_signal)
        spdlog::info("signal {}: withdrawn, /readyz answers 503 while deliveries are still "
                     "served", sig);
      else
        spdlog::info("signal {}: back in, /readyz answers as the database allows", sig);
      continue;
    }
    if (sig > 0)
      return {sig, {}};
    if (failed.load())
      return {0, failure};
  }
}

// Answers what waits (committed -> 200, else 503) before the HTTP server
// goes away; a second signal, or the shutdown limit, ends the process at once.
void drain(http_server& server, const settings& cfg, const sigset_t& signals,
           std::chrono::steady_clock::time_point limit) {
  // Leave time to answer what is left and to stop the actors.
  auto deadline = limit - std::min(cfg.shutdown_timeout / 4, std::chrono::milliseconds(1000));
  while (server.in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
    timespec tick{0, 20 * 1000 * 1000};
    if (sigtimedwait(&signals, nullptr, &tick) > 0) {
      spdlog::warn("second signal: exiting at once");
      std::_Exit(1);
    }
  }
  if (auto unanswered = server.fail_waiting(); unanswered > 0)
    spdlog::warn("{} deliveries not confirmed within http.shutdown-timeout-ms: answered 503 "
                 "(Kapso retries)", unanswered);
}

int run_server(caf::actor_system& sys, const settings& cfg, const sigset_t& signals) {
  http_server server{sys, cfg};
  // With migrations at start, the writers and the readiness probe wait for
  // the migrator, which runs once the server listens: a database that does
  // not answer delays readiness, never listening.
  bool schema_ready = !cfg.migrate_on_start;
  auto dir = sys.spawn<caf::detached>(directory, cfg, schema_ready);
  std::vector<writer_actor> writers;
  for (size_t i = 0; i < cfg.writers; ++i)
    writers.push_back(
      sys.spawn<caf::detached>(persistence_writer, cfg, i, server.sink(), schema_ready));
  auto route = sys.spawn(router, cfg, dir, writers, server.sink());
  std::atomic<bool> failed{false};
  std::string failure;
  std::vector<std::pair<std::string, caf::actor>> watched{
    {"router", caf::actor_cast<caf::actor>(route)}, {"directory", caf::actor_cast<caf::actor>(dir)}};
  for (size_t i = 0; i < writers.size(); ++i)
    watched.emplace_back("writer " + std::to_string(i), caf::actor_cast<caf::actor>(writers[i]));
  auto watch = sys.spawn(supervisor, std::move(watched), [&](const std::string& why) {
    failure = why;
    failed = true;
  });
  // Router first, then the writers it feeds, then the directory.
  auto stop_pipeline = [&] {
    caf::anon_send_exit(route, caf::exit_reason::user_shutdown);
    for (auto& w : writers)
      caf::anon_send_exit(w, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(dir, caf::exit_reason::user_shutdown);
  };
  try {
    server.start(route, dir);
  } catch (...) {
    // The actor system waits for every actor before it is destroyed: without
    // this, a port already in use leaves a process that never exits.
    caf::anon_send_exit(watch, caf::exit_reason::user_shutdown);
    stop_pipeline();
    throw;
  }
  // Type=notify: systemd counts the service as started only once it listens.
  // Without NOTIFY_SOCKET (not under systemd) both notifications are no-ops.
  sd_notify(0, "READY=1");
  // With WatchdogSec= set, systemd restarts a process that stops answering
  // through its own listening socket, whatever the cause.
  listener_watchdog watchdog{cfg.host, cfg.port};
  spdlog::info("kapso-ingest listening on {}:{} ({} writers, batch-max {}, spool {})",
               cfg.host, cfg.port, cfg.writers, cfg.batch_max,
               cfg.spool_dir.empty() ? std::string{"disabled"} : cfg.spool_dir);
  std::optional<migrator_actor> migrate;
  if (cfg.migrate_on_start)
    migrate = sys.spawn<caf::detached>(migrator, cfg, writers, dir, normaliser_for(cfg));
  auto cause = wait_for_stop(signals, server, failed, failure);
  sd_notify(0, "STOPPING=1");
  auto limit = std::chrono::steady_clock::now() + cfg.shutdown_timeout;
  // Whatever happens below, the process is gone by the limit.
  std::thread([limit] {
    std::this_thread::sleep_until(limit);
    spdlog::error("http.shutdown-timeout-ms reached: exiting now");
    std::_Exit(1);
  }).detach();
  if (cause.signal != 0)
    spdlog::info("signal {}: draining {} in-flight deliveries", cause.signal, server.in_flight());
  else
    spdlog::critical("{}: answering what waits and exiting so a fresh process takes over",
                     cause.failure);
  server.begin_shutdown();
  caf::anon_send_exit(watch, caf::exit_reason::user_shutdown);
  if (migrate)
    caf::anon_send_exit(*migrate, caf::exit_reason::user_shutdown);
  drain(server, cfg, signals, limit);
  server.stop();
  stop_pipeline();
  spdlog::info("kapso-ingest stopped");
  return cause.signal != 0 ? 0 : exit_pipeline_failed;
}

// A soft descriptor limit below the hard one only makes the server refuse
// connections earlier than it must.
void raise_descriptor_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
}

} // namespace

int main(int argc, char** argv) {
  // Block termination signals before any thread exists so that every thread
  // inherits the mask and only sigwait() below sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  auto blocked = with_admin_signals(signals);
  pthread_sigmask(SIG_BLOCK, &blocked, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  // A spool write past a file-size limit must fail with EFBIG, not kill us.
  std::signal(SIGXFSZ, SIG_IGN);
  raise_descriptor_limit();

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
    if (line.command == "repair-route")
      return run_repair_route(values);
    if (line.command == "register-workspace")
      return run_register(values, line.config->workspace);
    if (line.command == "spool")
      return run_spool(values, line.action);
    // One process per spool directory, held until the actor system (and
    // every writer in it) is gone.
    std::optional<spool_dir_lock> spool_lock;
    if (!values.spool_dir.empty()) {
      try {
        spool_lock.emplace(values.spool_dir);
      } catch (const std::runtime_error& e) {
        std::cerr << e.what() << "\n";
        return 2;
      }
    }
    caf::actor_system sys{*line.config};
    return run_server(sys, values, signals);
  } catch (const std::exception& e) {
    spdlog::critical("{}: {}", line.command, e.what());
    return 1;
  }
}
