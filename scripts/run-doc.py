#!/usr/bin/env python3
"""Runs every code block of a Markdown page, in order, in one fresh working
directory, so that a walkthrough cannot drift from the code.

    scripts/run-doc.py docs/walkthrough.md --pcmc target/release/pcmc [--python venv/bin/python]

- A fenced block preceded by `<!-- write: FILE -->` is written to FILE.
- ```bash blocks run with `bash -euo pipefail`, `pcmc` first on PATH.
- ```python blocks run with --python (default: this interpreter).
- ```r blocks run with Rscript when it exists and the block's packages load
  (a block starting `# needs: arrow` needs the arrow package); otherwise the
  block is reported as skipped, naming what is missing.
- Other blocks (```toml, ```text, output) are not run.

Each block must succeed (exit status 0). Prints one line per block and a
closing `N passed, N failed, N skipped`; exits 1 on any failure."""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

FENCE = re.compile(r'^```([A-Za-z0-9_+-]*)\s*$')
WRITE = re.compile(r'^<!--\s*write:\s*(\S+)\s*-->\s*$')


def blocks(text):
    """Yields (line, language, body, file to write or None)."""
    lines = text.split('\n')
    i = 0
    write = None
    while i < len(lines):
        m = WRITE.match(lines[i])
        if m:
            write = m.group(1)
            i += 1
            continue
        m = FENCE.match(lines[i])
        if m:
            start = i + 1
            lang = m.group(1).lower()
            j = start
            while j < len(lines) and not lines[j].startswith('```'):
                j += 1
            yield start, lang, '\n'.join(lines[start:j]) + '\n', write
            write = None
            i = j + 1
            continue
        if lines[i].strip():
            write = None
        i += 1


def r_missing(body):
    """What an R block needs that is not installed, or None."""
    if shutil.which('Rscript') is None:
        return 'Rscript (Debian: r-base-core)'
    m = re.match(r'#\s*needs:\s*(.+)', body)
    if m:
        for pkg in m.group(1).replace(',', ' ').split():
            ok = subprocess.run(['Rscript', '-e', f'library({pkg})'],
                                capture_output=True).returncode == 0
            if not ok:
                return f'the R package {pkg}'
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('page')
    ap.add_argument('--pcmc', required=True, help='the pcmc binary')
    ap.add_argument('--python', default=sys.executable)
    ap.add_argument('--keep', action='store_true', help='keep the working directory')
    a = ap.parse_args()
    page = os.path.abspath(a.page)
    root = os.path.dirname(os.path.dirname(page))
    work = tempfile.mkdtemp(prefix='pcmc-doc-')
    bindir = os.path.join(work, '.bin')
    os.mkdir(bindir)
    os.symlink(os.path.abspath(a.pcmc), os.path.join(bindir, 'pcmc'))
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get('PATH', ''),
               PCMC_REPO=root, MPLBACKEND='Agg')
    passed = failed = skipped = 0
    rel = os.path.relpath(page, root)
    for line, lang, body, write in blocks(open(page, encoding='utf-8').read()):
        where = f'{rel}:{line}'
        if write:
            path = os.path.join(work, write)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'w', encoding='utf-8') as f:
                f.write(body)
            print(f'wrote  {where} -> {write}')
            continue
        if lang in ('bash', 'sh'):
            cmd = ['bash', '-euo', 'pipefail', '-c', body]
        elif lang == 'python':
            cmd = [a.python, '-c', body]
        elif lang == 'r':
            missing = r_missing(body)
            if missing:
                print(f'skip   {where} (r): needs {missing}')
                skipped += 1
                continue
            cmd = ['Rscript', '-e', body]
        else:
            continue
        r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=1800)
        if r.returncode == 0:
            print(f'ok     {where} ({lang})')
            passed += 1
        else:
            print(f'FAILED {where} ({lang}), exit status {r.returncode}:\n{body}')
            print('--- stdout\n' + r.stdout[-4000:] + '\n--- stderr\n' + r.stderr[-4000:])
            failed += 1
    if a.keep:
        print(f'working directory kept: {work}')
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(f'{rel}: {passed} passed, {failed} failed, {skipped} skipped')
    return 1 if failed or passed == 0 else 0


if __name__ == '__main__':
    sys.exit(main())
