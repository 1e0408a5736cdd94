// Prometheus text rendering of kapso-ingest's metrics.
#include "actors/metrics.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config/version.hpp"

namespace kapso {

namespace {

// The event types of Kapso's webhooks (and "malformed", the router's own);
// anything else from the wire is counted as "other".
constexpr std::array<std::string_view, 9> known_event_types{
  "whatsapp.message.received",     "whatsapp.message.sent",
  "whatsapp.message.delivered",    "whatsapp.message.read",
  "whatsapp.message.failed",       "whatsapp.conversation.created",
  "whatsapp.conversation.ended",   "whatsapp.conversation.inactive",
  "malformed",
};

std::string_view bounded_event_type(std::string_view type) {
  auto known = std::find(known_event_types.begin(), known_event_types.end(), type);
  return known != known_event_types.end() ? type : std::string_view{"other"};
}

// A label value as the exposition format wants it: \\, \" and \n escaped.
void append_label_value(std::string& out, std::string_view value) {
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
}

std::string route_code_labels(std::string_view route, int code) {
  std::string labels = "route=\"";
  append_label_value(labels, route);
  return labels.append("\",code=\"").append(std::to_string(code)).append("\"");
}

const char* outcome_name(write_outcome x) {
  switch (x) {
    case write_outcome::accepted: return "accepted";
    case write_outcome::duplicate: return "duplicate";
    default: return "ignored";
  }
}

// The shortest text that reads back as `value` (0.0025, not 0.0025000000000000001).
void append_number(std::string& out, double value) {
  char buf[64];
  for (int precision = 6; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, value);
    if (std::strtod(buf, nullptr) == value)
      break;
  }
  out += buf;
}

void header(std::string& out, std::string_view name, std::string_view help,
            std::string_view type) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void gauge(std::string& out, std::string_view name, std::string_view help,
           int64_t value, std::string_view type = "gauge") {
  header(out, name, help, type);
  out.append(name).append(" ").append(std::to_string(value)).append("\n");
}

} // namespace

histogram::histogram(std::vector<double> bounds)
  : bounds_(std::move(bounds)),
    buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i)
    buckets_[i].store(0, std::memory_order_relaxed);
}

void histogram::observe(double value) noexcept {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i])
    ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_micros_.fetch_add(static_cast<uint64_t>(std::llround(value * 1e6)),
                        std::memory_order_relaxed);
}

void histogram::render(std::string& out, std::string_view name,
                       std::string_view help) const {
  header(out, name, help, "histogram");
  render_samples(out, name, {});
}

void histogram::render_samples(std::string& out, std::string_view name,
                               std::string_view labels) const {
  // _count is the +Inf bucket as read here, so the two agree within one
  // scrape even while other threads observe.
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    out.append(name).append("_bucket{").append(labels).append(labels.empty() ? "" : ",")
      .append("le=\"");
    if (i < bounds_.size())
      append_number(out, bounds_[i]);
    else
      out += "+Inf";
    out.append("\"} ").append(std::to_string(cumulative)).append("\n");
  }
  auto braced = labels.empty() ? std::string{} : "{" + std::string{labels} + "}";
  out.append(name).append("_sum").append(braced).append(" ");
  append_number(out, static_cast<double>(sum_micros_.load()) / 1e6);
  out.append("\n").append(name).append("_count").append(braced).append(" ")
    .append(std::to_string(cumulative)).append("\n");
}

metrics& metrics::global() {
  static metrics instance;
  return instance;
}

void metrics::count_request(std::string_view route, int status) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto found = requests_.find(std::pair<std::string_view, int>{route, status});
  if (found != requests_.end())
    ++found->second;
  else
    requests_.emplace(std::pair<std::string, int>{route, status}, 1);
}

void metrics::count_request(std::string_view route, int status, double seconds) {
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

void metrics::count_event(std::string_view type, write_outcome result, uint64_t n) {
  count_event(type, outcome_name(result), n);
}

void metrics::count_event(std::string_view type, std::string_view result, uint64_t n) {
  type = bounded_event_type(type);
  std::lock_guard<std::mutex> guard{mtx_};
  auto found = events_.find(std::pair<std::string_view, std::string_view>{type, result});
  if (found != events_.end())
    found->second += n;
  else
    events_.emplace(std::pair<std::string, std::string>{type, result}, n);
}

namespace {

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
  sample("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
         "counter", (field(14) + field(15)) / ticks);
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

std::string metrics::render() const {
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
    header(out, "kapso_events_total", "Webhook events by type and result (accepted, duplicate, ignored); types that are not Kapso's are counted as other.", "counter");
    for (const auto& [key, n] : events_) {
      out.append("kapso_events_total{type=\"");
      append_label_value(out, key.first);
      out.append("\",result=\"");
      append_label_value(out, key.second);
      out.append("\"} ").append(std::to_string(n)).append("\n");
    }
  }
  batch_size.render(out, "kapso_batch_size", "Events per committed transaction.");
  commit_seconds.render(out, "kapso_commit_seconds", "Time to write and commit one batch.");
  gauge(out, "kapso_conversations_active", "Conversations whose recently committed message ids the writers remember (at most conversation.max).", conversations_active.load());
  gauge(out, "kapso_in_flight_deliveries", "Deliveries accepted by HTTP and not yet answered.", in_flight_deliveries.load());
  gauge(out, "kapso_writer_queue_events", "Events waiting in persistence batches.", writer_queue.load());
  gauge(out, "kapso_workspace_cache_entries", "Entries in the router's workspace cache.", workspace_cache_entries.load());
  gauge(out, "kapso_spool_bytes", "Bytes in the outage spool waiting for replay.", spool_bytes.load());
  gauge(out, "kapso_spool_records", "Batches in the outage spool waiting for replay.", spool_records.load());
  gauge(out, "kapso_spooled_events_total", "Events written to the outage spool.", static_cast<int64_t>(spooled_events_total.load()), "counter");
  gauge(out, "kapso_replayed_events_total", "Spooled events replayed into PostgreSQL.", static_cast<int64_t>(replayed_events_total.load()), "counter");
  gauge(out, "kapso_spool_corrupt_records_total", "Spool records skipped because they could not be read.", static_cast<int64_t>(spool_corrupt_records_total.load()), "counter");
  gauge(out, "kapso_spool_dropped_events_total", "Spooled events dropped at replay because their workspace no longer exists.", static_cast<int64_t>(spool_dropped_events_total.load()), "counter");
  gauge(out, "kapso_commit_failures_total", "Batch commits that failed (before retry or spool).", static_cast<int64_t>(commit_failures_total.load()), "counter");
  append_process_metrics(out);
  return out;
}

} // namespace kapso
