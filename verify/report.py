"""The certification report: report.json (versioned schema), report.md, the terminal summary table, and plots
(score distribution with the threshold; bit differences per layer when there are any), drawn with matplotlib's Agg.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from emulator.fixed_type import FixedType

from .mismatch import explain
from .results import DETERMINISM

SCHEMA = "l1ad-verify-report"
VERSION = 1
SCORES_PLOT = "score_distribution.png"
LAYERS_PLOT = "layer_bit_differences.png"


def path_status(stats) -> str:
    """'passed' if every code and trigger decision agrees with what it is compared to, else 'failed'."""
    return "passed" if stats.differing_codes == 0 and not stats.decision_disagreements else "failed"


def path_entries(merged, skipped: dict, details: dict) -> dict:
    """report.json's `paths`: every path with its status (reference, passed, failed or skipped) and figures."""
    entries = {}
    for name in ("emulator", "csim", "rtl"):
        if name in skipped:
            entries[name] = {"status": "skipped", "reason": skipped[name], **details.get(name, {})}
            continue
        stats = merged.paths[name]
        reference = name == merged.reference
        entries[name] = {
            "status": "reference" if reference else path_status(stats),
            "compared_with": None if reference else merged.reference,
            **_figures(stats, reference),
            **details.get(name, {}),
        }
    return entries


def _figures(stats, reference: bool) -> dict:
    return {
        "events": stats.events,
        "differing_events": None if reference else stats.differing_events,
        "differing_codes": None if reference else stats.differing_codes,
        "decision_disagreements": None if reference else stats.decision_disagreements,
        "triggered": stats.triggered,
        "seconds": round(stats.seconds, 6),
        "events_per_second": round(stats.events / stats.seconds, 1) if stats.seconds > 0 else None,
        "latency_cycles": stats.latency_cycles,
        "ii_cycles": stats.ii_cycles,
    }


def build_report(*, verdict: str, exit_code: int, command: list, created: str, data: dict, model: dict, tools: dict,
                 merged, skipped: dict, details: dict, determinism: dict, layer_types: dict, vectors: dict,
                 plots: dict, shards: dict, faults: list) -> dict:
    """The report.json body (schema l1ad-verify-report, version 1)."""
    if DETERMINISM in merged.paths:
        determinism = {"status": path_status(merged.paths[DETERMINISM]), **determinism,
                       **_figures(merged.paths[DETERMINISM], False)}
    first = merged.first
    body = {
        "schema": SCHEMA,
        "version": VERSION,
        "verdict": verdict,
        "exit_code": exit_code,
        "created": created,
        "command": command,
        "data": data,
        "model": model,
        "tools": tools,
        "reference": merged.reference,
        "paths": path_entries(merged, skipped, details),
        "determinism": determinism,
        "first_mismatch": None if first is None else describe_difference(first),
        "layer_bit_differences": {
            name: {"type": layer_types[name], **diff.outcome()}
            for name, diff in merged.layer_diffs.items() if diff.codes
        },
        "vectors": vectors,
        "plots": plots,
        "shards": shards,
    }
    if faults:
        body["injected_faults"] = faults
    return body


def describe_difference(first) -> dict:
    """report.json's description of a first difference (codes, binary, the first differing layer, text)."""
    body = {k: getattr(first, k) for k in ("event", "path", "reference", "output", "element", "expected", "observed",
                                            "type")}
    t = FixedType.parse(first.type)
    body["expected_binary"], body["observed_binary"] = (format(c & ((1 << t.width) - 1), f"0{t.width}b")
                                                        for c in (first.expected, first.observed))
    if first.location is not None:
        where = first.location
        layer_type = FixedType.parse(where.type)
        body["layer"] = {
            "name": where.layer, "op": where.op, "neuron": where.neuron, "index": list(where.index), "type": where.type,
            "expected": where.expected, "observed": where.observed,
            "expected_binary": format(where.expected & ((1 << layer_type.width) - 1), f"0{layer_type.width}b"),
            "observed_binary": format(where.observed & ((1 << layer_type.width) - 1), f"0{layer_type.width}b"),
            "expected_path": where.expected_path, "observed_path": where.observed_path,
        }
    body["note"] = first.location_note
    body["text"] = explain(first)
    return body


# ---- terminal and markdown -----------------------------------------------------------------------------------
_COLUMNS = ("path", "status", "vs", "events", "diff events", "diff codes", "decisions differ", "triggered",
            "events/s", "latency", "II")


def summary_rows(report: dict) -> list:
    rows = []
    entries = dict(report["paths"])
    if report["determinism"].get("status"):
        entries["determinism"] = {**report["determinism"], "compared_with": "emulator"}
    for name, entry in entries.items():
        if entry["status"] == "skipped":
            rows.append((name, f"skipped ({entry['reason']})", *[""] * 9))
            continue
        rows.append((name, entry["status"], entry.get("compared_with") or "-",
                     *(_cell(entry.get(k)) for k in ("events", "differing_events", "differing_codes",
                                                     "decision_disagreements", "triggered")),
                     _rate(entry.get("events_per_second")), _cell(entry.get("latency_cycles")),
                     _cell(entry.get("ii_cycles"))))
    return rows


def _cell(value) -> str:
    return "-" if value is None else str(value)


def _rate(value) -> str:
    return "-" if value is None else f"{value:.3g}"


def summary_table(report: dict) -> str:
    """The terminal summary: a header, one row per path, the data note and the verdict."""
    rows = summary_rows(report)
    widths = [max(len(c), *(len(r[i]) for r in rows if r[i] or i < 2)) for i, c in enumerate(_COLUMNS)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    model = report["model"]
    lines = [f"verify {model['name']}  manifest {model['content_hash'][:16]}  {report['data']['events']} events",
             report["data"]["note"], "", line(_COLUMNS), line("-" * w for w in widths)]
    lines += [line(r) for r in rows]
    if report["first_mismatch"]:
        lines += ["", report["first_mismatch"]["text"]]
    if report.get("coverage"):
        targeted = report["coverage"]["targeted_first_mismatch"]
        lines += ["", report["coverage"]["summary"]] + ([f"targeted events: {targeted['text']}"] if targeted else [])
    lines += ["", f"verdict: {report['verdict'].upper()} (exit {report['exit_code']})"]
    return "\n".join(lines)


def markdown(report: dict) -> str:
    """report.md: the same content as report.json, for people."""
    model, data = report["model"], report["data"]
    rows = summary_rows(report)
    out = [
        f"# Certification report: {model['name']}",
        "",
        f"**Verdict: {report['verdict'].upper()}** (exit code {report['exit_code']}).",
        "",
        f"> {data['note']}",
        "",
        f"- Model: `{model['name']}` ({model['origin']['kind']}), manifest content hash `{model['content_hash']}`",
        f"- Input type `{model['input_type']}`; score output `{model['score_output']}` of type `{model['score_type']}`",
        f"- Threshold code: {model['threshold_code']} (the trigger fires on score code > threshold code)",
        f"- Events: {data['events']} from event {data['first_event']}; shards: {report['shards']['count']} of up to "
        f"{report['shards']['size']} events, {report['shards']['jobs']} job(s)",
        f"- Reference path: `{report['reference']}`; every other path is compared with it code for code",
        f"- Command: `{' '.join(report['command'])}`; created {report['created']}",
        "",
        "## Agreement per path",
        "",
        "| " + " | ".join(_COLUMNS) + " |",
        "|" + "---|" * len(_COLUMNS),
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    det = report["determinism"]
    out += ["", "## Determinism check", "",
            f"The emulator ran twice and must give identical bits; status: **{det.get('status', 'not run')}**.", ""]
    out += [f"- {run.replace('_', ' ')}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in det[run].items())
            for run in ("first_run", "second_run")]
    if report["first_mismatch"]:
        out += ["", "## First mismatch", "", "```", report["first_mismatch"]["text"], "```"]
    if report["layer_bit_differences"]:
        out += ["", "## Bit differences per layer (emulator against C-sim, on the events whose outputs differ)", "",
                "| layer | type | differing codes | events | differing bits (LSB first) |", "|---|---|---|---|---|"]
        for name, diff in report["layer_bit_differences"].items():
            out.append(f"| {name} | `{diff['type']}` | {diff['codes']} | {diff['events']} | {diff['bits']} |")
    if report["plots"]:
        out += ["", "## Plots", ""] + [f"![{name}]({file})" for name, file in report["plots"].items()]
    vectors = report["vectors"]
    out += ["", "## Test vectors", "",
            f"{vectors['events']} events in `{vectors['directory']}/` (described in `vectors.json`): "
            + ", ".join(f"`{f}`" for f in vectors["files"].values()) + "."]
    if report.get("coverage"):
        from .coverage import markdown_lines

        out += markdown_lines(report["coverage"])
    out += ["", "## Tools", ""] + [f"- {name}: {version}" for name, version in report["tools"].items()]
    if report.get("injected_faults"):
        out += ["", "## Injected faults (test run)", ""] + [f"- `{f}`" for f in report["injected_faults"]]
    return "\n".join(out) + "\n"


def write_report(out_dir: Path, report: dict) -> tuple:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    md_path = out_dir / "report.md"
    md_path.write_text(markdown(report))
    return json_path, md_path


# ---- plots ----------------------------------------------------------------------------------------------------
def plot_scores(path: Path, scores: np.ndarray, score_type: FixedType, threshold: int | None, title: str,
                note: str) -> Path:
    """Histogram of the reference's anomaly scores (values of the score type), with the threshold line."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    values = scores * score_type.lsb
    ax.hist(values, bins=100, color="tab:blue", alpha=0.8, label=f"scores ({len(values)} events)")
    if threshold is not None:
        ax.axvline(threshold * score_type.lsb, color="tab:red", linestyle="--",
                   label=f"threshold code {threshold} ({threshold * score_type.lsb:.6g})")
    ax.set_yscale("log")
    ax.set_xlabel(f"anomaly score ({score_type})")
    ax.set_ylabel("events")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.text(0.01, 0.01, note, fontsize=7, color="dimgray")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    return path


def plot_layer_differences(path: Path, diffs: dict, note: str) -> Path:
    """Differing codes per layer, and how often each bit position differs (layers x bits)."""
    from matplotlib.figure import Figure

    names = list(diffs)
    width = max(len(d.bits) for d in diffs.values())
    grid = np.zeros((len(names), width))
    for row, name in enumerate(names):
        grid[row, :len(diffs[name].bits)] = diffs[name].bits
    fig = Figure(figsize=(9, 1.5 + 0.3 * len(names)))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2]})
    left.barh(range(len(names)), [diffs[n].codes for n in names], color="tab:red")
    left.set_yticks(range(len(names)), names, fontsize=7)
    left.invert_yaxis()
    left.set_xlabel("differing codes")
    image = right.imshow(grid, aspect="auto", cmap="Reds", interpolation="nearest")
    right.set_yticks(range(len(names)), names, fontsize=7)
    right.set_xlabel("bit position (0 = LSB)")
    fig.colorbar(image, ax=right, label="codes with this bit different")
    fig.suptitle("emulator against C-sim, on the events whose outputs differ", fontsize=10)
    fig.text(0.01, 0.01, note, fontsize=7, color="dimgray")
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    fig.savefig(path, dpi=110)
    return path
