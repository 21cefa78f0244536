// Training items from the evaluation's generators (eval_tasks.h): the answer text of each task
// and the dense associative-recall sequences of the curriculum's first stage.
#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <set>

#include "eval/eval_tasks.h"

namespace tca {
namespace {

// Stand-in token counter: about 4 bytes per token plus BOS (what --export-train uses without
// a tokenizer).
int64_t approx_tokens(std::string_view t) { return 1 + static_cast<int64_t>((t.size() + 3) / 4); }

TEST(TrainItems, AnswerTextContinuesTheAnswerPrefix) {
    EvalItem one;
    one.references = {"1234567"};
    EXPECT_EQ(reference_answer_text(one), " 1234567.");
    EvalItem four;
    four.references = {"a", "b", "c", "d"};
    EXPECT_EQ(reference_answer_text(four), " a, b, c and d.");

    EvalItemSpec spec;
    spec.task = EvalTask::kNiahMultivalue;
    spec.ctx = 512;
    spec.seed = kTrainSeedBase + 5;
    auto item = make_eval_item(spec, generated_haystack(), approx_tokens);
    ASSERT_TRUE(item.ok()) << item.status().to_string();
    const std::string answer = reference_answer_text(*item);
    for (const std::string& r : item->references) EXPECT_NE(answer.find(r), std::string::npos) << r;
    EXPECT_EQ(item->prompt.substr(item->prompt.size() - 4), " are");
}

TEST(TrainItems, AssocRecallAnswersEveryQuestionWithItsNeedle) {
    for (int64_t sample = 0; sample < 20; ++sample) {
        AssocRecallSpec spec;
        spec.sample = sample;
        spec.n_tokens = 512;
        auto item = make_assoc_recall_item(spec, approx_tokens);
        ASSERT_TRUE(item.ok()) << item.status().to_string();
        const std::string& t = item->text;
        EXPECT_LE(item->n_tokens, 512);
        EXPECT_EQ(item->n_tokens, approx_tokens(t));
        EXPECT_GT(item->n_tokens, 512 - 80) << "the budget is filled";
        ASSERT_FALSE(item->answer_spans.empty());
        EXPECT_EQ(item->answer_spans.back().second, t.size()) << "ends with an answer";
        EXPECT_GE(item->n_needles, 3);

        // Needles: unique keys, value by key. No filler: every line is a needle or a Q/A.
        static const std::regex needle(R"(One of the special magic (number|word|uuid)s for ([a-z]+-[a-z]+) is: ([0-9a-z-]+)\.)");
        std::map<std::string, std::string> value_of;
        int n_needles = 0;
        for (auto it = std::sregex_iterator(t.begin(), t.end(), needle); it != std::sregex_iterator(); ++it) {
            EXPECT_TRUE(value_of.emplace((*it)[2].str(), (*it)[3].str()).second) << "duplicate key " << (*it)[2];
            ++n_needles;
        }
        EXPECT_EQ(n_needles, item->n_needles);
        size_t prev_end = 0;
        for (const auto& [b, e] : item->answer_spans) {
            ASSERT_LT(b, e);
            ASSERT_LE(e, t.size());
            EXPECT_GE(b, prev_end);
            prev_end = e;
            // The question right before the answer names a key stated earlier with this value.
            const size_t q = t.rfind("Answer: The special magic ", b);
            ASSERT_NE(q, std::string::npos);
            static const std::regex prefix(R"(Answer: The special magic (number|word|uuid) for ([a-z]+-[a-z]+) mentioned in the text above is)");
            std::smatch m;
            const std::string head = t.substr(q, b - q);
            ASSERT_TRUE(std::regex_match(head, m, prefix)) << head;
            const std::string key = m[2].str();
            ASSERT_TRUE(value_of.count(key)) << key;
            EXPECT_EQ(t.substr(b, e - b), " " + value_of[key] + ".");
            EXPECT_LT(t.find("for " + key + " is: "), b) << "the needle precedes its question";
        }
    }
}

TEST(TrainItems, AssocRecallIsSeededAndVaries) {
    AssocRecallSpec a;
    a.sample = 3;
    const auto x = make_assoc_recall_item(a, approx_tokens), y = make_assoc_recall_item(a, approx_tokens);
    ASSERT_TRUE(x.ok() && y.ok());
    EXPECT_EQ(x->text, y->text);
    AssocRecallSpec b = a;
    b.sample = 4;
    EXPECT_NE(make_assoc_recall_item(b, approx_tokens)->text, x->text);
    b = a;
    b.seed = kTrainSeedBase + 1;
    EXPECT_NE(make_assoc_recall_item(b, approx_tokens)->text, x->text);
    b = a;
    b.n_tokens = 2048;
    const auto longer = make_assoc_recall_item(b, approx_tokens);
    ASSERT_TRUE(longer.ok());
    EXPECT_GT(longer->answer_spans.size(), x->answer_spans.size());
}

TEST(TrainItems, AssocRecallTooShortIsAnError) {
    AssocRecallSpec s;
    s.n_tokens = 40;
    const auto r = make_assoc_recall_item(s, approx_tokens);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("40 tokens"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace tca
