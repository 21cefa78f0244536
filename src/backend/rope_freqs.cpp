// RoPE inverse-frequency tables (rope_freqs.h). Llama 3 scaling follows the published
// formula of the Llama 3.1 release (frequency bands split by wavelength).
#include "backend/rope_freqs.h"

#include <cmath>

namespace tca {

Result<std::vector<float>> rope_inv_freq(int64_t head_dim, double base, const RopeScaling& s) {
    if (head_dim < 2 || head_dim % 2 != 0) {
        return invalid_argument("rope: head_dim must be even and >= 2, got %lld",
                                static_cast<long long>(head_dim));
    }
    if (!(std::isfinite(base) && base > 1.0)) {
        return invalid_argument("rope: freq_base must be finite and > 1, got %g", base);
    }
    if (s.type != RopeScaling::Type::kNone && !(std::isfinite(s.factor) && s.factor > 0.0)) {
        return invalid_argument("rope: scaling factor must be finite and > 0, got %g", s.factor);
    }
    if (s.type == RopeScaling::Type::kLlama3) {
        if (s.original_context_length < 1) {
            return invalid_argument("rope: original_context_length must be > 0, got %lld",
                                    static_cast<long long>(s.original_context_length));
        }
        if (!(s.low_freq_factor > 0.0 && s.high_freq_factor > s.low_freq_factor &&
              std::isfinite(s.high_freq_factor))) {
            return invalid_argument("rope: llama3 scaling needs 0 < low_freq_factor < "
                                    "high_freq_factor, got %g and %g",
                                    s.low_freq_factor, s.high_freq_factor);
        }
    }
    const double pi = 3.14159265358979323846;
    const double ctx = static_cast<double>(s.original_context_length);
    std::vector<float> out(static_cast<size_t>(head_dim / 2));
    for (int64_t i = 0; i < head_dim / 2; ++i) {
        double f = std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
        if (s.type == RopeScaling::Type::kLinear) {
            f /= s.factor;
        } else if (s.type == RopeScaling::Type::kLlama3) {
            const double wavelen = 2.0 * pi / f;
            const double low_wavelen = ctx / s.low_freq_factor;
            const double high_wavelen = ctx / s.high_freq_factor;
            if (wavelen > low_wavelen) {
                f /= s.factor;
            } else if (wavelen >= high_wavelen) {
                const double smooth = (ctx / wavelen - s.low_freq_factor) /
                                      (s.high_freq_factor - s.low_freq_factor);
                f = (1.0 - smooth) * f / s.factor + smooth * f;
            }
        }
        out[static_cast<size_t>(i)] = static_cast<float>(f);
    }
    return out;
}

}  // namespace tca
