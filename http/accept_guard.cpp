// The accept limiter's bookkeeping and the guard's looks at the listener.
#include "http/accept_guard.hpp"

#include <poll.h>

#include <algorithm>
#include <atomic>
#include <optional>

#include <spdlog/spdlog.h>

#include "http/http_metrics.hpp"

namespace kapso {

namespace {

// How often the listener is looked at while all is well, and the longest
// pause between attempts while accepting keeps failing: an accept error
// costs at most a few of these, never a busy loop.
constexpr auto look_interval = std::chrono::milliseconds(100);
constexpr auto longest_interval = std::chrono::milliseconds(1000);

// Looks in a row that must find clients waiting and nothing accepted
// before an accept counts as lost: one look can fall between an accept
// and its handler.
constexpr int looks_before_rearm = 2;

// Trips through the io_context's queue before re-arming: every handler
// queued before the first trip has run by the last, so an accept that
// completed is counted by then.
constexpr int confirmation_hops = 2;

std::atomic<accept_guard*> installed_guard{nullptr};

} // namespace

accept_limiter::accept_limiter(
  acceptor_callbacks* acceptor,
  restinio::connection_count_limits::max_parallel_connections_t max_connections,
  restinio::connection_count_limits::max_active_accepts_t slots)
  : acceptor_(acceptor), max_connections_(max_connections.value()),
    slots_(slots.value(), slot_state::idle), guard_(accept_guard::installed()) {
  if (guard_)
    guard_->attach(this);
}

accept_limiter::~accept_limiter() {
  if (guard_)
    guard_->detach(this);
}

bool accept_limiter::has_room() const noexcept {
  size_t accepting = 0;
  for (auto s : slots_)
    if (s == slot_state::armed || s == slot_state::arming)
      ++accepting;
  return accepting + connections_ < max_connections_;
}

void accept_limiter::increment_parallel_connections() noexcept {
  std::lock_guard<std::mutex> lock{mutex_};
  ++connections_;
  ++progress_;
}

void accept_limiter::decrement_parallel_connections() noexcept {
  std::optional<size_t> wake;
  {
    std::lock_guard<std::mutex> lock{mutex_};
    --connections_;
    auto parked = std::find(slots_.begin(), slots_.end(), slot_state::parked);
    if (parked != slots_.end() && has_room()) {
      *parked = slot_state::arming;
      wake = static_cast<size_t>(parked - slots_.begin());
    }
  }
  // Connections end on any thread: RESTinio accepts from its own executor.
  if (wake)
    acceptor_->schedule_next_accept_attempt(*wake);
}

void accept_limiter::accept_next(std::size_t slot) noexcept {
  bool accept_now = false;
  {
    std::lock_guard<std::mutex> lock{mutex_};
    auto& state = slots_.at(slot);
    if (state == slot_state::armed)
      ++progress_; // its accept completed: a connection, or one refused on the way
    state = slot_state::idle;
    accept_now = has_room();
    state = accept_now ? slot_state::armed : slot_state::parked;
    if (accept_now)
      ++arms_;
  }
  if (accept_now)
    acceptor_->call_accept_now(slot);
}

accept_limiter::progress_mark accept_limiter::mark() const {
  std::lock_guard<std::mutex> lock{mutex_};
  progress_mark m{progress_, arms_, false};
  m.accepting = std::find(slots_.begin(), slots_.end(), slot_state::armed) != slots_.end();
  return m;
}

size_t accept_limiter::rearm_if_unchanged(const progress_mark& seen) noexcept {
  std::vector<size_t> lost;
  {
    std::lock_guard<std::mutex> lock{mutex_};
    if (progress_ != seen.progress || arms_ != seen.arms)
      return 0;
    for (size_t slot = 0; slot < slots_.size(); ++slot)
      if (slots_[slot] == slot_state::armed) {
        slots_[slot] = slot_state::arming;
        lost.push_back(slot);
      }
  }
  for (auto slot : lost)
    acceptor_->schedule_next_accept_attempt(slot);
  return lost.size();
}

size_t accept_limiter::connections() const {
  std::lock_guard<std::mutex> lock{mutex_};
  return connections_;
}

accept_guard::accept_guard(asio_ns::io_context& io)
  : io_(io), timer_(io), interval_(look_interval) {
}

accept_guard::~accept_guard() {
  accept_guard* self = this;
  installed_guard.compare_exchange_strong(self, nullptr);
}

void accept_guard::install() {
  installed_guard.store(this);
}

accept_guard* accept_guard::installed() noexcept {
  return installed_guard.load();
}

void accept_guard::attach(accept_limiter* limiter) {
  std::lock_guard<std::mutex> lock{mutex_};
  limiter_ = limiter;
}

void accept_guard::detach(accept_limiter* limiter) noexcept {
  std::lock_guard<std::mutex> lock{mutex_};
  if (limiter_ == limiter)
    limiter_ = nullptr;
}

uint64_t accept_guard::restarts() const noexcept {
  std::lock_guard<std::mutex> lock{mutex_};
  return restarts_;
}

void accept_guard::start() {
  schedule();
}

void accept_guard::schedule() {
  timer_.expires_after(interval_);
  timer_.async_wait([this](const asio_ns::error_code& ec) {
    if (!ec)
      look();
  });
}

bool accept_guard::clients_waiting() const noexcept {
  auto fd = listen_fd_.load();
  if (fd < 0)
    return false;
  // A listening socket is readable exactly when its accept queue holds a
  // connection.
  pollfd listener{fd, POLLIN, 0};
  return ::poll(&listener, 1, 0) == 1 && (listener.revents & POLLIN) != 0;
}

void accept_guard::look() {
  std::unique_lock<std::mutex> lock{mutex_};
  if (!limiter_) {
    lock.unlock();
    schedule();
    return;
  }
  auto now = limiter_->mark();
  bool stalled = now.accepting && now == last_ && clients_waiting();
  if (now.progress != last_.progress)
    interval_ = look_interval;
  last_ = now;
  unchanged_looks_ = stalled ? unchanged_looks_ + 1 : 0;
  lock.unlock();
  if (unchanged_looks_ >= looks_before_rearm) {
    unchanged_looks_ = 0;
    asio_ns::post(io_, [this, now] { confirm(now, confirmation_hops - 1); });
  }
  schedule();
}

void accept_guard::confirm(accept_limiter::progress_mark seen, int hops) {
  if (hops > 0) {
    asio_ns::post(io_, [this, seen, hops] { confirm(seen, hops - 1); });
    return;
  }
  std::lock_guard<std::mutex> lock{mutex_};
  if (!limiter_ || !clients_waiting())
    return;
  auto rearmed = limiter_->rearm_if_unchanged(seen);
  if (rearmed == 0)
    return;
  ++restarts_;
  http_metrics::global().accept_restarts_total++;
  // Once per failure run, not per attempt: a descriptor limit can last.
  if (interval_ == look_interval)
    spdlog::warn("clients wait but no connection was accepted for {} ms: an accept failed "
                 "(descriptors or kernel memory exhausted?); accepting again, every {} ms at "
                 "most while it keeps failing",
                 looks_before_rearm * interval_.count(), longest_interval.count());
  interval_ = std::min(interval_ * 2, std::chrono::milliseconds(longest_interval));
}

} // namespace kapso
