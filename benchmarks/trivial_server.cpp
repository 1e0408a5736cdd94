// trivial-server: answers every request 200 {"received":true}; the ceiling reference.
#include <getopt.h>
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include <restinio/all.hpp>

namespace {

struct server_options {
  std::string address = "127.0.0.1";
  uint16_t port = 18080;
  size_t threads = 1;
};

constexpr const char* usage_text = R"(usage: trivial-server [--port P] [--threads N] [--address A]

Answers every HTTP request with 200 {"received":true} and does nothing else:
the same RESTinio front end as kapso-ingest without any work behind it, so
kapso-bench against it measures what this machine can do at best.

  --port P      listening port (default 18080)
  --threads N   RESTinio (asio) threads (default 1)
  --address A   listening address (default 127.0.0.1)
)";

// Returns false after --help; exits with status 2 on bad input.
bool parse(int argc, char** argv, server_options& opts) {
  enum : int { opt_port = 1000, opt_threads, opt_address, opt_help };
  static const option long_options[] = {
    {"port", required_argument, nullptr, opt_port},
    {"threads", required_argument, nullptr, opt_threads},
    {"address", required_argument, nullptr, opt_address},
    {"help", no_argument, nullptr, opt_help},
    {nullptr, 0, nullptr, 0},
  };
  auto number = [](const char* name, const char* text, unsigned long max) {
    char* end = nullptr;
    auto value = std::strtoul(text, &end, 10);
    if (end == text || *end != '\0' || value < 1 || value > max) {
      std::fprintf(stderr, "trivial-server: --%s must be 1..%lu\n", name, max);
      std::exit(2);
    }
    return value;
  };
  for (;;) {
    auto id = getopt_long(argc, argv, "", long_options, nullptr);
    if (id == -1)
      break;
    switch (id) {
      case opt_port:
        opts.port = static_cast<uint16_t>(number("port", optarg, 65535));
        break;
      case opt_threads:
        opts.threads = number("threads", optarg, 64);
        break;
      case opt_address:
        opts.address = optarg;
        break;
      case opt_help:
        std::fputs(usage_text, stdout);
        return false;
      default:
        std::fputs(usage_text, stderr);
        std::exit(2);
    }
  }
  return true;
}

// One thread needs no locking in RESTinio; more threads need its default
// (thread-safe) traits. The choice is a type, hence the template.
template <class Traits>
void serve(const server_options& opts) {
  // Block the stop signals before RESTinio starts its threads, so they
  // inherit the mask and only sigwait() below sees SIGINT/SIGTERM.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto server = restinio::run_async(
    restinio::own_io_context(),
    restinio::server_settings_t<Traits>{}
      .port(opts.port)
      .address(opts.address)
      .request_handler([](auto req) {
        return req->create_response()
          .append_header(restinio::http_field::content_type, "application/json")
          .set_body(R"({"received":true})")
          .done();
      }),
    opts.threads);
  std::fprintf(stderr, "trivial-server: listening on %s:%u with %zu thread(s)\n",
               opts.address.c_str(), static_cast<unsigned>(opts.port), opts.threads);

  int received = 0;
  sigwait(&stop_signals, &received);
  server->stop();
  server->wait();
}

} // namespace

int main(int argc, char** argv) {
  server_options opts;
  if (!parse(argc, argv, opts))
    return 0;
  try {
    if (opts.threads == 1)
      serve<restinio::default_single_thread_traits_t>(opts);
    else
      serve<restinio::default_traits_t>(opts);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "trivial-server: %s\n", e.what());
    return 1;
  }
  return 0;
}
