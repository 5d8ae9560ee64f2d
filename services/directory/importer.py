"""Imports of places and residents from CSV or Excel (.xlsx): every row validated, all or nothing.

A file is read into rows keyed by column (Chinese or English headers, see
:data:`PLACE_COLUMNS` and :data:`RESIDENT_COLUMNS`), each row is validated with
marshmallow and against the place tree, and the report lists every rejected
row with its number in the file (the header is row 1) and the reasons per
column. Writing is the service's business, and it writes nothing unless the
report has no rejected row.

>>> csv = "姓名,手机号,楼栋,单元,房号,出生年份\\n王五,13800001234,b01,1,101,1950\\n,123,b99,1,,3000\\n"
>>> rows = read_table("residents.csv", csv.encode("utf-8"), RESIDENT_COLUMNS)
>>> good, rejected = validate_residents(rows, known_buildings={"b01": {"1"}}, this_year=2026)
>>> [person["name"] for person in good], rejected[0]["row"], sorted(rejected[0]["errors"])
(['王五'], 3, ['birth_year', 'building', 'name', 'phone', 'room'])
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from datetime import date
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, pre_load, validate, validates

from services.directory.people import FLAGS, InvalidPhone, normalise_phone
from services.directory.places import CODE

MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 20000

# Column → the headers it is known by in offices' spreadsheets (compared without spaces, case-insensitive).
PLACE_COLUMNS: dict[str, tuple[str, ...]] = {
    "grid": ("grid", "grid_code", "网格编号", "网格代码", "网格"),
    "grid_name": ("grid_name", "网格名称"),
    "building": ("building", "building_code", "楼栋编号", "楼栋代码", "楼栋", "楼号"),
    "building_name": ("building_name", "楼栋名称"),
    "address": ("address", "地址", "楼栋地址"),
    "unit": ("unit", "单元"),
    "rooms": ("rooms", "房号", "房间", "户"),
}
RESIDENT_COLUMNS: dict[str, tuple[str, ...]] = {
    "name": ("name", "姓名"),
    "phone": ("phone", "mobile", "手机号", "手机号码", "手机", "联系电话", "电话"),
    "building": ("building", "building_code", "楼栋", "楼栋编号", "楼号"),
    "unit": ("unit", "单元"),
    "room": ("room", "房号", "门牌号", "房间"),
    "birth_year": ("birth_year", "出生年份", "出生年"),
    "household": ("household", "household_id", "户号", "户编号"),
    "flags": ("flags", "标记", "标签", "人员类别"),
    "email": ("email", "e-mail", "邮箱", "电子邮箱"),
    "wechat_openid": ("wechat_openid", "openid", "微信openid"),
}
# What an office writes in its flags column, beside the codes themselves.
FLAG_WORDS = {
    "独居": "lives_alone", "独居老人": "lives_alone", "老年人": "elderly", "高龄": "elderly", "老人": "elderly",
    "残疾": "disability", "残疾人": "disability", "居家隔离": "home_quarantine", "隔离": "home_quarantine",
    "低保": "low_income", "低保户": "low_income", "党员": "party_member",
}
_SEPARATORS = re.compile(r"[,，、;；/\s]+")


class UnreadableFile(ValueError):
    """A file that is not a CSV or .xlsx table this importer can read."""


def _header_key(text: Any) -> str:
    return re.sub(r"\s+", "", str(text or "")).lower()


def _column_of(columns: dict[str, tuple[str, ...]]) -> dict[str, str]:
    return {_header_key(alias): column for column, aliases in columns.items() for alias in aliases}


def read_table(filename: str, content: bytes, columns: dict[str, tuple[str, ...]]) -> list[tuple[int, dict]]:
    """The rows of a CSV or .xlsx file as (row number, {column: text}); blank rows are skipped.

    Unknown headers are ignored; a file none of whose headers is known is unreadable.
    """
    if len(content) > MAX_BYTES:
        raise UnreadableFile(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MB")
    lower = (filename or "").lower()
    if lower.endswith(".xlsx"):
        table = _xlsx_rows(content)
    elif lower.endswith(".csv") or lower.endswith(".txt"):
        table = _csv_rows(content)
    else:
        raise UnreadableFile("the file must be .csv or .xlsx")
    if not table:
        raise UnreadableFile("the file is empty")
    known = _column_of(columns)
    header = [known.get(_header_key(cell)) for cell in table[0]]
    if not any(header):
        raise UnreadableFile("no known column in the header row; expected some of: "
                             + ", ".join(aliases[0] for aliases in columns.values()))
    rows = []
    for number, cells in enumerate(table[1:], start=2):
        values = {column: _text(cell) for column, cell in zip(header, cells, strict=False) if column}
        if any(values.values()):
            rows.append((number, values))
    if len(rows) > MAX_ROWS:
        raise UnreadableFile(f"the file has more than {MAX_ROWS} rows")
    return rows


def _text(cell: Any) -> str:
    """A cell as text: Excel gives numbers (a phone, a room, a year) as int or float."""
    if cell is None:
        return ""
    if isinstance(cell, float) and cell.is_integer():
        cell = int(cell)
    return str(cell).strip()


def _csv_rows(content: bytes) -> list[list[str]]:
    # Excel on a Chinese Windows saves CSV in GBK; everything else is UTF-8 (perhaps with a BOM).
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = content.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - gb18030 decodes any byte string
        raise UnreadableFile("the CSV file is neither UTF-8 nor GBK")
    return [row for row in csv.reader(io.StringIO(text))]


def _xlsx_rows(content: bytes) -> list[list[Any]]:
    from openpyxl import load_workbook  # only imports of spreadsheets pay for it

    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises several kinds for a file that is not a workbook
        raise UnreadableFile(f"not a readable .xlsx workbook ({type(error).__name__})") from error
    try:
        sheet = workbook.worksheets[0]
        return [list(row) for row in sheet.iter_rows(values_only=True)]
    finally:
        workbook.close()


# --- row schemas -----------------------------------------------------------------------------------

class _Row(Schema):
    class Meta:
        unknown = EXCLUDE

    @pre_load
    def _blank_is_missing(self, data: dict, **kwargs: Any) -> dict:
        return {key: value for key, value in data.items() if value not in ("", None)}


class PlaceRowSchema(_Row):
    grid = fields.String(required=True, validate=validate.Regexp(CODE, error="a grid code like g3"))
    grid_name = fields.String(load_default="", validate=validate.Length(max=64))
    building = fields.String(required=True, validate=validate.Regexp(CODE, error="a building code like b03"))
    building_name = fields.String(load_default="", validate=validate.Length(max=64))
    address = fields.String(load_default="", validate=validate.Length(max=200))
    unit = fields.String(load_default="", validate=validate.Length(max=16))
    rooms = fields.String(load_default="", validate=validate.Length(max=2000))

    @post_load
    def _split_rooms(self, data: dict, **kwargs: Any) -> dict:
        data["rooms"] = [room for room in _SEPARATORS.split(data["rooms"]) if room]
        return data


class ResidentRowSchema(_Row):
    name = fields.String(required=True, validate=validate.Length(min=1, max=32))
    phone = fields.String(required=True)
    building = fields.String(required=True, validate=validate.Regexp(CODE, error="a building code like b03"))
    unit = fields.String(load_default="", validate=validate.Length(max=16))
    room = fields.String(required=True, validate=validate.Length(min=1, max=16))
    birth_year = fields.Integer(load_default=None, allow_none=True)
    household = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=32))
    flags = fields.String(load_default="")
    email = fields.Email(load_default=None, allow_none=True)
    wechat_openid = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=6, max=64))

    @validates("phone")
    def _mainland_mobile(self, value: str, **kwargs: Any) -> None:
        try:
            normalise_phone(value)
        except InvalidPhone as error:
            raise ValidationError("not a mainland mobile number (1[3-9] and 9 more digits)") from error

    @validates("flags")
    def _known_flags(self, value: str, **kwargs: Any) -> None:
        unknown = [word for word in _SEPARATORS.split(value) if word and _flag(word) is None]
        if unknown:
            raise ValidationError(f"unknown flags {', '.join(unknown)}; known: {', '.join(FLAGS)}")

    @post_load
    def _normalise(self, data: dict, **kwargs: Any) -> dict:
        data["phone"] = normalise_phone(data["phone"])
        data["flags"] = list(dict.fromkeys(_flag(word) for word in _SEPARATORS.split(data["flags"]) if word))
        return data


def _flag(word: str) -> str | None:
    return word if word in FLAGS else FLAG_WORDS.get(word)


_PLACE_ROW, _RESIDENT_ROW = PlaceRowSchema(), ResidentRowSchema()


def validate_places(rows: Iterable[tuple[int, dict]]) -> tuple[list[dict], list[dict]]:
    """The valid place rows and the rejected ones (``{"row", "errors"}``).

    A building listed under two grids in one file is rejected where it changes grid.

    >>> rows = [(2, {"grid": "g1", "building": "b01", "unit": "1", "rooms": "101 102"}),
    ...         (3, {"grid": "g2", "building": "b01"}), (4, {"grid": "G 1", "building": "b02"})]
    >>> good, rejected = validate_places(rows)
    >>> good[0]["rooms"], [(r["row"], sorted(r["errors"])) for r in rejected]
    (['101', '102'], [(3, ['building']), (4, ['grid'])])
    """
    good, rejected, grid_of = [], [], {}
    for number, values in rows:
        try:
            row = _PLACE_ROW.load(values)
        except ValidationError as error:
            rejected.append({"row": number, "errors": error.normalized_messages()})
            continue
        first = grid_of.setdefault(row["building"], (row["grid"], number))
        if first[0] != row["grid"]:
            rejected.append({"row": number, "errors": {"building": [
                f"{row['building']} is in grid {first[0]} on row {first[1]}: a building has one grid"]}})
            continue
        good.append({**row, "row": number})
    return good, rejected


def validate_residents(rows: Iterable[tuple[int, dict]], known_buildings: dict[str, set[str]],
                       this_year: int | None = None) -> tuple[list[dict], list[dict]]:
    """The valid resident rows and the rejected ones, checked against the community's buildings and units.

    ``known_buildings`` maps each building code to its unit codes (empty: units not recorded).
    The same phone twice in one file is rejected on its second row.
    """
    this_year = this_year or date.today().year
    good, rejected, phones = [], [], {}
    for number, values in rows:
        errors: dict[str, list[str]] = {}
        try:
            row = _RESIDENT_ROW.load(values)
        except ValidationError as error:
            errors = error.normalized_messages()
            row = None
        building = values.get("building", "")
        if building and "building" not in errors and building not in known_buildings:
            errors["building"] = [f"no building {building} in this community"]
        elif row is not None and row["unit"] and known_buildings.get(building) and \
                row["unit"] not in known_buildings[building]:
            errors["unit"] = [f"building {building} has no unit {row['unit']}"]
        year = values.get("birth_year", "")
        if year and not (year.isdigit() and 1900 <= int(year) <= this_year):
            errors["birth_year"] = [f"a year between 1900 and {this_year}"]
        if row is not None and not errors:
            earlier = phones.setdefault(row["phone"], number)
            if earlier != number:
                errors["phone"] = [f"the same phone as row {earlier}"]
        if errors:
            rejected.append({"row": number, "errors": errors})
        else:
            good.append({**row, "row": number})
    return good, rejected
