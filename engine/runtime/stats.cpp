// Builds the engine statistics document (shape documented at tfu_engine_get_stats_json in tfusion.h).
#include "runtime/stats.h"

#include "core/json.h"
#include "runtime/model.h"
#include "runtime/session.h"

namespace tfu {

std::string engine_stats_json(const engine& e) {
    json::value doc = json::value::object();
    doc.set("backend", e.backend_name());
    doc.set("memory_budget", int64_t(e.memory_budget()));
    doc.set("memory_used", int64_t(e.memory_used()));
    json::value models = json::value::array();
    e.for_each_model([&](const model& m) {
        json::value mj = json::value::object();
        mj.set("path", m.path);
        mj.set("architecture", m.hp.arch);
        mj.set("weights_bytes", int64_t(m.weights.n_bytes));
        mj.set("sessions", int64_t(m.n_sessions.load()));
        json::value pools = json::value::array();
        m.for_each_kv_pool([&](const kv_block_pool& p) {
            const kv_pool_stats st = p.stats();
            json::value pj = json::value::object();
            pj.set("type_k", kv_format_name(p.params().k_format));
            pj.set("type_v", kv_format_name(p.params().v_format));
            pj.set("block_tokens", int64_t(p.params().block_tokens));
            pj.set("block_bytes", int64_t(st.block_bytes));
            pj.set("bytes_reserved", int64_t(st.bytes_reserved));
            pj.set("bytes_in_use", int64_t(st.bytes_in_use));
            pj.set("bytes_cached", int64_t(st.bytes_cached));
            pj.set("blocks_total", int64_t(st.blocks_total));
            pj.set("blocks_in_use", int64_t(st.blocks_in_use));
            pj.set("blocks_cached", int64_t(st.blocks_cached));
            pj.set("blocks_free", int64_t(st.blocks_free));
            pj.set("prefix_hits", st.prefix_hits);
            pj.set("prefix_misses", st.prefix_misses);
            pj.set("prefix_bytes_saved", st.prefix_bytes_saved);
            pj.set("cow_copies", st.cow_copies);
            pj.set("cached_reclaimed", st.cached_reclaimed);
            pools.push_back(std::move(pj));
        });
        mj.set("kv_pools", std::move(pools));
        models.push_back(std::move(mj));
    });
    doc.set("models", std::move(models));
    json::value off = json::value::object();
    static const char* const policies[] = {"lru", "lfu", "fifo", "none"};
    off.set("policy", policies[int(e.offload_policy())]);
    int64_t n = 0, n_off = 0, host = 0;
    e.for_each_session([&](const session& s) {
        ++n;
        n_off += s.offloaded() ? 1 : 0;
        host += int64_t(s.host_bytes());
    });
    off.set("sessions", n);
    off.set("sessions_offloaded", n_off);
    off.set("host_bytes", host);
    off.set("offloads", int64_t(e.n_offloads.load()));
    off.set("prefetches", int64_t(e.n_prefetches.load()));
    doc.set("offload", std::move(off));
    return json::dump(doc, 2);
}

}  // namespace tfu
