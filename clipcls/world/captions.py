"""Writing a caption for a `Scene`: a random template, random synonyms, random attribute subset.

Why so much randomness: with one fixed sentence per scene the text tower could learn template
ids instead of words. Each attribute is said with some probability and in a random synonym, so
every word has to carry its own meaning (and one picture gets many true captions).
"""

from __future__ import annotations

import numpy as np

from clipcls.world.scene import Mark, Scene
from clipcls.world.vocab import (
    COUNT_WORDS,
    DENSITY_WORDS,
    LIGHTING_WORDS,
    MARK_NOUNS,
    MATERIALS,
    NO_MARK_PHRASES,
    ORIENTATION_WORDS,
    PATTERN_WORDS,
    POSITION_WORDS,
    RARE_SHADE_WORDS,
    RARE_TEMPLATES,
    SHADE_WORDS,
    SIZE_WORDS,
    TEMPLATES,
)

SAY = 0.7  # chance that an optional attribute is put into words
RARE_SAY = 0.03  # chance that a rare word or template (vocab.RARE_*) is used where it could be


def _one(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _count_key(count: int) -> str:
    return str(count) if count <= 3 else ("several" if count <= 6 else "many")


def surface_phrase(scene: Scene, rng: np.random.Generator) -> str:
    """'pale blue striped wallpaper in dim light', with each part said or not."""
    parts = []
    if rng.random() < SAY:
        parts.append(scene.colour)
    if scene.pattern != "plain" or rng.random() < 0.2:
        if rng.random() < SAY:
            parts.append(_one(rng, PATTERN_WORDS[scene.pattern]))
    parts.append(_one(rng, MATERIALS[scene.material]))
    if scene.lighting != "even" and rng.random() < SAY:
        parts.append(_one(rng, LIGHTING_WORDS[scene.lighting]))
    return " ".join(parts)


def mark_phrase(mark: Mark | None, rng: np.random.Generator) -> str:
    """'three small dark red spots in the top left corner', with each attribute said or not."""
    if mark is None:
        return _one(rng, NO_MARK_PHRASES)
    singular, plural = MARK_NOUNS[mark.kind]
    words = [_one(rng, COUNT_WORDS[_count_key(mark.count)])]
    optional = [
        (mark.density, DENSITY_WORDS),
        (mark.size, SIZE_WORDS),
        (mark.shade, SHADE_WORDS),
    ]
    words += [_one(rng, table[value]) for value, table in optional if value is not None and rng.random() < SAY]
    if mark.shade in RARE_SHADE_WORDS and rng.random() < RARE_SAY:
        words.append(_one(rng, RARE_SHADE_WORDS[mark.shade]))
    if mark.colour is not None and rng.random() < SAY:
        words.append(mark.colour)
    if mark.orientation is not None and rng.random() < SAY:
        words.append(_one(rng, ORIENTATION_WORDS[mark.orientation]))
    words.append(_one(rng, singular if mark.count == 1 else plural))
    if mark.position is not None and rng.random() < SAY:
        words.append(_one(rng, POSITION_WORDS[mark.position]))
    phrase = " ".join(words)
    return phrase.replace("a a", "an a").replace("a o", "an o")  # "an orange", "an upright"


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """One true caption of `scene`; another `rng` state gives another wording."""
    template = _one(rng, RARE_TEMPLATES if rng.random() < RARE_SAY else TEMPLATES)
    return template.format(surface=surface_phrase(scene, rng), marks=mark_phrase(scene.mark, rng))
