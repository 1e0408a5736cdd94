// The quarantine's pure parts: which failures may be one event's doing, the
// reason kept with it, when a failure counts, and the list and requeue
// commands on files in a temp dir.
#include "persistence/quarantine.hpp"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>

#include <boost/test/unit_test.hpp>

#include "persistence/pg_session.hpp"
#include "persistence/store.hpp"

using namespace kapso;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

struct temp_dir {
  fs::path path;

  temp_dir() {
    auto pattern = (fs::temp_directory_path() / "kapso-quarantine-test-XXXXXX").string();
    BOOST_REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string dir() const { return path.string(); }
};

routed_event message(const std::string& id, const std::string& text = "secret text") {
  routed_event r;
  r.workspace_id = "4b1e3c2a-0000-4000-8000-000000000001";
  r.ev.kind = event_kind::message_received;
  r.ev.event_type = "whatsapp.message.received";
  r.ev.message_id = id;
  r.ev.contact_key = "+15550001111";
  r.ev.content = text;
  r.ev.timestamp = 1760000000;
  return r;
}

constexpr size_t unlimited = std::numeric_limits<size_t>::max();

// Writes one quarantine record per event, as a writer does.
void quarantine(const std::string& dir, size_t writer, const std::vector<routed_event>& events,
                uint32_t attempts = 5) {
  spool file{writer_file(dir, writer, quarantine_file_suffix), unlimited};
  for (const auto& r : events)
    BOOST_REQUIRE(file.append({r}, {{"SQLSTATE XX000: poison " + r.ev.message_id, attempts,
                                     1760000000}})
                  == spool::append_status::ok);
}

std::vector<std::string> replayed_ids(const std::string& path) {
  std::vector<std::string> ids;
  spool s{path, unlimited};
  while (auto r = s.next()) {
    for (const auto& e : r->events)
      ids.push_back(e.ev.message_id);
    s.consumed(*r);
  }
  return ids;
}

} // namespace

BOOST_AUTO_TEST_SUITE(quarantine_criteria)

BOOST_AUTO_TEST_CASE(only_what_one_event_can_cause_is_unexplained) {
  for (const char* state : {"XX000", "XX001", "XX002", "P0001", "P0004", "21000", "09000",
                            "27000", "2F005", "38001", "39P01", "44000"})
    BOOST_TEST((classify_sqlstate(state) == failure_kind::unexplained), state);
  // The database's own state: read-only, disk full, privileges, a missing
  // table, shutdown, statement timeout, connection, I/O, locks, an unknown
  // outcome, and anything unreadable. None of these may quarantine.
  for (const char* state : {"25006", "53100", "53200", "42501", "42P01", "42703", "57P01",
                            "57014", "08006", "58030", "55P03", "40003", "0A000", "F0000",
                            "HV000", "72000", "", "XX", "ABCDEFG"})
    BOOST_TEST((classify_sqlstate(state) == failure_kind::unavailable), state);
  BOOST_TEST((classify_sqlstate("22001") == failure_kind::bad_data));
  BOOST_TEST((classify_sqlstate("40001") == failure_kind::conflict));
  BOOST_TEST((classify_sqlstate("23503") == failure_kind::stale_reference));

  BOOST_TEST((classify_failure(std::logic_error{"workspace id is not a UUID"})
              == failure_kind::unexplained));
  BOOST_TEST((classify_failure(std::bad_alloc{}) == failure_kind::unexplained));
  BOOST_TEST((classify_failure(db_error{"XX000", "ERROR:  poison", false})
              == failure_kind::unexplained));
  // The same error on a connection that is gone: the database's.
  BOOST_TEST((classify_failure(db_error{"XX000", "ERROR:  poison", true})
              == failure_kind::unavailable));
  BOOST_TEST((classify_failure(db_timeout{"no answer"}) == failure_kind::unavailable));
}

BOOST_AUTO_TEST_CASE(the_reason_is_one_short_line_without_the_detail) {
  db_error poison{"XX000",
                  "ERROR:  poison event\tfor a test\nDETAIL:  Key (phone)=(+15550001111)\n"
                  "CONTEXT:  PL/pgSQL function f() line 1 at RAISE",
                  false};
  BOOST_TEST(failure_reason(poison) == "SQLSTATE XX000: poison event for a test");
  BOOST_TEST(failure_reason(std::logic_error{"workspace id is not a UUID"})
             == "not a database error: workspace id is not a UUID");
  BOOST_TEST(failure_reason(db_error{"", "lost", false}) == "without SQLSTATE: lost");
  // Long messages are cut on a character boundary: "é" is two bytes.
  std::string long_text = "x";
  for (int i = 0; i < 300; ++i)
    long_text += "\xc3\xa9";
  auto reason = failure_reason(db_error{"P0001", long_text, false});
  BOOST_TEST(reason.size() <= 200u);
  BOOST_TEST(reason.size() > 150u);
  BOOST_TEST(reason.back() == '\xa9', "cut inside a character");
}

BOOST_AUTO_TEST_CASE(a_failure_counts_only_when_others_were_stored_around_it) {
  suspect_tracker tracker;
  auto t0 = std::chrono::steady_clock::time_point{} + 1h;
  auto poison = message("wamid.poison");
  // Alone, with nothing stored since long before: may be the database.
  auto c = tracker.failed(poison, t0, t0 - 1s, t0 + 1ms);
  BOOST_TEST(!c.counted);
  BOOST_TEST(c.attempts == 0u);
  // Something was stored after that failure: this one counts.
  c = tracker.failed(poison, t0 + 1s, t0 + 500ms, t0 + 1s + 1ms);
  BOOST_TEST(c.counted);
  BOOST_TEST(c.attempts == 1u);
  // Nothing stored since the last failure: does not count.
  c = tracker.failed(poison, t0 + 2s, t0 + 500ms, t0 + 2s + 1ms);
  BOOST_TEST(!c.counted);
  BOOST_TEST(c.attempts == 1u);
  c = tracker.failed(poison, t0 + 3s, t0 + 2500ms, t0 + 3s + 1ms);
  BOOST_TEST(c.attempts == 2u);

  // A first failure whose siblings were stored during its attempt counts.
  auto other = message("wamid.other");
  c = tracker.failed(other, t0 + 4s, t0 + 4s + 1ms, t0 + 4s + 2ms);
  BOOST_TEST(c.counted);
  BOOST_TEST(c.attempts == 1u);
  BOOST_TEST(tracker.size() == 2u);
  // The same event is the same suspect, a changed one is another.
  c = tracker.failed(message("wamid.poison"), t0 + 5s, t0 + 4s + 1ms, t0 + 5s);
  BOOST_TEST(c.attempts == 3u);
  BOOST_TEST(tracker.failed(message("wamid.poison", "edited"), t0 + 6s, t0, t0 + 6s).attempts
             == 0u);

  tracker.forget(poison);
  c = tracker.failed(poison, t0 + 7s, t0 + 7s + 1ms, t0 + 7s + 2ms);
  BOOST_TEST(c.attempts == 1u, "a forgotten event starts over");
}

BOOST_AUTO_TEST_CASE(the_tracker_stays_bounded) {
  suspect_tracker tracker;
  auto t0 = std::chrono::steady_clock::time_point{} + 1h;
  for (int i = 0; i < 10000; ++i)
    tracker.failed(message("wamid.m" + std::to_string(i)), t0, t0 + 1ms, t0);
  BOOST_TEST(tracker.size() <= 4096u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(quarantine_commands)

BOOST_AUTO_TEST_CASE(list_shows_every_quarantined_event_without_its_text) {
  temp_dir dir;
  BOOST_TEST(list_quarantine(dir.dir()).empty());
  BOOST_TEST(list_quarantine(dir.dir() + "/missing").empty());
  quarantine(dir.dir(), 1, {message("wamid.c")}, 7);
  quarantine(dir.dir(), 0, {message("wamid.a"), message("wamid.b")});
  {
    // The spool itself is not the quarantine.
    spool s{writer_file(dir.dir(), 0, spool_file_suffix), unlimited};
    BOOST_REQUIRE(s.append({message("wamid.spooled")}) == spool::append_status::ok);
  }
  auto events = list_quarantine(dir.dir());
  BOOST_REQUIRE_EQUAL(events.size(), 3u);
  BOOST_TEST(events[0].event.ev.message_id == "wamid.a");
  BOOST_TEST(events[1].event.ev.message_id == "wamid.b");
  BOOST_TEST(events[2].event.ev.message_id == "wamid.c");
  BOOST_TEST(events[2].file == "writer-1.quarantine");
  BOOST_TEST(events[2].writer == 1u);
  BOOST_TEST(events[2].note.attempts == 7u);
  BOOST_TEST(events[0].note.reason == "SQLSTATE XX000: poison wamid.a");

  auto text = quarantine_listing(events);
  BOOST_TEST(text.find("secret text") == std::string::npos, "the listing shows message text");
  BOOST_TEST(text.find("writer-0.quarantine\t0\twamid.a\twhatsapp.message.received\t"
                       "4b1e3c2a-0000-4000-8000-000000000001\t5\t2025-10-09T08:53:20Z\t"
                       "SQLSTATE XX000: poison wamid.a\n")
               != std::string::npos,
             text);
  std::string count = "\n3 quarantined events\n";
  BOOST_TEST(text.substr(text.size() - count.size()) == count, text);
  BOOST_TEST(quarantine_listing({}) == "0 quarantined events\n");
}

BOOST_AUTO_TEST_CASE(requeue_moves_every_event_into_its_writers_spool_and_removes_the_file) {
  temp_dir dir;
  auto spool0 = writer_file(dir.dir(), 0, spool_file_suffix);
  {
    spool s{spool0, unlimited};
    BOOST_REQUIRE(s.append({message("wamid.waiting")}) == spool::append_status::ok);
  }
  quarantine(dir.dir(), 0, {message("wamid.a"), message("wamid.b")});
  quarantine(dir.dir(), 3, {message("wamid.c")});
  auto moved = requeue_quarantine(dir.dir(), unlimited);
  BOOST_TEST(moved.events == 3u);
  BOOST_TEST(moved.files == 2u);
  BOOST_TEST(!fs::exists(writer_file(dir.dir(), 0, quarantine_file_suffix)));
  BOOST_TEST(!fs::exists(writer_file(dir.dir(), 3, quarantine_file_suffix)));
  BOOST_TEST(list_quarantine(dir.dir()).empty());
  // Behind what waited already; writer 3's own spool file (adopted at the
  // next start when the pool is smaller).
  BOOST_TEST((replayed_ids(spool0) == std::vector<std::string>{"wamid.waiting", "wamid.a",
                                                               "wamid.b"}));
  BOOST_TEST((replayed_ids(writer_file(dir.dir(), 3, spool_file_suffix))
              == std::vector<std::string>{"wamid.c"}));
  // Nothing left: a second requeue does nothing.
  BOOST_TEST(requeue_quarantine(dir.dir(), unlimited).events == 0u);
}

BOOST_AUTO_TEST_CASE(requeue_into_a_full_spool_keeps_what_it_could_not_move) {
  temp_dir dir;
  quarantine(dir.dir(), 0, {message("wamid.a"), message("wamid.b"), message("wamid.c")});
  // Room for the header and about one record.
  auto record_bytes = encode_spool_batch({message("wamid.a")}).size() + 16;
  BOOST_CHECK_THROW(requeue_quarantine(dir.dir(), 32 + record_bytes + record_bytes / 2),
                    std::runtime_error);
  auto left = list_quarantine(dir.dir());
  BOOST_REQUIRE_EQUAL(left.size(), 2u);
  BOOST_TEST(left[0].event.ev.message_id == "wamid.b");
  BOOST_TEST((replayed_ids(writer_file(dir.dir(), 0, spool_file_suffix))
              == std::vector<std::string>{"wamid.a"}));
}

BOOST_AUTO_TEST_SUITE_END()
