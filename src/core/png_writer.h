// A minimal PNG encoder (8-bit RGB, zlib stream of stored deflate blocks, our own CRC-32 and
// Adler-32; no compression, no library) and a heatmap renderer on top of it, used by
// `tca calibrate --heatmap` to draw the kept fraction per (layer, KV head) (tca-method M8).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace tca {

// CRC-32 (ISO 3309 / PNG: polynomial 0xEDB88320 reflected, init and final xor 0xFFFFFFFF).
// Pass the previous result as `crc` to continue over more bytes.
uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc = 0);
// Adler-32 (RFC 1950).
uint32_t adler32(const uint8_t* data, size_t n);

struct RgbImage {
    int64_t width = 0, height = 0;
    std::vector<uint8_t> pixels;  // [height, width, 3] row-major RGB

    RgbImage() = default;
    RgbImage(int64_t w, int64_t h, uint8_t r, uint8_t g, uint8_t b);
    void set(int64_t x, int64_t y, uint8_t r, uint8_t g, uint8_t b);
    void fill_rect(int64_t x0, int64_t y0, int64_t w, int64_t h, uint8_t r, uint8_t g, uint8_t b);
};

// The PNG file bytes of an image (width, height in [1, 2^24]).
std::string encode_png(const RgbImage& image);
Status write_png(const std::string& path, const RgbImage& image);

// Heatmap of values[row][col] in [0, 1] (clamped; NaN drawn grey): square cells of cell_px
// pixels with 1-pixel gaps, a perceptual blue-green-yellow ramp (0 dark blue, 1 yellow), and a
// vertical legend bar on the right running from 0 (bottom) to 1 (top) with ticks at
// 0, 0.25, 0.5, 0.75 and 1. Rows are drawn top to bottom.
RgbImage render_heatmap(const std::vector<std::vector<double>>& values, int cell_px);
// The ramp colour of v in [0, 1].
void heatmap_colour(double v, uint8_t rgb[3]);

}  // namespace tca
