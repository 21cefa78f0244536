// Decode-step fusion on the host (runtime/model.h LayerViews::w_qkv, w_gate_up): a host model
// reads its matrices from the mapped file, so nothing is fused (no copy) and the separate views
// stay; the run state has no fused buffers; TCA_CUDA_FUSED=0 at load turns the switch off. The
// fused forward itself runs on a device only (tests/cuda/engine_cuda_test.cpp).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "runtime/model.h"

namespace tca {
namespace {

const std::string kModel = std::string(TCA_SHARED_DIR) + "/models/stories260K.gguf";

TEST(ModelFusion, HostModelIsNotFused) {
    if (!std::filesystem::exists(kModel)) GTEST_SKIP() << kModel << " absent";
    Result<ModelWeights> w = load_model(kModel);
    ASSERT_TRUE(w.ok()) << w.status().to_string();
    const void* wq_file = w.value().layers[0].wq.data;
    Result<std::unique_ptr<Model>> m = Model::create(std::move(w.value()));
    ASSERT_TRUE(m.ok()) << m.status().to_string();
    const Model& model = *m.value();
    for (int64_t l = 0; l < model.config().n_layer; ++l) {
        EXPECT_EQ(model.layer(l).w_qkv.data, nullptr) << "layer " << l;
        EXPECT_EQ(model.layer(l).w_gate_up.data, nullptr) << "layer " << l;
    }
    EXPECT_EQ(model.layer(0).wq.data, wq_file);  // the mapped file itself
    Result<std::unique_ptr<RunState>> st = RunState::create(model.config(), 4, false);
    ASSERT_TRUE(st.ok()) << st.status().to_string();
    EXPECT_TRUE(st.value()->qkv.view().empty());
    EXPECT_TRUE(st.value()->gate_up.view().empty());
}

TEST(ModelFusion, EnvironmentSwitch) {
    if (!std::filesystem::exists(kModel)) GTEST_SKIP() << kModel << " absent";
    for (const char* value : {"0", "1", ""}) {
        SCOPED_TRACE(std::string("TCA_CUDA_FUSED=") + value);
        if (*value) {
            ASSERT_EQ(setenv("TCA_CUDA_FUSED", value, 1), 0);
        } else {
            ASSERT_EQ(unsetenv("TCA_CUDA_FUSED"), 0);
        }
        Result<ModelWeights> w = load_model(kModel);
        ASSERT_TRUE(w.ok()) << w.status().to_string();
        Result<std::unique_ptr<Model>> m = Model::create(std::move(w.value()));
        ASSERT_TRUE(m.ok()) << m.status().to_string();
        EXPECT_EQ(m.value()->fused_decode(), std::string(value) != "0");
        m.value()->set_fused_decode(true);
        EXPECT_TRUE(m.value()->fused_decode());
    }
    unsetenv("TCA_CUDA_FUSED");
}

}  // namespace
}  // namespace tca
