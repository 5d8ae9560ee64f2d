"""Import validation: good files, bad rows with reasons, CSV and .xlsx, Chinese and English headers."""

from __future__ import annotations

import io

import pytest
from openpyxl import Workbook

from services.directory.importer import (
    PLACE_COLUMNS,
    RESIDENT_COLUMNS,
    UnreadableFile,
    read_table,
    validate_places,
    validate_residents,
)

KNOWN = {"b01": {"1", "2"}, "b09": set()}


def xlsx(rows: list[list]) -> bytes:
    book = Workbook()
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def residents(filename: str, content: bytes):
    return validate_residents(read_table(filename, content, RESIDENT_COLUMNS), KNOWN, this_year=2026)


GOOD_CSV = ("姓名,手机号,楼栋,单元,房号,出生年份,户号,标记,邮箱\n"
            "王秀英,13800002001,b01,1,101,1940,H01,独居、高龄,\n"
            "李桂兰,+86 138 0000 2002,b09,,302,1985,,党员,li@example.cn\n")


def test_a_good_csv_with_chinese_headers_loads_every_row_normalised():
    good, rejected = residents("residents.csv", GOOD_CSV.encode("utf-8"))
    assert rejected == []
    assert [(r["name"], r["phone"], r["building"], r["room"]) for r in good] == [
        ("王秀英", "13800002001", "b01", "101"), ("李桂兰", "13800002002", "b09", "302")]
    assert good[0]["flags"] == ["lives_alone", "elderly"] and good[1]["flags"] == ["party_member"]
    assert good[0]["birth_year"] == 1940 and good[1]["email"] == "li@example.cn"


def test_a_gbk_csv_from_excel_on_windows_reads_the_same():
    good, rejected = residents("residents.csv", GOOD_CSV.encode("gbk"))
    assert rejected == [] and good[0]["name"] == "王秀英"


def test_english_headers_and_an_xlsx_with_numeric_cells():
    content = xlsx([["name", "phone", "building", "unit", "room", "birth_year"],
                    ["Zhang San", 13800002003, "b01", 2, 401, 1960], [None] * 6])
    good, rejected = residents("residents.xlsx", content)
    assert rejected == []
    assert (good[0]["phone"], good[0]["unit"], good[0]["room"], good[0]["birth_year"]) == (
        "13800002003", "2", "401", 1960)


def test_every_bad_row_is_reported_with_its_file_row_number_and_reasons_per_column():
    content = ("姓名,手机号,楼栋,单元,房号,出生年份,标记\n"
               "王秀英,13800002001,b01,1,101,1940,\n"       # row 2: good
               ",12345,b01,1,101,1940,\n"                    # row 3: no name, bad phone
               "赵六,13800002004,b77,1,101,1940,\n"         # row 4: unknown building
               "钱七,13800002005,b01,5,101,1940,\n"         # row 5: no unit 5 in b01
               "孙八,13800002006,b01,1,101,1850,富裕\n"     # row 6: year and flag
               "周九,13800002001,b01,2,201,1970,\n")        # row 7: phone of row 2
    good, rejected = residents("r.csv", content.encode("utf-8"))
    assert [r["row"] for r in good] == [2]
    reasons = {r["row"]: r["errors"] for r in rejected}
    assert sorted(reasons) == [3, 4, 5, 6, 7]
    assert set(reasons[3]) == {"name", "phone"}
    assert "no building b77" in reasons[4]["building"][0]
    assert "no unit 5" in reasons[5]["unit"][0]
    assert set(reasons[6]) == {"birth_year", "flags"} and "富裕" in reasons[6]["flags"][0]
    assert "row 2" in reasons[7]["phone"][0]


def test_place_rows_with_chinese_headers_and_a_building_in_two_grids():
    content = xlsx([["网格编号", "网格名称", "楼栋编号", "楼栋名称", "地址", "单元", "房号"],
                    ["g1", "第一网格", "b01", "1号楼", "兴乔小区1号楼", "1", "101 102、201"],
                    ["g1", "第一网格", "b01", "1号楼", "兴乔小区1号楼", "2", "101"],
                    ["g2", "第二网格", "b01", "1号楼", "", "3", ""],
                    ["G-2", "", "", "", "", "", ""]])
    good, rejected = validate_places(read_table("places.xlsx", content, PLACE_COLUMNS))
    assert [(r["row"], r["unit"], r["rooms"]) for r in good] == [(2, "1", ["101", "102", "201"]), (3, "2", ["101"])]
    assert [r["row"] for r in rejected] == [4, 5]
    assert "grid g1 on row 2" in rejected[0]["errors"]["building"][0]
    assert set(rejected[1]["errors"]) == {"grid", "building"}


@pytest.mark.parametrize("filename,content,message", [
    ("r.pdf", b"x", ".csv or .xlsx"),
    ("r.csv", b"", "empty"),
    ("r.csv", "颜色,大小\n红,大\n".encode(), "no known column"),
    ("r.xlsx", b"not a zip", "not a readable .xlsx"),
])
def test_unreadable_files_are_refused_whole(filename, content, message):
    with pytest.raises(UnreadableFile, match=message):
        read_table(filename, content, RESIDENT_COLUMNS)
