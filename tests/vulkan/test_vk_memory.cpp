// The Vulkan module's memory bookkeeping without a device (kernels_vk/vk_memory.h): first-fit ranges with
// coalescing and 256-byte alignment, chunks and dedicated chunks made through hooks, the private address space
// (base + offset arithmetic resolves back to (chunk, offset)), and the errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <vector>

#include "core/error.h"
#include "vk_memory.h"

namespace tfu::vk {
namespace {

TEST(vk_range_allocator, first_fit_alignment_and_coalescing) {
    range_allocator r(4096);
    uint64_t a, b, c, d;
    ASSERT_TRUE(r.allocate(1, &a));      // rounds to 256
    ASSERT_TRUE(r.allocate(300, &b));    // rounds to 512
    ASSERT_TRUE(r.allocate(256, &c));
    EXPECT_EQ(a, 0u);
    EXPECT_EQ(b, 256u);
    EXPECT_EQ(c, 768u);
    EXPECT_EQ(r.free_bytes(), 4096u - 1024u);
    r.release(b, 300);  // a hole of 512 at 256
    EXPECT_EQ(r.n_free_ranges(), 2u);
    ASSERT_TRUE(r.allocate(200, &d));    // first fit: the hole
    EXPECT_EQ(d, 256u);
    r.release(d, 200);
    r.release(a, 1);                     // merges with the hole after it
    EXPECT_EQ(r.n_free_ranges(), 2u);
    r.release(c, 256);                   // merges both sides into one range
    EXPECT_EQ(r.n_free_ranges(), 1u);
    EXPECT_TRUE(r.empty());
    EXPECT_EQ(r.largest_free(), 4096u);
    uint64_t e;
    EXPECT_FALSE(r.allocate(4097, &e));
    ASSERT_TRUE(r.allocate(4096, &e));
    EXPECT_FALSE(r.allocate(1, &e));
}

// Random allocate/release against a model of which 256-byte units are taken.
TEST(vk_range_allocator, random_against_model) {
    std::mt19937_64 rng(7);
    const uint64_t units = 512;
    range_allocator r(units * 256);
    std::vector<bool> used(units, false);
    std::vector<std::pair<uint64_t, uint64_t>> live;
    for (int step = 0; step < 4000; ++step) {
        if (live.empty() || rng() % 3 != 0) {
            const uint64_t bytes = 1 + rng() % 5000;
            uint64_t off;
            if (!r.allocate(bytes, &off)) continue;
            ASSERT_EQ(off % 256, 0u);
            const uint64_t n = align_up(bytes, 256) / 256;
            for (uint64_t u = off / 256; u < off / 256 + n; ++u) {
                ASSERT_LT(u, units);
                ASSERT_FALSE(used[u]) << "overlapping allocation at step " << step;
                used[u] = true;
            }
            live.push_back({off, bytes});
        } else {
            const size_t i = rng() % live.size();
            const auto [off, bytes] = live[i];
            r.release(off, bytes);
            for (uint64_t u = off / 256; u < off / 256 + align_up(bytes, 256) / 256; ++u) used[u] = false;
            live.erase(live.begin() + long(i));
        }
        const uint64_t n_used = uint64_t(std::count(used.begin(), used.end(), true));
        ASSERT_EQ(r.free_bytes(), (units - n_used) * 256);
    }
    for (auto [off, bytes] : live) r.release(off, bytes);
    EXPECT_TRUE(r.empty());
    EXPECT_EQ(r.n_free_ranges(), 1u);  // everything coalesced back
}

struct fake_device {
    std::set<uint32_t> chunks;
    std::vector<uint64_t> sizes;
    uint64_t refuse_above = UINT64_MAX;
    chunk_hooks hooks() {
        chunk_hooks h;
        h.create = [this](uint32_t id, uint64_t bytes) {
            if (bytes > refuse_above) fail(TFU_STATUS_OUT_OF_MEMORY, "fake device: out of memory");
            chunks.insert(id);
            if (sizes.size() <= id) sizes.resize(id + 1);
            sizes[id] = bytes;
        };
        h.destroy = [this](uint32_t id) { chunks.erase(id); };
        return h;
    }
};

TEST(vk_suballocator, addresses_resolve_with_pointer_arithmetic) {
    fake_device dev;
    suballocator s(1 << 20, 8 << 20, dev.hooks());
    const uint64_t a = s.allocate(1000, "a");
    const uint64_t b = s.allocate(5000, "b");
    EXPECT_GE(a, suballocator::k_base_address);
    EXPECT_EQ(a % 256, 0u);
    EXPECT_EQ(dev.chunks.size(), 1u);
    location l;
    ASSERT_TRUE(s.resolve(a, 1000, &l));
    EXPECT_EQ(l.offset, 0u);
    ASSERT_TRUE(s.resolve(b + 100, 4900, &l));  // a view at base + 100 to the end
    EXPECT_EQ(l.offset, b - a + 100);
    EXPECT_EQ(l.alloc_offset, b - a);
    EXPECT_FALSE(s.resolve(b + 100, 5200, &l));  // runs past b's (rounded) allocation of 5120
    EXPECT_FALSE(s.resolve(a + 1000, 100, &l));  // past a's 1024 bytes
    EXPECT_FALSE(s.resolve(suballocator::k_base_address - 1, 1, &l));
    EXPECT_FALSE(s.resolve(0x1000, 4, &l));  // a host pointer is not ours
    EXPECT_TRUE(s.release(a));
    EXPECT_FALSE(s.resolve(a, 4, &l));  // freed
    EXPECT_FALSE(s.release(a));         // double free is refused, not fatal
    EXPECT_FALSE(s.release(b + 256));   // not the start of an allocation
    EXPECT_TRUE(s.release(b));
    EXPECT_EQ(s.allocated_bytes(), 0u);
    EXPECT_EQ(dev.chunks.size(), 1u);  // one usual chunk kept for the next allocation
}

TEST(vk_suballocator, chunks_dedicated_and_out_of_memory) {
    fake_device dev;
    suballocator s(1 << 20, 8 << 20, dev.hooks());
    std::vector<uint64_t> v;
    for (int i = 0; i < 6; ++i) v.push_back(s.allocate(400 << 10, "fill"));  // 2 per 1 MiB chunk
    EXPECT_EQ(dev.chunks.size(), 3u);
    location l0, l5;
    ASSERT_TRUE(s.resolve(v[0], 1, &l0));
    ASSERT_TRUE(s.resolve(v[5], 1, &l5));
    EXPECT_NE(l0.chunk, l5.chunk);
    const uint64_t big = s.allocate(3 << 20, "big weight");  // dedicated chunk of its own size
    EXPECT_EQ(dev.chunks.size(), 4u);
    location lb;
    ASSERT_TRUE(s.resolve(big + (3 << 20) - 4, 4, &lb));
    EXPECT_EQ(dev.sizes[lb.chunk], uint64_t(3) << 20);
    EXPECT_TRUE(s.release(big));
    EXPECT_EQ(dev.chunks.size(), 3u);  // dedicated chunks go back at once
    for (uint64_t a : v) EXPECT_TRUE(s.release(a));
    EXPECT_EQ(dev.chunks.size(), 1u);  // surplus empty chunks too, but one is kept
    try {
        s.allocate(9 << 20, "huge");
        FAIL() << "no error";
    } catch (const error& e) {
        EXPECT_EQ(e.status(), TFU_STATUS_OUT_OF_MEMORY);
        EXPECT_NE(std::string(e.what()).find("huge"), std::string::npos) << e.what();
    }
    dev.refuse_above = 2 << 20;
    try {
        s.allocate(4 << 20, "refused");
        FAIL() << "no error";
    } catch (const error& e) {
        EXPECT_EQ(e.status(), TFU_STATUS_OUT_OF_MEMORY);
        EXPECT_NE(std::string(e.what()).find("refused"), std::string::npos) << e.what();
    }
    EXPECT_EQ(s.n_chunks(), 1u);
}

}  // namespace
}  // namespace tfu::vk
