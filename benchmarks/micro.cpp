// kapso-micro: kapso-ingest's per-event hot path, one function at a time.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "actors/protocol.hpp"
#include "benchmarks/bodies.hpp"
#include "domain/signature.hpp"
#include "http/payload.hpp"
#include "http/phone.hpp"

namespace {

constexpr const char* secret = "kapso-micro-secret";

kapso::bench::message_fields sample_message(uint32_t i) {
  kapso::bench::message_fields msg;
  msg.message_id = "wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQUM5" + std::to_string(i);
  msg.timestamp = 1730092801 + i;
  msg.text = "Hola, I would like to know the status of order " + std::to_string(i);
  msg.customer_digits = "1555123" + std::to_string(1000 + i % 9000);
  msg.contact_name = "Ana Customer";
  msg.kapso_conversation_id = "conv_" + std::to_string(i % 100);
  msg.phone_number_id = "123456789012345";
  return msg;
}

std::string single_body() {
  std::string body;
  kapso::bench::append_kapso_event(body, sample_message(1));
  return body;
}

std::string batch_body(uint32_t events) {
  std::string body;
  kapso::bench::append_batch_head(body);
  for (uint32_t i = 0; i < events; ++i) {
    if (i > 0)
      body += ',';
    kapso::bench::append_kapso_event(body, sample_message(i));
  }
  kapso::bench::append_batch_tail(body);
  return body;
}

void parse_body(benchmark::State& state, const std::string& body, bool batch,
                int64_t events) {
  kapso::delivery_headers headers;
  headers.event_type = "whatsapp.message.received";
  headers.payload_version = "v2";
  if (batch)
    headers.batch = "true";
  kapso::parse_options options;
  auto check = kapso::parse_delivery(body, headers, options);
  if (!check.ok || static_cast<int64_t>(check.parsed.events.size()) != events) {
    state.SkipWithError(("body not parsed as expected: " + check.error).c_str());
    return;
  }
  for (auto _ : state) {
    auto result = kapso::parse_delivery(body, headers, options);
    benchmark::DoNotOptimize(result);
  }
  state.SetItemsProcessed(state.iterations() * events);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(body.size()));
}

void parse_single(benchmark::State& state) {
  parse_body(state, single_body(), false, 1);
}

void parse_batch_50(benchmark::State& state) {
  parse_body(state, batch_body(50), true, 50);
}

void signature_1k(benchmark::State& state) {
  std::string body(1024, 'x');
  for (size_t i = 0; i < body.size(); ++i)
    body[i] = static_cast<char>('a' + i % 26);
  auto signature = kapso::hmac_sha256_hex(secret, body);
  std::vector<std::string> secrets{secret};
  for (auto _ : state) {
    auto ok = kapso::signature_matches(body, signature, secrets);
    benchmark::DoNotOptimize(ok);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(body.size()));
}

void normalise(benchmark::State& state, std::string raw) {
  const std::string region = "US";
  for (auto _ : state) {
    auto e164 = kapso::normalise_phone(raw, region);
    benchmark::DoNotOptimize(e164);
  }
  state.SetItemsProcessed(state.iterations());
}

// The router's step for every event: which persistence writer owns this
// conversation. Keys vary so the hash is not computed once and cached.
void route(benchmark::State& state) {
  constexpr size_t writers = 4;
  std::vector<std::pair<std::string, kapso::event>> keys;
  for (int i = 0; i < 1000; ++i) {
    kapso::event ev;
    ev.contact_key = "+1555" + std::to_string(1000000 + i);
    keys.emplace_back("7f3c2a10-5b1e-4c8e-9a55-0000000" + std::to_string(10000 + i % 8), ev);
  }
  size_t next = 0;
  for (auto _ : state) {
    auto& [workspace, ev] = keys[next];
    next = next + 1 == keys.size() ? 0 : next + 1;
    auto writer = kapso::writer_for(workspace, ev, writers);
    benchmark::DoNotOptimize(writer);
  }
  state.SetItemsProcessed(state.iterations());
}

} // namespace

BENCHMARK(parse_single);
BENCHMARK(parse_batch_50);
BENCHMARK(signature_1k);
BENCHMARK_CAPTURE(normalise, e164, std::string{"+15551234567"});
BENCHMARK_CAPTURE(normalise, wa_id, std::string{"15551234567"});
BENCHMARK(route);

BENCHMARK_MAIN();
