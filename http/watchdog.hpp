// systemd's watchdog, fed only while the server answers through its own
// listening socket: a process that is alive but no longer accepts (or no
// longer answers) stops feeding it and is restarted by systemd.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace kapso {

// One GET /healthz to host:port within `timeout`: true when it answers 200.
bool probe_health(const std::string& host, uint16_t port, std::chrono::milliseconds timeout);

class listener_watchdog {
public:
  // Starts probing `host`:`port` when systemd asked for a watchdog
  // (WATCHDOG_USEC); otherwise does nothing.
  listener_watchdog(std::string host, uint16_t port);
  ~listener_watchdog();
  listener_watchdog(const listener_watchdog&) = delete;
  listener_watchdog& operator=(const listener_watchdog&) = delete;

  bool enabled() const noexcept { return thread_.joinable(); }

private:
  void run(std::chrono::microseconds period);

  std::string host_;
  uint16_t port_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

} // namespace kapso
