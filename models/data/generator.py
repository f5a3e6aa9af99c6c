"""Seeded, vectorised generator of Level-1-like events in the (N, 19, 3) layout (synthetic, not the paper's dataset).

Processes: lepton-triggered `background` (W -> l nu, Z -> l l, ttbar, with a rare multi-TeV tail) and four signal-like
processes shaped after arXiv 2108.03986's benchmarks; every output event passes the paper's lepton filter.
Determinism contract: event i of (process, seed) is event i % BLOCK_SIZE of block i // BLOCK_SIZE, and block b is drawn
only from PCG64(SeedSequence((seed, PROCESS_IDS[process]), spawn_key=(b,))): any range, chunking or shard of the
stream holds the same events (for a given numpy version's PCG64 and distribution algorithms).
"""
import itertools

import h5py
import numpy as np

from models.data.layout import (
    ELECTRON_ROWS, ELECTRON_TRIGGER_ABS_ETA, JET_ROWS, JET_ZEROED_ABS_ETA, MET_ROW, MUON_ROWS, MUON_TRIGGER_ABS_ETA,
    N_ELECTRONS, N_FEATURES, N_JETS, N_MUONS, N_OBJECTS, PUBLISHED_CLASS_NAMES, PUBLISHED_COLUMN_NAMES,
    PUBLISHED_DATASET, SLOT_CLASS, TRIGGER_PT,
)

SYNTHETIC_NOTE = "data: synthetic events from the built-in generator (not the paper's dataset)"

PROCESS_IDS = {"background": 0, "leptoquark": 1, "Ato4l": 2, "hToTauTau": 3, "hChToTauNu": 4}
PROCESSES = tuple(PROCESS_IDS)
BLOCK_SIZE = 1 << 12

ELECTRON, MUON, JET, INVISIBLE = 0, 1, 2, 3   # object kinds; INVISIBLE adds no visible object

# Detector model, tuned against the shared Pythia 8 sample: (min pT, max |eta|), relative pT resolution.
_ACCEPTANCE = {ELECTRON: (3.0, 3.0), MUON: (3.0, 2.1), JET: (15.0, 5.0)}
_RESOLUTION = {ELECTRON: 0.02, MUON: 0.02, JET: 0.10}
_LEPTON_RADIATIVE_LOSS = 0.03       # mean fraction of a lepton's pT lost to photon radiation (exponential)
_LEPTON_EFFICIENCY = 0.9            # identification and isolation efficiency per lepton
_MET_RESOLUTION = 0.5               # sigma per MET component = _MET_RESOLUTION * sqrt(HT + _UNDERLYING_HT)
_UNDERLYING_HT = 150.0

# Initial-state radiation: P(no jet), geometric ratio of further jets, jet pT = 15 GeV + Lomax(scale, shape) < max.
_ISR = {"p_none": 0.57, "ratio": 0.35, "max_jets": 12, "pt_scale": 45.0, "pt_shape": 3.5, "pt_max": 1500.0,
        "eta_sigma": 2.2, "kt_sigma": 6.0}
# Rare hard scatter: a central jet with truncated Pareto pT, so some events overflow the deployed fixed-point inputs.
_HARD = {"probability": 3e-4, "pt_min": 1000.0, "shape": 1.5, "pt_max": 5000.0, "eta_sigma": 1.2}

_W = (80.38, 2.09)
_Z = (91.19, 2.50)
_GAMMA_STAR = 0.2
_TOP = 172.5
_TAU_MODES = (0.178, 0.174)          # branching fractions tau -> e nu nu and tau -> mu nu nu; the rest hadronic
_MAX_CANDIDATES = 1 << 17


def _lepton_fraction_table():
    """(CDF, x) of the lepton's momentum fraction x in tau -> l nu nu (massless V-A: f(x) = (5 - 9x^2 + 4x^3)/3)."""
    x = np.linspace(0.0, 1.0, 1025)
    return (5 * x - 3 * x ** 3 + x ** 4) / 3, x


_LEPTON_FRACTION_CDF, _LEPTON_FRACTION_X = _lepton_fraction_table()


# ---- kinematics; four-vectors are tuples (E, px, py, pz) of arrays ----

def _from_pt_y_phi(pt, y, phi, mass):
    mt = np.sqrt(pt * pt + mass * mass)
    return mt * np.cosh(y), pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(y)


def _pt_eta_phi(p):
    _, px, py, pz = p
    pt = np.hypot(px, py)
    return pt, np.arcsinh(pz / np.maximum(pt, 1e-9)), np.arctan2(py, px)


def _boost(p, parent, mass):
    """Four-vector p, given in the rest frame of `parent` (of mass `mass`), in the lab frame."""
    e, px, py, pz = p
    pe, ppx, ppy, ppz = parent
    gamma = pe / mass
    bx, by, bz = ppx / pe, ppy / pe, ppz / pe
    bp = bx * px + by * py + bz * pz
    k = gamma * gamma / (gamma + 1) * bp + gamma * e
    return gamma * (e + bp), px + k * bx, py + k * by, pz + k * bz


def _two_body(rng, parent, mass, m1, m2):
    """Isotropic decay of `parent` (mass `mass`) into daughters of masses m1, m2; their lab four-vectors."""
    n = parent[0].shape[0]
    p = np.sqrt(np.maximum((mass * mass - (m1 + m2) ** 2) * (mass * mass - (m1 - m2) ** 2), 0.0)) / (2 * mass)
    cos_t = rng.uniform(-1.0, 1.0, n)
    sin_t = np.sqrt(1.0 - cos_t * cos_t)
    phi = rng.uniform(-np.pi, np.pi, n)
    dx, dy, dz = p * sin_t * np.cos(phi), p * sin_t * np.sin(phi), p * cos_t
    first = _boost((np.sqrt(p * p + m1 * m1), dx, dy, dz), parent, mass)
    second = _boost((np.sqrt(p * p + m2 * m2), -dx, -dy, -dz), parent, mass)
    return first, second


def _breit_wigner(rng, n, peak, width, low, high):
    """Masses from a Breit-Wigner truncated to [low, high] (inverse CDF)."""
    lo, hi = (np.arctan(2 * (edge - peak) / width) for edge in (low, high))
    return peak + 0.5 * width * np.tan(rng.uniform(lo, hi, n))


def _lomax(rng, size, scale, shape, maximum):
    """Lomax (Pareto II) variates truncated to [0, maximum] (inverse CDF)."""
    return scale * (rng.uniform((1.0 + maximum / scale) ** -shape, 1.0, size) ** (-1.0 / shape) - 1.0)


# ---- event content ----

class _Objects:
    """Generator-level objects of a batch of n events, stored flat per kind as (event index, pT, eta, phi)."""

    def __init__(self, n):
        self.n = n
        self.parts = {ELECTRON: [], MUON: [], JET: []}
        self.invisible_px = np.zeros(n)
        self.invisible_py = np.zeros(n)

    def add(self, kind, owner, pt, eta, phi):
        self.parts[kind].append((owner, pt, eta, phi))

    def add_visible(self, p, kind):
        """Add the four-vectors p (one per event) as objects of `kind` (a kind, or one kind per event)."""
        pt, eta, phi = _pt_eta_phi(p)
        kind = np.broadcast_to(kind, (self.n,))
        for code in self.parts:
            owner = np.flatnonzero(kind == code)
            self.add(code, owner, pt[owner], eta[owner], phi[owner])

    def add_invisible(self, p):
        self.invisible_px += p[1]
        self.invisible_py += p[2]

    def add_lepton(self, p, is_muon):
        self.add_visible(p, np.where(is_muon, MUON, ELECTRON))

    def add_tau(self, rng, tau, kind):
        """Decay taus collinearly into a visible object of `kind` (ELECTRON, MUON or JET) and neutrinos."""
        leptonic = np.interp(rng.random(self.n), _LEPTON_FRACTION_CDF, _LEPTON_FRACTION_X)
        x = np.where(kind == JET, rng.uniform(0.15, 1.0, self.n), leptonic)
        self.add_visible(tuple(x * c for c in tau), kind)
        self.add_invisible(tuple((1.0 - x) * c for c in tau))


def _tau_kinds(rng, n, count):
    """Decay kinds (count, n) of `count` taus per event, drawn with the tau branching fractions conditioned on at
    least one leptonic decay: in processes whose only leptons come from taus, the other events never pass the
    lepton filter, so the filtered sample is unchanged and fewer candidates are wasted."""
    single = np.array([_TAU_MODES[0], _TAU_MODES[1], 1.0 - sum(_TAU_MODES)])   # ELECTRON, MUON, JET
    combos = np.array(list(itertools.product((ELECTRON, MUON, JET), repeat=count)))
    weight = single[combos].prod(axis=1) * (combos != JET).any(axis=1)
    return combos[rng.choice(len(combos), n, p=weight / weight.sum())].T


def _isr(rng, objects, p_none):
    """Add initial-state jets; return the transverse momentum (px, py) of the system recoiling against them."""
    n = objects.n
    count = np.where(rng.random(n) < p_none, 0, np.minimum(rng.geometric(1.0 - _ISR["ratio"], n), _ISR["max_jets"]))
    total = int(count.sum())
    owner = np.repeat(np.arange(n), count)
    pt = _ACCEPTANCE[JET][0] + _lomax(rng, total, _ISR["pt_scale"], _ISR["pt_shape"], _ISR["pt_max"])
    phi = rng.uniform(-np.pi, np.pi, total)
    objects.add(JET, owner, pt, rng.normal(0.0, _ISR["eta_sigma"], total), phi)
    return (rng.normal(0.0, _ISR["kt_sigma"], n) - np.bincount(owner, pt * np.cos(phi), n),
            rng.normal(0.0, _ISR["kt_sigma"], n) - np.bincount(owner, pt * np.sin(phi), n))


def _hard_jet(rng, objects):
    """In a fraction _HARD['probability'] of events add a central jet of TeV pT; return its (px, py) per event."""
    owner = np.flatnonzero(rng.random(objects.n) < _HARD["probability"])
    lowest = (_HARD["pt_max"] / _HARD["pt_min"]) ** -_HARD["shape"]
    pt = _HARD["pt_min"] * rng.uniform(lowest, 1.0, len(owner)) ** (-1.0 / _HARD["shape"])
    phi = rng.uniform(-np.pi, np.pi, len(owner))
    objects.add(JET, owner, pt, rng.normal(0.0, _HARD["eta_sigma"], len(owner)), phi)
    return np.bincount(owner, pt * np.cos(phi), objects.n), np.bincount(owner, pt * np.sin(phi), objects.n)


def _single(rng, objects, mass, rapidity_sigma, p_none=_ISR["p_none"], hard=False):
    """One resonance of mass `mass` (per event) recoiling against the ISR jets (and a hard jet if `hard`)."""
    rx, ry = _isr(rng, objects, p_none)
    if hard:
        hx, hy = _hard_jet(rng, objects)
        rx, ry = rx - hx, ry - hy
    y = rng.normal(0.0, rapidity_sigma, objects.n)
    return _from_pt_y_phi(np.hypot(rx, ry), y, np.arctan2(ry, rx), mass)


def _pair(rng, objects, mass, rapidity_sigma, relative_pt):
    """Two resonances of mass `mass` sharing the ISR recoil, with a Rayleigh relative transverse momentum."""
    rx, ry = _isr(rng, objects, _ISR["p_none"])
    q = rng.rayleigh(relative_pt, objects.n)
    qphi = rng.uniform(-np.pi, np.pi, objects.n)
    qx, qy = q * np.cos(qphi), q * np.sin(qphi)
    pair = []
    for sign in (1.0, -1.0):
        px, py = 0.5 * rx + sign * qx, 0.5 * ry + sign * qy
        y = rng.normal(0.0, rapidity_sigma, objects.n)
        pair.append(_from_pt_y_phi(np.hypot(px, py), y, np.arctan2(py, px), mass))
    return pair


def _muonic(rng, n):
    """True where a W or Z decay gives muons, else electrons (equal rates)."""
    return rng.random(n) < 0.5


def _w_lnu(rng, n):
    objects = _Objects(n)
    mass = _breit_wigner(rng, n, *_W, 50.0, 200.0)
    w = _single(rng, objects, mass, 2.8, hard=True)
    lepton, neutrino = _two_body(rng, w, mass, 0.0, 0.0)
    objects.add_lepton(lepton, _muonic(rng, n))
    objects.add_invisible(neutrino)
    return objects


def _drell_yan_mass(rng, n):
    """Z/gamma* masses above 40 GeV: a Breit-Wigner Z peak plus a 1/m^2 photon continuum (fraction _GAMMA_STAR)."""
    continuum = 1.0 / rng.uniform(1.0 / 250.0, 1.0 / 40.0, n)
    return np.where(rng.random(n) < _GAMMA_STAR, continuum, _breit_wigner(rng, n, *_Z, 40.0, 250.0))


def _z_ll(rng, n):
    objects = _Objects(n)
    mass = _drell_yan_mass(rng, n)
    z = _single(rng, objects, mass, 2.8, hard=True)
    muonic = _muonic(rng, n)
    for lepton in _two_body(rng, z, mass, 0.0, 0.0):
        objects.add_lepton(lepton, muonic)
    return objects


def _ttbar(rng, n):
    """t tbar -> b W b W, each W -> e nu, mu nu (2/9 each) or two jets."""
    objects = _Objects(n)
    for top in _pair(rng, objects, _TOP, 1.3, 60.0):
        mass_w = _breit_wigner(rng, n, *_W, 60.0, 100.0)
        w, b = _two_body(rng, top, _TOP, mass_w, 0.0)
        objects.add_visible(b, JET)
        first, second = _two_body(rng, w, mass_w, 0.0, 0.0)
        u = rng.random(n)
        kind = np.where(u < 2 / 9, ELECTRON, np.where(u < 4 / 9, MUON, JET))
        objects.add_visible(first, kind)
        objects.add_visible(second, np.where(kind == JET, JET, INVISIBLE))
        objects.add_invisible(tuple(np.where(kind == JET, 0.0, c) for c in second))
    return objects


def _leptoquark(rng, n):
    """LQ (80 GeV) pair, each LQ -> b tau."""
    objects = _Objects(n)
    for lq, kind in zip(_pair(rng, objects, 80.0, 1.6, 25.0), _tau_kinds(rng, n, 2)):
        b, tau = _two_body(rng, lq, 80.0, 0.0, 0.0)
        objects.add_visible(b, JET)
        objects.add_tau(rng, tau, kind)
    return objects


def _ato4l(rng, n):
    """A (50 GeV) -> Z* Z* -> 4 leptons."""
    objects = _Objects(n)
    a = _single(rng, objects, 50.0, 2.0, p_none=0.45)
    m1 = rng.uniform(10.0, 40.0, n)
    m2 = rng.uniform(4.0, 45.0 - m1)
    for z, mass in zip(_two_body(rng, a, 50.0, m1, m2), (m1, m2)):
        muonic = _muonic(rng, n)
        for lepton in _two_body(rng, z, mass, 0.0, 0.0):
            objects.add_lepton(lepton, muonic)
    return objects


def _h_tautau(rng, n):
    """h0 (60 GeV) -> tau tau."""
    objects = _Objects(n)
    h = _single(rng, objects, 60.0, 2.0, p_none=0.45)
    for tau, kind in zip(_two_body(rng, h, 60.0, 0.0, 0.0), _tau_kinds(rng, n, 2)):
        objects.add_tau(rng, tau, kind)
    return objects


def _h_taunu(rng, n):
    """h+- (60 GeV) -> tau nu."""
    objects = _Objects(n)
    h = _single(rng, objects, 60.0, 2.0, p_none=0.45)
    tau, neutrino = _two_body(rng, h, 60.0, 0.0, 0.0)
    objects.add_tau(rng, tau, _tau_kinds(rng, n, 1)[0])
    objects.add_invisible(neutrino)
    return objects


# Candidate makers with their approximate lepton-filter efficiency (used only to size batches).
_BACKGROUND = {"W": (0.89, _w_lnu, 0.45), "Z": (0.105, _z_ll, 0.59), "ttbar": (0.005, _ttbar, 0.50)}  # mix after filter
_SIGNALS = {"leptoquark": (_leptoquark, 0.14), "Ato4l": (_ato4l, 0.23), "hToTauTau": (_h_tautau, 0.058),
            "hChToTauNu": (_h_taunu, 0.049)}


# ---- detector and layout ----

def _detected(rng, objects, kind, events=None):
    """Smeared, accepted objects of `kind` as flat (event, pT, eta, phi), keeping only `events` (renumbered)."""
    owner, pt, eta, phi = (np.concatenate([part[i] for part in objects.parts[kind]]) for i in range(4))
    if events is not None:
        index = np.cumsum(events) - 1
        keep = events[owner]
        owner, pt, eta, phi = index[owner[keep]], pt[keep], eta[keep], phi[keep]
    pt = pt * (1.0 + _RESOLUTION[kind] * rng.standard_normal(len(pt)))
    if kind != JET:
        pt *= 1.0 - np.minimum(rng.exponential(_LEPTON_RADIATIVE_LOSS, len(pt)), 1.0)
    keep = (pt > _ACCEPTANCE[kind][0]) & (np.abs(eta) < _ACCEPTANCE[kind][1])
    if kind != JET:
        keep &= rng.random(len(pt)) < _LEPTON_EFFICIENCY
    return owner[keep], pt[keep], eta[keep], phi[keep]


def _rows(n, slots, owner, pt, eta, phi):
    """(n, slots, 3) rows holding each event's `slots` highest-pT objects in decreasing pT, zero-padded."""
    order = np.lexsort((-pt, owner))
    owner = owner[order]
    counts = np.bincount(owner, minlength=n)
    rank = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    kept = rank < slots
    rows = np.zeros((n, slots, N_FEATURES))
    rows[owner[kept], rank[kept]] = np.stack([pt, eta, phi], axis=1)[order[kept]]
    return rows


def _passes_filter(electrons, muons):
    return (((electrons[..., 0] > TRIGGER_PT) & (np.abs(electrons[..., 1]) < ELECTRON_TRIGGER_ABS_ETA)).any(axis=1)
            | ((muons[..., 0] > TRIGGER_PT) & (np.abs(muons[..., 1]) < MUON_TRIGGER_ABS_ETA)).any(axis=1))


def lepton_filter(events):
    """Per event: True if an electron (pT > 23 GeV, |eta| < 3) or a muon (pT > 23 GeV, |eta| < 2.1) is present."""
    return _passes_filter(events[:, ELECTRON_ROWS], events[:, MUON_ROWS])


def _write_triggered(rng, objects, out, positions):
    """Apply the detector model to a batch and write its events that pass the lepton filter, in order, to
    out[positions[:m]]; return m (at most len(positions))."""
    n = objects.n
    electrons = _rows(n, N_ELECTRONS, *_detected(rng, objects, ELECTRON))
    muons = _rows(n, N_MUONS, *_detected(rng, objects, MUON))
    passed = _passes_filter(electrons, muons)
    passed &= np.cumsum(passed) <= len(positions)
    m = int(passed.sum())
    electrons, muons = electrons[passed], muons[passed]
    jets = _rows(m, N_JETS, *_detected(rng, objects, JET, passed))
    ht = electrons[:, :, 0].sum(axis=1) + muons[:, :, 0].sum(axis=1) + jets[:, :, 0].sum(axis=1)
    jets[:, :, :2] *= (np.abs(jets[:, :, 1]) <= JET_ZEROED_ABS_ETA)[..., None]
    sigma = _MET_RESOLUTION * np.sqrt(ht + _UNDERLYING_HT)
    mx = objects.invisible_px[passed] + sigma * rng.standard_normal(m)
    my = objects.invisible_py[passed] + sigma * rng.standard_normal(m)
    target = positions[:m]
    out[target, MET_ROW] = np.stack([np.hypot(mx, my), np.zeros(m), np.arctan2(my, mx)], axis=1)
    out[target, ELECTRON_ROWS] = electrons
    out[target, MUON_ROWS] = muons
    out[target, JET_ROWS] = jets
    return m


def _fill(rng, out, positions, make, efficiency):
    """Fill out[positions] with events of `make` that pass the lepton filter, drawing batches sized from the
    expected `efficiency`."""
    have = 0
    while have < len(positions):
        size = int(min(max((len(positions) - have) / efficiency * 1.05, 256), _MAX_CANDIDATES))
        have += _write_triggered(rng, make(rng, size), out, positions[have:])


def _fill_block(process, seed, index, events):
    """Write block `index` of the (process, seed) stream into `events`, an array of shape (BLOCK_SIZE, 19, 3)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence((seed, PROCESS_IDS[process]),
                                                                     spawn_key=(index,))))
    if process != "background":
        _fill(rng, events, np.arange(BLOCK_SIZE), *_SIGNALS[process])
        return
    source = rng.choice(len(_BACKGROUND), BLOCK_SIZE, p=[fraction for fraction, _, _ in _BACKGROUND.values()])
    for code, (_, make, efficiency) in enumerate(_BACKGROUND.values()):
        _fill(rng, events, np.flatnonzero(source == code), make, efficiency)


def _check(process, seed):
    if process not in PROCESS_IDS:
        raise ValueError(f"unknown process {process!r}; known: {', '.join(PROCESSES)}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _from_blocks(process, start, stop, seed, cache):
    """Events [start, stop): whole blocks are written in place, partial ones built in `cache` (a dict keeping the
    last partial block, for reuse by the next call) and copied."""
    out = np.empty((stop - start, N_OBJECTS, N_FEATURES))
    for index in range(start // BLOCK_SIZE, (stop - 1) // BLOCK_SIZE + 1):
        first, last = max(start, index * BLOCK_SIZE), min(stop, (index + 1) * BLOCK_SIZE)
        if last - first == BLOCK_SIZE:
            _fill_block(process, seed, index, out[first - start:last - start])
            continue
        if cache.get("index") != index:
            cache["index"], cache["events"] = index, np.empty((BLOCK_SIZE, N_OBJECTS, N_FEATURES))
            _fill_block(process, seed, index, cache["events"])
        out[first - start:last - start] = cache["events"][first - index * BLOCK_SIZE:last - index * BLOCK_SIZE]
    return out


def generate_range(process, start, stop, seed):
    """Events [start, stop) of the seeded (process, seed) stream as float64 (stop - start, 19, 3)."""
    _check(process, seed)
    if not 0 <= start <= stop:
        raise ValueError(f"invalid event range [{start}, {stop})")
    return _from_blocks(process, start, stop, seed, {})


def generate(process, n, seed):
    """The first n events of the seeded (process, seed) stream as float64 (n, 19, 3)."""
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    return generate_range(process, 0, n, seed)


def stream(process, n_total, chunk_size, seed):
    """Yield the first n_total events of the (process, seed) stream in chunks of chunk_size (the last may be
    shorter); their concatenation equals generate(process, n_total, seed) whatever chunk_size is."""
    _check(process, seed)
    if chunk_size < 1 or n_total < 0:
        raise ValueError(f"need chunk_size >= 1 and n_total >= 0, got {chunk_size} and {n_total}")
    cache = {}
    for start in range(0, n_total, chunk_size):
        yield _from_blocks(process, start, min(start + chunk_size, n_total), seed, cache)


def write_published_h5(path, events):
    """Write (N, 19, 3) events to `path` in the published (N, 19, 4) layout: float64 `Particles` with the class column
    (slot class on non-empty rows, 0 on empty ones), plus the `Particles_Names`/`Particles_Classes` labels."""
    events = np.asarray(events)
    if events.ndim != 3 or events.shape[1:] != (N_OBJECTS, N_FEATURES):
        raise ValueError(f"events must have shape (N, {N_OBJECTS}, {N_FEATURES}), got {events.shape}")
    if not np.isfinite(events).all():
        raise ValueError("events contain NaN or infinite values")
    filled = (events != 0).any(axis=2)
    particles = np.concatenate([events.astype(np.float64), np.where(filled, SLOT_CLASS, 0.0)[..., None]], axis=2)
    with h5py.File(path, "w") as handle:
        handle.create_dataset(PUBLISHED_DATASET, data=particles)
        handle.create_dataset("Particles_Names", data=np.array(PUBLISHED_COLUMN_NAMES))
        handle.create_dataset("Particles_Classes", data=np.array(PUBLISHED_CLASS_NAMES))
