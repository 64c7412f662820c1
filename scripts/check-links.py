#!/usr/bin/env python3
"""Checks that every relative link in README.md and docs/*.md resolves: the
file exists and, for `file.md#anchor` or `#anchor`, the target page has a
heading with that GitHub-style anchor. Prints one line per broken link and
exits 1 if there is any; run from anywhere: scripts/check-links.py"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = re.compile(r'(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')


def strip_code(text):
    """Removes fenced code blocks and inline code (links there are not links)."""
    text = re.sub(r'(?ms)^```.*?^```', '', text)
    return re.sub(r'`[^`\n]*`', '', text)


def anchors(path):
    seen = {}
    out = set()
    for line in strip_code(open(path, encoding='utf-8').read()).split('\n'):
        m = re.match(r'^#{1,6}\s+(.*?)\s*#*\s*$', line)
        if not m:
            continue
        slug = re.sub(r'[^\w\- ]', '', m.group(1).strip().lower()).replace(' ', '-')
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f'{slug}-{n}')
    return out


def main():
    pages = [os.path.join(ROOT, 'README.md')]
    docs = os.path.join(ROOT, 'docs')
    if os.path.isdir(docs):
        pages += sorted(os.path.join(docs, f) for f in os.listdir(docs) if f.endswith('.md'))
    bad = 0
    checked = 0
    for page in pages:
        for target in LINK.findall(strip_code(open(page, encoding='utf-8').read())):
            if re.match(r'^[a-z][a-z0-9+.-]*:', target):
                continue  # http:, https:, mailto: ...
            checked += 1
            path, _, anchor = target.partition('#')
            dest = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            rel = os.path.relpath(page, ROOT)
            if not os.path.exists(dest):
                print(f'{rel}: broken link {target}: {os.path.relpath(dest, ROOT)} does not exist')
                bad += 1
            elif anchor and dest.endswith('.md') and anchor not in anchors(dest):
                print(f'{rel}: broken link {target}: no heading #{anchor} in {os.path.relpath(dest, ROOT)}')
                bad += 1
    print(f'links: {checked} relative links in {len(pages)} pages, {bad} broken')
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
