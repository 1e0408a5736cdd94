// The /metrics page: HTTP metrics, the pipeline's, process_* and the build.
#include "http/http_metrics.hpp"

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <vector>

#include <dirent.h>
#include <time.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config/version.hpp"

namespace kapso {

namespace {

using namespace exposition;

std::string route_code_labels(std::string_view route, int code) {
  std::string labels = "route=\"";
  append_label_value(labels, route);
  return labels.append("\",code=\"").append(std::to_string(code)).append("\"");
}

// The standard process_* metrics of every Prometheus client, from /proc;
// nothing where /proc cannot be read.
void append_process_metrics(std::string& out) {
  std::ifstream stat_file{"/proc/self/stat"};
  std::string stat{std::istreambuf_iterator<char>{stat_file}, std::istreambuf_iterator<char>{}};
  // Fields after the command name, which is in parentheses and may hold spaces.
  auto close = stat.rfind(')');
  if (close == std::string::npos)
    return;
  std::istringstream rest{stat.substr(close + 1)};
  std::vector<std::string> fields{std::istream_iterator<std::string>{rest},
                                  std::istream_iterator<std::string>{}};
  // proc(5) numbers the fields from 1 and the command name is 2: field n is fields[n - 3].
  auto field = [&fields](size_t n) -> double {
    return n - 3 < fields.size() ? std::strtod(fields[n - 3].c_str(), nullptr) : 0.0;
  };
  auto ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  auto page = static_cast<double>(sysconf(_SC_PAGESIZE));
  auto sample = [&out](std::string_view name, std::string_view help, std::string_view type,
                       double value) {
    header(out, name, help, type);
    out.append(name).append(" ");
    append_number(out, value);
    out.append("\n");
  };
  // The clock, not /proc's ticks: a fresh process has spent well under one
  // tick (10 ms) and would show 0.
  timespec cpu{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
  sample("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
         "counter", static_cast<double>(cpu.tv_sec) + static_cast<double>(cpu.tv_nsec) / 1e9);
  sample("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge",
         field(24) * page);
  sample("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge", field(23));
  double boot_time = 0;
  std::ifstream system_stat{"/proc/stat"};
  for (std::string line; std::getline(system_stat, line);)
    if (line.compare(0, 6, "btime ") == 0)
      boot_time = std::strtod(line.c_str() + 6, nullptr);
  sample("process_start_time_seconds",
         "Start time of the process since unix epoch in seconds.", "gauge",
         boot_time + field(22) / ticks);
  if (DIR* fds = opendir("/proc/self/fd")) {
    double open = -1; // the descriptor reading the directory is not the process's
    while (auto* entry = readdir(fds))
      if (entry->d_name[0] != '.')
        ++open;
    closedir(fds);
    sample("process_open_fds", "Number of open file descriptors.", "gauge", open);
  }
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0)
    sample("process_max_fds", "Maximum number of open file descriptors.", "gauge",
           static_cast<double>(limit.rlim_cur));
}

} // namespace

http_metrics& http_metrics::global() {
  static http_metrics instance;
  return instance;
}

void http_metrics::count_request(std::string_view route, int status) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto found = requests_.find(std::pair<std::string_view, int>{route, status});
  if (found != requests_.end())
    ++found->second;
  else
    requests_.emplace(std::pair<std::string, int>{route, status}, 1);
}

void http_metrics::count_request(std::string_view route, int status, double seconds) {
  count_request(route, status);
  histogram* durations = nullptr;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto key = std::pair<std::string_view, int>{route, status};
    auto found = request_seconds_.find(key);
    if (found == request_seconds_.end())
      found = request_seconds_
                .emplace(std::pair<std::string, int>{route, status},
                         std::make_unique<histogram>(std::vector<double>{
                           0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                           5, 10}))
                .first;
    durations = found->second.get();
  }
  durations->observe(seconds);
}

std::string http_metrics::render(const pipeline_metrics& pipeline) const {
  std::string out;
  out.reserve(8192);
  header(out, "kapso_build_info", "The version of kapso-ingest that runs (always 1).", "gauge");
  out.append("kapso_build_info{version=\"");
  append_label_value(out, kapso_version);
  out.append("\"} 1\n");
  {
    std::lock_guard<std::mutex> guard{mtx_};
    header(out, "kapso_http_requests_total", "HTTP requests by route and status code.", "counter");
    for (const auto& [key, n] : requests_)
      out.append("kapso_http_requests_total{").append(route_code_labels(key.first, key.second))
        .append("} ").append(std::to_string(n)).append("\n");
    header(out, "kapso_http_request_duration_seconds",
           "Time from the handler seeing a request to its answer being sent, by route and "
           "status code.",
           "histogram");
    for (const auto& [key, durations] : request_seconds_)
      durations->render_samples(out, "kapso_http_request_duration_seconds",
                                route_code_labels(key.first, key.second));
  }
  gauge(out, "kapso_in_flight_deliveries", "Deliveries accepted by HTTP and not yet answered.",
        in_flight_deliveries.load());
  gauge(out, "kapso_in_flight_bytes",
        "Bytes of request bodies being read and of deliveries waiting, against "
        "http.max-in-flight-bytes.",
        in_flight_bytes.load());
  counter(out, "kapso_http_accept_restarts_total",
          "Times accepting connections was started again after an accept error stopped it.",
          accept_restarts_total.load());
  pipeline.render(out);
  append_process_metrics(out);
  return out;
}

} // namespace kapso
