// Python binding of the native rasteriser: checks inputs, allocates outputs, dispatches to the CPU or CUDA kernels.
// No maths here: that lives in include/ff/*.h, shared by cpu/*.cpp and cuda/*.cu.
#include <torch/extension.h>

#include <vector>

#include "ff/api.h"

#ifdef FF_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#endif

namespace {

using at::Tensor;

void check(bool ok, const std::string& msg) { TORCH_CHECK(ok, "featurefields native: ", msg); }

// Every float input: same device and dtype as the first, float32 or float64, the expected shape; made contiguous.
struct Inputs {
    at::Device device = at::kCPU;
    at::ScalarType dtype = at::kFloat;
    bool first = true;

    Tensor operator()(const Tensor& t, const char* name, std::vector<int64_t> shape) {
        return checked(t, name, shape).contiguous();
    }

    // Checked but with its strides kept (the caller picks the layout).
    Tensor checked(const Tensor& t, const char* name, std::vector<int64_t> shape) {
        check(t.defined(), std::string(name) + " is missing");
        if (first) {
            device = t.device();
            dtype = t.scalar_type();
            check(dtype == at::kFloat || dtype == at::kDouble,
                  std::string(name) + " must be float32 or float64, got " + std::string(c10::toString(dtype)));
            first = false;
        }
        check(t.device() == device, std::string(name) + " is on " + t.device().str() + ", expected " + device.str());
        check(t.scalar_type() == dtype, std::string(name) + " has dtype " + std::string(c10::toString(t.scalar_type())) +
                                            ", expected " + std::string(c10::toString(dtype)));
        check_shape(t, name, shape);
        return t;
    }

    Tensor ints(const Tensor& t, const char* name, std::vector<int64_t> shape) {
        check(t.device() == device, std::string(name) + " is on " + t.device().str() + ", expected " + device.str());
        check(t.scalar_type() == at::kInt, std::string(name) + " must be int32");
        check_shape(t, name, shape);
        return t.contiguous();
    }

    static void check_shape(const Tensor& t, const char* name, const std::vector<int64_t>& shape) {
        bool ok = t.dim() == int64_t(shape.size());
        for (size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || t.size(i) == shape[i];
        if (!ok) {
            std::string want = "[";
            for (size_t i = 0; i < shape.size(); ++i)
                want += (i ? ", " : "") + (shape[i] < 0 ? std::string("*") : std::to_string(shape[i]));
            check(false, std::string(name) + " must have shape " + want + "], got " + std::string(c10::str(t.sizes())));
        }
    }

    at::TensorOptions opts() const { return at::TensorOptions().device(device).dtype(dtype); }
    at::TensorOptions int_opts() const { return at::TensorOptions().device(device).dtype(at::kInt); }
    bool cuda() const { return device.is_cuda(); }
};

int threads() { return std::max(1, at::get_num_threads()); }

template <typename T> const T* ptr(const Tensor& t) { return t.defined() ? t.data_ptr<T>() : nullptr; }
template <typename T> T* mptr(const Tensor& t) { return t.defined() ? t.data_ptr<T>() : nullptr; }

// Tensors handed out to the kernels through ff::Allocator, kept alive here.
struct TensorArena {
    at::TensorOptions options;
    std::vector<Tensor> held;
    static void* alloc(void* ctx, size_t bytes) {
        auto* self = static_cast<TensorArena*>(ctx);
        // (never empty: CUB reads a null scratch pointer as a size query)
        self->held.push_back(at::empty({int64_t(std::max<size_t>(bytes, 16))}, self->options.dtype(at::kByte)));
        return self->held.back().data_ptr();
    }
    ff::Allocator allocator() { return ff::Allocator{&TensorArena::alloc, this}; }
};

#ifdef FF_WITH_CUDA
void* stream_of(const Inputs& in) { return c10::cuda::getCurrentCUDAStream(in.device.index()).stream(); }
#define FF_DEVICE_GUARD(in) \
    c10::cuda::OptionalCUDAGuard guard_(in.cuda() ? std::optional<at::Device>(in.device) : std::nullopt)
#define FF_DISPATCH(in, cpu_call, cuda_call) \
    do {                                     \
        if (in.cuda()) {                     \
            cuda_call;                       \
        } else {                             \
            cpu_call;                        \
        }                                    \
    } while (0)
#else
#define FF_DEVICE_GUARD(in) (void)0
#define FF_DISPATCH(in, cpu_call, cuda_call)                                                              \
    do {                                                                                                \
        check(!in.cuda(), "this build has no CUDA kernels (rebuild with a CUDA toolkit: see cuda_ext/)"); \
        cpu_call;                                                                                       \
    } while (0)
#endif

#define FF_FLOATING(in, ...) AT_DISPATCH_FLOATING_TYPES(in.dtype, "featurefields_native", __VA_ARGS__)

// ---- projection -------------------------------------------------------------------------------------------------
template <typename T>
ff::ProjectArgs<T> project_args(const Tensor& means, const Tensor& quats, const Tensor& scales, const Tensor& viewmat,
                                const Tensor& K, int64_t width, int64_t height, double eps2d, double near_plane,
                                double far_plane) {
    return ff::ProjectArgs<T>{means.size(0), int(width), int(height), T(eps2d), T(near_plane), T(far_plane),
                              ptr<T>(means), ptr<T>(quats), ptr<T>(scales), ptr<T>(viewmat), ptr<T>(K)};
}

std::vector<Tensor> project_fwd(const Tensor& means_, const Tensor& quats_, const Tensor& scales_,
                                const Tensor& viewmat_, const Tensor& K_, int64_t width, int64_t height, double eps2d,
                                double near_plane, double far_plane) {
    Inputs in;
    Tensor means = in(means_, "means", {-1, 3});
    const int64_t N = means.size(0);
    Tensor quats = in(quats_, "quats", {N, 4}), scales = in(scales_, "scales", {N, 3});
    Tensor viewmat = in(viewmat_, "viewmat", {4, 4}), K = in(K_, "K", {3, 3});
    check(width > 0 && height > 0, "image size must be positive");
    FF_DEVICE_GUARD(in);
    Tensor means2d = at::empty({N, 2}, in.opts()), conics = at::empty({N, 3}, in.opts());
    Tensor depths = at::empty({N}, in.opts()), radii = at::empty({N}, in.int_opts());
    if (N > 0) {
        FF_FLOATING(in, [&] {
            auto a = project_args<scalar_t>(means, quats, scales, viewmat, K, width, height, eps2d, near_plane,
                                            far_plane);
            ff::ProjectOut<scalar_t> o{mptr<scalar_t>(means2d), mptr<scalar_t>(conics), mptr<scalar_t>(depths),
                                       mptr<int32_t>(radii)};
            FF_DISPATCH(in, ff::project_fwd_cpu(a, o, threads()), ff::project_fwd_cuda(a, o, stream_of(in)));
        });
    }
    return {means2d, conics, depths, radii};
}

std::vector<Tensor> project_bwd(const Tensor& means_, const Tensor& quats_, const Tensor& scales_,
                                const Tensor& viewmat_, const Tensor& K_, int64_t width, int64_t height, double eps2d,
                                double near_plane, double far_plane, const Tensor& radii_, const Tensor& v_means2d_,
                                const Tensor& v_conics_, const c10::optional<Tensor>& v_depths_, bool need_viewmat) {
    Inputs in;
    Tensor means = in(means_, "means", {-1, 3});
    const int64_t N = means.size(0);
    Tensor quats = in(quats_, "quats", {N, 4}), scales = in(scales_, "scales", {N, 3});
    Tensor viewmat = in(viewmat_, "viewmat", {4, 4}), K = in(K_, "K", {3, 3});
    Tensor radii = in.ints(radii_, "radii", {N});
    Tensor v_means2d = in(v_means2d_, "v_means2d", {N, 2}), v_conics = in(v_conics_, "v_conics", {N, 3});
    Tensor v_depths = v_depths_.has_value() && v_depths_->defined() ? in(*v_depths_, "v_depths", {N}) : Tensor();
    FF_DEVICE_GUARD(in);
    Tensor v_means = at::zeros({N, 3}, in.opts()), v_quats = at::zeros({N, 4}, in.opts());
    Tensor v_scales = at::zeros({N, 3}, in.opts());
    Tensor v_viewmat = need_viewmat ? at::zeros({4, 4}, in.opts()) : Tensor();
    if (N > 0) {
        FF_FLOATING(in, [&] {
            auto a = project_args<scalar_t>(means, quats, scales, viewmat, K, width, height, eps2d, near_plane,
                                            far_plane);
            ff::ProjectGrads<scalar_t> g{ptr<int32_t>(radii), ptr<scalar_t>(v_means2d), ptr<scalar_t>(v_conics),
                                         ptr<scalar_t>(v_depths), mptr<scalar_t>(v_means), mptr<scalar_t>(v_quats),
                                         mptr<scalar_t>(v_scales), mptr<scalar_t>(v_viewmat)};
            FF_DISPATCH(in, ff::project_bwd_cpu(a, g, threads()), ff::project_bwd_cuda(a, g, stream_of(in)));
        });
    }
    return {v_means, v_quats, v_scales, v_viewmat};
}

// ---- spherical harmonics ------------------------------------------------------------------------------------------
// coeffs [N, Kd, C] and optionally rest [N, Kr, C] (3DGS keeps the DC term apart): basis k reads coeffs for k < Kd.
struct SHInputs {
    Inputs in;
    Tensor dirs, dc, rest;
    int64_t N = 0, C = 0;
    SHInputs(int64_t degree, const Tensor& dirs_, const Tensor& coeffs_, const c10::optional<Tensor>& rest_) {
        dirs = in(dirs_, "dirs", {-1, 3});
        N = dirs.size(0);
        dc = in(coeffs_, "coeffs", {N, -1, -1});
        C = dc.size(2);
        if (rest_.has_value() && rest_->defined()) rest = in(*rest_, "coeffs_rest", {N, -1, C});
        check(degree >= 0 && degree <= 3, "SH degree must be 0..3");
        check(dc.size(1) + kr() >= (degree + 1) * (degree + 1), "too few SH coefficients for the degree");
    }
    int64_t kr() const { return rest.defined() ? rest.size(1) : 0; }
    template <typename T> ff::SHArgs<T> args(int64_t degree) const {
        return ff::SHArgs<T>{N, int(degree), int(C), ptr<T>(dirs), ptr<T>(dc), int(dc.size(1)),
                             rest.defined() ? ptr<T>(rest) : nullptr, int(kr())};
    }
};

Tensor sh_fwd(int64_t degree, const Tensor& dirs, const Tensor& coeffs, const c10::optional<Tensor>& rest) {
    SHInputs s(degree, dirs, coeffs, rest);
    Inputs& in = s.in;
    FF_DEVICE_GUARD(in);
    Tensor out = at::empty({s.N, s.C}, in.opts());
    if (s.N > 0 && s.C > 0) {
        FF_FLOATING(in, [&] {
            auto a = s.args<scalar_t>(degree);
            FF_DISPATCH(in, ff::sh_fwd_cpu(a, mptr<scalar_t>(out), threads()),
                        ff::sh_fwd_cuda(a, mptr<scalar_t>(out), stream_of(in)));
        });
    }
    return out;
}

std::vector<Tensor> sh_bwd(int64_t degree, const Tensor& dirs, const Tensor& coeffs,
                           const c10::optional<Tensor>& rest, const Tensor& v_out_, bool need_coeffs,
                           bool need_dirs) {
    SHInputs s(degree, dirs, coeffs, rest);
    Inputs& in = s.in;
    Tensor v_out = in(v_out_, "v_colors", {s.N, s.C});
    FF_DEVICE_GUARD(in);
    // (the kernels write every coefficient gradient: no zero-filled arrays)
    Tensor v_dc = need_coeffs ? at::empty_like(s.dc) : Tensor();
    Tensor v_rest = need_coeffs && s.rest.defined() ? at::empty_like(s.rest) : Tensor();
    Tensor v_dirs = need_dirs ? at::zeros_like(s.dirs) : Tensor();
    if (s.N > 0 && s.C > 0 && (need_coeffs || need_dirs)) {
        FF_FLOATING(in, [&] {
            auto a = s.args<scalar_t>(degree);
            ff::SHGrads<scalar_t> g{ptr<scalar_t>(v_out), mptr<scalar_t>(v_dc), mptr<scalar_t>(v_rest),
                                    mptr<scalar_t>(v_dirs)};
            FF_DISPATCH(in, ff::sh_bwd_cpu(a, g, threads()), ff::sh_bwd_cuda(a, g, stream_of(in)));
        });
    } else if (need_coeffs) {
        v_dc.zero_();
        if (v_rest.defined()) v_rest.zero_();
    }
    return {v_dc, v_rest, v_dirs};
}

// ---- tile binning -------------------------------------------------------------------------------------------------
std::vector<Tensor> bin_tiles(const Tensor& means2d_, const Tensor& radii_, const Tensor& conics_,
                              const Tensor& opacities_, const Tensor& depths_, int64_t width, int64_t height,
                              int64_t tile_size) {
    Inputs in;
    Tensor means2d = in(means2d_, "means2d", {-1, 2});
    const int64_t N = means2d.size(0);
    Tensor conics = in(conics_, "conics", {N, 3}), opacities = in(opacities_, "opacities", {N});
    Tensor depths = in(depths_, "depths", {N});
    Tensor radii = in.ints(radii_, "radii", {N});
    check(width > 0 && height > 0, "image size must be positive");
    check(tile_size >= 1 && tile_size <= 32, "tile_size must be in 1..32");
    FF_DEVICE_GUARD(in);
    const int64_t n_tiles = int64_t(ff::tiles_along(int(width), int(tile_size))) *
                            ff::tiles_along(int(height), int(tile_size));
    Tensor rects = at::empty({N, 4}, in.int_opts());
    Tensor offsets = at::zeros({n_tiles + 1}, in.int_opts());
    TensorArena arena{in.opts()};
    Tensor ids;
    FF_FLOATING(in, [&] {
        ff::BinArgs<scalar_t> a{N, int(width), int(height), int(tile_size), ptr<scalar_t>(means2d),
                                ptr<int32_t>(radii), ptr<scalar_t>(conics), ptr<scalar_t>(opacities),
                                ptr<scalar_t>(depths)};
        ff::BinOut<scalar_t> o{mptr<int32_t>(rects), mptr<int32_t>(offsets), nullptr, 0};
        bool ok = true;
        FF_DISPATCH(in, ok = ff::bin_cpu(a, o, arena.allocator(), threads()),
                    ok = ff::bin_cuda(a, o, arena.allocator(), stream_of(in)));
        check(ok, "too many (tile, Gaussian) pairs: " + std::to_string(o.num_pairs) + " (at most 2^31 - 1)");
        ids = at::empty({0}, in.int_opts());
        for (const Tensor& bytes : arena.held)  // flat_ids lives in one of the arena's byte tensors
            if (o.num_pairs > 0 && bytes.data_ptr() == static_cast<void*>(o.flat_ids))
                ids = bytes.view(at::kInt).narrow(0, 0, o.num_pairs);
    });
    return {rects, offsets, ids};
}

// ---- rasterisation ------------------------------------------------------------------------------------------------
struct RasterInputs {
    Inputs in;
    Tensor means2d, conics, opacities, colors, background, rects, offsets, ids;
    int64_t N = 0, D = 0, n_tiles = 0;
    RasterInputs(const Tensor& means2d_, const Tensor& conics_, const Tensor& opacities_, const Tensor& colors_,
                 const Tensor& background_, const Tensor& rects_, const Tensor& offsets_, const Tensor& ids_,
                 int64_t width, int64_t height, int64_t tile_size) {
        means2d = in(means2d_, "means2d", {-1, 2});
        N = means2d.size(0);
        conics = in(conics_, "conics", {N, 3});
        opacities = in(opacities_, "opacities", {N});
        colors = in(colors_, "colors", {N, -1});
        D = colors.size(1);
        check(D >= 1, "colors must have at least one channel");
        background = in(background_, "background", {D});
        check(width > 0 && height > 0, "image size must be positive");
        check(tile_size >= 1 && tile_size <= 32, "tile_size must be in 1..32");
        n_tiles = int64_t(ff::tiles_along(int(width), int(tile_size))) * ff::tiles_along(int(height), int(tile_size));
        rects = in.ints(rects_, "rects", {N, 4});
        offsets = in.ints(offsets_, "tile_offsets", {n_tiles + 1});
        ids = in.ints(ids_, "flat_ids", {-1});
    }
    template <typename T> ff::RasterArgs<T> args(int64_t width, int64_t height, int64_t tile_size) const {
        return ff::RasterArgs<T>{N, int(D), int(width), int(height), int(tile_size), ptr<T>(means2d),
                                 ptr<T>(conics), ptr<T>(opacities), ptr<T>(colors), ptr<T>(background),
                                 ptr<int32_t>(rects), ptr<int32_t>(offsets), ptr<int32_t>(ids)};
    }
};

std::vector<Tensor> rasterize_fwd(const Tensor& means2d, const Tensor& conics, const Tensor& opacities,
                                  const Tensor& colors, const Tensor& background, const Tensor& rects,
                                  const Tensor& tile_offsets, const Tensor& flat_ids, int64_t width, int64_t height,
                                  int64_t tile_size) {
    RasterInputs r(means2d, conics, opacities, colors, background, rects, tile_offsets, flat_ids, width, height,
                   tile_size);
    Inputs& in = r.in;
    FF_DEVICE_GUARD(in);
    // The CUDA kernels work channel-major [D, H, W] (coalesced pixel threads); both return an [H, W, D] tensor.
    Tensor image = in.cuda() ? at::zeros({r.D, height, width}, in.opts())
                             : at::empty({height, width, r.D}, in.opts());  // (the CPU kernel writes every pixel)
    Tensor alpha = at::empty({height, width, 1}, in.opts());
    Tensor last = at::empty({height, width}, in.int_opts());
    FF_FLOATING(in, [&] {
        auto a = r.args<scalar_t>(width, height, tile_size);
        ff::RasterOut<scalar_t> o{mptr<scalar_t>(image), mptr<scalar_t>(alpha), mptr<int32_t>(last)};
        FF_DISPATCH(in, ff::rasterize_fwd_cpu(a, o, threads()), ff::rasterize_fwd_cuda(a, o, stream_of(in)));
    });
    if (in.cuda()) image = image.permute({1, 2, 0});
    return {image, alpha, last};
}

std::vector<Tensor> rasterize_bwd(const Tensor& means2d, const Tensor& conics, const Tensor& opacities,
                                  const Tensor& colors, const Tensor& background, const Tensor& rects,
                                  const Tensor& tile_offsets, const Tensor& flat_ids, int64_t width, int64_t height,
                                  int64_t tile_size, const Tensor& image_, const Tensor& alpha_, const Tensor& last_,
                                  const Tensor& v_image_, const c10::optional<Tensor>& v_alpha_,
                                  int64_t geometry_channels, bool need_geometry, bool need_colors,
                                  bool need_background) {
    RasterInputs r(means2d, conics, opacities, colors, background, rects, tile_offsets, flat_ids, width, height,
                   tile_size);
    Inputs& in = r.in;
    Tensor alpha = in(alpha_, "alpha", {height, width, 1});
    Tensor last = in.ints(last_, "last", {height, width});
    Tensor image = in.checked(image_, "image", {height, width, r.D});
    Tensor v_image = in.checked(v_image_, "v_image", {height, width, r.D});
    Tensor v_background = need_background ? at::zeros({r.D}, in.opts()) : Tensor();
    if (need_background && in.cuda())  // (the CPU kernels sum it as they read dL/dimage)
        v_background = at::mv(v_image.reshape({-1, r.D}).t(), 1 - alpha.reshape({-1}));
    if (in.cuda()) {  // channel-major for the CUDA kernels (no copy for the forward's own image)
        image = image.permute({2, 0, 1}).contiguous();
        v_image = v_image.permute({2, 0, 1}).contiguous();
    } else {
        image = image.contiguous();
        v_image = v_image.contiguous();
    }
    Tensor v_alpha = v_alpha_.has_value() && v_alpha_->defined() ? in(*v_alpha_, "v_alpha", {height, width, 1})
                                                                  : Tensor();
    check(geometry_channels >= 0 && geometry_channels <= r.D, "geometry_channels must be in [0, D]");
    FF_DEVICE_GUARD(in);
    const int64_t N = r.N;
    Tensor v_means2d = need_geometry ? at::zeros({N, 2}, in.opts()) : Tensor();
    Tensor v_conics = need_geometry ? at::zeros({N, 3}, in.opts()) : Tensor();
    Tensor v_opacities = need_geometry ? at::zeros({N}, in.opts()) : Tensor();
    Tensor v_colors = need_colors ? at::zeros({N, r.D}, in.opts()) : Tensor();
    const bool bg_here = need_background && !in.cuda();
    if (N > 0 && (need_geometry || need_colors || bg_here)) {
        FF_FLOATING(in, [&] {
            auto a = r.args<scalar_t>(width, height, tile_size);
            ff::RasterGrads<scalar_t> g{ptr<scalar_t>(image), ptr<scalar_t>(alpha), ptr<int32_t>(last),
                                        ptr<scalar_t>(v_image), ptr<scalar_t>(v_alpha), int(geometry_channels),
                                        mptr<scalar_t>(v_means2d), mptr<scalar_t>(v_conics),
                                        mptr<scalar_t>(v_opacities), mptr<scalar_t>(v_colors),
                                        bg_here ? mptr<scalar_t>(v_background) : nullptr};
            FF_DISPATCH(in, ff::rasterize_bwd_cpu(a, g, threads()), ff::rasterize_bwd_cuda(a, g, stream_of(in)));
        });
    } else if (bg_here) {  // no Gaussian: the background is all there is
        v_background = at::mv(v_image.reshape({-1, r.D}).t(), 1 - alpha.reshape({-1}));
    }
    return {v_means2d, v_conics, v_opacities, v_colors, v_background};
}

// Pair counts of a render (benchmarks: ns per pair, FLOP rate), CPU tensors only.
std::vector<int64_t> rasterize_pairs(const Tensor& means2d, const Tensor& conics, const Tensor& opacities,
                                     const Tensor& colors, const Tensor& background, const Tensor& rects,
                                     const Tensor& tile_offsets, const Tensor& flat_ids, int64_t width, int64_t height,
                                     int64_t tile_size, const Tensor& last_) {
    RasterInputs r(means2d, conics, opacities, colors, background, rects, tile_offsets, flat_ids, width, height,
                   tile_size);
    check(!r.in.cuda(), "rasterize_pairs counts on the CPU");
    Tensor last = r.in.ints(last_, "last", {height, width});
    ff::PairCounts c{0, 0, 0};
    FF_FLOATING(r.in, [&] { c = ff::rasterize_pairs_cpu(r.args<scalar_t>(width, height, tile_size),
                                                         ptr<int32_t>(last), threads()); });
    return {c.live, c.taken, c.entries};
}

bool has_cuda();

#define FF_STR2(x) #x
#define FF_STR(x) FF_STR2(x)

// What the CPU kernels were compiled for: the benchmarks record it next to every number.
py::dict build_info() {
    py::dict d;
    d["simd"] = ff::simd::kName;
    d["vector_bytes"] = ff::simd::kBytes;
    d["float_lanes"] = ff::simd::lanes<float>;
#ifdef FF_CPU_ARCH_NAME
    d["march"] = FF_STR(FF_CPU_ARCH_NAME);
#else
    d["march"] = "";
#endif
    d["compiler"] = __VERSION__;
#ifdef _OPENMP
    d["openmp"] = _OPENMP;
#else
    d["openmp"] = 0;
#endif
    d["cuda"] = has_cuda();
    return d;
}

// ---- a Gaussian mixture at points ------------------------------------------------------------------------------
// (density [P], log_transmit [P], acc [P, C]); CPU only: featurefields/fields/splats.py keeps CUDA tensors on the
// PyTorch reference.
std::vector<Tensor> mixture_at(const Tensor& points_, const Tensor& means_, const Tensor& quats_,
                               const Tensor& scales_, const Tensor& opacities_, const Tensor& values_, double blur,
                               double cutoff) {
    Inputs in;
    Tensor points = in(points_, "points", {-1, 3});
    Tensor means = in(means_, "means", {-1, 3});
    const int64_t N = means.size(0), P = points.size(0);
    Tensor quats = in(quats_, "quats", {N, 4});
    Tensor scales = in(scales_, "scales", {N, 3});
    Tensor opacities = in(opacities_, "opacities", {N});
    Tensor values = in(values_, "values", {N, -1});
    check(!in.cuda(), "mixture_at has CPU kernels only (CUDA tensors take the PyTorch path)");
    check(cutoff > 0 && blur >= 0, "cutoff must be positive and blur not negative");
    const int64_t C = values.size(1);
    Tensor density = at::empty({P}, in.opts()), log_t = at::empty({P}, in.opts()), acc = at::empty({P, C}, in.opts());
    FF_FLOATING(in, [&] {
        ff::MixtureArgs<scalar_t> a{P, N, int(C), scalar_t(blur), scalar_t(cutoff), ptr<scalar_t>(points),
                                    ptr<scalar_t>(means), ptr<scalar_t>(quats), ptr<scalar_t>(scales),
                                    ptr<scalar_t>(opacities), ptr<scalar_t>(values)};
        ff::MixtureOut<scalar_t> o{mptr<scalar_t>(density), mptr<scalar_t>(log_t), mptr<scalar_t>(acc)};
        ff::mixture_at_cpu(a, o, threads());
    });
    return {density, log_t, acc};
}

// ---- render culling ---------------------------------------------------------------------------------------------
Tensor footprint_candidates(const Tensor& means_, const Tensor& log_scales_, const Tensor& viewmat_,
                            const Tensor& K_, int64_t width, int64_t height, double eps2d, double near_plane) {
    Inputs in;
    Tensor means = in(means_, "means", {-1, 3});
    const int64_t N = means.size(0);
    Tensor log_scales = in(log_scales_, "log_scales", {N, 3});
    Tensor viewmat = in(viewmat_, "viewmat", {4, 4});
    Tensor K = in(K_, "K", {3, 3});
    check(!in.cuda(), "footprint_candidates has a CPU kernel only");
    Tensor out = at::empty({N}, at::TensorOptions().dtype(at::kLong));
    int64_t count = 0;
    FF_FLOATING(in, [&] {
        count = ff::footprint_candidates_cpu(N, ptr<scalar_t>(means), ptr<scalar_t>(log_scales),
                                             ptr<scalar_t>(viewmat), ptr<scalar_t>(K), int(width), int(height),
                                             scalar_t(eps2d), scalar_t(near_plane), out.data_ptr<int64_t>());
    });
    return out.slice(0, 0, count).clone();
}

bool has_cuda() {
#ifdef FF_WITH_CUDA
    return true;
#else
    return false;
#endif
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "featurefields native rasteriser: projection, SH, tile binning and blending of any channel count "
              "(CPU and CUDA kernels from one set of headers)";
    // The kernels touch no Python objects, so they let go of the GIL: a render on one thread (a viewer's) then
    // runs beside Python work on others (the viewer's web server, a training step), as torch's own ops do.
    const auto nogil = py::call_guard<py::gil_scoped_release>();
    m.def("project_fwd", &project_fwd, nogil);
    m.def("project_bwd", &project_bwd, nogil);
    m.def("sh_fwd", &sh_fwd, nogil);
    m.def("sh_bwd", &sh_bwd, nogil);
    m.def("bin_tiles", &bin_tiles, nogil);
    m.def("rasterize_fwd", &rasterize_fwd, nogil);
    m.def("rasterize_bwd", &rasterize_bwd, nogil);
    m.def("mixture_at", &mixture_at, "Gaussian mixture at points: (density, log_transmit, value sums)", nogil);
    m.def("footprint_candidates", &footprint_candidates,
          "indices of the Gaussians whose footprint bound meets the image (a superset of what project keeps)", nogil);
    m.def("has_cuda", &has_cuda, "whether the CUDA kernels were compiled in");
    m.def("rasterize_pairs", &rasterize_pairs, "(live, taken, list entries walked) (Gaussian, pixel) pairs of a render");
    m.def("fma_peak_flops", &ff::fma_peak_flops, "FLOP/s of independent FMA chains on this build's vectors",
          py::arg("threads"), py::arg("seconds") = 0.3);
    m.def("build_info", &build_info, "SIMD set, -march, compiler and OpenMP version of the CPU kernels");
}
