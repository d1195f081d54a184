"""docs/img/pci-data-flow.svg is the rendering of docs/pci/data-flow.md's Mermaid text: every
node's label and every edge's label of the text appears in the SVG's text. A changed
diagram whose image was not rendered again fails here (docs/pci/data-flow.md says how)."""

from __future__ import annotations

import html
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
SOURCE = DOCS / "pci" / "data-flow.md"
IMAGE = DOCS / "img" / "pci-data-flow.svg"


def _source() -> str:
    match = re.search(r"```mermaid\n(.*?)```", SOURCE.read_text(encoding="utf-8"), re.S)
    assert match is not None, "no mermaid block in data-flow.md"
    return match.group(1)


def _squeezed(text: str) -> str:
    """Without line breaks and whitespace (the renderer wraps labels into lines)."""
    return re.sub(r"\s+", "", re.sub(r"<br\s*/?>", "", text))


def _svg_text() -> str:
    svg = IMAGE.read_text(encoding="utf-8")
    assert "<foreignObject" not in svg  # plain SVG text, readable by any viewer
    texts = re.findall(r"<text\b[^>]*>(.*?)</text>", svg, re.S)
    return "\n".join(html.unescape(re.sub(r"<[^>]+>", "", t)) for t in texts)


def test_every_node_of_the_diagram_is_in_the_rendered_svg() -> None:
    source = _source()
    nodes = re.findall(r"^\s*(?:subgraph\s+)?(\w+)\[\"(.*?)\"\]", source, re.M)
    assert len(nodes) == 6, nodes  # Browser, Page, Form, Merchant, Paymux, Provider
    rendered = _squeezed(_svg_text())
    for node_id, label in nodes:
        assert _squeezed(label) in rendered, (node_id, label)


def test_every_edge_label_of_the_diagram_is_in_the_rendered_svg() -> None:
    labels = re.findall(r'--\s*"(.*?)"\s*-->|-\.\s*"(.*?)"\s*\.->', _source())
    found = [a or b for a, b in labels]
    assert len(found) >= 10, found
    rendered = _squeezed(_svg_text())
    for label in found:
        assert _squeezed(label) in rendered, label
