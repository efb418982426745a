// Micro-benchmark for the GPU machine: what a CUDA graph boundary costs on the device, against kernels launched
// one by one. 160 small dependent kernels (one pass over 8192 floats each) run as one captured graph, as 16
// graphs of 10 (the decoder's one graph per layer) and as plain launches; prints the best of 50 GPU times
// between events around each batch. Used for docs/perf/2026-11-24-h100-decode.md. Build and run there:
//   nvcc -O2 -arch=sm_90a -o /tmp/graph-overhead scripts/cuda-graph-overhead.cu && /tmp/graph-overhead
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

namespace {

void check(cudaError_t e, const char* what) {
    if (e == cudaSuccess) return;
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
}

__global__ void step(float* x, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = x[i] * 0.999f + 1.0f;
}

constexpr int k_n = 8192, k_per_graph = 10, k_graphs = 16, k_kernels = k_per_graph * k_graphs, k_reps = 50;

void launch(float* x, cudaStream_t s) { step<<<k_n / 256, 256, 0, s>>>(x, k_n); }

cudaGraphExec_t capture(float* x, cudaStream_t s, int kernels) {
    cudaGraph_t g = nullptr;
    check(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    for (int i = 0; i < kernels; ++i) launch(x, s);
    check(cudaStreamEndCapture(s, &g), "cudaStreamEndCapture");
    cudaGraphExec_t e = nullptr;
    check(cudaGraphInstantiate(&e, g, 0), "cudaGraphInstantiate");
    check(cudaGraphDestroy(g), "cudaGraphDestroy");
    return e;
}

}  // namespace

int main() {
    float* x = nullptr;
    check(cudaMalloc(&x, k_n * sizeof(float)), "cudaMalloc");
    check(cudaMemset(x, 0, k_n * sizeof(float)), "cudaMemset");
    cudaStream_t s = nullptr;
    check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    const cudaGraphExec_t whole = capture(x, s, k_kernels);
    cudaGraphExec_t parts[k_graphs];
    for (cudaGraphExec_t& p : parts) p = capture(x, s, k_per_graph);
    cudaEvent_t a = nullptr, b = nullptr;
    check(cudaEventCreate(&a), "cudaEventCreate");
    check(cudaEventCreate(&b), "cudaEventCreate");
    const char* names[3] = {"1 graph", "16 graphs", "plain launches"};
    for (int mode = 0; mode < 3; ++mode) {
        float best = 1e30f;
        for (int rep = 0; rep < k_reps; ++rep) {
            check(cudaEventRecord(a, s), "cudaEventRecord");
            if (mode == 0) check(cudaGraphLaunch(whole, s), "cudaGraphLaunch");
            if (mode == 1)
                for (cudaGraphExec_t p : parts) check(cudaGraphLaunch(p, s), "cudaGraphLaunch");
            if (mode == 2)
                for (int i = 0; i < k_kernels; ++i) launch(x, s);
            check(cudaGetLastError(), "launch");
            check(cudaEventRecord(b, s), "cudaEventRecord");
            check(cudaEventSynchronize(b), "cudaEventSynchronize");
            float ms = 0;
            check(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
            if (ms < best) best = ms;
        }
        std::printf("%s: %.1f us for %d kernels (%.2f us each)\n", names[mode], best * 1e3, k_kernels,
                    best * 1e3 / k_kernels);
    }
    return 0;
}
