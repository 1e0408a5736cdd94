// The quarantine files: the reason recorded with an event, and the two
// operator commands (list beside a running server, requeue with it stopped).
#include "persistence/quarantine.hpp"

#include <algorithm>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <functional>
#include <iterator>
#include <stdexcept>
#include <string_view>

#include "persistence/file_io.hpp"
#include "persistence/pg_session.hpp"

namespace kapso {

namespace {

constexpr size_t max_reason_bytes = 200;

// The first line of `text` without libpq's "ERROR:  " prefix, tabs turned
// into spaces (the listing is tab-separated), cut to `limit` bytes without
// splitting a UTF-8 character.
std::string first_line(std::string_view text, size_t limit) {
  for (std::string_view prefix : {"ERROR:  ", "FATAL:  "})
    if (text.substr(0, prefix.size()) == prefix)
      text.remove_prefix(prefix.size());
  text = text.substr(0, text.find('\n'));
  if (text.size() > limit) {
    auto cut = limit;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80)
      --cut;
    text = text.substr(0, cut);
  }
  std::string line{text};
  std::replace(line.begin(), line.end(), '\t', ' ');
  std::replace(line.begin(), line.end(), '\r', ' ');
  return line;
}

// The quarantine files of `dir` by writer, in writer order (none when the
// directory does not exist: nothing was ever quarantined there).
std::vector<std::pair<size_t, std::filesystem::path>> quarantine_files(const std::string& dir) {
  std::vector<std::pair<size_t, std::filesystem::path>> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    auto writer = writer_of_file(entry.path().filename().string(), quarantine_file_suffix);
    if (writer && entry.is_regular_file(ec))
      files.emplace_back(*writer, entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string utc_time(int64_t unix_seconds) {
  auto t = static_cast<std::time_t>(unix_seconds);
  std::tm parts{};
  char text[32] = "-";
  if (unix_seconds > 0 && ::gmtime_r(&t, &parts) != nullptr)
    std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &parts);
  return text;
}

std::string_view or_dash(const std::string& text) {
  return text.empty() ? std::string_view{"-"} : std::string_view{text};
}

// Counts of events not seen for this long are dropped when the tracker is
// full: they left the spool some other way (stored after a fix, dropped).
constexpr auto forgotten_after = std::chrono::minutes(10);
constexpr size_t max_tracked = 4096;

uint64_t suspect_key(const routed_event& r) {
  return std::hash<std::string>{}(encode_spool_batch({r}));
}

} // namespace

suspect_tracker::count suspect_tracker::failed(const routed_event& r, time_point began,
                                               time_point last_stored, time_point now) {
  if (failures_.size() >= max_tracked) {
    for (auto it = failures_.begin(); it != failures_.end();)
      it = now - it->second.last > forgotten_after ? failures_.erase(it) : std::next(it);
    if (failures_.size() >= max_tracked)
      failures_.clear(); // only delays quarantines
  }
  auto [it, first] = failures_.try_emplace(suspect_key(r));
  auto& f = it->second;
  count result;
  result.counted = last_stored > (first ? began : f.last);
  if (result.counted)
    ++f.attempts;
  f.last = now;
  result.attempts = f.attempts;
  return result;
}

void suspect_tracker::forget(const routed_event& r) {
  if (!failures_.empty())
    failures_.erase(suspect_key(r));
}

std::string failure_reason(const std::exception& e) {
  if (auto failure = dynamic_cast<const db_error*>(&e)) {
    auto state = failure->sqlstate().empty() ? std::string{"without SQLSTATE"}
                                             : "SQLSTATE " + failure->sqlstate();
    return state + ": " + first_line(e.what(), max_reason_bytes - state.size() - 2);
  }
  std::string_view kind = "not a database error: ";
  return std::string{kind} + first_line(e.what(), max_reason_bytes - kind.size());
}

std::vector<quarantined_event> list_quarantine(const std::string& spool_dir) {
  std::vector<quarantined_event> events;
  for (const auto& [writer, path] : quarantine_files(spool_dir)) {
    spool file{path.string(), SIZE_MAX, spool::access::read_only};
    while (auto record = file.next()) {
      for (size_t i = 0; i < record->events.size(); ++i) {
        quarantined_event q;
        q.file = path.filename().string();
        q.writer = writer;
        q.event = std::move(record->events[i]);
        if (i < record->notes.size())
          q.note = std::move(record->notes[i]);
        events.push_back(std::move(q));
      }
      file.consumed(*record); // moves the reader only: the file is not written
    }
  }
  return events;
}

std::string quarantine_listing(const std::vector<quarantined_event>& events) {
  std::string out;
  if (!events.empty())
    out = "file\twriter\tmessage_id\tevent_type\tworkspace_id\tattempts\tquarantined_at\t"
          "reason\n";
  for (const auto& q : events) {
    out.append(q.file).append("\t").append(std::to_string(q.writer)).append("\t");
    out.append(or_dash(q.event.ev.message_id)).append("\t");
    out.append(or_dash(q.event.ev.event_type)).append("\t");
    out.append(or_dash(q.event.workspace_id)).append("\t");
    out.append(std::to_string(q.note.attempts)).append("\t");
    out.append(utc_time(q.note.quarantined_at)).append("\t");
    out.append(or_dash(q.note.reason)).append("\n");
  }
  out.append(std::to_string(events.size()))
    .append(events.size() == 1 ? " quarantined event\n" : " quarantined events\n");
  return out;
}

requeue_result requeue_quarantine(const std::string& spool_dir, size_t spool_max_bytes) {
  requeue_result result;
  for (const auto& [writer, path] : quarantine_files(spool_dir)) {
    spool quarantine{path.string(), SIZE_MAX};
    spool target{writer_file(spool_dir, writer, spool_file_suffix), spool_max_bytes};
    while (auto record = quarantine.next()) {
      auto status = target.append(record->events);
      if (status != spool::append_status::ok)
        throw std::runtime_error(
          target.path()
          + (status == spool::append_status::full ? " is full (spool.max-bytes)"
                                                  : " could not be written")
          + ": " + std::to_string(quarantine.records()) + " quarantined events are left in "
          + path.string() + " (" + std::to_string(result.events) + " requeued before)");
      quarantine.consumed(*record);
      result.events += record->events.size();
    }
    if (!quarantine.empty())
      throw std::runtime_error(path.string() + " could not be read to its end: "
                               + std::to_string(quarantine.records())
                               + " quarantined events are left in it ("
                               + std::to_string(result.events) + " requeued before)");
    std::error_code ec;
    std::filesystem::remove(path, ec);
    if (ec)
      throw std::runtime_error("cannot remove the emptied " + path.string() + ": "
                               + ec.message());
    sync_parent_directory(path.string());
    ++result.files;
  }
  return result;
}

} // namespace kapso
