// TCA-Attention parameters (tca-method M1) and the geometry shared by every backend:
// candidate blocks (M3) and the blocks a query may see under the causal rule (M6).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "core/status.h"

namespace tca {

// How block mass enters the block score h_j (tca-method M3).
enum class MassNorm { kMax, kNone };
const char* mass_norm_name(MassNorm m);
Result<MassNorm> parse_mass_norm(const std::string& name);

constexpr int kMaxPool = 256;  // largest SparseOptions::pool

// Which tokens fill a head's budget (tca-method M5).
//  - kBlock: the paper. Block j keeps its own t_j best tokens (t_j from M4's Psi by rank).
//  - kGlobal: the head keeps T = sum_j t_j tokens, the T best of the whole candidate region
//    under the same order (pooled score, own score, lower position). M4 still sets how many
//    (the calibrated budget); the ranking decides where they fall, so a block holding several
//    attended spans (a chain of assignments, several values) is not capped at its t_j.
enum class Selection { kBlock, kGlobal };
const char* selection_name(Selection s);
Result<Selection> parse_selection(const std::string& name);

struct SparseOptions {
    int block_size = 128;      // b, a power of two
    int local_window = 4096;   // w, a multiple of b
    double alpha = 0.5;        // blend of mass and spread in h_j (M3)
    MassNorm mass_norm = MassNorm::kMax;
    int obs_window = 1;        // queries averaged for token importance (M2); 1 = the paper
    // Token selection (M5 option): a block's tokens are ranked by the max of s over
    // [i - pool, i + pool] (then by s, then by position), so the neighbours of an attended
    // token come with it: a value spanning many tokens (a uuid, a number list) is kept whole
    // when the last query attends only its start. 0 = the paper (rank by s). Applies to the
    // prefill selection and to chunk compaction (M7); a single decode step's block compaction
    // keeps ranking by its own scores.
    int pool = 0;
    Selection selection = Selection::kBlock;  // M5 option: per-block or global top-T
    double tau = 0.9;          // calibration threshold on retained mass (M8)
};

// The ranking score of the M5 pool option: out[i] = max of s[j] over j in [i - pool, i + pool]
// clipped to [0, n), for i in [0, n_out) (n_out <= n); a sliding-window maximum, O(n).
void pool_max(const float* s, int64_t n, int64_t n_out, int pool, float* out);

// Token selection of one head on the host (M5 and its pool/global options), shared by the CPU
// token_select op and the calibration: from n_blocks blocks of b tokens with scores s[0, n)
// (n >= n_blocks * b), block j keeps its keep[j] best tokens (each in [0, b]), or, when global,
// the head keeps the sum of keep best tokens of the whole region. Best: the larger pooled score
// (pool_max; s itself when pool == 0), then the larger s, then the lower position. Writes the
// positions ascending to out (capacity n_blocks * b) and returns their count.
int64_t select_tokens(const float* s, int64_t n, const int32_t* keep, int64_t n_blocks, int b,
                      int pool, bool global, int32_t* out);

// Every parameter checked; the message names the parameter and its value.
Status validate(const SparseOptions& opt);
Status validate_block_size(int64_t block_size);
Status validate_local_window(int64_t local_window, int64_t block_size);

// n = max(0, floor((L - w) / b)) complete candidate blocks before the local band (M3).
inline int64_t n_candidate_blocks(int64_t n_tokens, int64_t local_window, int64_t block_size) {
    if (n_tokens <= local_window) return 0;
    return (n_tokens - local_window) / block_size;
}

// v(i) = clamp(floor((i - w + 1) / b), 0, n): the candidate blocks lying entirely at or before
// i - w, whose selected tokens query position i sees (M6). Floor division of a negative
// numerator is handled by the clamp (numerator < 0 means no block).
inline int64_t visible_blocks(int64_t pos, int64_t local_window, int64_t block_size,
                              int64_t n_blocks) {
    const int64_t num = pos - local_window + 1;
    if (num < 0) return 0;
    return std::min(num / block_size, n_blocks);
}

}  // namespace tca
