// Which pixels a projected Gaussian may touch: the rectangle that both binning and blending use.
//
// A Gaussian touches only pixels whose centre lies within its integer radius of the mean along both axes (the 3-sigma
// square of the reference, so the image does not depend on the tile size), and only where it can reach
// alpha >= 1/255: the bounding box of the ellipse sigma <= log(255 o), computed in double with a 1% margin so that
// rounding can never hide a visible pixel. Blending walks exactly this rectangle.
#pragma once

#include "common.h"

namespace ff {

struct PixelRect {
    int32_t x0, x1, y0, y1;  // inclusive pixel index ranges; empty when x0 > x1 or y0 > y1
    FF_HD bool empty() const { return x0 > x1 || y0 > y1; }
};

template <typename T>
FF_HD PixelRect pixel_rect(const T* m, int32_t radius, const T* conic, T opacity, int width, int height) {
    PixelRect r{0, -1, 0, -1};
    if (radius <= 0 || !(m[0] - m[0] == T(0)) || !(m[1] - m[1] == T(0))) return r;
    // The square: ceil(m - r - 0.5) .. floor(m + r - 0.5), in the dtype of the means (as the reference).
    T rr = T(radius);
    double sx0 = ff_ceil(double(m[0] - rr - T(0.5))), sx1 = ff_floor(double(m[0] + rr - T(0.5)));
    double sy0 = ff_ceil(double(m[1] - rr - T(0.5))), sy1 = ff_floor(double(m[1] + rr - T(0.5)));
    // The reach: where o exp(-sigma) >= 1/255, i.e. sigma <= log(255 o); box of that ellipse.
    double a = double(conic[0]), b = double(conic[1]), c = double(conic[2]);
    double det = a * c - b * b;
    if (a > 0 && c > 0 && det > 0) {
        double level = ff_max(1.01 * log(255.0 * double(opacity)) + 0.01, 0.0);
        double ex = ff_sqrt(2.0 * level * c / det), ey = ff_sqrt(2.0 * level * a / det);
        double rx0 = ff_ceil(double(m[0]) - ex - 0.5), rx1 = ff_floor(double(m[0]) + ex - 0.5);
        double ry0 = ff_ceil(double(m[1]) - ey - 0.5), ry1 = ff_floor(double(m[1]) + ey - 0.5);
        if (rx0 - rx0 == 0.0 && rx1 - rx1 == 0.0 && ry0 - ry0 == 0.0 && ry1 - ry1 == 0.0) {
            sx0 = ff_max(sx0, rx0); sx1 = ff_min(sx1, rx1);
            sy0 = ff_max(sy0, ry0); sy1 = ff_min(sy1, ry1);
        }
    }
    r.x0 = int32_t(ff_min(ff_max(sx0, 0.0), double(width)));
    r.x1 = int32_t(ff_max(ff_min(sx1, double(width - 1)), -1.0));
    r.y0 = int32_t(ff_min(ff_max(sy0, 0.0), double(height)));
    r.y1 = int32_t(ff_max(ff_min(sy1, double(height - 1)), -1.0));
    return r;
}

}  // namespace ff
