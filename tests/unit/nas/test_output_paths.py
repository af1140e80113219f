"""Output paths stay inside the folder they belong to, whatever the study or device is called."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from memory_models.errors import InputError
from nas.export.trial import default_out_dir
from tests.fixtures import assert_one_line_error, run_cli_here, write_smoke_study


@pytest.mark.parametrize("name", ["../x", "/abs/x", "..", ".hidden", "a/b", "a\\\\b", "", "x" * 101, "a..b"])
def test_unsafe_study_names_are_refused_at_load(tmp_path, name):
    path = write_smoke_study(tmp_path, trials=1)
    Path(path).write_text(Path(path).read_text().replace('name = "smoke"', f'name = "{name}"'))
    for cmd in (["search", path], ["export", path, "--all-devices"], ["status", path]):
        res = run_cli_here(*cmd)
        assert_one_line_error(res, "study.name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smoke.toml"]


def test_a_file_name_that_is_no_safe_name_needs_a_study_name(tmp_path):
    path = tmp_path / "my study.toml"
    text = Path(write_smoke_study(tmp_path, trials=1)).read_text().replace('name = "smoke"\n', "")
    path.write_text(text)
    assert_one_line_error(run_cli_here("status", path), "set [study] name")


@pytest.mark.parametrize("device", ["../../x", "/abs/x", "..", "."])
def test_export_folders_stay_inside_their_base(tmp_path, monkeypatch, device):
    monkeypatch.chdir(tmp_path)
    study = SimpleNamespace(name="smoke", path=tmp_path / "smoke.toml")
    with pytest.raises(InputError, match="leads outside"):
        default_out_dir(study, device, None, False)
    with pytest.raises(InputError, match="leads outside"):
        default_out_dir(study, device, tmp_path / "out", True)
    assert default_out_dir(study, "stm32f446re", None, False) == Path("export/smoke/stm32f446re")
