// `tca calibrate` on the real stories260K model (tca-method M8): a small block size and window
// so a few hundred tokens of story give candidate blocks; the file must read back, match the
// model's identity, be byte-identical across runs, and a higher tau must keep at least as many
// tokens per head. Runs the built `tca` binary (TCA_BINARY_DIR/tca).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "sparse/budget_file.h"

namespace tca {
namespace {

const std::string kModel = std::string(TCA_SHARED_DIR) + "/models/stories260K.gguf";
const std::string kTca = std::string(TCA_BINARY_DIR) + "/tca";

const char kStory[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
    "park with her friends. One day, she saw a big red ball under a tree. She ran to the ball "
    "and picked it up. It was shiny and round. Lily wanted to show the ball to her mom. She "
    "ran home as fast as she could. Her mom was in the kitchen making a cake. \"Mom, look what "
    "I found!\" Lily said. Her mom smiled and said, \"What a nice ball, Lily. Where did you find "
    "it?\" Lily told her mom about the tree in the park. Her mom said, \"Maybe the ball belongs "
    "to someone else. We should go back and see if someone lost it.\" Lily was sad, but she knew "
    "her mom was right. They went back to the park together. Near the tree, they saw a little "
    "boy named Tim. He was crying. \"I lost my ball,\" he said. Lily gave the ball to Tim. Tim "
    "stopped crying and smiled. \"Thank you!\" he said. Lily and Tim played with the ball all "
    "day. They became best friends. When the sun went down, Lily went home with her mom. She "
    "was happy because she made a new friend. The next day, Lily and Tim met at the park again. "
    "They played tag and ran around the big tree. Then they sat on the grass and looked at the "
    "clouds. One cloud looked like a dog, and another cloud looked like a fish. Tim laughed and "
    "said, \"That cloud looks like a cake!\" Lily laughed too. She thought about the cake her "
    "mom made. \"Let's go to my house and eat cake,\" she said. Tim said yes, and they ran to "
    "Lily's house. Her mom gave them each a big piece of cake. It was sweet and yummy. Lily and "
    "Tim said thank you. After they ate, they played with Lily's toys. They built a tall tower "
    "with blocks. The tower fell down and they laughed. It was the best day ever.";

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

class CalibrateModel : public ::testing::Test {
protected:
    void SetUp() override {
        if (!std::filesystem::exists(kModel)) GTEST_SKIP() << kModel << " absent";
        if (!std::filesystem::exists(kTca)) GTEST_SKIP() << kTca << " not built";
        dir_ = std::filesystem::temp_directory_path() / ("tca_calibrate_" + std::to_string(::getpid()));
        std::filesystem::create_directories(dir_);
        std::ofstream(text()) << kStory;
    }
    void TearDown() override {
        std::error_code ec;
        if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
    }
    std::string text() const { return (dir_ / "story.txt").string(); }
    std::string path(const std::string& name) const { return (dir_ / name).string(); }
    int calibrate(const std::string& out, const std::string& extra) const {
        const std::string cmd = kTca + " calibrate -m " + kModel + " -f " + text() + " -o " + out +
                                " --block-size 16 --local-window 64 --ctx 400 --threads 2 " + extra +
                                " > " + out + ".stdout 2> " + out + ".stderr";
        return std::system(cmd.c_str());
    }

    std::filesystem::path dir_;
};

TEST_F(CalibrateModel, WritesAValidDeterministicFile) {
    ASSERT_EQ(calibrate(path("a.json"), "--heatmap " + path("a.png")), 0) << slurp(path("a.json.stderr"));
    ASSERT_EQ(calibrate(path("b.json"), "--threads 1"), 0) << slurp(path("b.json.stderr"));
    EXPECT_EQ(slurp(path("a.json")), slurp(path("b.json")));  // same input, same bytes
    const Result<BudgetFile> f = read_budget_file(path("a.json"));
    ASSERT_TRUE(f.ok()) << f.status().to_string();
    const auto weights = load_model(kModel);
    ASSERT_TRUE(weights.ok());
    EXPECT_TRUE(check_budgets_for_model(f.value().identity, weights.value()).ok());
    EXPECT_EQ(f.value().identity.n_layer, 5);
    EXPECT_EQ(f.value().identity.n_head_kv, 4);
    EXPECT_EQ(f.value().budgets.options.block_size, 16);
    EXPECT_EQ(f.value().budgets.options.local_window, 64);
    EXPECT_GE(f.value().calibration.n_tokens, 80);
    EXPECT_LE(f.value().calibration.n_tokens, 400);
    for (const auto& layer : f.value().records) {
        for (const HeadBudgetRecord& r : layer) {
            if (!r.dense) {
                EXPECT_GE(r.retained_mass, 0.9);
            }
            EXPECT_GT(r.kept_fraction, 0.0);
        }
    }
    const std::string png = slurp(path("a.png"));
    ASSERT_GT(png.size(), 8u);
    EXPECT_EQ(png.substr(1, 3), "PNG");
    EXPECT_NE(slurp(path("a.json.stdout")).find("mean_kept"), std::string::npos);
}

TEST_F(CalibrateModel, HigherTauKeepsAtLeastAsMuch) {
    ASSERT_EQ(calibrate(path("lo.json"), "--tau 0.5"), 0) << slurp(path("lo.json.stderr"));
    ASSERT_EQ(calibrate(path("hi.json"), "--tau 0.9"), 0) << slurp(path("hi.json.stderr"));
    const auto lo = read_budget_file(path("lo.json")), hi = read_budget_file(path("hi.json"));
    ASSERT_TRUE(lo.ok() && hi.ok());
    double sum_lo = 0, sum_hi = 0;
    for (size_t l = 0; l < lo.value().records.size(); ++l) {
        for (size_t h = 0; h < lo.value().records[l].size(); ++h) {
            const HeadBudgetRecord& a = lo.value().records[l][h];
            const HeadBudgetRecord& b = hi.value().records[l][h];
            EXPECT_GE(b.kept_fraction, a.kept_fraction) << "layer " << l << " head " << h;
            sum_lo += a.kept_fraction;
            sum_hi += b.kept_fraction;
        }
    }
    EXPECT_GT(sum_hi, sum_lo);
}

TEST_F(CalibrateModel, TooShortTextIsAClearError) {
    std::ofstream(path("short.txt")) << "Once upon a time.";
    const std::string cmd = kTca + " calibrate -m " + kModel + " -f " + path("short.txt") + " -o " +
                            path("s.json") + " --block-size 16 --local-window 64 2> " + path("s.err");
    const int rc = std::system(cmd.c_str());
    ASSERT_TRUE(WIFEXITED(rc));
    EXPECT_EQ(WEXITSTATUS(rc), 1);
    EXPECT_NE(slurp(path("s.err")).find("shorter than local window + block size = 64 + 16 = 80"),
              std::string::npos) << slurp(path("s.err"));
    EXPECT_FALSE(std::filesystem::exists(path("s.json")));
}

}  // namespace
}  // namespace tca
