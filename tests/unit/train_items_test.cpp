// Training items from the evaluation's generators (eval_tasks.h): the answer text of each task
// and the dense associative-recall sequences of the curriculum's first stage.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "eval/eval_tasks.h"

namespace tca {
namespace {

// Stand-in token counter: about 4 bytes per token plus BOS (what --export-train uses without
// a tokenizer).
int64_t approx_tokens(std::string_view t) { return 1 + static_cast<int64_t>((t.size() + 3) / 4); }

// "word-word": two runs of lowercase letters joined by one hyphen.
bool is_key(const std::string& k) {
    const size_t dash = k.find('-');
    if (dash == std::string::npos || dash == 0 || dash + 1 == k.size()) return false;
    for (size_t i = 0; i < k.size(); ++i) {
        if (i != dash && !(k[i] >= 'a' && k[i] <= 'z')) return false;
    }
    return true;
}

bool is_value_type(const std::string& v) { return v == "number" || v == "word" || v == "uuid"; }

// Every "One of the special magic <type>s for <key> is: <value>." as (key, value), in order
// (a plain parser: std::regex trips GCC 12's -Wmaybe-uninitialized under the sanitizers).
std::vector<std::pair<std::string, std::string>> find_needles(const std::string& t) {
    static const std::string lead = "One of the special magic ";
    std::vector<std::pair<std::string, std::string>> out;
    for (size_t p = t.find(lead); p != std::string::npos; p = t.find(lead, p + 1)) {
        const size_t ty = p + lead.size();
        const size_t s_for = t.find("s for ", ty);
        const size_t is = t.find(" is: ", ty);
        if (s_for == std::string::npos || is == std::string::npos || is < s_for) continue;
        const size_t dot = t.find('.', is + 5);
        if (dot == std::string::npos) continue;
        const std::string type = t.substr(ty, s_for - ty), key = t.substr(s_for + 6, is - s_for - 6);
        const std::string value = t.substr(is + 5, dot - is - 5);
        bool value_ok = !value.empty();
        for (char c : value) value_ok = value_ok && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '-');
        if (is_value_type(type) && is_key(key) && value_ok) out.emplace_back(key, value);
    }
    return out;
}

// The key of "Answer: The special magic <type> for <key> mentioned in the text above is", or
// "" when `head` is not exactly such a question.
std::string question_key(const std::string& head) {
    static const std::string lead = "Answer: The special magic ", tail = " mentioned in the text above is";
    if (head.rfind(lead, 0) != 0 || head.size() < lead.size() + tail.size() ||
        head.compare(head.size() - tail.size(), tail.size(), tail) != 0) {
        return "";
    }
    const std::string mid = head.substr(lead.size(), head.size() - lead.size() - tail.size());
    const size_t sp = mid.find(" for ");
    if (sp == std::string::npos || !is_value_type(mid.substr(0, sp))) return "";
    const std::string key = mid.substr(sp + 5);
    return is_key(key) ? key : "";
}

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
        std::map<std::string, std::string> value_of;
        int n_needles = 0;
        for (const auto& [key, value] : find_needles(t)) {
            EXPECT_TRUE(value_of.emplace(key, value).second) << "duplicate key " << key;
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
            const std::string head = t.substr(q, b - q);
            const std::string key = question_key(head);
            ASSERT_FALSE(key.empty()) << head;
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
