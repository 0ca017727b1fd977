#include "cli/admin_api.h"

#include <algorithm>

#include <fmt/format.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace revgate::cli {

namespace json = boost::json;

// ---- reading JSON leniently: a missing field reads as empty ----

const json::value* field(const json::value& v, std::string_view path) {
  const json::value* cur = &v;
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find('.', start);
    if (end == std::string_view::npos) end = path.size();
    if (!cur->is_object()) return nullptr;
    cur = cur->as_object().if_contains(path.substr(start, end - start));
    if (cur == nullptr) return nullptr;
    start = end + 1;
  }
  return cur;
}

std::string text(const json::value& v, std::string_view path) {
  const json::value* f = field(v, path);
  return f != nullptr && f->is_string() ? std::string(f->as_string()) : std::string();
}

// Label and annotation keys hold dots: look them up as one key under `map_path`.
std::string map_entry(const json::value& v, std::string_view map_path, std::string_view key) {
  const json::value* map = field(v, map_path);
  if (map == nullptr || !map->is_object()) return {};
  const json::value* entry = map->as_object().if_contains(key);
  return entry != nullptr && entry->is_string() ? std::string(entry->as_string()) : std::string();
}

std::int64_t number(const json::value& v, std::string_view path) {
  const json::value* f = field(v, path);
  if (f == nullptr) return 0;
  if (f->is_int64()) return f->as_int64();
  if (f->is_uint64()) return static_cast<std::int64_t>(f->as_uint64());
  return 0;
}

const json::array& items(const json::value& list) {
  static const json::array kEmpty;
  const json::value* f = field(list, "items");
  return f != nullptr && f->is_array() ? f->as_array() : kEmpty;
}

bool condition_true(const json::value& object, std::string_view type) {
  const json::value* conditions = field(object, "status.conditions");
  if (conditions == nullptr || !conditions->is_array()) return false;
  for (const auto& c : conditions->as_array()) {
    if (text(c, "type") == type) return text(c, "status") == "True";
  }
  return false;
}

// ---- the admin API ----

std::expected<json::value, Failure> Admin::get(const std::string& target,
                                               const std::string& not_found) const {
  return answer(http_get(address_, target), "GET", target, not_found);
}

std::expected<json::value, Failure> Admin::merge_patch(const std::string& target,
                                                       const json::value& patch) const {
  return answer(http_request(address_, "PATCH", target, "application/merge-patch+json",
                             json::serialize(patch)),
                "PATCH", target, {});
}

std::expected<json::value, Failure> Admin::answer(
    const std::expected<HttpResponse, std::string>& response, std::string_view method,
    const std::string& target, const std::string& not_found) const {
  if (!response) return std::unexpected(Failure{kExitFailed, response.error()});
  boost::system::error_code ec;
  json::value body = json::parse(response->body, ec);
  const bool is_status = !ec && text(body, "kind") == "Status";
  if (response->status == 200 && !ec && body.is_object() && !is_status) return body;
  if (response->status == 404 && is_status && !not_found.empty()) {
    return std::unexpected(Failure{kExitFailed, not_found});
  }
  if (is_status && !text(body, "message").empty()) {
    const auto* causes = field(body, "details.causes");
    if (causes == nullptr || !causes->is_array() || causes->as_array().empty()) {
      return std::unexpected(Failure{
          kExitFailed, fmt::format("admin at {}: {}", address_.text(), text(body, "message"))});
    }
    // One cause per line rather than Kubernetes' one-line "[a, b, ...]" summary.
    std::string message = fmt::format("admin at {} refused it ({} {}):", address_.text(),
                                      response->status, text(body, "reason"));
    for (const auto& cause : causes->as_array()) {
      message += fmt::format("\n  {}: {}", text(cause, "field"), text(cause, "message"));
    }
    return std::unexpected(Failure{kExitFailed, std::move(message)});
  }
  std::string excerpt = response->body.substr(0, 80);
  std::replace(excerpt.begin(), excerpt.end(), '\n', ' ');
  return std::unexpected(Failure{
      kExitFailed,
      fmt::format("admin at {} answered {} to {} {}{}{} (no admin API there?)", address_.text(),
                  response->status, method, target, excerpt.empty() ? "" : ": ", excerpt)});
}

// ---- output ----

void print_table(const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths(header.size());
  for (std::size_t i = 0; i < header.size(); ++i) widths[i] = header[i].size();
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  const auto print_row = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (std::size_t i = 0; i < cells.size(); ++i) {
      line += cells[i];
      if (i + 1 < cells.size()) line.append(widths[i] - cells[i].size() + 2, ' ');
    }
    fmt::print("{}\n", line);
  };
  print_row(header);
  for (const auto& row : rows) print_row(row);
}

std::expected<AdminAddress, Failure> resolve_admin(const std::string& admin,
                                                   const std::string& config_path) {
  if (!admin.empty() && !config_path.empty()) {
    return std::unexpected(Failure{kExitUsage, "--admin and -c are exclusive: pass one"});
  }
  auto address = !config_path.empty()
                     ? admin_address_from_config(config_path)
                     : parse_admin_address(admin.empty() ? kDefaultAdminAddress : admin);
  if (!address) {
    // A config that does not load is the config's failure (1); a bad --admin is usage (2).
    return std::unexpected(
        Failure{config_path.empty() ? kExitUsage : kExitFailed, address.error()});
  }
  return *address;
}

std::string where(const std::string& ns) {
  return ns == "-" ? std::string("any namespace") : fmt::format("namespace \"{}\"", ns);
}

}  // namespace revgate::cli
