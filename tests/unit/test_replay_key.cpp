// Replay keys (backend/replay_key.h): the same ops give the same key; every field a recording depends on changes
// it (type, i[1..3], f, ext, each tensor's address, type, shape, strides, a missing source); i[0] counts only
// through the word the caller passes for it.
#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "backend/replay_key.h"
#include "core/tensor.h"

namespace tfu {
namespace {

struct two_ops {
    tensor a = make_tensor(dtype::F32, 64, 4), b = make_tensor(dtype::F16, 64, 4), c = make_tensor(dtype::F32, 64, 4);
    op o;
    two_ops() {
        a.data = reinterpret_cast<void*>(uintptr_t(0x1000));
        b.data = reinterpret_cast<void*>(uintptr_t(0x2000));
        c.data = reinterpret_cast<void*>(uintptr_t(0x3000));
        o.type = op_type::ATTENTION;
        o.dst = &c;
        o.src[0] = &a;
        o.src[1] = &b;
        o.src[2] = &b;
        o.i[0] = 17;
        o.i[1] = 2;
        o.f[0] = 0.125f;
    }
};

std::vector<uint64_t> key_of(const op& o, uint64_t i0_word) {
    std::vector<uint64_t> k;
    append_op_key(k, o, i0_word);
    return k;
}

TEST(replay_key, same_ops_same_key_and_hash) {
    two_ops x, y;
    EXPECT_EQ(key_of(x.o, 0), key_of(y.o, 0));
    EXPECT_EQ(replay_key_hash(key_of(x.o, 0)), replay_key_hash(key_of(y.o, 0)));
}

TEST(replay_key, i0_counts_only_through_the_callers_word) {
    two_ops x, y;
    y.o.i[0] = 4096;
    EXPECT_EQ(key_of(x.o, 7), key_of(y.o, 7));
    EXPECT_NE(key_of(x.o, 7), key_of(y.o, 8));
}

TEST(replay_key, every_other_field_changes_the_key) {
    const std::vector<std::function<void(two_ops&)>> changes = {
        [](two_ops& t) { t.o.type = op_type::ROPE; },
        [](two_ops& t) { t.o.i[1] = 4; },
        [](two_ops& t) { t.o.i[3] = -1; },
        [](two_ops& t) { t.o.f[0] = 0.25f; },
        [](two_ops& t) { t.o.f[3] = -0.0f; },  // bit pattern, not value
        [](two_ops& t) { t.o.ext = &t; },
        [](two_ops& t) { t.c.data = reinterpret_cast<void*>(uintptr_t(0x3100)); },
        [](two_ops& t) { t.a.type = dtype::F16; },
        [](two_ops& t) { t.b.ne[1] = 5; },
        [](two_ops& t) { t.b.nb[1] = 256; },
        [](two_ops& t) { t.a.ne[3] = 2; },
        [](two_ops& t) { t.o.src[2] = nullptr; },
    };
    two_ops base;
    const std::vector<uint64_t> k0 = key_of(base.o, 0);
    for (size_t i = 0; i < changes.size(); ++i) {
        two_ops t;
        changes[i](t);
        const std::vector<uint64_t> k = key_of(t.o, 0);
        EXPECT_NE(k, k0) << "change " << i;
        EXPECT_NE(replay_key_hash(k), replay_key_hash(k0)) << "change " << i;
    }
}

}  // namespace
}  // namespace tfu
