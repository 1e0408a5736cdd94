// The pre-built deliveries of one run: who says what, when, and in which order.
#include "benchmarks/workload.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <queue>
#include <random>
#include <stdexcept>
#include <thread>

#include "benchmarks/bodies.hpp"

namespace kapso::bench {

namespace {

// Picks a conversation's rank within its workspace: rank r is chosen with
// weight 1/(r+1)^s, so s = 0 is uniform and s ~ 1 looks like real inboxes
// where a few customers write most of the messages.
class rank_sampler {
public:
  rank_sampler(uint32_t ranks, double skew) : ranks_(ranks) {
    if (skew <= 0)
      return;
    cdf_.reserve(ranks);
    double sum = 0;
    for (uint32_t r = 0; r < ranks; ++r) {
      sum += 1.0 / std::pow(static_cast<double>(r) + 1.0, skew);
      cdf_.push_back(sum);
    }
  }

  template <class Rng>
  uint32_t operator()(Rng& rng, uint32_t limit) {
    for (;;) {
      uint32_t rank;
      if (cdf_.empty()) {
        rank = std::uniform_int_distribution<uint32_t>{0, ranks_ - 1}(rng);
      } else {
        auto u = std::uniform_real_distribution<double>{0, cdf_.back()}(rng);
        auto pos = std::upper_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin();
        rank = static_cast<uint32_t>(std::min<size_t>(pos, ranks_ - 1));
      }
      // Workspaces differ by at most one conversation; the rank that only
      // the larger ones have is the rarest, so redrawing costs nothing.
      if (rank < limit)
        return rank;
    }
  }

private:
  uint32_t ranks_;
  std::vector<double> cdf_;
};

std::string to_hex(const unsigned char* data, size_t size) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.resize(size * 2);
  for (size_t i = 0; i < size; ++i) {
    out[2 * i] = digits[data[i] >> 4];
    out[2 * i + 1] = digits[data[i] & 0x0f];
  }
  return out;
}

std::string workspace_phone_number_id(const std::string& prefix, uint32_t index) {
  // A numeric prefix counts up ("9000000000" -> "9000000001"), as real
  // phone-number ids are numbers; anything else gets the index appended.
  bool numeric = prefix.size() <= 18
                 && std::all_of(prefix.begin(), prefix.end(),
                                [](char c) { return c >= '0' && c <= '9'; });
  if (numeric)
    return std::to_string(std::stoull(prefix) + index);
  return prefix + std::to_string(index);
}

std::string customer_digits(uint32_t conversation) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "1555%07u", conversation);
  return buf;
}

message_fields fields_of(const workload& wl, uint32_t event) {
  auto& ev = wl.events[event];
  message_fields msg;
  msg.message_id = wl.message_id(event);
  msg.timestamp = wl.timestamp(event);
  msg.text = wl.text(event);
  msg.customer_digits = customer_digits(ev.conversation);
  msg.contact_name = "Bench Customer " + std::to_string(ev.conversation);
  msg.phone_number_id = wl.phone_number_ids[wl.workspace_of(ev.conversation)];
  msg.kapso_conversation_id = "bench-" + msg.phone_number_id + "-"
                              + std::to_string(ev.conversation);
  msg.new_conversation = ev.sequence == 1;
  return msg;
}

std::string build_request(const bench_options& opts, const workload& wl,
                          body_signer& signer, uint32_t first_event,
                          uint32_t event_count) {
  std::string body;
  if (opts.form == payload_form::single) {
    append_kapso_event(body, fields_of(wl, first_event));
  } else if (opts.form == payload_form::meta) {
    append_meta_forward(body, fields_of(wl, first_event));
  } else {
    append_batch_head(body);
    for (uint32_t i = 0; i < event_count; ++i) {
      if (i > 0)
        body += ',';
      append_kapso_event(body, fields_of(wl, first_event + i));
    }
    append_batch_tail(body);
  }
  std::string req;
  req.reserve(body.size() + 400);
  req += "POST ";
  req += opts.path;
  req += " HTTP/1.1\r\nHost: ";
  req += opts.host;
  req += ':';
  req += std::to_string(opts.port);
  req += "\r\nUser-Agent: kapso-bench\r\nContent-Type: application/json\r\n"
         "Content-Length: ";
  req += std::to_string(body.size());
  req += "\r\n";
  if (opts.form == payload_form::meta) {
    if (!opts.secret.empty()) {
      req += "X-Hub-Signature-256: sha256=";
      req += signer.sign(body);
      req += "\r\n";
    }
  } else {
    req += "X-Webhook-Event: whatsapp.message.received\r\n"
           "X-Webhook-Payload-Version: v2\r\n";
    if (opts.form == payload_form::batch)
      req += "X-Webhook-Batch: true\r\n";
    if (!opts.secret.empty()) {
      req += "X-Webhook-Signature: ";
      req += signer.sign(body);
      req += "\r\n";
    }
  }
  req += "\r\n";
  req += body;
  return req;
}

// Closed loop cannot know its rate in advance: plan for this many events/s
// (above what this kind of machine reaches) and say so when it runs out.
constexpr double assumed_events_per_second = 100'000;

uint32_t events_per_delivery(const bench_options& opts) {
  return opts.form == payload_form::batch ? opts.batch_size : 1;
}

// Bytes one delivery costs in memory: a built sample plus bookkeeping.
size_t delivery_footprint(const bench_options& opts) {
  workload sample;
  sample.run_tag = "0000000000000000-00000000";
  sample.phone_number_ids.push_back(
    workspace_phone_number_id(opts.phone_number_id_prefix, opts.workspaces));
  sample.conversations = opts.conversations;
  sample.messages_per_conversation.assign(opts.conversations, 1);
  auto per = events_per_delivery(opts);
  for (uint32_t i = 0; i < per; ++i)
    sample.events.push_back({opts.conversations - 1, 1'000'000});
  body_signer signer{opts.secret};
  auto bytes = build_request(opts, sample, signer, 0, per).size();
  return bytes + sizeof(prepared_delivery) + per * sizeof(planned_event) + 64;
}

} // namespace

struct body_signer::impl {
  EVP_MAC* mac = nullptr;
  EVP_MAC_CTX* ctx = nullptr;
};

body_signer::body_signer(const std::string& secret) : impl_(new impl) {
  impl_->mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (impl_->mac != nullptr)
    impl_->ctx = EVP_MAC_CTX_new(impl_->mac);
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
    OSSL_PARAM_construct_end(),
  };
  // HMAC needs a key even when it is empty; a NUL byte of length 0 will do.
  auto key = reinterpret_cast<const unsigned char*>(secret.c_str());
  if (impl_->ctx == nullptr || EVP_MAC_init(impl_->ctx, key, secret.size(), params) != 1) {
    EVP_MAC_CTX_free(impl_->ctx);
    EVP_MAC_free(impl_->mac);
    delete impl_;
    throw std::runtime_error("cannot set up HMAC-SHA256");
  }
}

body_signer::~body_signer() {
  EVP_MAC_CTX_free(impl_->ctx);
  EVP_MAC_free(impl_->mac);
  delete impl_;
}

std::string body_signer::sign(const std::string& body) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  size_t len = 0;
  // A null key restarts with the key given at construction.
  if (EVP_MAC_init(impl_->ctx, nullptr, 0, nullptr) != 1
      || EVP_MAC_update(impl_->ctx, reinterpret_cast<const unsigned char*>(body.data()),
                        body.size())
           != 1
      || EVP_MAC_final(impl_->ctx, mac, &len, sizeof(mac)) != 1)
    throw std::runtime_error("HMAC-SHA256 failed");
  return to_hex(mac, len);
}

std::string workload::message_id(uint32_t event) const {
  return "wamid.bench." + run_tag + "." + std::to_string(event);
}

std::string workload::text(uint32_t event) const {
  auto& ev = events[event];
  return "bench " + run_tag + " conversation " + std::to_string(ev.conversation)
         + " message " + std::to_string(ev.sequence);
}

int64_t workload::timestamp(uint32_t event) const {
  // Strictly increasing within a conversation and ending at the run's start,
  // so the newest message -- and so the expected preview -- is unambiguous.
  auto& ev = events[event];
  return newest_timestamp - messages_per_conversation[ev.conversation] + ev.sequence;
}

std::string workload::customer_phone(uint32_t conversation) const {
  return "+" + customer_digits(conversation);
}

size_t planned_delivery_count(const bench_options& opts) {
  auto budget = std::max<size_t>(1, opts.max_pool_mb * 1024 * 1024
                                      / delivery_footprint(opts));
  auto per_send = 1.0 + opts.retry_fraction;
  size_t wanted;
  if (opts.pool > 0)
    wanted = opts.pool;
  else if (opts.requests > 0)
    // Re-sends are drawn at random: plan a few spare deliveries so that the
    // schedule reaches exactly --requests entries after trimming.
    wanted = static_cast<size_t>(
      std::ceil(static_cast<double>(opts.requests) / per_send
                + 4 * std::sqrt(static_cast<double>(opts.requests) * opts.retry_fraction)
                + 16));
  else if (opts.rate > 0)
    wanted = static_cast<size_t>(std::ceil(opts.rate * (opts.warmup + opts.duration)
                                           / per_send))
             + opts.connections;
  else
    wanted = static_cast<size_t>(std::ceil((opts.warmup + opts.duration)
                                           * assumed_events_per_second
                                           / events_per_delivery(opts)))
             + opts.connections;
  auto event_limit = size_t{UINT32_MAX} / events_per_delivery(opts);
  return std::max<size_t>(1, std::min({wanted, budget, event_limit}));
}

workload build_workload(const bench_options& opts, size_t delivery_count) {
  using namespace std::chrono;
  workload wl;
  auto now = system_clock::now();
  auto now_ms = duration_cast<milliseconds>(now.time_since_epoch()).count();
  char tag[40];
  std::snprintf(tag, sizeof(tag), "%llx-%08llx", static_cast<unsigned long long>(now_ms),
                static_cast<unsigned long long>(opts.seed & 0xffffffffull));
  wl.run_tag = tag;
  wl.newest_timestamp = duration_cast<seconds>(now.time_since_epoch()).count();
  for (uint32_t w = 0; w < opts.workspaces; ++w)
    wl.phone_number_ids.push_back(
      workspace_phone_number_id(opts.phone_number_id_prefix, w));
  wl.conversations = opts.conversations;
  wl.messages_per_conversation.assign(opts.conversations, 0);

  // Who writes: sequential, because each event's sequence number depends on
  // all events drawn before it.
  std::mt19937_64 rng{opts.seed};
  auto workspaces = opts.workspaces;
  auto ranks = (opts.conversations + workspaces - 1) / workspaces;
  rank_sampler sampler{ranks, opts.zipf};
  auto per = events_per_delivery(opts);
  wl.events.reserve(delivery_count * per);
  wl.deliveries.resize(delivery_count);
  for (size_t d = 0; d < delivery_count; ++d) {
    // A batch comes from one business number, as Kapso buffers per number.
    auto w = static_cast<uint32_t>(d % workspaces);
    auto limit = (opts.conversations - w + workspaces - 1) / workspaces;
    auto& dl = wl.deliveries[d];
    dl.first_event = static_cast<uint32_t>(wl.events.size());
    dl.event_count = per;
    for (uint32_t i = 0; i < per; ++i) {
      auto conversation = sampler(rng, limit) * workspaces + w;
      auto seq = ++wl.messages_per_conversation[conversation];
      wl.events.push_back({conversation, seq});
    }
  }

  // What they say: bodies and HMACs are the expensive part, and independent.
  auto threads = std::max(1u, std::min(4u, std::thread::hardware_concurrency()));
  std::vector<std::thread> builders;
  for (unsigned t = 0; t < threads; ++t) {
    builders.emplace_back([&, t] {
      body_signer signer{opts.secret};
      for (size_t d = t; d < delivery_count; d += threads) {
        auto& dl = wl.deliveries[d];
        dl.request = build_request(opts, wl, signer, dl.first_event, dl.event_count);
      }
    });
  }
  for (auto& builder : builders)
    builder.join();

  // In which order: every delivery once; a few again, a little later, the
  // way Kapso re-delivers an event it is unsure about.
  std::bernoulli_distribution resend{opts.retry_fraction};
  auto spread = std::max<size_t>(1, std::min<size_t>(delivery_count, 20000));
  std::uniform_int_distribution<size_t> delay{1, spread};
  using pending = std::pair<size_t, uint32_t>; // (position, delivery)
  std::priority_queue<pending, std::vector<pending>, std::greater<>> later;
  wl.schedule.reserve(static_cast<size_t>(delivery_count * (1.0 + opts.retry_fraction))
                      + 16);
  for (size_t d = 0; d < delivery_count; ++d) {
    while (!later.empty() && later.top().first <= wl.schedule.size()) {
      wl.schedule.push_back(later.top().second);
      wl.is_resend.push_back(true);
      later.pop();
    }
    wl.schedule.push_back(static_cast<uint32_t>(d));
    wl.is_resend.push_back(false);
    if (resend(rng))
      later.emplace(wl.schedule.size() + delay(rng), static_cast<uint32_t>(d));
  }
  for (; !later.empty(); later.pop()) {
    wl.schedule.push_back(later.top().second);
    wl.is_resend.push_back(true);
  }
  if (opts.requests > 0 && wl.schedule.size() > opts.requests) {
    wl.schedule.resize(opts.requests);
    wl.is_resend.resize(opts.requests);
  }
  wl.resends = static_cast<size_t>(std::count(wl.is_resend.begin(), wl.is_resend.end(), true));
  return wl;
}

} // namespace kapso::bench
