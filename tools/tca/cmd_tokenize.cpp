// `tca tokenize`: prints the token ids of a text (space-separated), special tokens parsed.
#include <cstdio>

#include "commands.h"
#include "core/flags.h"
#include "model/gguf_reader.h"
#include "tokenizer/tokenizer.h"

namespace tca::cli {
namespace {

Status tokenize_main(const std::string& model, const std::string& tokenizer_json,
                     const std::string& text_flag, const std::string& file, bool text_given,
                     bool bos, bool pieces) {
    if (model.empty() == tokenizer_json.empty()) {
        return usage_error("give exactly one of -m MODEL.gguf or --tokenizer tokenizer.json");
    }
    TCA_ASSIGN_OR_RETURN(std::string text, read_prompt(text_flag, file, text_given));
    std::unique_ptr<Tokenizer> tok;
    if (!tokenizer_json.empty()) {
        TCA_ASSIGN_OR_RETURN(Tokenizer t, Tokenizer::from_hf_json_file(tokenizer_json));
        tok = std::make_unique<Tokenizer>(std::move(t));
    } else {
        TCA_ASSIGN_OR_RETURN(GgufFile g, GgufFile::open(model));
        TCA_ASSIGN_OR_RETURN(Tokenizer t, Tokenizer::from_gguf(g));
        tok = std::make_unique<Tokenizer>(std::move(t));
    }
    const std::vector<int32_t> ids = tok->encode(text, bos && tok->add_bos_default(), true);
    for (size_t i = 0; i < ids.size(); ++i) {
        if (pieces) {
            std::printf("%d\t'%s'\n", ids[i], tok->token_to_piece(ids[i], true).c_str());
        } else {
            std::printf(i ? " %d" : "%d", ids[i]);
        }
    }
    if (!pieces) std::printf("\n");
    return Status();
}

}  // namespace

int cmd_tokenize(const std::vector<std::string>& args) {
    std::string model, tokenizer, text, file;
    bool bos = true, pieces = false;
    FlagSet flags("tca tokenize", "Prints the token ids of a text, space-separated (special tokens\n"
                                  "written in the text are parsed).");
    flags.add_string("model", &model, "FILE", "GGUF model whose vocabulary to use");
    flags.add_alias("-m", "model");
    flags.add_string("tokenizer", &tokenizer, "FILE", "Hugging Face tokenizer.json to use instead");
    flags.add_string("prompt", &text, "TEXT", "text to tokenize");
    flags.add_alias("-p", "prompt");
    flags.add_string("file", &file, "FILE", "read the text from FILE");
    flags.add_alias("-f", "file");
    flags.add_bool("bos", &bos, "prepend BOS when the vocabulary expects it (--no-bos to skip)");
    flags.add_bool("pieces", &pieces, "print one 'id<TAB>piece' line per token");
    if (std::optional<int> code = parse_flags(flags, args)) return *code;
    return report_error(tokenize_main(model, tokenizer, text, file, flags.given("prompt"), bos, pieces));
}

}  // namespace tca::cli
