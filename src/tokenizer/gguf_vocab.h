// Adapter from GGUF tokenizer metadata (tokenizer.ggml.*) to VocabData: model "llama" (SPM)
// or "gpt2" (byte-level BPE), tokens, scores, token types, merges, pre-tokenizer, special ids.
#pragma once

#include "core/status.h"
#include "tokenizer/vocab.h"

namespace tca {

class GgufFile;

// Errors name the file and the key, e.g. "m.gguf: tokenizer.ggml.scores: 10 values for 12 tokens".
Result<VocabData> vocab_from_gguf(const GgufFile& gguf);

}  // namespace tca
