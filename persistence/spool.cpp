// Spool file I/O: one JSON line per batch, fsync'd on every append.
#include "persistence/spool.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>

#include <nlohmann/json.hpp>

namespace kapso {

namespace {

// A new file's name is durable only once its directory is synced too.
bool sync_parent_directory(const std::string& path) {
  auto slash = path.find_last_of('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return false;
  bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

nlohmann::json to_json(const routed_event& r) {
  const auto& e = r.ev;
  return {
    {"w", r.workspace_id}, {"k", static_cast<int>(e.kind)}, {"t", e.event_type},
    {"p", e.phone_number_id}, {"ck", e.contact_key}, {"cp", e.contact_phone},
    {"cb", e.contact_bsuid}, {"cu", e.contact_username}, {"cn", e.contact_name},
    {"wc", e.whatsapp_conversation_id}, {"m", e.message_id}, {"ts", e.timestamp},
    {"d", e.direction}, {"s", e.sender_type}, {"mt", e.message_type},
    {"c", e.content}, {"pv", e.preview}, {"u", e.media_url}, {"md", e.metadata_json},
    {"st", e.status}, {"se", e.status_error_json}, {"om", e.original_message_id},
    {"np", e.new_contact_phone}, {"ih", e.identity_hash},
  };
}

routed_event from_json(const nlohmann::json& j) {
  routed_event r;
  auto& e = r.ev;
  r.workspace_id = j.at("w").get<std::string>();
  e.kind = static_cast<event_kind>(j.at("k").get<int>());
  e.event_type = j.at("t").get<std::string>();
  e.phone_number_id = j.at("p").get<std::string>();
  e.contact_key = j.at("ck").get<std::string>();
  e.contact_phone = j.at("cp").get<std::string>();
  e.contact_bsuid = j.at("cb").get<std::string>();
  e.contact_username = j.at("cu").get<std::string>();
  e.contact_name = j.at("cn").get<std::string>();
  e.whatsapp_conversation_id = j.at("wc").get<std::string>();
  e.message_id = j.at("m").get<std::string>();
  e.timestamp = j.at("ts").get<int64_t>();
  e.direction = j.at("d").get<std::string>();
  e.sender_type = j.at("s").get<std::string>();
  e.message_type = j.at("mt").get<std::string>();
  e.content = j.at("c").get<std::string>();
  e.preview = j.at("pv").get<std::string>();
  e.media_url = j.at("u").get<std::string>();
  e.metadata_json = j.at("md").get<std::string>();
  e.status = j.at("st").get<std::string>();
  e.status_error_json = j.at("se").get<std::string>();
  // Absent in records spooled before these fields existed.
  e.original_message_id = j.value("om", std::string{});
  e.new_contact_phone = j.value("np", std::string{});
  e.identity_hash = j.value("ih", std::string{});
  return r;
}

} // namespace

std::string encode_spool_record(const std::vector<routed_event>& events) {
  auto arr = nlohmann::json::array();
  for (const auto& r : events)
    arr.push_back(to_json(r));
  // Invalid UTF-8 is replaced rather than refused: the record must be written.
  return arr.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool decode_spool_record(const std::string& line, std::vector<routed_event>& out) {
  auto arr = nlohmann::json::parse(line, nullptr, false);
  if (arr.is_discarded() || !arr.is_array())
    return false;
  try {
    for (const auto& j : arr)
      out.push_back(from_json(j));
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

spool::spool(std::string path, size_t max_bytes)
  : path_(std::move(path)), max_bytes_(max_bytes) {
  struct stat st;
  if (::stat(path_.c_str(), &st) == 0) {
    bytes_ = static_cast<size_t>(st.st_size);
    records_ = read_all().size();
  }
}

spool::~spool() {
  if (fd_ >= 0)
    ::close(fd_);
}

bool spool::append(const std::vector<routed_event>& events) {
  auto line = encode_spool_record(events);
  line += '\n';
  if (bytes_ + line.size() > max_bytes_)
    return false;
  if (fd_ < 0) {
    struct stat st;
    bool created = ::stat(path_.c_str(), &st) != 0;
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd_ < 0)
      return false;
    if (created && !sync_parent_directory(path_))
      return false;
  }
  size_t written = 0;
  while (written < line.size()) {
    auto n = ::write(fd_, line.data() + written, line.size() - written);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return false;
    }
    written += static_cast<size_t>(n);
  }
  if (::fdatasync(fd_) != 0)
    return false;
  bytes_ += line.size();
  ++records_;
  return true;
}

std::vector<std::vector<routed_event>> spool::read_all() const {
  std::vector<std::vector<routed_event>> batches;
  std::ifstream in{path_, std::ios::binary};
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof())
      break; // no trailing newline: an append that never finished
    std::vector<routed_event> batch;
    if (decode_spool_record(line, batch))
      batches.push_back(std::move(batch));
  }
  return batches;
}

void spool::clear() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  int fd = ::open(path_.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  ::unlink(path_.c_str());
  bytes_ = 0;
  records_ = 0;
}

} // namespace kapso
