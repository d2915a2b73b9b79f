"""Show a benchmark result: a terminal table, a JSON file and two PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

from fashion import SHORT_HEADS

STATUS = {"ok": "✅", "skipped": "➖", "failed": "❌"}


def _num(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _spread(row: dict) -> float | None:
    """The row's run-to-run spread: range of the rounds' batch-1 p50s, % of the p50 (None in old results)."""
    return (row["latency_ms"].get("rounds") or {}).get("spread_pct")


def table_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    heads = result["bundle"]["heads"]
    sizes = [str(s) for s in result["settings"]["batch_sizes"]]
    header = (
        ["Format", "Status", "Size MB"]
        + [f"{SHORT_HEADS.get(h, h)} %" for h in heads]
        + ["p50 ms", "spread %", "p99 ms"]
        + [f"img/s b{s}" for s in sizes]
        + ["speed-up", "worst Δpp", "cold s", "RSS MB"]
    )
    lines = []
    for row in result["rows"]:
        ok = row["status"] == "ok"
        accuracy = [
            _num(100 * row["accuracy"][h]["accuracy"]) if ok and row["accuracy"][h]["accuracy"] is not None else "-"
            for h in heads
        ]
        throughput = [
            _num(row["throughput"][s]["img_per_s"], 0) if ok and s in row["throughput"] else "-" for s in sizes
        ]
        speedup = row.get("speedup_vs_keras", {}).get("p50")
        deltas = (row.get("vs_fp32") or {}).get("accuracy_delta_pp")
        worst = (
            "ref"
            if (row.get("vs_fp32") or {}).get("reference") == row["name"]
            else f"{min(deltas.values()):+.2f}"
            if deltas
            else "-"
        )
        lines.append(
            [row["format"], f"{STATUS[row['status']]} {row['status']}", _num(row["size_mb"], 2)]
            + accuracy
            + [
                _num(row["latency_ms"]["p50"], 2) if ok else "-",
                _num(_spread(row), 1) if ok else "-",
                _num(row["latency_ms"]["p99"], 2) if ok else "-",
            ]
            + throughput
            + [
                f"{speedup:.2f}x" if speedup else "-",
                worst,
                _num(row.get("cold_start_s"), 2),
                _num(row.get("peak_rss_mb"), 0),
            ]
        )
    return header, lines


def _render(header: list[str], lines: list[list[str]], markdown: bool, left: int = 2) -> str:
    """A Markdown table, or a terminal table with the first ``left`` columns left-aligned, numbers right."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines)]
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        return "\n".join(out)

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths)] + [fmt(line) for line in lines])


def describe_run(result: dict) -> list[str]:
    cpu = result["machine"]["cpu"]
    settings = result["settings"]
    data = result["data"]
    where = f"{data['data']}" + (f", split '{data['split']}' of {data['split_file']}" if data.get("split") else "")
    lines = [
        f"bundle  {result['bundle']['path']} (bundle.json sha256 {result['bundle']['manifest_sha256'][:16]}…), "
        f"input {result['bundle']['input_size'][0]}x{result['bundle']['input_size'][1]}",
        f"data    {data['images']:,} images from {where}",
        f"cpu     {cpu['model']}, {cpu['cores']} cores @ {_num(cpu.get('mhz'), 0)} MHz; threads {settings['threads']}; "
        f"warm-up {settings['warmup']}, iterations {settings['iters']} in {settings.get('rounds', 1)} rounds; load avg "
        f"{result['machine'].get('load_average_start')} -> {result['machine'].get('load_average_end')}",
    ]
    for row in result["rows"]:
        if row["status"] == "ok":
            info = row.get("info", {})
            session = info.get("session") or {}
            extra = f", graph optimisation {session['graph_optimization_level']}" if session else ""
            lines.append(
                f"ran     {row['name']}: {info.get('backend')} providers {info.get('providers')} "
                f"threads {info.get('threads')}{extra}"
            )
    floor = result.get("compute_floor") or {}
    if floor.get("floor_ms"):
        lines.append(
            f"floor   {floor['flops'] / 1e9:.3g} GFLOPs/image at {floor['input'][1]}x{floor['input'][2]}; "
            f"fp32 peak of {floor['cores']} core(s) {floor['peak_gflops']:.0f} GFLOP/s -> {floor['floor_ms']:.3g} ms per image"
        )
    return lines


def render_text(result: dict) -> str:
    header, lines = table_rows(result)
    parts = describe_run(result) + ["", _render(header, lines, markdown=False)]
    summary = result.get("summary") or {}
    if summary or result.get("runtime_choice"):
        parts += [""] + choice_lines(result) + summary_lines(result)
    skipped = [f"  {row['name']}: {row['reason']}" for row in result["rows"] if row["status"] != "ok"]
    if skipped:
        parts += ["", "not run:"] + skipped
    parts += [f"note: {note}" for note in result.get("notes", [])]
    if result.get("baseline"):
        parts += ["", *baseline_section(result, markdown=False)]
    return "\n".join(parts)


def summary_lines(result: dict) -> list[str]:
    summary = result.get("summary") or {}
    lines = []
    if "onnx_fp32_speedup_vs_keras_p50" in summary:
        lines.append(
            f"ONNX Runtime FP32 batch-1 p50 is {summary['onnx_fp32_speedup_vs_keras_p50']:.2f}x the compiled Keras call's speed"
        )
    if "fastest_cpu_row" in summary:
        line = f"fastest CPU row: {summary['fastest_cpu_row']} at {summary['fastest_cpu_p50_ms']:.2f} ms p50"
        if "fastest_cpu_worst_accuracy_delta_pp" in summary:
            line += f", worst head {summary['fastest_cpu_worst_accuracy_delta_pp']:+.2f} pp vs FP32"
        if "fastest_cpu_p50_over_floor" in summary:
            line += f", {summary['fastest_cpu_p50_over_floor']:.1f}x the compute floor"
        lines.append(line)
        if summary.get("fastest_cpu_within_noise_of"):
            lines.append(
                f"within this run's noise (p50 difference below the rounds' spread): "
                f"{summary['fastest_cpu_row']} vs {', '.join(summary['fastest_cpu_within_noise_of'])}"
            )
    lines.append(TIMING_NOTE)
    return lines


#: What the timing columns mean; the same figures are in the JSON and the latency plot.
TIMING_NOTE = (
    "p50 ms: batch-1 median over every timed call (the latency plot's batch-1 point); spread %: range of the "
    "rounds' p50s (a smaller difference between rows is noise); img/s bN: N / median N-image call."
)


def render_markdown(result: dict) -> str:
    header, lines = table_rows(result)
    parts = [_render(header, lines, markdown=True)]
    notes = choice_lines(result) + summary_lines(result) + [f"Note: {note}" for note in result.get("notes", [])]
    if notes:
        parts += ["", *notes]
    if result.get("baseline"):
        parts += ["", *baseline_section(result, markdown=True)]
    return "\n".join(parts)


def choice_lines(result: dict) -> list[str]:
    """The CPU the rows ran on, and what the runtime's ``precision="auto"`` runs there and why."""
    cpu = (result.get("machine") or {}).get("cpu") or {}
    choice = result.get("runtime_choice") or {}
    lines = []
    if cpu:
        flags = ", ".join(cpu.get("isa_flags") or []) or "none recorded"
        lines.append(f"CPU: {cpu.get('model')}, {result['settings']['threads']} threads; ISA flags: {flags}.")
    if choice.get("artifact"):
        lines.append(f'`precision="auto"` runs `{choice["artifact"]}` here: {choice["reason"]}.')
    return lines


def _size(side: dict) -> str:
    height, width = side["bundle"]["input_size"]
    return f"{height}x{width}"


def baseline_title(result: dict) -> str:
    """'vs baseline <name> (<HxW>)': the old bundle the run compared the main one with."""
    return f"vs baseline {result['baseline']['bundle'].get('name')} ({_size(result['baseline'])})"


def baseline_section(result: dict, markdown: bool) -> list[str]:
    """Old vs new, measured in the same run on the same images: p50 per row, then per-head scores.

    Per-head accuracy and macro-F1 are those of the reference row (ONNX FP32 if it ran in both, else Keras).
    """
    old, comparison = result["baseline"], result.get("comparison") or {}
    title = baseline_title(result)
    new_bundle = result["bundle"]
    lines = [
        f"### {title}" if markdown else title,
        "",
        f"new: {new_bundle.get('name')} ({_size(result)}) at {new_bundle['path']}; old: {old['bundle']['path']}; "
        f"same {result['data']['images']:,} images, each through its own preprocessing, same machine and settings",
        "",
    ]
    latency_header, latency_lines = _latency_rows(result, comparison)
    lines.append(_render(latency_header, latency_lines, markdown, left=1))
    missing = [row["name"] for row in result["rows"] if row["name"] not in comparison]
    if missing:
        lines += ["", f"not compared (did not run in both): {', '.join(missing)}"]
    reference = comparison_reference(comparison)
    if reference:
        head_header, head_lines = _head_rows(result, reference)
        lines += ["", f"per head, {reference} row:", "", _render(head_header, head_lines, markdown, left=1)]
    return lines


def comparison_reference(comparison: dict) -> str | None:
    """The row whose per-head scores the comparison shows: ONNX FP32 if it ran in both, else Keras."""
    return next((name for name in ("onnx-fp32", "keras") if name in comparison), None)


def _latency_rows(result: dict, comparison: dict) -> tuple[list[str], list[list[str]]]:
    old_rows = {row["name"]: row for row in result["baseline"]["rows"]}
    sizes = [str(s) for s in result["settings"]["batch_sizes"]]
    header = ["Format", "p50 old ms", "p50 new ms", "p50 new/old"] + [f"img/s b{s} new/old" for s in sizes]
    lines = []
    for row in result["rows"]:
        if row["name"] not in comparison:
            continue
        ratios = comparison[row["name"]]
        lines.append(
            [
                row["format"],
                _num(old_rows[row["name"]]["latency_ms"]["p50"], 2),
                _num(row["latency_ms"]["p50"], 2),
                f"{ratios['latency_p50_ratio']:.2f}x",
            ]
            + [f"{ratios['throughput_ratios'][s]:.2f}x" if s in ratios["throughput_ratios"] else "-" for s in sizes]
        )
    return header, lines


def _head_rows(result: dict, reference: str) -> tuple[list[str], list[list[str]]]:
    new = next(row for row in result["rows"] if row["name"] == reference)["accuracy"]
    old = next(row for row in result["baseline"]["rows"] if row["name"] == reference)["accuracy"]
    deltas = result["comparison"][reference]
    header = ["Head", "acc old %", "acc new %", "Δ pp", "macro-F1 old", "macro-F1 new", "Δ F1"]
    lines = []
    for head in result["bundle"]["heads"]:
        if head not in old:
            continue
        accuracy_delta, f1_delta = deltas["accuracy_delta_pp"].get(head), deltas["macro_f1_delta"].get(head)
        lines.append(
            [
                head,
                _percent(old[head]["accuracy"]),
                _percent(new[head]["accuracy"]),
                "-" if accuracy_delta is None else f"{accuracy_delta:+.2f}",
                _num(old[head].get("macro_f1"), 4),
                _num(new[head].get("macro_f1"), 4),
                "-" if f1_delta is None else f"{f1_delta:+.4f}",
            ]
        )
    return header, lines


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def write_json(result: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def plot_paths(prefix: str | Path) -> tuple[Path, Path]:
    """--plot PREFIX (a trailing .png is dropped) -> PREFIX_latency.png, PREFIX_accuracy.png."""
    prefix = Path(prefix)
    if prefix.suffix.lower() == ".png":
        prefix = prefix.with_suffix("")
    return prefix.with_name(prefix.name + "_latency.png"), prefix.with_name(prefix.name + "_accuracy.png")


def plot_points(row: dict, sizes: list[int]) -> list[tuple[int, float, float, float]]:
    """(batch size, ms per image, lowest round, highest round) for the latency plot.

    Batch 1 is the row's p50 ms (the table's figure); batch N is the median N-image call / N, the inverse
    of the table's img/s bN. The error bar spans the rounds' values.
    """
    points = []
    for size in sorted({1, *sizes}):
        if size == 1:
            rounds = (row["latency_ms"].get("rounds") or {}).get("p50_ms") or [row["latency_ms"]["p50"]]
            points.append((1, row["latency_ms"]["p50"], min(rounds), max(rounds)))
        elif str(size) in row["throughput"]:
            entry = row["throughput"][str(size)]
            per_image = [1000.0 / v for v in (entry.get("rounds") or {}).get("img_per_s") or [entry["img_per_s"]]]
            points.append((size, 1000.0 / entry["img_per_s"], min(per_image), max(per_image)))
    return points


def accuracy_deltas(result: dict) -> tuple[str | None, dict[str, dict[str, float]]]:
    """The FP32 reference row and, for every other finished row, its accuracy difference per head (pp)."""
    finished = [row for row in result["rows"] if row["status"] == "ok" and row.get("vs_fp32")]
    reference = finished[0]["vs_fp32"]["reference"] if finished else None
    return reference, {row["name"]: row["vs_fp32"]["accuracy_delta_pp"] for row in finished if row["name"] != reference}


def write_plots(result: dict, prefix: str | Path) -> tuple[Path, Path]:
    """PREFIX_latency.png (ms per image vs batch size, log axes with plain labels) and PREFIX_accuracy.png
    (each row's accuracy difference to FP32 per head, in pp). Every value is one the table shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import FuncFormatter, LogLocator

    latency_path, accuracy_path = plot_paths(prefix)
    latency_path.parent.mkdir(parents=True, exist_ok=True)
    finished = [row for row in result["rows"] if row["status"] == "ok"]
    by_name = {row["name"]: row for row in finished}
    sizes = result["settings"]["batch_sizes"]
    threads = result["settings"]["threads"]
    title = f"{result['bundle'].get('name')} on {result['machine']['cpu']['model']} ({threads} thread{'s' if threads != 1 else ''})"
    plain = FuncFormatter(lambda value, _: f"{value:g}")

    figure, axis = plt.subplots(figsize=(7.5, 4.8))
    for row in finished:
        points = plot_points(row, sizes)
        x, y = [p[0] for p in points], [p[1] for p in points]
        errors = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]]
        line = axis.errorbar(x, y, yerr=errors, marker="o", capsize=3, label=row["format"])
        axis.annotate(
            f"{y[0]:.2f}",
            (x[0], y[0]),
            textcoords="offset points",
            xytext=(-6, 0),
            ha="right",
            va="center",
            fontsize=7,
            color=line[0].get_color(),
        )
    all_sizes = sorted({1, *sizes})
    axis.set_xscale("log", base=2)
    axis.set_yscale("log")
    axis.set_xticks(all_sizes, [str(s) for s in all_sizes])
    axis.set_xlim(all_sizes[0] / 1.6, all_sizes[-1] * 1.3)
    axis.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    axis.yaxis.set_major_formatter(plain)
    axis.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
    axis.set_xlabel("batch size")
    axis.set_ylabel("ms per image (log scale)")
    axis.set_title(
        f"{title}\nbatch 1 = the table's p50 ms; batch N = median N-image call / N (= 1000 / img/s bN); "
        "bars: range of the rounds",
        fontsize=8,
    )
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(latency_path, dpi=120)
    plt.close(figure)

    heads = result["bundle"]["heads"]
    reference, deltas = accuracy_deltas(result)
    figure, axis = plt.subplots(figsize=(9, 4.8))
    positions = np.arange(len(heads))
    width = 0.8 / max(1, len(deltas))
    largest = 0.5
    for i, (name, per_head) in enumerate(deltas.items()):
        values = [per_head.get(h, 0.0) for h in heads]
        largest = max(largest, *(abs(v) for v in values))
        bars = axis.bar(positions + i * width - 0.4 + width / 2, values, width, label=by_name[name]["format"])
        axis.bar_label(bars, labels=[f"{v:+.2f}" for v in values], fontsize=7, padding=2)
    if reference:
        ref_accuracy = by_name[reference]["accuracy"]
        labels = [
            f"{h}\n{100 * ref_accuracy[h]['accuracy']:.1f} %" if ref_accuracy[h]["accuracy"] is not None else h
            for h in heads
        ]
        axis.set_xticks(positions, labels, fontsize=8)
        what = f"accuracy difference to {by_name[reference]['format']} per head (its accuracy under each head)"
    else:
        axis.set_xticks(positions, heads, fontsize=8)
        what = "no FP32 row finished: no accuracy differences to show"
    axis.axhline(0.0, color="black", linewidth=0.8)
    axis.set_ylim(-1.3 * largest, 1.3 * largest)
    axis.set_ylabel("Δ accuracy vs FP32 (pp)")
    axis.set_title(f"{what}, {result['data']['images']:,} images", fontsize=9)
    if deltas:
        axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=min(4, len(deltas)))
    axis.grid(True, axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(accuracy_path, dpi=120)
    plt.close(figure)
    return latency_path, accuracy_path
