// Engine-wide statistics as JSON (tfu_engine_get_stats_json): memory budget, models, and per KV pool the
// blocks, bytes, prefix-sharing and copy-on-write counters.
#pragma once

#include <string>

#include "runtime/engine.h"

namespace tfu {

std::string engine_stats_json(const engine& e);

}  // namespace tfu
