// A Kapso-like load for the fault tests: signed v2 deliveries from many threads, every answer recorded.
#include "tests/fault/load.hpp"

#include <algorithm>
#include <mutex>
#include <random>
#include <sstream>

namespace kapso_fault {

using namespace kapso_test;

namespace {

constexpr int64_t base_timestamp = 1730000000;

const char* kind_name(http_error::kind k) {
  switch (k) {
    case http_error::kind::connect: return "connect";
    case http_error::kind::send: return "send";
    case http_error::kind::no_answer: return "no_answer";
    case http_error::kind::timeout: return "timeout";
  }
  return "?";
}

std::chrono::milliseconds since(clock_type::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - t);
}

} // namespace

bool delivery::acknowledged() const {
  return std::any_of(attempts.begin(), attempts.end(),
                     [](const attempt& a) { return a.status == 200; });
}

std::string phone_of(size_t conversation) {
  return "+1555" + std::to_string(1000000 + conversation);
}

size_t workspace_of(size_t conversation, const load_options& options) {
  return conversation % options.workspaces.size();
}

std::string text_of(const message_ref& m, const load_options& options) {
  auto text = "fault " + m.id;
  if (text.size() < options.text_bytes)
    text.append(options.text_bytes - text.size(), 'x');
  return text;
}

std::string body_of(const delivery& d, const load_options& options) {
  const auto& ws = options.workspaces.at(d.workspace);
  std::vector<json> events;
  for (const auto& m : d.messages)
    events.push_back(kapso_event(
      text_message(ws, m.id, m.timestamp, text_of(m, options), phone_of(m.conversation))));
  if (!d.batch)
    return events.front().dump();
  return kapso_batch(events).dump();
}

void send_once(http_client& client, delivery& d, const load_options& options) {
  const auto& ws = options.workspaces.at(d.workspace);
  auto body = body_of(d, options);
  attempt a;
  a.reused_connection = client.connected();
  a.sent = clock_type::now();
  try {
    header_list extra;
    if (d.batch)
      extra.emplace_back("X-Webhook-Batch", "true");
    std::optional<std::string> secret;
    if (options.sign == signing::valid)
      secret = ws.secret ? *ws.secret : global_secret;
    else if (options.sign == signing::wrong_secret)
      secret = "not-the-secret";
    auto response = post_webhook(client, body, secret, "whatsapp.message.received", extra);
    a.status = response.status;
    a.retry_after = !response.header("retry-after").empty();
    if (response.status == 200) {
      try {
        auto counts = counts_of(response);
        a.accepted = counts.accepted;
        a.duplicates = counts.duplicates;
        a.ignored = counts.ignored;
      } catch (const std::exception& e) {
        a.detail = e.what();
      }
      if (a.ignored != 0)
        a.detail = response.body.substr(0, 200);
    } else {
      a.detail = response.body.substr(0, 200);
    }
  } catch (const http_error& e) {
    a.error = e.why;
    a.detail = e.what();
  } catch (const std::exception& e) {
    a.error = http_error::kind::no_answer;
    a.detail = e.what();
  }
  a.latency = since(a.sent);
  d.attempts.push_back(std::move(a));
}

load_summary summarize(const std::vector<delivery>& deliveries) {
  load_summary s;
  for (const auto& d : deliveries) {
    ++s.deliveries;
    s.messages += d.messages.size();
    if (d.acknowledged()) {
      ++s.acknowledged_deliveries;
      s.acknowledged_messages += d.messages.size();
    }
    for (const auto& a : d.attempts) {
      ++s.requests;
      ++s.by_status[a.status];
      if (a.error)
        ++s.errors[kind_name(*a.error)];
      s.max_latency = std::max(s.max_latency, a.latency);
      auto odd = false;
      if (a.status == 200) {
        s.max_latency_200 = std::max(s.max_latency_200, a.latency);
        if (a.ignored != 0) {
          ++s.ignored_in_200;
          odd = true;
        }
        if (a.accepted + a.duplicates + a.ignored != static_cast<int64_t>(d.messages.size())) {
          ++s.wrong_counts_in_200;
          odd = true;
        }
      } else if (a.status == 503 && !a.retry_after) {
        ++s.status_503_without_retry_after;
        odd = true;
      } else if (a.status != 503) {
        odd = true;
      }
      if (odd && s.examples.size() < 5)
        s.examples.push_back(std::to_string(a.status) + " after " + std::to_string(a.latency.count())
                             + " ms for " + d.messages.front().id + ": " + a.detail);
    }
  }
  return s;
}

std::string load_summary::describe() const {
  std::ostringstream out;
  out << deliveries << " deliveries (" << messages << " messages), " << requests
      << " requests; acknowledged " << acknowledged_deliveries << " deliveries ("
      << acknowledged_messages << " messages); answers:";
  for (auto& [status, n] : by_status)
    out << " " << (status == 0 ? std::string{"none"} : std::to_string(status)) << "=" << n;
  if (!errors.empty()) {
    out << " (no answer:";
    for (auto& [kind, n] : errors)
      out << " " << kind << "=" << n;
    out << ")";
  }
  out << "; max latency " << max_latency.count() << " ms (200: " << max_latency_200.count()
      << " ms)";
  if (ignored_in_200 > 0)
    out << "; " << ignored_in_200 << " answers 200 with ignored > 0";
  if (wrong_counts_in_200 > 0)
    out << "; " << wrong_counts_in_200 << " answers 200 whose counts do not add up to the events";
  if (status_503_without_retry_after > 0)
    out << "; " << status_503_without_retry_after << " answers 503 without Retry-After";
  for (auto& e : examples)
    out << "\n    e.g. " << e;
  return out.str();
}

load_driver::load_driver(uint16_t port, load_options options)
  : options_(std::move(options)), port_(port) {
  if (options_.workspaces.empty())
    throw std::runtime_error("load_driver: no workspaces");
  if (options_.conversations < options_.workspaces.size())
    throw std::runtime_error("load_driver: fewer conversations than workspaces");
}

load_driver::~load_driver() { stop(); }

void load_driver::start() {
  if (!threads_.empty())
    throw std::runtime_error("load_driver::start: already running");
  stopping_ = false;
  ++round_;
  per_thread_.assign(options_.threads, {});
  for (size_t t = 0; t < options_.threads; ++t)
    threads_.emplace_back([this, t] { run(t); });
}

void load_driver::stop() {
  stopping_ = true;
  for (auto& t : threads_)
    t.join();
  threads_.clear();
  for (auto& mine : per_thread_)
    for (auto& d : mine)
      deliveries_.push_back(std::move(d));
  per_thread_.clear();
}

bool load_driver::wait_acknowledged(size_t n, std::chrono::milliseconds timeout) const {
  return eventually([&] { return acknowledged_.load() >= n; }, timeout, 5ms);
}

void load_driver::run(size_t thread) {
  std::mt19937_64 random{0x6b61707330ull + thread * 7919 + round_ * 104729};
  auto& mine = per_thread_[thread];
  auto port = port_.load();
  http_client client{port, options_.client_timeout, false};
  auto workspaces = options_.workspaces.size();
  auto per_workspace = options_.conversations / workspaces;
  std::uniform_real_distribution<double> coin{0.0, 1.0};
  std::uniform_int_distribution<size_t> pick_ws{0, workspaces - 1};
  std::uniform_int_distribution<size_t> pick_slot{0, per_workspace - 1};
  std::uniform_int_distribution<size_t> batch_size{
    options_.batch_min, std::max(options_.batch_min, options_.batch_max)};
  for (size_t seq = 0; !stopping_.load() && seq < options_.max_deliveries_per_thread; ++seq) {
    if (port_.load() != port) {
      port = port_.load();
      client = http_client{port, options_.client_timeout, false};
    }
    delivery d;
    d.workspace = pick_ws(random);
    d.batch = options_.batch_share > 0 && coin(random) < options_.batch_share;
    size_t events = d.batch ? batch_size(random) : 1;
    for (size_t k = 0; k < events; ++k) {
      message_ref m;
      m.id = "wamid." + options_.tag + "." + std::to_string(round_) + "." + std::to_string(thread)
             + "." + std::to_string(seq) + "." + std::to_string(k);
      // Conversation c belongs to workspace c % workspaces.
      m.conversation = pick_slot(random) * workspaces + d.workspace;
      m.timestamp = base_timestamp + static_cast<int64_t>(round_ * 1000000 + seq * 10 + k);
      d.messages.push_back(std::move(m));
    }
    send_once(client, d, options_);
    const auto& last = d.attempts.back();
    ++requests_;
    if (last.status == 200)
      ++acknowledged_;
    auto failed = last.error.has_value();
    mine.push_back(std::move(d));
    if (failed) {
      // No hot loop against a server that is down or restarting.
      client = http_client{port, options_.client_timeout, false};
      std::this_thread::sleep_for(20ms);
    }
    if (options_.pause.count() > 0)
      std::this_thread::sleep_for(options_.pause);
  }
}

size_t resend_unacknowledged(std::vector<delivery>& deliveries, const load_options& options,
                             uint16_t port, std::chrono::milliseconds budget, size_t threads) {
  auto deadline = clock_type::now() + budget;
  for (;;) {
    std::vector<size_t> pending;
    for (size_t i = 0; i < deliveries.size(); ++i)
      if (!deliveries[i].acknowledged())
        pending.push_back(i);
    if (pending.empty() || clock_type::now() >= deadline)
      return pending.size();
    // One pass: every pending delivery tried once, in parallel.
    std::atomic<size_t> next{0};
    run_concurrently(threads, [&](size_t) {
      http_client client{port, options.client_timeout};
      for (;;) {
        auto k = next++;
        if (k >= pending.size() || clock_type::now() >= deadline)
          return;
        auto& d = deliveries[pending[k]];
        send_once(client, d, options);
        if (d.attempts.back().error)
          client = http_client{port, options.client_timeout};
      }
    });
    std::this_thread::sleep_for(250ms);
  }
}

} // namespace kapso_fault
