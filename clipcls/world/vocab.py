"""The world's words: every name and synonym a caption can use, in one place.

Why one place: the caption writer draws its words from here and the word-level tokenizer is
built from here, so a caption can never hold a word the tokenizer does not know, and the
downstream task's descriptions can be checked against the same list.
"""

from __future__ import annotations

import re

# Colour name -> (hue, saturation, value) of its typical shade.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.0, 0.75, 0.75),
    "orange": (0.07, 0.8, 0.9),
    "yellow": (0.15, 0.75, 0.9),
    "green": (0.33, 0.65, 0.6),
    "blue": (0.6, 0.7, 0.75),
    "purple": (0.78, 0.55, 0.6),
    "pink": (0.93, 0.4, 0.9),
    "brown": (0.08, 0.65, 0.45),
    "white": (0.0, 0.0, 0.96),
    "grey": (0.0, 0.0, 0.55),
    "black": (0.0, 0.0, 0.08),
}

# Material -> the nouns that name it in a caption.
MATERIALS: dict[str, tuple[str, ...]] = {
    "wallpaper": ("wallpaper", "wall paper", "papered wall"),
    "painted wall": ("painted wall", "painted plaster", "wall paint"),
    "steel": ("steel", "metal sheet", "steel plate"),
    "tile": ("tiles", "tiled wall", "ceramic tiles"),
    "wood": ("wood", "wooden board", "timber"),
    "fabric": ("fabric", "cloth", "woven fabric"),
    "concrete": ("concrete", "concrete wall", "cement"),
}

# Surface pattern -> its adjectives ("plain" is often left unsaid).
PATTERN_WORDS: dict[str, tuple[str, ...]] = {
    "plain": ("plain", "unpatterned"),
    "striped": ("striped", "stripy"),
    "dotted": ("dotted", "polka dot"),
    "checked": ("checked", "chequered"),
    "floral": ("floral", "ornamental"),
}

LIGHTING_WORDS: dict[str, tuple[str, ...]] = {
    "even": ("in even light", "evenly lit"),
    "dim": ("in dim light", "in poor light", "in low light"),
    "bright": ("in bright light", "brightly lit"),
    "uneven": ("with a shadow on one side", "in uneven light", "lit from one side"),
}

# Mark kind -> (singular nouns, plural nouns). "none" is the clean surface.
MARK_NOUNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "spots": (("spot", "dot", "speck"), ("spots", "dots", "specks")),
    "cluster": (("cluster of specks", "patch of speckles", "colony of tiny spots"),) * 2,
    "stain": (("stain", "blotch", "discoloured patch"), ("stains", "blotches")),
    "blob": (("blob of paint", "paint splash", "splodge"), ("blobs of paint", "paint splashes")),
    "line": (("line", "streak", "drawn line"), ("lines", "streaks", "drawn lines")),
    "crack": (("crack", "hairline crack", "fracture"), ("cracks", "fractures")),
    "scratch": (("scratch", "scrape"), ("scratches", "scrapes", "scratch marks")),
    "tear": (("tear", "rip", "torn gap"), ("tears", "rips")),
    "seam": (("seam", "joint", "seam gap"), ("seams", "joints")),
    "hole": (("hole", "puncture", "small opening"), ("holes", "punctures")),
    "bubble": (("bubble", "blister", "raised bump"), ("bubbles", "blisters", "raised bumps")),
    "dent": (("dent", "dimple", "pressed hollow"), ("dents", "dimples")),
    "rust": (("rust patch", "patch of rust", "corrosion"), ("rust patches",)),
}
MARK_KINDS: tuple[str, ...] = ("none", *MARK_NOUNS)

NO_MARK_PHRASES: tuple[str, ...] = (
    "no marks",
    "no defects",
    "nothing on it",
    "a clean surface",
    "no damage",
)
# Count -> words; counts above 3 are "several", above 6 "many".
COUNT_WORDS: dict[str, tuple[str, ...]] = {
    "1": ("a", "one", "a single"),
    "2": ("two", "a pair of"),
    "3": ("three",),
    "several": ("several", "a few", "some"),
    "many": ("many", "lots of", "dozens of", "numerous"),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "large": ("large", "big", "wide"),
    "short": ("short",),
    "long": ("long",),
}
SHADE_WORDS: dict[str, tuple[str, ...]] = {"dark": ("dark", "deep"), "light": ("light", "pale")}
DENSITY_WORDS: dict[str, tuple[str, ...]] = {
    "sparse": ("sparse", "loose", "scattered"),
    "dense": ("dense", "thick", "crowded"),
}
ORIENTATION_WORDS: dict[str, tuple[str, ...]] = {
    "vertical": ("vertical", "upright"),
    "horizontal": ("horizontal", "level"),
    "diagonal": ("diagonal", "slanted"),
}
# Position on a 3x3 grid, as (row, column) -> phrases.
POSITION_WORDS: dict[str, tuple[str, ...]] = {
    "top left": ("in the top left corner", "at the top left"),
    "top": ("at the top", "near the top edge"),
    "top right": ("in the top right corner", "at the top right"),
    "left": ("on the left", "on the left side"),
    "centre": ("in the centre", "in the middle"),
    "right": ("on the right", "on the right side"),
    "bottom left": ("in the bottom left corner", "at the bottom left"),
    "bottom": ("at the bottom", "near the bottom edge"),
    "bottom right": ("in the bottom right corner", "at the bottom right"),
}
POSITIONS: tuple[str, ...] = tuple(POSITION_WORDS)

# Sentence frames: {surface} and {marks} are filled in by captions.py.
TEMPLATES: tuple[str, ...] = (
    "a photo of {surface} with {marks}",
    "a close-up photo of {surface} with {marks}",
    "{marks} on {surface}",
    "a picture of {marks} on {surface}",
    "{surface} showing {marks}",
    "a close-up of {surface} that has {marks}",
    "there is {marks} on the {surface}",
    "an image of {surface} with {marks}",
    "{surface} , {marks}",
    "a surface of {surface} with {marks}",
)
GLUE_WORDS = "a an the of with and on in is it which are there".split()
# Words a caption says only rarely (RARE_SAY of the chances): in the vocabulary, so a task's
# descriptions can use them, but barely trained, as the words that separate a new task's classes
# often are. "faint" is a rare synonym of the light shade; the rest come from RARE_TEMPLATES.
RARE_SHADE_WORDS: dict[str, tuple[str, ...]] = {"light": ("faint",)}
RARE_TEMPLATES: tuple[str, ...] = (
    "{marks} all along the {surface}",
    "{surface} with {marks} around its edge",
)


def _all_phrases() -> list[str]:
    """Every string a caption or description may be built from."""
    phrases: list[str] = [*COLOURS, *TEMPLATES, *RARE_TEMPLATES, *GLUE_WORDS, *NO_MARK_PHRASES]
    for table in (
        MATERIALS,
        PATTERN_WORDS,
        LIGHTING_WORDS,
        COUNT_WORDS,
        SIZE_WORDS,
        SHADE_WORDS,
        RARE_SHADE_WORDS,
        DENSITY_WORDS,
        ORIENTATION_WORDS,
        POSITION_WORDS,
    ):
        for words in table.values():
            phrases.extend(words)
    for singular, plural in MARK_NOUNS.values():
        phrases.extend([*singular, *plural])
    return phrases


def words(text: str) -> list[str]:
    """Split text the way the tokenizer does: lowercase words and single punctuation marks."""
    return re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text.lower())


def vocabulary() -> list[str]:
    """The sorted word list of the world (template slots such as `{surface}` removed)."""
    found: set[str] = set()
    for phrase in _all_phrases():
        found.update(words(re.sub(r"\{\w+\}", " ", phrase)))
    return sorted(found)
