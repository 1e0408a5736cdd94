// Request handling: limits, parsing and answers; the database is never
// touched here, the request handle never leaves this file's closures.
#include "http/server.hpp"

#include <dirent.h>
#include <sys/resource.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <restinio/all.hpp>
#include <spdlog/spdlog.h>

#include "http/http_metrics.hpp"
#include "actors/protocol.hpp"
#include "http/accept_guard.hpp"
#include "http/admitting_socket.hpp"
#include "http/answers.hpp"
#include "http/payload.hpp"

namespace kapso {

namespace {

// Each request carries the moment RESTinio handed it to the handler, so every
// answer can be timed however long it waited.
struct arrival {
  std::chrono::steady_clock::time_point at = std::chrono::steady_clock::now();
};

// Client sockets that refuse bodies from their headers, and a connection
// limit whose limiter re-arms lost accepts (the specialisation below).
struct http_traits
  : restinio::traits_t<restinio::asio_timer_manager_t, restinio::null_logger_t,
                       restinio::details::autodetect_request_handler_type,
                       restinio::default_strand_t, admitting_socket> {
  static constexpr bool use_connection_count_limiter = true;
  using extra_data_factory_t = restinio::simple_extra_data_factory_t<arrival>;
};

} // namespace
} // namespace kapso

// RESTinio chooses a server's connection-count limiter through this
// selector: ours also re-arms accepts that an error took (http/accept_guard).
template <>
struct restinio::connection_count_limit_types<kapso::http_traits> {
  using limiter_t = kapso::accept_limiter;
  using lifetime_monitor_t = restinio::connection_count_limits::connection_lifetime_monitor_t<
    limiter_t>;
};

namespace kapso {

namespace {

constexpr std::string_view webhook_path = "/api/webhook/kapso";

using request_handle = restinio::generic_request_handle_t<arrival>;

std::string_view header_or_empty(const request_handle& req, std::string_view name) {
  auto value = req->header().try_get_field(name);
  return value ? std::string_view{value->data(), value->size()} : std::string_view{};
}

bool is_json_type(std::string_view content_type) {
  auto semicolon = content_type.find(';');
  auto type = content_type.substr(0, semicolon);
  while (!type.empty() && type.back() == ' ')
    type.remove_suffix(1);
  std::string lower{type};
  for (auto& c : lower)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower == "application/json" || (lower.size() > 5 && lower.compare(lower.size() - 5, 5, "+json") == 0)
         || lower == "text/json";
}

restinio::request_handling_status_t send(const request_handle& req, std::string_view route,
                                         const http_answer& a) {
  auto resp = req->create_response(
    restinio::http_status_line_t{restinio::http_status_code_t{static_cast<std::uint16_t>(a.status)},
                                 reason_phrase(a.status)});
  resp.append_header(restinio::http_field::content_type, a.content_type);
  if (a.retry_after > 0)
    resp.append_header(restinio::http_field::retry_after, std::to_string(a.retry_after));
  resp.set_body(a.body);
  // Counted before done(): once the client has the answer, /metrics shows it.
  http_metrics::global().count_request(
    route, a.status,
    std::chrono::duration<double>(std::chrono::steady_clock::now() - req->extra_data().at)
      .count());
  return resp.done();
}

// Deliveries handed to the router and not yet answered, by ticket: the
// actors' answer sink. The request handles stay here; the actors see only
// the ticket. A delivery split into parts (one per writer) is answered when
// all are done, or at the first failure.
class waiting_deliveries final : public answer_sink {
public:
  explicit waiting_deliveries(std::shared_ptr<byte_budget> budget) : budget_(std::move(budget)) {}

  // Takes a delivery of `body_bytes` unless that would pass the number of
  // deliveries or the byte budget; nullopt then (the caller answers 503).
  // A waiting delivery holds its body twice: in the request, whose handle
  // answers it, and in the parsed delivery the actors read.
  std::optional<uint64_t> add(request_handle req, size_t events, size_t body_bytes,
                              size_t max_deliveries) {
    auto bytes = 2 * body_bytes;
    std::lock_guard<std::mutex> guard{mutex_};
    if (waiting_.size() >= max_deliveries || !budget_->try_take(bytes))
      return std::nullopt;
    auto ticket = next_ticket_++;
    waiting_.emplace(ticket,
                     entry{std::move(req), std::chrono::steady_clock::now(), events, bytes, 0, {}});
    ++in_flight_;
    http_metrics::global().in_flight_deliveries++;
    return ticket;
  }

  void part_done(uint64_t ticket, uint32_t parts, const delivery_result& counts) override {
    entry e;
    {
      std::lock_guard<std::mutex> guard{mutex_};
      auto found = waiting_.find(ticket);
      if (found == waiting_.end())
        return; // answered already (timed out, or another part failed)
      auto& waiting = found->second;
      waiting.counts += counts;
      if (++waiting.parts_done < parts)
        return;
      e = take(found);
    }
    answer(e, answer_ok(e.counts));
  }

  void failed(uint64_t ticket, ingest_errc why) override {
    complete(ticket, answer_for(why));
  }

  // Answers the request waiting under `ticket`, once.
  void complete(uint64_t ticket, const http_answer& a) {
    entry e;
    {
      std::lock_guard<std::mutex> guard{mutex_};
      auto found = waiting_.find(ticket);
      if (found == waiting_.end())
        return;
      e = take(found);
    }
    answer(e, a);
  }

  // Answers 503 for every delivery that arrived before `cutoff`; how many.
  size_t expire(std::chrono::steady_clock::time_point cutoff, const http_answer& a) {
    std::vector<entry> expired;
    {
      std::lock_guard<std::mutex> guard{mutex_};
      // Tickets grow with arrival time: the oldest come first.
      while (!waiting_.empty() && waiting_.begin()->second.started < cutoff)
        expired.push_back(take(waiting_.begin()));
    }
    for (auto& e : expired)
      answer(e, a);
    return expired.size();
  }

  // Answers every waiting request with `a`; how many there were.
  size_t fail_all(const http_answer& a) {
    return expire(std::chrono::steady_clock::time_point::max(), a);
  }

  size_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }

private:
  struct entry {
    request_handle req;
    std::chrono::steady_clock::time_point started;
    size_t events = 0;
    size_t bytes = 0; // held in the byte budget
    uint32_t parts_done = 0;
    delivery_result counts;
  };

  // Removes an entry; the caller holds the mutex.
  entry take(std::map<uint64_t, entry>::iterator found) {
    entry e = std::move(found->second);
    waiting_.erase(found);
    budget_->give_back(e.bytes);
    return e;
  }

  void answer(entry& e, const http_answer& a) {
    send(e.req, "webhook", a);
    --in_flight_;
    http_metrics::global().in_flight_deliveries--;
    spdlog::debug("delivery of {} events answered {} in {} us: {}", e.events, a.status,
                  std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::steady_clock::now() - e.started).count(),
                  a.body);
  }

  std::shared_ptr<byte_budget> budget_;
  std::mutex mutex_;
  std::map<uint64_t, entry> waiting_;
  uint64_t next_ticket_ = 0;
  std::atomic<size_t> in_flight_{0};
};

// A client that does not take an answer within this long is dropped: Kapso
// gives up on a request after 10 s anyway.
constexpr auto answer_write_limit = std::chrono::seconds(10);

// How often deliveries past their deadline are looked for: the precision of
// the timeout.
constexpr auto deadline_sweep_period = std::chrono::milliseconds(100);

// Descriptors open in this process right now.
size_t open_descriptors() {
  size_t n = 0;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (auto* entry = ::readdir(dir))
      if (entry->d_name[0] != '.')
        ++n;
    ::closedir(dir);
  }
  return n;
}

// Descriptors kept free for everything that is not a client connection:
// database connections and their reconnects, spool and snapshot files,
// the readiness and watchdog probes.
constexpr size_t reserved_descriptors = 32;

// Client connections alone should not use up the descriptors the database
// and the spool need: at most the descriptor limit minus what is open now
// and a reserve. (Should descriptors run out anyway, the accept guard
// starts accepting again once there are some.)
size_t connection_limit(size_t configured) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY)
    return configured;
  auto used = open_descriptors() + reserved_descriptors;
  auto available = limit.rlim_cur > used ? static_cast<size_t>(limit.rlim_cur - used) : 0;
  if (available < 1)
    throw std::runtime_error("the descriptor limit (" + std::to_string(limit.rlim_cur)
                             + ") leaves no room for client connections");
  return std::min(configured, available);
}

// Refusals from the headers can come by the thousand (a flood of oversized
// bodies): one log line per this period, with how many were not logged.
constexpr auto refusal_log_period = std::chrono::seconds(1);

std::string_view route_of(std::string_view target) {
  auto path = target.substr(0, target.find('?'));
  return path.substr(0, webhook_path.size()) == webhook_path ? "webhook" : "other";
}

} // namespace

void report_refusal(const admission_refusal& refusal) {
  http_metrics::global().count_request(route_of(refusal.target), refusal.answer.status, 0.0);
  static std::mutex log_mutex;
  static std::chrono::steady_clock::time_point last_logged;
  static uint64_t unlogged = 0;
  std::lock_guard<std::mutex> guard{log_mutex};
  auto now = std::chrono::steady_clock::now();
  if (now - last_logged < refusal_log_period) {
    ++unlogged;
    return;
  }
  last_logged = now;
  spdlog::info("request refused from its headers, body not read ({}): {} {} bytes{}",
               refusal.answer.status, refusal.chunked ? "chunked body past" : "Content-Length",
               refusal.announced,
               unlogged > 0 ? fmt::format(" ({} more refused since the last line)", unlogged)
                            : std::string{});
  unlogged = 0;
}

struct http_server::impl {
  using traits = http_traits;

  caf::actor_system& sys;
  router_actor router;
  directory_actor directory;
  settings cfg;
  parse_options parse_cfg;
  std::atomic<bool> shutting_down{false};
  std::atomic<bool> withdrawn{false};
  // Bodies being read and deliveries waiting share one bound in bytes.
  std::shared_ptr<byte_budget> budget;
  std::shared_ptr<waiting_deliveries> waiting;
  // Declared before the server: RESTinio's threads run this io_context, and
  // the guard (and the limiter inside the server) use it.
  asio_ns::io_context io;
  accept_guard guard{io};
  std::unique_ptr<restinio::running_server_instance_t<restinio::http_server_t<traits>>> server;
  // Answers 503 for deliveries past http.request-timeout-ms: the actors
  // answer every part, but nothing may wait on them forever.
  std::thread deadline_sweeper;
  std::mutex sweeper_mutex;
  std::condition_variable sweeper_wake;
  bool sweeper_stop = false;

  impl(caf::actor_system& s, settings c)
    : sys(s), cfg(std::move(c)), budget(std::make_shared<byte_budget>(cfg.max_in_flight_bytes)),
      waiting(std::make_shared<waiting_deliveries>(budget)) {
    parse_cfg.default_region = cfg.default_region;
  }

  ~impl() {
    stop_sweeper();
  }

  void listen(size_t connections);

  void start_sweeper() {
    deadline_sweeper = std::thread([this] {
      std::unique_lock<std::mutex> lock{sweeper_mutex};
      while (!sweeper_wake.wait_for(lock, deadline_sweep_period, [this] { return sweeper_stop; })) {
        auto cutoff = std::chrono::steady_clock::now() - cfg.request_timeout;
        auto n = waiting->expire(cutoff, answer_for(ingest_errc::timeout));
        if (n > 0)
          spdlog::warn("{} deliveries not confirmed within http.request-timeout-ms ({} ms): "
                       "answered 503 (Kapso retries)", n, cfg.request_timeout.count());
      }
    });
  }

  void stop_sweeper() {
    {
      std::lock_guard<std::mutex> guard{sweeper_mutex};
      sweeper_stop = true;
    }
    sweeper_wake.notify_all();
    if (deadline_sweeper.joinable())
      deadline_sweeper.join();
  }

  restinio::request_handling_status_t handle(request_handle req) {
    auto path = req->header().path();
    // A trailing slash names the same route.
    if (path.size() > 1 && path.back() == '/')
      path.remove_suffix(1);
    auto method = req->header().method();
    if (path == webhook_path) {
      if (method == restinio::http_method_post())
        return post_webhook(std::move(req));
      if (method == restinio::http_method_get())
        return verify_webhook(req);
      return send(req, "webhook", answer_error(405, "method not allowed"));
    }
    if (method != restinio::http_method_get()) {
      bool known = path == "/healthz" || path == "/readyz" || path == "/metrics";
      return send(req, "other", known ? answer_error(405, "method not allowed")
                                      : answer_error(404, "not found"));
    }
    if (path == "/healthz") {
      http_answer a;
      a.body = shutting_down ? R"({"status":"shutting_down"})" : R"({"status":"ok"})";
      return send(req, "healthz", a);
    }
    if (path == "/readyz")
      return readiness(std::move(req));
    if (path == "/metrics") {
      http_metrics::global().in_flight_bytes = static_cast<int64_t>(budget->in_use());
      http_answer a;
      a.content_type = "text/plain; version=0.0.4; charset=utf-8";
      a.body = http_metrics::global().render();
      return send(req, "metrics", a);
    }
    return send(req, "other", answer_error(404, "not found"));
  }

  restinio::request_handling_status_t verify_webhook(const request_handle& req) {
    const auto qp = restinio::parse_query(req->header().query());
    auto param = [&qp](std::string_view name) -> std::string {
      auto value = qp.get_param(name);
      return value ? std::string{value->data(), value->size()} : std::string{};
    };
    auto challenge = qp.has("hub.challenge") ? param("hub.challenge") : param("challenge");
    if (!qp.has("hub.challenge") && !qp.has("challenge")) {
      http_answer a;
      a.body = R"({"status":"ready"})";
      return send(req, "webhook_verify", a);
    }
    if (!cfg.verify_token.empty()) {
      auto token = qp.has("hub.verify_token") ? param("hub.verify_token") : param("verify_token");
      if (token != cfg.verify_token) {
        spdlog::warn("webhook verification refused: wrong verify token");
        return send(req, "webhook_verify", answer_error(403, "verify token mismatch"));
      }
    }
    http_answer a;
    a.content_type = "text/plain; charset=utf-8";
    a.body = challenge;
    return send(req, "webhook_verify", a);
  }

  restinio::request_handling_status_t readiness(request_handle req) {
    if (shutting_down)
      return send(req, "readyz", answer_error(503, "shutting down", 1));
    if (withdrawn)
      return send(req, "readyz",
                  answer_error(503, "withdrawn from the load balancer; deliveries still served", 1));
    sys.spawn([req, dir = directory, shutting = shutting_down.load()](caf::event_based_actor* self) {
      self->request(dir, std::chrono::seconds(3), readiness_atom::value)
        .then(
          [req, shutting](bool ok) {
            http_answer a;
            if (ok && !shutting) {
              a.body = R"({"status":"ready"})";
            } else {
              a = answer_error(503, shutting ? "shutting down" : "database unreachable or not migrated", 1);
            }
            send(req, "readyz", a);
          },
          [req](caf::error&) {
            send(req, "readyz", answer_error(503, "database check timed out", 1));
          });
    });
    return restinio::request_accepted();
  }

  restinio::request_handling_status_t post_webhook(request_handle req) {
    if (shutting_down)
      return send(req, "webhook", answer_for(ingest_errc::shutting_down));
    auto content_type = header_or_empty(req, "Content-Type");
    if (!content_type.empty() && !is_json_type(content_type)) {
      spdlog::info("delivery refused: content type '{}' is not JSON", content_type);
      return send(req, "webhook", answer_error(415, "content type must be application/json"));
    }
    // Cheap early refusal; the exact check is made when the delivery is
    // registered below.
    if (waiting->in_flight() >= cfg.max_in_flight)
      return send(req, "webhook", answer_for(ingest_errc::overloaded));
    delivery_headers headers;
    headers.event_type = header_or_empty(req, "X-Webhook-Event");
    headers.batch = header_or_empty(req, "X-Webhook-Batch");
    headers.payload_version = header_or_empty(req, "X-Webhook-Payload-Version");
    auto parsed = parse_delivery(req->body(), headers, parse_cfg);
    if (!parsed.ok) {
      spdlog::info("delivery refused (400): {}", parsed.error);
      return send(req, "webhook", answer_error(400, parsed.error));
    }
    for (const auto& why : parsed.skipped)
      spdlog::warn("event skipped and counted ignored: {}", why);
    auto d = std::make_shared<delivery>(std::move(parsed.parsed));
    d->body = req->body();
    d->kapso_signature = std::string{header_or_empty(req, "X-Webhook-Signature")};
    if (d->kapso_signature.empty())
      d->kapso_signature = std::string{header_or_empty(req, "X-Kapso-Signature")};
    d->hub_signature = std::string{header_or_empty(req, "X-Hub-Signature-256")};
    auto ticket = waiting->add(req, d->events.size(), d->body.size(), cfg.max_in_flight);
    if (!ticket)
      return send(req, "webhook", answer_for(ingest_errc::overloaded));
    // Answered through the sink by the actors, or by the deadline sweep.
    caf::anon_send(router, ingest_atom::value, delivery_ptr{std::move(d)}, *ticket);
    return restinio::request_accepted();
  }
};

http_server::http_server(caf::actor_system& sys, settings cfg)
  : impl_(std::make_unique<impl>(sys, std::move(cfg))) {
}

answer_sink_ptr http_server::sink() const {
  return impl_->waiting;
}

http_server::~http_server() {
  stop();
}

void http_server::start(router_actor router, directory_actor directory) {
  auto& i = *impl_;
  i.router = std::move(router);
  i.directory = std::move(directory);
  i.start_sweeper();
  auto policy = std::make_shared<admission_policy>();
  policy->limits.body_limit = i.cfg.body_limit;
  policy->budget = i.budget;
  install_admission_policy(std::move(policy));
  i.guard.install();
  auto connections = connection_limit(i.cfg.max_connections);
  if (connections < i.cfg.max_connections)
    spdlog::warn("http.max-connections lowered from {} to {} to stay below the descriptor limit",
                 i.cfg.max_connections, connections);
  try {
    i.listen(connections);
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot listen on " + i.cfg.host + ":" + std::to_string(i.cfg.port) +
                             ": " + e.what());
  }
  i.guard.start();
}

// RESTinio's server on the shared io_context: bound and accepting on return,
// or an exception (the port in use, a host that is not ours).
void http_server::impl::listen(size_t connections) {
  auto& i = *this;
  server = restinio::run_async<impl::traits>(
    restinio::external_io_context(i.io),
    restinio::server_settings_t<impl::traits>{}
      .port(i.cfg.port)
      .address(i.cfg.host)
      // A request is read only once the one before it is answered, so a
      // refusal written from the headers (http/admitting_socket.hpp) never
      // comes before, or in the middle of, an earlier request's answer.
      .max_pipelined_requests(1)
      .max_parallel_connections(connections)
      .handle_request_timeout(i.cfg.request_timeout + std::chrono::seconds(1))
      // The whole next request (headers and body) must arrive within the
      // idle timeout: idle keep-alive connections and slow-loris senders
      // are closed and their slots freed.
      .read_next_http_message_timelimit(i.cfg.idle_timeout)
      .write_http_response_timelimit(answer_write_limit)
      // Bodies are refused from their headers before this is reached; it
      // stays as RESTinio's own bound.
      .incoming_http_msg_limits(
        restinio::incoming_http_msg_limits_t{}.max_body_size(i.cfg.body_limit))
      .acceptor_post_bind_hook(
        [&i](asio_ns::ip::tcp::acceptor& acceptor) { i.guard.watch(acceptor.native_handle()); })
      .request_handler([&i](request_handle req) { return i.handle(std::move(req)); }),
    i.cfg.http_threads);
}

void http_server::begin_shutdown() {
  impl_->shutting_down = true;
}

void http_server::withdraw(bool withdrawn) {
  impl_->withdrawn = withdrawn;
}

size_t http_server::in_flight() const {
  return impl_->waiting->in_flight();
}

size_t http_server::fail_waiting() {
  return impl_->waiting->fail_all(answer_for(ingest_errc::shutting_down));
}

void http_server::stop() {
  if (impl_ && impl_->server) {
    impl_->server->stop();
    impl_->server->wait();
    impl_->server.reset();
  }
  if (impl_)
    impl_->stop_sweeper();
}

} // namespace kapso
