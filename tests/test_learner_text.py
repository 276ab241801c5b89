"""Learner-facing text says what the course shows, never how the course was developed.

Lessons, labs, the README and the comments and docstrings of ``karpa_lab`` are read by learners; a phrase
such as "issue 4 measured ..." or "no GPU was available when it was written" is a development note that
leaked into them. This test fails on such phrases, and on lessons whose summary has no key-term table
or whose tables render one concept two ways.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Phrases that belong to the course's development, not to its teaching.
DEV_NOTES = re.compile(
    r"\bissues? #?\d"
    r"|\bthe issue (that|which|asked|said|set|measured)"
    r"|\bno GPU was available"
    r"|\bwhen it was written"
    r"|\bwhen the course was (planned|written|developed)"
    r"|\bclosing note"
    r"|\bthis session\b"
    r"|\bstop \d"
    r"|\bthe brief\b"
    r"|\breviewer",
    re.IGNORECASE,
)

LEARNER_FILES = sorted(
    [p for p in (ROOT / "lessons").rglob("[0-9]*.py") if ".ipynb_checkpoints" not in p.parts]
    + [p for p in (ROOT / "labs").rglob("[0-9]*.py") if ".ipynb_checkpoints" not in p.parts]
    + [ROOT / "README.md"]
    + [p for p in (ROOT / "karpa_lab").rglob("*.py")]
)



def dev_notes(text: str) -> list[str]:
    hits = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in DEV_NOTES.finditer(line):
            hits.append(f"line {number}: ...{line[max(0, match.start() - 40): match.end() + 40].strip()}...")
    return hits


def test_the_pattern_catches_the_known_kinds():
    for phrase in ("For scale: issue 4 measured 1.43", "The issue that set this lesson measured",
                   "no GPU was available when it was written", "see the closing note", "in this session",
                   "stop 3 of the plan"):
        assert dev_notes(phrase), phrase
    for phrase in ("an issue of scale", "the gradient issue", "stop the run", "session of JupyterLab"):
        assert not dev_notes(phrase), phrase


@pytest.mark.parametrize("path", LEARNER_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_development_notes(path: Path):
    rel = str(path.relative_to(ROOT))
    hits = dev_notes(path.read_text(encoding="utf-8"))
    assert not hits, f"{rel} speaks of how the course was developed:\n" + "\n".join(hits)


# --- key-term tables -------------------------------------------------------------------------------
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.py"))
ROW = re.compile(r"^# \|\s*(?P<en>[^|]+?)\s*\|\s*(?P<zh>[^|]+?)\s*\|\s*(?P<line>[^|]+?)\s*\|\s*$")
HAN = re.compile(r"[\u4e00-\u9fff]")
# Terms that Chinese texts commonly leave in English: the table says so by writing them unchanged.
KEPT_IN_ENGLISH = {"Transformer"}


def key_terms(path: Path) -> list[tuple[str, str]]:
    """The (English, 中文) rows of the lesson's key-term table: the table after '## Summary'."""
    text = path.read_text(encoding="utf-8")
    heading = re.search(r"^# #+ (?:\d+\. )?Summary\b.*$", text, re.MULTILINE)
    assert heading, f"{path.name} has no summary heading ('## Summary')"
    lines = text[heading.end():].splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(r"^# \|\s*English\s*\|\s*中文\s*\|", line)), None)
    assert start is not None, f"{path.name}: the summary has no key-term table (| English | 中文 | ... |)"
    rows = []
    for line in lines[start + 2:]:
        match = ROW.match(line)
        if not match:
            break
        rows.append((match["en"], match["zh"]))
    assert rows, f"{path.name}: the key-term table is empty"
    return rows


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_summary_ends_with_a_key_term_table(path: Path):
    for en, zh in key_terms(path):
        assert HAN.search(zh) or (zh == en and en in KEPT_IN_ENGLISH), (
            f"{path.name}: '{en}' has no Chinese rendering ({zh!r})")


def test_one_rendering_per_concept_across_the_course():
    english_to_chinese: dict[str, set[str]] = {}
    chinese_to_english: dict[str, set[str]] = {}
    where: dict[tuple[str, str], list[str]] = {}
    for path in LESSONS:
        for en, zh in key_terms(path):
            key = en.lower()
            english_to_chinese.setdefault(key, set()).add(zh)
            chinese_to_english.setdefault(zh, set()).add(key)
            where.setdefault((key, zh), []).append(path.name[:2])
    two_chinese = {en: zhs for en, zhs in english_to_chinese.items() if len(zhs) > 1}
    two_english = {zh: ens for zh, ens in chinese_to_english.items() if len(ens) > 1}
    assert not two_chinese, f"one English term, several Chinese renderings: {two_chinese} ({where})"
    assert not two_english, f"one Chinese rendering for several English terms: {two_english}"


def test_the_text_uses_the_tables_renderings():
    """Where a lesson's text gives a key term's Chinese in brackets, "weight tying (权重绑定)", it is the
    rendering of the tables, and a rendering from the tables is not given to a different term."""
    table = {}
    for path in LESSONS:
        table.update({en.lower(): zh for en, zh in key_terms(path)})
    bare = {re.sub(r"\s*\(.*\)$", "", en): zh for en, zh in table.items()}  # "multilayer perceptron (mlp)" -> ...
    wrong = []
    for path in LESSONS:
        text = path.read_text(encoding="utf-8")
        for en, zh in bare.items():
            pattern = r"\b" + re.escape(en).replace(r"\ ", r"[\s#*-]+") + r"s?\**\s+\(([^()]*)\)"
            for match in re.finditer(pattern, text, re.IGNORECASE):
                bracket = match.group(1)
                before = text[max(0, match.start() - 40): match.start()].lower()
                if any(longer.endswith(" " + en) and before.endswith(longer[: -len(en)]) for longer in bare):
                    continue  # a longer term ends here ("memory cell", "multi-head attention")
                if any(other in bracket.lower() and bare[other] in bracket for other in bare):
                    continue  # the bracket names the term it renders ("(a persistence forecast, 持续性预测)")
                if HAN.search(bracket) and zh not in bracket:
                    wrong.append(f"{path.name}: '{match.group(0)}' (the tables say {zh})")
    assert not wrong, "\n".join(wrong)
