// RULER-style task generators (eval_tasks.h). The task set, needle counts (4 keys / values /
// queries), variable-tracking chain (1 chain, 4 hops) and common-words frequencies (10 words,
// 30 times each, the others 3 times) follow the RULER benchmark (Hsieh et al. 2024); the
// wording, word lists and filler text are our own.
#include "eval/eval_tasks.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "core/rng.h"
#include "core/strings.h"

namespace tca {

namespace {

constexpr const char* kTaskNames[kNumEvalTasks] = {
    "niah_single_number", "niah_single_word", "niah_single_uuid", "niah_multikey",
    "niah_multivalue",    "niah_multiquery",  "variable_tracking", "common_words",
};

constexpr int kNeedles = 4;      // multikey / multivalue / multiquery
constexpr int kChainVars = 5;    // variable tracking: 4 hops
constexpr int kCommonWords = 10;
// (common, uncommon) repetitions, tried in order until the uncommon entries outnumber the
// common ones: RULER's 30 / 3, lowered for short contexts.
constexpr std::pair<int, int> kWordFreqs[] = {{30, 3}, {24, 3}, {18, 3}, {12, 3}, {8, 3},
                                              {6, 3},  {4, 3},  {3, 1},  {2, 1}};

// Words for keys ("adjective-noun"), word values and the common-words list.
constexpr const char* kAdjectives[] = {
    "amber", "ancient", "bitter", "brave", "bright", "brisk", "calm", "clever", "crimson",
    "curious", "daring", "distant", "dusty", "eager", "early", "fierce", "fragile", "frozen",
    "gentle", "giant", "golden", "graceful", "hidden", "hollow", "humble", "icy", "jolly",
    "keen", "lively", "lonely", "lucky", "marble", "mellow", "misty", "modest", "narrow",
    "noble", "odd", "olive", "patient", "polite", "proud", "purple", "quiet", "rapid", "restless",
    "rusty", "sandy", "scarlet", "secret", "silent", "silver", "sleepy", "slender", "smooth",
    "solemn", "sour", "spare", "steady", "stormy", "sturdy", "sudden", "sunny", "swift", "tender",
    "thirsty", "tidy", "tiny", "velvet", "vivid", "wandering", "weary", "wicked", "wild", "windy",
    "wise", "wooden", "yellow", "young", "zealous",
};
constexpr const char* kNouns[] = {
    "anchor", "apple", "arrow", "badger", "banner", "basket", "beacon", "blossom", "bridge",
    "bucket", "butterfly", "cabin", "camel", "candle", "canyon", "castle", "cedar", "chimney",
    "cloud", "comet", "compass", "cottage", "crane", "crystal", "dolphin", "dragon", "drum",
    "eagle", "ember", "falcon", "feather", "fiddle", "forest", "fountain", "fox", "garden",
    "glacier", "harbor", "harp", "hedgehog", "helmet", "island", "jackal", "jewel", "kettle",
    "kitten", "ladder", "lantern", "lemon", "lighthouse", "lizard", "meadow", "mirror", "monkey",
    "needle", "nest", "oak", "ocean", "orchard", "otter", "owl", "paddle", "parrot", "pebble",
    "pepper", "pillow", "pirate", "pumpkin", "quarry", "rabbit", "raven", "ribbon", "river",
    "saddle", "salmon", "scroll", "shovel", "spider", "squirrel", "statue", "thimble", "tiger",
    "tulip", "turtle", "umbrella", "valley", "violin", "wagon", "walnut", "whistle", "window",
    "wizard", "zebra",
};

// Default haystack: neutral sentences without digits (numbers in the context are needles).
constexpr const char* kFillerSentences[] = {
    "The morning train left the station a little after the bells had finished ringing.",
    "A gardener watered the long rows of beans that grew along the old stone wall.",
    "Clouds drifted slowly over the hills while the sheep grazed in the valley below.",
    "The baker opened his shop early and the smell of fresh bread filled the street.",
    "Children ran along the beach, chasing the waves back toward the sea.",
    "An old man sat on a bench by the river and fed crumbs to the ducks.",
    "The library was quiet except for the soft turning of pages.",
    "Rain tapped against the windows of the farmhouse all through the afternoon.",
    "A fisherman mended his nets on the pier while gulls circled overhead.",
    "The market square was crowded with people buying fruit, cheese and flowers.",
    "In the evening the lamps were lit one by one along the narrow lanes.",
    "The teacher wrote a long sentence on the board and asked the class to copy it.",
    "A cat slept in a patch of sunlight on the kitchen floor.",
    "The wind carried the scent of pine needles down from the mountains.",
    "Travellers rested at the inn before continuing their journey to the coast.",
    "The orchestra tuned their instruments while the audience found their seats.",
    "Snow covered the fields and the roads were silent for a whole day.",
    "A small boat crossed the lake, leaving a thin line of ripples behind it.",
    "The carpenter measured the board twice before he cut it.",
    "Bees moved from flower to flower in the warm summer meadow.",
    "The postman whistled a tune as he walked from house to house.",
    "Lanterns swayed in the breeze above the tables of the harbour cafe.",
    "The river widened as it approached the town and slowed to a gentle pace.",
    "A painter set up her easel on the hill to catch the last light of the day.",
    "Everyone in the village gathered in the hall for the harvest supper.",
    "The clock in the tower struck the hour and the pigeons scattered.",
    "Two friends walked through the forest, talking about the books they had read.",
    "The shepherd counted his flock as they passed through the gate.",
    "Fog rolled in from the sea and hid the lighthouse for a while.",
    "The kettle began to sing on the stove just as the guests arrived.",
    "A blacksmith hammered a glowing piece of iron into the shape of a horseshoe.",
    "The road wound between green hedges toward a distant church spire.",
};

uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// The seed of one item: a hash of (seed, task, ctx, sample).
uint64_t item_seed(const EvalItemSpec& s) {
    uint64_t h = mix64(s.seed);
    h = mix64(h ^ static_cast<uint64_t>(s.task));
    h = mix64(h ^ static_cast<uint64_t>(s.ctx));
    return mix64(h ^ static_cast<uint64_t>(s.sample));
}

template <class T>
void shuffle(std::vector<T>& v, Rng& rng) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
}

// n distinct indices in [0, size).
std::vector<size_t> distinct_indices(Rng& rng, size_t size, int n) {
    std::vector<size_t> out;
    while (static_cast<int>(out.size()) < n) {
        const size_t i = rng.below(size);
        if (std::find(out.begin(), out.end(), i) == out.end()) out.push_back(i);
    }
    return out;
}

std::string make_number(Rng& rng, int digits) {
    uint64_t lo = 1;
    for (int i = 1; i < digits; ++i) lo *= 10;
    return std::to_string(lo + rng.below(9 * lo));
}

std::string make_uuid(Rng& rng) {
    static const char* hex = "0123456789abcdef";
    std::string u;
    for (int i = 0; i < 32; ++i) {
        if (i == 8 || i == 12 || i == 16 || i == 20) u += '-';
        int d = static_cast<int>(rng.below(16));
        if (i == 12) d = 4;                // version 4
        if (i == 16) d = 8 + (d & 3);      // variant 10xx
        u += hex[d];
    }
    return u;
}

// n distinct "adjective-noun" strings.
std::vector<std::string> make_compounds(Rng& rng, int n) {
    constexpr size_t na = std::size(kAdjectives), nn = std::size(kNouns);
    std::vector<std::string> out;
    for (size_t i : distinct_indices(rng, na * nn, n)) {
        out.push_back(std::string(kAdjectives[i / nn]) + "-" + kNouns[i % nn]);
    }
    return out;
}

// The common-words pool: the real words in a seeded order, then pronounceable pseudo-words
// (three consonant-vowel syllables) when a long context needs more distinct words.
std::vector<std::string> word_pool(Rng& rng, size_t n) {
    std::vector<std::string> words;
    for (const char* w : kAdjectives) words.emplace_back(w);
    for (const char* w : kNouns) words.emplace_back(w);
    shuffle(words, rng);
    if (words.size() >= n) {
        words.resize(n);
        return words;
    }
    const std::set<std::string> real(words.begin(), words.end());
    static const char* cons = "bdfgklmnprstvz";  // 14 consonants x 5 vowels = 70 syllables
    static const char* vows = "aeiou";
    for (uint64_t i = 0; i < 70 * 70 * 70 && words.size() < n; ++i) {
        std::string w;
        for (uint64_t x = i, s = 0; s < 3; ++s, x /= 70) w += {cons[(x % 70) / 5], vows[x % 5]};
        if (!real.count(w)) words.push_back(w);
    }
    TCA_ASSERT(words.size() >= n, "word pool of %zu words, %zu wanted", words.size(), n);
    return words;
}

// The k-th haystack sentence of an item: file sentences in order from a seeded start, or
// generated filler chosen per index.
class HaystackCursor {
public:
    HaystackCursor(const Haystack& h, uint64_t seed) : h_(h), seed_(seed) {
        start_ = h.from_file ? mix64(seed) % h.sentences.size() : 0;
    }
    const std::string& at(int64_t k) const {
        const size_t n = h_.sentences.size();
        if (h_.from_file) return h_.sentences[(start_ + static_cast<size_t>(k)) % n];
        return h_.sentences[mix64(seed_ ^ mix64(static_cast<uint64_t>(k))) % n];
    }

private:
    const Haystack& h_;
    uint64_t seed_;
    size_t start_ = 0;
};

struct Insert {
    double depth;  // in [0, 1]
    std::string sentence;
};

// n haystack sentences with the inserts placed at their depths (in list order at ties).
std::string build_context(const HaystackCursor& hay, int64_t n, const std::vector<Insert>& inserts) {
    std::vector<std::vector<const std::string*>> at(static_cast<size_t>(n + 1));
    for (const Insert& ins : inserts) {
        const auto slot = static_cast<size_t>(std::llround(ins.depth * static_cast<double>(n)));
        at[slot].push_back(&ins.sentence);
    }
    std::string out;
    auto add = [&](const std::string& s) {
        if (!out.empty()) out += ' ';
        out += s;
    };
    for (int64_t i = 0; i <= n; ++i) {
        for (const std::string* s : at[static_cast<size_t>(i)]) add(*s);
        if (i < n) add(hay.at(i));
    }
    return out;
}

// The largest n in [0, inf) with count(build(n)) <= budget (the count grows with n).
// Errors when n = 0 does not fit.
Result<std::pair<int64_t, std::string>> fit_units(const std::function<std::string(int64_t)>& build,
                                                  const TokenCounter& count, int64_t budget,
                                                  int64_t max_units) {
    std::string best = build(0);
    const int64_t base = count(best);
    if (base > budget) {
        return invalid_argument("the prompt without context already has %lld tokens, more than "
                                "the %lld available", static_cast<long long>(base),
                                static_cast<long long>(budget));
    }
    // Estimate from 16 units, then gallop and bisect on exact counts.
    const int64_t probe = std::min<int64_t>(16, max_units);
    int64_t per_unit = 1;
    if (probe > 0) per_unit = std::max<int64_t>(1, (count(build(probe)) - base) / probe);
    int64_t lo = 0, hi = std::min(max_units, (budget - base) / per_unit + 1);
    while (hi > lo) {
        std::string t = build(hi);
        if (count(t) > budget) break;
        lo = hi;
        best = std::move(t);
        if (hi == max_units) break;
        hi = std::min(max_units, hi * 2);
    }
    if (lo == hi) return std::make_pair(lo, best);
    while (hi - lo > 1) {
        const int64_t mid = lo + (hi - lo) / 2;
        std::string t = build(mid);
        if (count(t) <= budget) {
            lo = mid;
            best = std::move(t);
        } else {
            hi = mid;
        }
    }
    return std::make_pair(lo, best);
}

std::string join_and(const std::vector<std::string>& v) {
    std::string out;
    for (size_t i = 0; i < v.size(); ++i) {
        if (i > 0) out += i + 1 == v.size() ? " and " : ", ";
        out += v[i];
    }
    return out;
}

constexpr int64_t kMaxHaystackSentences = int64_t{1} << 24;

}  // namespace

const char* eval_task_name(EvalTask task) { return kTaskNames[static_cast<int>(task)]; }

Result<std::vector<EvalTask>> parse_eval_tasks(const std::string& list) {
    std::vector<EvalTask> out;
    auto add = [&](EvalTask t) -> Status {
        if (std::find(out.begin(), out.end(), t) != out.end()) {
            return usage_error("--task lists %s twice", eval_task_name(t));
        }
        out.push_back(t);
        return Status();
    };
    for (const std::string& name : split(list, ',')) {
        if (name == "all" || name == "niah_single") {
            const int n = name == "all" ? kNumEvalTasks : 3;
            for (int i = 0; i < n; ++i) TCA_RETURN_IF_ERROR(add(static_cast<EvalTask>(i)));
            continue;
        }
        int found = -1;
        for (int i = 0; i < kNumEvalTasks; ++i) {
            if (name == kTaskNames[i]) found = i;
        }
        if (found < 0) {
            std::string names = "all, niah_single";
            for (const char* n : kTaskNames) names += std::string(", ") + n;
            return usage_error("--task: unknown task '%s' (tasks: %s)", name.c_str(), names.c_str());
        }
        TCA_RETURN_IF_ERROR(add(static_cast<EvalTask>(found)));
    }
    if (out.empty()) return usage_error("--task: no task given");
    return out;
}

int64_t default_answer_tokens(EvalTask task) {
    switch (task) {
        case EvalTask::kNiahSingleNumber:
        case EvalTask::kNiahSingleWord:
        case EvalTask::kNiahMultikey:
        case EvalTask::kVariableTracking: return 32;
        case EvalTask::kNiahSingleUuid: return 48;
        case EvalTask::kNiahMultivalue:
        case EvalTask::kNiahMultiquery: return 64;
        case EvalTask::kCommonWords: return 96;
    }
    return 32;
}

Haystack generated_haystack() {
    Haystack h;
    for (const char* s : kFillerSentences) h.sentences.emplace_back(s);
    h.source = "generated";
    return h;
}

Result<Haystack> load_haystack(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return not_found("cannot read haystack file %s", path.c_str());
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    Haystack h;
    h.from_file = true;
    h.source = path;
    std::string cur;
    for (size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        const bool space = c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\f' || c == '\v';
        if (space) {
            if (!cur.empty() && cur.back() != ' ') cur += ' ';
            continue;
        }
        cur += c;
        const bool end = c == '.' || c == '!' || c == '?';
        const bool next_space = i + 1 == text.size() || text[i + 1] == ' ' || text[i + 1] == '\n';
        if (end && next_space) {
            h.sentences.push_back(std::move(cur));
            cur.clear();
        }
    }
    while (!cur.empty() && cur.back() == ' ') cur.pop_back();
    if (!cur.empty()) h.sentences.push_back(std::move(cur));
    if (h.sentences.empty()) return invalid_argument("haystack file %s has no text", path.c_str());
    return h;
}

Result<EvalItem> make_eval_item(const EvalItemSpec& spec, const Haystack& haystack,
                                const TokenCounter& count_tokens) {
    TCA_ASSERT(spec.n_samples >= 1 && spec.sample >= 0 && spec.sample < spec.n_samples,
               "sample %lld of %lld", static_cast<long long>(spec.sample),
               static_cast<long long>(spec.n_samples));
    TCA_ASSERT(!haystack.sentences.empty(), "empty haystack");
    EvalItem item;
    item.task = spec.task;
    item.ctx = spec.ctx;
    item.sample = spec.sample;
    item.n_answer_tokens = spec.answer_tokens > 0 ? spec.answer_tokens : default_answer_tokens(spec.task);
    const int64_t budget = spec.ctx - item.n_answer_tokens;
    if (budget < 1) {
        return invalid_argument("--ctx %lld leaves no room for a prompt of task %s after %lld answer "
                                "tokens", static_cast<long long>(spec.ctx), eval_task_name(spec.task),
                                static_cast<long long>(item.n_answer_tokens));
    }
    const uint64_t seed = item_seed(spec);
    Rng rng(seed);
    const HaystackCursor hay(haystack, mix64(seed ^ 0x5eed));
    // The asked needle's depth: evenly spread over the samples, ends included.
    const double depth = spec.n_samples == 1 ? 0.5
                         : static_cast<double>(spec.sample) / static_cast<double>(spec.n_samples - 1);

    std::string instruction, question, answer_prefix;
    std::vector<Insert> inserts;
    std::function<std::string(int64_t)> build_body;
    int64_t max_units = kMaxHaystackSentences;
    switch (spec.task) {
        case EvalTask::kNiahSingleNumber:
        case EvalTask::kNiahSingleWord:
        case EvalTask::kNiahSingleUuid:
        case EvalTask::kNiahMultikey:
        case EvalTask::kNiahMultivalue:
        case EvalTask::kNiahMultiquery: {
            const char* kind = spec.task == EvalTask::kNiahSingleWord ? "word"
                               : spec.task == EvalTask::kNiahSingleUuid ? "uuid" : "number";
            const bool single = spec.task == EvalTask::kNiahSingleNumber ||
                                spec.task == EvalTask::kNiahSingleWord ||
                                spec.task == EvalTask::kNiahSingleUuid;
            const int n_needles = single ? 1 : kNeedles;
            const int n_keys = spec.task == EvalTask::kNiahMultivalue ? 1 : n_needles;
            // Keys and word values come from one draw so that they are all distinct.
            std::vector<std::string> words = make_compounds(rng, n_keys + n_needles);
            const std::vector<std::string> keys(words.begin(), words.begin() + n_keys);
            std::vector<std::string> values;
            std::set<std::string> seen;
            for (int i = 0; i < n_needles; ++i) {
                std::string v;
                do {
                    v = spec.task == EvalTask::kNiahSingleWord   ? words[static_cast<size_t>(n_keys + i)]
                        : spec.task == EvalTask::kNiahSingleUuid ? make_uuid(rng)
                                                                 : make_number(rng, 7);
                } while (seen.count(v));
                seen.insert(v);
                values.push_back(v);
            }
            for (int i = 0; i < n_needles; ++i) {
                const std::string& key = keys[static_cast<size_t>(n_keys == 1 ? 0 : i)];
                inserts.push_back({i == 0 ? depth : rng.uniform(),
                                   strformat("One of the special magic %ss for %s is: %s.", kind,
                                             key.c_str(), values[static_cast<size_t>(i)].c_str())});
            }
            instruction = strformat("Some special magic %ss are hidden in the long text below. Read "
                                    "it carefully and remember them: you will be asked about the "
                                    "%ss afterwards.", kind, kind);
            if (spec.task == EvalTask::kNiahMultivalue) {
                question = strformat("What are all the special magic %ss for %s mentioned in the "
                                     "text above?", kind, keys[0].c_str());
                answer_prefix = strformat("The special magic %ss for %s mentioned in the text above "
                                          "are", kind, keys[0].c_str());
                item.references = values;
            } else if (spec.task == EvalTask::kNiahMultiquery) {
                const std::string all = join_and(keys);
                question = strformat("What are the special magic %ss for %s mentioned in the text "
                                     "above?", kind, all.c_str());
                answer_prefix = strformat("The special magic %ss for %s mentioned in the text above "
                                          "are", kind, all.c_str());
                item.references = values;
            } else {  // single and multikey: the first needle's key is asked
                question = strformat("What is the special magic %s for %s mentioned in the text "
                                     "above?", kind, keys[0].c_str());
                answer_prefix = strformat("The special magic %s for %s mentioned in the text above "
                                          "is", kind, keys[0].c_str());
                item.references = {values[0]};
            }
            item.depth = depth;
            build_body = [&](int64_t n) { return build_context(hay, n, inserts); };
            break;
        }
        case EvalTask::kVariableTracking: {
            std::vector<std::string> names;
            while (static_cast<int>(names.size()) < kChainVars) {
                std::string name;
                for (int i = 0; i < 5; ++i) name += static_cast<char>('A' + rng.below(26));
                if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
            }
            const std::string value = make_number(rng, 5);
            std::vector<double> depths;
            for (int i = 0; i < kChainVars; ++i) depths.push_back(rng.uniform());
            std::sort(depths.begin(), depths.end());  // the chain reads in order
            for (int i = 0; i < kChainVars; ++i) {
                const std::string rhs = i == 0 ? value : "VAR " + names[static_cast<size_t>(i - 1)];
                inserts.push_back({depths[static_cast<size_t>(i)],
                                   strformat("VAR %s = %s.", names[static_cast<size_t>(i)].c_str(), rhs.c_str())});
            }
            instruction = "Memorize the variable assignments in the long text below. You will be "
                          "asked which variables hold a given value.";
            question = strformat("Which variables are assigned the value %s, directly or through "
                                 "other variables, in the text above?", value.c_str());
            answer_prefix = strformat("Following the chain of assignments in the text above, the "
                                      "variables assigned the value %s are:", value.c_str());
            item.references = names;
            item.depth = depths[0];
            build_body = [&](int64_t n) { return build_context(hay, n, inserts); };
            break;
        }
        case EvalTask::kCommonWords: {
            // Each common word appears freq times, each uncommon word ufreq < freq times; the
            // context is filled by adding uncommon words (kWordFreqs for short contexts).
            instruction = "Below is a numbered list of words. Some of the words appear many times "
                          "in it.";
            question = strformat("What are the %d most common words in the list above?", kCommonWords);
            answer_prefix = strformat("The %d words that appear most often in the list above are:",
                                      kCommonWords);
            break;
        }
    }
    auto assemble = [&](const std::string& body) {
        return instruction + "\n\n" + body + "\n\nQuestion: " + question + "\nAnswer: " + answer_prefix;
    };

    Result<std::pair<int64_t, std::string>> fit = invalid_argument("unset");
    if (spec.task == EvalTask::kCommonWords) {
        const uint64_t list_seed = mix64(seed ^ 0xc0ffee);
        const size_t max_words = static_cast<size_t>(spec.ctx + kCommonWords + 1);
        const std::vector<std::string> pool = word_pool(rng, max_words);
        item.references.assign(pool.begin(), pool.begin() + kCommonWords);
        max_units = static_cast<int64_t>(pool.size()) - kCommonWords;
        for (const auto& [freq, ufreq] : kWordFreqs) {
            auto build = [&](int64_t n_uncommon) {
                std::vector<const std::string*> entries;
                for (int w = 0; w < kCommonWords; ++w) {
                    for (int r = 0; r < freq; ++r) entries.push_back(&pool[static_cast<size_t>(w)]);
                }
                for (int64_t w = 0; w < n_uncommon; ++w) {
                    for (int r = 0; r < ufreq; ++r) {
                        entries.push_back(&pool[static_cast<size_t>(kCommonWords + w)]);
                    }
                }
                Rng order(list_seed);
                shuffle(entries, order);
                std::string body;
                for (size_t i = 0; i < entries.size(); ++i) {
                    if (i > 0) body += '\n';
                    body += std::to_string(i + 1) + ". " + *entries[i];
                }
                return assemble(body);
            };
            fit = fit_units(build, count_tokens, budget, max_units);
            if (fit.ok() && fit->first * ufreq >= int64_t{kCommonWords} * freq) break;
        }
    } else {
        fit = fit_units([&](int64_t n) { return assemble(build_body(n)); }, count_tokens, budget, max_units);
    }
    if (!fit.ok()) {
        return invalid_argument("--ctx %lld is too small for task %s: %s (ctx - %lld answer tokens)",
                                static_cast<long long>(spec.ctx), eval_task_name(spec.task),
                                fit.status().message().c_str(),
                                static_cast<long long>(item.n_answer_tokens));
    }
    item.prompt = std::move(fit->second);
    item.n_prompt_tokens = count_tokens(item.prompt);
    return item;
}

std::string reference_answer_text(const EvalItem& item) {
    return " " + join_and(item.references) + ".";
}

Result<AssocRecallItem> make_assoc_recall_item(const AssocRecallSpec& spec, const TokenCounter& count_tokens) {
    Rng rng(mix64(mix64(spec.seed ^ 0xa55c0ull) ^ static_cast<uint64_t>(spec.sample)));
    AssocRecallItem item;
    item.text = "Special magic values are listed below, each with its key. Questions about the keys "
                "follow them: answer each one with the value.";
    struct Needle {
        std::string key, kind, value;
    };
    std::vector<Needle> needles;
    std::set<std::string> used;  // keys and word values: all distinct within an item
    const auto fresh_compound = [&]() {
        for (;;) {
            std::string w = make_compounds(rng, 1)[0];
            if (used.insert(w).second) return w;
        }
    };
    const auto question = [](const Needle& n) {
        return strformat("\nQuestion: What is the special magic %s for %s mentioned in the text above?"
                         "\nAnswer: The special magic %s for %s mentioned in the text above is",
                         n.kind.c_str(), n.key.c_str(), n.kind.c_str(), n.key.c_str());
    };
    int64_t n_tokens = count_tokens(item.text);
    int run_of_questions = 0;  // at most 2 in a row, so that every item stays dense in needles
    for (int lines = 0; lines < 100000; ++lines) {
        bool ask = !needles.empty() && run_of_questions < 2 && rng.uniform() < spec.query_rate;
        if (!ask) {
            Needle n;
            n.key = fresh_compound();
            const double r = rng.uniform();
            n.kind = r < 0.6 ? "number" : r < 0.8 ? "word" : "uuid";
            n.value = n.kind == "number" ? make_number(rng, 7) : n.kind == "word" ? fresh_compound() : make_uuid(rng);
            const std::string line = strformat("\nOne of the special magic %ss for %s is: %s.", n.kind.c_str(),
                                               n.key.c_str(), n.value.c_str());
            // A needle goes in only when a question about it would still fit after it, so the
            // text can always end with an answer; otherwise the line becomes a question.
            if (count_tokens(item.text + line + question(n) + " " + n.value + ".") <= spec.n_tokens) {
                item.text += line;
                n_tokens = count_tokens(item.text);
                needles.push_back(std::move(n));
                ++item.n_needles;
                run_of_questions = 0;
                continue;
            }
            if (needles.empty()) break;
            ask = true;
        }
        const Needle* n = &needles[rng.below(needles.size())];
        std::string answer = " " + n->value + ".";
        std::string next = item.text + question(*n) + answer;
        int64_t c = count_tokens(next);
        if (c > spec.n_tokens && n != &needles.back()) {  // the last needle's question fits
            n = &needles.back();
            answer = " " + n->value + ".";
            next = item.text + question(*n) + answer;
            c = count_tokens(next);
        }
        if (c > spec.n_tokens) break;
        item.text = std::move(next);
        n_tokens = c;
        item.answer_spans.emplace_back(item.text.size() - answer.size(), item.text.size());
        ++run_of_questions;
    }
    if (item.answer_spans.empty()) {
        return invalid_argument("associative recall: %lld tokens hold no needle and question",
                                static_cast<long long>(spec.n_tokens));
    }
    if (item.answer_spans.back().second < item.text.size()) {  // trailing needles nobody asks about
        item.text.resize(item.answer_spans.back().second);
        n_tokens = count_tokens(item.text);
        item.n_needles = 0;
        for (size_t at = item.text.find("\nOne of the special magic "); at != std::string::npos;
             at = item.text.find("\nOne of the special magic ", at + 1)) {
            ++item.n_needles;
        }
    }
    item.n_tokens = n_tokens;
    return item;
}

std::string fnv1a_hex(std::string_view text) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char c : text) {
        h ^= static_cast<uint8_t>(c);
        h *= 0x100000001b3ull;
    }
    return strformat("%016llx", static_cast<unsigned long long>(h));
}

}  // namespace tca
