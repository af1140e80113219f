"""The device catalogue: built-in TOML data, users' device files, and their errors."""

from __future__ import annotations

import pytest

from memory_models import InputError, catalogue, get_device
from memory_models.devices import builtin_devices, load_device_file
from tests.fixtures.devices import GOOD, REQUIRED


def test_catalogue_has_the_required_devices_with_their_headline_figures():
    devs = builtin_devices()
    assert REQUIRED <= set(devs)
    stm = devs["stm32f446re"]
    assert stm.clock_mhz == 180 and stm.level("sram").capacity_bytes == 128 * 1024
    assert stm.level("flash").capacity_bytes == 512 * 1024 and not stm.level("flash").writable
    gap8 = devs["gap8"]
    assert [lv.name for lv in gap8.levels] == ["fc_L1", "cluster_L1", "L2", "L3_hyperram", "L3_hyperflash"]
    assert [lv.capacity_bytes for lv in gap8.levels] == [16 << 10, 64 << 10, 512 << 10, 8 << 20, 64 << 20]
    rpi = devs["rpi4b"]
    assert (
        rpi.clock_mhz == 1500
        and rpi.level("L1d").capacity_bytes == 32 << 10
        and rpi.level("L2").capacity_bytes == 1 << 20
    )
    assert devs["stm32h743"].level("sram").capacity_bytes == 512 << 10
    assert devs["rp2040"].level("sram").capacity_bytes == 264 << 10 and devs["rp2040"].cores == 2


def test_every_builtin_device_states_its_estimates_and_sources():
    for dev in builtin_devices().values():
        assert dev.sources, dev.name
        assert "macs_per_cycle" in dev.estimates and "estimate" in dev.estimates["macs_per_cycle"], dev.name
        assert all(dev.macs_per_cycle[b] > 0 for b in ("8", "4", "2"))
        # sub-byte kernels are never assumed faster than int8 on these cores (no nibble SIMD)
        assert dev.macs_per_cycle["2"] <= dev.macs_per_cycle["4"] <= dev.macs_per_cycle["8"], dev.name


def test_user_device_file_adds_a_device(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text(GOOD)
    devs = catalogue([f])
    assert "my_mcu" in devs and "stm32f446re" in devs
    assert devs["my_mcu"].runtime.tensor_alignment == 4  # default


def test_device_file_with_several_devices(tmp_path):
    two = GOOD.replace("[[levels]]", "[[devices.levels]]").replace("[runtime]", "[devices.runtime]")
    two = "[[devices]]\n" + two + "\n[[devices]]\n" + two.replace('name = "my_mcu"', 'name = "my_mcu2"')
    f = tmp_path / "two.toml"
    f.write_text(two)
    assert [d.name for d in load_device_file(f)] == ["my_mcu", "my_mcu2"]


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda s: s.replace("capacity_bytes = 65536", "capacity_bytes = -1"),
            "levels[0].capacity_bytes: Input should be greater than 0",
        ),
        (lambda s: s.replace('core = "cortex-m33"\n', ""), "core: required field is missing"),
        (
            lambda s: s.replace('code_level = "flash"', 'code_level = "rom"'),
            "code_level: 'rom' is not one of the levels",
        ),
        (lambda s: s.replace('"2" = 0.3', '"3" = 0.3'), "macs_per_cycle: missing bit-width '2'"),
        (
            lambda s: s.replace('activations = "sram"', 'activations = "flash"'),
            "default_target.activations: level 'flash' of my_mcu is read-only",
        ),
        (
            lambda s: s.replace("ram_bytes = 512", "ram_bytes = 512\ntensor_alignment = 6"),
            "runtime.tensor_alignment: must be a power of two",
        ),
        (
            lambda s: s.replace("clock_mhz = 100", "clock_mhz = 100\nclock_ghz = 1"),
            "clock_ghz: unknown field",
        ),
        (lambda s: s.replace("clock_mhz = 100", "clock_mhz = "), "not valid TOML"),
        (lambda s: s.replace('name = "flash"', 'name = "sram"'), "levels: duplicate level name 'sram'"),
    ],
)
def test_malformed_device_files_name_file_and_field(tmp_path, edit, message):
    f = tmp_path / "bad.toml"
    f.write_text(edit(GOOD))
    with pytest.raises(InputError) as e:
        catalogue([f])
    assert str(e.value).startswith(str(f) + ": ")
    assert message in str(e.value)


def test_unknown_device_lists_known_ones():
    with pytest.raises(InputError, match="unknown device 'stm32f999' .*stm32f446re"):
        get_device("stm32f999")


@pytest.mark.parametrize(
    "typed, name",
    [
        ("stm32f746", "stm32f746zg"),
        ("f746", "stm32f746zg"),
        ("STM32F746ZG", "stm32f746zg"),
        ("stm32f7", "stm32f746zg"),  # a prefix only one device has
        ("nano33ble", "nrf52840"),
        ("arduino-nano-33-ble-sense", "nrf52840"),
        ("Arduino Nano 33 BLE Sense", "nrf52840"),
        ("pi4", "rpi4b"),
        ("gapuino", "gap8"),
        ("pico", "rp2040"),
    ],
)
def test_devices_answer_to_the_names_people_type(typed, name):
    assert get_device(typed).name == name


def test_an_ambiguous_name_lists_the_candidates():
    with pytest.raises(
        InputError, match=r"'stm32' is ambiguous: it could be stm32f446re, stm32f746zg, stm32h743$"
    ):
        get_device("stm32")


def test_aliases_name_one_device_each():
    from memory_models.devices import _key, builtin_devices

    owner: dict[str, str] = {}
    for dev in builtin_devices().values():
        for key in {_key(dev.name), *map(_key, dev.aliases)}:
            assert owner.setdefault(key, dev.name) == dev.name, (key, owner[key], dev.name)
