// Loader of Hugging Face tokenizer.json files (BPE model with a ByteLevel pre-tokenizer, e.g.
// Llama 3, Qwen2/3) into VocabData, plus the optional tokenizer_config.json beside it
// (bos/eos tokens, add_bos_token). Errors name the file and the JSON field.
#pragma once

#include <string>
#include <string_view>

#include "core/status.h"
#include "tokenizer/vocab.h"

namespace tca {

// `json_text`: tokenizer.json; `config_text`: tokenizer_config.json or empty; `name` starts
// every message (the path).
Result<VocabData> parse_hf_tokenizer_json(std::string_view json_text, std::string_view name,
                                          std::string_view config_text = {});
// Reads `path` and, when it exists, tokenizer_config.json in the same folder.
Result<VocabData> load_hf_tokenizer_json(const std::string& path);

}  // namespace tca
