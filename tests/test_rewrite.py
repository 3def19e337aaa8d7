"""Rule-based caption rewriting."""

import pytest

from opensearch_cir.compose.rewrite import is_colour, rewrite_caption

TITLE = "Puma Men's Toe Crusher Black T-shirt"


@pytest.mark.parametrize(
    "modification, expected",
    [
        ("in navy blue instead", "Puma Men's Toe Crusher navy blue T-shirt"),
        ("replace black with navy blue", "Puma Men's Toe Crusher navy blue T-shirt"),
        ("same but in red", "Puma Men's Toe Crusher red T-shirt"),
        ("make it red", "Puma Men's Toe Crusher red T-shirt"),
        ("change the colour to green", "Puma Men's Toe Crusher green T-shirt"),
        ("make it a shirt", "Puma Men's Toe Crusher Black shirt"),
        ("I want a polo instead", "Puma Men's Toe Crusher Black polo"),
        ("change black to white", "Puma Men's Toe Crusher white T-shirt"),
        ("white instead of black", "Puma Men's Toe Crusher white T-shirt"),
        ("for women", "Puma women Toe Crusher Black T-shirt"),
        ("the women's version", "Puma women Toe Crusher Black T-shirt"),
        ("for sports", "Puma Men's Toe Crusher Black T-shirt for sports"),
        ("a sports version", "Puma Men's Toe Crusher Black T-shirt sports"),
        ("for everyone, unisex", "Puma unisex Toe Crusher Black T-shirt for everyone"),
    ],
)
def test_rewrites_product_title(modification, expected):
    assert rewrite_caption(TITLE, modification).text == expected


def test_without_removes_and_records_negative():
    result = rewrite_caption("a man in a black jacket with a hood", "without a hood")
    assert result.text == "a man in a black jacket"
    assert result.negatives == ["hood"]
    assert result.rules == ["remove"]


def test_several_clauses_and_fallback():
    result = rewrite_caption("Femella Women Pink Leggings", "make it red and add pockets, shiny")
    assert result.text == "Femella Women red Leggings with pockets shiny"
    assert result.rules == ["change", "add", "append"]


def test_colour_inserted_before_head_noun_when_caption_has_none():
    assert rewrite_caption("a dog on the grass", "in brown").text == "a dog on the brown grass"


def test_replace_of_absent_word_still_applies_target():
    assert rewrite_caption("Adrika Green Earrings", "replace the silver with gold").text == "Adrika gold Earrings"


def test_multi_word_nouns_replace_their_modifiers():
    assert rewrite_caption("Franco Leone Men Black Formal Shoes", "change it to casual shoes").text == \
        "Franco Leone Men Black casual shoes"
    assert rewrite_caption("Nike Black sling Duffle Bags", "replace the duffel bag with a trolley bag").text == \
        "Nike Black sling trolley bag"


def test_is_colour():
    assert is_colour("Navy Blue") and not is_colour("shirt")
