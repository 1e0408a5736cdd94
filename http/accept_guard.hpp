// Keeps the server accepting connections whatever an accept() fails with.
// RESTinio 0.6.16 gives up an accept slot on any accept error (EMFILE,
// ENFILE, ENOBUFS, ...): its completion handler ignores the error and never
// accepts again, so one burst past the descriptor limit leaves a live
// process that never answers again. The slots are RESTinio's; what decides
// when a slot accepts is its connection-count limiter, which RESTinio lets
// a server choose (connection_count_limit_types): ours counts connections
// like RESTinio's and also knows which slots have an accept outstanding, so
// that the guard can tell a lost slot from a busy one and arm it again.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

// connection_count_limiter.hpp relies on what these declare.
#include <restinio/asio_include.hpp>
#include <restinio/compiler_features.hpp>
#include <restinio/common_types.hpp>
#include <restinio/optional.hpp>
#include <restinio/connection_count_limiter.hpp>

namespace kapso {

namespace asio_ns = restinio::asio_ns;

class accept_guard;

// RESTinio's connection-count limiter, selected for our traits in
// http/server.cpp. RESTinio calls accept_next(slot) to start accepting on a
// slot (first, and after each accept that completed), and counts
// connections through the lifetime monitor.
class accept_limiter {
public:
  using acceptor_callbacks = restinio::connection_count_limits::impl::acceptor_callback_iface_t;

  accept_limiter(acceptor_callbacks* acceptor,
                 restinio::connection_count_limits::max_parallel_connections_t max_connections,
                 restinio::connection_count_limits::max_active_accepts_t slots);
  ~accept_limiter();
  accept_limiter(const accept_limiter&) = delete;
  accept_limiter& operator=(const accept_limiter&) = delete;

  void increment_parallel_connections() noexcept;
  void decrement_parallel_connections() noexcept;
  void accept_next(std::size_t slot) noexcept;

  // What the guard compares between two looks: an accept that completed or
  // a connection that opened moves `progress`; a slot armed moves `arms`.
  struct progress_mark {
    uint64_t progress = 0;
    uint64_t arms = 0;
    bool accepting = false; // some slot has an accept outstanding
    friend bool operator==(const progress_mark& a, const progress_mark& b) {
      return a.progress == b.progress && a.arms == b.arms && a.accepting == b.accepting;
    }
  };
  progress_mark mark() const;

  // Arms again every slot that still waits on an accept since `seen`, if
  // nothing moved since; how many. RESTinio accepts on them from its own
  // executor.
  size_t rearm_if_unchanged(const progress_mark& seen) noexcept;

  size_t connections() const;

private:
  enum class slot_state { idle, armed, arming, parked };
  bool has_room() const noexcept; // the caller holds the mutex

  mutable std::mutex mutex_;
  acceptor_callbacks* acceptor_;
  const size_t max_connections_;
  size_t connections_ = 0;
  std::vector<slot_state> slots_;
  uint64_t progress_ = 0;
  uint64_t arms_ = 0;
  accept_guard* guard_ = nullptr;
};

// Looks at the listening socket at a steady pace, on the server's own
// io_context: when clients wait in the kernel's queue while a slot has had
// an accept outstanding and nothing was accepted for two looks, that
// accept is gone; it is armed again, with a back-off while it keeps failing.
class accept_guard {
public:
  explicit accept_guard(asio_ns::io_context& io);
  ~accept_guard();
  accept_guard(const accept_guard&) = delete;
  accept_guard& operator=(const accept_guard&) = delete;

  // The guard the limiter of the server being built attaches to (one HTTP
  // server per process).
  void install();

  // The listening socket, once bound (RESTinio's post-bind hook).
  void watch(int listen_fd) noexcept { listen_fd_.store(listen_fd); }

  // Starts looking; stops when the io_context stops.
  void start();

  // Accepts armed again after they were lost.
  uint64_t restarts() const noexcept;

private:
  friend class accept_limiter;
  static accept_guard* installed() noexcept;
  void attach(accept_limiter* limiter);
  void detach(accept_limiter* limiter) noexcept;

  void schedule();
  void look();
  void confirm(accept_limiter::progress_mark seen, int hops);
  bool clients_waiting() const noexcept;

  asio_ns::io_context& io_;
  asio_ns::steady_timer timer_;
  std::atomic<int> listen_fd_{-1};
  mutable std::mutex mutex_;
  accept_limiter* limiter_ = nullptr;
  accept_limiter::progress_mark last_;
  int unchanged_looks_ = 0;
  std::chrono::milliseconds interval_;
  uint64_t restarts_ = 0;
};

} // namespace kapso
