// A private PostgreSQL cluster the fault tests stop, freeze, make read-only and starve of disk.
#include "tests/fault/pg_cluster.hpp"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <random>

#include <pqxx/pqxx>

#include "tests/integration/harness.hpp"

namespace kapso_fault {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// A free loopback port below the kernel's ephemeral range: while the cluster
// is stopped, no client connection can take its port as its own source port
// (and keep the cluster from starting again on it).
uint16_t port_outside_ephemeral_range() {
  int low = 32768;
  std::ifstream range{"/proc/sys/net/ipv4/ip_local_port_range"};
  range >> low;
  std::mt19937 pick{std::random_device{}()};
  for (int attempt = 0; low > 20000 && attempt < 200; ++attempt) {
    auto port = static_cast<uint16_t>(std::uniform_int_distribution<int>{20000, low - 1}(pick));
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
      break;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    bool free = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    ::close(fd);
    if (free)
      return port;
  }
  return kapso_test::free_port();
}

bool is_root() { return ::geteuid() == 0; }

std::string pg_bin() {
  if (auto env = std::getenv("PG_BIN"); env != nullptr && *env != '\0')
    return env;
  for (auto dir : {"/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin",
                   "/usr/lib/postgresql/14/bin"})
    if (fs::exists(std::string{dir} + "/pg_ctl"))
      return dir;
  throw std::runtime_error("PostgreSQL server binaries not found under /usr/lib/postgresql "
                           "(set PG_BIN)");
}

// PostgreSQL refuses to run as root: as root, its programs run as `postgres`.
kapso_test::process_result as_pg(std::vector<std::string> argv,
                                 std::chrono::milliseconds timeout = 90s) {
  if (is_root())
    argv.insert(argv.begin(), {"/usr/sbin/runuser", "-u", "postgres", "--"});
  return kapso_test::run_program(argv, {}, timeout, "/");
}

void give_to_postgres(const std::string& path) {
  if (!is_root())
    return;
  auto* pw = ::getpwnam("postgres");
  if (pw == nullptr)
    throw std::runtime_error("running as root but there is no `postgres` user to own " + path);
  if (::chown(path.c_str(), pw->pw_uid, pw->pw_gid) != 0)
    throw std::runtime_error("cannot chown " + path + " to postgres: " + std::strerror(errno));
}

std::string read_text(const std::string& path) {
  std::ifstream in{path};
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

bool alive(int pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0)
    return false;
  auto stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

// (state, ppid) from /proc/<pid>/stat; state '\0' when the process is gone.
std::pair<char, int> proc_state(int pid) {
  auto stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size())
    return {'\0', 0};
  std::istringstream rest{stat.substr(close + 2)};
  char state = '\0';
  int ppid = 0;
  rest >> state >> ppid;
  return {state, ppid};
}

std::vector<int> children_of(int parent) {
  std::vector<int> result;
  for (auto& entry : fs::directory_iterator{"/proc"}) {
    auto name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos)
      continue;
    auto pid = std::stoi(name);
    if (proc_state(pid).second == parent)
      result.push_back(pid);
  }
  return result;
}

std::vector<std::string> mounts_below(const std::string& root) {
  std::vector<std::string> result;
  std::ifstream mounts{"/proc/mounts"};
  std::string device, point, rest;
  while (mounts >> device >> point && std::getline(mounts, rest))
    if (point.compare(0, root.size(), root) == 0)
      result.push_back(point);
  return result;
}

void unmount_all_below(const std::string& root) {
  for (auto& point : mounts_below(root))
    kapso_test::run_program({"/bin/umount", "-l", point}, {}, 30s, "/");
}

int pid_in(const std::string& data_dir) {
  std::ifstream in{data_dir + "/postmaster.pid"};
  int pid = 0;
  in >> pid;
  return pid;
}

// Clusters of earlier runs that were killed before they could clean up.
void remove_stale_clusters(const std::string& parent, const std::string& bin) {
  if (!fs::exists(parent))
    return;
  for (auto& entry : fs::directory_iterator{parent}) {
    auto name = entry.path().filename().string();
    if (name.compare(0, 9, "fault-pg-") != 0)
      continue;
    auto owner = std::atoi(name.c_str() + 9);
    if (owner == ::getpid() || alive(owner))
      continue;
    auto data = entry.path().string() + "/data";
    auto postmaster = pid_in(data);
    if (alive(postmaster)) {
      ::kill(postmaster, SIGCONT);
      for (auto child : children_of(postmaster))
        ::kill(child, SIGCONT);
      as_pg({bin + "/pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "30", "stop"});
    }
    unmount_all_below(entry.path().string());
    std::error_code ignored;
    fs::remove_all(entry.path(), ignored);
    std::cerr << "[fault] removed the stale cluster " << entry.path() << "\n";
  }
}

std::unique_ptr<pg_cluster> shared_instance;
std::string shared_failure;

} // namespace

pg_cluster& pg_cluster::shared() {
  if (!shared_instance) {
    if (!shared_failure.empty())
      throw std::runtime_error("the private PostgreSQL cluster could not be set up: "
                               + shared_failure);
    try {
      shared_instance = std::make_unique<pg_cluster>();
    } catch (const std::exception& e) {
      shared_failure = e.what();
      throw;
    }
  }
  return *shared_instance;
}

void pg_cluster::release_shared() { shared_instance.reset(); }

pg_cluster::pg_cluster() : bin_(pg_bin()) {
  std::string parent = KAPSO_BINARY_DIR;
  remove_stale_clusters(parent, bin_);
  root_ = parent + "/fault-pg-" + std::to_string(::getpid());
  data_ = root_ + "/data";
  log_ = root_ + "/postgres.log";
  fs::remove_all(root_);
  fs::create_directories(data_);
  fs::permissions(data_, fs::perms::owner_all, fs::perm_options::replace);
  give_to_postgres(root_);
  give_to_postgres(data_);
  if (is_root() && as_pg({"/usr/bin/test", "-w", data_}).exit_code != 0)
    throw std::runtime_error("the postgres user cannot write " + data_
                             + " (a parent directory is not traversable for it)");
  auto init = as_pg({bin_ + "/initdb", "-D", data_, "-A", "trust", "-U", "postgres",
                     "--encoding=UTF8", "--locale=C", "--no-sync"});
  if (init.exit_code != 0)
    throw std::runtime_error("initdb failed (exit " + std::to_string(init.exit_code) + "):\n"
                             + init.output);
  {
    std::ofstream log{log_};
  }
  give_to_postgres(log_);
  start();
  exec("CREATE ROLE kapso_app LOGIN");
  std::cerr << "[fault] private PostgreSQL on 127.0.0.1:" << port_ << " (" << data_ << ")\n";
}

pg_cluster::~pg_cluster() {
  try {
    if (frozen_)
      thaw();
    if (running())
      stop_immediate();
  } catch (const std::exception& e) {
    std::cerr << "[fault] warning: stopping the private cluster: " << e.what() << "\n";
  }
  auto postmaster = pid_in(data_);
  if (alive(postmaster))
    ::kill(postmaster, SIGKILL);
  unmount_all_below(root_);
  std::error_code ignored;
  fs::remove_all(root_, ignored);
}

std::string pg_cluster::admin_url(const std::string& database) const {
  return url_as("postgres", database);
}

std::string pg_cluster::url_as(const std::string& role, const std::string& database) const {
  return "postgresql://" + role + "@127.0.0.1:" + std::to_string(port_) + "/" + database;
}

void pg_cluster::write_config() const {
  std::ofstream conf{data_ + "/kapso_fault.conf"};
  conf << "# Written by the fault tests on every start.\n"
       << "port = " << port_ << "\n"
       << "listen_addresses = '127.0.0.1'\n"
       << "unix_socket_directories = ''\n"
       << "fsync = on\n"
       << "synchronous_commit = on\n"
       << "max_connections = 200\n"
       << "shared_buffers = 128MB\n"
       << "log_line_prefix = '%m [%p] %d %u '\n";
  conf.close();
  give_to_postgres(data_ + "/kapso_fault.conf");
  auto main_conf = data_ + "/postgresql.conf";
  if (read_text(main_conf).find("include_if_exists = 'kapso_fault.conf'") == std::string::npos) {
    std::ofstream append{main_conf, std::ios::app};
    append << "\ninclude_if_exists = 'kapso_fault.conf'\n";
  }
}

void pg_cluster::start() {
  if (running())
    return;
  std::string failure;
  bool first_start = port_ == 0;
  for (int attempt = 0; attempt < 10; ++attempt) {
    if (port_ == 0 || (first_start && attempt > 0))
      port_ = port_outside_ephemeral_range();
    write_config();
    auto started = as_pg({bin_ + "/pg_ctl", "-w", "-t", "60", "-D", data_, "-l", log_, "start"});
    if (started.exit_code == 0)
      return;
    failure = started.output + "\n" + log_tail(20);
    if (failure.find("could not bind") == std::string::npos
        && failure.find("in use") == std::string::npos)
      break;
    // The port can be taken between the check and the bind: at the first
    // start try another; a restart keeps it (the servers' URLs name it) and
    // waits for whoever holds it.
    if (!first_start)
      std::this_thread::sleep_for(1s);
  }
  throw std::runtime_error("pg_ctl start failed:\n" + failure);
}

void pg_cluster::stop_immediate() {
  if (frozen_)
    thaw();
  auto stopped = as_pg({bin_ + "/pg_ctl", "-D", data_, "-m", "immediate", "-w", "-t", "60",
                        "stop"});
  if (stopped.exit_code != 0 && running())
    throw std::runtime_error("pg_ctl stop -m immediate failed:\n" + stopped.output);
}

void pg_cluster::stop_fast() {
  if (frozen_)
    thaw();
  auto stopped = as_pg({bin_ + "/pg_ctl", "-D", data_, "-m", "fast", "-w", "-t", "60", "stop"});
  if (stopped.exit_code != 0 && running())
    throw std::runtime_error("pg_ctl stop -m fast failed:\n" + stopped.output);
}

int pg_cluster::postmaster_pid() const { return pid_in(data_); }

bool pg_cluster::running() const { return alive(postmaster_pid()); }

std::vector<int> pg_cluster::processes() const {
  auto postmaster = postmaster_pid();
  if (!alive(postmaster))
    return {};
  std::vector<int> result{postmaster};
  auto children = children_of(postmaster);
  result.insert(result.end(), children.begin(), children.end());
  return result;
}

void pg_cluster::freeze() {
  auto postmaster = postmaster_pid();
  if (!alive(postmaster))
    throw std::runtime_error("pg_cluster::freeze: PostgreSQL is not running");
  // The postmaster first, so that it forks nothing new while its children
  // are stopped one by one.
  ::kill(postmaster, SIGSTOP);
  frozen_ = true;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  for (;;) {
    bool all_stopped = proc_state(postmaster).first == 'T';
    for (auto child : children_of(postmaster)) {
      auto state = proc_state(child).first;
      if (state != 'T' && state != '\0' && state != 'Z') {
        ::kill(child, SIGSTOP);
        all_stopped = false;
      }
    }
    if (all_stopped)
      return;
    if (std::chrono::steady_clock::now() > deadline)
      throw std::runtime_error("pg_cluster::freeze: processes did not stop within 5 s");
    std::this_thread::sleep_for(5ms);
  }
}

void pg_cluster::thaw() {
  auto all = processes();
  // Children first: the postmaster, once running, may watch them.
  for (auto i = all.rbegin(); i != all.rend(); ++i)
    ::kill(*i, SIGCONT);
  frozen_ = false;
}

std::string pg_cluster::exec(const std::string& sql, const std::string& database) const {
  pqxx::connection connection{admin_url(database)
                              + "?connect_timeout=10"
                                "&options=-c%20default_transaction_read_only%3Doff"};
  pqxx::nontransaction tx{connection};
  auto result = tx.exec(sql);
  if (result.empty() || result.columns() == 0 || result[0][0].is_null())
    return {};
  return result[0][0].c_str();
}

void pg_cluster::set_read_only(bool on) {
  exec(on ? "ALTER SYSTEM SET default_transaction_read_only = on"
          : "ALTER SYSTEM RESET default_transaction_read_only");
  exec("SELECT pg_reload_conf()");
  // The reload is asynchronous: wait until a new session sees it.
  auto expected = on ? "on" : "off";
  auto deadline = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    pqxx::connection connection{admin_url() + "?connect_timeout=10"};
    pqxx::nontransaction tx{connection};
    if (tx.exec("SHOW default_transaction_read_only")[0][0].c_str() == std::string{expected})
      break;
    if (std::chrono::steady_clock::now() > deadline)
      throw std::runtime_error("default_transaction_read_only did not become "
                               + std::string{expected} + " within 10 s");
    std::this_thread::sleep_for(20ms);
  }
  read_only_ = on;
  if (on)
    exec("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
         "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()");
}

void pg_cluster::heal() {
  if (frozen_)
    thaw();
  if (!running())
    start();
  if (read_only_)
    set_read_only(false);
}

std::string pg_cluster::small_disk_tablespace(const std::string& name, size_t bytes) {
  auto dir = root_ + "/disk-" + name;
  fs::create_directories(dir);
  auto mounted = kapso_test::run_program(
    {"/bin/mount", "-t", "tmpfs", "-o", "size=" + std::to_string(bytes) + ",mode=0700", "tmpfs",
     dir},
    {}, 30s, "/");
  if (mounted.exit_code != 0)
    throw std::runtime_error("cannot mount a tmpfs of " + std::to_string(bytes) + " bytes at "
                             + dir + " (mount -t tmpfs exit "
                             + std::to_string(mounted.exit_code) + ": " + mounted.output
                             + "): the small-disk case needs root with CAP_SYS_ADMIN");
  mounts_.push_back(dir);
  give_to_postgres(dir);
  auto location = dir + "/ts";
  fs::create_directories(location);
  give_to_postgres(location);
  exec("CREATE TABLESPACE " + name + " LOCATION '" + location + "'");
  return name;
}

std::string pg_cluster::log_tail(size_t lines) const {
  auto text = read_text(log_);
  size_t pos = text.size();
  for (size_t n = 0; n <= lines && pos != std::string::npos && pos > 0; ++n)
    pos = text.rfind('\n', pos - 1);
  return pos == std::string::npos ? text : text.substr(pos + 1);
}

} // namespace kapso_fault
