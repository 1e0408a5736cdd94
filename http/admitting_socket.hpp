// The client socket RESTinio reads requests through (its traits'
// stream_socket_t): every byte read is first followed by a
// request_stream_watch, so a body over http.body-limit, or one the byte
// budget has no room for, is answered from its headers and never read.
// RESTinio 0.6.16 has no hook between a request's headers and its body: it
// reserves a body's whole Content-Length when the headers end and reads it
// all before any handler runs.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <restinio/asio_include.hpp>

#include "http/body_admission.hpp"

namespace kapso {

namespace asio_ns = restinio::asio_ns;

// What every connection's watch is built from; installed by the HTTP
// server before it accepts (one server per process).
struct admission_policy {
  admission_limits limits;
  std::shared_ptr<byte_budget> budget;
  // After a refusal the connection keeps reading (and dropping) what the
  // client still sends, up to this long and this much, so that closing it
  // does not reset the connection before the client has read the answer.
  std::chrono::milliseconds linger{500};
  size_t linger_bytes = 1024 * 1024;
};

void install_admission_policy(std::shared_ptr<const admission_policy> policy);
std::shared_ptr<const admission_policy> installed_admission_policy();

// Counts and logs a refusal (rate-limited); defined in http/server.cpp's
// neighbourhood so that this header needs no metrics.
void report_refusal(const admission_refusal& refusal);

class admitting_socket : public asio_ns::ip::tcp::socket {
  using base = asio_ns::ip::tcp::socket;

public:
  explicit admitting_socket(asio_ns::io_context& io) : base(io) {}
  admitting_socket(admitting_socket&&) noexcept = default;
  admitting_socket& operator=(admitting_socket&&) noexcept = default;

  // RESTinio's read: the bytes of a refused request never reach it; the
  // requests before it in the same read do, and the refusal is answered
  // when RESTinio reads again (it reads only once earlier requests are
  // answered: max_pipelined_requests is 1, see http/server.cpp).
  template <typename Handler>
  void async_read_some(const asio_ns::mutable_buffer& buffer, Handler&& handler) {
    auto& state = connection_state();
    if (state.refusal) {
      answer_refusal(buffer, std::forward<Handler>(handler));
      return;
    }
    auto executor = asio_ns::get_associated_executor(handler, get_executor());
    base::async_read_some(
      buffer, asio_ns::bind_executor(executor, [this, buffer, next = std::forward<Handler>(handler)](
                                                 const asio_ns::error_code& ec, size_t n) mutable {
        if (ec) {
          next(ec, n);
          return;
        }
        auto refusal = state_->watch.follow(static_cast<const char*>(buffer.data()), n);
        if (!refusal) {
          next(ec, n);
          return;
        }
        auto before = refusal->message_offset;
        state_->refusal = std::move(refusal);
        if (before > 0)
          next(ec, before); // the earlier requests first; the refusal at the next read
        else
          answer_refusal(buffer, std::move(next));
      }));
  }

  // A refused request takes its connection with it; RESTinio's cancel()
  // must also end the lingering.
  void cancel(asio_ns::error_code& ec) {
    if (state_ && state_->linger_timer)
      state_->linger_timer->cancel();
    base::cancel(ec);
  }
  void cancel() {
    asio_ns::error_code ec;
    cancel(ec);
  }

private:
  struct watch_state {
    explicit watch_state(const admission_policy& policy)
      : watch(policy.limits, policy.budget), linger(policy.linger),
        linger_bytes(policy.linger_bytes) {}
    request_stream_watch watch;
    std::optional<admission_refusal> refusal;
    std::string answer;
    std::chrono::milliseconds linger;
    size_t linger_bytes;
    size_t dropped = 0;
    std::optional<asio_ns::steady_timer> linger_timer;
  };

  watch_state& connection_state() {
    if (!state_)
      state_ = std::make_shared<watch_state>(*installed_admission_policy());
    return *state_;
  }

  // Writes the refusal, stops sending, drops what the client still sends
  // for a while, then gives RESTinio the end of the stream (it closes).
  template <typename Handler>
  void answer_refusal(const asio_ns::mutable_buffer& scratch, Handler&& handler) {
    auto executor = asio_ns::get_associated_executor(handler, get_executor());
    report_refusal(*state_->refusal);
    state_->answer = raw_closing_response(state_->refusal->answer);
    asio_ns::async_write(
      static_cast<base&>(*this), asio_ns::buffer(state_->answer),
      asio_ns::bind_executor(executor, [this, scratch, executor,
                                        next = std::forward<Handler>(handler)](
                                         const asio_ns::error_code& ec, size_t) mutable {
        asio_ns::error_code ignored;
        base::shutdown(base::shutdown_send, ignored);
        if (ec) {
          next(ec, 0);
          return;
        }
        start_linger_timer(executor);
        linger(scratch, std::move(next));
      }));
  }

  // On the connection's own executor (its strand), like every other
  // operation on this socket.
  template <typename Executor>
  void start_linger_timer(const Executor& executor) {
    state_->linger_timer.emplace(executor);
    state_->linger_timer->expires_after(state_->linger);
    // The state may outlive nothing: a timer that fires after the
    // connection is gone finds no state and does nothing.
    std::weak_ptr<watch_state> weak = state_;
    auto* socket = static_cast<base*>(this);
    state_->linger_timer->async_wait([weak, socket](const asio_ns::error_code& ec) {
      if (ec)
        return;
      if (auto alive = weak.lock()) {
        asio_ns::error_code ignored;
        socket->cancel(ignored);
      }
    });
  }

  template <typename Handler>
  void linger(const asio_ns::mutable_buffer& scratch, Handler&& handler) {
    auto executor = asio_ns::get_associated_executor(handler, get_executor());
    base::async_read_some(
      scratch, asio_ns::bind_executor(executor, [this, scratch, next = std::forward<Handler>(handler)](
                                                  const asio_ns::error_code& ec, size_t n) mutable {
        state_->dropped += n;
        if (!ec && n > 0 && state_->dropped < state_->linger_bytes) {
          linger(scratch, std::move(next));
          return;
        }
        if (state_->linger_timer)
          state_->linger_timer->cancel();
        // Whatever ended the lingering (the client, the time, RESTinio's own
        // timeout), RESTinio sees the end of the stream and closes.
        next(asio_ns::error_code{asio_ns::error::eof}, 0);
      }));
  }

  std::shared_ptr<watch_state> state_;
};

} // namespace kapso
