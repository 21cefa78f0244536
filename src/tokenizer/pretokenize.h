// Pre-tokenizers of byte-level BPE: the GPT-2, Llama 3 and Qwen2 split regexes implemented as a
// hand-written scanner over Unicode classes (unicode.h), including the \s+(?!\S) lookahead.
#pragma once

#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace tca {

// Splits `text` into the pieces the regex of `pre` matches, left to right. The pieces are
// views into `text`, cover it completely and in order (invalid UTF-8 bytes count as U+FFFD,
// a symbol). kNone returns the whole text as one piece (none for empty text).
std::vector<std::string_view> pre_tokenize(PreTokenizer pre, std::string_view text);

}  // namespace tca
