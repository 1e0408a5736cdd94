// The fleet of scripts/cluster.sh as the cluster tests see it, and a Kapso-like sender.
#include "tests/cluster/topology.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace kapso_cluster {

namespace fs = std::filesystem;
using namespace kapso_test;

namespace {

std::string env_or_throw(const char* name) {
  auto value = std::getenv(name);
  if (value == nullptr || *value == '\0')
    throw std::runtime_error(std::string{name}
                             + " is not set: the cluster tests run through CTest "
                               "(scripts/test.sh), which starts the cluster first");
  return value;
}

std::string read_text(const std::string& path) {
  std::ifstream in{path};
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

struct command_result {
  int exit_code = -1;
  std::string output;
};

// Runs argv to completion with stdout and stderr in a log file. Descriptors above 2 are
// closed in the child: the daemons cluster.sh starts must not hold this test's sockets.
command_result run_command(const std::vector<std::string>& args, std::chrono::seconds timeout) {
  auto log_dir = std::string{KAPSO_BINARY_DIR} + "/test-logs";
  fs::create_directories(log_dir);
  auto log = log_dir + "/cluster-" + unique_suffix() + ".log";
  std::vector<std::string> argv = args;
  std::vector<char*> argv_c;
  for (auto& a : argv)
    argv_c.push_back(a.data());
  argv_c.push_back(nullptr);
  int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (out < 0 || in < 0)
    throw std::runtime_error("cannot open " + log + ": " + std::strerror(errno));
  auto pid = ::fork();
  if (pid == 0) {
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    ::close_range(3, ~0U, 0);
    ::execvp(argv_c[0], argv_c.data());
    ::_exit(127);
  }
  ::close(out);
  ::close(in);
  if (pid < 0)
    throw std::runtime_error(std::string{"fork failed: "} + std::strerror(errno));
  command_result result;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    auto r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      result.output = "(timed out after " + std::to_string(timeout.count()) + " s)\n";
      break;
    }
    std::this_thread::sleep_for(50ms);
  }
  result.output += read_text(log);
  return result;
}

std::string cluster_script() {
  return std::string{KAPSO_SOURCE_DIR} + "/scripts/cluster.sh";
}

std::string last_lines(const std::string& text, size_t n) {
  std::vector<std::string> lines;
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  std::string result;
  for (size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i)
    result += lines[i] + "\n";
  return result;
}

// Children of `parent` (backends of a postmaster), from /proc.
std::vector<int> children_of(int parent) {
  std::vector<int> result;
  for (auto& entry : fs::directory_iterator{"/proc"}) {
    auto name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos)
      continue;
    auto stat = read_text(entry.path().string() + "/stat");
    // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
    auto close = stat.rfind(')');
    if (close == std::string::npos)
      continue;
    std::istringstream fields{stat.substr(close + 1)};
    std::string state;
    int ppid = 0;
    fields >> state >> ppid;
    if (ppid == parent)
      result.push_back(std::stoi(name));
  }
  return result;
}

std::atomic<uint64_t> workspace_counter{0};

} // namespace

topology topology::ensure_up(std::chrono::seconds timeout) {
  topology t;
  t.dir_ = env_or_throw("KAPSO_CLUSTER_DIR");
  t.secret_ = env_or_throw("KAPSO_WEBHOOK_SECRET");
  auto up = run_command({"bash", cluster_script(), "up"}, timeout);
  if (up.exit_code != 0)
    throw std::runtime_error("scripts/cluster.sh up failed (exit " + std::to_string(up.exit_code)
                             + "):\n" + last_lines(up.output, 40));
  // Its last two lines say where the fleet is.
  std::istringstream lines{last_lines(up.output, 2)};
  std::string line, front;
  if (std::getline(lines, line) && line.rfind("front ", 0) == 0)
    front = line.substr(6);
  if (std::getline(lines, line) && line.rfind("database ", 0) == 0)
    t.database_url_ = line.substr(9);
  std::istringstream env{read_text(t.dir_ + "/cluster.env")};
  while (std::getline(env, line)) {
    auto eq = line.find('=');
    if (!line.empty() && line[0] != '#' && eq != std::string::npos)
      t.env_[line.substr(0, eq)] = line.substr(eq + 1);
  }
  auto multi_host = "postgresql://postgres@127.0.0.1:" + std::to_string(t.port("PG_PORT_1"))
                    + ",127.0.0.1:" + std::to_string(t.port("PG_PORT_2"))
                    + "/kapso?target_session_attrs=read-write";
  if (t.database_url_ != multi_host
      || front != "http://127.0.0.1:" + std::to_string(t.front_port()))
    throw std::runtime_error("scripts/cluster.sh up did not end with the front and the "
                             "multi-host database lines:\n" + last_lines(up.output, 10));
  return t;
}

std::vector<component> topology::status() const {
  auto result = run_command({"bash", cluster_script(), "status"}, 60s);
  if (result.exit_code != 0)
    throw std::runtime_error("scripts/cluster.sh status failed:\n" + result.output);
  std::vector<component> components;
  std::istringstream lines{result.output};
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields{line};
    component c;
    std::string pid;
    if (!(fields >> c.name >> pid >> c.role) || c.name == "[kapso]")
      continue;
    c.pid = pid == "-" ? -1 : std::stoi(pid);
    components.push_back(c);
  }
  return components;
}

component topology::find(const std::string& name) const {
  for (auto& c : status())
    if (c.name == name)
      return c;
  throw std::runtime_error("scripts/cluster.sh status has no line for " + name);
}

std::string topology::primary() const {
  auto primary_like = [](const std::string& state) {
    return state == "primary" || state == "wait_primary" || state == "single";
  };
  // cluster.sh prints REPORTED or, while the monitor moves a node, REPORTED>GOAL (e.g.
  // wait_primary>primary right after a switchover, primary>draining for the old primary).
  for (auto& c : status()) {
    auto arrow = c.role.find('>');
    auto reported = c.role.substr(0, arrow);
    auto goal = arrow == std::string::npos ? reported : c.role.substr(arrow + 1);
    if (c.pid > 0 && primary_like(reported) && primary_like(goal))
      return c.name;
  }
  return {};
}

uint16_t topology::port(const std::string& key) const {
  auto found = env_.find(key);
  if (found == env_.end())
    throw std::runtime_error(key + " missing from " + dir_ + "/cluster.env");
  return static_cast<uint16_t>(std::stoi(found->second));
}

uint16_t topology::node_port(const std::string& node) const {
  return port(node == "pg-node-1" ? "PG_PORT_1" : "PG_PORT_2");
}

std::string topology::node_url(const std::string& node) const {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(node_port(node)) + "/kapso";
}

std::string topology::monitor_url() const {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(port("MONITOR_PORT"))
         + "/pg_auto_failover";
}

void topology::kill_ingest(const std::string& name) const {
  auto c = find(name);
  if (c.pid <= 0 || ::kill(c.pid, SIGKILL) != 0)
    throw std::runtime_error("cannot kill " + name);
}

void topology::kill_haproxy() const {
  auto c = find("haproxy");
  if (c.pid <= 0 || ::kill(c.pid, SIGKILL) != 0)
    throw std::runtime_error("cannot kill haproxy");
}

std::string topology::roll(std::chrono::seconds timeout) const {
  auto result = run_command({"bash", cluster_script(), "roll"}, timeout);
  if (result.exit_code != 0)
    throw std::runtime_error("scripts/cluster.sh roll failed (exit "
                             + std::to_string(result.exit_code) + "):\n"
                             + last_lines(result.output, 40));
  return result.output;
}

void topology::signal_node(const std::string& name, int signal) const {
  auto keeper = find(name).pid;
  auto dir = dir_ + "/pg/"
             + (name == "monitor" ? "monitor" : name == "pg-node-1" ? "node1" : "node2");
  std::istringstream pidfile{read_text(dir + "/postmaster.pid")};
  int postmaster = -1;
  pidfile >> postmaster;
  if (keeper <= 0 || postmaster <= 0)
    throw std::runtime_error("cannot find the processes of " + name);
  auto backends = children_of(postmaster);
  // The keeper first, so it cannot restart the postmaster it watches.
  ::kill(-keeper, signal);
  ::kill(postmaster, signal);
  for (auto pid : backends)
    ::kill(pid, signal);
}

double topology::metric(int n, const std::string& name) const {
  try {
    http_client client{ingest_port(n), 5s};
    auto metrics = client.get("/metrics");
    if (metrics.status != 200)
      return -1;
    return metric_sum(metrics.body, name);
  } catch (const std::exception&) {
    return -1;
  }
}

std::string replication_state(const std::string& url) {
  pqxx::connection connection{url};
  pqxx::nontransaction tx{connection};
  auto rows = tx.exec("SELECT sync_state FROM pg_stat_replication");
  return rows.size() == 1 ? rows[0][0].c_str() : std::to_string(rows.size()) + " standbys";
}

double topology::haproxy_counter(const std::string& proxy, const std::string& server,
                                 const std::string& field) const {
  auto split = [](const std::string& line) {
    std::vector<std::string> cells;
    std::istringstream in{line};
    for (std::string cell; std::getline(in, cell, ',');)
      cells.push_back(cell);
    return cells;
  };
  std::string csv;
  try {
    http_client client{port("STATS_PORT"), 5s};
    auto stats = client.get("/stats;csv");
    if (stats.status != 200)
      return -1;
    csv = stats.body;
  } catch (const std::exception&) {
    return -1;
  }
  std::istringstream lines{csv};
  std::string line;
  if (!std::getline(lines, line) || line.rfind("# ", 0) != 0)
    return -1;
  auto header = split(line.substr(2));
  auto column = std::find(header.begin(), header.end(), field);
  if (column == header.end())
    return -1;
  auto index = static_cast<size_t>(column - header.begin());
  while (std::getline(lines, line)) {
    auto cells = split(line);
    if (cells.size() > index && cells[0] == proxy && cells[1] == server)
      return cells[index].empty() ? 0 : std::stod(cells[index]);
  }
  return -1;
}

workspace insert_workspace(const std::string& url, const std::string& label) {
  auto n = ++workspace_counter;
  // 15 digits like Kapso's ids, unique per process and call.
  auto phone_number_id = std::to_string(970000000000000ull + (::getpid() % 100000) * 1000 + n);
  pqxx::connection connection{url};
  pqxx::work work{connection};
  auto result = work.exec_params(
    "INSERT INTO workspaces(name, slug, kapso_phone_id) VALUES ($1, $2, $3) RETURNING id::text",
    "Cluster " + label + " " + phone_number_id, "cluster-" + label + "-" + phone_number_id,
    phone_number_id);
  work.commit();
  return workspace{result.at(0).at(0).c_str(), phone_number_id, std::nullopt};
}

std::string delivery_body(const workspace& ws, const std::string& id, int64_t timestamp,
                          const std::string& text, const std::string& phone) {
  return kapso_event(text_message(ws, id, timestamp, text, phone)).dump();
}

delivery_result deliver(http_client& client, uint16_t port, const std::string& body,
                        const std::string& secret,
                        std::chrono::steady_clock::time_point deadline,
                        std::chrono::milliseconds timeout) {
  delivery_result result;
  for (;;) {
    ++result.attempts;
    try {
      auto response = post_webhook(client, body, secret);
      if (response.status == 200) {
        result.counts = counts_of(response);
        result.delivered = true;
        return result;
      }
      result.failures.push_back(std::to_string(response.status));
    } catch (const std::exception& e) {
      result.failures.push_back(std::string{"error: "} + e.what());
      client = http_client{port, timeout};
    }
    if (std::chrono::steady_clock::now() >= deadline)
      return result;
    std::this_thread::sleep_for(100ms);
  }
}

std::vector<sent_message> run_load(uint16_t port, const std::string& secret,
                                   const workspace& ws, const load_options& options,
                                   const std::atomic<bool>& stop,
                                   std::atomic<size_t>& answered) {
  constexpr int64_t base = 1732000000;
  std::vector<std::vector<sent_message>> per_thread(options.threads);
  std::atomic<size_t> next{0};
  run_concurrently(options.threads, [&](size_t t) {
    http_client client{port, 10s};
    for (;;) {
      if (stop.load())
        return;
      auto k = next++;
      if (k >= options.max_deliveries)
        return;
      auto conversation = static_cast<int>(k % static_cast<size_t>(options.conversations));
      sent_message m;
      m.id = "wamid." + options.label + "." + ws.phone_number_id + "." + std::to_string(k);
      m.phone = "+1555770" + std::to_string(1000 + conversation);
      m.timestamp = base + static_cast<int64_t>(k);
      m.text = options.label + " " + std::to_string(k);
      m.first_sent = std::chrono::steady_clock::now();
      auto result = deliver(client, port, delivery_body(ws, m.id, m.timestamp, m.text, m.phone),
                            secret, m.first_sent + options.retry_window);
      m.answered_at = std::chrono::steady_clock::now();
      m.attempts = result.attempts;
      m.delivered = result.delivered;
      m.accepted = result.delivered && result.counts.accepted == 1;
      m.failures = std::move(result.failures);
      if (result.delivered)
        ++answered;
      per_thread[t].push_back(std::move(m));
      if (options.pause.count() > 0)
        std::this_thread::sleep_for(options.pause);
    }
  });
  std::vector<sent_message> all;
  for (auto& messages : per_thread)
    all.insert(all.end(), messages.begin(), messages.end());
  return all;
}

std::vector<sent_message> load_during(const topology& fleet, const workspace& ws,
                                      const load_options& options,
                                      const std::function<void(const std::atomic<size_t>&)>& scenario) {
  std::atomic<bool> stop{false};
  std::atomic<size_t> answered{0};
  std::exception_ptr failure;
  std::thread controller{[&] {
    try {
      scenario(answered);
    } catch (...) {
      failure = std::current_exception();
    }
    stop = true;
  }};
  auto messages = run_load(fleet.front_port(), fleet.secret(), ws, options, stop, answered);
  // The load ends by itself at max_deliveries: the scenario still runs to its end.
  controller.join();
  if (failure)
    std::rethrow_exception(failure);
  return messages;
}

void wait_for_answers(const std::atomic<size_t>& answered, size_t count) {
  if (!eventually([&] { return answered.load() >= count; }, 60s, 5ms))
    throw std::runtime_error("only " + std::to_string(answered.load()) + " deliveries answered "
                             "200 after a minute, waiting for " + std::to_string(count));
}

std::chrono::milliseconds longest_gap_between_answers(
  const std::vector<sent_message>& messages, std::chrono::steady_clock::time_point from,
  std::chrono::steady_clock::time_point to) {
  std::vector<std::chrono::steady_clock::time_point> answers;
  for (auto& m : messages)
    if (m.delivered)
      answers.push_back(m.answered_at);
  std::sort(answers.begin(), answers.end());
  std::chrono::steady_clock::duration longest{0};
  for (size_t i = 1; i < answers.size(); ++i)
    if (answers[i] >= from && answers[i - 1] <= to)
      longest = std::max(longest, answers[i] - answers[i - 1]);
  return std::chrono::duration_cast<std::chrono::milliseconds>(longest);
}

std::chrono::milliseconds longest_delivery(const std::vector<sent_message>& messages,
                                           std::chrono::steady_clock::time_point from,
                                           std::chrono::steady_clock::time_point to) {
  std::chrono::steady_clock::duration longest{0};
  for (auto& m : messages)
    if (m.delivered && m.answered_at >= from && m.first_sent <= to)
      longest = std::max(longest, m.answered_at - m.first_sent);
  return std::chrono::duration_cast<std::chrono::milliseconds>(longest);
}

void check_inbox(const std::string& url, const workspace& ws,
                 const std::vector<sent_message>& messages) {
  pqxx::connection connection{url};
  pqxx::nontransaction tx{connection};
  std::map<std::string, int64_t> copies;
  for (auto row : tx.exec_params("SELECT kapso_message_id, count(*) FROM messages "
                                 "WHERE workspace_id = $1::uuid GROUP BY 1", ws.id))
    copies[row[0].c_str()] = row[1].as<int64_t>();
  // A delivery never answered 200 may still have committed (its answer was lost): Kapso's
  // next retry would be answered "duplicates". So the inbox must hold every message answered
  // 200, may hold the others, and holds each at most once.
  std::map<std::string, int64_t> unread;             // phone -> stored messages
  std::map<std::string, const sent_message*> newest; // phone -> newest stored
  size_t lost = 0, twice = 0, unanswered = 0, unanswered_stored = 0;
  std::string example;
  for (auto& m : messages) {
    auto found = copies.find(m.id);
    auto n = found == copies.end() ? 0 : found->second;
    if (!m.delivered) {
      ++unanswered;
      unanswered_stored += n > 0;
    } else if (n == 0) {
      ++lost;
      example = m.id;
    }
    twice += n > 1;
    if (found == copies.end())
      continue;
    copies.erase(found);
    ++unread[m.phone];
    auto& newest_of = newest[m.phone];
    if (newest_of == nullptr || newest_of->timestamp < m.timestamp)
      newest_of = &m;
  }
  BOOST_TEST(unanswered == 0u, unanswered << " of " << messages.size()
                               << " deliveries were never answered 200 (" << unanswered_stored
                               << " of them committed all the same)");
  BOOST_TEST(lost == 0u, lost << " messages answered 200 are not stored, e.g. " << example);
  BOOST_TEST(twice == 0u, twice << " messages are stored more than once");
  BOOST_TEST(copies.empty(), copies.size() << " stored messages were never sent");
  auto conversations = tx.exec_params(
    "SELECT c.phone, cv.unread_count, extract(epoch FROM cv.last_message_at)::bigint, "
    "cv.last_message_preview FROM conversations cv JOIN contacts c ON c.id = cv.contact_id "
    "WHERE cv.workspace_id = $1::uuid",
    ws.id);
  BOOST_TEST(conversations.size() == unread.size());
  for (auto row : conversations) {
    std::string phone = row[0].c_str();
    BOOST_TEST_CONTEXT("conversation of " << phone) {
      BOOST_TEST_REQUIRE(unread.count(phone) == 1u);
      BOOST_TEST(row[1].as<int64_t>() == unread[phone]);
      BOOST_TEST(row[2].as<int64_t>() == newest[phone]->timestamp);
      BOOST_TEST(text(row[3]) == newest[phone]->text);
    }
  }
}

} // namespace kapso_cluster
