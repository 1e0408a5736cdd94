// Test harness of the integration and fault tiers: scratch databases, server processes, a loopback HTTP client.
#include "tests/integration/harness.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/test/unit_test.hpp>
#include <openssl/evp.h>
#include <openssl/hmac.h>

extern char** environ;

namespace kapso_test {

namespace fs = std::filesystem;

namespace {

// -- failure tracking ----------------------------------------------------------

std::atomic<size_t> failure_counter{0};

// Counts failures as they happen so a server's destructor knows whether the
// test that used it failed and its log should be shown.
struct failure_observer : boost::unit_test::test_observer {
  void assertion_result(boost::unit_test::assertion_result result) override {
    if (result == boost::unit_test::AR_FAILED)
      ++failure_counter;
  }
  void exception_caught(boost::execution_exception const&) override {
    ++failure_counter;
  }
};

struct failure_tracking {
  failure_tracking() { boost::unit_test::framework::register_observer(observer); }
  ~failure_tracking() { boost::unit_test::framework::deregister_observer(observer); }
  failure_observer observer;
};

std::string binary_dir() { return KAPSO_BINARY_DIR; }

std::string log_dir() {
  auto dir = binary_dir() + "/test-logs";
  fs::create_directories(dir);
  return dir;
}

std::string read_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string last_lines(const std::string& text, size_t lines) {
  std::deque<std::string> kept;
  std::istringstream in{text};
  std::string line;
  while (std::getline(in, line)) {
    kept.push_back(line);
    if (kept.size() > lines)
      kept.pop_front();
  }
  std::string result;
  for (auto& l : kept)
    result += l + "\n";
  return result;
}

// -- child processes -----------------------------------------------------------

std::vector<std::string> child_environment(const env_overrides& env) {
  std::map<std::string, std::string> vars;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string kv = *entry;
    auto eq = kv.find('=');
    if (eq != std::string::npos)
      vars[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  // The developer's shell may carry real settings; a test decides its own.
  for (auto name : {"DATABASE_URL", "KAPSO_WEBHOOK_SECRET", "KAPSO_VERIFY_TOKEN"})
    vars.erase(name);
  for (auto& [name, value] : env) {
    if (value)
      vars[name] = *value;
    else
      vars.erase(name);
  }
  std::vector<std::string> result;
  for (auto& [name, value] : vars)
    result.push_back(name + "=" + value);
  return result;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> result;
  for (auto& s : strings)
    result.push_back(s.data());
  result.push_back(nullptr);
  return result;
}

struct child_limits {
  std::optional<uint64_t> nofile;
  std::optional<uint64_t> fsize;
};

// fork + execve with stdout/stderr appended to `output_path`. Everything the
// child needs is prepared before fork: only async-signal-safe calls after.
int spawn(std::vector<std::string> argv, std::vector<std::string> envv,
          const std::string& output_path, const child_limits& limits = {},
          std::string cwd = {}) {
  auto argv_c = c_strings(argv);
  auto envv_c = c_strings(envv);
  if (cwd.empty())
    cwd = log_dir();
  rlimit nofile{};
  rlimit fsize{};
  if (limits.nofile)
    nofile.rlim_cur = nofile.rlim_max = static_cast<rlim_t>(*limits.nofile);
  if (limits.fsize)
    fsize.rlim_cur = fsize.rlim_max = static_cast<rlim_t>(*limits.fsize);
  int out = ::open(output_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out < 0)
    throw std::runtime_error("cannot open " + output_path + ": " + std::strerror(errno));
  int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  auto parent = ::getpid();
  auto pid = ::fork();
  if (pid == 0) {
    // A crashed or killed test run must not leave servers holding ports
    // and database connections behind.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent)
      ::_exit(127);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    if (::chdir(cwd.c_str()) != 0)
      ::_exit(126);
    if (limits.nofile && ::setrlimit(RLIMIT_NOFILE, &nofile) != 0)
      ::_exit(125);
    if (limits.fsize) {
      ::signal(SIGXFSZ, SIG_IGN);
      if (::setrlimit(RLIMIT_FSIZE, &fsize) != 0)
        ::_exit(125);
    }
    ::execve(argv_c[0], argv_c.data(), envv_c.data());
    ::_exit(127);
  }
  ::close(out);
  if (in >= 0)
    ::close(in);
  if (pid < 0)
    throw std::runtime_error(std::string{"fork failed: "} + std::strerror(errno));
  return pid;
}

// Waits for `pid` up to `timeout`; the exit code, -1 for a signal, nullopt
// when still running.
std::optional<int> wait_for(int pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    auto r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid)
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (r < 0)
      return -1;
    if (std::chrono::steady_clock::now() >= deadline)
      return std::nullopt;
    std::this_thread::sleep_for(10ms);
  }
}

} // namespace

uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    throw std::runtime_error("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0
      || ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot find a free loopback port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

namespace {

std::atomic<uint64_t> unique_counter{0};

} // namespace

BOOST_TEST_GLOBAL_FIXTURE(failure_tracking);

// -- environment ---------------------------------------------------------------

std::string admin_database_url() {
  auto url = std::getenv("KAPSO_TEST_DATABASE_URL");
  if (url == nullptr || *url == '\0')
    throw std::runtime_error(
      "KAPSO_TEST_DATABASE_URL is not set: run the integration tests through "
      "scripts/test.sh, or export a superuser URL such as "
      "postgresql://postgres@127.0.0.1:25432/kapso");
  return url;
}

std::string server_binary() {
  auto path = binary_dir() + "/kapso-ingest";
  if (!fs::exists(path))
    throw std::runtime_error("server binary " + path + " does not exist: build kapso-ingest");
  return path;
}

std::string make_temp_dir(std::string_view prefix) {
  auto dir = binary_dir() + "/test-tmp/" + std::string{prefix} + "-" + unique_suffix();
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string unique_suffix() {
  return std::to_string(::getpid()) + "_" + std::to_string(++unique_counter);
}

size_t failures_so_far() { return failure_counter.load(); }

std::string sign(std::string_view body, std::string_view secret) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  auto ok = HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
                 reinterpret_cast<const unsigned char*>(body.data()), body.size(),
                 digest, &length);
  if (ok == nullptr)
    throw std::runtime_error("HMAC failed");
  static constexpr char hex[] = "0123456789abcdef";
  std::string result;
  for (unsigned int i = 0; i < length; ++i) {
    result += hex[digest[i] >> 4];
    result += hex[digest[i] & 0x0f];
  }
  return result;
}

bool eventually(const std::function<bool()>& condition,
                std::chrono::milliseconds timeout, std::chrono::milliseconds poll) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (condition())
      return true;
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(poll);
  }
}

void run_concurrently(size_t n, const std::function<void(size_t)>& body) {
  std::atomic<size_t> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::exception_ptr> errors(n);
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (size_t i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      ++ready;
      // Released together so the requests really overlap.
      while (!go.load())
        std::this_thread::yield();
      try {
        body(i);
      } catch (...) {
        errors[i] = std::current_exception();
      }
    });
  while (ready.load() < n)
    std::this_thread::yield();
  go = true;
  for (auto& t : threads)
    t.join();
  for (auto& e : errors)
    if (e)
      std::rethrow_exception(e);
}

// -- child processes -----------------------------------------------------------

process_result run_program(const std::vector<std::string>& argv, const env_overrides& env,
                           std::chrono::milliseconds timeout, const std::string& cwd) {
  auto output_path = log_dir() + "/cli-" + unique_suffix() + ".log";
  auto pid = spawn(argv, child_environment(env), output_path, {}, cwd);
  process_result result;
  auto code = wait_for(pid, timeout);
  if (!code) {
    ::kill(pid, SIGKILL);
    wait_for(pid, 5s);
    result.timed_out = true;
  } else {
    result.exit_code = *code;
  }
  result.output = read_file(output_path);
  std::error_code ignored;
  fs::remove(output_path, ignored);
  return result;
}

size_t rss_kib(int pid) {
  std::ifstream status{"/proc/" + std::to_string(pid) + "/status"};
  std::string line;
  while (std::getline(status, line))
    if (line.compare(0, 6, "VmRSS:") == 0)
      return std::strtoull(line.c_str() + 6, nullptr, 10);
  return 0;
}

process_result run_cli(const std::vector<std::string>& args, const env_overrides& env,
                       std::chrono::milliseconds timeout) {
  std::vector<std::string> argv{server_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_program(argv, env, timeout);
}

// -- database ------------------------------------------------------------------

std::string with_database(std::string_view url, std::string_view dbname) {
  std::string u{url};
  auto scheme = u.find("://");
  if (scheme == std::string::npos) // key=value conninfo: later keys win
    return u + " dbname=" + std::string{dbname};
  auto query_pos = u.find('?', scheme + 3);
  std::string query = query_pos == std::string::npos ? "" : u.substr(query_pos);
  auto head = u.substr(0, query_pos);
  auto path = head.find('/', scheme + 3);
  if (path != std::string::npos)
    head.erase(path);
  return head + "/" + std::string{dbname} + query;
}

test_database::test_database(bool migrate, std::optional<std::string> admin_url)
  : admin_url_(admin_url ? std::move(*admin_url) : admin_database_url()) {
  const auto& admin = admin_url_;
  name_ = "kapso_itest_" + unique_suffix();
  {
    pqxx::connection connection{admin};
    pqxx::nontransaction tx{connection};
    tx.exec("CREATE DATABASE " + tx.quote_name(name_));
  }
  url_ = with_database(admin, name_);
  if (migrate)
    this->migrate();
}

test_database::~test_database() {
  try {
    pqxx::connection connection{admin_url_};
    pqxx::nontransaction tx{connection};
    tx.exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
            + tx.quote(name_) + " AND pid <> pg_backend_pid()");
    tx.exec("DROP DATABASE IF EXISTS " + tx.quote_name(name_) + " WITH (FORCE)");
  } catch (const std::exception& e) {
    std::cerr << "warning: could not drop test database " << name_ << ": " << e.what()
              << "\n";
  }
}

void test_database::migrate() const {
  auto result = run_cli({"migrate", "--persistence.database-url=" + url_}, {}, 120s);
  if (result.exit_code != 0)
    throw std::runtime_error("kapso-ingest migrate failed (exit "
                             + std::to_string(result.exit_code)
                             + (result.timed_out ? ", timed out" : "") + "):\n"
                             + last_lines(result.output, 30));
}

workspace test_database::insert_workspace(std::optional<std::string> secret,
                                          std::string phone_number_id) const {
  auto n = ++unique_counter;
  if (phone_number_id.empty())
    phone_number_id = std::to_string(990000000000000ull + n);
  auto slug = "itest-ws-" + std::to_string(n);
  auto result = query(
    "INSERT INTO workspaces(name, slug, kapso_phone_id, kapso_webhook_secret) "
    "VALUES ($1, $2, $3, $4) RETURNING id::text",
    "Workspace " + std::to_string(n), slug, phone_number_id,
    secret ? secret->c_str() : static_cast<const char*>(nullptr));
  return workspace{result.at(0).at(0).c_str(), phone_number_id, secret};
}

void test_database::truncate_inbox() const {
  auto tables = query(
    "SELECT quote_ident(table_name) FROM information_schema.tables "
    "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' "
    "AND table_name NOT ILIKE '%migration%' ORDER BY table_name");
  std::string list;
  for (auto row : tables)
    list += (list.empty() ? "" : ", ") + std::string{row[0].c_str()};
  if (list.empty())
    throw std::runtime_error("no inbox tables to truncate in " + name_);
  query("TRUNCATE " + list + " CASCADE");
}

void test_database::block_connections() const {
  pqxx::connection connection{admin_url_};
  pqxx::nontransaction tx{connection};
  tx.exec("ALTER DATABASE " + tx.quote_name(name_) + " ALLOW_CONNECTIONS false");
  tx.exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
          + tx.quote(name_) + " AND pid <> pg_backend_pid()");
}

void test_database::allow_connections() const {
  pqxx::connection connection{admin_url_};
  pqxx::nontransaction tx{connection};
  tx.exec("ALTER DATABASE " + tx.quote_name(name_) + " ALLOW_CONNECTIONS true");
}

// -- server process ------------------------------------------------------------

server_process::server_process(std::string database_url, server_options options)
  : database_url_(std::move(database_url)), options_(std::move(options)) {
  log_path_ = log_dir() + "/" + options_.name + "-" + unique_suffix() + ".log";
  spool_dir_ = options_.spool_dir ? *options_.spool_dir : make_temp_dir("spool");
  failures_at_start_ = failures_so_far();
  start();
}

server_process::~server_process() {
  try {
    stop();
  } catch (...) {
    // Destructors must not throw; the log below tells what happened.
  }
  if (failures_so_far() > failures_at_start_)
    std::cerr << "---- last lines of " << log_path_ << " ----\n"
              << log_tail(40) << "---- end of " << log_path_ << " ----\n";
}

void server_process::start(bool same_port) {
  if (pid_ > 0)
    throw std::runtime_error("server_process::start: already running");
  auto previous_port = same_port ? port_ : uint16_t{0};
  env_overrides env{{"DATABASE_URL", database_url_},
                    {"KAPSO_WEBHOOK_SECRET", std::string{global_secret}}};
  for (auto& [name, value] : options_.env)
    env[name] = value;
  std::string failure;
  // A port found free can be taken by someone else before the server binds
  // it; try a few ports before calling the start-up failed.
  for (int attempt = 0; attempt < 3; ++attempt) {
    port_ = attempt == 0 && previous_port != 0 ? previous_port : free_port();
    std::vector<std::string> argv{server_binary()};
    if (!options_.command.empty())
      argv.push_back(options_.command);
    argv.insert(argv.end(), {"--http.port=" + std::to_string(port_),
                             "--http.host=127.0.0.1", "--spool.dir=" + spool_dir_});
    argv.insert(argv.end(), options_.args.begin(), options_.args.end());
    {
      std::ofstream log{log_path_, std::ios::app};
      log << "==== harness: starting on port " << port_ << ":";
      for (auto& arg : argv)
        log << " " << arg;
      log << "\n";
    }
    pid_ = spawn(argv, child_environment(env), log_path_,
                 child_limits{options_.rlimit_nofile, options_.rlimit_fsize});
    auto deadline = std::chrono::steady_clock::now() + options_.ready_timeout;
    while (std::chrono::steady_clock::now() < deadline && running()) {
      try {
        http_client client{port_, 2s};
        if (client.get(options_.ready_path).status == 200)
          return;
      } catch (const std::exception&) {
        // Not listening yet.
      }
      std::this_thread::sleep_for(50ms);
    }
    bool died = !running();
    if (!died)
      kill_hard();
    auto tail = log_tail(30);
    failure = std::string{"kapso-ingest "} + (died ? "exited" : "was not ready")
              + " on port " + std::to_string(port_) + " within "
              + std::to_string(options_.ready_timeout.count()) + " ms (" + options_.ready_path
              + " != 200); last lines of " + log_path_ + ":\n" + tail;
    if (!died || tail.find("in use") == std::string::npos)
      break;
  }
  throw std::runtime_error(failure);
}

int server_process::stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0)
    return -1;
  ::kill(pid_, SIGTERM);
  auto code = wait_for(pid_, grace);
  if (!code) {
    ::kill(pid_, SIGKILL);
    code = wait_for(pid_, 10s);
    pid_ = -1;
    return -1;
  }
  pid_ = -1;
  return *code;
}

exit_status server_process::signal_and_wait(int signal, std::chrono::milliseconds timeout) {
  if (pid_ <= 0)
    throw std::runtime_error("server_process::signal_and_wait: not running");
  ::kill(pid_, signal);
  return wait_exit(timeout);
}

exit_status server_process::wait_exit(std::chrono::milliseconds timeout) {
  exit_status result;
  if (pid_ <= 0)
    throw std::runtime_error("server_process::wait_exit: not running");
  auto started = std::chrono::steady_clock::now();
  auto deadline = started + timeout;
  for (;;) {
    int status = 0;
    auto r = ::waitpid(pid_, &status, WNOHANG);
    auto now = std::chrono::steady_clock::now();
    if (r == pid_) {
      result.exited = true;
      result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      result.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
      result.took = std::chrono::duration_cast<std::chrono::milliseconds>(now - started);
      pid_ = -1;
      return result;
    }
    if (r < 0 || now >= deadline) {
      result.took = std::chrono::duration_cast<std::chrono::milliseconds>(now - started);
      return result;
    }
    std::this_thread::sleep_for(2ms);
  }
}

void server_process::kill_hard() {
  if (pid_ <= 0)
    return;
  ::kill(pid_, SIGKILL);
  wait_for(pid_, 10s);
  pid_ = -1;
}

bool server_process::running() {
  if (pid_ <= 0)
    return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

std::string server_process::log_tail(size_t lines) const {
  return last_lines(read_file(log_path_), lines);
}

// -- HTTP client ---------------------------------------------------------------

namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace asio = boost::asio;

std::string http_response::header(std::string_view name) const {
  std::string key{name};
  std::transform(key.begin(), key.end(), key.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  auto i = headers.find(key);
  return i == headers.end() ? std::string{} : i->second;
}

json http_response::parsed() const {
  try {
    return json::parse(body);
  } catch (const std::exception&) {
    throw std::runtime_error("HTTP " + std::to_string(status)
                             + " answer body is not JSON: " + body.substr(0, 300));
  }
}

struct http_client::impl {
  uint16_t port;
  std::chrono::milliseconds timeout;
  bool retry_closed = true;
  asio::io_context io;
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;

  // Asynchronous operations driven to completion here, because only those
  // honour tcp_stream's timeouts.
  void run() {
    io.restart();
    io.run();
  }

  void connect() {
    stream.emplace(io);
    buffer.clear();
    stream->expires_after(timeout);
    beast::error_code result;
    stream->async_connect(
      asio::ip::tcp::endpoint{asio::ip::make_address("127.0.0.1"), port},
      [&](beast::error_code ec) { result = ec; });
    run();
    if (result) {
      stream.reset();
      throw http_error(http_error::kind::connect, "cannot connect to 127.0.0.1:"
                                                    + std::to_string(port) + ": "
                                                    + result.message());
    }
  }

  // One request/answer on the current connection; nullopt when a reused
  // connection turned out closed before any answer byte arrived.
  std::optional<http_response> exchange(http::request<http::string_body>& req,
                                        bool reused) {
    beast::error_code write_error;
    stream->expires_after(timeout);
    http::async_write(*stream, req,
                      [&](beast::error_code ec, size_t) { write_error = ec; });
    run();
    if (write_error == beast::error::timeout) {
      stream.reset();
      throw http_error(http_error::kind::send,
                       "timeout sending the request to port " + std::to_string(port));
    }
    // A server that rejects a request early (413) may close while we still
    // write; its answer can be waiting in our buffer all the same.
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    beast::error_code read_error;
    stream->expires_after(timeout);
    http::async_read(*stream, buffer, parser,
                     [&](beast::error_code ec, size_t) { read_error = ec; });
    run();
    if (read_error) {
      stream.reset();
      bool closed = read_error == http::error::end_of_stream
                    || read_error == asio::error::connection_reset
                    || read_error == asio::error::broken_pipe
                    || read_error == asio::error::eof;
      if (reused && closed && retry_closed)
        return std::nullopt;
      auto why = read_error == beast::error::timeout ? http_error::kind::timeout
                 : write_error                        ? http_error::kind::send
                                                      : http_error::kind::no_answer;
      throw http_error(
        why, "no HTTP answer from port " + std::to_string(port) + ": " + read_error.message()
               + (write_error ? " (write: " + write_error.message() + ")" : std::string{}));
    }
    auto& res = parser.get();
    http_response out;
    out.status = static_cast<int>(res.result_int());
    for (auto& field : res) {
      std::string key{field.name_string()};
      std::transform(key.begin(), key.end(), key.begin(),
                     [](unsigned char c) { return std::tolower(c); });
      out.headers[key] = std::string{field.value()};
    }
    out.body = std::move(res.body());
    if (!res.keep_alive())
      stream.reset();
    return out;
  }
};

http_client::http_client(uint16_t port, std::chrono::milliseconds timeout, bool retry_closed)
  : impl_(std::make_unique<impl>()) {
  impl_->port = port;
  impl_->timeout = timeout;
  impl_->retry_closed = retry_closed;
}

http_client::~http_client() = default;
bool http_client::connected() const { return impl_ && impl_->stream.has_value(); }
http_client::http_client(http_client&&) noexcept = default;
http_client& http_client::operator=(http_client&&) noexcept = default;

http_response http_client::request(std::string_view method, std::string_view target,
                                   const header_list& headers, std::string_view body) {
  http::request<http::string_body> req;
  req.method_string(beast::string_view{method.data(), method.size()});
  req.target(beast::string_view{target.data(), target.size()});
  req.version(11);
  req.set(http::field::host, "127.0.0.1:" + std::to_string(impl_->port));
  for (auto& [name, value] : headers)
    req.insert(name, value);
  req.body() = std::string{body};
  if (!body.empty() || method != "GET")
    req.prepare_payload();
  for (int attempt = 0; attempt < 2; ++attempt) {
    bool reused = impl_->stream.has_value();
    if (!reused)
      impl_->connect();
    if (auto answer = impl_->exchange(req, reused))
      return *answer;
  }
  throw http_error(http_error::kind::no_answer,
                   "the server closed the connection twice without answering");
}

// -- webhook deliveries --------------------------------------------------------

delivery_counts counts_of(const http_response& response) {
  auto body = response.parsed();
  delivery_counts counts;
  if (!body.is_object())
    throw std::runtime_error("answer is not a JSON object: " + response.body);
  counts.received = body.value("received", false);
  counts.accepted = body.value("accepted", int64_t{-1});
  counts.duplicates = body.value("duplicates", int64_t{-1});
  counts.ignored = body.value("ignored", int64_t{-1});
  return counts;
}

twin_answers send_to_both(uint16_t first_port, uint16_t second_port,
                          const std::vector<std::string>& bodies, size_t threads,
                          const std::optional<std::string>& secret) {
  twin_answers out;
  out.first.resize(bodies.size());
  out.second.resize(bodies.size());
  std::atomic<size_t> next{0};
  run_concurrently(threads, [&](size_t) {
    http_client to_first{first_port};
    http_client to_second{second_port};
    for (size_t i = next++; i < bodies.size(); i = next++) {
      auto other = std::async(std::launch::async,
                              [&] { return post_webhook(to_second, bodies[i], secret); });
      auto mine = post_webhook(to_first, bodies[i], secret);
      auto theirs = other.get();
      for (auto [response, slot] : {std::pair{&mine, &out.first[i]},
                                    std::pair{&theirs, &out.second[i]}}) {
        slot->status = response->status;
        slot->body = response->body;
        if (response->status == 200)
          slot->counts = counts_of(*response);
      }
    }
  });
  return out;
}

delivery_counts check_accepted_by_one(const twin_answers& answers) {
  delivery_counts sum;
  sum.accepted = sum.duplicates = sum.ignored = 0;
  for (size_t i = 0; i < answers.first.size(); ++i) {
    const auto& a = answers.first[i];
    const auto& b = answers.second[i];
    BOOST_TEST(a.status == 200, "first server, delivery " << i << ": " << a.status << " " << a.body);
    BOOST_TEST(b.status == 200, "second server, delivery " << i << ": " << b.status << " " << b.body);
    BOOST_TEST(a.counts.accepted + b.counts.accepted == 1,
               "delivery " << i << " accepted by both or neither: " << a.body << " / " << b.body);
    for (const auto* x : {&a, &b}) {
      sum.accepted += x->counts.accepted;
      sum.duplicates += x->counts.duplicates;
      sum.ignored += x->counts.ignored;
    }
  }
  return sum;
}

http_response post_webhook(http_client& client, const std::string& body,
                           const std::optional<std::string>& secret,
                           const std::string& event_type, const header_list& extra) {
  header_list headers{{"Content-Type", "application/json"},
                      {"X-Webhook-Payload-Version", "v2"}};
  if (!event_type.empty())
    headers.emplace_back("X-Webhook-Event", event_type);
  if (secret)
    headers.emplace_back("X-Webhook-Signature", sign(body, *secret));
  headers.insert(headers.end(), extra.begin(), extra.end());
  return client.request("POST", webhook_path, headers, body);
}

kapso_message text_message(const workspace& ws, std::string id, int64_t timestamp,
                           std::string text, std::string phone) {
  kapso_message m;
  m.id = std::move(id);
  m.phone_number_id = ws.phone_number_id;
  m.timestamp = timestamp;
  m.text = std::move(text);
  m.phone = std::move(phone);
  return m;
}

json kapso_event(const kapso_message& m) {
  auto who = m.phone.empty() ? m.bsuid : m.phone;
  std::string whatsapp_conversation_id = "conv_";
  for (char c : who)
    if (std::isalnum(static_cast<unsigned char>(c)))
      whatsapp_conversation_id += c;
  json kapso = json::object();
  kapso["direction"] = m.direction;
  kapso["status"] = m.status;
  kapso["origin"] = m.origin;
  kapso["whatsapp_conversation_id"] = whatsapp_conversation_id;
  kapso["has_media"] = !m.media_url.empty();
  if (m.type == "text")
    kapso["content"] = m.text;
  if (m.contact_name)
    kapso["contact_name"] = *m.contact_name;
  if (!m.media_url.empty())
    kapso["media_url"] = m.media_url;

  json message = json::object();
  if (!m.id.empty())
    message["id"] = m.id;
  message["timestamp"] = std::to_string(m.timestamp);
  message["type"] = m.type;
  if (m.type == "text")
    message["text"] = json{{"body", m.text}};
  else if (!m.type_object.is_null())
    message[m.type] = m.type_object;
  if (!m.context.is_null())
    message["context"] = m.context;
  message["kapso"] = kapso;

  json conversation = json::object();
  conversation["id"] = whatsapp_conversation_id;
  conversation["phone_number_id"] = m.phone_number_id;
  if (!m.phone.empty())
    conversation["phone_number"] = m.phone;
  if (m.contact_name)
    conversation["contact_name"] = *m.contact_name;
  if (!m.bsuid.empty())
    conversation["business_scoped_user_id"] = m.bsuid;

  json event = json::object();
  event["message"] = message;
  event["conversation"] = conversation;
  event["phone_number_id"] = m.phone_number_id;
  event["is_new_conversation"] = false;
  return event;
}

json kapso_batch(const std::vector<json>& events, const std::string& type) {
  json batch = json::object();
  batch["type"] = type;
  batch["batch"] = true;
  batch["data"] = events;
  return batch;
}

json meta_forward(const std::string& phone_number_id, const json& value_fields) {
  json metadata = json::object();
  metadata["display_phone_number"] = "15550009999";
  metadata["phone_number_id"] = phone_number_id;
  json value = json::object();
  value["messaging_product"] = "whatsapp";
  value["metadata"] = metadata;
  value.update(value_fields);
  json change = json::object();
  change["field"] = "messages";
  change["value"] = value;
  json entry = json::object();
  entry["id"] = "102290129340398";
  entry["changes"] = json::array({change});
  json body = json::object();
  body["object"] = "whatsapp_business_account";
  body["entry"] = json::array({entry});
  return body;
}

json meta_text_message(const std::string& from, const std::string& id, int64_t timestamp,
                       const std::string& text) {
  json message = json::object();
  message["from"] = from;
  message["id"] = id;
  message["timestamp"] = std::to_string(timestamp);
  message["type"] = "text";
  message["text"] = json{{"body", text}};
  return message;
}

http_response post_meta(http_client& client, const std::string& body,
                        const std::string& secret) {
  return client.request("POST", webhook_path,
                        {{"Content-Type", "application/json"},
                         {"X-Hub-Signature-256", "sha256=" + sign(body, secret)}},
                        body);
}

// -- suites --------------------------------------------------------------------

namespace {

std::vector<workspace> make_pool(const test_database& db, size_t n,
                                 const std::optional<std::string>& secret) {
  std::vector<workspace> pool;
  for (size_t i = 0; i < n; ++i)
    pool.push_back(db.insert_workspace(secret));
  return pool;
}

} // namespace

inbox_fixture::inbox_fixture(server_options options, size_t workspaces,
                             std::optional<std::string> workspace_secret)
  : db(true),
    pool(make_pool(db, workspaces, workspace_secret)),
    server(db.url(), std::move(options)) {
}

workspace inbox_fixture::take_workspace() {
  if (next >= pool.size())
    throw std::runtime_error("inbox_fixture: workspace pool exhausted; enlarge it");
  return pool[next++];
}

int64_t inbox_rows(const test_database& db, const std::string& workspace_id) {
  return db.count("SELECT (SELECT count(*) FROM contacts WHERE workspace_id = $1::uuid)"
                  " + (SELECT count(*) FROM conversations WHERE workspace_id = $1::uuid)"
                  " + (SELECT count(*) FROM messages WHERE workspace_id = $1::uuid)",
                  workspace_id);
}

double metric_sum(const std::string& exposition, const std::string& metric,
                  const std::vector<std::string>& labels) {
  double sum = 0;
  std::istringstream lines{exposition};
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#' || line.compare(0, metric.size(), metric) != 0)
      continue;
    if (line.size() <= metric.size())
      continue;
    auto next = line[metric.size()];
    if (next != '{' && next != ' ')
      continue;
    std::string label_text;
    size_t value_pos = metric.size();
    if (next == '{') {
      auto close = line.find('}', metric.size());
      if (close == std::string::npos)
        continue;
      label_text = line.substr(metric.size(), close - metric.size() + 1);
      value_pos = close + 1;
    }
    bool all = std::all_of(labels.begin(), labels.end(), [&](const std::string& l) {
      return label_text.find(l) != std::string::npos;
    });
    if (all)
      sum += std::strtod(line.c_str() + value_pos, nullptr);
  }
  return sum;
}

} // namespace kapso_test
