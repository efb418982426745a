// Declarations every kernel shares: the descriptor set (see vk_pipelines.h), word/byte readers over 32-bit
// storage (no 8/16-bit storage feature needed), and the flattened workgroup index.
#extension GL_EXT_control_flow_attributes : enable

layout(set = 0, binding = 0) buffer dst_buf { uint dst_w[]; };
layout(set = 0, binding = 1) readonly buffer src0_buf { uint src0_w[]; };
layout(set = 0, binding = 2) readonly buffer src1_buf { uint src1_w[]; };
layout(set = 0, binding = 3) readonly buffer src2_buf { uint src2_w[]; };
layout(set = 0, binding = 4) readonly buffer param_buf { uint param_w[]; };

// The host spreads large dispatches over x and y (maxComputeWorkGroupCount[0] is often 65535).
uint group_index() { return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x; }

float src0_f(uint i) { return uintBitsToFloat(src0_w[i]); }
float src1_f(uint i) { return uintBitsToFloat(src1_w[i]); }
float src2_f(uint i) { return uintBitsToFloat(src2_w[i]); }
void dst_set(uint i, float v) { dst_w[i] = floatBitsToUint(v); }

// Bytes and halves of src0 at byte offset b (halves at even offsets).
uint src0_u8(uint b) { return (src0_w[b >> 2] >> ((b & 3u) * 8u)) & 0xffu; }
uint src0_u16(uint b) { return (src0_w[b >> 2] >> ((b & 2u) * 8u)) & 0xffffu; }
int src0_i8(uint b) { return int(src0_u8(b) << 24) >> 24; }
float src0_f16(uint b) { return unpackHalf2x16(src0_u16(b)).x; }
