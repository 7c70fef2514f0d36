#!/usr/bin/env python3
"""Checks every relative link of README.md and the book (docs/src): the file exists, and an
#anchor names a heading of that file (mdBook's and GitHub's slug rules agree for our headings).
Links to the web are not fetched (the machine is offline); they are only checked to be https.
Prints each broken link as path:line: target (why) and exits 1 if there is one.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def slug(heading: str) -> str:
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def prose_lines(path: pathlib.Path):
    """(line number, text) of the lines outside code fences, with inline code removed."""
    fenced = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield number, re.sub(r"`[^`]*`", "", line)


def anchors(path: pathlib.Path) -> set:
    found = set()
    for _, line in prose_lines(path):
        m = HEADING.match(line)
        if m:
            found.add(slug(m.group(2)))
    # Headings with inline code: read them again with the code kept.
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            m = HEADING.match(line)
            if m:
                found.add(slug(m.group(2)))
    return found


def main() -> int:
    files = [ROOT / "README.md", *sorted((ROOT / "docs" / "src").rglob("*.md"))]
    broken = []
    checked = 0
    for path in files:
        for number, line in prose_lines(path):
            for target in LINK.findall(line):
                checked += 1
                where = f"{path.relative_to(ROOT)}:{number}: {target}"
                if target.startswith("http://"):
                    broken.append(f"{where} (plain http)")
                    continue
                if target.startswith(("https://", "mailto:")):
                    continue
                file_part, _, anchor = target.partition("#")
                dest = (path.parent / file_part).resolve() if file_part else path
                if not dest.exists():
                    broken.append(f"{where} (no such file)")
                    continue
                if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                    broken.append(f"{where} (no heading #{anchor})")
    summary = ROOT / "docs" / "src" / "SUMMARY.md"
    listed = set()
    for _, line in prose_lines(summary):
        for target in LINK.findall(line):
            listed.add((summary.parent / target).resolve())
    for chapter in (ROOT / "docs" / "src").rglob("*.md"):
        if chapter.name != "SUMMARY.md" and chapter.resolve() not in listed:
            broken.append(f"{chapter.relative_to(ROOT)}: not in SUMMARY.md")
    for line in broken:
        print(line)
    print(f"check-book-links: {checked} links in {len(files)} files, {len(broken)} broken")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
