import numpy as np

from tiler.terrain import horn_slope


def test_plane_slope_matches_its_gradient():
    # z = 0.5 x (x in metres): slope = atan(0.5) everywhere, whatever the pixel size.
    xres, yres = 10.0, 10.0
    x = np.arange(50) * xres
    dem = np.tile(0.5 * x, (40, 1))
    s = horn_slope(dem, xres, yres)
    assert s.shape == dem.shape
    np.testing.assert_allclose(s[1:-1, 1:-1], np.degrees(np.arctan(0.5)), rtol=1e-6)


def test_pixel_size_is_used():
    dem = np.tile(np.arange(20.0), (20, 1)) * 30.0  # 30 m rise per pixel
    np.testing.assert_allclose(horn_slope(dem, 30.0, 30.0)[5, 5], 45.0, rtol=1e-6)
    np.testing.assert_allclose(horn_slope(dem, 10.0, 10.0)[5, 5], np.degrees(np.arctan(3.0)),
                               rtol=1e-6)
