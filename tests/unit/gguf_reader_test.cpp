// Unit tests for the GGUF reader and writer: writer -> reader round trips of every KV type and
// tensor type, alignment, error messages for malformed headers, and the stories260K files.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <limits>

#include "core/half.h"
#include "core/mapped_file.h"
#include "model/ggml_quants.h"
#include "model/gguf_reader.h"
#include "model/gguf_writer.h"
#include "model_test_util.h"

namespace tca {
namespace {

void append_u32(std::vector<uint8_t>& v, uint32_t x) {
    v.insert(v.end(), reinterpret_cast<uint8_t*>(&x), reinterpret_cast<uint8_t*>(&x) + 4);
}
void append_u64(std::vector<uint8_t>& v, uint64_t x) {
    v.insert(v.end(), reinterpret_cast<uint8_t*>(&x), reinterpret_cast<uint8_t*>(&x) + 8);
}

TEST(GgufReader, RoundTripAllKvTypes) {
    GgufWriter w;
    w.add_u8("a.u8", 200);
    w.add_i8("a.i8", -100);
    w.add_u16("a.u16", 60000);
    w.add_i16("a.i16", -30000);
    w.add_u32("a.u32", 4000000000u);
    w.add_i32("a.i32", -2000000000);
    w.add_u64("a.u64", uint64_t{1} << 40);
    w.add_i64("a.i64", -(int64_t{1} << 40));
    w.add_f32("a.f32", 1.5f);
    w.add_f64("a.f64", 0.1);
    w.add_bool("a.bool", true);
    w.add_string("a.str", "hello \xe2\x96\x81world");
    w.add_string_array("a.strs", {"", "x", "yz"});
    w.add_i32_array("a.i32s", {-1, 0, 7});
    w.add_u32_array("a.u32s", {1, 2});
    w.add_f32_array("a.f32s", {0.25f, -2.0f});
    // Nested: array of 2 arrays of u8 ({1, 2}, {}).
    std::vector<uint8_t> nested;
    append_u32(nested, static_cast<uint32_t>(GgufValueType::kArray));
    append_u64(nested, 2);
    append_u32(nested, static_cast<uint32_t>(GgufValueType::kU8));
    append_u64(nested, 2);
    nested.push_back(1);
    nested.push_back(2);
    append_u32(nested, static_cast<uint32_t>(GgufValueType::kU8));
    append_u64(nested, 0);
    w.add_raw_kv("a.nested", GgufValueType::kArray, nested);
    const std::vector<uint8_t> bytes = w.to_bytes();

    auto r = GgufFile::parse(bytes.data(), bytes.size(), "kv.gguf");
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    const GgufFile& f = *r;
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.kvs().size(), 17u);
    EXPECT_EQ(*f.get_u64("a.u8"), 200u);
    EXPECT_EQ(*f.get_i64("a.i8"), -100);
    EXPECT_EQ(*f.get_u32("a.u16"), 60000u);
    EXPECT_EQ(*f.get_i64("a.i16"), -30000);
    EXPECT_EQ(*f.get_u64("a.u32"), 4000000000u);  // u64 getter accepts u32
    EXPECT_EQ(*f.get_i64("a.i32"), -2000000000);
    EXPECT_EQ(*f.get_u64("a.u64"), uint64_t{1} << 40);
    EXPECT_EQ(*f.get_i64("a.i64"), -(int64_t{1} << 40));
    EXPECT_EQ(*f.get_f32("a.f32"), 1.5f);
    EXPECT_EQ(*f.get_f64("a.f64"), 0.1);
    EXPECT_EQ(*f.get_f64("a.u32"), 4000000000.0);  // integers read as numbers
    EXPECT_TRUE(*f.get_bool("a.bool"));
    EXPECT_EQ(*f.get_string("a.str"), "hello \xe2\x96\x81world");
    EXPECT_EQ(*f.get_string_array("a.strs"), (std::vector<std::string>{"", "x", "yz"}));
    EXPECT_EQ(*f.get_int_array("a.i32s"), (std::vector<int64_t>{-1, 0, 7}));
    EXPECT_EQ(*f.get_int_array("a.u32s"), (std::vector<int64_t>{1, 2}));
    EXPECT_EQ(*f.get_f32_array("a.f32s"), (std::vector<float>{0.25f, -2.0f}));
    EXPECT_EQ(*f.get_array_count("a.nested"), 2u);
    EXPECT_EQ(f.find_kv("a.nested")->array_type, GgufValueType::kArray);

    // Wrong types, ranges and missing keys are clean errors naming the key.
    EXPECT_EQ(f.get_u64("a.i8").status().code(), StatusCode::kInvalidArgument);  // negative
    EXPECT_EQ(f.get_u32("a.u64").status().code(), StatusCode::kInvalidArgument);
    const Status st = f.get_string("a.u8").status();
    EXPECT_NE(st.message().find("key a.u8 has type u8, expected string"), std::string::npos)
        << st.message();
    EXPECT_EQ(f.get_u64("missing").status().code(), StatusCode::kNotFound);
    EXPECT_EQ(*f.get_u64_or("missing", 9), 9u);
    EXPECT_FALSE(f.get_u64_or("a.str", 9).ok());
    EXPECT_FALSE(f.get_string_array("a.i32s").ok());
    EXPECT_FALSE(f.get_int_array("a.f32s").ok());
}

TEST(GgufReader, RoundTripTensorsAndAlignment) {
    for (uint32_t alignment : {32u, 64u, 1u}) {
        GgufWriter w;
        w.set_alignment(alignment);
        const std::vector<float> v = testing::test_values(2 * 3 * 64, 3);
        const GgmlType types[] = {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16,
                                  GgmlType::kQ8_0, GgmlType::kQ4_0};
        for (GgmlType t : types) {
            ASSERT_TRUE(w.add_tensor(std::string("t.") + ggml_type_name(t), t, {2, 3, 64},
                                     v.data()).ok());
        }
        ASSERT_TRUE(w.add_tensor("one", GgmlType::kF32, {5}, v.data()).ok());
        ASSERT_TRUE(w.add_tensor("four", GgmlType::kF32, {1, 2, 3, 4}, v.data()).ok());
        const std::vector<uint8_t> bytes = w.to_bytes();
        auto r = GgufFile::parse(bytes.data(), bytes.size(), "t.gguf");
        ASSERT_TRUE(r.ok()) << r.status().to_string();
        EXPECT_EQ(r->alignment(), alignment);
        EXPECT_EQ(r->data_offset() % alignment, 0u);
        ASSERT_EQ(r->tensors().size(), 7u);
        for (GgmlType t : types) {
            const GgufTensorInfo* ti = r->find_tensor(std::string("t.") + ggml_type_name(t));
            ASSERT_NE(ti, nullptr);
            EXPECT_EQ(ti->type, t);
            EXPECT_EQ(ti->n_dims, 3);
            EXPECT_EQ(ti->shape_vector(), (std::vector<int64_t>{2, 3, 64}));
            EXPECT_EQ(ti->ne[0], 64);  // ggml order: fastest first
            EXPECT_EQ(ti->ne[2], 2);
            EXPECT_EQ(ti->n_elements, 384u);
            EXPECT_EQ(ti->n_bytes, *ggml_row_bytes(t, 64) * 6);
            EXPECT_EQ(ti->shape_string(), "[2, 3, 64]");
            // Zero-copy: the view points into the buffer we parsed.
            EXPECT_GE(ti->data, bytes.data());
            EXPECT_LE(ti->data + ti->n_bytes, bytes.data() + bytes.size());
            auto expect = encode_from_f32(t, v.data(), 384);
            ASSERT_TRUE(expect.ok());
            EXPECT_EQ(std::memcmp(ti->data, expect->data(), expect->size()), 0);
        }
        EXPECT_EQ(r->find_tensor("four")->shape_vector(), (std::vector<int64_t>{1, 2, 3, 4}));
        EXPECT_EQ(r->find_tensor("one")->n_bytes, 20u);
    }
}

TEST(GgufReader, WriterRejectsBadTensors) {
    GgufWriter w;
    const std::vector<float> v(64, 1.0f);
    EXPECT_FALSE(w.add_tensor("q", GgmlType::kQ8_0, {2, 16}, v.data()).ok());  // partial block
    EXPECT_FALSE(w.add_tensor("k", GgmlType::kQ4_K, {256}, v.data()).ok());   // no encoder
    EXPECT_FALSE(w.add_tensor_bytes("b", GgmlType::kF32, {4}, std::vector<uint8_t>(15)).ok());
    EXPECT_FALSE(w.add_tensor("d", GgmlType::kF32, {1, 1, 1, 1, 1}, v.data()).ok());
}

TEST(GgufReader, FileRoundTripThroughMappedFile) {
    testing::TempDir dir("gguf");
    GgufWriter w;
    w.add_string("general.architecture", "llama");
    const std::vector<float> v = testing::test_values(64, 1);
    ASSERT_TRUE(w.add_tensor("x", GgmlType::kF16, {2, 32}, v.data()).ok());
    ASSERT_TRUE(w.write_file(dir.file("x.gguf")).ok());
    auto r = GgufFile::open(dir.file("x.gguf"));
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    GgufFile moved = std::move(r).value();  // views survive the move
    std::vector<float> got(64);
    ASSERT_TRUE(dequantize(GgmlType::kF16, moved.find_tensor("x")->data, got.data(), 64).ok());
    for (int i = 0; i < 64; ++i) EXPECT_EQ(got[i], f16_to_f32(f32_to_f16(v[i])));
}

TEST(GgufReader, OpenErrorsNameThePath) {
    auto r = GgufFile::open("/nonexistent/dir/m.gguf");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
    EXPECT_NE(r.status().message().find("/nonexistent/dir/m.gguf"), std::string::npos);
    EXPECT_NE(r.status().message().find("No such file"), std::string::npos);
    auto d = MappedFile::open("/tmp");
    EXPECT_FALSE(d.ok());
}

// Builds a header by hand: magic, version, counts, then `rest`.
std::vector<uint8_t> header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    std::vector<uint8_t> v = {'G', 'G', 'U', 'F'};
    append_u32(v, version);
    append_u64(v, n_tensors);
    append_u64(v, n_kv);
    return v;
}

Status parse_status(const std::vector<uint8_t>& b) {
    return GgufFile::parse(b.data(), b.size(), "x.gguf").status();
}

TEST(GgufReader, MalformedHeadersGiveCleanErrors) {
    EXPECT_NE(parse_status({'G', 'G', 'U', 'X', 3, 0, 0, 0}).message().find("bad magic"),
              std::string::npos);
    EXPECT_EQ(parse_status(header(1, 0, 0)).code(), StatusCode::kUnsupported);
    EXPECT_EQ(parse_status(header(4, 0, 0)).code(), StatusCode::kUnsupported);
    EXPECT_TRUE(parse_status(header(2, 0, 0)).ok());
    EXPECT_TRUE(parse_status(header(3, 0, 0)).ok());
    // Absurd counts fail before any allocation.
    EXPECT_NE(parse_status(header(3, 0, uint64_t{1} << 60)).message().find("kv count"),
              std::string::npos);
    EXPECT_NE(parse_status(header(3, ~uint64_t{0}, 0)).message().find("tensor count"),
              std::string::npos);

    // A key whose string length is 2^60.
    std::vector<uint8_t> b = header(3, 0, 1);
    append_u64(b, uint64_t{1} << 60);
    b.resize(b.size() + 16, 'k');
    Status st = parse_status(b);
    EXPECT_EQ(st.code(), StatusCode::kDataLoss);
    EXPECT_NE(st.message().find("string length 1152921504606846976"), std::string::npos)
        << st.message();
    EXPECT_NE(st.message().find("gguf file x.gguf"), std::string::npos);

    // A string array claiming 2^62 elements.
    b = header(3, 0, 1);
    append_u64(b, 1);
    b.push_back('k');
    append_u32(b, static_cast<uint32_t>(GgufValueType::kArray));
    append_u32(b, static_cast<uint32_t>(GgufValueType::kString));
    append_u64(b, uint64_t{1} << 62);
    EXPECT_EQ(parse_status(b).code(), StatusCode::kDataLoss);

    // Nesting deeper than the bound.
    b = header(3, 0, 1);
    append_u64(b, 1);
    b.push_back('k');
    append_u32(b, static_cast<uint32_t>(GgufValueType::kArray));
    for (int i = 0; i < 20; ++i) {
        append_u32(b, static_cast<uint32_t>(GgufValueType::kArray));
        append_u64(b, 1);
    }
    st = parse_status(b);
    EXPECT_NE(st.message().find("nested deeper"), std::string::npos) << st.message();

    // Unknown value type, bad bool, duplicate key.
    b = header(3, 0, 1);
    append_u64(b, 1);
    b.push_back('k');
    append_u32(b, 13);
    EXPECT_NE(parse_status(b).message().find("unknown value type 13"), std::string::npos);
    b = header(3, 0, 1);
    append_u64(b, 1);
    b.push_back('k');
    append_u32(b, static_cast<uint32_t>(GgufValueType::kBool));
    b.push_back(2);
    EXPECT_FALSE(parse_status(b).ok());
    GgufWriter w;
    w.add_u32("dup", 1);
    w.add_u32("dup", 2);
    EXPECT_NE(parse_status(w.to_bytes()).message().find("duplicate key"), std::string::npos);
}

TEST(GgufReader, BadAlignmentAndTensorInfos) {
    {
        GgufWriter w;
        w.add_u32("general.alignment", 48);
        EXPECT_NE(parse_status(w.to_bytes()).message().find("not a power of two"),
                  std::string::npos);
    }
    {
        GgufWriter w;
        w.add_string("general.alignment", "32");
        EXPECT_FALSE(parse_status(w.to_bytes()).ok());
    }
    auto tensor_file = [](uint32_t n_dims, uint64_t ne0, uint32_t type, uint64_t offset) {
        std::vector<uint8_t> b = header(3, 1, 0);
        append_u64(b, 8);
        const char* name = "blk.3.ab";
        b.insert(b.end(), name, name + 8);
        append_u32(b, n_dims);
        for (uint32_t d = 0; d < n_dims; ++d) append_u64(b, d == 0 ? ne0 : 2);
        append_u32(b, type);
        append_u64(b, offset);
        b.resize((b.size() + 31) / 32 * 32 + 256, 0);  // 256 data bytes
        return b;
    };
    EXPECT_TRUE(parse_status(tensor_file(2, 32, 0, 0)).ok());  // 256 bytes: fits exactly
    EXPECT_NE(parse_status(tensor_file(5, 32, 0, 0)).message().find("n_dims 5"),
              std::string::npos);
    EXPECT_NE(parse_status(tensor_file(0, 32, 0, 0)).message().find("n_dims 0"),
              std::string::npos);
    EXPECT_NE(parse_status(tensor_file(1, 32, 99, 0)).message().find("unknown ggml type id 99"),
              std::string::npos);
    EXPECT_NE(parse_status(tensor_file(1, 33, 8, 0)).message().find("block size"),
              std::string::npos);
    EXPECT_NE(parse_status(tensor_file(1, 32, 0, 7)).message().find("alignment"),
              std::string::npos);
    const Status st = parse_status(tensor_file(2, 64, 0, 0));
    EXPECT_NE(st.message().find("tensor blk.3.ab: data [offset 96, 512 bytes] runs past end of "
                                "file (size 352)"),
              std::string::npos)
        << st.message();
    EXPECT_NE(parse_status(tensor_file(4, uint64_t{1} << 62, 0, 0)).message().find("overflow"),
              std::string::npos);
    EXPECT_FALSE(parse_status(tensor_file(1, ~uint64_t{0}, 0, 0)).ok());
    EXPECT_FALSE(parse_status(tensor_file(1, 32, 0, ~uint64_t{0} - 31)).ok());
}

TEST(GgufReader, Stories260KMetadata) {
    const std::string path = testing::shared_models_dir() + "/stories260K.gguf";
    if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not found: skipping";
    auto r = GgufFile::open(path);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    const GgufFile& f = *r;
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.tensors().size(), 48u);
    EXPECT_EQ(f.kvs().size(), 19u);
    EXPECT_EQ(*f.get_string("general.architecture"), "llama");
    EXPECT_EQ(*f.get_u64("llama.block_count"), 5u);
    EXPECT_EQ(*f.get_u64("llama.embedding_length"), 64u);
    EXPECT_EQ(*f.get_string("tokenizer.ggml.model"), "llama");
    auto tokens = f.get_string_array("tokenizer.ggml.tokens");
    ASSERT_TRUE(tokens.ok());
    EXPECT_EQ(tokens->size(), 512u);
    EXPECT_EQ((*tokens)[0], "<unk>");
    EXPECT_EQ(f.get_f32_array("tokenizer.ggml.scores")->size(), 512u);
    const GgufTensorInfo* emb = f.find_tensor("token_embd.weight");
    ASSERT_NE(emb, nullptr);
    EXPECT_EQ(emb->shape_vector(), (std::vector<int64_t>{512, 64}));
    EXPECT_EQ(emb->type, GgmlType::kF32);
    EXPECT_EQ(f.alignment(), 32u);
}

}  // namespace
}  // namespace tca
