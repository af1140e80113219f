"""MODEL_CARD.md of an exported model: data, modalities, test metrics, memory against the budget, how to run it."""

from __future__ import annotations

from typing import Any

from memory_models.cost import ESTIMATE_NOTE


def _b(n: int) -> str:
    return f"{n:,} B"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def render_model_card(result, study, metric: str, trial) -> str:
    ds, arch, rep = result.dataset, result.arch, result.report
    info = ds.info
    used = [b.modality for b in arch.used]
    dropped = [b.modality for b in arch.branches if not b.used]
    L: list[str] = []
    L += [
        f"# {study.name}: best model for {result.device}",
        "",
        f"Trial {trial.number} of study `{study.name}` (`{study.path.name}`): the trained candidate with the "
        f"highest validation {metric} among those that fit {result.device} with target "
        f"`{', '.join(f'{k}={v}' for k, v in rep.target.items())}` (ties go to less memory).",
        "",
        f"Architecture: `{arch.summary()}` ({rep.params:,} parameters, {rep.macs:,} MACs per inference).",
        "",
        "## Data",
        "",
        f"- Dataset: `{ds.name}`" + (f": {info['description']}" if info.get("description") else ""),
    ]
    if info.get("source"):
        L.append(f"- Source: {info['source']}")
    if info.get("split"):
        L.append(f"- Split: {info['split']}")
    L.append(
        f"- Samples: {len(ds.train):,} train, {len(ds.val):,} validation, {len(ds.test):,} test. The test split "
        "was not used by the search; this export is the first thing that evaluated on it."
    )
    L.append(f"- Classes ({ds.n_classes}): {', '.join(ds.classes)}")
    L += ["", "### Modalities (model inputs)", ""]
    rows = []
    std = info.get("standardization", {})
    for b in arch.used:
        pre = "as loaded by the dataset"
        if b.modality in std:
            pre = f"standardized per channel: mean {std[b.modality].get('mean')}, std {std[b.modality].get('std')}"
        rows.append(
            [
                f"`{b.modality}`",
                "x".join(map(str, b.input_shape)),
                f"float32, quantized to {b.input_bits} bits on entry",
                pre,
            ]
        )
    L += _table(["input", "shape (per sample)", "type", "preprocessing"], rows)
    if dropped:
        L += [
            "",
            f"{' and '.join(f'`{m}`' for m in dropped)} not used: the search left it out, so it is not needed at run time.",
        ]

    L += ["", "## Test metrics", ""]
    names = list(result.test_metrics)
    L += _table(
        ["split", *names],
        [
            ["test", *(f"{result.test_metrics[k]:.4f}" for k in names)],
            ["validation", *(f"{result.val_metrics.get(k, float('nan')):.4f}" for k in names)],
        ],
    )
    if result.final:
        f = result.final
        L += [
            "",
            f"Final stage: trial {f['trial']} was chosen among {len(f['candidates'])} finalist(s) by its mean "
            f"validation {metric} over {len(f['seeds'])} retraining seeds ({f['val_mean']:.4f})"
            + (
                "; runs after the first were validated on other folds of train + validation (`fold`)"
                if any(f.get("folds", []))
                else ""
            )
            + "; only then was the test split read.",
            "",
        ]
        L += _table(
            ["run", f"val {metric}", f"test {metric}"],
            [
                [f"seed {s}" + (f", fold {k}" if k else ""), f"{v:.4f}", f"{t:.4f}"]
                for s, v, t, k in zip(
                    f["seeds"], f["val"], f["test"], f.get("folds") or [0] * len(f["seeds"]), strict=True
                )
            ]
            + [
                ["mean ± std", f"{f['val_mean']:.4f}", f"{f['test_mean']:.4f} ± {f['test_std']:.4f}"],
                [
                    "the search's single run",
                    f"{f['single_run']['val']:.4f}",
                    f"{f['single_run'].get('test', float('nan')):.4f}",
                ],
            ],
        )
        L += [
            "",
            f"The exported weights are seed {f['seeds'][f['export_run']]}'s (best validation {metric}).",
        ]
    if result.finetune:
        ft = result.finetune
        L += [
            "",
            f"Fine-tuned for {ft['epochs']} epoch(s) at lr {ft['lr']:g}: validation {metric} "
            f"{ft['val_before'][metric]:.4f} -> {ft['val_after'][metric]:.4f}; "
            + (
                "the fine-tuned weights were kept."
                if ft["kept"]
                else "no improvement, the trial's weights were kept."
            ),
        ]
    L += ["", "Confusion matrix on the test split (rows: true class, columns: predicted):", ""]
    L += _table(
        ["true \\ predicted", *ds.classes], [[c, *row] for c, row in zip(ds.classes, result.confusion)]
    )

    L += ["", f"## Memory on {result.device}", ""]
    L.append(
        f"Verdict: **{'fits' if rep.fits else 'does not fit'}**"
        + (f" ({rep.reason})" if not rep.fits else "")
        + ". Figures from m2nas' analytical memory model (`memory.json`); budgets are the study's limits."
    )
    L.append("")
    L += _table(
        ["memory level", "holds", "used", "budget", "margin"],
        [
            [lv.name, "+".join(lv.holds), _b(lv.used_bytes), _b(lv.capacity_bytes), _b(lv.margin_bytes)]
            for lv in rep.levels
            if lv.holds
        ],
    )
    f = rep.flash
    L += [
        "",
        f"- Flash: {_b(rep.flash_bytes)} = weights {_b(f.weights)} + biases {_b(f.biases)} + quantization "
        f"parameters {_b(f.quant_params)} + op table {_b(f.op_table)} + kernels {_b(f.kernels)} + runtime {_b(f.runtime)}",
        f"- Activations: peak {_b(rep.peak_sram_bytes)} under the chosen schedule ({rep.schedule_.method}); planned "
        f"arena {_b(rep.arena_bytes)} + runtime RAM {_b(rep.runtime_ram_bytes)} = {_b(rep.sram_bytes)}",
        f"- Per-layer formula (input + output of the largest layer) for comparison: {_b(rep.per_layer_peak_bytes)}",
    ]
    sf = result.search_figures
    if sf:
        same = sf.get("flash") == rep.flash_bytes and sf.get("sram") == rep.sram_bytes
        L.append(
            "- Search-time figures for this trial: flash "
            f"{_b(sf.get('flash', 0))}, SRAM {_b(sf.get('sram', 0))}"
            + (" (the same)." if same else " (they differ: the device file changed since the search).")
        )
    L.append(
        "- `m2nas memory model.onnx --device "
        f"{result.device}` reads the exported ONNX back into the memory model: "
        + ("same figures." if result.onnx_report_matches else "**different figures** (see memory.json).")
    )
    L += [
        "",
        "### Latency and energy (estimates, not measurements)",
        "",
        f"- Latency: ~{rep.latency_ms_est:.3f} ms per inference (estimate)",
        f"- Energy: ~{rep.energy_uj_est:.1f} uJ per inference (estimate)",
        f"- {ESTIMATE_NOTE}.",
    ]
    L += _measured_lines(result)

    p = result.parity
    L += [
        "",
        "## Checks",
        "",
        f"Logits compared with PyTorch in output LSB (one step of the int8 logit grid, {p['output_lsb']:.4g}) "
        "on the whole test split. *As written*: the file evaluated without graph rewriting must equal "
        "PyTorch exactly. *Integer runtime*: onnxruntime's default level fuses the graph into int8 "
        "kernels that round their own way; reported, and bounded only against gross disagreement.",
        "",
        "| file | check | runtime | samples | max LSB | max abs | identical logits | top-1 agreement | bound |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in p["checks"]:
        ties = f" ({c['float32_ties']} float32 ties settled in float64)" if c["float32_ties"] else ""
        L.append(
            f"| `{c['file']}` | {c['check']} | {c['runtime']} | {c['samples']:,} | {c['max_lsb']}{ties} | "
            f"{c['max_abs']:.3g} | {100 * c['identical']:.1f}% | {100 * c['top1_agreement']:.2f}% | {c['bound']} |"
        )

    L += _c_check_lines(result)
    L += _tflite_lines(result)

    feeds = ", ".join(f'"{m}": x_{m}' for m in used)
    shapes = "; ".join(
        f"x_{m}: float32 (N, {', '.join(map(str, b.input_shape))})" for m, b in zip(used, arch.used)
    )
    L += [
        "",
        "## Files and how to run",
        "",
        "- `model.onnx`: quantized model in QCDQ form (QuantizeLinear / Clip / DequantizeLinear around float "
        "ops), inputs named after the modalities, output `logits` (N, classes); any ONNX runtime runs it.",
        "- `model.qonnx.onnx`: the same model in QONNX (`Quant` nodes), for FINN and other QONNX tools.",
        "- `arch.json` + `weights.pt`: the architecture (m2nas.arch) and the PyTorch state dict.",
        "- `memory.json`: the memory report for this device and target (arena plan included).",
        "",
        "```python",
        "import numpy as np, onnxruntime as ort",
        'sess = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])',
        f"# {shapes}",
        f"logits = sess.run(None, {{{feeds}}})[0]",
        f"classes = {ds.classes!r}",
        "pred = [classes[i] for i in logits.argmax(axis=1)]",
        "```",
        "",
        "PyTorch (Brevitas):",
        "",
        "```python",
        "import torch",
        "from search_spaces import Arch",
        "from nas.train import load_trained",
        'model = load_trained(Arch.from_json(open("arch.json").read()), "weights.pt")  # eval mode',
        f"logits = model({{{', '.join(f'{chr(34)}{m}{chr(34)}: torch.from_numpy(x_{m})' for m in used)}}})",
        "```",
        "",
        f"Memory figures: `m2nas memory model.onnx --device {result.device}`.",
        "",
    ]
    if "model.c" in result.files:
        L += [
            "C99 (`model.h`, `model.c`; integer only, no dynamic allocation): every tensor lives at its planned "
            f"offset in one static arena of `M2NAS_ARENA_SIZE` = {result.report.arena_bytes:,} B, the ops run in "
            "the planned schedule. Quantize each input with its `M2NAS_INPUT_<NAME>_SCALE` from `model.h`, call "
            "`m2nas_infer(...)`; logits are int8 with scale `M2NAS_OUTPUT_SCALE`. `harness.c` runs it on a file of "
            "samples on the host (see `README.md` in this folder).",
            "",
        ]
    return "\n".join(L)


def _measured_lines(result) -> list[str]:
    """The C model's measured cost on emulated cores (export --c with the Arm toolchain and QEMU)."""
    m = getattr(result, "measured", None)
    if not m:
        return []
    L = ["", "### C model on emulated Cortex-M cores (instructions executed, not cycles, not a board)", ""]
    if not m.get("available"):
        return L + [f"- Not measured: {m.get('reason', 'the Arm toolchain or QEMU is missing')}."]
    L += [
        "| core | QEMU board | instructions / inference | instructions / MAC | identical int8 logits |",
        "|---|---|---|---|---|",
    ]
    for c in m["cores"].values():
        L.append(
            f"| {c['cpu']} | {c['board']} | {c['instructions_per_inference']:,} | {c['instructions_per_mac']:.2f} "
            f"| {c['identical_logits']:,} / {c['samples']:,} test samples |"
        )
    size = m["model_o_m4_Os"]
    L += [
        "",
        f"- Method: {m['method']}. Per-op counts (a profiling build, {next(iter(m['cores'].values()))['profile_samples']} "
        "samples) are in `memory.json` (`measured`).",
        f"- `model.o` for the Cortex-M4 at -Os: text {size['text']:,} B + data {size['data']:,} B; bss "
        f"{size['bss']:,} B (the planned arena is {result.report.arena_bytes:,} B).",
        "- A board's cycles are these counts times its cycles per instruction (pipeline, flash wait states, "
        "caches), which an emulator does not model.",
    ]
    stacks = [f"{c['stack_bytes']:,} B on the {c['cpu']}" for c in m["cores"].values() if "stack_bytes" in c]
    if stacks:
        L.append(
            f"- Stack of an inference, outside the arena (the measured -O2 build; painted-stack high-water "
            f"mark): {', '.join(stacks)}."
        )
    return L


def _c_check_lines(result) -> list[str]:
    """The C builds against the integer reference (export --c), and PyTorch / ONNX against it."""
    c = getattr(result, "c_checks", None)
    if not c:
        return []
    L = [
        "",
        "### The C against its integer reference",
        "",
        "`test_logits.bin` is the output of the integer reference (`nas.export.c.reference`: the lowered "
        "program's kernels, constants and rounding in numpy). Every build must reproduce it exactly, "
        "or the export fails. PyTorch and `model.onnx` requantize in float32, so a value within float "
        "rounding of a half step may round the other way there: reported, not required.",
        "",
        "| build or runtime | samples | differing from the reference | max LSB | top-1 agreement |",
        "|---|---|---|---|---|",
    ]
    rows = [(b["build"], b) for b in c["builds"]] + [("PyTorch (Brevitas)", c["pytorch"])]
    if "onnx_as_written" in c:
        rows.append(("`model.onnx` as written (onnxruntime)", c["onnx_as_written"]))
    for name, r in rows:
        L.append(
            f"| {name} | {r['samples']:,} | {r['differing']:,} | {r['max_lsb']} | {100 * r['top1_agreement']:.2f}% |"
        )
    t, p = c["trace"], c["pytorch"]
    L += [
        "",
        f"- Arena trace (a debug build, {t['samples']} samples, the arena filled with a canary before each): every "
        "step wrote only its planned outputs and scratch and produced the reference's values."
        if t
        else f"- **Not checked on the host**: {c['host_skipped']}.",
        f"- Test accuracy: the integer reference {p['reference_accuracy']:.4f}, PyTorch {p['accuracy']:.4f}.",
    ]
    return L


def _tflite_lines(result) -> list[str]:
    """model.tflite in TFLite Micro (export --tflite, or a runtime=tflm target)."""
    t = getattr(result, "tflite", None)
    if not t:
        return []
    c = t["check"]
    L = [
        "",
        "### `model.tflite` in TFLite Micro",
        "",
        f"- {t['bytes']:,} B, int8 (weights int8 per output channel), operators: "
        + ", ".join(f"{k} x{v}" for k, v in sorted(t["ops"].items()))
        + ". Written from the same integer program as the C (no TensorFlow).",
    ]
    if not c.get("available", True):
        return L + [f"- Not run in TFLite Micro: {c['reason']}."]
    return L + [
        f"- {c['runtime']} on the {c['samples']:,} test samples: top-1 agreement with the integer reference "
        f"{100 * c['top1_agreement']:.2f}%, identical logits on {c['samples'] - c['differing']:,} (max {c['max_lsb']} LSB: "
        "TFLite Micro rounds its requantization its own way), test accuracy "
        f"{c.get('accuracy', float('nan')):.4f}.",
        f"- Arena: {c['arena_measured_bytes']:,} B, the smallest at which the interpreter allocates and invokes "
        f"(bisection); m2nas predicts {c['arena_predicted_bytes']:,} B for this file ({100 * c['arena_error']:+.1f}%) and "
        f"screened the search with {t['search_arena_bytes']:,} B for the arch (before PAD / QUANTIZE tensors "
        "the file adds). These are the 64-bit host interpreter's figures; a 32-bit MCU build needs less.",
    ]


def write_model_card(result, study, metric: str, trial) -> None:
    (result.out_dir / "MODEL_CARD.md").write_text(render_model_card(result, study, metric, trial))
