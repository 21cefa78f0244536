// Budget file (sparse/budget_file.h, docs/formats.md; tca-method M8 step 4): round trip,
// every validation error, identity checks, the weights checksum, and mutated files that must
// fail cleanly rather than crash.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "core/rng.h"
#include "model/random_model.h"
#include "sparse/budget_file.h"
#include "model_test_util.h"

namespace tca {
namespace {

using Json = nlohmann::ordered_json;

BudgetFile sample_file() {
    BudgetFile f;
    f.identity = {"llama", 3, 8, 4, 8, 512, 0x0123456789abcdefULL};
    f.budgets.options.block_size = 16;
    f.budgets.options.local_window = 64;
    f.budgets.options.tau = 0.9;
    f.budgets.options.pool = 5;
    f.budgets.options.selection = Selection::kGlobal;
    f.calibration = {400, 321, 1, 14, "story.txt", "far", 0.25};
    const std::vector<HeadConfig> cands = calibration_candidates(16);
    for (int l = 0; l < 3; ++l) {
        f.budgets.heads.emplace_back();
        f.records.emplace_back();
        for (int h = 0; h < 4; ++h) {
            const bool dense = (l + h) % 5 == 4;
            const int ci = (l * 4 + h) % 14;
            const HeadConfig c = dense ? dense_config(16) : cands[static_cast<size_t>(ci)];
            f.budgets.heads.back().push_back(c);
            HeadBudgetRecord r;
            r.kept_fraction = expected_keep_fraction(c.p, 16);
            r.decode_budget = decode_budget(c.p);
            r.retained_mass = dense ? 1.0 : 0.9 + 0.001 * ci;
            r.dense = dense;
            r.candidate = dense ? -1 : ci;
            f.records.back().push_back(r);
        }
    }
    return f;
}

Json sample_json() { return Json::parse(budget_file_json(sample_file())); }

// Parses a mutated document and expects an error whose message contains every `parts`.
::testing::AssertionResult fails_with(const Json& doc, std::initializer_list<std::string> parts) {
    const Result<BudgetFile> r = parse_budget_file(doc.dump(), "b.json");
    if (r.ok()) return ::testing::AssertionFailure() << "parsed without error";
    const std::string& m = r.status().message();
    if (m.find('\n') != std::string::npos) return ::testing::AssertionFailure() << "multi-line: " << m;
    for (const std::string& p : parts) {
        if (m.find(p) == std::string::npos) {
            return ::testing::AssertionFailure() << "message '" << m << "' lacks '" << p << "'";
        }
    }
    return ::testing::AssertionSuccess();
}

TEST(BudgetFile, RoundTripIsExactAndByteStable) {
    testing::TempDir dir("budget");
    const BudgetFile f = sample_file();
    ASSERT_TRUE(write_budget_file(dir.file("b.json"), f).ok());
    const Result<BudgetFile> r = read_budget_file(dir.file("b.json"));
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    const BudgetFile& g = r.value();
    EXPECT_EQ(g.format_version, kBudgetFileVersion);
    EXPECT_EQ(g.identity.architecture, "llama");
    EXPECT_EQ(g.identity.weights_checksum, 0x0123456789abcdefULL);
    EXPECT_TRUE(check_identity(g.identity, f.identity).ok());
    EXPECT_EQ(g.budgets.options.block_size, 16);
    EXPECT_EQ(g.budgets.options.local_window, 64);
    EXPECT_EQ(g.budgets.options.tau, 0.9);
    EXPECT_EQ(g.budgets.options.mass_norm, MassNorm::kMax);
    EXPECT_EQ(g.calibration.n_tokens, 400);
    EXPECT_EQ(g.calibration.n_query_rows, 321);
    EXPECT_EQ(g.calibration.text, "story.txt");
    EXPECT_EQ(g.calibration.statistic, "far");
    EXPECT_EQ(g.calibration.min_keep, 0.25);
    EXPECT_EQ(g.budgets.options.pool, 5);
    EXPECT_EQ(g.budgets.options.selection, Selection::kGlobal);
    ASSERT_EQ(g.budgets.n_layers(), 3);
    for (int64_t l = 0; l < 3; ++l) {
        for (int64_t h = 0; h < 4; ++h) {
            EXPECT_EQ(g.budgets.head(l, h).p, f.budgets.head(l, h).p);  // exact doubles
            EXPECT_EQ(g.budgets.head(l, h).mu, f.budgets.head(l, h).mu);
            const HeadBudgetRecord& a = g.records[static_cast<size_t>(l)][static_cast<size_t>(h)];
            const HeadBudgetRecord& b = f.records[static_cast<size_t>(l)][static_cast<size_t>(h)];
            EXPECT_EQ(a.kept_fraction, b.kept_fraction);
            EXPECT_EQ(a.decode_budget, b.decode_budget);
            EXPECT_EQ(a.retained_mass, b.retained_mass);
            EXPECT_EQ(a.dense, b.dense);
            EXPECT_EQ(a.candidate, b.candidate);
        }
    }
    EXPECT_EQ(budget_file_json(g), budget_file_json(f));
}

TEST(BudgetFile, MalformedAndStructuralErrors) {
    EXPECT_FALSE(parse_budget_file("{\"format\": ", "b.json").ok());
    EXPECT_NE(parse_budget_file("{\"format\": ", "b.json").status().message().find("b.json: malformed JSON"),
              std::string::npos);
    EXPECT_TRUE(fails_with(Json::array(), {"must be a JSON object"}));
    Json d = sample_json();
    d["format"] = "other";
    EXPECT_TRUE(fails_with(d, {"format", "tca-budgets", "other"}));
    d = sample_json();
    d["format_version"] = 2;
    EXPECT_TRUE(fails_with(d, {"format_version 2 is not supported", "reads 1"}));
    d = sample_json();
    d["model"].erase("n_head");
    EXPECT_TRUE(fails_with(d, {"missing field 'model.n_head'"}));
    d = sample_json();
    d.erase("sparse");
    EXPECT_TRUE(fails_with(d, {"missing field 'sparse'"}));
    d = sample_json();
    d["model"]["n_layer"] = "3";
    EXPECT_TRUE(fails_with(d, {"'model.n_layer' must be an integer", "\"3\""}));
    d = sample_json();
    d["model"]["n_layer"] = 18446744073709551615ULL;
    EXPECT_TRUE(fails_with(d, {"model.n_layer", "must be in"}));
    d = sample_json();
    d["model"]["n_head_kv"] = 9;
    EXPECT_TRUE(fails_with(d, {"model.n_head_kv", "[1, 8]", "9"}));
    d = sample_json();
    d["model"]["weights_checksum"] = "0x12";
    EXPECT_TRUE(fails_with(d, {"model.weights_checksum", "16 hex digits"}));
    d = sample_json();
    d["model"]["architecture"] = "llama\nx";
    EXPECT_TRUE(fails_with(d, {"model.architecture"}));
    d = sample_json();
    d["calibration"]["text"] = 5;
    EXPECT_TRUE(fails_with(d, {"'calibration.text' must be a string"}));
    d = sample_json();
    d["layers"][0]["heads"][1]["dense"] = 1;
    EXPECT_TRUE(fails_with(d, {"layers[0].heads[1].dense", "true or false"}));
}

// Files written before the pool, selection, statistic and min_keep options read as the paper's choices; bad
// values are named.
TEST(BudgetFile, PoolAndStatisticAreOptional) {
    Json d = sample_json();
    d["sparse"].erase("pool");
    d["sparse"].erase("selection");
    d["calibration"].erase("statistic");
    d["calibration"].erase("min_keep");
    const Result<BudgetFile> r = parse_budget_file(d.dump(), "b.json");
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(r.value().budgets.options.pool, 0);
    EXPECT_EQ(r.value().budgets.options.selection, Selection::kBlock);
    EXPECT_EQ(r.value().calibration.statistic, "total");
    EXPECT_EQ(r.value().calibration.min_keep, 0.0);
    d = sample_json();
    d["calibration"]["min_keep"] = 1.5;
    EXPECT_TRUE(fails_with(d, {"calibration.min_keep", "1.5"}));
    d = sample_json();
    d["sparse"]["pool"] = 9999;
    EXPECT_TRUE(fails_with(d, {"sparse.pool", "9999"}));
    d = sample_json();
    d["sparse"]["pool"] = "3";
    EXPECT_TRUE(fails_with(d, {"sparse.pool", "integer"}));
    d = sample_json();
    d["sparse"]["selection"] = "topk";
    EXPECT_TRUE(fails_with(d, {"sparse.selection", "\"block\" or \"global\"", "topk"}));
    d = sample_json();
    d["sparse"]["selection"] = 3;
    EXPECT_TRUE(fails_with(d, {"sparse.selection", "string"}));
    d = sample_json();
    d["calibration"]["statistic"] = "mean";
    EXPECT_TRUE(fails_with(d, {"calibration.statistic", "\"total\" or \"far\"", "mean"}));
}

TEST(BudgetFile, ShapeErrors) {
    Json d = sample_json();
    d["layers"].erase(2);
    EXPECT_TRUE(fails_with(d, {"'layers' has 2 entries but model.n_layer is 3"}));
    d = sample_json();
    d["layers"][1]["heads"].erase(0);
    EXPECT_TRUE(fails_with(d, {"'layers[1].heads' has 3 entries but model.n_head_kv is 4"}));
    d = sample_json();
    d["layers"][1]["layer"] = 2;
    EXPECT_TRUE(fails_with(d, {"layers[1].layer", "is 2, expected 1"}));
    d = sample_json();
    d["layers"][2]["heads"][3]["kv_head"] = 0;
    EXPECT_TRUE(fails_with(d, {"layers[2].heads[3].kv_head", "expected 3"}));
    d = sample_json();
    d["layers"] = Json::object();
    EXPECT_TRUE(fails_with(d, {"'layers' must be an array"}));
}

TEST(BudgetFile, ConfigurationErrors) {
    Json d = sample_json();
    d["layers"][0]["heads"][0]["p"][0] = d["layers"][0]["heads"][0]["p"][0].get<double>() + 0.5;
    EXPECT_TRUE(fails_with(d, {"layers[0].heads[0]", "sum to 1"}));
    d = sample_json();
    d["layers"][1]["heads"][2]["p"].erase(0);
    EXPECT_TRUE(fails_with(d, {"layers[1].heads[2]", "5 entries"}));
    d = sample_json();
    d["layers"][1]["heads"][2]["p"][1] = -0.25;
    EXPECT_TRUE(fails_with(d, {"layers[1].heads[2]", "p[1]"}));
    d = sample_json();
    d["layers"][1]["heads"][2]["p"][1] = "x";
    EXPECT_TRUE(fails_with(d, {"layers[1].heads[2].p[1]' must be a number"}));
    d = sample_json();
    d["layers"][0]["heads"][0]["sigma"] = -1;
    EXPECT_TRUE(fails_with(d, {"layers[0].heads[0].sigma"}));
    d = sample_json();
    d["layers"][0]["heads"][0]["kept_fraction"] = 1.5;
    EXPECT_TRUE(fails_with(d, {"layers[0].heads[0].kept_fraction", "1.5"}));
    d = sample_json();
    d["layers"][0]["heads"][0]["decode_budget"] = 17;
    EXPECT_TRUE(fails_with(d, {"layers[0].heads[0].decode_budget", "[1, 16]", "17"}));
    d = sample_json();
    d["layers"][0]["heads"][0]["candidate"] = 14;
    EXPECT_TRUE(fails_with(d, {"layers[0].heads[0].candidate", "[-1, 13]"}));
    d = sample_json();
    d["layers"][0]["heads"][0]["dense"] = true;  // candidate 0 is not dense
    EXPECT_TRUE(fails_with(d, {"layers[0].heads[0]: dense is true but candidate is 0"}));
}

TEST(BudgetFile, SparseOptionErrors) {
    Json d = sample_json();
    d["sparse"]["block_size"] = 100;
    EXPECT_TRUE(fails_with(d, {"sparse.block_size must be a power of two", "100"}));
    d = sample_json();
    d["sparse"]["local_window"] = 72;
    EXPECT_TRUE(fails_with(d, {"sparse.local_window", "72"}));
    d = sample_json();
    d["sparse"]["tau"] = 1.5;
    EXPECT_TRUE(fails_with(d, {"sparse.tau", "1.5"}));
    d = sample_json();
    d["sparse"]["alpha"] = -0.1;
    EXPECT_TRUE(fails_with(d, {"sparse.alpha", "-0.1"}));
    d = sample_json();
    d["sparse"]["obs_window"] = 0;
    EXPECT_TRUE(fails_with(d, {"sparse.obs_window", "0"}));
    d = sample_json();
    d["sparse"]["mass_norm"] = "sum";
    EXPECT_TRUE(fails_with(d, {"sparse.mass_norm", "\"sum\""}));
    d = sample_json();
    d["sparse"]["block_size"] = 1e300;
    EXPECT_TRUE(fails_with(d, {"sparse.block_size' must be an integer"}));
}

TEST(BudgetFile, UnreadableFile) {
    const Result<BudgetFile> r = read_budget_file("/nonexistent/dir/b.json");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
    EXPECT_NE(r.status().message().find("cannot read budget file /nonexistent/dir/b.json"), std::string::npos);
}

TEST(BudgetFile, MutatedFilesFailCleanly) {
    const std::string good = budget_file_json(sample_file());
    Rng rng(7);
    int parsed = 0;
    for (int iter = 0; iter < 3000; ++iter) {
        std::string s = good;
        const int n_edits = 1 + static_cast<int>(rng.below(4));
        for (int e = 0; e < n_edits; ++e) {
            const size_t at = static_cast<size_t>(rng.below(s.size()));
            switch (rng.below(3)) {
                case 0: s[at] = static_cast<char>(rng.below(256)); break;
                case 1: s.erase(at, 1 + rng.below(8)); break;
                default: s.insert(at, 1, "{}[]\",:0-e9x"[rng.below(12)]); break;
            }
        }
        const Result<BudgetFile> r = parse_budget_file(s, "m.json");
        if (r.ok()) {
            ++parsed;
            continue;  // a harmless edit (whitespace, a digit of a free-form number)
        }
        EXPECT_EQ(r.status().message().find('\n'), std::string::npos) << r.status().message();
    }
    EXPECT_LT(parsed, 3000);
}

TEST(BudgetFile, IdentityMismatchNamesFieldAndValues) {
    const BudgetFileIdentity a{"llama", 5, 8, 4, 8, 512, 0x1111111111111111ULL};
    EXPECT_TRUE(check_identity(a, a).ok());
    auto msg = [&](BudgetFileIdentity b) { return check_identity(a, b).message(); };
    BudgetFileIdentity b = a;
    b.architecture = "qwen2";
    EXPECT_EQ(msg(b), "budget file is for another model: architecture is llama in the file, qwen2 in the model");
    b = a;
    b.n_layer = 32;
    EXPECT_EQ(msg(b), "budget file is for another model: n_layer is 5 in the file, 32 in the model");
    b = a;
    b.n_head = 16;
    EXPECT_NE(msg(b).find("n_head is 8 in the file, 16 in the model"), std::string::npos);
    b = a;
    b.n_head_kv = 2;
    EXPECT_NE(msg(b).find("n_head_kv is 4 in the file, 2 in the model"), std::string::npos);
    b = a;
    b.head_dim = 64;
    EXPECT_NE(msg(b).find("head_dim is 8 in the file, 64 in the model"), std::string::npos);
    b = a;
    b.n_vocab = 32000;
    EXPECT_NE(msg(b).find("n_vocab is 512 in the file, 32000 in the model"), std::string::npos);
    b = a;
    b.weights_checksum = 0x2222222222222222ULL;
    EXPECT_EQ(msg(b), "budget file is for another model: weights_checksum is 0x1111111111111111 in "
                      "the file, 0x2222222222222222 in the model");
}

TEST(BudgetFile, WeightsChecksumIdentifiesTheWeights) {
    testing::TempDir dir("budget_ck");
    RandomModelSpec spec;
    spec.n_vocab = 512;
    spec.n_embd = 64;
    spec.n_layer = 2;
    spec.n_head = 4;
    spec.n_head_kv = 2;
    spec.head_dim = 16;
    spec.n_ff = 128;
    ASSERT_TRUE(write_random_model(dir.file("a.gguf"), spec).ok());
    ASSERT_TRUE(write_random_model(dir.file("a2.gguf"), spec).ok());
    spec.seed = 2;
    ASSERT_TRUE(write_random_model(dir.file("b.gguf"), spec).ok());
    auto a = load_model(dir.file("a.gguf")), a2 = load_model(dir.file("a2.gguf")),
         b = load_model(dir.file("b.gguf"));
    ASSERT_TRUE(a.ok() && a2.ok() && b.ok());
    const BudgetFileIdentity ia = model_identity(a.value());
    EXPECT_EQ(ia.architecture, "llama");
    EXPECT_EQ(ia.n_layer, 2);
    EXPECT_EQ(ia.n_head, 4);
    EXPECT_EQ(ia.n_head_kv, 2);
    EXPECT_EQ(ia.head_dim, 16);
    EXPECT_EQ(ia.n_vocab, 512);
    EXPECT_EQ(ia.weights_checksum, weights_checksum(a2.value()));  // same weights, other file
    EXPECT_NE(ia.weights_checksum, weights_checksum(b.value()));
    EXPECT_TRUE(check_budgets_for_model(ia, a2.value()).ok());
    const Status s = check_budgets_for_model(ia, b.value());
    EXPECT_NE(s.message().find("weights_checksum"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace tca
