"""Deterministic generator of demo enterprises (no database access).

The parameters live in ``seeds/data/enterprises.yaml``. Enterprise number ``i`` (1-based) draws from
its own random streams seeded with ``(seed, i)``: the same ``i`` always gives the same enterprise,
whatever the total, so a larger count only adds enterprises. Credit codes are valid per
GB 32100-2015 (built with :func:`service.enterprises.uscc.make_uscc`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from faker import Faker

from service.enterprises.models import ENTERPRISE_TAGS
from service.enterprises.uscc import ALPHABET, make_uscc


@dataclass(frozen=True)
class GridInfo:
    """What the generator needs to know about a grid."""

    code: str
    region_code: str
    region_name: str
    region_kind: str


@dataclass
class EnterpriseSeed:
    """One generated enterprise; ``grid`` is a grid code (the loader resolves ids and the officer)."""

    number: int
    uscc: str
    name: str
    industry: str
    grid: str
    tags: list[str] = field(default_factory=list)
    contact_name: str = ""
    contact_phone: str = ""
    address: str = ""
    #: only where the data exists (``pinned`` in enterprises.yaml): WGS 84 degrees, an e-mail address
    latitude: float | None = None
    longitude: float | None = None
    contact_email: str | None = None


_PINNABLE = {"name", "industry", "grid", "tags", "contact_name", "contact_phone", "address",
             "latitude", "longitude", "contact_email"}


def county_short_name(name: str) -> str:
    """``青禾县`` -> ``青禾`` (drops a trailing 县/市/区 when something is left)."""
    return name[:-1] if len(name) > 2 and name[-1] in "县市区" else name


def generate_enterprises(
    spec: Mapping[str, Any],
    grids: Sequence[GridInfo],
    county_code: str,
    county_name: str,
    count: int,
) -> list[EnterpriseSeed]:
    """Generate enterprises ``1..count``.

    Args:
        spec: the parsed ``enterprises.yaml`` (seed, tags, tag_implies, legal_forms, brand_characters,
            name_patterns, streets, industries, region_industries, park_weight, pinned).
        grids: the grids enterprises are spread over (weighted: park grids count ``park_weight``).
        county_code: 6-digit division code used in every credit code.
        county_name: e.g. ``青禾县``; used in names (``{place}``) and addresses.
        count: how many enterprises.

    Returns:
        A list of :class:`EnterpriseSeed`, numbers 1..count, unique names and credit codes.
    """
    if not grids:
        raise ValueError("no grids to place enterprises in")
    seed = int(spec["seed"])
    industries: dict[str, list[str]] = {k: list(v) for k, v in spec["industries"].items()}
    region_industries: dict[str, list[str]] = {
        str(k): list(v) for k, v in (spec.get("region_industries") or {}).items()
    }
    tag_probability: dict[str, float] = dict(spec.get("tags") or {})
    tag_implies: dict[str, list[str]] = {k: list(v) for k, v in (spec.get("tag_implies") or {}).items()}
    unknown = (set(tag_probability) | set(tag_implies) | {t for v in tag_implies.values() for t in v}) \
        - set(ENTERPRISE_TAGS)
    if unknown:
        raise ValueError(f"enterprises.yaml: unknown tags {sorted(unknown)}")
    legal_forms: list[str] = list(spec["legal_forms"])
    patterns: list[str] = list(spec["name_patterns"])
    brand_chars: str = str(spec["brand_characters"])
    streets: list[str] = list(spec["streets"])
    park_weight = float(spec.get("park_weight", 1))
    pinned: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in (spec.get("pinned") or {}).items()}
    weights = [park_weight if g.region_kind == "park" else 1.0 for g in grids]
    by_code = {g.code: g for g in grids}
    place = county_short_name(county_name)

    fake = Faker("zh_CN")
    used_names: set[str] = {p["name"] for p in pinned.values() if "name" in p}
    used_codes: set[str] = set()
    result: list[EnterpriseSeed] = []
    for number in range(1, count + 1):
        rng = random.Random(f"qifu-enterprise:{seed}:{number}")  # str seeds are stable across runs
        fake.seed_instance(seed * 100_000 + number)

        uscc = _uscc(rng, county_code)
        while uscc in used_codes:
            uscc = _uscc(rng, county_code)
        used_codes.add(uscc)

        grid = rng.choices(grids, weights=weights)[0]
        industry = rng.choice(region_industries.get(grid.region_code) or sorted(industries))
        word = rng.choice(industries[industry])
        pattern = rng.choice(patterns)
        form = rng.choice(legal_forms)
        name = ""
        for _ in range(50):
            name = pattern.format(place=place, brand="".join(rng.sample(brand_chars, 2)), word=word, form=form)
            if name not in used_names:
                break
        else:  # pragma: no cover - needs thousands of enterprises of one industry word
            raise ValueError("enterprises.yaml: too few brand_characters for this many enterprises")

        tags = {t for t, p in tag_probability.items() if rng.random() < float(p)}
        for tag in list(tags):
            tags.update(tag_implies.get(tag, ()))
        contact_name = fake.name()
        contact_phone = fake.phone_number()
        address = f"{county_name}{grid.region_name}{rng.choice(streets)}{rng.randint(1, 399)}号"

        item = EnterpriseSeed(
            number=number, uscc=uscc, name=name, industry=industry, grid=grid.code,
            tags=[t for t in ENTERPRISE_TAGS if t in tags],
            contact_name=contact_name, contact_phone=contact_phone, address=address,
        )
        for key, value in pinned.get(number, {}).items():
            if key not in _PINNABLE:
                raise ValueError(f"enterprises.yaml: pinned enterprise {number} has unknown field {key}")
            if key == "grid" and value not in by_code:
                raise ValueError(f"enterprises.yaml: pinned enterprise {number} names unknown grid {value}")
            if key == "tags":
                value = [t for t in ENTERPRISE_TAGS if t in set(value)]
            setattr(item, key, value)
        used_names.add(item.name)
        result.append(item)
    return result


def _uscc(rng: random.Random, county_code: str) -> str:
    """A valid code ``91<county>MA<7 chars><check>`` (``MA`` = newly registered, as in real codes)."""
    return make_uscc(authority="9", org_type="1", division=county_code,
                     org_code="MA" + "".join(rng.choices(ALPHABET, k=7)))
