"""The icon world's catalog (projects_lda/worlds/icon_catalog.py) and its LVIS match table."""
import collections
import os

import pytest
from detectron2.data.datasets.lvis_v1_categories import LVIS_CATEGORIES

from projects_lda.worlds import icon_catalog as ic

LVIS_BY_ID = {c["id"]: c for c in LVIS_CATEGORIES}


@pytest.fixture(scope="module")
def catalog():
    return ic.icon_catalog()


@pytest.fixture(scope="module")
def by_hexcode(catalog):
    return {icon.hexcode: icon for icon in catalog}


def test_match_table_rows_are_unique_both_ways_and_sorted():
    rows = ic.lvis_matches()
    ids = [int(r["lvis_id"]) for r in rows]
    hexcodes = [r["hexcode"] for r in rows]
    assert ids == sorted(ids)
    assert [i for i, n in collections.Counter(ids).items() if n > 1] == []
    assert [h for h, n in collections.Counter(hexcodes).items() if n > 1] == []


def test_match_table_agrees_with_detectron2_lvis_categories():
    for r in ic.lvis_matches():
        c = LVIS_BY_ID[int(r["lvis_id"])]
        assert (r["lvis_name"], r["frequency"]) == (c["name"], c["frequency"]), r


def test_matched_icons_carry_lvis_name_and_synonyms(catalog):
    matched = [icon for icon in catalog if icon.lvis_id]
    assert len(matched) == len(ic.lvis_matches())
    for icon in matched:
        c = LVIS_BY_ID[icon.lvis_id]
        assert icon.name == c["name"]
        assert icon.synonyms == tuple(c["synonyms"])


def test_spot_checks(by_hexcode):
    assert by_hexcode["1F34E"][1:4] == ("apple", "food", 12)  # red apple
    assert by_hexcode["1F34F"].lvis_id == 0  # green apple: apple is taken by the red one
    assert by_hexcode["1F34F"].name == "green_apple"
    assert by_hexcode["1F5B1"].name == "mouse_(computer_equipment)"
    assert by_hexcode["1F401"][1:4] == ("rodent", "animal", 890)  # the mouse, an animal
    # "boy" is a synonym of LVIS's person: the unmatched boy icon takes its kind as a suffix
    assert by_hexcode["1F466"][1:4] == ("boy_person", "person", 0)
    assert by_hexcode["1F466"].synonyms[0] == "boy"
    assert by_hexcode["1F987"].name == "bat_(animal)"
    assert by_hexcode["1F453"].name == "spectacles"  # glasses, not a drinking glass
    assert by_hexcode["1F1EB-1F1F7"][1:3] == ("france", "flag")
    assert by_hexcode["0031-FE0F-20E3"].kind == "keycap"
    assert by_hexcode["1F1E6"].kind == "letter"  # a lone regional indicator
    assert by_hexcode["1F600"].kind == "face"


def test_every_icon_svg_exists(catalog):
    for icon in catalog:
        assert os.path.isfile(ic.svg_path(icon.hexcode)), icon


def test_svg_path_names_a_missing_icon():
    with pytest.raises(FileNotFoundError, match="no icon 'ABCDEF'"):
        ic.svg_path("ABCDEF")


def test_names_unique_and_snake_case(catalog):
    names = [icon.name for icon in catalog]
    assert [n for n, k in collections.Counter(names).items() if k > 1] == []
    lvis_names = {c["name"] for c in LVIS_CATEGORIES}
    for icon in catalog:
        if not icon.lvis_id:
            assert icon.name not in lvis_names, icon
            assert icon.name.replace("_", "").isalnum() and icon.name == icon.name.lower(), icon


def test_left_out_icons(by_hexcode):
    for hexcode in by_hexcode:
        parts = set(hexcode.split("-"))
        assert not parts & {"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"}, hexcode
        assert not any(0xE000 <= int(p, 16) <= 0xF8FF for p in parts), hexcode
    assert "1F44D" in by_hexcode  # thumbs up; its skin tones 1F44D-1F3FB.. are not classes
    assert "1F3C3-200D-27A1-FE0F" not in by_hexcode  # person running facing right: a mirror image
    # gender variants whose neutral form is a class
    assert "1F9D1-200D-1F373" in by_hexcode  # cook
    assert "1F468-200D-1F373" not in by_hexcode  # man cook
    assert "1F469-200D-1F9B0" not in by_hexcode  # woman: red hair
    assert "1F468-200D-1F469-200D-1F467" not in by_hexcode  # family: man, woman, girl
    assert "1F469-200D-2764-FE0F-200D-1F468" not in by_hexcode  # couple with heart: woman, man
    assert "1F3C3-200D-2640-FE0F" not in by_hexcode  # woman running
    # single characters of their own stay
    assert {"1F468", "1F469", "1F474", "1F478", "1F934", "1FAC3"} <= set(by_hexcode)


def test_neutral_form():
    cps = ic._code_points
    assert ic._neutral_form(cps("1F3CB-FE0F-200D-2640-FE0F")) == (0x1F3CB,)
    family = cps("1F9D1-200D-1F9D2-200D-1F9D2")  # adult, child, child
    assert ic._neutral_form(cps("1F468-200D-1F466-200D-1F466")) == family
    assert ic._neutral_form(cps("1F469-200D-2764-FE0F-200D-1F48B-200D-1F468")) == (0x1F48F,)
    assert ic._neutral_form(cps("1F468")) == (0x1F468,)  # a single character is its own form


def test_kind_order(catalog):
    kinds = [icon.kind for icon in catalog]
    assert set(kinds) == set(ic.KINDS)
    ranks = [ic.KINDS.index(k) for k in kinds]
    assert ranks == sorted(ranks)
    for kind in ic.KINDS:
        icons = [icon for icon in catalog if icon.kind == kind]
        matched = [icon.lvis_id != 0 for icon in icons]
        assert matched == sorted(matched, reverse=True), kind  # matched first
        for group in (True, False):
            cps = [ic._code_points(i.hexcode) for i in icons if (i.lvis_id != 0) == group]
            assert cps == sorted(cps), (kind, group)


def test_kind_ranges_sorted_and_disjoint():
    ranges = ic._KIND_RANGES
    assert all(first <= last and kind in ic.KINDS for first, last, kind in ranges)
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:]))


def test_kind_rule():
    cps = ic._code_points
    assert ic._kind(cps("1F3F4-E0067-E0062-E0065-E006E-E0067-E007F")) == "flag"  # England
    assert ic._kind(cps("1F3F3-FE0F-200D-1F308")) == "flag"  # rainbow flag
    assert ic._kind(cps("1F408-200D-2B1B")) == "animal"  # black cat
    assert ic._kind(cps("23F0")) == "object"  # alarm clock
    assert ic._kind(cps("1F6F4")) == "vehicle"  # kick scooter
    assert ic._kind(cps("2764")) == "symbol"  # red heart
    assert ic._kind(cps("1F51F")) == "keycap"
    assert ic._kind(cps("24C2")) == "letter"  # circled M, an alphanumeric button


def _row(lvis_id, name, hexcode, how="name"):
    return {"lvis_id": lvis_id, "lvis_name": name, "frequency": "f", "hexcode": hexcode,
            "emoji_name": "x", "how": how}


@pytest.mark.parametrize(
    "rows, message",
    [
        ([_row("12", "apple", "1F34F")], r":2: hexcode '1F34F' \(apple\) is no catalog icon"),
        ([_row("12", "pear", "1F34E")], r":2: lvis_id '12' is not LVIS v1's 'pear'"),
        ([_row("x", "apple", "1F34E")], r":2: lvis_id 'x' is not LVIS v1's 'apple'"),
        ([_row("12", "apple", "1F34E", how="guess")], r":2: how 'guess' is not one of"),
        (
            [_row("12", "apple", "1F34E"), _row("776", "pear", "1F34E")],
            r":3: hexcode 1F34E or lvis_id 776 matched twice",
        ),
    ],
)
def test_match_table_errors_name_row_and_value(monkeypatch, rows, message):
    monkeypatch.setattr(ic, "lvis_matches", lambda: tuple(rows))
    named = {"1F34E": ("red_apple", ())}
    lvis = {12: {"name": "apple"}, 776: {"name": "pear"}}
    with pytest.raises(ValueError, match=message):
        ic._checked_matches(named, lvis)
