// Coverage of the parity suite: every op in TCA_FOR_EACH_OP has a float64 reference and a CPU
// implementation (taken by address through the X-macro, so a missing one is a link error),
// at least kMinCases registered parity cases, and cases at every required edge length.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <set>
#include <string>

#include "backend/cpu/cpu_ops.h"
#include "reference/ref_ops.h"
#include "support/harness.h"

namespace tca::test {
namespace {

constexpr int kMinCases = 10;

struct OpEntry {
    const char* name;
    const void* ref;
    const void* naive;
    const void* cpu;
};

#define TCA_TEST_OP_ENTRY(name, Params)                                                   \
    OpEntry{#name, reinterpret_cast<const void*>(static_cast<Status (*)(const Params&)>(&ref::name)), \
            reinterpret_cast<const void*>(static_cast<Status (*)(const Params&)>(&ref::naive_f32::name)), \
            reinterpret_cast<const void*>(static_cast<Status (*)(const Params&)>(&cpu::name))},
const OpEntry kOps[] = {TCA_FOR_EACH_OP(TCA_TEST_OP_ENTRY)};
#undef TCA_TEST_OP_ENTRY

TEST(ParityCoverage, EveryOpHasReferenceCpuAndEnoughCases) {
    std::map<std::string, int> count;
    std::map<std::string, std::set<std::string>> tags;
    for (const CaseRecord& r : registered_cases()) {
        ++count[r.op];
        for (const std::string& t : edge_tags(r.length, r.block_size, r.local_window)) tags[r.op].insert(t);
    }
    std::set<std::string> known;
    std::printf("| op | parity cases | edge lengths covered |\n|---|---|---|\n");
    for (const OpEntry& e : kOps) {
        known.insert(e.name);
        EXPECT_NE(e.ref, nullptr) << e.name;
        EXPECT_NE(e.naive, nullptr) << e.name;
        EXPECT_NE(e.cpu, nullptr) << e.name;
        std::string covered;
        for (const std::string& t : required_edge_tags()) {
            if (tags[e.name].count(t)) {
                covered += (covered.empty() ? "" : ", ") + t;
            } else {
                ADD_FAILURE() << e.name << ": no parity case of edge length " << t;
            }
        }
        std::printf("| %s | %d | %s |\n", e.name, count[e.name], covered.c_str());
        EXPECT_GE(count[e.name], kMinCases) << e.name << " has too few parity cases";
    }
#ifdef TCA_FOR_EACH_MODEL_OP
    // The model ops (matmul, rms_norm, ...) register parity cases too; their shapes are token
    // counts, not attention lengths, so the edge-length rule does not apply to them.
#define TCA_TEST_KNOWN_MODEL_OP(name, Params) known.insert(#name);
    TCA_FOR_EACH_MODEL_OP(TCA_TEST_KNOWN_MODEL_OP)
#undef TCA_TEST_KNOWN_MODEL_OP
#endif
    // Every registered case belongs to a known op (a typo would otherwise count for nothing).
    for (const auto& [op, n] : count) EXPECT_TRUE(known.count(op)) << "cases for unknown op " << op;
}

TEST(ParityCoverage, EdgeTagsFollowBlockAndWindow) {
    EXPECT_EQ(edge_tags(15, 16, 64), (std::set<std::string>{"b-1"}));
    EXPECT_EQ(edge_tags(55, 16, 64), (std::set<std::string>{"3b+7"}));
    EXPECT_EQ(edge_tags(16, 8, 16), (std::set<std::string>{"w"}));
    EXPECT_EQ(edge_tags(17, 16, 64), (std::set<std::string>{"b+1"}));
    EXPECT_EQ(edge_tags(24, 8, 16), (std::set<std::string>{"w+b"}));
    EXPECT_EQ(edge_tags(1000, 16, 64), (std::set<std::string>{"1000"}));
}

// Prints the measured-error table (for docs/numerics.md) after all tests ran.
class ErrorTablePrinter : public ::testing::Environment {
public:
    void TearDown() override { print_error_table(); }
};
[[maybe_unused]] const auto* const kPrinter = ::testing::AddGlobalTestEnvironment(new ErrorTablePrinter);

}  // namespace
}  // namespace tca::test
