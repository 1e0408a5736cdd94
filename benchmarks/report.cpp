// What a run measured, for people (stdout) and for scripts (JSON).
#include "benchmarks/report.hpp"

#include <string>

#include "benchmarks/plot.hpp"

namespace kapso::bench {

namespace {

double per_second(uint64_t count, double seconds) {
  return seconds > 0 ? static_cast<double>(count) / seconds : 0;
}

double ms(uint64_t micros) {
  return static_cast<double>(micros) / 1000.0;
}

std::string load_shape(const bench_options& opts) {
  std::string shape = opts.rate > 0 ? "open loop at " + std::to_string(opts.rate) + "/s"
                                    : std::string{"closed loop"};
  return shape;
}

// CPU over the load per request written and per event in those requests:
// re-sends and retries cost the server too.
double per_request_us(const cpu_usage& cpu, const run_result& r) {
  return r.attempts > 0 ? cpu.seconds * 1e6 / static_cast<double>(r.attempts) : 0;
}

double per_event_us(const cpu_usage& cpu, const bench_options& opts, const run_result& r) {
  auto per = opts.form == payload_form::batch ? opts.batch_size : 1;
  return per_request_us(cpu, r) / per;
}

double per_event(double total, const bench_options& opts, const run_result& r) {
  auto per = opts.form == payload_form::batch ? opts.batch_size : 1;
  return r.attempts > 0 ? total / static_cast<double>(r.attempts) / per : 0;
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

} // namespace

std::string scenario_arguments(const bench_options& opts) {
  std::string out = "--form ";
  out += to_string(opts.form);
  if (opts.form == payload_form::batch)
    out += " --batch-size " + std::to_string(opts.batch_size);
  out += " --connections " + std::to_string(opts.connections);
  if (opts.threads > 1)
    out += " --threads " + std::to_string(opts.threads);
  if (opts.workspaces > 1)
    out += " --workspaces " + std::to_string(opts.workspaces);
  out += " --conversations " + std::to_string(opts.conversations);
  if (opts.zipf > 0)
    out += " --zipf " + number(opts.zipf);
  out += " --retry-fraction " + number(opts.retry_fraction);
  if (opts.requests > 0)
    out += " --requests " + std::to_string(opts.requests);
  if (opts.requests == 0 || opts.duration_given)
    out += " --duration " + number(opts.duration);
  if (opts.warmup > 0)
    out += " --warmup " + number(opts.warmup);
  if (opts.rate > 0)
    out += " --rate " + number(opts.rate);
  if (opts.prefill)
    out += " --prefill";
  return out;
}

std::string plot_of(const bench_options& opts, const workload& wl, const run_result& r) {
  plot_spec spec;
  spec.title = opts.label.empty() ? std::string{"kapso-bench"} : opts.label;
  spec.arguments = scenario_arguments(opts);
  char summary[256];
  std::snprintf(summary, sizeof(summary),
                "run %s: %.0f deliveries/s, %.0f events/s, p50 %.2f ms, p99 %.2f ms "
                "over the %.1f s window; stopped by %s",
                wl.run_tag.c_str(), per_second(r.window_acked_deliveries, r.window_seconds),
                per_second(r.window_acked_events, r.window_seconds),
                ms(r.latency.quantile(0.5)), ms(r.latency.quantile(0.99)), r.window_seconds,
                r.stop_reason.c_str());
  spec.summary = summary;
  spec.window_from = r.window_start;
  spec.window_until = r.window_start + r.window_seconds;
  std::vector<plot_point> points;
  points.reserve(r.seconds.size());
  for (auto& s : r.seconds) {
    plot_point p;
    p.t = s.start + s.length / 2;
    p.deliveries_per_second = static_cast<double>(s.deliveries) / s.length;
    p.events_per_second = static_cast<double>(s.events) / s.length;
    p.has_latency = s.deliveries > 0;
    p.p50_ms = ms(s.p50_us);
    p.p99_ms = ms(s.p99_us);
    points.push_back(p);
  }
  return render_svg(spec, points);
}

void print_summary(std::FILE* out, const bench_options& opts, const workload& wl,
                   const run_result& r) {
  auto& h = r.latency;
  std::fprintf(out, "kapso-bench %s -> %s\n", wl.run_tag.c_str(), opts.url.c_str());
  std::fprintf(out,
               "  load        %s form%s, %zu connections, %s, %zu workspaces, "
               "%u conversations, zipf %.2f\n",
               to_string(opts.form),
               opts.form == payload_form::batch
                 ? (" of " + std::to_string(opts.batch_size)).c_str()
                 : "",
               opts.connections, load_shape(opts).c_str(), wl.phone_number_ids.size(),
               wl.conversations, opts.zipf);
  std::fprintf(out, "  run         %.1f s in all, window %.2f s, stopped by %s\n",
               r.elapsed_seconds, r.window_seconds, r.stop_reason.c_str());
  std::fprintf(out,
               "  sends       %llu requests: %llu scheduled (of which %llu re-sends), "
               "%llu retries after errors\n",
               static_cast<unsigned long long>(r.attempts),
               static_cast<unsigned long long>(r.first_sends),
               static_cast<unsigned long long>(r.resends),
               static_cast<unsigned long long>(r.error_retries));
  std::fprintf(out, "  throughput  %.1f deliveries/s, %.1f events/s (acknowledged)\n",
               per_second(r.window_acked_deliveries, r.window_seconds),
               per_second(r.window_acked_events, r.window_seconds));
  std::fprintf(out,
               "  latency ms  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  "
               "(%llu answers 200)\n",
               ms(h.quantile(0.5)), ms(h.quantile(0.9)), ms(h.quantile(0.99)),
               ms(h.quantile(0.999)), ms(h.max()),
               static_cast<unsigned long long>(h.count()));
  std::fprintf(out, "  answers    ");
  if (r.statuses.empty())
    std::fprintf(out, " none");
  for (auto& [status, count] : r.statuses)
    std::fprintf(out, " %d: %llu", status, static_cast<unsigned long long>(count));
  std::fprintf(out, "\n  errors      %llu timeouts, %llu I/O, %llu connect\n",
               static_cast<unsigned long long>(r.timeouts),
               static_cast<unsigned long long>(r.io_errors),
               static_cast<unsigned long long>(r.connect_errors));
  for (auto& e : r.io_error_examples)
    std::fprintf(out, "    I/O error: %s\n", e.c_str());
  for (auto& cpu : r.cpu)
    std::fprintf(out, "  cpu         %s (pid %d): %.2f s, %.1f us per request, %.1f us per event\n",
                 cpu.name.c_str(), cpu.pid, cpu.seconds, per_request_us(cpu, r),
                 per_event_us(cpu, opts, r));
  if (r.wal)
    std::fprintf(out,
                 "  wal         %.1f MB, %.0f bytes per event; %lld records, %lld full-page "
                 "images (%.2f per event), %lld checkpoints; LSN %s to %s\n",
                 static_cast<double>(r.wal->bytes) / 1e6,
                 per_event(static_cast<double>(r.wal->bytes), opts, r),
                 static_cast<long long>(r.wal->records),
                 static_cast<long long>(r.wal->full_page_images),
                 per_event(static_cast<double>(r.wal->full_page_images), opts, r),
                 static_cast<long long>(r.wal->checkpoints), r.wal->from.c_str(),
                 r.wal->to.c_str());
  std::fprintf(out,
               "  deliveries  %llu sent, %llu acknowledged, %llu never acknowledged "
               "(%llu events); %llu abandoned at drain end\n",
               static_cast<unsigned long long>(r.unique_sent),
               static_cast<unsigned long long>(r.unique_acked),
               static_cast<unsigned long long>(r.never_acked),
               static_cast<unsigned long long>(r.never_acked_events),
               static_cast<unsigned long long>(r.abandoned));
  // One line per phase, in a fixed form (benchmarks/outage.sh reads them).
  for (auto& p : r.phases) {
    std::fprintf(out, "  phase %s: from %.2f s for %.2f s, sent %llu, answers", p.name.c_str(),
                 p.start, p.seconds, static_cast<unsigned long long>(p.attempts));
    if (p.statuses.empty())
      std::fprintf(out, " none");
    for (auto& [status, count] : p.statuses)
      std::fprintf(out, " %d: %llu", status, static_cast<unsigned long long>(count));
    std::fprintf(out,
                 ", timeouts %llu, io errors %llu, acknowledged %llu (%llu events), "
                 "200 latency ms p50 %.3f p99 %.3f max %.3f\n",
                 static_cast<unsigned long long>(p.timeouts),
                 static_cast<unsigned long long>(p.io_errors),
                 static_cast<unsigned long long>(p.acked_deliveries),
                 static_cast<unsigned long long>(p.acked_events), ms(p.latency.quantile(0.5)),
                 ms(p.latency.quantile(0.99)), ms(p.latency.max()));
  }
}

nlohmann::json to_json(const bench_options& opts, const workload& wl,
                       const run_result& r, const verify_report* verified) {
  using nlohmann::json;
  auto& h = r.latency;
  json statuses = json::object();
  for (auto& [status, count] : r.statuses)
    statuses[std::to_string(status)] = count;
  json seconds = json::array();
  for (auto& s : r.seconds)
    seconds.push_back({{"t", s.start},
                       {"length", s.length},
                       {"deliveries", s.deliveries},
                       {"events", s.events},
                       {"failures", s.failures},
                       {"p50_ms", ms(s.p50_us)},
                       {"p99_ms", ms(s.p99_us)}});
  json out = {
    {"run_tag", wl.run_tag},
    {"label", opts.label},
    {"arguments", scenario_arguments(opts)},
    {"options",
     {{"url", opts.url},
      {"form", to_string(opts.form)},
      {"batch_size", opts.form == payload_form::batch ? opts.batch_size : 1},
      {"connections", opts.connections},
      {"threads", opts.threads},
      {"rate", opts.rate},
      {"duration", opts.duration},
      {"requests", opts.requests},
      {"warmup", opts.warmup},
      {"workspaces", opts.workspaces},
      {"conversations", opts.conversations},
      {"zipf", opts.zipf},
      {"retry_fraction", opts.retry_fraction},
      {"seed", opts.seed},
      {"timeout_ms", opts.timeout_ms},
      {"max_retries", opts.max_retries},
      {"prefill", opts.prefill}}},
    {"stop_reason", r.stop_reason},
    {"elapsed_seconds", r.elapsed_seconds},
    {"window_start", r.window_start},
    {"window_seconds", r.window_seconds},
    {"seconds", seconds},
    {"deliveries_per_second", per_second(r.window_acked_deliveries, r.window_seconds)},
    {"events_per_second", per_second(r.window_acked_events, r.window_seconds)},
    {"latency_ms",
     {{"count", h.count()},
      {"p50", ms(h.quantile(0.5))},
      {"p90", ms(h.quantile(0.9))},
      {"p99", ms(h.quantile(0.99))},
      {"p99_9", ms(h.quantile(0.999))},
      {"max", ms(h.max())}}},
    {"statuses", statuses},
    {"attempts", r.attempts},
    {"scheduled_sends", r.first_sends},
    {"resends", r.resends},
    {"error_retries", r.error_retries},
    {"timeouts", r.timeouts},
    {"io_errors", r.io_errors},
    {"connect_errors", r.connect_errors},
    {"abandoned", r.abandoned},
    {"deliveries_sent", r.unique_sent},
    {"deliveries_acked", r.unique_acked},
    {"events_acked", r.acked_events},
    {"never_acked", r.never_acked},
    {"never_acked_events", r.never_acked_events},
  };
  if (!r.phases.empty()) {
    json phases = json::array();
    for (auto& p : r.phases) {
      json by_status = json::object();
      for (auto& [status, count] : p.statuses)
        by_status[std::to_string(status)] = count;
      phases.push_back({
        {"name", p.name},
        {"start_seconds", p.start},
        {"seconds", p.seconds},
        {"attempts", p.attempts},
        {"statuses", by_status},
        {"timeouts", p.timeouts},
        {"io_errors", p.io_errors},
        {"acked_deliveries", p.acked_deliveries},
        {"acked_events", p.acked_events},
        {"latency_ms",
         {{"count", p.latency.count()},
          {"p50", ms(p.latency.quantile(0.5))},
          {"p99", ms(p.latency.quantile(0.99))},
          {"max", ms(p.latency.max())}}},
      });
    }
    out["phases"] = phases;
  }
  // Flat keys, one a line: run_scenarios.sh reads them without jq.
  for (auto& cpu : r.cpu) {
    out["cpu_" + cpu.name + "_seconds"] = cpu.seconds;
    out["cpu_" + cpu.name + "_us_per_request"] = per_request_us(cpu, r);
    out["cpu_" + cpu.name + "_us_per_event"] = per_event_us(cpu, opts, r);
  }
  if (r.wal) {
    out["wal_bytes"] = r.wal->bytes;
    out["wal_bytes_per_event"] = per_event(static_cast<double>(r.wal->bytes), opts, r);
    out["wal_records"] = r.wal->records;
    out["wal_full_page_images"] = r.wal->full_page_images;
    out["wal_full_page_images_per_event"]
      = per_event(static_cast<double>(r.wal->full_page_images), opts, r);
    out["wal_checkpoints"] = r.wal->checkpoints;
    out["wal_from_lsn"] = r.wal->from;
    out["wal_to_lsn"] = r.wal->to;
  }
  uint64_t non_200 = r.timeouts + r.io_errors;
  for (auto& [status, count] : r.statuses)
    if (status != 200)
      non_200 += count;
  out["non_200"] = non_200;
  if (verified == nullptr) {
    out["verify"] = nullptr;
  } else {
    auto& v = *verified;
    out["verify"] = {
      {"ok", v.ok()},
      {"acknowledged", v.expected_acknowledged},
      {"unconfirmed", v.expected_unconfirmed},
      {"stored", v.present},
      {"lost", v.lost},
      {"duplicated", v.duplicated},
      {"unexpected", v.unexpected},
      {"misrouted", v.misrouted},
      {"wrong_created_at", v.wrong_created_at},
      {"conversations_checked", v.conversations_checked},
      {"missing_conversations", v.missing_conversations},
      {"duplicate_conversations", v.duplicate_conversations},
      {"unexpected_conversations", v.unexpected_conversations},
      {"wrong_unread", v.wrong_unread},
      {"wrong_preview", v.wrong_preview},
      {"missing_workspaces", v.missing_workspaces},
      {"examples", v.examples},
    };
  }
  return out;
}

} // namespace kapso::bench
