"""The precision profile: per layer, the observed output codes against the type's range, overflow and limit rates,
and the headroom in bits; as a text table and as a matplotlib (Agg) plot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from emulator.fixed_type import FixedType
from emulator.manifest import Manifest

from .report import CoverageReport


@dataclass(frozen=True)
class LayerProfile:
    """One layer's row: codes observed over all events and elements, rates as fractions of the events."""

    layer: str
    type: FixedType
    observed_min: int
    observed_max: int
    overflow_rate: float
    overflow_casts: int
    at_min_rate: float
    at_max_rate: float

    @property
    def headroom_bits(self) -> int:
        """Integer bits the type could lose with the observed codes still in range (0: the range is used up)."""
        hi, lo = max(self.observed_max, 0), min(self.observed_min, 0)
        needed = max(hi.bit_length(), (-lo - 1).bit_length() if lo < 0 else 0) + 1 if self.type.signed \
            else hi.bit_length()
        return self.type.width - needed


def precision_profile(manifest: Manifest, report: CoverageReport) -> list:
    """One LayerProfile per layer of the manifest, in order, from a coverage report over the user's events."""
    if report.manifest_hash != manifest.content_hash:
        raise ValueError(f"the coverage report is for model {report.model!r} ({report.manifest_hash[:12]}), "
                         f"not for {manifest.name!r} ({manifest.content_hash[:12]})")
    if report.events == 0:
        raise ValueError("the coverage report has no events: nothing to profile")
    rows = []
    for layer in manifest.layers:
        s = report.layers[layer.name]
        rows.append(LayerProfile(layer.name, layer.result, int(s.observed_min.min()), int(s.observed_max.max()),
                                 s.events_overflow / report.events, s.overflow_casts,
                                 s.events_at_min / report.events, s.events_at_max / report.events))
    return rows


def profile_table(rows) -> str:
    """The profile as a fixed-width text table."""
    head = ("layer", "type", "type codes", "observed codes", "overflow ev.", "overflow casts", "at min ev.",
            "at max ev.", "headroom")
    body = [(r.layer, str(r.type), f"[{r.type.min_code}, {r.type.max_code}]", f"[{r.observed_min}, {r.observed_max}]",
             f"{r.overflow_rate:.3%}", str(r.overflow_casts), f"{r.at_min_rate:.3%}", f"{r.at_max_rate:.3%}",
             f"{r.headroom_bits} bits") for r in rows]
    widths = [max(len(line[k]) for line in [head, *body]) for k in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in [head, *body])


def plot_profile(rows, path) -> Path:
    """One horizontal bar per layer: the type's value range (light) and the observed range (dark), symlog axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.4 * len(rows) + 1.2))
    for y, r in enumerate(rows):
        lsb = r.type.lsb
        ax.barh(y, r.type.max - r.type.min, left=r.type.min, color="#c6dbef", height=0.8)
        ax.barh(y, (r.observed_max - r.observed_min) * lsb or lsb, left=r.observed_min * lsb, color="#08519c",
                height=0.4)
    ax.set_yticks(range(len(rows)), [r.layer for r in rows])
    ax.invert_yaxis()
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("value (light: type range, dark: observed)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
