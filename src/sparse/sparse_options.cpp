// Validation and names for SparseOptions (sparse_options.h).
#include "sparse/sparse_options.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace tca {

const char* mass_norm_name(MassNorm m) { return m == MassNorm::kMax ? "max" : "none"; }

const char* selection_name(Selection s) { return s == Selection::kGlobal ? "global" : "block"; }

Result<Selection> parse_selection(const std::string& name) {
    if (name == "block") return Selection::kBlock;
    if (name == "global") return Selection::kGlobal;
    return invalid_argument("selection must be 'block' or 'global', got '%s'", name.c_str());
}

Result<MassNorm> parse_mass_norm(const std::string& name) {
    if (name == "max") return MassNorm::kMax;
    if (name == "none") return MassNorm::kNone;
    return invalid_argument("mass_norm must be 'max' or 'none', got '%s'", name.c_str());
}

void pool_max(const float* s, int64_t n, int64_t n_out, int pool, float* out) {
    std::vector<int64_t> window;  // positions of decreasing scores; the front is the maximum
    size_t front = 0;
    int64_t next = 0;  // the next position to enter the window
    for (int64_t i = 0; i < n_out; ++i) {
        for (; next <= std::min(n - 1, i + pool); ++next) {
            while (window.size() > front && s[window.back()] <= s[next]) window.pop_back();
            window.push_back(next);
        }
        while (window[front] < i - pool) ++front;
        out[i] = s[window[front]];
    }
}

int64_t select_tokens(const float* s, int64_t n, const int32_t* keep, int64_t n_blocks, int b,
                      int pool, bool global, int32_t* out) {
    const int64_t region = n_blocks * b;
    std::vector<float> pooled;
    const float* ps = s;
    if (pool > 0) {
        pooled.resize(static_cast<size_t>(region));
        pool_max(s, n, region, pool, pooled.data());
        ps = pooled.data();
    }
    // A strict total order: pooled score, own score, lower position.
    auto better = [&](int32_t a, int32_t c) {
        if (ps[a] != ps[c]) return ps[a] > ps[c];
        return s[a] != s[c] ? s[a] > s[c] : a < c;
    };
    if (global) {
        const int64_t total = std::accumulate(keep, keep + n_blocks, int64_t{0});
        std::vector<int32_t> idx(static_cast<size_t>(region));
        std::iota(idx.begin(), idx.end(), int32_t{0});
        if (total > 0 && total < region) {
            std::nth_element(idx.begin(), idx.begin() + (total - 1), idx.end(), better);
            std::sort(idx.begin(), idx.begin() + total);
        }
        std::copy(idx.begin(), idx.begin() + total, out);
        return total;
    }
    int64_t count = 0;
    std::vector<int32_t> idx(static_cast<size_t>(b));
    for (int64_t j = 0; j < n_blocks; ++j) {
        const int32_t t = keep[j];
        const auto first = static_cast<int32_t>(j * b);
        if (t == 0) continue;
        std::iota(idx.begin(), idx.end(), first);
        if (t < b) {
            std::nth_element(idx.begin(), idx.begin() + (t - 1), idx.end(), better);
            std::sort(idx.begin(), idx.begin() + t);
        }
        std::copy(idx.begin(), idx.begin() + t, out + count);
        count += t;
    }
    return count;
}

Status validate_block_size(int64_t block_size) {
    if (block_size < 1 || block_size > 4096 || (block_size & (block_size - 1)) != 0) {
        return invalid_argument("block_size must be a power of two in [1, 4096], got %lld",
                                static_cast<long long>(block_size));
    }
    return Status();
}

Status validate_local_window(int64_t local_window, int64_t block_size) {
    if (local_window < block_size || local_window % block_size != 0) {
        return invalid_argument(
            "local_window must be a positive multiple of block_size %lld, got %lld",
            static_cast<long long>(block_size), static_cast<long long>(local_window));
    }
    return Status();
}

Status validate(const SparseOptions& opt) {
    TCA_RETURN_IF_ERROR(validate_block_size(opt.block_size));
    TCA_RETURN_IF_ERROR(validate_local_window(opt.local_window, opt.block_size));
    if (!(opt.alpha >= 0.0 && opt.alpha <= 1.0)) {
        return invalid_argument("alpha must be in [0, 1], got %g", opt.alpha);
    }
    if (opt.obs_window < 1 || opt.obs_window > opt.local_window) {
        return invalid_argument("obs_window must be in [1, local_window=%d], got %d",
                                opt.local_window, opt.obs_window);
    }
    if (opt.pool < 0 || opt.pool > kMaxPool) {
        return invalid_argument("pool must be in [0, %d], got %d", kMaxPool, opt.pool);
    }
    if (!(opt.tau > 0.0 && opt.tau <= 1.0)) {
        return invalid_argument("tau must be in (0, 1], got %g", opt.tau);
    }
    return Status();
}

}  // namespace tca
