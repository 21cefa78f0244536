// Unit tests for MappedFile: mapping, moves, empty files, in-memory buffers, error messages.
#include <gtest/gtest.h>

#include <cstring>
#include <utility>

#include "core/mapped_file.h"
#include "model_test_util.h"

namespace tca {
namespace {

TEST(MappedFile, MapsMovesAndReportsErrors) {
    testing::TempDir dir("mmap");
    testing::write_bytes(dir.file("a.bin"), {1, 2, 3, 4, 5});
    testing::write_bytes(dir.file("empty.bin"), {});
    auto r = MappedFile::open(dir.file("a.bin"));
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    MappedFile a = std::move(r).value();
    EXPECT_TRUE(a.is_mapped());
    EXPECT_EQ(a.size(), 5u);
    const uint8_t* p = a.data();
    EXPECT_EQ(p[4], 5);
    MappedFile b = std::move(a);  // the mapping moves; the address is unchanged
    EXPECT_EQ(b.data(), p);
    EXPECT_EQ(a.data(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from is empty
    EXPECT_EQ(a.size(), 0u);
    MappedFile c;
    c = std::move(b);
    EXPECT_EQ(c.bytes().size(), 5u);
    EXPECT_EQ(c.path(), dir.file("a.bin"));

    auto e = MappedFile::open(dir.file("empty.bin"));
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e->size(), 0u);

    auto missing = MappedFile::open(dir.file("nope.bin"));
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
    EXPECT_NE(missing.status().message().find(dir.file("nope.bin")), std::string::npos);
    EXPECT_NE(missing.status().message().find("No such file or directory"), std::string::npos);
    EXPECT_FALSE(MappedFile::open(dir.path()).ok());  // a directory

    MappedFile m = MappedFile::from_bytes({9, 8, 7}, "mem");
    const uint8_t* mp = m.data();
    MappedFile m2 = std::move(m);
    EXPECT_EQ(m2.data(), mp);
    EXPECT_EQ(m2.size(), 3u);
    EXPECT_FALSE(m2.is_mapped());
    EXPECT_EQ(m2.path(), "mem");
}

}  // namespace
}  // namespace tca
