// Per-message-type content, preview and metadata for the inbox.
#include "http/message_content.hpp"

#include <string_view>

#include "http/json_fields.hpp"
#include "http/preview.hpp"

namespace kapso {

namespace {

using json = nlohmann::json;
using namespace json_fields;

// Copies the listed fields of `from` that are present into `to`.
void copy_fields(const field& from, json& to, std::initializer_list<const char*> keys) {
  for (auto key : keys)
    if (auto value = value_at(from, key))
      to[key] = to_json(*value);
}

std::string first_of(std::string a, const std::string& b) {
  return a.empty() ? b : a;
}

void describe_text(const element& message, const std::string& kapso_content,
                   message_content& out) {
  auto body = value_at(object_at(message, "text"), "body");
  // An empty body is a (strange but real) empty message; only a missing one
  // falls back to Kapso's text rendering.
  if (holds(body, element_type::STRING))
    out.content = std::string{body->get_string().value_unsafe()};
  else
    out.content = kapso_content;
}

void describe_media(const element& message, std::string_view type, message_content& out) {
  auto media = object_at(message, out.type);
  auto kapso = object_at(message, "kapso");
  std::string label;
  if (type == "image") {
    label = "[Image]";
  } else if (type == "video") {
    label = "[Video]";
  } else if (type == "audio") {
    label = flag_at(media, "voice") ? "[Voice message]" : "[Audio]";
  } else if (type == "sticker") {
    label = "[Sticker]";
  } else {
    auto filename = first_of(text_at(media, "filename"),
                             text_at(object_at(kapso, "media_data"), "filename"));
    label = filename.empty() ? "[Document]" : "[Document: " + filename + "]";
  }
  auto caption = text_at(media, "caption");
  out.content = caption.empty() ? label : caption;
  out.media_url = first_of(text_at(media, "link"), text_at(media, "url"));
  json details = json::object();
  copy_fields(media, details, {"id", "mime_type", "filename", "sha256", "voice",
                               "animated"});
  if (!details.empty())
    out.metadata["media"] = std::move(details);
  if (!out.metadata.contains("has_media"))
    out.metadata["has_media"] = true;
}

void describe_location(const element& message, message_content& out) {
  auto location = object_at(message, "location");
  auto name = text_at(location, "name");
  auto address = text_at(location, "address");
  if (!name.empty())
    out.content = "[Location: " + name + "]";
  else if (!address.empty())
    out.content = "[Location: " + address + "]";
  else
    out.content = "[Location]";
  json details = json::object();
  copy_fields(location, details, {"latitude", "longitude", "name", "address", "url"});
  out.metadata["location"] = std::move(details);
}

std::string contact_display_name(const element& contact) {
  auto name = object_at(contact, "name");
  auto formatted = text_at(name, "formatted_name");
  if (!formatted.empty())
    return formatted;
  auto first = text_at(name, "first_name");
  auto last = text_at(name, "last_name");
  if (!first.empty() && !last.empty())
    return first + " " + last;
  return first.empty() ? last : first;
}

void describe_contacts(const element& message, message_content& out) {
  auto contacts = array_at(message, "contacts");
  auto count = size_of(contacts);
  if (count > 1) {
    out.content = "[Contacts: " + std::to_string(count) + "]";
  } else {
    auto name = count == 1 ? contact_display_name(elements_of(contacts).front()) : std::string{};
    out.content = name.empty() ? "[Contact]" : "[Contact: " + name + "]";
  }
  if (contacts)
    out.metadata["contacts"] = to_json(*contacts);
}

void describe_interactive(const element& message, message_content& out) {
  auto interactive = object_at(message, "interactive");
  auto kind = text_at(interactive, "type");
  json details = json::object();
  if (!kind.empty())
    details["type"] = kind;
  if (kind == "button_reply" || kind == "list_reply") {
    auto reply = object_at(interactive, kind);
    copy_fields(reply, details, {"id", "title", "description"});
    auto title = text_at(reply, "title");
    out.content = title.empty() ? "[Interactive reply]" : title;
  } else if (kind == "nfm_reply") {
    copy_fields(object_at(interactive, "nfm_reply"), details,
                {"name", "body", "response_json"});
    out.content = "[Form response]";
  } else {
    // Outbound interactive messages (buttons, lists, flows) carry a body.
    auto body = text_at(object_at(interactive, "body"), "text");
    out.content = body.empty() ? "[Interactive message]" : body;
  }
  out.metadata["interactive"] = std::move(details);
}

void describe_button(const element& message, message_content& out) {
  auto button = object_at(message, "button");
  auto text = text_at(button, "text");
  out.content = text.empty() ? "[Button]" : text;
  json details = json::object();
  copy_fields(button, details, {"text", "payload"});
  out.metadata["button"] = std::move(details);
}

void describe_reaction(const element& message, message_content& out) {
  auto reaction = object_at(message, "reaction");
  auto emoji = text_at(reaction, "emoji");
  // WhatsApp signals "reaction removed" with an empty emoji.
  out.content = emoji.empty() ? "[Reaction removed]" : emoji;
  out.metadata["reaction"] = {{"message_id", text_at(reaction, "message_id")},
                              {"emoji", emoji}};
}

void describe_order(const element& message, message_content& out) {
  auto order = object_at(message, "order");
  auto count = size_of(array_at(order, "product_items"));
  out.content = "[Order: " + std::to_string(count) + (count == 1 ? " item]" : " items]");
  if (order)
    out.metadata["order"] = to_json(*order);
}

void describe_template(const element& message, const std::string& kapso_content,
                       message_content& out) {
  auto tmpl = object_at(message, "template");
  auto name = text_at(tmpl, "name");
  if (!kapso_content.empty())
    out.content = kapso_content;
  else
    out.content = name.empty() ? "[Template]" : "[Template: " + name + "]";
  json details = json::object();
  if (!name.empty())
    details["name"] = name;
  auto language = text_at(object_at(tmpl, "language"), "code");
  if (!language.empty())
    details["language"] = language;
  out.metadata["template"] = std::move(details);
}

void describe_common(const element& message, const field& kapso, message_content& out) {
  if (auto context = object_at(message, "context")) {
    json reply = json::object();
    for (auto key : {"id", "from"}) {
      auto value = text_at(context, key);
      if (!value.empty())
        reply[key] = value;
    }
    if (!reply.empty())
      out.metadata["context"] = std::move(reply);
    if (flag_at(context, "forwarded"))
      out.metadata["forwarded"] = true;
    if (flag_at(context, "frequently_forwarded"))
      out.metadata["frequently_forwarded"] = true;
  }
  if (auto has_media = value_at(kapso, "has_media"); holds(has_media, element_type::BOOL))
    out.metadata["has_media"] = has_media->get_bool().value_unsafe();
  if (auto transcript = value_at(kapso, "transcript"))
    out.metadata["transcript"] = to_json(*transcript);
  if (auto referral = object_at(message, "referral"))
    out.metadata["referral"] = to_json(*referral);
  if (auto errors = array_at(message, "errors"); size_of(errors) > 0)
    out.metadata["errors"] = to_json(*errors);
}

bool is_media(std::string_view type) {
  return type == "image" || type == "video" || type == "audio" || type == "document"
         || type == "sticker";
}

// `kapso` is Kapso's extension block, which an edit carries on its outer
// message rather than on the new version.
message_content describe(const element& message, const field& kapso) {
  message_content out;
  out.type = text_at(message, "type");
  if (out.type.empty())
    out.type = "text";
  auto kapso_content = text_at(kapso, "content");
  describe_common(message, kapso, out);
  std::string_view type = out.type;
  if (type == "text")
    describe_text(message, kapso_content, out);
  else if (is_media(type))
    describe_media(message, type, out);
  else if (type == "location")
    describe_location(message, out);
  else if (type == "contacts")
    describe_contacts(message, out);
  else if (type == "interactive")
    describe_interactive(message, out);
  else if (type == "button")
    describe_button(message, out);
  else if (type == "reaction")
    describe_reaction(message, out);
  else if (type == "order")
    describe_order(message, out);
  else if (type == "template")
    describe_template(message, kapso_content, out);
  else
    out.content = kapso_content.empty() ? "[Unsupported message]" : kapso_content;
  // Kapso hosts the media itself; its URL outlives Meta's short-lived links.
  auto kapso_url = text_at(kapso, "media_url");
  if (!kapso_url.empty())
    out.media_url = kapso_url;
  out.preview = cut_utf8(out.content, preview_chars);
  return out;
}

} // namespace

message_content describe_message(const element& message) {
  return describe(message, object_at(message, "kapso"));
}

std::optional<message_content> describe_edit(const element& message) {
  auto edit = object_at(message, "edit");
  auto version = object_at(edit, "message");
  if (!version)
    return std::nullopt;
  return describe(*version, object_at(message, "kapso"));
}

} // namespace kapso
