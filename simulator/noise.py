"""Deterministic noise as a function of GLOBAL pixel coordinates.

Every random quantity of the simulated world is a hash of (seed, key, integer coordinates), so a
pixel's value never depends on the window it is computed in. Smooth fields are value noise: a
hashed lattice every ``cell`` pixels, interpolated with a uniform cubic B-spline (C2, so slopes
derived from it show no lattice creases). The grid evaluator is separable and uses only
element-wise float32 operations in a fixed order (no BLAS reductions), which makes it bit-exact
across windows; ``value_noise_at`` evaluates the same field at arbitrary float64 points (used to
trace landslides), equal to the grid evaluator up to float rounding.
"""

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_C1 = np.uint64(0xD6E8FEB86659FD93)
_C2 = np.uint64(0xA0761D6478BD642F)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_S40 = np.uint64(40)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, in place on a uint64 array."""
    x ^= x >> _S30
    x *= _M1
    x ^= x >> _S27
    x *= _M2
    x ^= x >> _S31
    return x


def _base(seed: int, key: int) -> np.uint64:
    with np.errstate(over="ignore"):
        b = _mix(np.array([(seed * 0x632BE59BD9B4E019 + key * 0x8CB92BA72F3D8DD7) & (2**64 - 1)],
                          dtype=np.uint64))
    return b[0]


def hash2(seed: int, key: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """64-bit hash of integer coordinates (broadcast), as uint64."""
    ii = np.asarray(i, dtype=np.int64).astype(np.uint64)
    jj = np.asarray(j, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        x = ii * _C1 + _base(seed, key)
        x = _mix(x)
        x = x + jj * _C2
        x += _GOLD
        return _mix(x)


def uniform(seed: int, key: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Uniform float32 in [0, 1) per integer coordinate pair (24 bits of the hash)."""
    return (hash2(seed, key, i, j) >> _S40).astype(np.float32) * np.float32(2.0**-24)


def pixel_uniforms(seed: int, key: int, row0: int, col0: int, height: int, width: int,
                   n: int) -> list[np.ndarray]:
    """``n`` independent uniform fields per pixel, each quantised to 32 levels in [0, 1).

    Five bits of one 64-bit hash per field (12 fields per hash): plenty for sensor noise, and a
    third of the cost of full-precision uniforms.
    """
    r = np.arange(row0, row0 + height, dtype=np.int64)[:, None]
    c = np.arange(col0, col0 + width, dtype=np.int64)[None, :]
    out: list[np.ndarray] = []
    scale = np.float32(1.0 / 32.0)
    offset = np.float32(0.5 / 32.0)
    for k in range((n + 11) // 12):
        h = hash2(seed, key * 1000 + k, r, c)
        for s in range(12):
            if len(out) == n:
                break
            v = ((h >> np.uint64(5 * s)) & np.uint64(31)).astype(np.float32)
            v *= scale
            v += offset
            out.append(v)
    return out


def _bspline_weights(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    t2 = t * t
    t3 = t2 * t
    s = 1.0 / 6.0
    w0 = (1.0 - t) ** 3 * s
    w1 = (3.0 * t3 - 6.0 * t2 + 4.0) * s
    w2 = (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) * s
    w3 = t3 * s
    return w0, w1, w2, w3


def _axis(start: int, n: int, cell: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Lattice index, fractional weights and lattice range along one axis."""
    p = np.arange(start, start + n, dtype=np.int64)
    i = p // cell
    t = ((p - i * cell).astype(np.float64) / cell).astype(np.float32)
    lo = int(i[0]) - 1
    hi = int(i[-1]) + 2
    return i - lo - 1, t, lo, hi


def value_noise(seed: int, key: int, row0: int, col0: int, height: int, width: int,
                cell: int) -> np.ndarray:
    """Smooth noise in [0, 1] (mean 0.5, std about 0.18) on a window of global pixels."""
    ri, rt, rlo, rhi = _axis(row0, height, cell)
    ci, ct, clo, chi = _axis(col0, width, cell)
    lat = uniform(seed, key, np.arange(rlo, rhi + 1)[:, None], np.arange(clo, chi + 1)[None, :])
    wr = _bspline_weights(rt)
    a = wr[0][:, None] * lat[ri]
    for k in (1, 2, 3):
        a += wr[k][:, None] * lat[ri + k]
    wc = _bspline_weights(ct)
    # np.take keeps C order (a[:, ci] would be Fortran-ordered and slow every later operation).
    out = np.take(a, ci, axis=1)
    out *= wc[0][None, :]
    for k in (1, 2, 3):
        out += np.take(a, ci + k, axis=1) * wc[k][None, :]
    return out


def value_noise_at(seed: int, key: int, rows: np.ndarray, cols: np.ndarray,
                   cell: int) -> np.ndarray:
    """The field of ``value_noise`` at float64 global points (row, col), as float64."""
    y = np.asarray(rows, dtype=np.float64) / cell
    x = np.asarray(cols, dtype=np.float64) / cell
    iy = np.floor(y).astype(np.int64)
    ix = np.floor(x).astype(np.int64)
    wy = _bspline_weights(y - iy)
    wx = _bspline_weights(x - ix)
    out = np.zeros(y.shape, dtype=np.float64)
    for a in range(4):
        row = np.zeros(y.shape, dtype=np.float64)
        for b in range(4):
            row += wx[b] * uniform(seed, key, iy + a - 1, ix + b - 1)
        out += wy[a] * row
    return out


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at ``e0`` to 1 at ``e1``."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)
