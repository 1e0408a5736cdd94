// The watchdog's probe: a plain HTTP/1.1 request over a fresh connection.
#include "http/watchdog.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

namespace kapso {

namespace {

using probe_clock = std::chrono::steady_clock;

// Probes per watchdog period: systemd restarts the service when a whole
// period passes without a ping, so one slow or lost probe is not fatal.
constexpr int probes_per_period = 3;

// A wildcard listening address is probed through the loopback interface.
std::string probe_address(const std::string& host) {
  if (host.empty() || host == "0.0.0.0")
    return "127.0.0.1";
  if (host == "::")
    return "::1";
  return host;
}

class descriptor {
public:
  explicit descriptor(int fd) : fd_(fd) {}
  ~descriptor() {
    if (fd_ >= 0)
      ::close(fd_);
  }
  descriptor(const descriptor&) = delete;
  descriptor& operator=(const descriptor&) = delete;
  int get() const noexcept { return fd_; }

private:
  int fd_;
};

bool wait_for(int fd, short events, probe_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - probe_clock::now());
  if (left.count() <= 0)
    return false;
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, static_cast<int>(left.count())) == 1 && (p.revents & events) != 0;
}

} // namespace

bool probe_health(const std::string& host, uint16_t port, std::chrono::milliseconds timeout) {
  auto deadline = probe_clock::now() + timeout;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  auto address = probe_address(host);
  if (::getaddrinfo(address.c_str(), std::to_string(port).c_str(), &hints, &found) != 0)
    return false;
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> addresses{found, &::freeaddrinfo};
  descriptor sock{::socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)};
  if (sock.get() < 0)
    return false; // no descriptor left: as deaf as it gets
  if (::connect(sock.get(), found->ai_addr, found->ai_addrlen) != 0
      && (errno != EINPROGRESS || !wait_for(sock.get(), POLLOUT, deadline)))
    return false;
  static constexpr char request[] =
    "GET /healthz HTTP/1.1\r\nHost: kapso-ingest-watchdog\r\nConnection: close\r\n\r\n";
  if (::send(sock.get(), request, sizeof request - 1, MSG_NOSIGNAL)
      != static_cast<ssize_t>(sizeof request - 1))
    return false;
  std::string answer;
  char buffer[256];
  while (answer.size() < 12 && wait_for(sock.get(), POLLIN, deadline)) {
    auto n = ::recv(sock.get(), buffer, sizeof buffer, 0);
    if (n <= 0)
      break;
    answer.append(buffer, static_cast<size_t>(n));
  }
  return answer.rfind("HTTP/1.1 200", 0) == 0 || answer.rfind("HTTP/1.0 200", 0) == 0;
}

listener_watchdog::listener_watchdog(std::string host, uint16_t port)
  : host_(std::move(host)), port_(port) {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
    return;
  auto period = std::chrono::microseconds(usec);
  spdlog::info("systemd watchdog every {} ms: fed while /healthz answers on {}:{}",
               std::chrono::duration_cast<std::chrono::milliseconds>(period).count(),
               probe_address(host_), port_);
  thread_ = std::thread([this, period] { run(period); });
}

listener_watchdog::~listener_watchdog() {
  {
    std::lock_guard<std::mutex> guard{mutex_};
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable())
    thread_.join();
}

void listener_watchdog::run(std::chrono::microseconds period) {
  auto interval = period / probes_per_period;
  auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(interval);
  bool was_answering = true;
  std::unique_lock<std::mutex> lock{mutex_};
  while (!stop_) {
    lock.unlock();
    bool answering = probe_health(host_, port_, timeout);
    if (answering)
      sd_notify(0, "WATCHDOG=1");
    if (answering != was_answering) {
      if (answering)
        spdlog::info("watchdog probe answered again: feeding systemd's watchdog");
      else
        spdlog::error("watchdog probe: no answer from {}:{} within {} ms; systemd's watchdog "
                      "is not fed while this lasts", probe_address(host_), port_,
                      timeout.count());
    }
    was_answering = answering;
    lock.lock();
    wake_.wait_for(lock, interval, [this] { return stop_; });
  }
}

} // namespace kapso
