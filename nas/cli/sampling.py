"""Where `m2nas sample` finds its search space, modality shapes and class count."""

from __future__ import annotations

import tomllib
from pathlib import Path

from memory_models.errors import InputError, read_user_text
from search_spaces import SearchSpace, check_inputs, load_space, presets


def parse_shape_option(text: str) -> tuple[str, tuple[int, ...]]:
    name, sep, dims = text.partition("=")
    try:
        shape = tuple(int(d) for d in dims.lower().split("x"))
    except ValueError:
        shape = ()
    if not sep or not name or len(shape) not in (2, 3) or min(shape) < 1:
        raise InputError(f"--input {text!r}: expected NAME=CxL or NAME=CxHxW, e.g. acc=3x100")
    return name, shape


def resolve_sampling(spec: str, input_opts: list[str], classes: int | None) -> tuple[SearchSpace, dict, int]:
    shapes: dict[str, tuple[int, ...]] = {}
    n_classes = classes
    path = Path(spec)
    if spec not in presets() and path.exists():
        try:
            data = tomllib.loads(read_user_text(path, "a study or search-space TOML file"))
        except tomllib.TOMLDecodeError as e:
            raise InputError(f"{path}: not valid TOML ({e})") from None
        if "dataset" in data:  # a study file: the dataset gives shapes and classes
            from nas.config.study import load_study

            study = load_study(path)
            space = study.space
            info = study.dataset_shapes()
            shapes, n_classes = info["modalities"], classes or info["classes"]
        else:
            space = load_space(path)
            shapes = {k: tuple(v) for k, v in data.get("inputs", {}).items()}
            n_classes = classes or data.get("classes")
    else:
        space = load_space(spec)
    for opt in input_opts:
        name, shape = parse_shape_option(opt)
        shapes[name] = shape
    if not shapes:
        raise InputError(
            f"{spec}: no modality shapes: give --input NAME=CxL (or an [inputs] table in the space file)"
        )
    if not n_classes or n_classes < 2:
        raise InputError(f"{spec}: number of classes unknown: give --classes K (K >= 2)")
    check_inputs(space, shapes, "--input")
    return space, shapes, n_classes
