// Log-linear latency histogram: fixed memory, ~1.6 % relative error, mergeable.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

namespace kapso::bench {

// A histogram's non-empty buckets only: one second of a long run costs a few
// hundred bytes instead of the full table.
struct compact_histogram {
  std::vector<std::pair<uint32_t, uint64_t>> buckets; // (index, count)
  uint64_t count = 0;
  uint64_t max = 0;
};

// Values are microseconds. Below 128 every value has its own bucket; above,
// each power of two is split into 64 buckets, so a percentile is never off
// by more than 1/64 of its value -- the precision HDR histograms give,
// without storing every sample of a multi-million-request run.
class latency_histogram {
public:
  latency_histogram() : counts_(bucket_count, 0) {
    // nop
  }

  void record(uint64_t micros) {
    micros = std::min(micros, max_trackable);
    ++counts_[index_of(micros)];
    ++count_;
    max_ = std::max(max_, micros);
  }

  void merge(const latency_histogram& other) {
    for (size_t i = 0; i < bucket_count; ++i)
      counts_[i] += other.counts_[i];
    count_ += other.count_;
    max_ = std::max(max_, other.max_);
  }

  void merge(const compact_histogram& other) {
    for (auto& [index, count] : other.buckets)
      counts_[index] += count;
    count_ += other.count;
    max_ = std::max(max_, other.max);
  }

  compact_histogram compact() const {
    compact_histogram out;
    for (size_t i = 0; i < bucket_count; ++i)
      if (counts_[i] != 0)
        out.buckets.emplace_back(static_cast<uint32_t>(i), counts_[i]);
    out.count = count_;
    out.max = max_;
    return out;
  }

  void clear() {
    std::fill(counts_.begin(), counts_.end(), 0);
    count_ = 0;
    max_ = 0;
  }

  uint64_t count() const {
    return count_;
  }

  uint64_t max() const {
    return max_;
  }

  // The smallest bucket edge below which a fraction `q` of the values lie.
  uint64_t quantile(double q) const {
    if (count_ == 0)
      return 0;
    auto rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
    rank = std::clamp<uint64_t>(rank, 1, count_);
    uint64_t seen = 0;
    for (size_t i = 0; i < bucket_count; ++i) {
      seen += counts_[i];
      if (seen >= rank)
        return std::min(upper_edge(i), max_);
    }
    return max_;
  }

private:
  static constexpr int sub_bits = 6;
  static constexpr uint64_t sub_count = uint64_t{1} << sub_bits;
  static constexpr uint64_t linear_limit = 2 * sub_count;
  static constexpr int max_exponent = 40; // 2^40 us = 12.7 days
  static constexpr uint64_t max_trackable = (uint64_t{1} << max_exponent) - 1;
  static constexpr size_t bucket_count
    = linear_limit + (max_exponent - sub_bits - 1) * sub_count;

  static size_t index_of(uint64_t v) {
    if (v < linear_limit)
      return static_cast<size_t>(v);
    auto exponent = 63 - __builtin_clzll(v);
    auto shift = exponent - sub_bits;
    return static_cast<size_t>(linear_limit + (exponent - sub_bits - 1) * sub_count
                               + ((v >> shift) - sub_count));
  }

  static uint64_t upper_edge(size_t index) {
    if (index < linear_limit)
      return index;
    auto rel = index - linear_limit;
    auto exponent = static_cast<int>(rel / sub_count) + sub_bits + 1;
    auto mantissa = sub_count + rel % sub_count;
    auto shift = exponent - sub_bits;
    return ((mantissa + 1) << shift) - 1;
  }

  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  uint64_t max_ = 0;
};

} // namespace kapso::bench
