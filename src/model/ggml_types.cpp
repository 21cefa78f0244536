// Table of ggml type ids -> name and block geometry. Sizes follow the public block layouts
// (e.g. Q4_K: f16 d, f16 dmin, 12 scale bytes, 128 nibble bytes = 144 B per 256 elements).
#include "model/ggml_types.h"

#include <string>

#include "core/strings.h"

namespace tca {

namespace {

struct Entry {
    uint32_t id;
    GgmlTypeTraits traits;
};

constexpr Entry kTypes[] = {
    {0, {"F32", 1, 4, true}},        {1, {"F16", 1, 2, true}},
    {2, {"Q4_0", 32, 18, true}},     {3, {"Q4_1", 32, 20, true}},
    {6, {"Q5_0", 32, 22, true}},     {7, {"Q5_1", 32, 24, true}},
    {8, {"Q8_0", 32, 34, true}},     {9, {"Q8_1", 32, 36, false}},
    {10, {"Q2_K", 256, 84, false}},  {11, {"Q3_K", 256, 110, false}},
    {12, {"Q4_K", 256, 144, true}},  {13, {"Q5_K", 256, 176, false}},
    {14, {"Q6_K", 256, 210, true}},  {15, {"Q8_K", 256, 292, false}},
    {16, {"IQ2_XXS", 256, 66, false}}, {17, {"IQ2_XS", 256, 74, false}},
    {18, {"IQ3_XXS", 256, 98, false}}, {19, {"IQ1_S", 256, 50, false}},
    {20, {"IQ4_NL", 32, 18, false}},   {21, {"IQ3_S", 256, 110, false}},
    {22, {"IQ2_S", 256, 82, false}},   {23, {"IQ4_XS", 256, 136, false}},
    {24, {"I8", 1, 1, false}},         {25, {"I16", 1, 2, false}},
    {26, {"I32", 1, 4, false}},        {27, {"I64", 1, 8, false}},
    {28, {"F64", 1, 8, false}},        {29, {"IQ1_M", 256, 56, false}},
    {30, {"BF16", 1, 2, true}},        {34, {"TQ1_0", 256, 54, false}},
    {35, {"TQ2_0", 256, 66, false}},   {39, {"MXFP4", 32, 17, false}},
};

}  // namespace

const GgmlTypeTraits* ggml_type_traits(uint32_t id) {
    for (const Entry& e : kTypes) {
        if (e.id == id) return &e.traits;
    }
    return nullptr;
}

const char* ggml_type_name(GgmlType t) {
    const GgmlTypeTraits* tr = ggml_type_traits(t);
    return tr ? tr->name : "unknown";
}

std::string ggml_type_label(uint32_t id) {
    const GgmlTypeTraits* tr = ggml_type_traits(id);
    return tr ? std::string(tr->name) : strformat("unknown type %u", id);
}

Result<uint64_t> ggml_row_bytes(GgmlType t, int64_t n_elems) {
    const GgmlTypeTraits* tr = ggml_type_traits(t);
    if (tr == nullptr) {
        return unsupported("%s", ggml_type_label(static_cast<uint32_t>(t)).c_str());
    }
    if (n_elems < 0) return invalid_argument("row of %lld elements", static_cast<long long>(n_elems));
    if (n_elems % tr->block_elems != 0) {
        return invalid_argument("row of %lld elements is not a multiple of the %s block size %lld",
                                static_cast<long long>(n_elems), tr->name,
                                static_cast<long long>(tr->block_elems));
    }
    int64_t bytes = 0;
    if (__builtin_mul_overflow(n_elems / tr->block_elems, tr->block_bytes, &bytes)) {
        return invalid_argument("row of %lld %s elements overflows the byte size",
                                static_cast<long long>(n_elems), tr->name);
    }
    return static_cast<uint64_t>(bytes);
}

Status ggml_check_dequantizable(GgmlType t) {
    const GgmlTypeTraits* tr = ggml_type_traits(t);
    if (tr == nullptr) {
        return unsupported("unsupported tensor type %s",
                           ggml_type_label(static_cast<uint32_t>(t)).c_str());
    }
    if (!tr->can_dequantize) return unsupported("unsupported tensor type %s", tr->name);
    return Status::ok_status();
}

}  // namespace tca
