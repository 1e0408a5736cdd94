// Nothing makes the listener deaf or bloated: bodies refused from their
// headers within one byte budget, accepting that resumes after any accept
// error, and systemd's watchdog fed only while the listener answers.
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "tests/fault/fault_support.hpp"
#include "tests/fault/raw_client.hpp"

using namespace kapso_test;
using namespace kapso_fault;
namespace utf = boost::unit_test;

namespace {

std::string post_head(uint64_t content_length) {
  return "POST /api/webhook/kapso HTTP/1.1\r\nHost: 127.0.0.1\r\n"
         "Content-Type: application/json\r\nX-Webhook-Event: whatsapp.message.received\r\n"
         "Content-Length: " + std::to_string(content_length) + "\r\n\r\n";
}

// Sends what the socket takes now; false once the peer is gone.
bool send_some(int fd, const std::string& bytes) {
  auto n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  return n >= 0 || errno == EAGAIN || errno == EWOULDBLOCK;
}

// The lowest descriptor number the process does not use. The kernel hands
// out the lowest free number and refuses one at or past the soft limit, so
// a limit of this number leaves the process no descriptor at all.
size_t lowest_free_descriptor(int pid) {
  std::set<size_t> used;
  for (const auto& entry :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
    used.insert(std::stoul(entry.path().filename().string()));
  size_t lowest = 0;
  while (used.count(lowest) > 0)
    ++lowest;
  return lowest;
}

// The process's descriptor count once it stopped changing (the warm-up's
// connections closed, say) for half a second.
size_t settled_descriptors(int pid) {
  size_t last = open_descriptors(pid);
  auto stable_since = clock_type::now();
  auto deadline = stable_since + 10s;
  while (clock_type::now() - stable_since < 500ms && clock_type::now() < deadline) {
    std::this_thread::sleep_for(50ms);
    auto now = open_descriptors(pid);
    if (now != last)
      stable_since = clock_type::now();
    last = now;
  }
  return last;
}

// CPU seconds the process used so far (user + system).
double cpu_seconds(int pid) {
  std::ifstream stat{"/proc/" + std::to_string(pid) + "/stat"};
  std::string line;
  std::getline(stat, line);
  std::istringstream fields{line.substr(line.rfind(')') + 2)};
  std::string field;
  double ticks = 0;
  for (int i = 3; fields >> field; ++i)
    if (i == 14 || i == 15)
      ticks += std::stod(field);
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// Lowers the soft descriptor limit of a running process (the hard limit
// stays, so it can be raised again); raised back when the scope ends.
class lowered_descriptor_limit {
public:
  lowered_descriptor_limit(int pid, rlim_t soft) : pid_(pid) {
    rlimit lowered{};
    BOOST_TEST_REQUIRE(::prlimit(pid_, RLIMIT_NOFILE, nullptr, &original_) == 0);
    lowered.rlim_cur = soft;
    lowered.rlim_max = original_.rlim_max;
    BOOST_TEST_REQUIRE(::prlimit(pid_, RLIMIT_NOFILE, &lowered, nullptr) == 0);
  }
  ~lowered_descriptor_limit() { restore(); }
  void restore() {
    if (!restored_)
      ::prlimit(pid_, RLIMIT_NOFILE, &original_, nullptr);
    restored_ = true;
  }

private:
  int pid_;
  rlimit original_{};
  bool restored_ = false;
};

bool healthz_answers(uint16_t port) {
  try {
    http_client client{port, 1s};
    return client.get("/healthz").status == 200;
  } catch (const std::exception&) {
    return false;
  }
}

// The datagram socket systemd gives a Type=notify service (NOTIFY_SOCKET).
class notify_socket {
public:
  // Under /tmp: a socket path must fit in 108 bytes, a build tree may not.
  notify_socket() {
    char dir[] = "/tmp/kapso-notify-XXXXXX";
    BOOST_TEST_REQUIRE(::mkdtemp(dir) != nullptr);
    dir_ = dir;
    path_ = dir_ + "/notify.sock";
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    BOOST_TEST_REQUIRE(path_.size() < sizeof addr.sun_path);
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    BOOST_TEST_REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~notify_socket() {
    ::close(fd_);
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  const std::string& path() const { return path_; }

  // Whether "WATCHDOG=1" arrives within `within`.
  bool watchdog_ping(std::chrono::milliseconds within) {
    auto deadline = clock_type::now() + within;
    char buffer[512];
    while (clock_type::now() < deadline) {
      timeval tv{0, 50 * 1000};
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      auto n = ::recv(fd_, buffer, sizeof buffer, 0);
      if (n > 0 && std::string_view{buffer, static_cast<size_t>(n)}.find("WATCHDOG=1")
                     != std::string_view::npos)
        return true;
    }
    return false;
  }

  // Waits (at most `within`) for a stretch of `quiet` without a ping.
  bool pings_stop(std::chrono::milliseconds quiet, std::chrono::milliseconds within) {
    auto deadline = clock_type::now() + within;
    while (clock_type::now() < deadline)
      if (!watchdog_ping(quiet))
        return true;
    return false;
  }

private:
  std::string dir_;
  std::string path_;
  int fd_ = -1;
};

} // namespace

BOOST_AUTO_TEST_SUITE(listener)

// Issue 16, acceptance 2: 1,000 connections each announce a 60 MB body and
// send it slowly; each is answered 413 from its headers, memory stays
// bounded, and a well-behaved client is served meanwhile.
BOOST_AUTO_TEST_CASE(announced_bodies_over_the_limit_are_refused_413_and_memory_stays_bounded,
                     *utf::timeout(150)) {
  constexpr size_t attackers = 1000;
  constexpr size_t rss_bound_kib = 256 * 1024;
  fault_database db;
  auto workspaces = db.workspaces(2);
  server_process server{db.url(), fault_server("oversized")};
  load_options options;
  options.tag = "oversized";
  options.workspaces = workspaces;
  options.threads = 2;
  options.pause = 20ms;
  expected_store expected;
  expected.add(warm_up(server.port(), options), options);
  rss_sampler rss{server.pid()};
  load_driver load{server.port(), options};
  load.start();

  std::vector<int> slow;
  for (size_t i = 0; i < attackers; ++i) {
    auto fd = open_raw(server.port());
    BOOST_TEST_REQUIRE(fd >= 0, "cannot open attacking connection " << i);
    send_some(fd, post_head(60'000'000));
    slow.push_back(fd);
  }
  // The body, 4 KiB at a time on every connection, for about four seconds.
  const std::string piece(4096, 'x');
  for (int round = 0; round < 20; ++round) {
    for (auto fd : slow)
      send_some(fd, piece);
    std::this_thread::sleep_for(200ms);
  }
  load.stop();

  std::map<int, size_t> answers;
  for (auto fd : slow) {
    ++answers[answer_status(fd, 2s)];
    ::close(fd);
  }
  std::string described;
  for (auto& [status, n] : answers)
    described += " " + std::to_string(status) + "=" + std::to_string(n);
  BOOST_TEST_MESSAGE("[fault] oversized bodies answered:" << described << "; RSS max "
                                                          << rss.max_kib() / 1024 << " MiB");
  BOOST_TEST(answers[413] == attackers, "not every oversized body was answered 413:" << described);
  BOOST_TEST(rss.max_kib() < rss_bound_kib,
             "server RSS reached " << rss.max_kib() / 1024 << " MiB (bound 256 MiB)");
  auto summary = summarize(load.deliveries());
  BOOST_TEST_MESSAGE("[fault] well-behaved client: " << summary.describe());
  check_answers(summary);
  BOOST_TEST(summary.requests >= 20u, summary.describe());
  BOOST_TEST(summary.acknowledged_deliveries == summary.deliveries,
             "signed deliveries not answered 200 during the attack: " << summary.describe());
  expected.add(load.deliveries(), options);
  check_stored(db, expected, true);
}

// Bodies being read and deliveries waiting share http.max-in-flight-bytes:
// past it a request is answered 503 from its headers, and the budget comes
// back when the connections go.
BOOST_AUTO_TEST_CASE(bodies_past_the_byte_budget_are_refused_503_before_they_are_read,
                     *utf::timeout(90)) {
  constexpr uint64_t budget = 4 * 1024 * 1024;
  constexpr uint64_t body = 900'000;
  constexpr size_t connections = 40;
  constexpr size_t admitted = budget / body; // 4
  fault_database db;
  auto workspaces = db.workspaces(1);
  server_process server{db.url(), fault_server("budget", {"--http.max-in-flight-bytes="
                                                          + std::to_string(budget)})};
  load_options options;
  options.tag = "budget";
  options.workspaces = workspaces;
  warm_up(server.port(), options);

  std::vector<int> readers;
  std::map<int, size_t> answers;
  for (size_t i = 0; i < connections; ++i) {
    auto fd = open_raw(server.port());
    BOOST_TEST_REQUIRE(fd >= 0);
    send_some(fd, post_head(body) + std::string(1024, '{'));
    readers.push_back(fd);
  }
  for (auto fd : readers)
    ++answers[answer_status(fd, 1s)];
  BOOST_TEST(answers[503] == connections - admitted, "503s: " << answers[503]);
  BOOST_TEST(answers[0] == admitted, "bodies still being read: " << answers[0]);
  auto held = metric_sum(metrics_of(server.port()), "kapso_in_flight_bytes");
  BOOST_TEST(held == static_cast<double>(admitted * body));
  for (auto fd : readers)
    ::close(fd);
  BOOST_TEST(eventually(
               [&] { return metric_sum(metrics_of(server.port()), "kapso_in_flight_bytes") == 0; },
               5s),
             "the byte budget was not given back when the connections closed");
  BOOST_TEST(signed_delivery_works(server.port(), options, "wamid.budget.after", 5s).has_value());
}

// A chunked body has no length up front: it is cut (413) once it passes
// http.body-limit; a chunked delivery within the limit is stored.
BOOST_AUTO_TEST_CASE(a_chunked_body_is_cut_at_the_limit, *utf::timeout(60)) {
  constexpr size_t body_limit = 64 * 1024;
  fault_database db;
  auto workspaces = db.workspaces(1);
  server_process server{db.url(), fault_server("chunked", {"--http.body-limit="
                                                           + std::to_string(body_limit)})};
  auto chunked_head = [](const std::string& signature) {
    return "POST /api/webhook/kapso HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           "Content-Type: application/json\r\nX-Webhook-Event: whatsapp.message.received\r\n"
           "X-Webhook-Signature: " + signature + "\r\nTransfer-Encoding: chunked\r\n\r\n";
  };
  auto chunk = [](const std::string& data) {
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    return size + data + "\r\n";
  };

  auto fd = open_raw(server.port());
  BOOST_TEST_REQUIRE(fd >= 0);
  BOOST_TEST(send_some(fd, chunked_head("00")));
  const std::string piece(16 * 1024, ' ');
  int status = 0;
  size_t sent = 0;
  for (int i = 0; i < 16 && status == 0; ++i) {
    send_some(fd, chunk(piece));
    sent += piece.size();
    status = answer_status(fd, 200ms);
  }
  ::close(fd);
  BOOST_TEST(status == 413, "chunked body answered " << status);
  BOOST_TEST(sent > body_limit);
  BOOST_TEST(sent <= body_limit + 2 * piece.size(), "the body was read past the limit");

  auto event = kapso_event(text_message(workspaces[0], "wamid.chunked.ok", 1730500000, "hola"));
  auto body = event.dump();
  http_client client{server.port(), 5s};
  fd = open_raw(server.port());
  BOOST_TEST_REQUIRE(fd >= 0);
  BOOST_TEST(send_some(fd, chunked_head(sign(body, global_secret)) + chunk(body.substr(0, 100))
                             + chunk(body.substr(100)) + "0\r\n\r\n"));
  BOOST_TEST(answer_status(fd, 5s) == 200);
  ::close(fd);
  BOOST_TEST(db.count("SELECT count(*) FROM messages WHERE kapso_message_id = 'wamid.chunked.ok'")
             == 1);
}

// Issue 16, acceptance 3: the descriptor limit of the running server is
// lowered, a burst of connections passes it (accept fails with EMFILE), and
// once they are closed the server accepts again within 5 s.
BOOST_AUTO_TEST_CASE(a_lowered_descriptor_limit_does_not_stop_accepting_for_good,
                     *utf::timeout(90)) {
  fault_database db;
  auto workspaces = db.workspaces(1);
  server_process server{db.url(), fault_server("nofile-running")};
  load_options options;
  options.tag = "nofile-running";
  options.workspaces = workspaces;
  expected_store expected;
  expected.add(warm_up(server.port(), options), options);
  lowered_descriptor_limit limit{server.pid(), 64};

  std::vector<int> burst;
  for (int i = 0; i < 120; ++i)
    if (auto fd = open_raw(server.port()); fd >= 0)
      burst.push_back(fd);
  BOOST_TEST(eventually([&] { return open_descriptors(server.pid()) >= 60; }, 5s),
             "the burst did not use up the server's descriptors");
  for (auto fd : burst)
    ::close(fd);
  auto closed = clock_type::now();
  BOOST_TEST(eventually([&] { return healthz_answers(server.port()); }, 5s, 100ms),
             "/healthz not answered within 5 s after the burst closed");
  BOOST_TEST_MESSAGE("[fault] /healthz after " << ms_since(closed) << " ms");
  BOOST_TEST(metric_sum(metrics_of(server.port()), "kapso_http_accept_restarts_total") >= 1,
             "no accept was armed again, so none was lost: the test proves nothing");
  BOOST_TEST(signed_delivery_works(server.port(), options, "wamid.nofile.running", 5s)
               .has_value());
  BOOST_TEST(server.running());
}

// The same with every descriptor held by something other than clients (the
// server's own database connections, files and threads): accept keeps
// failing without a busy loop, and resumes once descriptors are free.
BOOST_AUTO_TEST_CASE(accepting_resumes_when_descriptors_held_elsewhere_come_free,
                     *utf::timeout(90)) {
  fault_database db;
  auto workspaces = db.workspaces(1);
  server_process server{db.url(), fault_server("nofile-held")};
  load_options options;
  options.tag = "nofile-held";
  options.workspaces = workspaces;
  warm_up(server.port(), options);
  settled_descriptors(server.pid());
  lowered_descriptor_limit limit{server.pid(), lowest_free_descriptor(server.pid())};

  std::vector<int> waiting;
  for (int i = 0; i < 10; ++i)
    if (auto fd = open_raw(server.port()); fd >= 0)
      waiting.push_back(fd);
  BOOST_TEST_REQUIRE(waiting.size() == 10u);
  const std::string request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  for (auto fd : waiting)
    send_some(fd, request);
  auto cpu_before = cpu_seconds(server.pid());
  BOOST_TEST(answer_status(waiting.front(), 3s) == 0,
             "a connection was served with no descriptor free: the fault did not happen");
  auto cpu_used = cpu_seconds(server.pid()) - cpu_before;
  BOOST_TEST_MESSAGE("[fault] CPU while accept fails: " << cpu_used << " s in 3 s");
  BOOST_TEST(cpu_used < 0.5, "the server spun while accept kept failing: " << cpu_used << " s");

  limit.restore();
  auto freed = clock_type::now();
  size_t answered = 0;
  for (auto fd : waiting) {
    auto left = std::max<long long>(0, 5000 - ms_since(freed));
    answered += answer_status(fd, std::chrono::milliseconds(left)) == 200 ? 1 : 0;
    ::close(fd);
  }
  BOOST_TEST(answered == waiting.size(),
             answered << " of the connections that waited in the queue were served");
  BOOST_TEST(ms_since(freed) < 5000, "accepting resumed only after " << ms_since(freed) << " ms");
  BOOST_TEST(healthz_answers(server.port()));
}

// Issue 16, acceptance 3, last line: under systemd (NOTIFY_SOCKET,
// WATCHDOG_USEC) the server pings the watchdog only while a request through
// its own listening socket is answered.
BOOST_AUTO_TEST_CASE(the_watchdog_is_fed_only_while_the_listener_answers, *utf::timeout(60)) {
  fault_database db;
  db.workspaces(1);
  notify_socket systemd;
  auto options = fault_server("watchdog");
  options.env["NOTIFY_SOCKET"] = systemd.path();
  options.env["WATCHDOG_USEC"] = "600000";
  server_process server{db.url(), options};
  BOOST_TEST_REQUIRE(systemd.watchdog_ping(3s), "no WATCHDOG=1 from a healthy server");

  settled_descriptors(server.pid());
  lowered_descriptor_limit limit{server.pid(), lowest_free_descriptor(server.pid())};
  BOOST_TEST(systemd.pings_stop(1500ms, 5s),
             "the watchdog was still fed while the listener could not answer");
  limit.restore();
  BOOST_TEST(systemd.watchdog_ping(5s), "the watchdog was not fed again once it answers");
  BOOST_TEST(server.running());
}

BOOST_AUTO_TEST_SUITE_END()
