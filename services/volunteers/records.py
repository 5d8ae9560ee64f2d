"""A volunteer's service record for a period, as rows, CSV and PDF (reportlab, with an embedded CJK font).

The PDF embeds a TrueType CJK font so that names and task titles show on any reader: WenQuanYi Zen Hei
from Debian's ``fonts-wqy-zenhei`` (``HUISHENG_PDF_FONT`` names another ``.ttf``/``.ttc``). reportlab cannot
embed CFF-flavoured OpenType (Noto CJK's ``.ttc`` is), hence a TrueType one.

>>> record = {"volunteer": {"id": "p1", "name": "李四"}, "from": "2026-12-01", "to": "2026-12-31",
...           "tasks": [{"id": "t1", "subject": "ticket", "title": "下水道堵塞", "date": "2026-12-05",
...                      "minutes": 90, "auto_closed": False, "rating": 5}],
...           "entries": [], "totals": {"credit_minutes": 90, "manual_minutes": 0, "total_minutes": 90},
...           "ratings": {"count": 1, "average": 5.0}}
>>> print(to_csv(record).splitlines()[1])
task,t1,2026-12-05,ticket,下水道堵塞,90,credit,,5
"""

from __future__ import annotations

import csv
import io
import os
from functools import cache

FONT_NAME = "HuishengCJK"
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
)
CSV_HEADER = ("kind", "id", "date", "subject", "title", "minutes", "hours_kind", "reason", "rating")


class NoFont(RuntimeError):
    """No CJK TrueType font is installed: install fonts-wqy-zenhei or set HUISHENG_PDF_FONT."""


def to_csv(record: dict) -> str:
    """One line per task and per manual entry or correction, then the totals (UTF-8 with a BOM for Excel)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for task in record["tasks"]:
        writer.writerow(("task", task["id"], task["date"], task["subject"], task["title"], task["minutes"],
                         "credit", "auto_closed" if task["auto_closed"] else "", task.get("rating") or ""))
    for entry in record["entries"]:
        writer.writerow((entry["kind"], entry["id"], entry["date"], "", entry.get("target") or "", entry["minutes"],
                         entry["hours_kind"], entry["reason"], ""))
    totals = record["totals"]
    writer.writerow(("total", "", "", "", "credit", totals["credit_minutes"], "credit", "", ""))
    writer.writerow(("total", "", "", "", "manual", totals["manual_minutes"], "manual", "", ""))
    return out.getvalue()


def font_path(wanted: str | None = None) -> str:
    """The CJK font to embed: ``wanted`` (Settings.pdf_font, HUISHENG_PDF_FONT) or the first installed candidate."""
    for path in ((wanted,) if wanted else FONT_CANDIDATES):
        if path and os.path.exists(path):
            return path
    raise NoFont("no CJK TrueType font found (apt-get install fonts-wqy-zenhei, or set HUISHENG_PDF_FONT)")


@cache
def _register_font(path: str) -> str:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    pdfmetrics.registerFont(TTFont(FONT_NAME, path, subfontIndex=0))
    return FONT_NAME


def _hours(minutes: int) -> str:
    return f"{minutes / 60:.1f}"


def to_pdf(record: dict, community_name: str = "", font: str | None = None) -> bytes:
    """The record as an A4 PDF: who, the period, the totals (credit and manual apart), then each task and entry."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    font = _register_font(font_path(font))
    title = ParagraphStyle("title", fontName=font, fontSize=16, leading=22)
    body = ParagraphStyle("body", fontName=font, fontSize=10, leading=14)
    volunteer, totals, ratings = record["volunteer"], record["totals"], record["ratings"]
    story = [
        Paragraph(f"{community_name}志愿服务记录", title),
        Spacer(1, 4 * mm),
        Paragraph(f"志愿者：{volunteer.get('name') or volunteer['id']}（编号 {volunteer['id']}）", body),
        Paragraph(f"期间：{record['from']} 至 {record['to']}", body),
        Paragraph(f"服务时长：{_hours(totals['total_minutes'])} 小时（签到签退 {_hours(totals['credit_minutes'])}"
                  f" 小时，补录 {_hours(totals['manual_minutes'])} 小时）", body),
        Paragraph(f"服务次数：{len(record['tasks'])}；评价：{ratings['count']} 次，"
                  f"平均 {ratings['average'] if ratings['average'] is not None else '—'} 分", body),
        Spacer(1, 4 * mm),
    ]
    rows = [["日期", "类型", "内容", "时长（小时）", "评分"]]
    for task in record["tasks"]:
        kind = "微心愿" if task["subject"] == "wish" else "诉求"
        note = "（自动签退）" if task["auto_closed"] else ""
        rows.append([task["date"], kind, f"{task['title']}{note}", _hours(task["minutes"]),
                     str(task.get("rating") or "")])
    for entry in record["entries"]:
        kind = "补录" if entry["kind"] == "manual" else "更正"
        rows.append([entry["date"], kind, entry["reason"], _hours(entry["minutes"]), ""])
    table = Table(rows, colWidths=[25 * mm, 18 * mm, 85 * mm, 25 * mm, 15 * mm], repeatRows=1)
    table.setStyle(TableStyle([
        ("FONTNAME", (0, 0), (-1, -1), font), ("FONTSIZE", (0, 0), (-1, -1), 9),
        ("GRID", (0, 0), (-1, -1), 0.5, colors.grey), ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke),
    ]))
    story.append(table)
    out = io.BytesIO()
    SimpleDocTemplate(out, pagesize=A4, title="志愿服务记录", author="回声 Huisheng").build(story)
    return out.getvalue()
