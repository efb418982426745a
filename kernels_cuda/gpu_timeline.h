// TFU_CUDA_PROFILE's device-side view: timing events recorded on the stream around every run() and download
// copy, read back at each download() (after its wait), so that a decode step's GPU time splits into the time
// inside runs, the gaps between them (the GPU waiting for the host or for a copy) and the download copy.
// Beside the host times (cuda_backend.cpp's host_profile) it tells a GPU-bound step from a host- or copy-bound one.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <vector>

namespace tfu::cuda {

class gpu_timeline {
public:
    gpu_timeline() = default;
    ~gpu_timeline() {
        for (cudaEvent_t e : pool_) cudaEventDestroy(e);
    }
    gpu_timeline(const gpu_timeline&) = delete;
    gpu_timeline& operator=(const gpu_timeline&) = delete;

    // Marks on `s`: begin/end of a run's work, begin/end of a download copy. Recording errors only lose a sample.
    void run_begin(cudaStream_t s) { mark(s, kind::run_begin); }
    void run_end(cudaStream_t s) { mark(s, kind::run_end); }
    void copy_begin(cudaStream_t s) { mark(s, kind::copy_begin); }
    void copy_end(cudaStream_t s) { mark(s, kind::copy_end); }

    // After the stream has been waited for: adds the window's times up and starts a new window.
    void close_window() {
        cudaEvent_t first = nullptr, last = nullptr, open = nullptr;
        for (const mark_t& m : marks_) {
            float ms = 0;
            if (m.k == kind::run_begin || m.k == kind::copy_begin) {
                open = m.e;
                if (!first && m.k == kind::run_begin) first = m.e;
            } else if (open && cudaEventElapsedTime(&ms, open, m.e) == cudaSuccess) {
                (m.k == kind::run_end ? in_runs_ms : copy_ms) += ms;
                if (m.k == kind::run_end) last = m.e;
                open = nullptr;
            }
        }
        float span = 0;
        if (first && last && cudaEventElapsedTime(&span, first, last) == cudaSuccess) span_ms += span;
        if (first) ++windows;
        cudaGetLastError();
        marks_.clear();
        used_ = 0;
    }

    // Sums over the closed windows: time inside runs, from the first run's start to the last run's end, and in
    // download copies.
    double in_runs_ms = 0, span_ms = 0, copy_ms = 0;
    unsigned long long windows = 0;

private:
    enum class kind { run_begin, run_end, copy_begin, copy_end };
    struct mark_t {
        kind k;
        cudaEvent_t e;
    };
    void mark(cudaStream_t s, kind k) {
        if (used_ == pool_.size()) {
            cudaEvent_t e = nullptr;
            if (cudaEventCreate(&e) != cudaSuccess) return cudaGetLastError(), void();
            pool_.push_back(e);
        }
        cudaEvent_t e = pool_[used_];
        if (cudaEventRecord(e, s) != cudaSuccess) return cudaGetLastError(), void();
        ++used_;
        marks_.push_back({k, e});
    }
    std::vector<cudaEvent_t> pool_;
    size_t used_ = 0;
    std::vector<mark_t> marks_;
};

}  // namespace tfu::cuda
