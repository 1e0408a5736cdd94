// Raw connections and a retried signed delivery for the fault cases.
#include "tests/fault/raw_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include "tests/integration/harness.hpp"

namespace kapso_fault {

using namespace kapso_test;

int open_raw(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno != EINPROGRESS) {
      ::close(fd);
      return -1;
    }
    pollfd p{fd, POLLOUT, 0};
    int error = 0;
    socklen_t len = sizeof(error);
    if (::poll(&p, 1, 2000) != 1 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0
        || error != 0) {
      ::close(fd);
      return -1;
    }
  }
  return fd;
}

bool closed_by_peer(int fd) {
  char buffer[4096];
  for (;;) {
    auto n = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
    if (n == 0)
      return true;
    if (n < 0)
      return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
  }
}

int answer_status(int fd, std::chrono::milliseconds within) {
  auto deadline = clock_type::now() + within;
  std::string answer;
  char buffer[512];
  while (answer.size() < 12) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) != 1)
      return 0;
    auto n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n <= 0) {
      if (n < 0 && (errno == EAGAIN || errno == EINTR))
        continue;
      return -1;
    }
    answer.append(buffer, static_cast<size_t>(n));
  }
  if (answer.compare(0, 9, "HTTP/1.1 ") != 0)
    return -1;
  return std::atoi(answer.substr(9, 3).c_str());
}

size_t open_descriptors(int pid) {
  size_t n = 0;
  std::error_code error;
  for (auto i = std::filesystem::directory_iterator{"/proc/" + std::to_string(pid) + "/fd", error};
       !error && i != std::filesystem::directory_iterator{}; i.increment(error))
    ++n;
  return n;
}

std::optional<std::chrono::milliseconds> signed_delivery_works(uint16_t port,
                                                               const load_options& options,
                                                               const std::string& id,
                                                               std::chrono::milliseconds within) {
  auto started = clock_type::now();
  delivery d;
  d.messages.push_back(message_ref{id, 0, 1730500000});
  while (clock_type::now() - started < within) {
    try {
      http_client client{port, 2s};
      send_once(client, d, options);
      if (d.attempts.back().status == 200)
        return std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now()
                                                                     - started);
    } catch (const std::exception&) {
      // Not even a client: try again.
    }
    std::this_thread::sleep_for(100ms);
  }
  return std::nullopt;
}

} // namespace kapso_fault
