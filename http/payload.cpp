// Kapso v2 single/batch and Meta-forward webhook bodies -> parsed events.
#include "http/payload.hpp"

#include <cctype>
#include <initializer_list>

#include "domain/contact_key.hpp"
#include "http/json_fields.hpp"
#include "http/message_content.hpp"
#include "http/phone.hpp"
#include "http/timestamp.hpp"

namespace kapso {

namespace {

using json = nlohmann::json;
using namespace json_fields;

constexpr std::string_view type_received = "whatsapp.message.received";
constexpr std::string_view type_sent = "whatsapp.message.sent";
constexpr std::string_view status_type_prefix = "whatsapp.message.";

constexpr std::string_view v1_error
  = "Kapso v1 payloads (whatsapp_config) are not supported; send payload version v2";

// What an event type string asks for, and the message status it implies.
struct classification {
  event_kind kind;
  const char* status;
};

classification classify(std::string_view type) {
  if (type == type_received)
    return {event_kind::message_received, "received"};
  if (type == type_sent)
    return {event_kind::message_sent, "sent"};
  if (type == "whatsapp.message.delivered")
    return {event_kind::message_status, "delivered"};
  if (type == "whatsapp.message.read")
    return {event_kind::message_status, "read"};
  if (type == "whatsapp.message.failed")
    return {event_kind::message_status, "failed"};
  if (type == "whatsapp.conversation.created")
    return {event_kind::conversation_created, ""};
  if (type == "whatsapp.conversation.ended")
    return {event_kind::conversation_ended, ""};
  if (type == "whatsapp.conversation.inactive")
    return {event_kind::conversation_inactive, ""};
  return {event_kind::unknown, ""};
}

bool is_delivery_status(std::string_view status) {
  return status == "sent" || status == "delivered" || status == "read"
         || status == "failed";
}

std::string first_non_empty(std::initializer_list<std::string> candidates) {
  for (const auto& candidate : candidates)
    if (!candidate.empty())
      return candidate;
  return {};
}

std::string trimmed(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t'))
    text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t'))
    text.remove_suffix(1);
  return std::string{text};
}

bool header_flag(std::string_view value) {
  auto text = trimmed(value);
  for (auto& c : text)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text == "true" || text == "1";
}

std::string digits_of(std::string_view text) {
  std::string out;
  for (auto c : text)
    if (c >= '0' && c <= '9')
      out += c;
  return out;
}

int64_t timestamp_of(const field& value) {
  if (!value)
    return 0;
  switch (value->type()) {
    case element_type::UINT64:
      return epoch_seconds(static_cast<int64_t>(value->get_uint64().value_unsafe()));
    case element_type::INT64: return epoch_seconds(value->get_int64().value_unsafe());
    case element_type::DOUBLE:
      return epoch_seconds(static_cast<int64_t>(value->get_double().value_unsafe()));
    case element_type::STRING: return unix_seconds(std::string{value->get_string().value_unsafe()});
    default: return 0;
  }
}

// The customer, from candidate fields in order of preference.
struct identity_sources {
  std::vector<std::string> phones;
  std::vector<std::string> bsuids;
  std::vector<std::string> usernames;
};

void set_identity(event& ev, const identity_sources& sources,
                  const parse_options& options) {
  for (const auto& raw : sources.phones) {
    if (raw.empty())
      continue;
    ev.contact_phone = normalise_phone(raw, options.default_region);
    if (!ev.contact_phone.empty())
      break;
  }
  for (const auto& bsuid : sources.bsuids)
    if (!bsuid.empty()) {
      ev.contact_bsuid = bsuid;
      break;
    }
  for (const auto& username : sources.usernames)
    if (!username.empty()) {
      ev.contact_username = username;
      break;
    }
  ev.contact_key = contact_key_of(ev.contact_phone, ev.contact_bsuid, ev.contact_username);
}

// Content, preview, type, timestamp and metadata of a message object.
// `extra` holds envelope fields (origin, conversation ids) for the metadata.
void set_content(event& ev, message_content content, const json& extra) {
  ev.message_type = std::move(content.type);
  ev.content = std::move(content.content);
  ev.preview = std::move(content.preview);
  ev.media_url = std::move(content.media_url);
  for (const auto& [key, value] : extra.items())
    content.metadata[key] = value;
  ev.metadata_json = compact(content.metadata);
}

void set_message(event& ev, const element& message, const json& extra) {
  ev.timestamp = timestamp_of(value_at(message, "timestamp"));
  set_content(ev, describe_message(message), extra);
}

// -- edits, deletions and account changes ------------------------------------------

std::string read_edit(event& ev, const element& message, const json& extra) {
  ev.original_message_id = text_at(object_at(message, "edit"), "original_message_id");
  if (ev.original_message_id.empty())
    return "edit without edit.original_message_id";
  auto version = describe_edit(message);
  if (!version)
    return "edit without edit.message (the new version)";
  ev.kind = event_kind::message_edit;
  set_content(ev, std::move(*version), extra);
  return {};
}

std::string read_revoke(event& ev, const element& message) {
  ev.original_message_id = text_at(object_at(message, "revoke"), "original_message_id");
  if (ev.original_message_id.empty())
    return "revoke without revoke.original_message_id";
  ev.kind = event_kind::message_revoke;
  ev.message_type = "revoke";
  return {};
}

bool is_number_change(std::string_view system_type) {
  return system_type == "user_changed_number" || system_type == "customer_changed_number";
}

bool is_identity_change(std::string_view system_type) {
  return system_type == "customer_identity_changed" || system_type == "user_identity_changed";
}

// The event type under which a system notice we do not handle is ignored,
// so each kind is logged once by name.
std::string unhandled_system_type(const element& message) {
  auto type = text_at(object_at(message, "system"), "type");
  if (text_at(message, "type") != "system" || is_number_change(type) || is_identity_change(type))
    return {};
  return "system." + (type.empty() ? std::string{"unknown"} : type);
}

// System notices about the customer's account.
std::string read_system(event& ev, const element& message, const parse_options& options) {
  auto system = object_at(message, "system");
  auto type = text_at(system, "type");
  // system.body is not kept: it spells out the customer's numbers.
  ev.message_type = "system";
  if (is_number_change(type)) {
    auto wa_id = text_at(system, "wa_id");
    ev.new_contact_phone = wa_id.empty() ? std::string{}
                                         : normalise_phone(wa_id, options.default_region);
    if (ev.new_contact_phone.empty())
      return type + " without a usable system.wa_id (the new number)";
    ev.kind = event_kind::contact_number_changed;
    return {};
  }
  if (is_identity_change(type)) {
    auto identity = object_at(message, "identity");
    if (!identity)
      identity = object_at(system, "identity");
    ev.kind = event_kind::contact_identity_changed;
    ev.identity_hash = text_at(identity, "hash");
    json metadata = json::object();
    if (identity)
      metadata["identity"] = to_json(*identity);
    ev.metadata_json = compact(metadata);
    return {};
  }
  ev.kind = event_kind::unknown;
  ev.event_type = unhandled_system_type(message);
  return {};
}

// A message event's content, or — for the types that change what is stored
// instead of adding to it — what it changes. Returns why the event is
// malformed, or "".
std::string read_message_or_change(event& ev, const element& message, const json& extra,
                                   const parse_options& options) {
  auto type = text_at(message, "type");
  if (type != "edit" && type != "revoke" && type != "system") {
    set_message(ev, message, extra);
    return {};
  }
  ev.timestamp = timestamp_of(value_at(message, "timestamp"));
  if (type == "edit")
    return read_edit(ev, message, extra);
  if (type == "revoke")
    return read_revoke(ev, message);
  return read_system(ev, message, options);
}

// Kapso puts a failed message's error in one of three places; null when
// there is none.
json kapso_error(const element& message) {
  auto kapso = object_at(message, "kapso");
  if (auto error = value_at(kapso, "error")) {
    if (holds(error, element_type::OBJECT) || holds(error, element_type::ARRAY))
      return to_json(*error);
    if (holds(error, element_type::STRING))
      return json{{"message", text_of(error)}};
  }
  if (auto errors = array_at(message, "errors"); size_of(errors) > 0)
    return to_json(*errors);
  // The newest status carrying errors is the one that failed.
  auto statuses = elements_of(array_at(kapso, "statuses"));
  for (auto i = statuses.rbegin(); i != statuses.rend(); ++i)
    if (auto errors = array_at(*i, "errors"); size_of(errors) > 0)
      return to_json(*errors);
  return nullptr;
}

// The event type of a Kapso v2 event without one: its message's direction.
std::optional<std::string> type_from_direction(const field& kapso) {
  auto direction = text_at(kapso, "direction");
  if (direction == "inbound")
    return std::string{type_received};
  if (direction == "outbound")
    return std::string{type_sent};
  return std::nullopt;
}

// Where a Kapso v2 event names its customer: the conversation, and the
// message's sender (inbound) or recipient (outbound).
identity_sources kapso_identity_sources(const field& conversation, const field& message,
                                        bool inbound) {
  identity_sources sources;
  sources.phones.push_back(text_at(conversation, "phone_number"));
  sources.bsuids.push_back(text_at(conversation, "business_scoped_user_id"));
  sources.bsuids.push_back(text_at(message, "business_scoped_user_id"));
  if (inbound) {
    sources.phones.push_back(text_at(message, "from"));
    sources.bsuids.push_back(text_at(message, "from_user_id"));
  } else {
    sources.phones.push_back(text_at(message, "to"));
    sources.phones.push_back(text_at(message, "recipient_id"));
    sources.bsuids.push_back(text_at(message, "to_user_id"));
    sources.bsuids.push_back(text_at(message, "recipient_user_id"));
  }
  sources.usernames = {text_at(conversation, "username"), text_at(message, "username")};
  return sources;
}

// Direction, sender and status of a message event; `status` is the one its
// event type implies.
void set_kapso_direction(event& ev, const field& kapso, const std::string& status) {
  if (ev.kind == event_kind::message_received) {
    ev.direction = "inbound";
    ev.sender_type = "contact";
    ev.status = status;
    return;
  }
  ev.direction = "outbound";
  // Sent from the WhatsApp Business app means a person typed it.
  ev.sender_type = text_at(kapso, "origin") == "business_app" ? "user" : "bot";
  auto kapso_status = text_at(kapso, "status");
  if (ev.kind == event_kind::message_status)
    ev.status = status;
  else
    ev.status = is_delivery_status(kapso_status) ? kapso_status : std::string{"sent"};
}

// The message part of a Kapso v2 message event: its status error, the
// metadata Kapso adds, then the content (or the change it describes).
std::string read_kapso_message(event& ev, const element& message, const field& kapso,
                               const parse_options& options) {
  json error = ev.status == "failed" ? kapso_error(message) : json{};
  if (!error.is_null())
    ev.status_error_json = compact(error);
  json extra = json::object();
  if (!ev.whatsapp_conversation_id.empty())
    extra["whatsapp_conversation_id"] = ev.whatsapp_conversation_id;
  if (auto origin = text_at(kapso, "origin"); !origin.empty())
    extra["origin"] = origin;
  // A message first seen already failed keeps its error where a failed
  // status would have put it.
  if (ev.kind == event_kind::message_sent && !error.is_null())
    extra["error"] = std::move(error);
  if (ev.kind == event_kind::message_status) {
    set_message(ev, message, extra);
    return {};
  }
  return read_message_or_change(ev, message, extra, options);
}

// Reads one Kapso v2 event object (the whole body, or one batch element).
// Returns why the event is malformed, or "" when `ev` is filled.
std::string read_kapso_event(const element& obj, std::string type,
                             const std::string& fallback_phone_number_id,
                             const parse_options& options, event& ev) {
  auto message = object_at(obj, "message");
  auto conversation = object_at(obj, "conversation");
  auto kapso = object_at(message, "kapso");
  if (type.empty()) {
    auto from_direction = type_from_direction(kapso);
    if (!from_direction)
      return "no event type (X-Webhook-Event, event, type) and "
             "message.kapso.direction is neither inbound nor outbound";
    type = std::move(*from_direction);
  }
  auto [kind, status] = classify(type);
  ev.kind = kind;
  ev.event_type = std::move(type);
  ev.phone_number_id = first_non_empty({text_at(obj, "phone_number_id"),
                                        text_at(conversation, "phone_number_id"),
                                        fallback_phone_number_id});
  if (kind == event_kind::unknown)
    return {};
  if (ev.phone_number_id.empty())
    return "phone_number_id missing (top level and conversation)";
  if (is_message_or_status(kind)) {
    if (!message)
      return ev.event_type + " without a message object";
    ev.message_id = text_at(message, "id");
    if (ev.message_id.empty())
      return ev.event_type + " without message.id";
  }
  set_identity(ev,
               kapso_identity_sources(conversation, message,
                                      kind == event_kind::message_received),
               options);
  if (ev.contact_key.empty() && kind != event_kind::conversation_inactive)
    return ev.event_type + " without a customer identity (phone number, "
                           "business_scoped_user_id or username)";
  ev.contact_name = first_non_empty({text_at(kapso, "contact_name"),
                                     text_at(conversation, "contact_name"),
                                     text_at(object_at(conversation, "kapso"),
                                             "contact_name")});
  ev.whatsapp_conversation_id = first_non_empty(
    {text_at(kapso, "whatsapp_conversation_id"), text_at(conversation, "id")});
  if (!is_message_or_status(kind))
    return {};
  set_kapso_direction(ev, kapso, status);
  return read_kapso_message(ev, *message, kapso, options);
}

// -- Meta forward ---------------------------------------------------------------

// Collects events from Meta's raw webhook; malformed ones are counted.
class meta_reader {
public:
  meta_reader(const parse_options& options, parse_result& result)
    : options_(options), result_(result) {
    // nop
  }

  void read(const field& entries) {
    size_t entry_index = 0;
    for (const auto& entry : elements_of(entries)) {
      auto where = "entry[" + std::to_string(entry_index++) + "]";
      auto changes = array_at(entry, "changes");
      if (!changes) {
        skip(where, "no changes array");
        continue;
      }
      size_t change_index = 0;
      for (const auto& change : elements_of(changes))
        read_change(change, where + ".changes[" + std::to_string(change_index++) + "]");
    }
  }

private:
  void skip(const std::string& where, const std::string& why) {
    ++result_.parsed.malformed;
    result_.skipped.push_back(where + ": " + why);
  }

  void read_change(const element& change, const std::string& where) {
    auto field = text_at(change, "field");
    auto value = object_at(change, "value");
    if (!value) {
      skip(where, "no value object");
      return;
    }
    auto metadata = object_at(value, "metadata");
    change_scope scope{value, text_at(metadata, "phone_number_id"),
                       digits_of(text_at(metadata, "display_phone_number")),
                       array_at(value, "contacts")};
    bool echo_field = field == "message_echoes" || field == "smb_message_echoes";
    if (field != "messages" && !echo_field) {
      // Template, account and quality updates are not inbox events: counted
      // as ignored so they show up in metrics.
      event ev;
      ev.kind = event_kind::unknown;
      ev.event_type = field.empty() ? std::string{"meta.unknown"} : field;
      ev.phone_number_id = scope.phone_number_id;
      result_.parsed.events.push_back(std::move(ev));
      return;
    }
    for (auto key : {"messages", "message_echoes"})
      if (auto messages = array_at(value, key)) {
        size_t index = 0;
        for (const auto& message : elements_of(messages))
          read_message(scope, message,
                       echo_field || std::string_view{key} == "message_echoes",
                       where + "." + key + "[" + std::to_string(index++) + "]");
      }
    if (auto statuses = array_at(value, "statuses")) {
      size_t index = 0;
      for (const auto& status : elements_of(statuses))
        read_status(scope, status, where + ".statuses[" + std::to_string(index++) + "]");
    }
  }

  // What every event of one change shares.
  struct change_scope {
    json_fields::field value;
    std::string phone_number_id;
    std::string display_digits; // the business number, digits only
    json_fields::field contacts;
  };

  // The contacts[] entry for a customer: matched by wa_id or user id, else
  // the first one (Meta sends one contact per message in practice).
  static json_fields::field find_contact(const change_scope& scope, const std::string& wa_id,
                                         const std::string& user_id) {
    auto contacts = elements_of(scope.contacts);
    if (contacts.empty())
      return std::nullopt;
    auto wanted = digits_of(wa_id);
    for (const auto& contact : contacts) {
      if (!wanted.empty() && digits_of(text_at(contact, "wa_id")) == wanted)
        return contact;
      if (!user_id.empty() && text_at(contact, "user_id") == user_id)
        return contact;
    }
    const auto& first = contacts.front();
    return first.type() == element_type::OBJECT ? json_fields::field{first} : std::nullopt;
  }

  void read_message(const change_scope& scope, const element& message, bool echo_field,
                    const std::string& where) {
    if (message.type() != element_type::OBJECT) {
      skip(where, "message is not an object");
      return;
    }
    auto from = text_at(message, "from");
    // Meta reports messages sent from the business number itself (coexistence
    // with the WhatsApp Business app) as echoes.
    bool echo = echo_field
                || (!scope.display_digits.empty() && digits_of(from) == scope.display_digits);
    event ev;
    ev.kind = echo ? event_kind::message_sent : event_kind::message_received;
    ev.event_type = echo ? type_sent : type_received;
    ev.phone_number_id = scope.phone_number_id;
    if (ev.phone_number_id.empty()) {
      skip(where, "no metadata.phone_number_id");
      return;
    }
    ev.message_id = text_at(message, "id");
    if (ev.message_id.empty()) {
      skip(where, "message without id");
      return;
    }
    // Notices such as a changed business-scoped id may name no customer.
    if (auto system_type = unhandled_system_type(message); !system_type.empty()) {
      ev.kind = event_kind::unknown;
      ev.event_type = std::move(system_type);
      result_.parsed.events.push_back(std::move(ev));
      return;
    }
    auto customer = echo ? text_at(message, "to") : from;
    // Some coexistence echoes name the business as `to` and the customer as
    // `from`.
    if (echo_field && !scope.display_digits.empty()
        && digits_of(customer) == scope.display_digits && digits_of(from) != scope.display_digits)
      customer = from;
    auto customer_user_id = echo ? first_non_empty({text_at(message, "to_user_id"),
                                                    text_at(message, "recipient_user_id")})
                                 : text_at(message, "from_user_id");
    auto contact = find_contact(scope, customer, customer_user_id);
    identity_sources sources;
    sources.phones = {customer, text_at(contact, "wa_id")};
    sources.bsuids = {customer_user_id, text_at(contact, "user_id")};
    auto profile = object_at(contact, "profile");
    sources.usernames = {text_at(profile, "username"), text_at(contact, "username")};
    set_identity(ev, sources, options_);
    if (ev.contact_key.empty()) {
      skip(where, "message without a customer identity");
      return;
    }
    ev.contact_name = text_at(profile, "name");
    json extra = json::object();
    if (echo_field)
      extra["origin"] = "business_app";
    if (auto why = read_message_or_change(ev, message, extra, options_); !why.empty()) {
      skip(where, why);
      return;
    }
    if (echo) {
      ev.direction = "outbound";
      ev.sender_type = echo_field ? "user" : "bot";
      ev.status = "sent";
    } else {
      ev.direction = "inbound";
      ev.sender_type = "contact";
      ev.status = "received";
    }
    result_.parsed.events.push_back(std::move(ev));
  }

  void read_status(const change_scope& scope, const element& status, const std::string& where) {
    if (status.type() != element_type::OBJECT) {
      skip(where, "status is not an object");
      return;
    }
    event ev;
    ev.status = text_at(status, "status");
    if (ev.status.empty()) {
      skip(where, "status without status");
      return;
    }
    ev.event_type = std::string{status_type_prefix} + ev.status;
    ev.phone_number_id = scope.phone_number_id;
    if (!is_delivery_status(ev.status)) {
      // "deleted", "warning", ...: nothing to advance.
      ev.kind = event_kind::unknown;
      ev.status.clear();
      result_.parsed.events.push_back(std::move(ev));
      return;
    }
    ev.kind = event_kind::message_status;
    if (ev.phone_number_id.empty()) {
      skip(where, "no metadata.phone_number_id");
      return;
    }
    ev.message_id = text_at(status, "id");
    if (ev.message_id.empty()) {
      skip(where, "status without id");
      return;
    }
    auto recipient = text_at(status, "recipient_id");
    auto recipient_user_id = text_at(status, "recipient_user_id");
    auto contact = find_contact(scope, recipient, recipient_user_id);
    identity_sources sources;
    sources.phones = {recipient, text_at(contact, "wa_id")};
    sources.bsuids = {recipient_user_id, text_at(contact, "user_id")};
    sources.usernames = {text_at(status, "recipient_username")};
    set_identity(ev, sources, options_);
    if (ev.contact_key.empty()) {
      skip(where, "status without a recipient");
      return;
    }
    ev.timestamp = timestamp_of(value_at(status, "timestamp"));
    ev.direction = "outbound";
    json metadata = json::object();
    for (auto key : {"conversation", "pricing", "biz_opaque_callback_data"})
      if (auto value = value_at(status, key))
        metadata[key] = to_json(*value);
    ev.metadata_json = compact(metadata);
    if (ev.status == "failed")
      if (auto errors = array_at(status, "errors"); size_of(errors) > 0)
        ev.status_error_json = compact(*errors);
    result_.parsed.events.push_back(std::move(ev));
  }

  const parse_options& options_;
  parse_result& result_;
};

// -- the three forms --------------------------------------------------------------

parse_result failure(std::string why) {
  parse_result result;
  result.error = std::move(why);
  return result;
}

parse_result read_batch(const element& body, const field& data, const std::string& outer_type,
                        const parse_options& options) {
  parse_result result;
  result.ok = true;
  auto fallback_phone_number_id = text_at(body, "phone_number_id");
  auto items = elements_of(data);
  result.parsed.events.reserve(items.size());
  size_t index = 0;
  for (const auto& item : items) {
    auto where = "data[" + std::to_string(index++) + "]";
    if (item.type() != element_type::OBJECT) {
      ++result.parsed.malformed;
      result.skipped.push_back(where + ": not an object");
      continue;
    }
    auto type = first_non_empty({text_at(item, "event"), text_at(item, "type"), outer_type});
    event ev;
    auto why = read_kapso_event(item, std::move(type), fallback_phone_number_id,
                                options, ev);
    if (!why.empty()) {
      ++result.parsed.malformed;
      result.skipped.push_back(where + ": " + why);
      continue;
    }
    result.parsed.events.push_back(std::move(ev));
  }
  return result;
}

} // namespace

parse_result parse_delivery(std::string_view body, const delivery_headers& headers,
                            const parse_options& options) {
  // One parser per HTTP thread: it keeps its buffers between deliveries.
  thread_local simdjson::dom::parser parser;
  element root;
  if (parser.parse(body.data(), body.size()).get(root) != simdjson::SUCCESS)
    return failure("body is not valid JSON");
  if (root.type() != element_type::OBJECT)
    return failure("body is not a JSON object");
  if (value_at(root, "whatsapp_config"))
    return failure(std::string{v1_error});
  if (auto object = value_at(root, "object")) {
    if (!holds(object, element_type::STRING)
        || object->get_string().value_unsafe() != "whatsapp_business_account")
      return failure("Meta webhook body whose object is not whatsapp_business_account");
    auto entries = array_at(root, "entry");
    if (!entries)
      return failure("Meta webhook body without an entry array");
    parse_result result;
    result.ok = true;
    result.parsed.meta_forward = true;
    meta_reader{options, result}.read(entries);
    return result;
  }
  auto header_type = trimmed(headers.event_type);
  auto outer_type = first_non_empty({header_type, text_at(root, "event"),
                                     text_at(root, "type")});
  bool batch = flag_at(root, "batch") || header_flag(headers.batch);
  if (auto data = array_at(root, "data"); batch && data)
    return read_batch(root, data, outer_type, options);
  if (flag_at(root, "batch"))
    return failure("batch body without a data array");
  bool has_event = object_at(root, "message").has_value()
                   || object_at(root, "conversation").has_value();
  if (!has_event) {
    // Event types we do not handle (project events, future additions) come
    // in their own shapes: acknowledge them so Kapso does not retry.
    if (!outer_type.empty() && classify(outer_type).kind == event_kind::unknown) {
      event ev;
      ev.event_type = outer_type;
      ev.phone_number_id = text_at(root, "phone_number_id");
      parse_result result;
      result.ok = true;
      result.parsed.events.push_back(std::move(ev));
      return result;
    }
    if (!outer_type.empty())
      return failure(outer_type + " body without a message or conversation object");
    return failure("body is neither a Kapso v2 event, a Kapso v2 batch nor a "
                   "Meta webhook");
  }
  event ev;
  auto why = read_kapso_event(root, outer_type, {}, options, ev);
  if (!why.empty())
    return failure("malformed event: " + why);
  parse_result result;
  result.ok = true;
  result.parsed.events.push_back(std::move(ev));
  return result;
}

} // namespace kapso
