// Unit tests for the command-line flag parser (core/flags.h).
#include <gtest/gtest.h>

#include "core/flags.h"

namespace tca {
namespace {

struct Fixture {
    std::string model = "m.gguf";
    int64_t n = 32;
    double temp = 0.8;
    bool stream = true;
    std::vector<int64_t> lengths{1024};
    FlagSet flags{"tca run", "Runs a model."};
    Fixture() {
        flags.add_string("model", &model, "FILE", "model file");
        flags.add_alias("-m", "model");
        flags.add_int("n-predict", &n, "tokens to generate");
        flags.add_double("temp", &temp, "temperature");
        flags.add_bool("stream", &stream, "stream output");
        flags.add_int_list("lengths", &lengths, "lengths");
    }
};

TEST(Flags, ParsesEveryKindAndForm) {
    Fixture f;
    bool help = true;
    ASSERT_TRUE(f.flags.parse({"-m", "x.gguf", "--n-predict=7", "--temp", "0.5", "--no-stream",
                               "--lengths", "8k,100"}, &help).ok());
    EXPECT_FALSE(help);
    EXPECT_EQ(f.model, "x.gguf");
    EXPECT_EQ(f.n, 7);
    EXPECT_DOUBLE_EQ(f.temp, 0.5);
    EXPECT_FALSE(f.stream);
    EXPECT_EQ(f.lengths, (std::vector<int64_t>{8192, 100}));
    EXPECT_TRUE(f.flags.given("temp"));
    EXPECT_FALSE(Fixture().flags.given("temp"));
}

TEST(Flags, UsageErrorsNameTheFlagAndValue) {
    bool help = false;
    Status s = Fixture().flags.parse({"--n-predict", "abc"}, &help);
    EXPECT_EQ(s.code(), StatusCode::kUsage);
    EXPECT_EQ(s.message(), "--n-predict expects an integer, got 'abc'");
    s = Fixture().flags.parse({"--bogus"}, &help);
    EXPECT_EQ(s.message(), "tca run: unknown flag '--bogus' (see tca run --help)");
    s = Fixture().flags.parse({"--temp"}, &help);
    EXPECT_EQ(s.message(), "--temp needs a value (X)");
    s = Fixture().flags.parse({"--temp", "nan"}, &help);
    EXPECT_EQ(s.message(), "--temp expects a number, got 'nan'");
    s = Fixture().flags.parse({"stray"}, &help);
    EXPECT_EQ(s.message(), "tca run: unexpected argument 'stray'");
    s = Fixture().flags.parse({"--lengths", "1,,2"}, &help);
    EXPECT_EQ(s.message(), "--lengths expects an integer, got ''");
    s = Fixture().flags.parse({"--n-predict", "99999999999999999999"}, &help);
    EXPECT_EQ(s.code(), StatusCode::kUsage);
}

TEST(Flags, HelpListsEveryFlagWithDefault) {
    Fixture f;
    bool help = false;
    ASSERT_TRUE(f.flags.parse({"--help"}, &help).ok());
    EXPECT_TRUE(help);
    const std::string u = f.flags.usage();
    for (const char* s : {"-m, --model FILE", "(default: \"m.gguf\")", "--n-predict N",
                          "(default: 32)", "--temp X", "(default: 0.8)", "--stream",
                          "(default: on)", "--lengths N,N,...", "(default: 1024)", "--help"}) {
        EXPECT_NE(u.find(s), std::string::npos) << s << "\n" << u;
    }
}

}  // namespace
}  // namespace tca
