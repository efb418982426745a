// Replay keys of the GPU backends: a backend that records a run (a CUDA graph, a Vulkan command buffer) keeps it
// under a key and replays it for a later run with the same key, without recording again. The key holds, as 64-bit
// words, everything about the run's ops that the recorded commands depend on: op type, parameters, descriptor,
// and every tensor's address, type, shape and strides. The one exception is i[0], whose word the caller chooses:
// the op's i[0] where the recorded commands hold it, or what stands in for it where the kernels read i[0] on the
// device (KV_STORE's first row, ATTENTION's position: a decode step's runs then differ only in values the device
// reads, so one recording serves every step). The caller adds what else its recording depends on (a scratch
// buffer's generation, a launch shape).
#pragma once

#include <cstdint>
#include <vector>

#include "backend/op.h"

namespace tfu {

// Appends op `o`'s words to `key`, with `i0_word` in the place of o.i[0].
void append_op_key(std::vector<uint64_t>& key, const op& o, uint64_t i0_word);

// FNV-1a over the words: a quick first comparison before comparing keys word by word.
uint64_t replay_key_hash(const std::vector<uint64_t>& key);

}  // namespace tfu
