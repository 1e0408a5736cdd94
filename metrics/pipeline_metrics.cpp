// Prometheus text for the pipeline's metrics.
#include "metrics/pipeline_metrics.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>

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

// `retry` is never counted (the delivery is answered 503 and comes again).
const char* outcome_name(write_outcome x) {
  switch (x) {
    case write_outcome::accepted: return "accepted";
    case write_outcome::duplicate: return "duplicate";
    case write_outcome::ignored: return "ignored";
    case write_outcome::retry: return "retry";
  }
  return "ignored";
}

} // namespace

namespace exposition {

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

void gauge(std::string& out, std::string_view name, std::string_view help, int64_t value) {
  header(out, name, help, "gauge");
  out.append(name).append(" ").append(std::to_string(value)).append("\n");
}

void counter(std::string& out, std::string_view name, std::string_view help, uint64_t value) {
  header(out, name, help, "counter");
  out.append(name).append(" ").append(std::to_string(value)).append("\n");
}

} // namespace exposition

using namespace exposition;

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

pipeline_metrics& pipeline_metrics::global() {
  static pipeline_metrics instance;
  return instance;
}

void pipeline_metrics::count_event(std::string_view type, write_outcome result, uint64_t n) {
  count_event(type, outcome_name(result), n);
}

void pipeline_metrics::count_event(std::string_view type, std::string_view result, uint64_t n) {
  type = bounded_event_type(type);
  std::lock_guard<std::mutex> guard{mtx_};
  auto found = events_.find(std::pair<std::string_view, std::string_view>{type, result});
  if (found != events_.end())
    found->second += n;
  else
    events_.emplace(std::pair<std::string, std::string>{type, result}, n);
}

void pipeline_metrics::render(std::string& out) const {
  {
    std::lock_guard<std::mutex> guard{mtx_};
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
  gauge(out, "kapso_writer_queue_events", "Events waiting in persistence batches.", writer_queue.load());
  gauge(out, "kapso_workspace_cache_entries", "Entries in the router's workspace cache.", workspace_cache_entries.load());
  gauge(out, "kapso_spool_bytes", "Bytes in the outage spool waiting for replay.", spool_bytes.load());
  gauge(out, "kapso_spool_records", "Batches in the outage spool waiting for replay.", spool_records.load());
  counter(out, "kapso_spooled_events_total", "Events written to the outage spool.", spooled_events_total.load());
  counter(out, "kapso_replayed_events_total", "Spooled events replayed into PostgreSQL.", replayed_events_total.load());
  counter(out, "kapso_spool_corrupt_records_total", "Spool records skipped because they could not be read.", spool_corrupt_records_total.load());
  counter(out, "kapso_spool_dropped_events_total", "Spooled events dropped at replay because their workspace no longer exists.", spool_dropped_events_total.load());
  counter(out, "kapso_quarantined_events_total", "Spooled events moved to the quarantine: they kept failing while other events were stored (kapso-ingest spool list).", quarantined_events_total.load());
  gauge(out, "kapso_quarantine_events", "Events in the quarantine files, waiting for kapso-ingest spool requeue.", quarantine_events.load());
  counter(out, "kapso_commit_failures_total", "Batch commits that failed (before retry or spool).", commit_failures_total.load());
}

} // namespace kapso
