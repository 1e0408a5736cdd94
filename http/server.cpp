// Request handling: limits, parsing and answers; the database is never
// touched here, the request handle never leaves this file's closures.
#include "http/server.hpp"

#include <mutex>
#include <unordered_map>
#include <vector>

#include <restinio/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/metrics.hpp"
#include "actors/protocol.hpp"
#include "http/answers.hpp"
#include "http/payload.hpp"

namespace kapso {

namespace {

constexpr std::string_view webhook_path = "/api/webhook/kapso";

// Each request carries the moment RESTinio handed it to the handler, so every
// answer can be timed however long it waited.
struct arrival {
  std::chrono::steady_clock::time_point at = std::chrono::steady_clock::now();
};
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
  metrics::global().count_request(
    route, a.status,
    std::chrono::duration<double>(std::chrono::steady_clock::now() - req->extra_data().at)
      .count());
  return resp.done();
}

// Deliveries handed to the router and not yet answered, by ticket. The
// request handles stay here; the router sees only the ticket.
class waiting_deliveries {
public:
  uint64_t add(request_handle req, size_t events) {
    std::lock_guard<std::mutex> guard{mutex_};
    auto ticket = next_ticket_++;
    waiting_.emplace(ticket, entry{std::move(req), std::chrono::steady_clock::now(), events});
    ++in_flight_;
    metrics::global().in_flight_deliveries++;
    return ticket;
  }

  // Answers the request waiting under `ticket`, once.
  void complete(uint64_t ticket, const http_answer& a) {
    entry e;
    {
      std::lock_guard<std::mutex> guard{mutex_};
      auto found = waiting_.find(ticket);
      if (found == waiting_.end())
        return;
      e = std::move(found->second);
      waiting_.erase(found);
    }
    send(e.req, "webhook", a);
    --in_flight_;
    metrics::global().in_flight_deliveries--;
    spdlog::debug("delivery of {} events answered {} in {} us: {}", e.events, a.status,
                  std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::steady_clock::now() - e.started).count(),
                  a.body);
  }

  // Answers every waiting request with `a`; how many there were.
  size_t fail_all(const http_answer& a) {
    std::vector<uint64_t> tickets;
    {
      std::lock_guard<std::mutex> guard{mutex_};
      for (const auto& [ticket, e] : waiting_)
        tickets.push_back(ticket);
    }
    for (auto ticket : tickets)
      complete(ticket, a);
    return tickets.size();
  }

  size_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }

private:
  struct entry {
    request_handle req;
    std::chrono::steady_clock::time_point started;
    size_t events = 0;
  };

  std::mutex mutex_;
  std::unordered_map<uint64_t, entry> waiting_;
  uint64_t next_ticket_ = 0;
  std::atomic<size_t> in_flight_{0};
};

} // namespace

struct http_server::impl {
  struct traits : restinio::traits_t<restinio::asio_timer_manager_t, restinio::null_logger_t> {
    using extra_data_factory_t = restinio::simple_extra_data_factory_t<arrival>;
  };

  caf::actor_system& sys;
  caf::actor router;
  caf::actor directory;
  settings cfg;
  parse_options parse_cfg;
  std::atomic<bool> shutting_down{false};
  std::shared_ptr<waiting_deliveries> waiting = std::make_shared<waiting_deliveries>();
  // Receives the router's answers and completes the waiting requests: one
  // long-lived actor instead of one spawned per delivery.
  caf::actor gateway;
  std::unique_ptr<restinio::running_server_instance_t<restinio::http_server_t<traits>>> server;

  impl(caf::actor_system& s, caf::actor r, caf::actor d, settings c)
    : sys(s), router(std::move(r)), directory(std::move(d)), cfg(std::move(c)) {
    parse_cfg.default_region = cfg.default_region;
    gateway = sys.spawn([w = waiting, r = router](caf::event_based_actor* self) -> caf::behavior {
      // Should the router ever stop while deliveries wait, they are answered
      // 503 (Kapso retries) instead of waiting for RESTinio to drop them.
      self->monitor(r);
      self->set_down_handler([w](caf::down_msg&) {
        if (auto n = w->fail_all(answer_for(make_error(ingest_errc::unavailable))); n > 0)
          spdlog::error("the router stopped: {} waiting deliveries answered 503", n);
      });
      return {
        [w](ingest_atom, uint64_t ticket, const delivery_result& result) {
          w->complete(ticket, answer_ok(result));
        },
        [w](ingest_atom, uint64_t ticket, const caf::error& err) {
          w->complete(ticket, answer_for(err));
        },
      };
    });
  }

  ~impl() {
    caf::anon_send_exit(gateway, caf::exit_reason::user_shutdown);
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
    if (method != restinio::http_method_get())
      return send(req, "other", answer_error(path == "/healthz" || path == "/readyz"
                                                 || path == "/metrics" ? 405 : 404,
                                             "not found"));
    if (path == "/healthz") {
      http_answer a;
      a.body = shutting_down ? R"({"status":"shutting_down"})" : R"({"status":"ok"})";
      return send(req, "healthz", a);
    }
    if (path == "/readyz")
      return readiness(std::move(req));
    if (path == "/metrics") {
      http_answer a;
      a.content_type = "text/plain; version=0.0.4; charset=utf-8";
      a.body = metrics::global().render();
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
      return send(req, "webhook", answer_for(make_error(ingest_errc::shutting_down)));
    auto content_type = header_or_empty(req, "Content-Type");
    if (!content_type.empty() && !is_json_type(content_type)) {
      spdlog::info("delivery refused: content type '{}' is not JSON", content_type);
      return send(req, "webhook", answer_error(415, "content type must be application/json"));
    }
    if (req->body().size() > cfg.body_limit) {
      spdlog::info("delivery refused: body of {} bytes exceeds the {} byte limit",
                   req->body().size(), cfg.body_limit);
      return send(req, "webhook",
                  answer_error(413, "body larger than " + std::to_string(cfg.body_limit) + " bytes"));
    }
    if (waiting->in_flight() >= cfg.max_in_flight)
      return send(req, "webhook", answer_for(make_error(ingest_errc::overloaded)));
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
    auto ticket = waiting->add(req, d->events.size());
    // The router answers the gateway within cfg.request_timeout.
    caf::send_as(gateway, router, ingest_atom::value, delivery_ptr{std::move(d)}, ticket);
    return restinio::request_accepted();
  }
};

http_server::http_server(caf::actor_system& sys, caf::actor router, caf::actor directory,
                         settings cfg)
  : impl_(std::make_unique<impl>(sys, std::move(router), std::move(directory), std::move(cfg))) {
}

http_server::~http_server() {
  stop();
}

void http_server::start() {
  auto& i = *impl_;
  // Bodies a little over the limit are read so they can be answered 413;
  // far larger ones are cut off by RESTinio itself.
  auto hard_limit = std::max<std::uint64_t>(i.cfg.body_limit * 4, 64u << 20);
  i.server = restinio::run_async<impl::traits>(
    restinio::own_io_context(),
    restinio::server_settings_t<impl::traits>{}
      .port(i.cfg.port)
      .address(i.cfg.host)
      .max_pipelined_requests(16)
      .handle_request_timeout(i.cfg.request_timeout + std::chrono::seconds(1))
      .read_next_http_message_timelimit(std::chrono::seconds(60))
      .incoming_http_msg_limits(restinio::incoming_http_msg_limits_t{}.max_body_size(hard_limit))
      .request_handler([&i](request_handle req) { return i.handle(std::move(req)); }),
    i.cfg.http_threads);
}

void http_server::begin_shutdown() {
  impl_->shutting_down = true;
}

size_t http_server::in_flight() const {
  return impl_->waiting->in_flight();
}

void http_server::stop() {
  if (impl_ && impl_->server) {
    impl_->server->stop();
    impl_->server->wait();
    impl_->server.reset();
  }
}

} // namespace kapso
