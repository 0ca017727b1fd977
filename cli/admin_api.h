// What the CLI's admin API commands share: exit codes, failures worded for the user, lenient
// readers of the API's JSON, the admin client (GET and PATCH, Kubernetes Status answers turned
// into messages) and kubectl-style tables. Main thread only, blocking.
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/value.hpp>

#include "cli/admin_client.h"

namespace revgate::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;  // refused, not found, admin unreachable or nonsense
inline constexpr int kExitUsage = 2;

inline constexpr std::string_view kServicesPath =
    "/apis/serving.knative.dev/v1/namespaces/{}/services";

// A failure already worded for the user, and the exit code it warrants.
struct Failure {
  int code = kExitFailed;
  std::string message;
};

// ---- reading JSON leniently: a missing field reads as empty ----
const boost::json::value* field(const boost::json::value& v, std::string_view path);  // "a.b.c"
std::string text(const boost::json::value& v, std::string_view path);
// Label and annotation keys hold dots: look them up as one key under `map_path`.
std::string map_entry(const boost::json::value& v, std::string_view map_path, std::string_view key);
std::int64_t number(const boost::json::value& v, std::string_view path);
const boost::json::array& items(const boost::json::value& list);
bool condition_true(const boost::json::value& object, std::string_view type);

class Admin {
 public:
  explicit Admin(AdminAddress address) : address_(std::move(address)) {}
  // The JSON body of a 200; a 404 Status becomes `not_found` (or the API's own message).
  std::expected<boost::json::value, Failure> get(const std::string& target,
                                                 const std::string& not_found = {}) const;
  // A JSON merge patch; the body of the 200, or the refusal's message (a 422 lists each
  // cause's field and message on its own line).
  std::expected<boost::json::value, Failure> merge_patch(const std::string& target,
                                                         const boost::json::value& patch) const;

 private:
  std::expected<boost::json::value, Failure> answer(
      const std::expected<HttpResponse, std::string>& response, std::string_view method,
      const std::string& target, const std::string& not_found) const;
  AdminAddress address_;
};

// --admin or -c (exclusive), else the default address.
std::expected<AdminAddress, Failure> resolve_admin(const std::string& admin,
                                                   const std::string& config_path);
std::string where(const std::string& ns);  // "namespace \"x\"", or "any namespace" for -

// Columns padded to their widest cell, two spaces apart, the last one unpadded (kubectl).
void print_table(const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows);

}  // namespace revgate::cli
