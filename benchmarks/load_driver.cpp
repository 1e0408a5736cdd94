// Drives the server with pre-built deliveries over keep-alive connections.
#include "benchmarks/load_driver.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <queue>
#include <stdexcept>
#include <string_view>
#include <thread>

#include <asio.hpp>

#include <csignal>

namespace kapso::bench {

namespace {

using clock_type = std::chrono::steady_clock;
using time_point = clock_type::time_point;
using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;

constexpr auto tick_interval = milliseconds{1};
// Longest a kept-alive connection is reused after being idle (Node's HTTP
// client, undici, keeps idle sockets 4 s by default); well below the
// server's http.idle-timeout-ms (15 s).
constexpr auto keepalive_idle = milliseconds{4000};
constexpr size_t initial_buffer = 16 * 1024;
constexpr size_t max_buffer = 1024 * 1024;

time_point::duration seconds_to_duration(double s) {
  return duration_cast<time_point::duration>(std::chrono::duration<double>{s});
}

double seconds_between(time_point from, time_point to) {
  return std::chrono::duration<double>{to - from}.count();
}

// -- HTTP answers ------------------------------------------------------------

enum class parse_status { incomplete, complete, malformed };

struct answer_head {
  int status = 0;
  size_t total = 0;   // bytes of head and body
  bool close = false; // the server ends the connection after this answer
};

bool iequals(std::string_view x, std::string_view y) {
  if (x.size() != y.size())
    return false;
  for (size_t i = 0; i < x.size(); ++i) {
    auto a = static_cast<unsigned char>(x[i]);
    auto b = static_cast<unsigned char>(y[i]);
    if (std::tolower(a) != std::tolower(b))
      return false;
  }
  return true;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t'))
    text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t'))
    text.remove_suffix(1);
  return text;
}

// Finds where a chunked body ends; only sizes and the final empty line
// matter, the payload itself is of no interest to the harness.
parse_status chunked_end(std::string_view data, size_t pos, size_t& end) {
  for (;;) {
    auto line_end = data.find("\r\n", pos);
    if (line_end == std::string_view::npos)
      return parse_status::incomplete;
    size_t size = 0;
    auto digits = data.substr(pos, line_end - pos);
    auto semicolon = digits.find(';');
    digits = digits.substr(0, semicolon);
    if (digits.empty())
      return parse_status::malformed;
    for (char ch : digits) {
      int v = ch >= '0' && ch <= '9'   ? ch - '0'
              : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
              : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                       : -1;
      if (v < 0 || size > (max_buffer << 4))
        return parse_status::malformed;
      size = size * 16 + static_cast<size_t>(v);
    }
    pos = line_end + 2;
    if (size == 0) {
      // Optional trailers, then an empty line.
      for (;;) {
        auto trailer_end = data.find("\r\n", pos);
        if (trailer_end == std::string_view::npos)
          return parse_status::incomplete;
        if (trailer_end == pos) {
          end = pos + 2;
          return parse_status::complete;
        }
        pos = trailer_end + 2;
      }
    }
    if (data.size() < pos + size + 2)
      return parse_status::incomplete;
    pos += size + 2;
  }
}

parse_status parse_answer(std::string_view data, answer_head& out) {
  auto head_end = data.find("\r\n\r\n");
  if (head_end == std::string_view::npos)
    return data.size() > 64 * 1024 ? parse_status::malformed : parse_status::incomplete;
  auto head = data.substr(0, head_end + 2);
  auto line_end = head.find("\r\n");
  auto status_line = head.substr(0, line_end);
  // "HTTP/1.1 200 OK"
  if (status_line.size() < 12 || status_line.substr(0, 5) != "HTTP/")
    return parse_status::malformed;
  bool http10 = status_line.substr(5, 3) == "1.0";
  auto code = status_line.substr(9, 3);
  if (!std::all_of(code.begin(), code.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return parse_status::malformed;
  out.status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
  out.close = http10;
  bool chunked = false;
  bool have_length = false;
  size_t length = 0;
  size_t pos = line_end + 2;
  while (pos < head.size()) {
    auto next = head.find("\r\n", pos);
    auto line = head.substr(pos, next - pos);
    pos = next + 2;
    auto colon = line.find(':');
    if (colon == std::string_view::npos)
      continue;
    auto name = trim(line.substr(0, colon));
    auto value = trim(line.substr(colon + 1));
    if (iequals(name, "content-length")) {
      have_length = true;
      length = 0;
      for (char ch : value) {
        if (ch < '0' || ch > '9' || length > max_buffer)
          return parse_status::malformed;
        length = length * 10 + static_cast<size_t>(ch - '0');
      }
    } else if (iequals(name, "transfer-encoding")) {
      chunked = value.find("chunked") != std::string_view::npos;
    } else if (iequals(name, "connection")) {
      if (iequals(value, "close"))
        out.close = true;
      else if (iequals(value, "keep-alive"))
        out.close = false;
    }
  }
  auto body_start = head_end + 4;
  if (chunked)
    return chunked_end(data, body_start, out.total);
  bool no_body = out.status / 100 == 1 || out.status == 204 || out.status == 304;
  if (!have_length && !no_body)
    return parse_status::malformed; // close-delimited bodies: not worth supporting
  out.total = body_start + (no_body ? 0 : length);
  return data.size() < out.total ? parse_status::incomplete : parse_status::complete;
}

// -- shared state of one run ---------------------------------------------------

enum stop_cause : int { not_stopped = 0, stop_duration, stop_schedule_end, stop_signal };

// SIGUSR1s received: each moves the run to its next phase (--phases).
std::atomic<uint32_t> phase_signals{0};
// SIGINT or SIGTERM: the run stops as at the end of its duration (a second
// one ends the process: the handler is reset by the first).
std::atomic<bool> stop_signalled{false};

extern "C" void on_phase_signal(int) {
  phase_signals.fetch_add(1, std::memory_order_relaxed);
}

extern "C" void on_stop_signal(int) {
  stop_signalled.store(true, std::memory_order_relaxed);
}

struct shared_run {
  shared_run(const bench_options& o, const workload& w)
    : opts(o), wl(w), flags(new std::atomic<uint8_t>[w.deliveries.size()]) {
    for (size_t i = 0; i < w.deliveries.size(); ++i)
      flags[i].store(0, std::memory_order_relaxed);
  }

  const bench_options& opts;
  const workload& wl;
  asio::ip::tcp::endpoint endpoint;
  time_point start;
  time_point measure_from;
  time_point measure_until;
  std::unique_ptr<std::atomic<uint8_t>[]> flags;
  std::atomic<size_t> next_position{0};
  std::atomic<int> stopped{not_stopped};
  std::atomic<uint32_t> phase{0}; // index into opts.phases

  // Progress counters, read once a second by the main thread.
  std::atomic<uint64_t> attempts{0};
  std::atomic<uint64_t> answers{0};
  std::atomic<uint64_t> acked{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<int64_t> in_flight{0};
  std::atomic<size_t> workers_done{0};

  void stop(stop_cause cause) {
    int expected = not_stopped;
    stopped.compare_exchange_strong(expected, cause);
  }

  bool stopping() const {
    return stopped.load(std::memory_order_relaxed) != not_stopped;
  }
};

// -- one event-loop thread -------------------------------------------------------

struct job {
  uint32_t delivery = 0;
  uint32_t attempt = 0;   // 0 = the scheduled send, >0 = retry after an error
  time_point intended{};  // open loop: when it should have left (latency base)
  uint32_t phase = 0;     // when it was due (first sends) or sent (retries)
};

struct retry_entry {
  time_point due;
  job what;
  bool operator>(const retry_entry& other) const {
    return due > other.due;
  }
};

struct connection {
  explicit connection(asio::io_context& io) : socket(io) {
    // nop
  }

  enum class phase : uint8_t { closed, connecting, idle, busy };

  asio::ip::tcp::socket socket;
  phase state = phase::closed;
  uint64_t generation = 0; // bumped on close: late handlers see it and return
  job current;
  time_point started{};
  time_point idle_since{}; // when it last became idle
  time_point reconnect_at{};
  uint32_t connect_failures = 0;
  std::vector<char> buffer = std::vector<char>(initial_buffer);
  size_t filled = 0;
};

// What one worker saw of the requests of one phase.
struct phase_bin {
  uint64_t attempts = 0;
  std::map<int, uint64_t> statuses;
  uint64_t timeouts = 0;
  uint64_t io_errors = 0;
  uint64_t acked_deliveries = 0;
  uint64_t acked_events = 0;
  latency_histogram latency;
};

// What one worker saw in one second; merged over workers after the run.
struct second_bin {
  uint64_t deliveries = 0;
  uint64_t events = 0;
  uint64_t failures = 0;
  compact_histogram latency;
};

// The bytes of an answer as a log line: controls and non-ASCII as '.'.
std::string printable(std::string_view bytes) {
  std::string out{bytes};
  for (auto& ch : out)
    if (static_cast<unsigned char>(ch) < 0x20 || static_cast<unsigned char>(ch) > 0x7e)
      ch = '.';
  return out;
}

class worker {
public:
  worker(shared_run& run, size_t connections, double rate)
    : run_(run), tick_(io_), rate_(rate) {
    for (size_t i = 0; i < connections; ++i)
      conns_.push_back(std::make_unique<connection>(io_));
    phases.resize(std::max<size_t>(1, run.opts.phases.size()));
  }

  void start() {
    thread_ = std::thread{[this] { loop(); }};
  }

  void join() {
    if (thread_.joinable())
      thread_.join();
  }

  // Read only after join().
  latency_histogram latency;
  std::array<uint64_t, 600> statuses{};
  uint64_t window_deliveries = 0;
  uint64_t window_events = 0;
  time_point last_window_answer{};
  uint64_t attempts = 0;
  uint64_t first_sends = 0;
  uint64_t resends = 0;
  uint64_t error_retries = 0;
  uint64_t timeouts = 0;
  uint64_t io_errors = 0;
  std::vector<std::string> io_error_examples; // the first few, with their cause
  uint64_t connect_errors = 0;
  uint64_t abandoned = 0;
  std::vector<second_bin> seconds;
  std::vector<phase_bin> phases;

private:
  void loop() {
    for (auto& c : conns_)
      connect(*c);
    next_tick_ = clock_type::now();
    schedule_tick();
    io_.run();
    run_.workers_done.fetch_add(1);
  }

  // -- connection life cycle ----------------------------------------------------

  void connect(connection& c) {
    close(c);
    c.state = connection::phase::connecting;
    auto gen = c.generation;
    c.socket.async_connect(run_.endpoint, [this, &c, gen](const asio::error_code& ec) {
      if (gen != c.generation || finished_)
        return;
      if (ec) {
        ++connect_errors;
        run_.errors.fetch_add(1, std::memory_order_relaxed);
        close(c);
        // Back off so a server that is down is not hammered with SYNs.
        auto backoff
          = milliseconds{std::min<int64_t>(1000, 25ll << std::min(c.connect_failures, 6u))};
        ++c.connect_failures;
        c.reconnect_at = clock_type::now() + backoff;
        return;
      }
      c.connect_failures = 0;
      asio::error_code ignored;
      c.socket.set_option(asio::ip::tcp::no_delay{true}, ignored);
      c.state = connection::phase::idle;
      c.idle_since = clock_type::now();
      dispatch(c, c.idle_since);
    });
  }

  void close(connection& c) {
    ++c.generation;
    asio::error_code ignored;
    if (c.socket.is_open()) {
      c.socket.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
      c.socket.close(ignored);
    }
    c.state = connection::phase::closed;
    c.filled = 0;
  }

  // -- what to send next ----------------------------------------------------------

  bool next_job(job& out, time_point now) {
    while (!retries_.empty() && retries_.top().due <= now) {
      auto entry = retries_.top();
      retries_.pop();
      if (acked(entry.what.delivery))
        continue; // another send of the same delivery got through meanwhile
      out = entry.what;
      ++error_retries;
      return true;
    }
    if (!backlog_.empty()) {
      out = backlog_.front();
      backlog_.pop_front();
      return true;
    }
    // The tick notices the end within a millisecond; a busy connection
    // would otherwise slip a few sends past it.
    if (now >= run_.measure_until)
      run_.stop(stop_duration);
    if (rate_ > 0 || run_.stopping())
      return false;
    if (!take_position(out, now))
      return false;
    return true;
  }

  bool take_position(job& out, time_point intended) {
    auto& schedule = run_.wl.schedule;
    auto pos = run_.next_position.fetch_add(1, std::memory_order_relaxed);
    bool again = false;
    if (pos >= schedule.size()) {
      if (!run_.opts.cycle || schedule.empty()) {
        run_.stop(stop_schedule_end);
        return false;
      }
      again = true;
      pos %= schedule.size();
    }
    out = job{schedule[pos], 0, intended, run_.phase.load(std::memory_order_relaxed)};
    ++first_sends;
    if (again || run_.wl.is_resend[pos])
      ++resends;
    return true;
  }

  void dispatch(connection& c, time_point now) {
    job next;
    if (next_job(next, now)) {
      send(c, next, now);
    } else if (c.state != connection::phase::idle) {
      c.state = connection::phase::idle;
      c.idle_since = now;
    }
  }

  void send(connection& c, const job& what, time_point now) {
    c.state = connection::phase::busy;
    c.current = what;
    if (what.attempt > 0 || rate_ == 0)
      c.current.phase = run_.phase.load(std::memory_order_relaxed);
    c.started = now;
    c.filled = 0;
    ++attempts;
    ++phases[c.current.phase].attempts;
    run_.attempts.fetch_add(1, std::memory_order_relaxed);
    run_.in_flight.fetch_add(1, std::memory_order_relaxed);
    run_.flags[what.delivery].fetch_or(delivery_sent, std::memory_order_relaxed);
    auto& request = run_.wl.deliveries[what.delivery].request;
    auto gen = c.generation;
    asio::async_write(c.socket, asio::buffer(request),
                      [this, &c, gen](const asio::error_code& ec, size_t) {
                        if (gen != c.generation || finished_)
                          return;
                        if (ec) {
                          fail_io(c, "writing the request: " + ec.message());
                          return;
                        }
                        read(c);
                      });
  }

  void read(connection& c) {
    if (c.filled == c.buffer.size()) {
      if (c.buffer.size() >= max_buffer) {
        fail_io(c, "an answer larger than the read buffer");
        return;
      }
      c.buffer.resize(c.buffer.size() * 2);
    }
    auto gen = c.generation;
    c.socket.async_read_some(
      asio::buffer(c.buffer.data() + c.filled, c.buffer.size() - c.filled),
      [this, &c, gen](const asio::error_code& ec, size_t n) {
        if (gen != c.generation || finished_)
          return;
        if (ec) {
          fail_io(c, "reading the answer after " + std::to_string(c.filled) + " bytes: "
                       + ec.message());
          return;
        }
        c.filled += n;
        answer_head head;
        switch (parse_answer({c.buffer.data(), c.filled}, head)) {
          case parse_status::incomplete:
            read(c);
            return;
          case parse_status::malformed:
            fail_io(c, "a malformed answer: "
                         + printable(std::string_view{c.buffer.data(), std::min<size_t>(c.filled, 80)}));
            return;
          case parse_status::complete:
            on_answer(c, head);
            return;
        }
      });
  }

  // -- outcomes ---------------------------------------------------------------------

  void on_answer(connection& c, const answer_head& head) {
    auto now = clock_type::now();
    run_.in_flight.fetch_sub(1, std::memory_order_relaxed);
    run_.answers.fetch_add(1, std::memory_order_relaxed);
    auto& what = c.current;
    if (head.status >= 0 && head.status < static_cast<int>(statuses.size()))
      ++statuses[static_cast<size_t>(head.status)];
    auto& phase = phases[what.phase];
    ++phase.statuses[head.status];
    auto& second = second_of(now);
    if (head.status == 200) {
      run_.flags[what.delivery].fetch_or(delivery_acked, std::memory_order_relaxed);
      run_.acked.fetch_add(1, std::memory_order_relaxed);
      // Open loop measures from the intended send time, so a server that
      // falls behind shows its queueing delay instead of hiding it.
      auto base = rate_ > 0 && what.attempt == 0 ? what.intended : c.started;
      auto micros = static_cast<uint64_t>(duration_cast<microseconds>(now - base).count());
      auto events = run_.wl.deliveries[what.delivery].event_count;
      second_latency_.record(micros);
      ++second.deliveries;
      second.events += events;
      phase.latency.record(micros);
      ++phase.acked_deliveries;
      phase.acked_events += events;
      if (now >= run_.measure_from && now < run_.measure_until) {
        latency.record(micros);
        ++window_deliveries;
        window_events += events;
        last_window_answer = now;
      }
    } else {
      ++second.failures;
      run_.errors.fetch_add(1, std::memory_order_relaxed);
      retry_later(what, now);
    }
    if (head.close) {
      connect(c);
      return;
    }
    // Nothing is pipelined, so nothing should follow the answer.
    c.filled = 0;
    dispatch(c, now);
  }

  void fail_io(connection& c, std::string cause) {
    if (io_error_examples.size() < 5)
      io_error_examples.push_back(std::move(cause));
    fail(c, io_errors);
  }

  void fail(connection& c, uint64_t& counter) {
    auto now = clock_type::now();
    ++counter;
    auto& phase = phases[c.current.phase];
    ++(&counter == &timeouts ? phase.timeouts : phase.io_errors);
    ++second_of(now).failures;
    run_.errors.fetch_add(1, std::memory_order_relaxed);
    run_.in_flight.fetch_sub(1, std::memory_order_relaxed);
    retry_later(c.current, now);
    connect(c);
  }

  // -- per second, for --plot ----------------------------------------------------
  // Latency goes into one full histogram for the current second, kept compact
  // once the second is over: a long run keeps a few hundred bytes per second.

  second_bin& second_of(time_point now) {
    auto since_start = duration_cast<milliseconds>(now - run_.start).count();
    auto index = static_cast<size_t>(std::max<int64_t>(0, since_start / 1000));
    // Seconds only move forward; the clock is steady.
    index = std::max(index, second_index_);
    if (index != second_index_) {
      close_second();
      second_index_ = index;
    }
    if (index >= seconds.size())
      seconds.resize(index + 1);
    return seconds[index];
  }

  void close_second() {
    if (second_latency_.count() == 0)
      return;
    seconds[second_index_].latency = second_latency_.compact();
    second_latency_.clear();
  }

  // Like Kapso: a delivery that was not acknowledged is sent again later,
  // a bounded number of times, with exponential backoff.
  void retry_later(const job& what, time_point now) {
    if (acked(what.delivery) || what.attempt >= run_.opts.max_retries)
      return;
    auto delay = milliseconds{int64_t{run_.opts.retry_base_ms} << std::min(what.attempt, 16u)};
    retries_.push(retry_entry{now + delay, job{what.delivery, what.attempt + 1, {}}});
  }

  bool acked(uint32_t delivery) const {
    return (run_.flags[delivery].load(std::memory_order_relaxed) & delivery_acked) != 0;
  }

  // -- the clock: pacing, timeouts, reconnects, the end --------------------------

  void schedule_tick() {
    next_tick_ += tick_interval;
    tick_.expires_at(next_tick_);
    tick_.async_wait([this](const asio::error_code& ec) {
      if (!ec && !finished_)
        on_tick();
    });
  }

  void on_tick() {
    auto now = clock_type::now();
    if (now >= run_.measure_until)
      run_.stop(stop_duration);
    if (run_.stopping()) {
      if (stop_seen_ == time_point{}) {
        stop_seen_ = now;
        drain_until_ = now + seconds_to_duration(run_.opts.drain);
        backlog_.clear(); // planned but never sent: not part of the run
      }
    } else if (rate_ > 0) {
      pace(now);
    }
    auto timeout = milliseconds{run_.opts.timeout_ms};
    size_t busy = 0;
    for (auto& cp : conns_) {
      auto& c = *cp;
      switch (c.state) {
        case connection::phase::busy:
          if (now - c.started >= timeout)
            fail(c, timeouts);
          else
            ++busy;
          break;
        case connection::phase::closed:
          if (now >= c.reconnect_at)
            connect(c);
          break;
        case connection::phase::idle:
          // A keep-alive connection idle this long may be closing on the
          // server's side (its idle timeout) just as a request is written
          // on it: like an HTTP client, open a fresh one instead.
          if (now - c.idle_since >= keepalive_idle) {
            connect(c);
            break;
          }
          dispatch(c, now);
          if (c.state == connection::phase::busy)
            ++busy;
          break;
        case connection::phase::connecting:
          break;
      }
    }
    if (stop_seen_ != time_point{}) {
      bool drained = busy == 0 && retries_.empty();
      if (drained || now >= drain_until_) {
        finish(busy);
        return;
      }
    }
    // After a stall (e.g. the machine was busy) do not fire a burst of
    // catch-up ticks; pacing works from elapsed time anyway.
    if (next_tick_ + tick_interval < now)
      next_tick_ = now;
    schedule_tick();
  }

  // Open loop: how many deliveries should have left by now, at the rate.
  void pace(time_point now) {
    auto due = static_cast<uint64_t>(rate_ * seconds_between(run_.start, now));
    while (issued_ < due) {
      auto intended = run_.start
                      + seconds_to_duration(static_cast<double>(issued_) / rate_);
      job next;
      if (!take_position(next, intended))
        return;
      ++issued_;
      backlog_.push_back(next);
    }
  }

  void finish(size_t busy) {
    finished_ = true;
    close_second();
    abandoned = busy + retries_.size();
    run_.in_flight.fetch_sub(static_cast<int64_t>(busy), std::memory_order_relaxed);
    for (auto& c : conns_)
      close(*c);
    io_.stop();
  }

  shared_run& run_;
  asio::io_context io_;
  asio::steady_timer tick_;
  std::vector<std::unique_ptr<connection>> conns_;
  std::priority_queue<retry_entry, std::vector<retry_entry>, std::greater<>> retries_;
  std::deque<job> backlog_;
  double rate_;
  uint64_t issued_ = 0;
  time_point next_tick_{};
  time_point stop_seen_{};
  time_point drain_until_{};
  bool finished_ = false;
  latency_histogram second_latency_;
  size_t second_index_ = 0;
  std::thread thread_;
};

asio::ip::tcp::endpoint resolve(const std::string& host, uint16_t port) {
  asio::io_context io;
  asio::ip::tcp::resolver resolver{io};
  asio::error_code ec;
  auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec || results.empty())
    throw std::runtime_error("cannot resolve " + host + ": " + ec.message());
  // Prefer IPv4: the servers here listen on 127.0.0.1.
  for (auto& entry : results)
    if (entry.endpoint().address().is_v4())
      return entry.endpoint();
  return results.begin()->endpoint();
}

std::vector<second_sample> merge_seconds(const std::vector<std::unique_ptr<worker>>& workers,
                                         double elapsed) {
  size_t count = 0;
  for (auto& w : workers)
    count = std::max(count, w->seconds.size());
  std::vector<second_sample> out(count);
  latency_histogram merged;
  for (size_t s = 0; s < count; ++s) {
    auto& sample = out[s];
    sample.start = static_cast<double>(s);
    sample.length = std::clamp(elapsed - sample.start, 0.001, 1.0);
    merged.clear();
    for (auto& w : workers) {
      if (s >= w->seconds.size())
        continue;
      auto& bin = w->seconds[s];
      sample.deliveries += bin.deliveries;
      sample.events += bin.events;
      sample.failures += bin.failures;
      merged.merge(bin.latency);
    }
    sample.p50_us = merged.quantile(0.5);
    sample.p99_us = merged.quantile(0.99);
  }
  return out;
}

} // namespace

run_result run_load(const bench_options& opts, const workload& wl) {
  shared_run run{opts, wl};
  run.endpoint = resolve(opts.host, opts.port);

  auto threads = std::min(opts.threads, opts.connections);
  std::vector<std::unique_ptr<worker>> workers;
  for (size_t t = 0; t < threads; ++t) {
    auto share = opts.connections / threads + (t < opts.connections % threads ? 1 : 0);
    workers.push_back(std::make_unique<worker>(run, share, opts.rate / threads));
  }
  run.start = clock_type::now();
  run.measure_from = run.start + seconds_to_duration(opts.warmup);
  run.measure_until = run.measure_from + seconds_to_duration(opts.duration);
  for (auto& w : workers)
    w->start();

  // --phases: each SIGUSR1 moves the run to the next phase.
  std::vector<time_point> phase_starts{run.start};
  struct sigaction previous_int {};
  struct sigaction previous_term {};
  {
    struct sigaction action {};
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &action, &previous_int);
    sigaction(SIGTERM, &action, &previous_term);
  }
  if (!opts.phases.empty()) {
    struct sigaction action {};
    action.sa_handler = on_phase_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &action, nullptr);
    std::fprintf(stderr, "[%6.1fs] phase %s (SIGUSR1 moves to the next)\n", 0.0,
                 opts.phases[0].c_str());
  }
  auto signals_seen = phase_signals.load();
  // Moves to the next phase for every SIGUSR1 not seen yet.
  auto follow_phases = [&](time_point now) {
    for (auto signals = phase_signals.load(); signals_seen != signals; ++signals_seen) {
      auto next = run.phase.load() + 1;
      if (next >= opts.phases.size())
        continue;
      run.phase.store(next);
      phase_starts.push_back(now);
      std::fprintf(stderr, "[%6.1fs] phase %s\n", seconds_between(run.start, now),
                   opts.phases[next].c_str());
    }
  };

  // Progress once a second; the workers never print.
  uint64_t last_acked = 0;
  auto next_report = run.start + std::chrono::seconds{1};
  while (run.workers_done.load() < workers.size()) {
    std::this_thread::sleep_for(milliseconds{20});
    auto now = clock_type::now();
    if (stop_signalled.load() && !run.stopping()) {
      run.stop(stop_signal);
      std::fprintf(stderr, "[%6.1fs] stopping on a signal (a second one ends the process)\n",
                   seconds_between(run.start, now));
    }
    follow_phases(now);
    if (now < next_report)
      continue;
    next_report += std::chrono::seconds{1};
    auto acked = run.acked.load(std::memory_order_relaxed);
    if (!opts.quiet) {
      std::fprintf(stderr,
                   "[%6.1fs] sent %llu done %llu acked %llu rate %llu/s errors %llu "
                   "in-flight %lld%s\n",
                   seconds_between(run.start, now),
                   static_cast<unsigned long long>(run.attempts.load()),
                   static_cast<unsigned long long>(run.answers.load()),
                   static_cast<unsigned long long>(acked),
                   static_cast<unsigned long long>(acked - last_acked),
                   static_cast<unsigned long long>(run.errors.load()),
                   static_cast<long long>(run.in_flight.load()),
                   now < run.measure_from ? " (warm-up)"
                   : run.stopping()       ? " (draining)"
                                          : "");
    }
    last_acked = acked;
  }
  for (auto& w : workers)
    w->join();
  auto end = clock_type::now();
  // --verify checks what the server wrote once the run is in its last phase:
  // the process that signals the phases knows when that is (a spool
  // drained), also when the load ended before.
  if (opts.verify && !opts.phases.empty() && run.phase.load() + 1 < opts.phases.size()
      && !stop_signalled.load()) {
    std::fprintf(stderr,
                 "[%6.1fs] the load ended in phase %s: --verify waits for phase %s "
                 "(SIGUSR1; SIGINT verifies at once)\n",
                 seconds_between(run.start, end), opts.phases[run.phase.load()].c_str(),
                 opts.phases.back().c_str());
    while (run.phase.load() + 1 < opts.phases.size() && !stop_signalled.load()) {
      std::this_thread::sleep_for(milliseconds{20});
      follow_phases(clock_type::now());
    }
  }
  // A phase signal that comes late (during --verify) must not end the
  // process: SIGUSR1's default action would.
  if (!opts.phases.empty())
    std::signal(SIGUSR1, SIG_IGN);
  sigaction(SIGINT, &previous_int, nullptr);
  sigaction(SIGTERM, &previous_term, nullptr);

  run_result result;
  result.elapsed_seconds = seconds_between(run.start, end);
  time_point last_answer{};
  for (auto& w : workers) {
    result.latency.merge(w->latency);
    for (size_t s = 0; s < w->statuses.size(); ++s)
      if (w->statuses[s] > 0)
        result.statuses[static_cast<int>(s)] += w->statuses[s];
    result.window_acked_deliveries += w->window_deliveries;
    result.window_acked_events += w->window_events;
    last_answer = std::max(last_answer, w->last_window_answer);
    result.attempts += w->attempts;
    result.first_sends += w->first_sends;
    result.resends += w->resends;
    result.error_retries += w->error_retries;
    result.timeouts += w->timeouts;
    result.io_errors += w->io_errors;
    for (auto& e : w->io_error_examples)
      if (result.io_error_examples.size() < 10)
        result.io_error_examples.push_back(e);
    result.connect_errors += w->connect_errors;
    result.abandoned += w->abandoned;
  }
  result.window_start = opts.warmup;
  result.seconds = merge_seconds(workers, result.elapsed_seconds);
  for (size_t p = 0; p < opts.phases.size(); ++p) {
    phase_result phase;
    phase.name = opts.phases[p];
    if (p < phase_starts.size()) {
      // A phase's time ends with the load (a later signal only marks it).
      auto from = std::min(phase_starts[p], end);
      auto until = p + 1 < phase_starts.size() ? std::min(phase_starts[p + 1], end) : end;
      phase.start = seconds_between(run.start, from);
      phase.seconds = seconds_between(from, until);
    }
    for (auto& w : workers) {
      auto& bin = w->phases[p];
      phase.attempts += bin.attempts;
      for (auto& [status, count] : bin.statuses)
        phase.statuses[status] += count;
      phase.timeouts += bin.timeouts;
      phase.io_errors += bin.io_errors;
      phase.acked_deliveries += bin.acked_deliveries;
      phase.acked_events += bin.acked_events;
      phase.latency.merge(bin.latency);
    }
    result.phases.push_back(std::move(phase));
  }
  auto cause = run.stopped.load();
  if (cause == stop_schedule_end) {
    result.stop_reason = opts.requests > 0 && wl.schedule.size() >= opts.requests
                           ? "requests"
                           : "pool exhausted";
    // The window ends with the last answer, not at the planned duration.
    result.window_seconds = last_answer > run.measure_from
                              ? seconds_between(run.measure_from, last_answer)
                              : 0;
  } else if (cause == stop_signal) {
    result.stop_reason = "signal";
    result.window_seconds = last_answer > run.measure_from
                              ? seconds_between(run.measure_from, last_answer)
                              : 0;
  } else {
    result.stop_reason = "duration";
    result.window_seconds = opts.duration;
  }
  result.delivery_flags.resize(wl.deliveries.size());
  for (size_t d = 0; d < wl.deliveries.size(); ++d) {
    auto bits = run.flags[d].load();
    result.delivery_flags[d] = bits;
    auto events = wl.deliveries[d].event_count;
    if (bits & delivery_sent)
      ++result.unique_sent;
    if (bits & delivery_acked) {
      ++result.unique_acked;
      result.acked_events += events;
    } else if (bits & delivery_sent) {
      ++result.never_acked;
      result.never_acked_events += events;
    }
  }
  return result;
}

} // namespace kapso::bench
