"""The dashboard's SVG charts (paymux.dashboard.charts): accessible names, exact geometry for a
known input, labels as text (readable without JavaScript and in print), escaping, the empty
case. Expected coordinates are worked out by hand from the stated layout: a 640 x 260 plot
area with margins left 72, right 16, top 16, bottom 40 (so 552 wide and 204 high)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from paymux.dashboard.charts import Series, bar_chart, line_chart, nice_ticks

NS = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def texts(root: ET.Element, group: str) -> list[str]:
    g = root.find(f"{NS}g[@class='{group}']")
    assert g is not None, group
    return [t.text or "" for t in g.iter(f"{NS}text")]


def test_nice_ticks_are_a_1_2_5_step_from_zero_covering_the_top() -> None:
    assert nice_ticks(0) == [0, 1]
    assert nice_ticks(5) == [0, 1, 2, 3, 4, 5]
    assert nice_ticks(7) == [0, 2, 4, 6, 8]
    assert nice_ticks(100) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(101) == [0, 50, 100, 150]
    assert nice_ticks(930) == [0, 200, 400, 600, 800, 1000]


def test_a_line_chart_is_an_image_named_by_its_title_and_description() -> None:
    svg = line_chart(
        title="Volume, USD",
        desc="Succeeded payments per day",
        x_labels=["a", "b", "c"],
        series=[Series("USD", [0, 50, 100])],
    )
    root = parse(svg)
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "volume--usd-title volume--usd-desc"
    title = root.find(f"{NS}title")
    desc = root.find(f"{NS}desc")
    assert title is not None and title.text == "Volume, USD"
    assert title.get("id") == "volume--usd-title"
    assert desc is not None and desc.text == "Succeeded payments per day"
    assert desc.get("id") == "volume--usd-desc"
    assert "style=" not in svg and "<script" not in svg


def test_a_line_chart_places_its_points_and_prints_its_ticks_and_labels() -> None:
    svg = line_chart(
        title="t",
        desc="d",
        x_labels=["Mon", "Tue", "Wed"],
        series=[Series("Payments", [0, 50, 100])],
        fmt=lambda v: f"{v} p",
    )
    root = parse(svg)
    polyline = root.find(f".//{NS}polyline")
    assert polyline is not None
    # x: 72, 72 + 552/2, 72 + 552; y: 16 + 204 - 204 * v / 100
    assert polyline.get("points") == "72.0,220.0 348.0,118.0 624.0,16.0"
    assert texts(root, "y-axis") == ["0 p", "20 p", "40 p", "60 p", "80 p", "100 p"]
    assert texts(root, "x-axis") == ["Mon", "Tue", "Wed"]
    assert texts(root, "legend") == ["Payments"]
    tips = [t.text for t in root.iter(f"{NS}title")][1:]
    assert tips == ["Payments, Mon: 0 p", "Payments, Tue: 50 p", "Payments, Wed: 100 p"]


def test_each_series_has_its_own_colour_and_dash_so_print_tells_them_apart() -> None:
    svg = line_chart(
        title="t",
        desc="d",
        x_labels=["1", "2"],
        series=[Series("USD", [1, 2]), Series("EUR", [2, 1])],
    )
    lines = parse(svg).findall(f".//{NS}polyline")
    assert len(lines) == 2
    assert lines[0].get("stroke") != lines[1].get("stroke")
    assert lines[0].get("stroke-dasharray") is None
    assert lines[1].get("stroke-dasharray") == "6 3"


def test_many_x_labels_are_thinned_to_eight_keeping_first_and_last() -> None:
    labels = [f"d{i}" for i in range(30)]
    svg = line_chart(title="t", desc="d", x_labels=labels, series=[Series("s", list(range(30)))])
    shown = texts(parse(svg), "x-axis")
    assert shown == ["d0", "d5", "d10", "d15", "d20", "d25", "d29"]
    # every point is still drawn, each with its exact value
    assert len(parse(svg).findall(f".//{NS}circle")) == 30


def test_text_is_escaped() -> None:
    svg = line_chart(title="<b>&", desc='"x"', x_labels=["<a>"], series=[Series("<s>", [3])])
    root = parse(svg)  # well-formed XML: nothing leaked unescaped
    assert root.find(f"{NS}title") is not None
    assert "<b>" not in svg and "<s>" not in svg and "&lt;a&gt;" in svg


def test_an_empty_chart_says_so() -> None:
    svg = line_chart(title="t", desc="d", x_labels=[], series=[])
    assert [t.text for t in parse(svg).iter(f"{NS}text")] == ["No data for this period"]
    svg = bar_chart(title="b", desc="d", bars=[])
    assert [t.text for t in parse(svg).iter(f"{NS}text")] == ["No data for this period"]


def test_a_series_without_one_value_per_label_is_refused() -> None:
    with pytest.raises(ValueError, match="has 1 values for 2 labels"):
        line_chart(title="t", desc="d", x_labels=["a", "b"], series=[Series("s", [1])])


def test_bars_are_scaled_to_the_largest_and_print_their_values() -> None:
    svg = bar_chart(
        title="Declines by reason",
        desc="d",
        bars=[("insufficient_funds", 4), ("expired_card", 2), ("zero", 0)],
    )
    root = parse(svg)
    rects = root.findall(f".//{NS}rect")
    # room for bars: 640 - 180 (labels) - 16 (right margin) - 90 (value text) = 354
    assert [r.get("width") for r in rects] == ["354.0", "177.0", "0.0"]
    assert [r.get("x") for r in rects] == ["180", "180", "180"]
    shown = [t.text for t in root.iter(f"{NS}text")]
    assert shown == ["insufficient_funds", "4", "expired_card", "2", "zero", "0"]
    assert [t.text for t in root.iter(f"{NS}title")][1:] == [
        "insufficient_funds: 4",
        "expired_card: 2",
        "zero: 0",
    ]
