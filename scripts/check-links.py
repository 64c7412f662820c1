#!/usr/bin/env python3
"""Checks README.md and docs/*.md against the code:

- every relative link resolves: the file exists and, for `file.md#anchor`
  or `#anchor`, the target page has a heading with that GitHub-style anchor;
- every job field named in inline code (`filter.particles`, `[filter.auto]`,
  `parameters.NAME.prior`) exists in the job file schema (the `*Section`
  structs of crates/pcmc-job/src/job/);
- with `--pcmc BINARY`: every flag of a `pcmc …` command (inline or in a
  code block) exists in that subcommand's `--help`, and every lone `--flag`
  in inline code exists in some subcommand's.

Prints one line per problem and exits 1 if there is any; run from anywhere:
scripts/check-links.py [--pcmc target/release/pcmc]"""
import os
import re
import subprocess
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


def job_fields():
    """Every job field path, from the structs of the job module (the files of
    crates/pcmc-job/src/job/): {'filter.particles', 'filter.auto',
    'filter.auto.min', 'parameters.NAME.prior', 'observables.NAME.noise', ...}."""
    d = os.path.join(ROOT, 'crates/pcmc-job/src/job')
    src = ''.join(open(os.path.join(d, f), encoding='utf-8').read()
                  for f in sorted(os.listdir(d)) if f.endswith('.rs'))
    structs = {}
    for m in re.finditer(r'pub struct (\w+) \{(.*?)\n\}', src, re.S):
        fields = []
        rename = None
        for line in m.group(2).split('\n'):
            r = re.search(r'rename = "([^"]+)"', line)
            if r:
                rename = r.group(1)
                continue
            f = re.match(r'\s*pub (\w+): (.+),\s*$', line)
            if f:
                fields.append((rename or f.group(1), f.group(2)))
                rename = None
        structs[m.group(1)] = fields
    out = set()

    def walk(name, prefix):
        for field, ty in structs.get(name, []):
            path = f'{prefix}{field}'
            out.add(path)
            sub = re.findall(r'(\w+(?:Section))\b', ty)
            if 'DataSpec' in ty:  # [data] or [[data]]: DataSection tables
                sub = ['DataSection']
            if 'BTreeMap<String, ' in ty and sub:
                out.add(f'{path}.NAME')
                walk(sub[-1], f'{path}.NAME.')
            elif sub:
                walk(sub[-1], f'{path}.')
    walk('JobFile', '')
    return out


FIELD = re.compile(r'^\[?((?:name|seed|method|smc2|model|data|observation|observables|initial|parameters|filter|mcmc|executor|output|simulate)(?:\.[A-Za-z0-9_]+)+)\]?$')


def check_fields(page, text, fields):
    bad = 0
    rel = os.path.relpath(page, ROOT)
    for span in re.findall(r'`([^`\n]+)`', re.sub(r'(?ms)^```.*?^```', '', text)):
        if re.search(r'\.(rs|csv|svg|json|toml|md|parquet|py|sh|log|xml|txt|sbatch)$', span):
            continue  # a file name, not a field
        m = FIELD.match(span.split(' = ')[0].strip())
        if not m:
            continue
        parts = m.group(1).split('.')
        if parts[0] in ('parameters', 'observables') and len(parts) > 1:
            parts[1] = 'NAME'
        path = '.'.join(parts)
        if path not in fields:
            print(f'{rel}: `{span}` names no job field ({path})')
            bad += 1
    return bad


# Flags of other programs that docs show standing alone in inline code.
FOREIGN_FLAGS = {'--features', '--release', '--mpi', '--oversubscribe', '--signal', '--requeue',
                 '--export', '--parsable', '--dependency', '--array', '--wait', '--output',
                 '--nodes', '--ntasks', '--cpus-per-task', '--partition', '--account', '--time',
                 '--no-kill', '--exclusive', '--allow-run-as-root', '--kill-on-bad-exit',
                 '--workspace', '--all-targets', '--no-default-features', '--ntasks-per-node'}


def help_flags(pcmc):
    """{subcommand: set of flags} from `pcmc … --help`."""
    def flags(args):
        r = subprocess.run([pcmc] + args + ['--help'], capture_output=True, text=True)
        return set(re.findall(r'(?<![\w-])(--[a-z][a-z0-9-]*)', r.stdout)), r.stdout
    top, text = flags([])
    out = {}
    subs = re.findall(r'^  ([a-z][a-z-]*)\s', text.split('Commands:')[1].split('Options:')[0], re.M)
    for sub in subs:
        if sub == 'help':
            continue
        f, t = flags([sub])
        out[sub] = f
        if 'Commands:' in t:
            for sub2 in re.findall(r'^  ([a-z][a-z-]*)\s', t.split('Commands:')[1].split('Options:')[0], re.M):
                if sub2 != 'help':
                    out[f'{sub} {sub2}'] = flags([sub, sub2])[0] | f
    # `cluster` is hidden from --help in builds without Ballista.
    for hidden in ['cluster']:
        if hidden not in out:
            f, t = flags([hidden])
            if 'Commands:' in t:
                out[hidden] = f
                for sub2 in re.findall(r'^  ([a-z][a-z-]*)\s', t.split('Commands:')[1].split('Options:')[0], re.M):
                    if sub2 != 'help':
                        out[f'{hidden} {sub2}'] = flags([hidden, sub2])[0] | f
    return out


def check_flags(page, text, known):
    bad = 0
    rel = os.path.relpath(page, ROOT)
    every = set().union(*known.values()) | {'--help', '--version'}
    commands = []
    for block in re.findall(r'(?ms)^```[a-z]*\n(.*?)^```', text):
        for line in block.split('\n'):
            commands += re.findall(r'(?:^|[\s;&|(]|\$)(pcmc [^#\n]*)', line)
    inline = re.findall(r'`([^`\n]+)`', re.sub(r'(?ms)^```.*?^```', '', text))
    for span in inline:
        commands += re.findall(r'(?:^|\s)(pcmc [^`]*)', span)
        m = re.match(r'^(--[a-z][a-z0-9-]*)(?:[ =].*)?$', span)
        if m and m.group(1) not in every and m.group(1) not in FOREIGN_FLAGS:
            print(f'{rel}: `{span}`: no pcmc command has {m.group(1)}')
            bad += 1
    for cmd in commands:
        words = cmd.split()
        sub = None
        if len(words) > 2 and f'{words[1]} {words[2]}' in known:
            sub = f'{words[1]} {words[2]}'
        elif len(words) > 1 and words[1] in known:
            sub = words[1]
        if sub is None:
            continue
        for flag in re.findall(r'(?<![\w-])(--[a-z][a-z0-9-]*)', cmd):
            if flag == '--':
                continue
            if flag not in known[sub] and flag not in ('--help', '--version'):
                print(f'{rel}: `pcmc {sub}` has no flag {flag} (in: {cmd.strip()[:80]})')
                bad += 1
    return bad


def main():
    pcmc = None
    if '--pcmc' in sys.argv:
        pcmc = sys.argv[sys.argv.index('--pcmc') + 1]
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
    fields = job_fields()
    wrong = sum(check_fields(p, open(p, encoding='utf-8').read(), fields) for p in pages)
    print(f'job fields: {len(fields)} in the schema, {wrong} named wrongly in the docs')
    bad += wrong
    if pcmc:
        known = help_flags(pcmc)
        wrong = sum(check_flags(p, open(p, encoding='utf-8').read(), known) for p in pages)
        print(f'flags: {len(known)} pcmc commands, {wrong} flags named wrongly in the docs')
        bad += wrong
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
