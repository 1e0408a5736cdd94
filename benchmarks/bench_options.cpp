// kapso-bench's command line: what to send, how hard, and what to check after.
#include "benchmarks/bench_options.hpp"

#include <getopt.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string_view>

namespace kapso::bench {

namespace {

constexpr const char* usage_text = R"(usage: kapso-bench [options]

Sends pre-built, signed Kapso webhook deliveries to kapso-ingest over many
keep-alive HTTP/1.1 connections and reports throughput and latency.

target and load
  --url URL                 http://HOST:PORT/PATH
                            (default http://127.0.0.1:8080/api/webhook/kapso)
  --connections N           keep-alive connections (default 64)
  --threads N               harness event-loop threads (default 1)
  --duration SECONDS        measured run time after warm-up (default 10)
  --requests COUNT          stop after COUNT first sends (with --duration:
                            whichever comes first)
  --rate R                  open loop: R deliveries/s; 0 = closed loop (default)
  --warmup SECONDS          run before measuring (default 0)
  --timeout-ms MS           per-request timeout (default 10000)
  --max-retries N           re-sends of a delivery answered non-200 (default 5)
  --retry-base-ms MS        first retry delay, doubled per retry (default 200)
  --drain SECONDS           limit for finishing in-flight work and retries (default 15)
  --phases A,B,...          name the run's phases: it starts in A, each SIGUSR1 moves
                            to the next; answers and latency are reported per phase

payloads
  --form single|batch|meta  payload form (default single)
  --batch-size B            events per batch delivery (default 50)
  --workspaces W            workspaces (business numbers) (default 1)
  --conversations C         conversations over all workspaces (default 1000)
  --zipf S                  conversation skew exponent; 0 = uniform (default 0)
  --retry-fraction F        share of deliveries re-sent byte-for-byte later (default 0.05)
  --secret S                HMAC secret (default $KAPSO_WEBHOOK_SECRET)
  --phone-number-id-prefix P  workspace i uses phone_number_id P+i (default 9000000000)
  --seed N                  random seed (default: from the clock; printed)
  --pool COUNT              distinct deliveries to pre-build (default: from
                            --requests, --rate x time, or 100k events/s x time)
  --max-pool-mb MB          memory cap for pre-built deliveries (default 2048)
  --cycle                   when the pool runs out, send it again from its start
                            (byte-for-byte re-sends) instead of stopping

database
  --database-url URL        PostgreSQL for --setup/--verify (default $DATABASE_URL)
  --setup                   create the bench workspaces and wipe their rows first
  --prefill                 with --setup: then create all --conversations contacts
                            and conversations (empty), so events go to existing ones
  --verify                  check the database against what was acknowledged
  --wal                     report the WAL the PostgreSQL server wrote over the
                            load (bytes, records, full-page images), per event

output
  --json FILE               write the results as JSON
  --plot FILE               write throughput and p50/p99 latency per second as SVG
  --label NAME              the run's name, for the plot title and the JSON
  --cpu-pid NAME=PID        report the CPU time of PID and its children over the
                            load, per request and per event (repeatable)
  --quiet                   no progress lines on stderr
  --help                    this text
)";

enum option_id : int {
  opt_url = 1000, opt_connections, opt_threads, opt_duration, opt_requests,
  opt_rate, opt_warmup, opt_timeout_ms, opt_max_retries, opt_retry_base_ms,
  opt_drain, opt_form, opt_batch_size, opt_workspaces, opt_conversations,
  opt_zipf, opt_retry_fraction, opt_secret, opt_prefix, opt_seed,
  opt_pool, opt_max_pool_mb, opt_database_url, opt_setup, opt_prefill, opt_verify,
  opt_wal,
  opt_json, opt_plot, opt_label, opt_cpu_pid, opt_quiet, opt_help, opt_phases, opt_cycle,
};

const option long_options[] = {
  {"url", required_argument, nullptr, opt_url},
  {"connections", required_argument, nullptr, opt_connections},
  {"threads", required_argument, nullptr, opt_threads},
  {"duration", required_argument, nullptr, opt_duration},
  {"requests", required_argument, nullptr, opt_requests},
  {"rate", required_argument, nullptr, opt_rate},
  {"warmup", required_argument, nullptr, opt_warmup},
  {"timeout-ms", required_argument, nullptr, opt_timeout_ms},
  {"max-retries", required_argument, nullptr, opt_max_retries},
  {"retry-base-ms", required_argument, nullptr, opt_retry_base_ms},
  {"drain", required_argument, nullptr, opt_drain},
  {"phases", required_argument, nullptr, opt_phases},
  {"form", required_argument, nullptr, opt_form},
  {"batch-size", required_argument, nullptr, opt_batch_size},
  {"workspaces", required_argument, nullptr, opt_workspaces},
  {"conversations", required_argument, nullptr, opt_conversations},
  {"zipf", required_argument, nullptr, opt_zipf},
  {"retry-fraction", required_argument, nullptr, opt_retry_fraction},
  {"secret", required_argument, nullptr, opt_secret},
  {"phone-number-id-prefix", required_argument, nullptr, opt_prefix},
  {"seed", required_argument, nullptr, opt_seed},
  {"pool", required_argument, nullptr, opt_pool},
  {"max-pool-mb", required_argument, nullptr, opt_max_pool_mb},
  {"cycle", no_argument, nullptr, opt_cycle},
  {"database-url", required_argument, nullptr, opt_database_url},
  {"setup", no_argument, nullptr, opt_setup},
  {"prefill", no_argument, nullptr, opt_prefill},
  {"verify", no_argument, nullptr, opt_verify},
  {"wal", no_argument, nullptr, opt_wal},
  {"json", required_argument, nullptr, opt_json},
  {"plot", required_argument, nullptr, opt_plot},
  {"label", required_argument, nullptr, opt_label},
  {"cpu-pid", required_argument, nullptr, opt_cpu_pid},
  {"quiet", no_argument, nullptr, opt_quiet},
  {"help", no_argument, nullptr, opt_help},
  {nullptr, 0, nullptr, 0},
};

[[noreturn]] void bad(const std::string& option, const std::string& why) {
  throw std::invalid_argument("--" + option + ": " + why);
}

uint64_t to_count(const char* name, const char* text, uint64_t min, uint64_t max) {
  char* end = nullptr;
  errno = 0;
  auto value = std::strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || text[0] == '-')
    bad(name, std::string{"not a non-negative integer: "} + text);
  if (value < min || value > max)
    bad(name, "must be between " + std::to_string(min) + " and " + std::to_string(max));
  return value;
}

double to_real(const char* name, const char* text, double min, double max) {
  char* end = nullptr;
  errno = 0;
  auto value = std::strtod(text, &end);
  if (errno != 0 || end == text || *end != '\0')
    bad(name, std::string{"not a number: "} + text);
  if (!(value >= min && value <= max))
    bad(name, "must be between " + std::to_string(min) + " and " + std::to_string(max));
  return value;
}

// Only plain http: the harness measures the server, not a TLS library.
void split_url(bench_options& opts) {
  std::string_view url = opts.url;
  constexpr std::string_view scheme = "http://";
  if (url.substr(0, scheme.size()) != scheme)
    bad("url", "must start with http://");
  url.remove_prefix(scheme.size());
  auto slash = url.find('/');
  auto authority = url.substr(0, slash);
  opts.path = slash == std::string_view::npos ? "/" : std::string{url.substr(slash)};
  auto colon = authority.rfind(':');
  if (colon == std::string_view::npos) {
    opts.host = std::string{authority};
    opts.port = 80;
  } else {
    opts.host = std::string{authority.substr(0, colon)};
    auto port = std::string{authority.substr(colon + 1)};
    opts.port = static_cast<uint16_t>(to_count("url", port.c_str(), 1, 65535));
  }
  if (opts.host.empty())
    bad("url", "has no host");
}

const char* env_or_empty(const char* name) {
  auto value = std::getenv(name);
  return value != nullptr ? value : "";
}

} // namespace

const char* to_string(payload_form form) {
  switch (form) {
    case payload_form::single:
      return "single";
    case payload_form::batch:
      return "batch";
    case payload_form::meta:
      return "meta";
  }
  return "?";
}

std::optional<bench_options> parse_bench_options(int argc, char** argv) {
  bench_options opts;
  opts.secret = env_or_empty("KAPSO_WEBHOOK_SECRET");
  opts.database_url = env_or_empty("DATABASE_URL");
  opterr = 0;
  optind = 1;
  int index = 0;
  for (;;) {
    auto id = getopt_long(argc, argv, "", long_options, &index);
    if (id == -1)
      break;
    if (id == '?' || id == ':') {
      auto arg = optind - 1 < argc ? argv[optind - 1] : "?";
      throw std::invalid_argument(std::string{"unknown option or missing value: "}
                                  + arg + " (see --help)");
    }
    const char* name = long_options[index].name;
    switch (id) {
      case opt_url:
        opts.url = optarg;
        break;
      case opt_connections:
        opts.connections = to_count(name, optarg, 1, 20000);
        break;
      case opt_threads:
        opts.threads = to_count(name, optarg, 1, 16);
        break;
      case opt_duration:
        opts.duration = to_real(name, optarg, 0.1, 86400);
        opts.duration_given = true;
        break;
      case opt_requests:
        opts.requests = to_count(name, optarg, 1, 4'000'000'000ull);
        break;
      case opt_rate:
        opts.rate = to_real(name, optarg, 0, 10'000'000);
        break;
      case opt_warmup:
        opts.warmup = to_real(name, optarg, 0, 3600);
        break;
      case opt_timeout_ms:
        opts.timeout_ms = static_cast<uint32_t>(to_count(name, optarg, 1, 600'000));
        break;
      case opt_max_retries:
        opts.max_retries = static_cast<uint32_t>(to_count(name, optarg, 0, 20));
        break;
      case opt_retry_base_ms:
        opts.retry_base_ms = static_cast<uint32_t>(to_count(name, optarg, 1, 60'000));
        break;
      case opt_drain:
        opts.drain = to_real(name, optarg, 0, 3600);
        break;
      case opt_phases: {
        opts.phases.clear();
        std::string_view list = optarg;
        while (!list.empty()) {
          auto comma = list.find(',');
          auto phase = list.substr(0, comma);
          if (phase.empty())
            bad(name, "a phase name is empty");
          opts.phases.emplace_back(phase);
          list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
        }
        if (opts.phases.empty() || opts.phases.size() > 16)
          bad(name, "between 1 and 16 names, separated by commas");
        break;
      }
      case opt_form: {
        std::string_view form = optarg;
        if (form == "single")
          opts.form = payload_form::single;
        else if (form == "batch")
          opts.form = payload_form::batch;
        else if (form == "meta")
          opts.form = payload_form::meta;
        else
          bad(name, "must be single, batch or meta");
        break;
      }
      case opt_batch_size:
        opts.batch_size = static_cast<uint32_t>(to_count(name, optarg, 1, 10000));
        break;
      case opt_workspaces:
        opts.workspaces = static_cast<uint32_t>(to_count(name, optarg, 1, 100000));
        break;
      case opt_conversations:
        // Customer phones are "+1555" plus seven digits of the index.
        opts.conversations = static_cast<uint32_t>(to_count(name, optarg, 1, 10'000'000));
        break;
      case opt_zipf:
        opts.zipf = to_real(name, optarg, 0, 10);
        break;
      case opt_retry_fraction:
        opts.retry_fraction = to_real(name, optarg, 0, 1);
        break;
      case opt_secret:
        opts.secret = optarg;
        break;
      case opt_prefix:
        opts.phone_number_id_prefix = optarg;
        if (opts.phone_number_id_prefix.empty())
          bad(name, "must not be empty");
        break;
      case opt_seed:
        opts.seed = to_count(name, optarg, 0, UINT64_MAX);
        opts.seed_given = true;
        break;
      case opt_pool:
        opts.pool = to_count(name, optarg, 1, UINT32_MAX);
        break;
      case opt_max_pool_mb:
        opts.max_pool_mb = to_count(name, optarg, 1, 1'000'000);
        break;
      case opt_cycle:
        opts.cycle = true;
        break;
      case opt_database_url:
        opts.database_url = optarg;
        break;
      case opt_setup:
        opts.setup = true;
        break;
      case opt_prefill:
        opts.prefill = true;
        break;
      case opt_verify:
        opts.verify = true;
        break;
      case opt_wal:
        opts.wal = true;
        break;
      case opt_json:
        opts.json_file = optarg;
        break;
      case opt_plot:
        opts.plot_file = optarg;
        break;
      case opt_label:
        opts.label = optarg;
        break;
      case opt_cpu_pid:
        if (opts.cpu_targets.size() >= 8)
          bad(name, "at most 8 processes");
        opts.cpu_targets.push_back(parse_cpu_target(optarg));
        break;
      case opt_quiet:
        opts.quiet = true;
        break;
      case opt_help:
        std::fputs(usage_text, stdout);
        return std::nullopt;
      default:
        throw std::invalid_argument("unhandled option (see --help)");
    }
  }
  if (optind < argc)
    throw std::invalid_argument(std::string{"unexpected argument: "} + argv[optind]);
  split_url(opts);
  if (opts.workspaces > opts.conversations)
    bad("workspaces", "must not exceed --conversations (each workspace needs one)");
  if (opts.prefill && !opts.setup)
    bad("prefill", "needs --setup (it fills the workspaces that --setup empties)");
  if ((opts.setup || opts.verify || opts.wal) && opts.database_url.empty())
    throw std::invalid_argument("--setup/--verify/--wal need --database-url or $DATABASE_URL");
  // --requests alone means "send them all"; an hour still bounds the run.
  if (opts.requests > 0 && !opts.duration_given)
    opts.duration = 3600;
  return opts;
}

} // namespace kapso::bench
