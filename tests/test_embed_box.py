"""The placeholder's size from a blocked iframe's attributes and style (html.embedsize): values and sanitising."""

from __future__ import annotations

import pytest

from consentproxy.html.embedsize import embed_box


@pytest.mark.parametrize(("width", "height", "style", "frameborder", "expected"), [
    ("560", "315", None, "0", "width:560px;height:315px;border-width:0"),
    ("560", "315", None, None, "width:560px;height:315px;border-width:2px"),
    (" 560px ", "315.5", None, "no", "width:560px;height:315.5px;border-width:0"),
    ("100%", "100%", None, "0", "width:100%;height:100%;border-width:0"),
    ("560", None, None, "0", "width:560px;height:150px;border-width:0"),  # the iframe's default height
    ("560", "315", "width: 480px; HEIGHT:270px !important", "0", "width:480px;height:270px;border-width:0"),
    (None, None, "width:100%;aspect-ratio: 16 / 9", "0", "width:100%;height:auto;border-width:0;aspect-ratio:16/9"),
    (None, None, "aspect-ratio:2", None, "width:300px;height:auto;border-width:2px;aspect-ratio:2/1"),
    (None, None, "height:200px;aspect-ratio:4/3", None, "width:auto;height:200px;border-width:2px;aspect-ratio:4/3"),
    (None, None, None, None, ""),  # no size: 16:9 of the container (banner.css)
    ("0", "", "border:0", None, ""),
])
def test_the_box_follows_the_iframes_own_size(width: str | None, height: str | None, style: str | None,
                                              frameborder: str | None, expected: str) -> None:
    assert embed_box(width, height, style, frameborder) == expected


def test_only_numbers_and_units_reach_the_style_attribute() -> None:
    hostile = embed_box('560";background:url(//evil)', "315px;color:red",
                        "width:calc(1px);height:expression(alert(1));aspect-ratio:1/0;width:1e9px", None)
    assert hostile == "width:560px;height:315px;border-width:2px"
    assert embed_box(None, None, "width:100px</style><script>;height:5px", None) == (
        "width:300px;height:5px;border-width:2px")
