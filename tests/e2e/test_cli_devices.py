"""`m2nas devices`: the catalogue as a table and JSON, a user's device file, bad files."""

from __future__ import annotations

import json

from tests.fixtures import assert_one_line_error
from tests.fixtures.devices import GOOD, REQUIRED


def test_cli_devices_table_and_json(cli, tmp_path):
    r = cli("devices")
    assert r.code == 0 and "stm32f446re" in r.stdout and "cluster_L1" in r.stdout
    r = cli("devices", "--json")
    data = json.loads(r.stdout)
    assert {d["name"] for d in data} >= REQUIRED
    f = tmp_path / "mine.toml"
    f.write_text(GOOD)
    r = cli("devices", "--json", "--devices", f)
    assert "my_mcu" in {d["name"] for d in json.loads(r.stdout)}


def test_cli_bad_device_file_is_one_line_exit_2(cli, tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text(GOOD.replace("bytes_per_cycle = 4", "bytes_per_cycle = 'fast'"))
    assert_one_line_error(cli("devices", "--devices", f), str(f), "levels[0].bytes_per_cycle")
    assert_one_line_error(
        cli("devices", "--devices", tmp_path / "missing.toml"), "missing.toml", "cannot read"
    )
