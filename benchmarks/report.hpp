// What a run measured, for people (stdout) and for scripts (JSON).
#pragma once

#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "benchmarks/bench_options.hpp"
#include "benchmarks/load_driver.hpp"
#include "benchmarks/verify.hpp"
#include "benchmarks/workload.hpp"

namespace kapso::bench {

void print_summary(std::FILE* out, const bench_options& opts, const workload& wl,
                   const run_result& result);

// The arguments that shape the load, as a command line (no secret, no
// database URL): the plot's title, so an image says what it shows.
std::string scenario_arguments(const bench_options& opts);

// The --plot image of a run: per second, throughput and p50/p99 latency.
std::string plot_of(const bench_options& opts, const workload& wl, const run_result& result);

// `verified` is null when --verify was not asked for.
nlohmann::json to_json(const bench_options& opts, const workload& wl,
                       const run_result& result, const verify_report* verified);

} // namespace kapso::bench
