#!/usr/bin/env python3
"""Records how the real apk validates, compares and matches versions, for the version tests.

Runs the apk-tools 3.0.6 binary named by $APK on versions generated below (fixed by --seed) and
writes three golden files (tab-separated, one case a line, `#` lines are comments; see
`escape` for how tabs, newlines, backslashes, `#` and bytes outside printable ASCII are
written):

  version-compare.tsv   a  b  valid(a)  valid(b)  test  compare
      valid(x)  1 when `apk version -c x` accepts x, else 0.
      test      what `apk version -t a b` prints (`<`, `=`, `>`), or `!` when it refuses
                (it refuses when either version is invalid).
      compare   apk_version_compare(a, b) for every pair, invalid versions included, read from
                `apk version -l '<>='` over an installed database and a repository: with `a`
                installed and `b` available the listing shows `<` exactly when b is newer, and
                the swapped run shows it when a is newer; otherwise the two compare equal.
                Where `test` is not `!`, the two must agree (the script stops otherwise).

  version-match.tsv     version  op  wanted  matched
      matched   1 when `apk add --simulate NAME<op><wanted>` succeeds against a repository
                whose only NAME package has `version` (apk_version_match), else 0. `wanted`
                is always valid (apk add refuses invalid ones); `version` need not be.

  dependency-atoms.tsv  atom  accepted
      accepted  0 when `apk add --simulate ATOM` refuses the argument as "not a valid world
                dependency", else 1 (the atom parsed; the solve itself may still fail).

Usage:

  APK=/path/to/apk python3 tests/reference/record-apk-versions.py --seed 30 \\
      --pairs 900 --matches 260 -o tests/reference/golden

apk-tools must be 3.0.6 (`apk --version` is written in every file's first line).
"""

import argparse
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import io

SUFFIXES = ["alpha", "beta", "pre", "rc", "cvs", "svn", "git", "hg", "p"]
HEX = "0123456789abcdef"
MATCH_OPERATORS = ["=", "<", ">", "<=", ">=", "~", "<~", ">~", "=~", "=<", "<>="]

# Versions every run includes: the shapes named in bug reports and apk-tools' own oddities.
FIXED_VERSIONS = [
    "", "v2.4", "v2.5", "1.0-foo", "1.0-bar", "1..2", "1.", ".1", "abc", "xyz", "1.0bc",
    "23_foo", "4_beta", "1.0_foo", "1.0_", "1.0-r", "1.0-", "1.0~", "1.0~XYZ", "1.0 ", " 1.0",
    "1.0\t", "1.0a1", "1.0-r1_p1", "1.0-r1~abc", "1.0~abc_p1", "1.0_rc-1", "1.0A", "1.0_Alpha",
    "1.0+2", "1.0:1", "1:1.0", "1.0@edge", "1.0é", "1.\uff10", "2.4", "2.4.0", "2.4-r0",
    "0", "00", "01", "1", "1.0", "1.00", "1.0.0", "1.05", "1.1", "1.010", "1.09",
    "18446744073709551615", "18446744073709551616", "18446744073709551617",
    "1.0_alpha", "1.0_alpha1", "1.0_beta", "1.0_pre", "1.0_rc1", "1.0_cvs", "1.0_svn",
    "1.0_git", "1.0_hg", "1.0_p", "1.0_p1", "1.0a", "1.0z", "1.0-r1", "1.0~c0ffee",
    "1.0~c0ffee-r1", "1.0_rc1~abc-r2", "0.1.0_alpha_pre2", "1.0_p1_p2", "24.079.58964~7943616",
]

FIXED_PAIRS = [
    ("v2.4", "v2.5"), ("v2.4", "2.4"), ("v2.4", ""), ("", "0"), ("", ""), ("abc", "xyz"),
    ("1.0-foo", "1.0"), ("1.0-foo", "1.0-bar"), ("1.0-foo", "1.0-r1"), ("1.0_foo", "1.0_alpha"),
    ("1.0 ", "1.0"), ("1..2", "1.2"), ("1.", "1"), ("1.0~", "1.0"), ("1.0bc", "1.0b"),
    ("23_foo", "4_beta"), ("1.0a1", "1.0a2"), ("1.0-r1_p1", "1.0-r1"), ("1.0_rc-1", "1.0_rc"),
    ("1.0@edge", "1.0"), ("1.0é", "1.0"), ("1.\uff10", "1.0"),
    ("18446744073709551616", "0"), ("18446744073709551617", "1"),
]


def escape(text):
    """Tab-separated-value form of a string: `\\\\`, `\\t`, `\\n`, `\\r`, and `\\xNN` for `#`
    (which starts comment lines) and every other byte of its UTF-8 form outside printable
    ASCII."""
    out = []
    for byte in text.encode():
        ch = chr(byte)
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif 0x20 <= byte < 0x7F and ch != "#":
            out.append(ch)
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# The generator.


def number(rng):
    r = rng.random()
    if r < 0.30:
        return str(rng.randint(0, 9))
    if r < 0.48:
        return str(rng.randint(10, 99))
    if r < 0.58:
        return "0" + str(rng.randint(0, 99))
    if r < 0.62:
        return rng.choice(["00", "000", "007"])
    if r < 0.74:
        return str(rng.randint(100, 99999))
    if r < 0.78:
        return rng.choice(["18446744073709551615", "18446744073709551616",
                           "18446744073709551617", "99999999999999999999999"])
    if r < 0.88:
        return str(rng.randint(19990101, 20251231))
    return rng.choice(["0", "1", "2"])


def valid_version(rng):
    v = ".".join(number(rng) for _ in range(rng.choice([1, 1, 2, 2, 2, 3, 3, 3, 4, 5])))
    if rng.random() < 0.2:
        v += rng.choice("abcpqxyz")
    for _ in range(rng.choice([0, 0, 0, 0, 1, 1, 2])):
        v += "_" + rng.choice(SUFFIXES)
        if rng.random() < 0.6:
            v += number(rng)
    if rng.random() < 0.15:
        v += "~" + "".join(rng.choice(HEX) for _ in range(rng.randint(1, 10)))
    if rng.random() < 0.4:
        v += "-r" + number(rng)
    return v


def corrupt(rng, v):
    """An invalid variant of `v`, usually sharing a prefix with it."""
    choice = rng.randrange(24)
    cut = rng.randint(0, len(v))
    if choice == 0:
        return "v" + v
    if choice == 1:
        return v[:cut] + rng.choice("ABCXYZ") + v[cut:]
    if choice == 2:
        return v + "_" + rng.choice(["foo", "patch", "Alpha", "", "pp", "rc_"])
    if choice == 3:
        return v + "-" + rng.choice(["foo", "r", "", "rc1", "1", "r1a", "r1.2"])
    if choice == 4:
        return v.replace(".", "..", 1) if "." in v else v + ".."
    if choice == 5:
        return v + "."
    if choice == 6:
        return "." + v
    if choice == 7:
        return v + "~" + rng.choice(["", "XYZ", "ab~cd", "g", "0_p1", "1.2"])
    if choice == 8:
        return v + rng.choice(["_p1", "~abc", "a", ".1"]) if "-r" in v else v + "-r1_p1"
    if choice == 9:
        return v + rng.choice(" \t")
    if choice == 10:
        return rng.choice(" \t") + v
    if choice == 11:
        return v[:cut] + rng.choice(["+", ":", ",", "@", "/", "é", "\uff10", "*", "#"]) + v[cut:]
    if choice == 12:
        return ""
    if choice == 13:
        return v + rng.choice(["ab", "a1", "a.1", "a_rc", "aa"])
    if choice == 14:
        return v + "_rc-1"
    if choice == 15:
        return rng.choice(["abc", "xyz", "v", "r1", "-r1", "_alpha", "~abc", "a1"])
    if choice == 16:
        return v[:cut] + " " + v[cut:]
    if choice == 17:
        return "v" + v[:cut]
    if choice == 18:
        return v + "@edge"
    if choice == 19:
        return v + "-r"
    if choice == 20:
        return v + "_"
    if choice == 21:
        return v + "-r1-r2"
    if choice == 22:
        return v.upper() if v.lower() != v.upper() else v + "A"
    return v + "!"


def tweak(rng, v):
    """A version close to `v`: the same prefix with one token changed, added or removed."""
    choice = rng.randrange(12)
    if choice == 0:
        return v + "." + number(rng)
    if choice == 1:
        return v + rng.choice("abz")
    if choice == 2:
        return v + "_" + rng.choice(SUFFIXES) + rng.choice(["", "1", "2", "01"])
    if choice == 3:
        return v + "-r" + number(rng)
    if choice == 4:
        return v + "~" + "".join(rng.choice(HEX) for _ in range(rng.randint(1, 6)))
    if choice == 5:
        digits = [i for i, c in enumerate(v) if c.isdigit()]
        if digits:
            i = rng.choice(digits)
            return v[:i] + str(rng.randint(0, 9)) + v[i + 1:]
    if choice == 6:
        for sep in ("-r", "~", "_", "."):
            if sep in v:
                return v[: v.rindex(sep)]
    if choice == 7:
        return "0" + v if v[:1].isdigit() else v
    if choice == 8:
        digits = [i for i, c in enumerate(v) if c.isdigit() and (i == 0 or v[i - 1] == ".")]
        if digits:
            i = rng.choice(digits)
            return v[:i] + "0" + v[i:]
    if choice == 9 and "_" in v:
        i = v.index("_")
        end = i + 1
        while end < len(v) and v[end].isalpha():
            end += 1
        return v[: i + 1] + rng.choice(SUFFIXES) + v[end:]
    return valid_version(rng)


def generate_pairs(rng, count):
    pairs = list(FIXED_PAIRS)
    fixed = FIXED_VERSIONS
    while len(pairs) < count:
        r = rng.random()
        if r < 0.22:
            pairs.append((valid_version(rng), valid_version(rng)))
        elif r < 0.50:
            a = valid_version(rng)
            pairs.append((a, tweak(rng, a)))
        elif r < 0.70:
            a = valid_version(rng)
            b = tweak(rng, a)
            pairs.append((corrupt(rng, a), corrupt(rng, b) if rng.random() < 0.4 else b))
        elif r < 0.80:
            a = valid_version(rng)
            pairs.append((a, corrupt(rng, a)))
        elif r < 0.90:
            pairs.append((rng.choice(fixed), rng.choice(fixed)))
        else:
            a = rng.choice(fixed)
            pairs.append((a, tweak(rng, a) if a else valid_version(rng)))
    # Either order, so that antisymmetry is recorded rather than assumed.
    return [(b, a) if rng.random() < 0.5 else (a, b) for a, b in pairs]


def fuzzy_prefix(rng, v):
    """A valid version that is `v` cut at a token boundary, or close to it."""
    cuts = [i for i in range(1, len(v)) if v[i] in "._~-" or (v[i].isalpha() and v[i - 1].isdigit())]
    if cuts and rng.random() < 0.7:
        return v[: rng.choice(cuts)]
    return tweak(rng, v)


def generate_matches(rng, count):
    cases = []
    while len(cases) < count:
        r = rng.random()
        version = valid_version(rng)
        if r < 0.5:
            wanted = fuzzy_prefix(rng, version)
        elif r < 0.7:
            wanted = tweak(rng, version)
        else:
            wanted = valid_version(rng)
        if rng.random() < 0.3:
            version = corrupt(rng, version)
        if rng.random() < 0.05:
            version = rng.choice(FIXED_VERSIONS)
        if "\n" in version or not wanted or any(c in wanted for c in " \n"):
            continue
        cases.append((version, wanted))
    return cases


# ---------------------------------------------------------------------------------------------
# Running apk.


def apk_binary():
    apk = os.environ.get("APK")
    if not apk:
        sys.exit("record-apk-versions: set APK to the path of an apk-tools 3.0.6 binary")
    return apk


def apk_version(apk):
    out = subprocess.run([apk, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def checksum(n, salt):
    return "X1" + f"{salt:02x}" + f"{n:038x}"


def write_index(path, records):
    data = "".join(records).encode()
    info = tarfile.TarInfo("APKINDEX")
    info.size = len(data)
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(info, io.BytesIO(data))


def record(name, version, salt, n):
    return f"C:{checksum(n, salt)}\nP:{name}\nV:{version}\n\n"


class Root:
    """An apk root with an installed database and one repository, as apk's test suite sets up."""

    def __init__(self, apk, tmp, installed, available):
        self.apk = apk
        self.root = os.path.join(tmp, "root")
        for sub in ("etc/apk/cache", "lib/apk/db", "tmp", "var/log"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        open(os.path.join(self.root, "etc/apk/world"), "w").close()
        os.symlink("/dev/null", os.path.join(self.root, "var/log/apk.log"))
        with open(os.path.join(self.root, "lib/apk/db/installed"), "w") as f:
            f.write("".join(installed))
        repo = os.path.join(tmp, "repo.tar.gz")
        write_index(repo, available)
        with open(os.path.join(self.root, "etc/apk/repositories"), "w") as f:
            f.write(f"test:/{repo}\n")

    def run(self, *args):
        cmd = [self.apk, "--root", self.root, "--allow-untrusted", "--root-tmpfs=no",
               "--no-cache", *args]
        proc = subprocess.run(cmd, capture_output=True, cwd=os.path.join(self.root, "tmp"))
        return proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", "replace")


def validity(apk, versions):
    valid = {}
    for v in versions:
        proc = subprocess.run([apk, "version", "-c", v], capture_output=True)
        if proc.returncode not in (0, 1):
            sys.exit(f"apk version -c {v!r} exited {proc.returncode}")
        valid[v] = proc.returncode == 0
    return valid


def version_test(apk, a, b):
    proc = subprocess.run([apk, "version", "-t", a, b], capture_output=True, text=True)
    if proc.returncode != 0:
        return "!"
    out = proc.stdout.strip()
    if out not in ("<", "=", ">"):
        sys.exit(f"apk version -t {a!r} {b!r} printed {out!r}")
    return out


def listing(apk, pairs):
    """For each pair, the op `apk version -l '<>='` shows with a installed and b available."""
    names = [f"q{n:05d}" for n in range(len(pairs))]
    with tempfile.TemporaryDirectory(prefix="apkver.") as tmp:
        root = Root(apk,
                    tmp,
                    [record(name, a, 0x10, n) for n, (name, (a, _)) in enumerate(zip(names, pairs))],
                    [record(name, b, 0x20, n) for n, (name, (_, b)) in enumerate(zip(names, pairs))])
        code, out = root.run("version", "-l", "<>=")
        if code != 0:
            sys.exit(f"apk version -l exited {code}:\n{out}")
    shown = {}
    for line in out.split("\n"):
        for name, (a, _) in zip(names, pairs):
            prefix = f"{name}-{a}"
            if line.startswith(prefix) and name not in shown:
                rest = line[len(prefix):].lstrip(" ")
                shown[name] = rest.split(" ", 1)[0]
                break
    missing = [name for name in names if name not in shown]
    if missing:
        sys.exit(f"apk version -l did not list {missing[:5]}")
    return [shown[name] for name in names]


def compare_all(apk, pairs):
    forward = listing(apk, pairs)
    backward = listing(apk, [(b, a) for a, b in pairs])
    results = []
    for (a, b), f, r in zip(pairs, forward, backward):
        if f == "<" and r == "=":
            results.append("<")
        elif f == "=" and r == "<":
            results.append(">")
        elif f == "=" and r == "=":
            results.append("=")
        else:
            sys.exit(f"apk ordered {a!r} {b!r} inconsistently: {f} then {r}")
    return results


def match_all(apk, cases):
    names = [f"m{n:05d}" for n in range(len(cases))]
    rows = []
    with tempfile.TemporaryDirectory(prefix="apkmatch.") as tmp:
        root = Root(apk, tmp, [],
                    [record(name, version, 0x30, n) for n, (name, (version, _)) in enumerate(zip(names, cases))])
        for name, (version, wanted) in zip(names, cases):
            for op in MATCH_OPERATORS:
                code, out = root.run("add", "--simulate", f"{name}{op}{wanted}")
                if code not in (0, 1) or "not a valid world dependency" in out:
                    sys.exit(f"apk add {name}{op}{wanted} exited {code}:\n{out}")
                rows.append((version, op, wanted, 1 if code == 0 else 0))
    return rows


ATOM_SHAPES = [
    "q", "q=1", "q<1", "q>1", "q<=1", "q>=1", "q~1", "q=~1", "q~=1", "q<~1", "q>~1", "q><Q1abc",
    "q<>1", "q<>=1", "q<=>1", "q==1", "q~~1", "q=", "q>=", "q~", "q<>", "!q", "!q<2", "!!q", "!",
    "=1", "!=1", "@edge", "q@edge", "q@", "q@=1", "q@edge=1", "q@edge@main", "q=1@edge",
    "q=v2.4", "q=1.0-foo", "q<>=v2.4", "q><v2.4", "q=1.0 ", "q ", "q\n", " q", "q x", "q\tx",
    "na#me", "naïve", "so:libc.musl-x86_64.so.1", "cmd:[", "pc:gtk+-3.0>=3.24", "/bin/sh",
    "q>=1.0<2.0", "q=1_foo", "q=1.0~abc", "q=1.0~", "q>=0", "Q", "q,r", "q/r", "q:r", "q*",
    "q?", "q=1=2", "q=1 2", "q!", "q!=1", "q=!1", "q<~", ">1", "~1", "q=1-r1", "q=1-r",
]


def generate_atoms(rng, count):
    atoms = list(ATOM_SHAPES)
    pieces = ["q", "!", "@", "edge", "=", "<", ">", "~", "1", "1.0", "v2", "_rc", "-r1", " ", "\t",
              "-", ":", ".", "#", "*", "é", "abc"]
    while len(atoms) < count:
        atom = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 6)))
        if atom.strip(" \t"):
            atoms.append(atom)
    return list(dict.fromkeys(atoms))


def accept_all(apk, atoms):
    rows = []
    with tempfile.TemporaryDirectory(prefix="apkatom.") as tmp:
        root = Root(apk, tmp, [], [record("q", "1.0", 0x40, 1)])
        for atom in atoms:
            code, out = root.run("add", "--simulate", "--", atom)
            refused = code == 99 and "not a valid world dependency" in out
            rows.append((atom, 0 if refused else 1))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=30)
    parser.add_argument("--pairs", type=int, default=900)
    parser.add_argument("--matches", type=int, default=260)
    parser.add_argument("--atoms", type=int, default=200)
    parser.add_argument("-o", "--output", required=True, help="directory for the golden files")
    args = parser.parse_args()

    apk = apk_binary()
    banner = apk_version(apk)
    if "3.0.6" not in banner:
        sys.exit(f"record-apk-versions: {apk} is {banner!r}, not apk-tools 3.0.6")
    rng = random.Random(args.seed)
    pairs = generate_pairs(rng, args.pairs)
    matches = generate_matches(rng, args.matches)
    atoms = generate_atoms(rng, args.atoms)
    os.makedirs(args.output, exist_ok=True)

    valid = validity(apk, sorted({v for pair in pairs for v in pair} | {v for case in matches for v in case}))
    # apk add refuses an invalid version after an operator, so only valid ones are matched.
    matches = [(version, wanted) for version, wanted in matches if valid[wanted]]
    compared = compare_all(apk, pairs)
    lines = []
    for (a, b), compare in zip(pairs, compared):
        test = version_test(apk, a, b)
        if test != "!" and test != compare:
            sys.exit(f"apk version -t {a!r} {b!r} says {test}, the listing says {compare}")
        if (test == "!") == (valid[a] and valid[b]):
            sys.exit(f"apk version -t {a!r} {b!r} answered {test} for validity {valid[a]} {valid[b]}")
        lines.append("\t".join([escape(a), escape(b), str(int(valid[a])), str(int(valid[b])), test, compare]))
    tested = sum(1 for line in lines if line.split("\t")[4] != "!")
    with open(os.path.join(args.output, "version-compare.tsv"), "w") as f:
        f.write(f"# {banner}\n")
        f.write(f"# record-apk-versions.py --seed {args.seed} --pairs {args.pairs}: {len(lines)} pairs, "
                f"{tested} also answered by `apk version -t`\n")
        f.write("# a\tb\tvalid(a)\tvalid(b)\ttest\tcompare\n")
        f.write("\n".join(lines) + "\n")

    rows = match_all(apk, matches)
    with open(os.path.join(args.output, "version-match.tsv"), "w") as f:
        f.write(f"# {banner}\n")
        f.write(f"# record-apk-versions.py --seed {args.seed} --matches {args.matches}: {len(rows)} "
                f"atoms over {len(matches)} versions\n")
        f.write("# version\top\twanted\tmatched\n")
        for version, op, wanted, matched in rows:
            f.write("\t".join([escape(version), op, escape(wanted), str(matched)]) + "\n")

    atom_rows = accept_all(apk, atoms)
    with open(os.path.join(args.output, "dependency-atoms.tsv"), "w") as f:
        f.write(f"# {banner}\n")
        f.write(f"# record-apk-versions.py --seed {args.seed} --atoms {args.atoms}: {len(atom_rows)} "
                f"`apk add` arguments\n")
        f.write("# atom\taccepted\n")
        for atom, accepted in atom_rows:
            f.write(f"{escape(atom)}\t{accepted}\n")

    print(f"{len(lines)} pairs ({tested} by apk version -t), {len(rows)} matches, "
          f"{len(atom_rows)} atoms", file=sys.stderr)


if __name__ == "__main__":
    main()
