"""Plain text from a MediaWiki XML dump, one document per article.

Used for the offline ``enwiki-gensim`` corpus: the English-Wikipedia excerpt shipped in the
gensim wheel (206 pages; 106 articles once redirects and non-article namespaces are dropped,
specs/offline-assets.md §3a [verified there]). Markup is stripped with
``gensim.corpora.wikicorpus.filter_wiki``, bold/italic quote marks are removed, and each
article is headed ``" = <title> = "`` in the style of WikiText. Section headings (``==History==``)
stay, as in the spec's measurement.
"""
from __future__ import annotations

import bz2
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from reprise.io import ReproError

_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")


def clean_wikitext(markup: str) -> str:
    """Strip wiki markup (gensim's ``filter_wiki``), quote marks and runs of blank lines."""
    try:
        from gensim.corpora.wikicorpus import filter_wiki
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ReproError("parsing the Wikipedia dump needs gensim (pip install gensim==4.4.0)") from exc
    text = filter_wiki(markup).replace("'''", "").replace("''", "")
    text = _TRAILING_SPACE.sub("\n", text)
    return _BLANK_RUNS.sub("\n\n", text).strip()


def read_wiki_articles(path: str | Path) -> list[tuple[str, str]]:
    """``[(title, text), ...]`` for the main-namespace, non-redirect pages, in dump order."""
    path = Path(path)
    if not path.is_file():
        raise ReproError(f"Wikipedia dump {path} not found")
    opener = bz2.open if path.suffix == ".bz2" else open
    try:
        with opener(path, "rb") as fh:
            root = ET.parse(fh).getroot()
    except (ET.ParseError, OSError, EOFError) as exc:
        raise ReproError(f"cannot parse Wikipedia dump {path}: {exc}") from exc
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    articles = []
    for page in root.iter(f"{ns}page"):
        if (page.findtext(f"{ns}ns") or "").strip() != "0" or page.find(f"{ns}redirect") is not None:
            continue
        title = (page.findtext(f"{ns}title") or "").strip()
        markup = page.findtext(f"{ns}revision/{ns}text") or ""
        body = clean_wikitext(markup)
        if body:
            articles.append((title, f" = {title} = \n\n{body}"))
    if not articles:
        raise ReproError(f"Wikipedia dump {path} holds no articles")
    return articles


def holdout_split(items: list, every: int) -> dict[str, list]:
    """Deterministic disjoint split: item ``i`` goes to ``test`` when ``i % every == every - 1``.

    Interleaving (rather than a contiguous tail) spreads the held-out articles over the
    alphabetical dump, so the test part is not all from one letter.
    """
    test = [x for i, x in enumerate(items) if i % every == every - 1]
    train = [x for i, x in enumerate(items) if i % every != every - 1]
    return {"train": train, "test": test}
