// Request paths of the admin API, split the way the Kubernetes API server reads them. Private
// to api/. Pure functions: any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace revgate::api {

// "/apis/a/b/" -> {"apis", "a", "b"}: segments percent-decoded, one trailing '/' ignored.
std::vector<std::string> split_path(std::string_view path);

}  // namespace revgate::api
