// What the model tests on stories260K share: the model's path, a gtest fixture holding a CPU engine (2 threads)
// with the model loaded, and the relative L2 distance the tests compare logits by.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "runtime/engine.h"
#include "runtime/model.h"

namespace tfu::test {

inline const std::string k_stories = std::string(TFU_SHARED_DIR) + "/models/stories260K.gguf";

struct stories_fixture : ::testing::Test {
    void SetUp() override {
        tfu_engine_params ep = tfu_engine_params_default();
        ep.backend = TFU_BACKEND_CPU;
        ep.n_threads = 2;
        eng = std::make_unique<tfu::engine>(ep);
        mdl = std::make_unique<tfu::model>(*eng, k_stories, tfu_model_params_default());
    }
    std::unique_ptr<tfu::engine> eng;
    std::unique_ptr<tfu::model> mdl;
};

// ||a - b|| / ||b|| in double.
inline double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
        den += double(b[i]) * b[i];
    }
    return std::sqrt(num / den);
}

}  // namespace tfu::test
