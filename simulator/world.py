"""The simulated world: any window of global pixels -> 14-band image and landslide mask.

Layers, in order: terrain (DEM, slope by ``tiler.terrain.horn_slope`` on a 1-px halo, aspect for
the hillshade), land cover as abundances of the surfaces of ``simulator.spectra`` (fields and
lakes on the plains, forest below a noisy treeline, alpine meadow and rock above it, rock
outcrops on the steepest ground, scree patches), landslide scars (crisp, replacing whatever was
there with debris), illumination (cosine of the incidence angle, with skylight), path radiance,
clouds (alpha-blended, a cloud hides the ground and its label) and per-band sensor noise.

Every layer is a function of global pixel coordinates and the seed (see ``simulator.noise``), so
``simulate_window`` gives bit-identical pixels for a pixel whatever window contains it.
"""

import numpy as np

from simulator import spectra
from simulator.landslides import HALO, TerrainGrid, landslides_near, rasterize
from simulator.noise import pixel_uniforms, smoothstep, uniform, value_noise
from simulator.relief import PIXEL, horn_gradient, terrain_window, treeline_window
from tiler.bands import BANDS
from tiler.terrain import horn_slope

N_BANDS = len(BANDS)
SUN_AZIMUTH_DEG = 150.0
SUN_ZENITH_DEG = 40.0
_TABLE = np.concatenate([np.zeros((1, 12), np.float32)]
                        + [spectra.spectrum(n)[None] for n in spectra.CLASSES]).T.copy()
"""(12, 1 + n classes): reflectance by band and class code (code 0 = the mixture, unused)."""
CHUNK = 64
"""Rows per chunk of pixel-wise work (see ``simulate_window``)."""
PARCEL = (22, 30)
"""Field parcel size in pixels (rows, cols) on the plains."""


def _parcels(seed: int, row0: int, col0: int, height: int, width: int) -> tuple[np.ndarray, ...]:
    """Per-pixel parcel draw (uniform) and a 1-px track/hedge along parcel edges."""
    r = np.arange(row0, row0 + height, dtype=np.int64)
    c = np.arange(col0, col0 + width, dtype=np.int64)
    pr, pc = r // PARCEL[0], c // PARCEL[1]
    u = uniform(seed, 60, np.arange(pr[0], pr[-1] + 1)[:, None],
                np.arange(pc[0], pc[-1] + 1)[None, :])
    draw = u[(pr - pr[0])[:, None], (pc - pc[0])[None, :]]
    edge = ((r % PARCEL[0]) == 0)[:, None] | ((c % PARCEL[1]) == 0)[None, :]
    return draw, edge


def _cover(seed: int, row0: int, col0: int, height: int, width: int, dem: np.ndarray,
           m: np.ndarray, slope: np.ndarray, treeline: np.ndarray) -> dict[str, np.ndarray]:
    """Land cover: "forest", "grass", "rock" abundances of the natural mixture, and "class"
    (uint8): 0 where that mixture applies, else 1 + the index in ``spectra.CLASSES`` of the
    single surface (fields, lakes) that fills the pixel."""

    def noise(key: int, cell: int) -> np.ndarray:
        return value_noise(seed, key, row0, col0, height, width, cell)

    f32 = np.float32
    above = dem - treeline
    alpine = smoothstep(f32(-150), f32(150), above)
    density = np.clip(f32(0.8) + f32(1.6) * (noise(33, 16) - f32(0.5)), f32(0.35), f32(1.0))
    rock = smoothstep(f32(150), f32(650), above + f32(600) * (noise(34, 48) - f32(0.5)))
    outcrop = smoothstep(f32(40), f32(50), slope + f32(40) * (noise(35, 16) - f32(0.5)))
    scree = ((noise(36, 24) > f32(0.74)) & (slope > f32(18))).astype(f32) * f32(0.9)
    rock = np.maximum(np.maximum(rock, outcrop), scree)
    veg = f32(1) - rock
    forest = veg * (f32(1) - alpine) * density
    ab = {"forest": forest, "grass": veg - forest, "rock": rock}
    # The plains: a patchwork of fields (bare, cropped, grass) with tracks, some woods, lakes.
    code = {n: np.uint8(spectra.CLASSES.index(n) + 1) for n in spectra.CLASSES}
    cls = np.zeros((height, width), dtype=np.uint8)
    agri = (m < f32(0.4)) & (slope < f32(12)) & (noise(32, 256) < f32(0.6))
    draw, edge = _parcels(seed, row0, col0, height, width)
    field = np.where(draw < 0.32, code["soil"], np.where(draw < 0.75, code["crop"],
                                                          code["grass"]))
    field[edge] = code["grass"]
    cls[agri] = field[agri]
    cls[(m < f32(0.25)) & (slope < f32(5)) & (noise(38, 384) > f32(0.72))] = code["water"]
    ab["class"] = cls
    return ab


def _illumination(dzdr: np.ndarray, dzdc: np.ndarray) -> np.ndarray:
    """Direct (cosine of incidence, relative to flat ground) plus skylight."""
    az, zen = np.radians(SUN_AZIMUTH_DEG), np.radians(SUN_ZENITH_DEG)
    sx, sy, sz = np.sin(zen) * np.sin(az), np.sin(zen) * np.cos(az), np.cos(zen)
    # Rows run south: dz/dnorth = -dz/drow.
    cos_i = (-dzdc * sx + dzdr * sy + sz) / np.sqrt(1.0 + dzdr * dzdr + dzdc * dzdc)
    f = np.clip(cos_i / sz, 0.0, 1.6)
    return (0.2 + 0.8 * f).astype(np.float32)


def _clouds(seed: int, row0: int, col0: int, height: int, width: int) -> np.ndarray:
    """Cloud opacity 0..1: compact cumulus with a few-pixel soft edge, a few % of the world."""

    def noise(key: int, cell: int) -> np.ndarray:
        return value_noise(seed, key, row0, col0, height, width, cell)

    c = 0.5 * noise(50, 256) + 0.3 * noise(51, 64) + 0.2 * noise(52, 16)
    th = 0.66 - 0.25 * (noise(53, 2048) - 0.5)
    return smoothstep(th, th + 0.025, c).astype(np.float32)


def terrain_grid(seed: int, row0: int, col0: int, height: int, width: int) -> TerrainGrid:
    """Terrain of the window grown by ``HALO`` px (what landslide tracing needs)."""
    r, c = row0 - HALO, col0 - HALO
    h, w = height + 2 * HALO, width + 2 * HALO
    dem = np.empty((h, w), np.float32)
    m = np.empty((h, w), np.float32)
    tl = np.empty((h, w), np.float32)
    for i in range(0, h, CHUNK):
        n = min(CHUNK, h - i)
        dem[i:i + n], m[i:i + n] = terrain_window(seed, r + i, c, n, w)
        tl[i:i + n] = treeline_window(seed, r + i, c, n, w)
    dzdr, dzdc = horn_gradient(dem)
    # horn_gradient drops the 1-px border: pad back so the grid stays aligned.
    dzdr = np.pad(dzdr, 1, mode="edge")
    dzdc = np.pad(dzdc, 1, mode="edge")
    return TerrainGrid(r, c, dem, m, tl, dzdr, dzdc)


def _surface(ab: dict[str, np.ndarray], pure: tuple[np.ndarray, ...], pure_cls: np.ndarray,
             b: int, out: np.ndarray) -> np.ndarray:
    """Band ``b`` of the surface: the forest/grass/rock mixture, or the pure class."""
    np.multiply(ab["forest"], spectra.spectrum("forest")[b], out=out)
    out += ab["grass"] * spectra.spectrum("grass")[b]
    out += ab["rock"] * spectra.spectrum("rock")[b]
    out[pure] = _TABLE[b][pure_cls]
    return out


def simulate_window(seed: int, row0: int, col0: int, height: int, width: int, *,
                    landslides: bool = True, clouds: bool = True) -> tuple[np.ndarray,
                                                                          np.ndarray]:
    """Image float32 (14, H, W) in ``tiler.bands`` order and convention, and mask uint8 (H, W).

    Row and column indices are global pixel indices of the seed's world (10 m pixels, rows
    running south); any integers work, negative included. ``landslides=False`` renders the
    same window before its landslides happened (same terrain and land cover, empty mask);
    ``clouds=False`` without the world's cumulus (``simulator.event`` draws its own sky).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"window must be non-empty, got {height} x {width}")
    grid = terrain_grid(seed, row0, col0, height, width)
    ls = landslides_near(seed, grid, row0, col0, height, width)
    scar, ls_gain, wet = rasterize(ls, row0, col0, height, width)
    if not landslides:
        scar[...] = False
    img = np.empty((N_BANDS, height, width), dtype=np.float32)
    mask = np.empty((height, width), dtype=np.uint8)
    # Pixel-wise layers row-chunk by row-chunk: the work is memory-bound, and chunks that stay
    # in cache run about twice as fast when two processes share the machine.
    for i in range(0, height, CHUNK):
        n = min(CHUNK, height - i)
        rows = slice(i, i + n)
        _pixels(seed, grid, row0 + i, col0, n, width, scar[rows], ls_gain[rows], wet[rows],
                img[:, rows], mask[rows], clouds=clouds)
    return img, mask


def _pixels(seed: int, grid: TerrainGrid, row0: int, col0: int, height: int, width: int,
            scar: np.ndarray, ls_gain: np.ndarray, wet: np.ndarray, img: np.ndarray,
            mask: np.ndarray, *, clouds: bool = True) -> None:
    """Fill ``img`` (14, h, w) and ``mask`` for one row chunk of the window (``clouds=False``:
    without the world's cumulus)."""
    f32 = np.float32
    gr, gc = row0 - grid.row0, col0 - grid.col0
    inner = (slice(gr, gr + height), slice(gc, gc + width))
    halo1 = (slice(gr - 1, gr + height + 1), slice(gc - 1, gc + width + 1))
    dem, m = grid.dem[inner], grid.mountainness[inner]
    slope = horn_slope(grid.dem[halo1], PIXEL, PIXEL)[1:-1, 1:-1]
    illum = _illumination(grid.dzdr[inner], grid.dzdc[inner])

    ab = _cover(seed, row0, col0, height, width, dem, m, slope, grid.treeline[inner])
    # Pixels of one pure class (fields, lakes, scars): looked up in a table, not mixed.
    cls = ab.pop("class")
    cls[scar] = spectra.CLASSES.index("debris") + 1
    pure = np.nonzero(cls)
    pure_cls = cls[pure]
    del cls

    tex = value_noise(seed, 37, row0, col0, height, width, 8)
    gain = (f32(0.9) + f32(0.2) * tex) * illum
    del tex, illum
    gain[scar] *= ls_gain[scar]
    alpha = (_clouds(seed, row0, col0, height, width) if clouds
             else np.zeros((height, width), np.float32))
    cloudy = np.nonzero(alpha > 0)
    a_c = alpha[cloudy]
    cloud_gain = (f32(0.85) + f32(0.3) * value_noise(seed, 54, row0, col0, height, width, 16))
    cg_c = cloud_gain[cloudy]
    del cloud_gain
    noise = pixel_uniforms(seed, 70, row0, col0, height, width, 12)
    wet_idx = np.nonzero(scar)
    wet_c = wet[wet_idx]

    for b in range(12):
        band = img[b]
        _surface(ab, pure, pure_cls, b, band)
        band *= gain
        if b >= 10:
            band[wet_idx] *= wet_c
        band += spectra.HAZE[b]
        if a_c.size:
            band[cloudy] = band[cloudy] * (f32(1) - a_c) + a_c * cg_c * spectra.CLOUD[b]
        k = f32(np.sqrt(12.0) * spectra.NOISE_STD[b])
        nb = noise[b]
        nb -= f32(0.5)
        nb *= k
        band += nb
        np.maximum(band, f32(1e-4), out=band)
    img[12] = slope
    img[13] = dem
    mask[...] = scar & (alpha < 0.5)
