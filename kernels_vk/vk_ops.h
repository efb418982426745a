// Per-op support checks and recording for the Vulkan backend: which shader each op of backend/ops.def runs,
// its push constants, and how tensors larger than one storage-buffer binding are split (vk_ops.cpp).
#pragma once

#include <cstddef>
#include <string>

#include "backend/op.h"
#include "vk_context.h"

namespace tfu::vk {

class vk_backend;

// Whether the module runs `o` (dtypes, shapes, sizes against max_binding); *why says why not. Does not look at
// addresses (supports() is asked about ops whose tensors may still be in host memory).
bool op_supported(const op& o, const device_caps& caps, uint64_t max_binding, std::string* why);
// Records the dispatches of one op (op_supported(o) is true).
void record_op(vk_backend& be, const op& o);
// ops[0 .. n_ops) are the next ops of a run() (all supported). When ops[0] starts ops that share one launch,
// records that launch and returns how many ops it computes; else records nothing and returns 0 (the caller
// records ops[0] alone). Fused results are those of the ops run one by one (bit-identical for the row-wise pairs).
// MUL_MAT of x with 1..8 columns, one mul_mat_vec launch:
//   3: MUL_MAT gate, MUL_MAT up (same x, weight type and shape), SWIGLU(gate, gate, up) (or into memory that
//      touches no operand): silu(gate) * up, gate and up written by one launch;
//   2 or 3: MUL_MATs of the same x (memory and shape), weight type and k (the Q, K and V projections);
//   2: one MUL_MAT and the residual ADD of its result (backend/fused_residual.h): the launch stores the sum too.
//   Each result must overlap no x, weight or other result of the launch; every weight must fit one binding (no row
//   pieces), and the weights (results) of the launch must lie in one memory chunk within one binding's range.
// MUL_MAT of x with more than 8 columns on the tensor-core shader (mul_mat_cm.comp), one launch:
//   2 or 3: MUL_MATs of the same x, weight type and k (Q/K/V, gate/up; a SWIGLU after them stays its own launch),
//   under the same rules on results, weights and windows; x goes to fp16 once for them all.
// 1 + those: RMS_NORM(xn, src, g) and a launch above whose x is xn, on the int8 path (vk_backend::mmv_i8) and of
//   fewer than 16384 rows: the launch normalises src itself and stores xn; neither xn nor its results may overlap
//   src or g, nor its results xn.
// Row-wise pairs, 2, under backend/fused_pairs.h's rules (the CUDA backend's too):
//   ADD(y, a, b), RMS_NORM(xn, y, w): add_rms_norm (rms_norm.comp's ADD_NORM variant);
//   ROPE q, ROPE k with the same positions, factors and parameters: rope_pair (rope.comp's PAIR variant);
//   KV_STORE k, KV_STORE v at the same i[0] into caches of one dtype: kv_store_pair (kv_store.comp's PAIR variant).
//   It takes the device-read slots of both ops (be.dyn_slot(), in op order) and reads each part's i[0] from its own,
//   each part launched as a lone KV_STORE would be (in a kept recording, for the largest span at any start).
// 4: ROPE q, ROPE k, KV_STORE of the rotated k, KV_STORE v (fused_pairs.h rope_store_fusable, head rows that are
//   whole 32-bit cache words, k and v in one window): rope_store (rope.comp's STORE variant), the two slots as the
//   KV pair takes them.
size_t record_fused(vk_backend& be, const op* ops, size_t n_ops);
// Whether o (supported) may be part of a kept run (vk_replay.h): it records max_dispatches(o) at most, whose commands
// depend only on the replay key (its fields and tensors, minus KV_STORE's and ATTENTION's i[0], which the kernels
// then read on the device). Not: MUL_MAT of more than 8 columns (prefill), weights in row pieces, ATTENTION whose
// whole caches do not fit one binding, ATTENTION_PAGED (its block table depends on i[0] and on the cache).
bool replay_safe(const vk_backend& be, const op& o);
// Split-K of the contiguous-cache ATTENTION o (attention.comp + attention_merge.comp): how many workgroups share
// each (query, head), a pure function of blocks = n_head x n and the rows the last query sees (i[0] + n), so that a
// kept run keyed on it (vk_replay.cpp) launches what a fresh recording would. 1 (no split, no merge) up to 256
// rows or when blocks >= 256; else min(ceil(1024 / blocks), ceil(rows / 128), 64): enough workgroups to fill a
// device of ~128 compute units 8 times over, at least 128 rows each (CUDA's attention_split_count with a fixed
// device size: Vulkan has no portable compute-unit count). The count changes only at 128-row boundaries. Env
// TFU_VK_ATTN_SPLIT=0 disables splitting (read per call). Other ops: 1.
uint32_t attention_splits(const op& o);
// Bytes of device scratch o's recording uses, 0 for none: ATTENTION's split-K partials (n_head x n x splits x
// (hd + 2) floats), a long ARGMAX's per-workgroup (key, index) pairs (columns x parts x 8), a prefill MUL_MAT's x
// in fp16 on the cooperative-matrix path (columns x k rounded up to 32, halves). run() reserves the largest before
// recording (vk_backend::reserve_scratch).
uint64_t scratch_bytes(const vk_backend& be, const op& o);
// Dispatches o records at most (2 for a split ATTENTION: the split pass and the merge; 2 for a long ARGMAX), for
// sizing a kept run's descriptor pool.
uint32_t max_dispatches(const vk_backend& be, const op& o);
// Bytes of the parameter arena that o's recording stores (RoPE's frequency table), for sizing a kept run's.
uint64_t replay_param_bytes(const op& o);

}  // namespace tfu::vk
