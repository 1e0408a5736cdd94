// From the Next.js route to kapso-ingest on the route's own database: the damage its logic
// leaves (tests/integration/route_model.hpp) repaired by `kapso-ingest migrate`, rule by
// rule of SPEC §5, nothing lost; then the real server delivering into the migrated tables.
#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <tuple>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"
#include "tests/integration/route_model.hpp"

using namespace kapso_test;

namespace {

// The region the route's national forms are written in, given to migrate and the server.
const char* const region_option = "--phone.default-region=GB";
constexpr int64_t base_time = 1700000000;

// -- the traffic -------------------------------------------------------------------------

struct customer {
  size_t workspace = 0;
  std::string e164;
  std::vector<std::string> forms; // the phone as the payloads carried it
  std::string name;               // "" = payloads without a contact name
};

// US numbers with and without "+", British ones also in national form (region GB), one
// customer of the first workspace also writing to the second.
std::vector<customer> customers() {
  return {
    {0, "+15550000001", {"15550000001", "+15550000001"}, "Ana"},
    {0, "+447700900001", {"07700 900001", "447700900001", "+447700900001"}, "Ben"},
    {0, "+15550000002", {"+15550000002"}, ""},
    {0, "+447700900002", {"07700900002", "+447700900002"}, ""},
    {0, "+15550000003", {"15550000003"}, "Cleo"},
    {0, "+15550000004", {"+15550000004", "15550000004"}, ""},
    {1, "+15550000001", {"15550000001"}, "Ana B"},
    {1, "+447700900003", {"+447700900003", "447700900003"}, "Dev"},
  };
}

struct traffic {
  std::vector<std::string> workspace_ids;
  std::vector<route_event> events;     // in order of arrival
  std::map<std::string, std::string> e164_of; // "<workspace>|<form>" -> E.164
};

std::string form_key(const std::string& workspace_id, const std::string& phone) {
  return workspace_id + "|" + phone;
}

// One customer's conversation: inbound messages, a bot's and a person's (WhatsApp Business
// app) answers with statuses, the inbox application's reply, "mark as read", a note and a
// star. Each event at its own WhatsApp time, spread so that customers write at once.
void add_conversation(traffic& t, const customer& c, size_t index, std::mt19937& random) {
  using kind = route_event::kind;
  auto ws = t.workspace_ids[c.workspace];
  auto id_prefix = "wamid." + std::to_string(index) + ".";
  size_t step = 0;
  auto at = [&] { return base_time + static_cast<int64_t>(step++ * 10 + index); };
  auto event = [&](kind what, std::string text) {
    route_event ev;
    ev.what = what;
    ev.workspace_id = ws;
    ev.phone = c.forms[random() % c.forms.size()];
    if (!c.name.empty() && random() % 3 != 0)
      ev.name = c.name;
    ev.timestamp = at();
    ev.text = std::move(text);
    ev.message_id = id_prefix + std::to_string(step);
    return ev;
  };
  std::vector<route_event> out;
  for (int i = 0; i < 4; ++i)
    out.push_back(event(kind::inbound, "hello " + std::to_string(i) + " from " + c.e164));
  auto bot = event(kind::echo, "bot answer " + std::to_string(index));
  bot.sender_type = "bot";
  out.push_back(bot);
  for (auto status : {"delivered", "read"}) {
    auto s = event(kind::status, "");
    s.message_id = bot.message_id;
    s.status = status;
    out.push_back(s);
  }
  out.push_back(event(kind::app_reply, "app reply " + std::to_string(index)));
  for (int i = 4; i < 6; ++i)
    out.push_back(event(kind::inbound, "hello " + std::to_string(i) + " from " + c.e164));
  auto star = event(kind::app_star, "");
  star.message_id = out.front().message_id;
  out.push_back(star);
  out.push_back(event(kind::mark_read, ""));
  out.push_back(event(kind::app_note, "note on customer " + std::to_string(index)));
  auto person = event(kind::echo, "person answer " + std::to_string(index));
  person.sender_type = "user";
  out.push_back(person);
  auto failed = event(kind::status, "");
  failed.message_id = person.message_id;
  failed.status = index % 2 == 0 ? "failed" : "delivered";
  out.push_back(failed);
  for (int i = 6; i < 9; ++i)
    out.push_back(event(kind::inbound, "hello " + std::to_string(i) + " from " + c.e164));
  t.events.insert(t.events.end(), out.begin(), out.end());
}

// Kapso does not keep order: deliveries arrive up to 40 s of WhatsApp time out of order,
// the inbox application's actions in real time.
void shuffle_arrival(traffic& t, std::mt19937& random) {
  std::vector<std::pair<int64_t, size_t>> order;
  for (size_t i = 0; i < t.events.size(); ++i) {
    auto& ev = t.events[i];
    bool app = ev.what >= route_event::kind::app_reply;
    order.emplace_back(ev.timestamp + (app ? 0 : static_cast<int64_t>(random() % 40)), i);
  }
  std::sort(order.begin(), order.end());
  std::vector<route_event> arrived;
  for (auto& [at, i] : order)
    arrived.push_back(t.events[i]);
  t.events = std::move(arrived);
}

traffic make_traffic(const test_database& db, uint32_t seed) {
  traffic t;
  // As the route's operators did: no kapso_webhook_secret column yet.
  for (const auto& phone_id : {"771000000000001", "771000000000002"})
    t.workspace_ids.push_back(*db.value("INSERT INTO workspaces (name, slug, kapso_phone_id) "
                                        "VALUES ($1, $1, $1) RETURNING id::text",
                                        std::string{phone_id}));
  std::mt19937 random{seed};
  auto all = customers();
  for (size_t i = 0; i < all.size(); ++i) {
    add_conversation(t, all[i], i, random);
    for (const auto& form : all[i].forms)
      t.e164_of[form_key(t.workspace_ids[all[i].workspace], form)] = all[i].e164;
  }
  shuffle_arrival(t, random);
  return t;
}

// Races the random order may not bring: a new customer's first message delivered twice
// (two conversations of one contact, the message once in each), two messages counted at
// once (an unread increment lost) and, without a unique key on contacts, one phone's
// contact inserted twice.
void run_races(route_model& model, traffic& t, const test_database& db) {
  route_event first;
  first.workspace_id = t.workspace_ids[0];
  first.phone = "15550000099";
  first.message_id = "wamid.race.1";
  first.timestamp = base_time + 500;
  first.text = "race one";
  t.e164_of[form_key(first.workspace_id, first.phone)] = "+15550000099";
  model.interleave(first, first, 2);
  auto second = first;
  second.message_id = "wamid.race.2";
  second.timestamp = base_time + 501;
  second.text = "race two";
  auto third = second;
  third.message_id = "wamid.race.3";
  third.timestamp = base_time + 502;
  third.text = "race three";
  auto unread = [&] {
    return db.count("SELECT coalesce(sum(unread_count), 0) FROM conversations v JOIN contacts c "
                    "ON c.id = v.contact_id WHERE c.phone = '15550000099'");
  };
  auto before = unread();
  model.interleave(second, third);
  BOOST_TEST_REQUIRE(unread() == before + 1, "two new messages, one increment lost");
  auto twin = first;
  twin.phone = "+447700900098";
  twin.message_id = "wamid.race.4";
  t.e164_of[form_key(twin.workspace_id, twin.phone)] = twin.phone;
  model.interleave(twin, twin);
}

// -- the tables --------------------------------------------------------------------------

struct contact_row {
  std::string id, workspace_id, phone, name, forms; // forms: metadata.previous_phone_forms
  int64_t created_us = 0;
};
struct conversation_row {
  std::string id, contact_id;
  int64_t unread = 0;
  int64_t last_message_at = 0; // seconds; 0 = NULL
  std::string preview;
};
struct message_row {
  std::string id, conversation_id, direction, sender_type, content, kapso_id, status;
  int64_t created_at = 0;
};

struct tables {
  std::map<std::string, contact_row> contacts;
  std::map<std::string, conversation_row> conversations;
  std::vector<message_row> messages;
  std::map<int64_t, std::string> notes; // id -> contact_id
  std::map<int64_t, std::string> stars; // id -> message_id
};

tables read_tables(const test_database& db) {
  tables t;
  for (auto r : db.query("SELECT id, workspace_id, phone, coalesce(name, ''), "
                         "coalesce(metadata -> 'previous_phone_forms', '[]')::text, "
                         "(extract(epoch FROM created_at) * 1000000)::bigint FROM contacts"))
    t.contacts[text(r[0])] = {text(r[0]), text(r[1]), text(r[2]), text(r[3]), text(r[4]),
                              r[5].as<int64_t>()};
  for (auto r : db.query("SELECT id, contact_id, coalesce(unread_count, 0), "
                         "coalesce(extract(epoch FROM last_message_at)::bigint, 0), "
                         "coalesce(last_message_preview, '') FROM conversations"))
    t.conversations[text(r[0])] = {text(r[0]), text(r[1]), r[2].as<int64_t>(),
                                   r[3].as<int64_t>(), text(r[4])};
  for (auto r : db.query("SELECT id, conversation_id, direction, sender_type, "
                         "coalesce(content, ''), coalesce(kapso_message_id, ''), "
                         "coalesce(status, ''), extract(epoch FROM created_at)::bigint "
                         "FROM messages"))
    t.messages.push_back({text(r[0]), text(r[1]), text(r[2]), text(r[3]), text(r[4]),
                          text(r[5]), text(r[6]), r[7].as<int64_t>()});
  for (auto r : db.query("SELECT id, contact_id FROM notes"))
    t.notes[r[0].as<int64_t>()] = text(r[1]);
  for (auto r : db.query("SELECT id, message_id FROM message_stars"))
    t.stars[r[0].as<int64_t>()] = text(r[1]);
  return t;
}

// A customer: the workspace and the E.164 form of a contact's phone.
std::string customer_of(const traffic& t, const contact_row& c) {
  auto found = t.e164_of.find(form_key(c.workspace_id, c.phone));
  return c.workspace_id + "|" + (found == t.e164_of.end() ? c.phone : found->second);
}

int status_rank(const std::string& status) {
  static const std::map<std::string, int> rank{
    {"received", 1}, {"sent", 1}, {"delivered", 2}, {"read", 3}, {"failed", 4}};
  auto found = rank.find(status);
  return found == rank.end() ? 0 : found->second;
}

// What the tables of one customer must show after the migration, from the route's.
struct expected_customer {
  std::string contact_id;                     // the oldest contact stays
  std::string phone, name;
  std::set<std::string> forms;                // stored forms that were not E.164
  std::map<std::string, std::string> status;  // Kapso id -> the status furthest along
  std::multiset<std::string> app_messages;    // contents of the rows without a Kapso id
  int64_t unread = 0;
  int64_t newest = 0;
  std::string preview;
};

void expect_messages(expected_customer& e, const std::vector<const message_row*>& rows,
                     int64_t stored_unread) {
  int64_t last_person = 0;
  for (auto* m : rows)
    if (m->direction == "outbound" && m->sender_type == "user")
      last_person = std::max(last_person, m->created_at);
  std::set<std::string> unread_ids;
  for (auto* m : rows) {
    if (m->kapso_id.empty()) {
      e.app_messages.insert(m->content);
    } else {
      auto& s = e.status[m->kapso_id];
      if (status_rank(m->status) > status_rank(s))
        s = m->status;
      if (m->direction == "inbound" && m->created_at > last_person)
        unread_ids.insert(m->kapso_id);
    }
    if (m->created_at > e.newest) {
      e.newest = m->created_at;
      e.preview = m->content;
    }
  }
  e.unread = std::min<int64_t>(stored_unread, static_cast<int64_t>(unread_ids.size()));
}

std::map<std::string, expected_customer> expectations(const traffic& t, const tables& before) {
  std::map<std::string, std::vector<const contact_row*>> members;
  for (auto& [id, c] : before.contacts)
    members[customer_of(t, c)].push_back(&c);
  std::map<std::string, expected_customer> out;
  for (auto& [key, rows] : members) {
    std::sort(rows.begin(), rows.end(), [](auto* a, auto* b) {
      return std::tie(a->created_us, a->id) < std::tie(b->created_us, b->id);
    });
    auto& e = out[key];
    e.contact_id = rows.front()->id;
    e.phone = key.substr(key.find('|') + 1);
    std::set<std::string> ids;
    for (auto* c : rows) {
      if (e.name.empty())
        e.name = c->name;
      if (c->phone != e.phone)
        e.forms.insert(c->phone);
      ids.insert(c->id);
    }
    int64_t unread = 0;
    std::set<std::string> conversations;
    for (auto& [id, v] : before.conversations)
      if (ids.count(v.contact_id) != 0) {
        unread += v.unread;
        conversations.insert(id);
      }
    std::vector<const message_row*> messages;
    for (auto& m : before.messages)
      if (conversations.count(m.conversation_id) != 0)
        messages.push_back(&m);
    expect_messages(e, messages, unread);
  }
  return out;
}

// -- the damage the route left -----------------------------------------------------------

struct damage {
  int64_t split_customers = 0;        // one customer, several contacts
  int64_t national_forms = 0;         // contacts stored under a national number
  int64_t split_conversations = 0;    // contacts with several conversations
  int64_t message_copies = 0;         // ids stored more than once
  int64_t copies_apart = 0;           // ... in different conversations
  int64_t stale_previews = 0;         // last_message_at is an arrival time
  int64_t older_previews = 0;         // the preview is not the newest message's
  int64_t statuses = 0;               // messages with a status
  int64_t app_messages = 0;           // rows without a Kapso id
  int64_t counted_twice = 0;          // stored unread above the distinct unread messages
};

damage damage_of(const test_database& db, const traffic& t, const tables& before) {
  damage d;
  std::map<std::string, int> contacts_of;
  for (auto& [id, c] : before.contacts) {
    ++contacts_of[customer_of(t, c)];
    d.national_forms += c.phone.rfind("07700", 0) == 0 ? 1 : 0;
  }
  for (auto& [key, n] : contacts_of)
    d.split_customers += n > 1 ? 1 : 0;
  d.split_conversations = db.count("SELECT count(*) FROM (SELECT contact_id FROM conversations "
                                   "GROUP BY contact_id HAVING count(*) > 1) x");
  d.message_copies = db.count("SELECT count(*) FROM (SELECT kapso_message_id FROM messages "
                              "GROUP BY kapso_message_id HAVING count(*) > 1) x");
  d.copies_apart = db.count("SELECT count(*) FROM (SELECT kapso_message_id FROM messages "
                            "GROUP BY kapso_message_id "
                            "HAVING count(DISTINCT conversation_id) > 1) x");
  d.stale_previews = db.count("SELECT count(*) FROM conversations v WHERE last_message_at > "
                              "(SELECT max(created_at) FROM messages m "
                              "WHERE m.conversation_id = v.id)");
  d.older_previews = db.count(
    "SELECT count(*) FROM conversations v WHERE last_message_preview IS DISTINCT FROM (SELECT "
    "content FROM messages m WHERE m.conversation_id = v.id ORDER BY created_at DESC LIMIT 1)");
  d.statuses = db.count("SELECT count(*) FROM messages WHERE status IN ('delivered', 'read', "
                        "'failed')");
  d.app_messages = db.count("SELECT count(*) FROM messages WHERE kapso_message_id IS NULL");
  d.counted_twice = db.count(
    "SELECT count(*) FROM conversations v WHERE unread_count > (SELECT count(DISTINCT "
    "kapso_message_id) FROM messages m WHERE m.conversation_id = v.id "
    "AND direction = 'inbound')");
  return d;
}

void require_every_damage(const damage& d, bool exact_duplicate_contacts,
                          const test_database& db) {
  BOOST_TEST_MESSAGE("damage: " << d.split_customers << " customers split, "
                     << d.national_forms << " national forms, " << d.split_conversations
                     << " split conversations, " << d.message_copies << " ids stored twice ("
                     << d.copies_apart << " apart), " << d.stale_previews
                     << " arrival-time previews, " << d.older_previews
                     << " previews of an older message, " << d.statuses << " statuses, "
                     << d.app_messages << " rows without id, " << d.counted_twice
                     << " counts above the messages");
  BOOST_TEST_REQUIRE(d.split_customers > 0);
  BOOST_TEST_REQUIRE(d.national_forms > 0);
  BOOST_TEST_REQUIRE(d.split_conversations > 0);
  BOOST_TEST_REQUIRE(d.message_copies > 0);
  BOOST_TEST_REQUIRE(d.copies_apart > 0);
  BOOST_TEST_REQUIRE(d.stale_previews > 0);
  BOOST_TEST_REQUIRE(d.older_previews > 0);
  BOOST_TEST_REQUIRE(d.statuses > 0);
  BOOST_TEST_REQUIRE(d.app_messages > 0);
  BOOST_TEST_REQUIRE(d.counted_twice > 0);
  if (exact_duplicate_contacts)
    BOOST_TEST_REQUIRE(db.count("SELECT count(*) FROM (SELECT 1 FROM contacts GROUP BY "
                                "workspace_id, phone HAVING count(*) > 1) x") > 0);
}

// -- the rules after the migration -------------------------------------------------------

void check_customer(const std::string& key, const expected_customer& e, const tables& after,
                    const std::string& conversation_id) {
  BOOST_TEST_CONTEXT("customer " << key) {
    auto& c = after.contacts.at(e.contact_id);
    BOOST_TEST(c.phone == e.phone);
    BOOST_TEST(c.name == e.name);
    std::string forms = "[";
    for (auto& f : e.forms)
      forms += (forms.size() > 1 ? ", \"" : "\"") + f + "\"";
    BOOST_TEST(c.forms == forms + "]");
    auto& v = after.conversations.at(conversation_id);
    BOOST_TEST(v.unread == e.unread);
    BOOST_TEST(v.last_message_at == e.newest);
    BOOST_TEST(v.preview == e.preview);
    std::map<std::string, std::string> status;
    std::multiset<std::string> app_messages;
    for (auto& m : after.messages) {
      if (m.conversation_id != conversation_id)
        continue;
      if (m.kapso_id.empty())
        app_messages.insert(m.content);
      else
        BOOST_TEST(status.emplace(m.kapso_id, m.status).second, m.kapso_id << " twice");
    }
    BOOST_TEST((status == e.status), "messages or statuses differ");
    BOOST_TEST((app_messages == e.app_messages), "the inbox application's messages differ");
  }
}

void check_rules(const traffic& t, const tables& before, const tables& after) {
  auto expected = expectations(t, before);
  BOOST_TEST(after.contacts.size() == expected.size());
  std::map<std::string, std::string> conversation_of; // contact -> its one conversation
  for (auto& [id, v] : after.conversations)
    BOOST_TEST(conversation_of.emplace(v.contact_id, id).second, "two conversations of "
                                                                   << v.contact_id);
  size_t messages = 0;
  for (auto& [key, e] : expected) {
    BOOST_TEST_REQUIRE(after.contacts.count(e.contact_id) == 1u, key << ": kept contact gone");
    BOOST_TEST_REQUIRE(conversation_of.count(e.contact_id) == 1u, key << ": no conversation");
    check_customer(key, e, after, conversation_of.at(e.contact_id));
    messages += e.status.size() + e.app_messages.size();
  }
  BOOST_TEST(after.messages.size() == messages);
  BOOST_TEST(after.notes.size() == before.notes.size());
  for (auto& [id, contact] : before.notes) {
    auto key = customer_of(t, before.contacts.at(contact));
    BOOST_TEST(after.notes.at(id) == expected.at(key).contact_id);
  }
  std::map<std::string, std::string> kapso_id_of;
  for (auto& m : before.messages)
    kapso_id_of[m.id] = m.kapso_id;
  std::map<std::string, std::string> row_of;
  for (auto& m : after.messages)
    row_of[m.kapso_id] = m.id;
  BOOST_TEST(after.stars.size() == before.stars.size());
  for (auto& [id, message] : before.stars)
    BOOST_TEST(after.stars.at(id) == row_of.at(kapso_id_of.at(message)));
}

// Every message event of the traffic is stored, once.
void check_traffic_stored(const traffic& t, const tables& after) {
  std::map<std::string, int> stored;
  for (auto& m : after.messages)
    if (!m.kapso_id.empty())
      ++stored[m.kapso_id];
  for (auto& ev : t.events)
    if (ev.what == route_event::kind::inbound || ev.what == route_event::kind::echo)
      BOOST_TEST(stored[ev.message_id] == 1, ev.message_id);
}

void check_unique_keys(const test_database& db) {
  for (auto index : {"uq_conversations_workspace_contact", "uq_messages_workspace_kapso_message"})
    BOOST_TEST(db.count("SELECT count(*) FROM pg_index WHERE indisvalid AND indisunique "
                        "AND indexrelid = to_regclass($1)",
                        std::string{index}) == 1,
               index);
  BOOST_TEST(db.count("SELECT count(*) FROM (SELECT 1 FROM contacts GROUP BY workspace_id, "
                      "phone HAVING count(*) > 1) x") == 0);
}

// A route database built by the model: every kind of damage present, checked.
struct route_database {
  explicit route_database(bool contacts_unique, uint32_t seed = 17) : db(false) {
    db.exec_script(route_schema(contacts_unique));
    t = make_traffic(db, seed);
    route_model model{db.url()};
    model.run(t.events, seed, 6, 0.35);
    run_races(model, t, db);
    BOOST_TEST_MESSAGE("route model: " << model.deliveries() << " deliveries, "
                                       << model.failures() << " answered 500");
    before = read_tables(db);
    require_every_damage(damage_of(db, t, before), !contacts_unique, db);
  }

  test_database db;
  traffic t;
  tables before;
};

process_result migrate(const test_database& db, const std::string& command = "migrate") {
  return run_cli({command, region_option}, {{"DATABASE_URL", db.url()}}, 120s);
}

// Retries of every message id the route stored go through the real server as duplicates,
// and a new message from a merged customer, in a form of the number the route used, joins
// its conversation and counts one unread.
void deliver_after_migration(const route_database& r) {
  server_process server{r.db.url(), server_options{{region_option}, {}, "/readyz", std::nullopt,
                                                   "route-migrated"}};
  http_client client{server.port()};
  std::vector<json> retries;
  for (auto& ev : r.t.events)
    if (ev.what == route_event::kind::inbound && ev.workspace_id == r.t.workspace_ids[0]) {
      kapso_message m;
      m.id = ev.message_id;
      m.phone_number_id = "771000000000001";
      m.timestamp = ev.timestamp;
      m.phone = ev.phone;
      m.contact_name = ev.name;
      m.text = ev.text;
      retries.push_back(kapso_event(m));
    }
  auto unread_before = r.db.value("SELECT sum(unread_count)::text FROM conversations");
  auto answer = post_webhook(client, kapso_batch(retries).dump());
  BOOST_TEST_REQUIRE(answer.status == 200, answer.body);
  BOOST_TEST(counts_of(answer).duplicates == static_cast<int64_t>(retries.size()));
  BOOST_TEST(counts_of(answer).accepted == 0);
  BOOST_TEST(r.db.value("SELECT sum(unread_count)::text FROM conversations") == unread_before);

  auto contacts = r.db.count("SELECT count(*) FROM contacts");
  auto conversation = r.db.value("SELECT v.id::text || '|' || v.unread_count FROM conversations v "
                                 "JOIN contacts c ON c.id = v.contact_id "
                                 "WHERE c.phone = '+447700900001'");
  BOOST_TEST_REQUIRE(conversation.has_value());
  kapso_message fresh;
  fresh.id = "wamid.after.switch";
  fresh.phone_number_id = "771000000000001";
  fresh.timestamp = base_time + 100000;
  fresh.phone = "07700 900001";
  fresh.text = "first message through kapso-ingest";
  auto accepted = post_webhook(client, kapso_event(fresh).dump());
  BOOST_TEST_REQUIRE(accepted.status == 200, accepted.body);
  BOOST_TEST(counts_of(accepted).accepted == 1);
  BOOST_TEST(r.db.count("SELECT count(*) FROM contacts") == contacts);
  auto id = conversation->substr(0, conversation->find('|'));
  auto unread = std::stoll(conversation->substr(conversation->find('|') + 1));
  BOOST_TEST(r.db.value("SELECT unread_count || '|' || last_message_preview || '|' || "
                        "extract(epoch FROM last_message_at)::bigint FROM conversations "
                        "WHERE id = $1::uuid",
                        id)
             == std::optional<std::string>{std::to_string(unread + 1) + "|" + fresh.text + "|"
                                           + std::to_string(fresh.timestamp)});
}

// What the route writes between the migration and the switch: a customer it knows under
// another form of the number again, a new one under bare digits, and the counts it drifts.
std::vector<route_event> late_route_traffic(const traffic& t) {
  std::vector<route_event> out;
  for (int i = 0; i < 4; ++i) {
    route_event ev;
    ev.workspace_id = t.workspace_ids[0];
    ev.phone = i % 2 == 0 ? "07700 900001" : "15550000077";
    ev.name = i < 2 ? std::optional<std::string>{} : std::optional<std::string>{"Late"};
    ev.message_id = "wamid.late." + std::to_string(i);
    ev.timestamp = base_time + 200000 + i;
    ev.text = "late " + std::to_string(i);
    out.push_back(ev);
    out.push_back(ev); // and Kapso's retry
  }
  return out;
}

// Deliveries through the server, one message each, from a thread while repair-route runs.
std::vector<int> deliver_during_repair(uint16_t port, std::atomic<bool>& stop) {
  std::vector<int> statuses;
  http_client client{port};
  for (int i = 0; !stop.load() || i < 5; ++i) {
    kapso_message m;
    m.id = "wamid.during." + std::to_string(i);
    m.phone_number_id = "771000000000001";
    m.timestamp = base_time + 300000 + i;
    m.phone = i % 2 == 0 ? "+447700900001" : "+15550000077";
    m.text = "during repair " + std::to_string(i);
    statuses.push_back(post_webhook(client, kapso_event(m).dump()).status);
  }
  return statuses;
}

void check_one_customer_per_number(const test_database& db) {
  BOOST_TEST(db.count("SELECT count(*) FROM contacts WHERE phone NOT LIKE '+%'") == 0);
  BOOST_TEST(db.count("SELECT count(*) FROM (SELECT 1 FROM conversations GROUP BY contact_id "
                      "HAVING count(*) > 1) x") == 0);
  BOOST_TEST(db.count("SELECT count(*) FROM conversations v WHERE last_message_at IS DISTINCT "
                      "FROM (SELECT max(created_at) FROM messages m "
                      "WHERE m.conversation_id = v.id)") == 0);
  BOOST_TEST(db.count("SELECT count(*) FROM conversations v WHERE unread_count > (SELECT "
                      "count(*) FROM messages m WHERE m.conversation_id = v.id "
                      "AND direction = 'inbound')") == 0);
}

// Everything a second repair could change, as text.
std::string table_dump(const test_database& db) {
  std::string out;
  for (auto query : {"SELECT string_agg(concat_ws('|', id, phone, name, metadata), ',' "
                     "ORDER BY id) FROM contacts",
                     "SELECT string_agg(concat_ws('|', id, contact_id, unread_count, "
                     "last_message_at, last_message_preview), ',' ORDER BY id) FROM conversations",
                     "SELECT string_agg(concat_ws('|', id, conversation_id, status), ',' "
                     "ORDER BY id) FROM messages"})
    out += db.value(query).value_or("") + "\n";
  return out;
}

} // namespace

BOOST_AUTO_TEST_SUITE(route_migration)

BOOST_AUTO_TEST_CASE(the_routes_database_is_repaired_and_served) {
  route_database r{true};
  auto migrated = migrate(r.db);
  BOOST_TEST_REQUIRE(migrated.exit_code == 0, migrated.output);
  BOOST_TEST(migrated.output.find("route data repaired") != std::string::npos, migrated.output);
  auto after = read_tables(r.db);
  check_rules(r.t, r.before, after);
  check_traffic_stored(r.t, after);
  check_unique_keys(r.db);

  auto dump = table_dump(r.db);
  auto again = migrate(r.db);
  BOOST_TEST_REQUIRE(again.exit_code == 0, again.output);
  BOOST_TEST(again.output.find("schema is up to date") != std::string::npos, again.output);
  auto repaired = migrate(r.db, "repair-route");
  BOOST_TEST_REQUIRE(repaired.exit_code == 0, repaired.output);
  BOOST_TEST(repaired.output.find("0 phones rewritten to E.164, 0 contacts and 0 conversations "
                                  "merged, 0 message copies merged, 0 conversations recounted")
               != std::string::npos,
             repaired.output);
  BOOST_TEST(table_dump(r.db) == dump);

  deliver_after_migration(r);
}

BOOST_AUTO_TEST_CASE(a_migration_cut_short_completes_when_run_again) {
  // Contacts without a unique key: the route inserted one phone's contact twice too.
  route_database r{false, 23};
  // The run fails once customers are merged, at the first message copy it deletes.
  r.db.exec_script("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$ BEGIN RAISE EXCEPTION 'cut short'; END $$; "
                   "CREATE TRIGGER cut BEFORE DELETE ON messages "
                   "FOR EACH ROW EXECUTE FUNCTION refuse();");
  auto cut = migrate(r.db);
  BOOST_TEST_REQUIRE(cut.exit_code != 0, cut.output);
  BOOST_TEST(cut.output.find("cut short") != std::string::npos, cut.output);
  BOOST_TEST(r.db.count("SELECT count(*) FROM kapso_schema_migrations "
                        "WHERE name LIKE '0002%'") == 0);
  // Nothing lost meanwhile: every message row is still there.
  BOOST_TEST(r.db.count("SELECT count(*) FROM messages")
             == static_cast<int64_t>(r.before.messages.size()));
  r.db.exec_script("DROP TRIGGER cut ON messages");
  auto completed = migrate(r.db);
  BOOST_TEST_REQUIRE(completed.exit_code == 0, completed.output);
  auto after = read_tables(r.db);
  check_rules(r.t, r.before, after);
  check_traffic_stored(r.t, after);
  check_unique_keys(r.db);
}

BOOST_AUTO_TEST_CASE(a_long_transaction_delays_the_migration_without_queueing_the_inbox) {
  route_database r{true, 29};
  // The inbox application reads messages in a transaction that lasts 10 s.
  pqxx::connection holder{r.db.url()};
  auto long_read = std::make_unique<pqxx::work>(holder);
  long_read->exec("SELECT count(*) FROM messages");
  auto started = std::chrono::steady_clock::now();
  std::chrono::milliseconds queued{0};
  std::thread inbox([&] {
    std::this_thread::sleep_for(1s);
    pqxx::connection reader{r.db.url()};
    pqxx::nontransaction tx{reader};
    auto before = std::chrono::steady_clock::now();
    tx.exec("SELECT count(*) FROM messages");
    queued = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - before);
    std::this_thread::sleep_until(started + 10s);
    long_read->commit();
  });
  auto migrated = migrate(r.db);
  inbox.join();
  BOOST_TEST_REQUIRE(migrated.exit_code == 0, migrated.output);
  BOOST_TEST(migrated.output.find("a table lock is held by another transaction")
               != std::string::npos,
             migrated.output);
  // Queued behind the migration's ALTER TABLE for its 5 s at most, not the 10 s.
  BOOST_TEST(queued.count() < 6000, queued.count() << " ms");
  auto after = read_tables(r.db);
  check_rules(r.t, r.before, after);
}

BOOST_AUTO_TEST_CASE(repair_route_fixes_what_the_route_wrote_after_the_migration) {
  route_database r{true, 31};
  auto migrated = migrate(r.db);
  BOOST_TEST_REQUIRE(migrated.exit_code == 0, migrated.output);
  route_model late{r.db.url()};
  late.run(late_route_traffic(r.t), 31, 3, 0.0);
  BOOST_TEST_REQUIRE(r.db.count("SELECT count(*) FROM contacts WHERE phone NOT LIKE '+%'") == 2);

  server_process server{r.db.url(), server_options{{region_option}, {}, "/readyz", std::nullopt,
                                                   "route-repair"}};
  std::atomic<bool> stop{false};
  std::vector<int> statuses;
  std::thread kapso([&] { statuses = deliver_during_repair(server.port(), stop); });
  auto repaired = migrate(r.db, "repair-route");
  stop = true;
  kapso.join();
  BOOST_TEST_REQUIRE(repaired.exit_code == 0, repaired.output);
  // How many rows it merged depends on whether the server created "+15550000077" before
  // the repair read the contacts: the outcome below does not.
  BOOST_TEST(repaired.output.find("route data repaired") != std::string::npos, repaired.output);
  BOOST_TEST_MESSAGE(statuses.size() << " deliveries during repair-route; "
                     << repaired.output.substr(repaired.output.rfind("route data repaired")));
  for (auto status : statuses)
    BOOST_TEST(status == 200);
  check_one_customer_per_number(r.db);
  // Every message once, the late ones and those delivered during the repair in the
  // conversation of their customer.
  BOOST_TEST(r.db.count("SELECT count(*) FROM (SELECT 1 FROM messages WHERE kapso_message_id "
                        "IS NOT NULL GROUP BY kapso_message_id HAVING count(*) > 1) x") == 0);
  BOOST_TEST(r.db.count("SELECT count(*) FROM messages m JOIN conversations v "
                        "ON v.id = m.conversation_id JOIN contacts c ON c.id = v.contact_id "
                        "WHERE m.kapso_message_id ~ '^wamid[.](late|during)[.]' "
                        "AND c.phone NOT IN ('+447700900001', '+15550000077')") == 0);
  BOOST_TEST(r.db.count("SELECT count(*) FROM messages WHERE kapso_message_id LIKE "
                        "'wamid.late.%'") == 4);
  BOOST_TEST(r.db.count("SELECT count(*) FROM messages WHERE kapso_message_id LIKE "
                        "'wamid.during.%'") == static_cast<int64_t>(statuses.size()));
}

BOOST_AUTO_TEST_CASE(a_database_past_migration_0002_is_left_as_it_is) {
  test_database db;
  auto ws = db.insert_workspace();
  // What the repair would change on the route's database: a phone that is not E.164, a
  // count above the messages (the inbox application's business), a preview by arrival.
  auto contact = db.value("INSERT INTO contacts (workspace_id, phone) VALUES ($1::uuid, "
                          "'15550000001') RETURNING id::text",
                          ws.id);
  auto conversation = db.value("INSERT INTO conversations (workspace_id, contact_id, "
                               "unread_count, last_message_at, last_message_preview) VALUES "
                               "($1::uuid, $2::uuid, 5, now(), 'x') RETURNING id::text",
                               ws.id, *contact);
  db.query("INSERT INTO messages (conversation_id, workspace_id, direction, sender_type, "
           "content, kapso_message_id, created_at) VALUES ($1::uuid, $2::uuid, 'inbound', "
           "'contact', 'y', 'wamid.past', to_timestamp(1700000000))",
           *conversation, ws.id);
  auto dump = table_dump(db);
  auto migrated = migrate(db);
  BOOST_TEST_REQUIRE(migrated.exit_code == 0, migrated.output);
  BOOST_TEST(migrated.output.find("schema is up to date") != std::string::npos, migrated.output);
  BOOST_TEST(table_dump(db) == dump);
}

BOOST_AUTO_TEST_SUITE_END()
