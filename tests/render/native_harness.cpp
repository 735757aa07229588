// Runs the CPU kernels of cuda_ext/ (binning, forward, reverse) on a scene read from raw float32 / int32 files and
// writes what they produce, so that tests/render/test_native_widths.py can build the same kernels for other vector
// widths (-march) than the installed extension's and hold each build to the PyTorch reference.
//
//   native_harness DIR   reads DIR/meta.txt "N D W H tile_size geometry_channels" and DIR/{means2d, conics,
//                        opacities, colors, background, radii, depths, v_image, v_alpha}.bin, writes
//                        DIR/out_{image, alpha, v_means2d, v_conics, v_opacities, v_colors}.bin
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "ff/api.h"

namespace {

template <typename T> std::vector<T> read(const std::string& path, size_t n) {
    std::vector<T> v(n);
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f || std::fread(v.data(), sizeof(T), n, f) != n) {
        std::fprintf(stderr, "cannot read %zu values from %s\n", n, path.c_str());
        std::exit(2);
    }
    std::fclose(f);
    return v;
}

template <typename T> void write(const std::string& path, const std::vector<T>& v) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || std::fwrite(v.data(), sizeof(T), v.size(), f) != v.size()) {
        std::fprintf(stderr, "cannot write %s\n", path.c_str());
        std::exit(2);
    }
    std::fclose(f);
}

void* alloc(void* ctx, size_t bytes) {
    auto* held = static_cast<std::vector<std::vector<char>>*>(ctx);
    held->emplace_back(bytes + 16);
    return held->back().data();
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: native_harness DIR\n");
        return 2;
    }
    const std::string d = argv[1];
    long n = 0;
    int D = 0, W = 0, H = 0, ts = 0, k = 0;
    FILE* meta = std::fopen((d + "/meta.txt").c_str(), "r");
    if (!meta || std::fscanf(meta, "%ld %d %d %d %d %d", &n, &D, &W, &H, &ts, &k) != 6) return 2;
    std::fclose(meta);
    const size_t P = size_t(W) * H;
    auto means2d = read<float>(d + "/means2d.bin", 2 * n), conics = read<float>(d + "/conics.bin", 3 * n);
    auto opac = read<float>(d + "/opacities.bin", n), colors = read<float>(d + "/colors.bin", n * D);
    auto bg = read<float>(d + "/background.bin", D), depths = read<float>(d + "/depths.bin", n);
    auto radii = read<int32_t>(d + "/radii.bin", n);
    auto v_image = read<float>(d + "/v_image.bin", P * D), v_alpha = read<float>(d + "/v_alpha.bin", P);

    const int tiles = ff::tiles_along(W, ts) * ff::tiles_along(H, ts);
    std::vector<int32_t> rects(4 * n), offsets(tiles + 1);
    std::vector<std::vector<char>> held;
    ff::BinArgs<float> ba{n, W, H, ts, means2d.data(), radii.data(), conics.data(), opac.data(), depths.data()};
    ff::BinOut<float> bo{rects.data(), offsets.data(), nullptr, 0};
    if (!ff::bin_cpu(ba, bo, ff::Allocator{&alloc, &held}, 2)) return 3;

    std::vector<float> image(P * D), alpha(P);
    std::vector<int32_t> last(P);
    ff::RasterArgs<float> a{n, D, W, H, ts, means2d.data(), conics.data(), opac.data(), colors.data(), bg.data(),
                            rects.data(), offsets.data(), bo.flat_ids};
    ff::rasterize_fwd_cpu(a, ff::RasterOut<float>{image.data(), alpha.data(), last.data()}, 2);
    std::vector<float> v_means2d(2 * n), v_conics(3 * n), v_opac(n), v_colors(n * D);
    ff::RasterGrads<float> g{image.data(), alpha.data(), last.data(), v_image.data(), v_alpha.data(), k,
                             v_means2d.data(), v_conics.data(), v_opac.data(), v_colors.data()};
    ff::rasterize_bwd_cpu(a, g, 2);
    write(d + "/out_image.bin", image);
    write(d + "/out_alpha.bin", alpha);
    write(d + "/out_v_means2d.bin", v_means2d);
    write(d + "/out_v_conics.bin", v_conics);
    write(d + "/out_v_opacities.bin", v_opac);
    write(d + "/out_v_colors.bin", v_colors);
    return 0;
}
