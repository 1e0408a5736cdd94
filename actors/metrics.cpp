// Prometheus text rendering of kapso-ingest's metrics.
#include "actors/metrics.hpp"

#include <cmath>
#include <cstdio>

namespace kapso {

namespace {

const char* outcome_name(write_outcome x) {
  switch (x) {
    case write_outcome::accepted: return "accepted";
    case write_outcome::duplicate: return "duplicate";
    default: return "ignored";
  }
}

void append_number(std::string& out, double value) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", value);
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
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_micros_.fetch_add(static_cast<uint64_t>(std::llround(value * 1e6)),
                        std::memory_order_relaxed);
}

void histogram::render(std::string& out, std::string_view name,
                       std::string_view help) const {
  header(out, name, help, "histogram");
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    out.append(name).append("_bucket{le=\"");
    if (i < bounds_.size())
      append_number(out, bounds_[i]);
    else
      out += "+Inf";
    out.append("\"} ").append(std::to_string(cumulative)).append("\n");
  }
  out.append(name).append("_sum ");
  append_number(out, static_cast<double>(sum_micros_.load()) / 1e6);
  out.append("\n").append(name).append("_count ")
    .append(std::to_string(count_.load())).append("\n");
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

void metrics::count_event(std::string_view type, write_outcome result, uint64_t n) {
  count_event(type, outcome_name(result), n);
}

void metrics::count_event(std::string_view type, std::string_view result, uint64_t n) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto found = events_.find(std::pair<std::string_view, std::string_view>{type, result});
  if (found != events_.end())
    found->second += n;
  else
    events_.emplace(std::pair<std::string, std::string>{type, result}, n);
}

std::string metrics::render() const {
  std::string out;
  out.reserve(4096);
  {
    std::lock_guard<std::mutex> guard{mtx_};
    header(out, "kapso_http_requests_total", "HTTP requests by route and status code.", "counter");
    for (const auto& [key, n] : requests_)
      out.append("kapso_http_requests_total{route=\"").append(key.first)
        .append("\",code=\"").append(std::to_string(key.second)).append("\"} ")
        .append(std::to_string(n)).append("\n");
    header(out, "kapso_events_total", "Webhook events by type and result (accepted, duplicate, ignored).", "counter");
    for (const auto& [key, n] : events_)
      out.append("kapso_events_total{type=\"").append(key.first)
        .append("\",result=\"").append(key.second).append("\"} ")
        .append(std::to_string(n)).append("\n");
  }
  batch_size.render(out, "kapso_batch_size", "Events per committed transaction.");
  commit_seconds.render(out, "kapso_commit_seconds", "Time to write and commit one batch.");
  gauge(out, "kapso_conversation_actors", "Live conversation actors.", conversation_actors.load());
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
  return out;
}

} // namespace kapso
