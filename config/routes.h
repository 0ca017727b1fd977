// The parser of a service's `routes:` (Istio HTTPRoute rules), on the shared Reader. Every error
// names the rule by its position and name: "routes[2] (canary): ...".
#pragma once

#include "config/config.h"
#include "config/reader.h"

namespace revgate::config::detail {

// Reads `field` (the list) into service.routes; the service's revisions must be read already
// (a rule's traffic is checked against them).
void read_routes(Reader& reader, const Field& field, Service& service);

}  // namespace revgate::config::detail
