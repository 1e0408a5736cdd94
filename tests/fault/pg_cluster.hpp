// A private PostgreSQL cluster the fault tests stop, freeze, make read-only and starve of disk.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kapso_fault {

// One cluster per test executable run, in KAPSO_BINARY_DIR/fault-pg-<pid>:
// TCP only on a free loopback port, fsync on, trust authentication for the
// superuser `postgres` and the application role `kapso_app`. As root the
// cluster belongs to the `postgres` system user (PostgreSQL refuses root).
// Binaries from PG_BIN, else /usr/lib/postgresql/15/bin.
class pg_cluster {
 public:
  // The run's cluster: initdb and start on first use; removed by
  // release_shared() at the end of the run (the global fixture calls it).
  static pg_cluster& shared();
  static void release_shared();

  pg_cluster();
  ~pg_cluster();  // thaws, stops (-m immediate), unmounts and removes everything
  pg_cluster(const pg_cluster&) = delete;
  pg_cluster& operator=(const pg_cluster&) = delete;

  uint16_t port() const { return port_; }

  // postgresql://postgres@127.0.0.1:<port>/<database>: what the server and
  // test_database get (no extra parameters, so the server's own timeouts
  // are what is tested).
  std::string admin_url(const std::string& database = "postgres") const;
  // The same as `role` (trust authentication, no password).
  std::string url_as(const std::string& role, const std::string& database) const;

  // pg_ctl start -w on the same port; pg_ctl stop -m immediate (a crash:
  // every backend killed, no checkpoint).
  void start();
  void stop_immediate();
  // pg_ctl stop -m fast: a clean shutdown (sessions terminated with
  // SQLSTATE 57P01, a checkpoint, then the postmaster exits).
  void stop_fast();
  bool running() const;

  // SIGSTOP of the postmaster and every process it forked, and SIGCONT:
  // connections are accepted by the kernel and never answered.
  void freeze();
  void thaw();
  bool frozen() const { return frozen_; }

  // ALTER SYSTEM SET default_transaction_read_only = on, reload, wait until
  // new sessions see it, terminate every other client backend (so no session
  // keeps the old default); off undoes it the same way.
  void set_read_only(bool on);

  // A tablespace on a tmpfs of `bytes`, owned by the cluster's user. Throws
  // std::runtime_error naming the mount command when mounting is refused.
  std::string small_disk_tablespace(const std::string& name, size_t bytes);

  // One statement as the superuser, outside a transaction, on a session
  // that is never read-only; returns the first column of the first row
  // ("" when there is none).
  std::string exec(const std::string& sql, const std::string& database = "postgres") const;

  // Undoes whatever an earlier case left broken (frozen, stopped,
  // read-only), so one failed case cannot spoil the next.
  void heal();

  const std::string& log_path() const { return log_; }
  std::string log_tail(size_t lines = 40) const;

 private:
  std::vector<int> processes() const;   // the postmaster first, then its children
  int postmaster_pid() const;
  void write_config() const;

  std::string root_;   // everything of this cluster lives below
  std::string data_;
  std::string log_;
  std::string bin_;
  uint16_t port_ = 0;
  bool frozen_ = false;
  bool read_only_ = false;
  std::vector<std::string> mounts_;
};

} // namespace kapso_fault
