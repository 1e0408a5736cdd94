// The deployment files: systemd readiness through sd_notify, and the Grafana dashboard.
#include <fstream>
#include <set>
#include <sstream>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"

using namespace kapso_test;

namespace {

// The datagram socket systemd would listen on for a Type=notify service (abstract
// namespace, so no path length or clean-up issues).
class notify_socket {
 public:
  notify_socket() {
    name_ = "@kapso-notify-" + unique_suffix();
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    addr.sun_path[0] = '\0';
    name_.copy(addr.sun_path + 1, name_.size() - 1, 1);
    auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name_.size());
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), length) != 0)
      throw std::runtime_error("cannot bind the notify socket");
  }
  ~notify_socket() { ::close(fd_); }
  notify_socket(const notify_socket&) = delete;
  notify_socket& operator=(const notify_socket&) = delete;

  const std::string& name() const { return name_; }

  // Every notification received so far, one per datagram.
  std::vector<std::string> drain() {
    std::vector<std::string> received;
    char buffer[4096];
    for (;;) {
      auto n = ::recv(fd_, buffer, sizeof(buffer), 0);
      if (n <= 0)
        return received;
      received.emplace_back(buffer, static_cast<size_t>(n));
    }
  }

 private:
  std::string name_;
  int fd_ = -1;
};

bool has_line(const std::vector<std::string>& notifications, const std::string& line) {
  for (auto& n : notifications) {
    std::istringstream lines{n};
    for (std::string l; std::getline(lines, l);)
      if (l == line)
        return true;
  }
  return false;
}

std::string read_source(const std::string& relative) {
  std::ifstream in{std::string{KAPSO_SOURCE_DIR} + "/" + relative};
  BOOST_TEST_REQUIRE(in.good(), relative << " is missing");
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

} // namespace

BOOST_AUTO_TEST_SUITE(deploy)

BOOST_AUTO_TEST_CASE(sd_notify_ready_once_listening_and_stopping_on_sigterm) {
  test_database db;
  notify_socket systemd;
  server_options options;
  options.env["NOTIFY_SOCKET"] = systemd.name();
  options.name = "notify";
  server_process server{db.url(), options};
  // start() returned: /readyz answered 200, so the server listened before this point.
  std::vector<std::string> received;
  BOOST_TEST(eventually([&] {
               auto more = systemd.drain();
               received.insert(received.end(), more.begin(), more.end());
               return has_line(received, "READY=1");
             }, 5s),
             "no READY=1 from the server");
  BOOST_TEST(!has_line(received, "STOPPING=1"));
  BOOST_TEST(server.stop() == 0);
  auto after = systemd.drain();
  received.insert(received.end(), after.begin(), after.end());
  BOOST_TEST(has_line(received, "STOPPING=1"), "no STOPPING=1 after SIGTERM");
}

BOOST_AUTO_TEST_CASE(grafana_dashboard_is_valid_and_covers_the_metrics) {
  auto dashboard = json::parse(read_source("deploy/grafana/kapso-ingest.json"));
  BOOST_TEST(dashboard.at("title").get<std::string>() == "kapso-ingest");
  std::set<std::string> ids;
  std::string expressions;
  size_t graphs = 0;
  for (auto& panel : dashboard.at("panels")) {
    BOOST_TEST(ids.insert(std::to_string(panel.at("id").get<int>())).second,
               "panel id " << panel.at("id") << " is used twice");
    auto& grid = panel.at("gridPos");
    BOOST_TEST(grid.at("x").get<int>() + grid.at("w").get<int>() <= 24,
               "panel " << panel.at("id") << " is wider than the dashboard");
    if (panel.at("type") == "row")
      continue;
    ++graphs;
    BOOST_TEST(!panel.at("title").get<std::string>().empty());
    for (auto& target : panel.at("targets"))
      expressions += target.at("expr").get<std::string>() + "\n";
  }
  BOOST_TEST(graphs >= 10u);
  for (auto metric : {"kapso_http_requests_total", "kapso_http_request_duration_seconds_bucket",
                      "kapso_events_total", "kapso_spool_bytes", "kapso_spool_records",
                      "kapso_commit_seconds_bucket", "kapso_in_flight_deliveries",
                      "kapso_commit_failures_total", "process_resident_memory_bytes",
                      "kapso_build_info"})
    BOOST_TEST(expressions.find(metric) != std::string::npos, metric << " is on no panel");
}

BOOST_AUTO_TEST_SUITE_END()
