"""Search spaces: sampling, validity, JSON, space files, Optuna, and graph() against build()."""

from __future__ import annotations

import json
import random

import numpy as np
import optuna
import pytest

from memory_models import InputError, evaluate, get_device
from search_spaces import Arch, graph, load_space, sample, sample_random
from search_spaces.arch import Block, Branch, Fusion, Head
from search_spaces.space import space_from_dict
from tests.fixtures.archs import INPUT_SETS, sampled


def test_sampled_archs_are_valid_round_trip_and_cover_the_space():
    archs = sampled(20)
    assert len(archs) >= 200
    seen = {"points": set(), "ops": set(), "blocks": set(), "dropped": 0, "bits": set(), "hidden": set()}
    for _, _, a in archs:
        a.validate()
        again = Arch.from_json(a.to_json())
        assert again == a and again.to_json() == a.to_json()
        assert Arch.from_json(json.dumps(json.loads(a.to_json()), indent=2)) == a
        if a.fused:
            seen["points"].add(a.fusion.point)
            seen["ops"].add(a.fusion.op)
        seen["dropped"] += sum(not b.used for b in a.branches)
        for b in a.used:
            for blk in b.blocks:
                seen["blocks"].add(blk.op)
                seen["bits"].update(blk.weight_bits)
        seen["hidden"].add(len(a.head.hidden))
    assert seen["points"] == {"early", "intermediate", "late"}
    assert seen["ops"] == {"concat", "add", "gate", "lowrank"}
    assert seen["blocks"] == {"conv", "dwsep", "mbconv"}
    assert seen["bits"] == {2, 4, 8}
    assert seen["dropped"] > 0
    assert seen["hidden"] >= {0, 1}


def test_only_valid_fusions_are_sampled():
    for _, name, a in sampled(30, seed=1):
        if not a.fused:
            continue
        dims = {b.dims for b in a.used}
        if a.fusion.point != "late":
            assert len(dims) == 1, a.summary()
        if a.fusion.point == "early":
            assert len({tuple(b.input_shape[1:]) for b in a.used}) == 1
        if a.fusion.op in ("gate", "lowrank"):
            assert a.fusion.point == "late"
        if name == "three":
            assert a.fusion.point == "late" or dims == {2}


def test_first_and_last_layer_bits_can_be_fixed_or_searched():
    rng = random.Random(3)
    fixed = load_space("tiny")
    for _ in range(50):
        a = sample_random(rng, fixed, INPUT_SETS["imu"], 7)
        stems = [a.trunk[0]] if a.fused and a.fusion.point == "early" else [b.blocks[0] for b in a.used]
        for stem in stems:
            assert stem.op == "conv" and stem.weight_bits == [8] and stem.act_bits == [8]
        assert a.head.weight_bits[-1] == 8 and a.head.act_bits[-1] == 8
    free = space_from_dict({"preset": "tiny", "first_layer_bits": None, "last_layer_bits": None}, "test")
    firsts = set()
    for _ in range(80):
        a = sample_random(rng, free, INPUT_SETS["imu"], 7)
        stems = [a.trunk[0]] if a.fused and a.fusion.point == "early" else [b.blocks[0] for b in a.used]
        firsts.update(stem.weight_bits[0] for stem in stems)
    assert firsts == {2, 4, 8}


def test_graph_figures_for_a_hand_written_arch():
    arch = Arch(
        classes=5,
        branches=[
            Branch(
                "acc",
                [3, 100],
                blocks=[
                    Block("conv", 5, 8, 2, 1, 1, [8], [8]),
                    Block("dwsep", 3, 16, 1, 2, 1, [4, 4], [8, 8]),
                ],
            ),
            Branch("gyro", [3, 100], blocks=[Block("conv", 3, 8, 1, 1, 1, [8], [8])]),
        ],
        fusion=Fusion("late", "concat", act_bits=8),
        head=Head([16], [4, 8], [8, 8]),
    )
    g = graph(arch.validate())
    ops = {op.name: op for op in g.ops}
    # acc stem: 3 -> 8 channels, k5, stride 2: 100 -> 50; weights 3*8*5 = 120, MACs 120*50
    assert (
        g.tensors["acc.b0.conv"].shape == (8, 50)
        and ops["acc.b0.conv"].weights == 120
        and ops["acc.b0.conv"].macs == 6000
    )
    # dwsep: depthwise 8 x 3 = 24 weights at 4 bits, pointwise 8 x 16 = 128, then max-pool 50 -> 25
    assert (
        ops["acc.b1.dw"].weights == 24
        and ops["acc.b1.dw"].weight_bits == 4
        and ops["acc.b1.pw"].weights == 128
    )
    assert g.tensors["acc.b1.pool"].shape == (16, 25)
    assert g.tensors["fusion.concat"].shape == (24,)
    assert ops["head.fc0"].weights == 24 * 16 and ops["logits"].weights == 16 * 5
    assert g.outputs == ["logits"] and g.inputs == ["acc", "gyro"]
    r = evaluate(g, get_device("stm32f446re"))
    # packed weights, layer by layer: acc stem 120 at 8 bits -> 120 B; dw 24 and pw 128 at 4 bits
    # -> 12 + 64 B; gyro stem 3*8*3 = 72 at 8 bits -> 72 B; fc0 384 at 4 bits -> 192 B; classifier
    # 80 at 8 bits -> 80 B
    assert r.fits and r.flash.weights == 120 + 12 + 64 + 72 + 192 + 80


def test_arch_json_errors_name_the_field():
    good = json.loads(sampled(1)[0][2].to_json())
    bad = json.loads(json.dumps(good))
    bad["fusion"]["point"] = "sideways"
    bad["branches"][0]["used"] = True
    bad["branches"][1]["used"] = True
    with pytest.raises(InputError, match="fusion.point"):
        Arch.from_dict(bad, "a.json")
    bad = json.loads(json.dumps(good))
    bad["branches"][0]["blocks"][0]["kernel"] = 4
    with pytest.raises(
        InputError, match=r"branches\[0\] \(.*\)\.blocks\[0\]\.kernel: must be a positive odd number"
    ):
        Arch.from_dict(bad, "a.json")
    with pytest.raises(InputError, match="classes: required field is missing"):
        Arch.from_dict({k: v for k, v in good.items() if k != "classes"}, "a.json")
    # Types and stray keys are answered at load, with the field's path (issue 17: `"inputs": 5`).
    for path, value, message in (
        ([], ("inputs", 5), r"a.json: inputs: unknown field"),
        (
            ["branches", 0, "blocks", 0],
            ("channels", 8.0),
            r"branches\[0\]\.blocks\[0\]\.channels: expected an integer",
        ),
        (["branches", 0, "blocks", 0], ("kernel", "3"), r"blocks\[0\]\.kernel: expected an integer"),
        (["branches", 0], ("used", 1), r"branches\[0\]\.used: expected true or false"),
        (["head"], ("hidden", "64"), r"head\.hidden: expected a list of integers"),
        (["fusion"], ("act_bits", 2**40), r"fusion: weight_bits and act_bits must be in"),
        (["branches", 0, "blocks", 0], ("channels", 2**40), r"blocks\[0\]\.channels: must be in 1\.\.65536"),
        ([], ("trunk", {}), r"trunk: expected a list"),
    ):
        bad = json.loads(json.dumps(good))
        node = bad
        for p in path:
            node = node[p]
        node[value[0]] = value[1]
        with pytest.raises(InputError, match=message):
            Arch.from_dict(bad, "a.json")


@pytest.mark.parametrize(
    "text, message",
    [
        ("preset = 'tiny'\n[space]\nkernels_1d = [3, 4]\n", "kernels_1d: Value error, kernels must be odd"),
        ("[space]\nweight_bits = [3, 8]\n", "weight_bits.0: Input should be 2, 4 or 8"),
        (
            "[space]\nbranch_blocks = { min = 3, max = 1 }\n",
            "branch_blocks: Value error, min (3) is greater than max (1)",
        ),
        ("[space]\ncolour = 'red'\n", "colour: unknown option"),
        ("preset = 'huge'\n", "preset: unknown search-space preset 'huge'"),
        ("[space]\nchannels = []\n", "channels: Value error, must list at least one choice"),
        ("[space\n", "not valid TOML"),
        ("shape = 1\n", "unknown top-level key 'shape'"),
        ("[space]\nfusion_points = ['early']\nfusion_ops = ['gate']\n", "none of them is valid"),
    ],
)
def test_invalid_space_files_are_clear_errors(tmp_path, text, message):
    f = tmp_path / "space.toml"
    f.write_text(text)
    with pytest.raises(InputError) as e:
        load_space(f)
    assert str(e.value).startswith(f"{f}: ")
    assert message.replace("Value error, ", "") in str(e.value)


def test_optuna_sampling_resumes_to_the_same_arch():
    space = load_space("tiny")
    inputs = INPUT_SETS["three"]
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, multivariate=True, group=True))
    archs = {}

    def objective(trial):
        a = sample(trial, space, inputs, 4)
        archs[trial.number] = a
        return float(len(graph(a).ops))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=40)
    for t in study.trials:
        again = sample(optuna.trial.FixedTrial(t.params), space, inputs, 4)
        assert again == archs[t.number]


# ---- graph() against build() ---------------------------------------------------------------------


def real_batch(inputs: dict[str, tuple[int, ...]], n: int = 8) -> dict:
    """Real samples for any of the test input sets: smartwatch IMU windows (seglearn), 8x8 digits
    (scikit-learn), and those digits upsampled for bigger image / spectrogram-shaped inputs."""
    import torch
    from scipy.ndimage import zoom
    from seglearn.datasets import load_watch
    from sklearn.datasets import load_digits

    watch = load_watch()
    windows = np.stack([x[:100].T for x in watch["X"][:n]]).astype(np.float32)  # (n, 6, 100)
    digits = load_digits().images[:n].astype(np.float32) / 16.0  # (n, 8, 8)
    out = {}
    for name, shape in inputs.items():
        if len(shape) == 2:
            c, length = shape
            x = windows[:, :c, :length] if c <= 6 else np.repeat(windows, 2, axis=1)[:, :c, :length]
        else:
            c, h, w = shape
            x = np.stack([zoom(d, (h / 8, w / 8), order=1) for d in digits])[:, None].repeat(c, axis=1)
        out[name] = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return out


def _bits(module) -> int:
    """The bit-width a layer quantizes to: weights for conv/linear layers, the output for activation
    quantizers (directly, or the `q` of a pooling / alignment wrapper)."""
    from search_spaces.quant import quant_params

    try:
        p = quant_params(module)
    except TypeError:
        return _bits(module.q)
    return int(p["weight_bits"] if "weight_bits" in p else p["bits"])


@pytest.mark.parametrize("seed", [0, 1])
def test_graph_equals_built_module_layer_by_layer(seed):
    import torch

    from search_spaces import build

    torch.manual_seed(0)
    checked = 0
    for _, name, a in sampled(12 if seed == 0 else 8, seed=seed):
        g = graph(a)
        model = build(a)
        shapes: dict[str, tuple] = {}
        hooks = []
        for op in g.ops:
            path = op.attrs.get("module")
            if path is None:
                continue
            mod = model.get_submodule(path)
            hooks.append(
                mod.register_forward_hook(
                    lambda m, i, o, p=path, s=shapes: s.__setitem__(p, tuple(o.shape[1:]))
                )
            )
        x = real_batch({b.modality: tuple(b.input_shape) for b in a.used})
        logits = model(x)
        for h in hooks:
            h.remove()
        assert logits.shape == (8, a.classes)
        for op in g.ops:
            path = op.attrs.get("module")
            if path is None:
                continue
            out = g.tensors[op.outputs[0]]
            assert shapes[path] == out.shape, (name, op.name, shapes[path], out.shape)
            mod = model.get_submodule(path)
            if op.weights:
                n_params = sum(p.numel() for p in mod.parameters(recurse=False) if p.requires_grad)
                assert n_params == op.weights + op.bias, (op.name, n_params, op.weights, op.bias)
                assert mod.weight.numel() == op.weights
                assert _bits(mod) == op.weight_bits, op.name
                act = model.get_submodule(path + "_act")
                assert _bits(act) == out.bits, (op.name, _bits(act), out.bits)
            else:
                assert _bits(mod) == out.bits, (op.name, _bits(mod), out.bits)
            checked += 1
        n_weighted = sum(1 for op in g.ops if op.weights)
        n_layers = sum(
            1
            for m in model.modules()
            if hasattr(m, "weight") and getattr(m, "weight", None) is not None and m.weight.dim() > 1
        )
        assert n_weighted == n_layers, (name, n_weighted, n_layers)
    assert checked > 1000


def test_every_sampled_arch_trains_a_step_on_real_data():
    import torch

    from search_spaces import build

    torch.manual_seed(0)
    for _, _, a in sampled(10, seed=5):
        model = build(a)
        x = real_batch({b.modality: tuple(b.input_shape) for b in a.used})
        y = torch.arange(8) % a.classes
        loss = torch.nn.functional.cross_entropy(model(x), y)
        assert torch.isfinite(loss)
        loss.backward()
        # Activation thresholds are observed (not learned) during the first steps, so only the
        # layers' weights and biases must have gradients after one step.
        grads = {
            n: p.grad
            for n, p in model.named_parameters()
            if p.requires_grad and not n.endswith("log_threshold")
        }
        assert grads and all(gr is not None and torch.isfinite(gr).all() for gr in grads.values()), [
            n for n, gr in grads.items() if gr is None
        ]
