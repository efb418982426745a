// A kernel timeline without Nsight Systems (the GPU machine has none): an LD_PRELOAD library that records every
// kernel, memcpy and memset the process runs through CUPTI's activity API, with GPU start/end timestamps taken
// at the clocks the program really ran at (ncu serialises and locks clocks; this does neither), and writes them as
// CSV for scripts/cupti-steps.py. Kernels inside CUDA graphs are recorded one by one (graphId/graphNodeId).
//
//   g++ -O2 -shared -fPIC -I$CUDA/include scripts/cupti-trace.cpp -L$CUPTI_LIB -lcupti -o /tmp/libtrace.so
//   TFU_TRACE_OUT=/tmp/t.csv LD_PRELOAD=/tmp/libtrace.so LD_LIBRARY_PATH=$CUPTI_LIB program ...
//
// CSV columns: kind (K kernel, C memcpy, S memset), start_ns, end_ns, stream, graph, grid (x*y*z), block (x*y*z),
// dynamic shared bytes, bytes (copies), name. A development tool, not part of the engine.
#include <cupti.h>

#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <mutex>

namespace {

std::FILE* g_out = nullptr;
std::mutex g_mu;
constexpr size_t k_buffer_bytes = 8u << 20;

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
    *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, k_buffer_bytes));
    *size = *buffer ? k_buffer_bytes : 0;
    *max_records = 0;
}

void write_record(const CUpti_Activity* r) {
    switch (r->kind) {
        case CUPTI_ACTIVITY_KIND_KERNEL:
        case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
            auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(r);
            std::fprintf(g_out, "K,%llu,%llu,%u,%u,%d,%d,%d,0,%s\n", (unsigned long long)k->start,
                         (unsigned long long)k->end, k->streamId, k->graphId, k->gridX * k->gridY * k->gridZ,
                         k->blockX * k->blockY * k->blockZ, k->dynamicSharedMemory, k->name ? k->name : "?");
            break;
        }
        case CUPTI_ACTIVITY_KIND_MEMCPY: {
            auto* c = reinterpret_cast<const CUpti_ActivityMemcpy6*>(r);
            std::fprintf(g_out, "C,%llu,%llu,%u,%u,0,0,0,%llu,memcpy_kind%u\n", (unsigned long long)c->start,
                         (unsigned long long)c->end, c->streamId, c->graphId, (unsigned long long)c->bytes,
                         unsigned(c->copyKind));
            break;
        }
        case CUPTI_ACTIVITY_KIND_MEMSET: {
            auto* s = reinterpret_cast<const CUpti_ActivityMemset4*>(r);
            std::fprintf(g_out, "S,%llu,%llu,%u,%u,0,0,0,%llu,memset\n", (unsigned long long)s->start,
                         (unsigned long long)s->end, s->streamId, s->graphId, (unsigned long long)s->bytes);
            break;
        }
        default: break;
    }
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
    {
        std::lock_guard<std::mutex> lock(g_mu);
        CUpti_Activity* r = nullptr;
        while (g_out && cuptiActivityGetNextRecord(buffer, valid, &r) == CUPTI_SUCCESS) write_record(r);
    }
    std::free(buffer);
}

struct tracer {
    tracer() {
        const char* path = std::getenv("TFU_TRACE_OUT");
        if (!path) return;
        g_out = std::fopen(path, "w");
        if (!g_out) return;
        std::fprintf(g_out, "kind,start,end,stream,graph,grid,block,smem,bytes,name\n");
        bool ok = cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed) == CUPTI_SUCCESS;
        for (CUpti_ActivityKind k : {CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_MEMCPY,
                                     CUPTI_ACTIVITY_KIND_MEMSET})
            ok = ok && cuptiActivityEnable(k) == CUPTI_SUCCESS;
        // Delivered every 200 ms as well as at exit: the CUDA runtime may tear its context down before this
        // library's destructor runs.
        ok = ok && cuptiActivityFlushPeriod(200) == CUPTI_SUCCESS;
        if (!ok) std::fprintf(stderr, "cupti-trace: could not enable CUPTI activity records\n");
    }
    ~tracer() {
        if (!g_out) return;
        cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
        std::lock_guard<std::mutex> lock(g_mu);
        std::fclose(g_out);
        g_out = nullptr;
    }
};
tracer g_tracer;

}  // namespace
