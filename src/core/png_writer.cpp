// PNG encoder and heatmap renderer (png_writer.h). Layout of the file: signature, IHDR
// (8-bit RGB, no interlace), one IDAT holding a zlib stream (header 0x78 0x01, stored deflate
// blocks of at most 65535 bytes, Adler-32 of the raw scanlines), IEND. Each scanline is a
// filter byte 0 (none) followed by the row's RGB bytes.
#include "core/png_writer.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>

namespace tca {
namespace {

std::array<uint32_t, 256> make_crc_table() {
    std::array<uint32_t, 256> t{};
    for (uint32_t n = 0; n < 256; ++n) {
        uint32_t c = n;
        for (int k = 0; k < 8; ++k) c = (c & 1U) ? 0xEDB88320U ^ (c >> 1) : c >> 1;
        t[n] = c;
    }
    return t;
}

void put_u32be(std::string& out, uint32_t v) {
    out.push_back(static_cast<char>(v >> 24));
    out.push_back(static_cast<char>(v >> 16));
    out.push_back(static_cast<char>(v >> 8));
    out.push_back(static_cast<char>(v));
}

void put_chunk(std::string& out, const char type[4], const std::string& data) {
    put_u32be(out, static_cast<uint32_t>(data.size()));
    std::string body(type, 4);
    body += data;
    out += body;
    put_u32be(out, crc32(reinterpret_cast<const uint8_t*>(body.data()), body.size()));
}

// Ramp stops (blue -> teal -> green -> yellow), linearly interpolated.
constexpr uint8_t kStops[5][3] = {
    {48, 18, 100}, {50, 90, 150}, {30, 150, 140}, {110, 205, 90}, {250, 230, 40}};

}  // namespace

uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc) {
    static const std::array<uint32_t, 256> table = make_crc_table();
    uint32_t c = crc ^ 0xFFFFFFFFU;
    for (size_t i = 0; i < n; ++i) c = table[(c ^ data[i]) & 0xFFU] ^ (c >> 8);
    return c ^ 0xFFFFFFFFU;
}

uint32_t adler32(const uint8_t* data, size_t n) {
    constexpr uint32_t kMod = 65521;
    uint32_t a = 1, b = 0;
    for (size_t i = 0; i < n; ++i) {
        a = (a + data[i]) % kMod;
        b = (b + a) % kMod;
    }
    return (b << 16) | a;
}

RgbImage::RgbImage(int64_t w, int64_t h, uint8_t r, uint8_t g, uint8_t b) : width(w), height(h) {
    TCA_ASSERT(w >= 0 && h >= 0, "image %lldx%lld", static_cast<long long>(w), static_cast<long long>(h));
    pixels.resize(static_cast<size_t>(w * h * 3));
    fill_rect(0, 0, w, h, r, g, b);
}

void RgbImage::set(int64_t x, int64_t y, uint8_t r, uint8_t g, uint8_t b) {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    uint8_t* p = pixels.data() + (y * width + x) * 3;
    p[0] = r;
    p[1] = g;
    p[2] = b;
}

void RgbImage::fill_rect(int64_t x0, int64_t y0, int64_t w, int64_t h, uint8_t r, uint8_t g,
                         uint8_t b) {
    for (int64_t y = y0; y < y0 + h; ++y) {
        for (int64_t x = x0; x < x0 + w; ++x) set(x, y, r, g, b);
    }
}

std::string encode_png(const RgbImage& img) {
    TCA_ASSERT(img.width >= 1 && img.height >= 1 && img.width <= (1 << 24) && img.height <= (1 << 24),
               "png size %lldx%lld", static_cast<long long>(img.width), static_cast<long long>(img.height));
    TCA_ASSERT(img.pixels.size() == static_cast<size_t>(img.width * img.height * 3), "png pixels");
    std::string out("\x89PNG\r\n\x1a\n", 8);
    std::string ihdr;
    put_u32be(ihdr, static_cast<uint32_t>(img.width));
    put_u32be(ihdr, static_cast<uint32_t>(img.height));
    ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // depth 8, RGB, deflate, filter 0, no interlace
    put_chunk(out, "IHDR", ihdr);

    const size_t row = static_cast<size_t>(img.width) * 3 + 1;
    std::string raw;
    raw.reserve(row * static_cast<size_t>(img.height));
    for (int64_t y = 0; y < img.height; ++y) {
        raw.push_back('\0');  // filter: none
        raw.append(reinterpret_cast<const char*>(img.pixels.data()) + static_cast<size_t>(y) * (row - 1), row - 1);
    }
    std::string z("\x78\x01", 2);  // deflate, 32K window, no preset dictionary, FCHECK ok
    constexpr size_t kMaxStored = 65535;
    size_t at = 0;
    do {
        const size_t len = std::min(kMaxStored, raw.size() - at);
        const bool last = at + len == raw.size();
        z.push_back(last ? '\x01' : '\x00');  // BFINAL, BTYPE 00 (stored)
        const auto l16 = static_cast<uint16_t>(len), n16 = static_cast<uint16_t>(~l16);
        z.push_back(static_cast<char>(l16 & 0xFF));
        z.push_back(static_cast<char>(l16 >> 8));
        z.push_back(static_cast<char>(n16 & 0xFF));
        z.push_back(static_cast<char>(n16 >> 8));
        z.append(raw, at, len);
        at += len;
    } while (at < raw.size());
    put_u32be(z, adler32(reinterpret_cast<const uint8_t*>(raw.data()), raw.size()));
    put_chunk(out, "IDAT", z);
    put_chunk(out, "IEND", "");
    return out;
}

Status write_png(const std::string& path, const RgbImage& image) {
    const std::string bytes = encode_png(image);
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return io_error("cannot write %s", path.c_str());
    const size_t n = std::fwrite(bytes.data(), 1, bytes.size(), f);
    const bool ok = std::fclose(f) == 0 && n == bytes.size();
    if (!ok) return io_error("short write to %s", path.c_str());
    return Status();
}

void heatmap_colour(double v, uint8_t rgb[3]) {
    if (std::isnan(v)) {
        rgb[0] = rgb[1] = rgb[2] = 128;
        return;
    }
    const double x = std::clamp(v, 0.0, 1.0) * 4.0;
    const int i = std::min(3, static_cast<int>(x));
    const double f = x - i;
    for (int c = 0; c < 3; ++c) {
        const double a = kStops[i][c], b = kStops[i + 1][c];
        rgb[c] = static_cast<uint8_t>(std::lround(a + (b - a) * f));
    }
}

RgbImage render_heatmap(const std::vector<std::vector<double>>& values, int cell_px) {
    const auto rows = static_cast<int64_t>(values.size());
    int64_t cols = 0;
    for (const auto& r : values) cols = std::max(cols, static_cast<int64_t>(r.size()));
    const int64_t cell = std::max(1, cell_px), pitch = cell + 1, margin = 4;
    const int64_t grid_w = std::max<int64_t>(1, cols * pitch + 1), grid_h = std::max<int64_t>(1, rows * pitch + 1);
    const int64_t bar_w = std::max<int64_t>(8, cell / 2), gap = std::max<int64_t>(6, cell / 2);
    const int64_t legend_h = std::max<int64_t>(grid_h, 64);
    RgbImage img(margin + grid_w + gap + bar_w + 6 + margin, margin + legend_h + margin, 255, 255, 255);
    img.fill_rect(margin, margin, grid_w, grid_h, 64, 64, 64);  // gaps between cells
    uint8_t rgb[3];
    for (int64_t r = 0; r < rows; ++r) {
        const auto& row = values[static_cast<size_t>(r)];
        for (int64_t c = 0; c < cols; ++c) {
            const double v = c < static_cast<int64_t>(row.size()) ? row[static_cast<size_t>(c)] : std::nan("");
            heatmap_colour(v, rgb);
            img.fill_rect(margin + 1 + c * pitch, margin + 1 + r * pitch, cell, cell, rgb[0], rgb[1], rgb[2]);
        }
    }
    // Legend: value 1 at the top, 0 at the bottom, ticks every 0.25.
    const int64_t bx = margin + grid_w + gap;
    for (int64_t y = 0; y < legend_h; ++y) {
        heatmap_colour(1.0 - static_cast<double>(y) / static_cast<double>(legend_h - 1), rgb);
        img.fill_rect(bx, margin + y, bar_w, 1, rgb[0], rgb[1], rgb[2]);
    }
    for (int t = 0; t <= 4; ++t) {
        const int64_t y = margin + (legend_h - 1) * t / 4;
        img.fill_rect(bx + bar_w, y, 5, 1, 0, 0, 0);
    }
    return img;
}

}  // namespace tca
