// The greedy pick over a row of logits, shared by the sampler (sampling/sampler.cpp) and the CPU backend's ARGMAX
// op (backend/cpu/argmax.cpp), so that the op picks exactly what the sampler would.
#pragma once

#include <cstdint>

namespace tfu {

// NaN counts as -inf (never chosen) and +inf as FLT_MAX; -0 equals +0; ties go to the lowest index. Returns the
// index the loop `best = i if sanitize(l[i]) > sanitize(l[best])` finds, or -1 when every value is NaN or -inf.
float greedy_sanitize(float x);
int64_t greedy_argmax(const float* l, int64_t n);

}  // namespace tfu
