#!/usr/bin/env python3
"""Records what the real `apk add` selects into golden files, for the differential solver tests.

Every case is a set of repositories (plain-text APKINDEX records, optionally tagged), a root
architecture and the arguments of one `apk add`. The script runs the apk binary named by $APK
on each case exactly as apk-tools' own solver suite does (`--simulate` into an empty root,
`--allow-untrusted`, repositories as `test:` index archives) and writes one JSON object a line:
the case as given and apk's answer (exit status, the packages it would install in order, or
its error text).

Modes:

  random  --count N --seed S -o FILE
      Generates N random cases (the generator below, fixed by the seed) and records them.
      The output holds the inputs too, so the tests need neither this script nor apk.

  suite   --tests DIR -o FILE
      Runs every `*.test` file of apk-tools' `test/solver` directory. Only the answers and a
      SHA-256 of each test's inputs are written; the tests read the inputs from the same
      directory (SECUREBUILD_APK_SOLVER_SUITE) when it is present.

  index   --index APKINDEX.tar.gz --arch ARCH --count N --seed S -o FILE
      Runs single-package, set, virtual and `so:`/`cmd:`/`pc:` requests against one real
      index. Only the requests and answers are written, with the index's SHA-256.

apk-tools must be 3.0.6 (`apk --version`); the version is recorded in every file's first line.
"""

import argparse
import hashlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

# `(3/5) Installing name@tag (version)`: the tag is the repository pinning apk records for the
# package, printed only when it is not the default.
INSTALL_LINE = re.compile(r"^\(\s*\d+/\d+\) Installing ([^@\s]+)(?:@(\S+))? \((.*)\)$")


def apk_binary():
    apk = os.environ.get("APK")
    if not apk:
        sys.exit("record-apk-solver: set APK to the path of an apk-tools 3.0.6 binary")
    return apk


def apk_version(apk):
    out = subprocess.run([apk, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def index_archive(text, path):
    """Writes `text` as the APKINDEX member of a gzip tar at `path`, as the suite does."""
    data = text.encode()
    info = tarfile.TarInfo("APKINDEX")
    info.size = len(data)
    info.mtime = 0
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(info, io.BytesIO(data))


def make_root(tmp, arch):
    root = os.path.join(tmp, "root")
    for sub in ("etc/apk/cache", "lib/apk/db", "tmp", "var/log"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    open(os.path.join(root, "etc/apk/world"), "w").close()
    open(os.path.join(root, "lib/apk/db/installed"), "w").close()
    os.symlink("/dev/null", os.path.join(root, "var/log/apk.log"))
    if arch:
        with open(os.path.join(root, "etc/apk/arch"), "w") as f:
            f.write(arch + "\n")
    return root


def parse_output(code, output):
    installs, tags = [], []
    for line in output.splitlines():
        m = INSTALL_LINE.match(line)
        if m:
            installs.append(f"{m.group(1)}-{m.group(3)}")
            tags.append(m.group(2))
    if code != 0:
        installs, tags = [], []
    return {"status": code, "installs": installs, "install_tags": tags, "output": output}


def run_case(apk, repos, arch, args, index_paths=None):
    """Runs `apk add ARGS` against `repos` ([{"tag": str|None, "index": text}])."""
    with tempfile.TemporaryDirectory(prefix="apkref.") as tmp:
        root = make_root(tmp, arch)
        lines = []
        for n, repo in enumerate(repos):
            path = (index_paths or {}).get(n)
            if path is None:
                path = os.path.join(tmp, f"repo{n}.tar.gz")
                index_archive(repo["index"], path)
            location = f"test:/{path}"
            lines.append(f"@{repo['tag']} {location}" if repo.get("tag") else location)
        with open(os.path.join(root, "etc/apk/repositories"), "w") as f:
            f.write("\n".join(lines) + "\n")
        cmd = [apk, "--root", root, "--allow-untrusted", "--simulate", "--root-tmpfs=no",
               "--no-cache", "add", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.join(root, "tmp"))
        return parse_output(proc.returncode, proc.stdout + proc.stderr)


# ---------------------------------------------------------------------------------------------
# The random generator. Names, versions and atoms of every shape apk accepts, plus the ones it
# keeps although it calls them invalid.

VERSION_SHAPES = [
    "1", "2", "10", "1.0", "1.2", "1.10", "1.2.3", "2.0.1", "1.0a", "1.0b", "1.2_alpha",
    "1.2_beta2", "1.2_pre1", "1.2_rc1", "1.2_p1", "1.2_git20240101", "1.2_cvs", "1.2_svn",
    "1.2_hg", "1.2-r0", "1.2-r1", "1.2-r10", "2.0-r1", "1.2.3-r2", "1.2_rc1-r3", "1.0~abc",
    "0.9", "3", "1.2.0", "01.2", "1.02",
]
INVALID_VERSIONS = ["v2.4", "1.0-foo", "1..2", "1.2_", "2.0-rx", "1_", "abc"]
OPERATORS = ["", "=", "<", ">", "<=", ">=", "~", "=~", ">~", "<~"]
VIRTUALS = ["so:libfoo.so.1", "so:libbar.so.2", "cmd:tool", "pc:zlib", "virt", "dev"]
ARCH = "x86_64"


def pick_version(rng, invalid_rate=0.0):
    if rng.random() < invalid_rate:
        return rng.choice(INVALID_VERSIONS)
    return rng.choice(VERSION_SHAPES)


# Per-case strictness: about half the cases are "easy" (fewer conflicts, tests and foreign
# packages) so that selections, and their install order, are exercised as often as refusals.
HARD = {"value": 1.0}


def atom(rng, names, versions_of, allow_conflict=True, allow_tag=None, op_rate=0.5):
    name = rng.choice(names)
    text = name
    op_rate *= HARD["value"]
    if allow_conflict and rng.random() < 0.07 * HARD["value"]:
        text = "!" + text
    if allow_tag and rng.random() < 0.3:
        text += "@" + rng.choice(allow_tag)
    if rng.random() < op_rate:
        op = rng.choice(OPERATORS[1:])
        known = versions_of.get(name) or [pick_version(rng)]
        version = rng.choice(known) if rng.random() < 0.7 else pick_version(rng)
        # A fuzzy match is most useful against a prefix of a real version.
        if "~" in op and rng.random() < 0.5 and "." in version:
            version = version.rsplit(".", 1)[0]
        text += op + version
    return text


def checksum(rng):
    return "Q1" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
                          for _ in range(27)) + "="


def random_case(rng):
    HARD["value"] = 1.0 if rng.random() < 0.5 else 0.3
    count = rng.randint(2, 8)
    real = [chr(ord("a") + n) for n in range(count)]
    virtuals = rng.sample(VIRTUALS, rng.randint(0, 3))
    all_names = real + virtuals
    ntags = rng.choice([0, 0, 0, 1, 2])
    tags = ["edge", "testing"][:ntags]
    nrepos = rng.choice([1, 1, 2, 2, 3]) if not tags else len(tags) + rng.randint(0, 1)
    repo_tags = []
    for n in range(nrepos):
        repo_tags.append(tags[n] if n < len(tags) else None)
    rng.shuffle(repo_tags)

    versions_of = {}
    for name in real:
        versions_of[name] = rng.sample(VERSION_SHAPES, rng.randint(1, 3))
    records = [[] for _ in range(nrepos)]
    for name in real:
        for version in versions_of[name]:
            rec = [f"C:{checksum(rng)}", f"P:{name}", f"V:{version}"]
            r = rng.random()
            if r < 0.08 * HARD["value"]:
                rec.append("A:aarch64")
            elif r < 0.16:
                rec.append("A:noarch")
            elif r < 0.9:
                rec.append(f"A:{ARCH}")
            rec.append("S:1")
            rec.append("I:0" if rng.random() < 0.08 else "I:1")
            if rng.random() < 0.2:
                rec.append(f"k:{rng.choice([1, 10, 100])}")
            deps = [atom(rng, [x for x in all_names if x != name] or all_names, versions_of,
                         op_rate=0.25)
                    for _ in range(rng.choice([0, 0, 1, 1, 2, 3]))]
            if deps:
                rec.append("D:" + " ".join(deps))
            provides = []
            for v in rng.sample(virtuals + real, min(len(virtuals + real), rng.choice([0, 0, 0, 1, 1, 2]))):
                if v == name:
                    continue
                if rng.random() < 0.5:
                    provides.append(f"{v}={pick_version(rng, invalid_rate=0.1)}")
                else:
                    provides.append(v)
            if provides:
                if len(provides) > 1 and rng.random() < 0.3:
                    rec.append("p:" + provides[0])
                    rec.append("p:" + " ".join(provides[1:]))
                else:
                    rec.append("p:" + " ".join(provides))
            if rng.random() < 0.15:
                iif = [atom(rng, [x for x in all_names if x != name] or all_names, versions_of,
                            allow_conflict=rng.random() < 0.3, op_rate=0.2)
                       for _ in range(rng.randint(1, 2))]
                rec.append("i:" + " ".join(iif))
            untagged = [n for n in range(nrepos) if repo_tags[n] is None]
            if untagged and rng.random() < 0.75:
                repo = rng.choice(untagged)
            else:
                repo = rng.randrange(nrepos)
            records[repo].append("\n".join(rec) + "\n")
            # The same package in a second repository now and then.
            if nrepos > 1 and rng.random() < 0.1:
                other = (repo + 1) % nrepos
                records[other].append("\n".join(rec) + "\n")
    repos = []
    for n in range(nrepos):
        rng.shuffle(records[n])
        repos.append({"tag": repo_tags[n], "index": "\n".join(records[n])})
    world = [atom(rng, real if rng.random() < 0.8 else all_names, versions_of,
                  allow_tag=tags or None, op_rate=0.2)
             for _ in range(rng.randint(1, 4))]
    return {"arch": ARCH, "repos": repos, "args": world}


def record_random(apk, count, seed, out):
    rng = random.Random(seed)
    header = {"apk": apk_version(apk), "mode": "random", "seed": seed, "count": count}
    stats = {"ok": 0, "error": 0}
    with open(out, "w") as f:
        f.write(json.dumps(header) + "\n")
        for n in range(count):
            case = random_case(rng)
            case["id"] = f"random-{seed}-{n}"
            case["apk"] = run_case(apk, case["repos"], case["arch"], case["args"])
            stats["ok" if case["apk"]["status"] == 0 else "error"] += 1
            f.write(json.dumps(case, sort_keys=True) + "\n")
    print(f"recorded {count} random cases into {out}: {stats['ok']} selected, {stats['error']} refused")


# ---------------------------------------------------------------------------------------------
# apk-tools' own solver suite.

def parse_test(path):
    spec = {"args": [], "repos": [], "world": None, "installed": None, "cache": None, "expect": []}
    in_expect = False
    with open(path) as f:
        for line in f.read().splitlines():
            if line.startswith("@ARGS "):
                spec["args"] += line[6:].split()
            elif line.startswith("@WORLD "):
                spec["world"] = line[7:].split()
            elif line.startswith("@INSTALLED "):
                spec["installed"] = line[11:]
            elif line.startswith("@REPO @"):
                tag, repo = line[6:].split(" ", 1)
                spec["repos"].append({"tag": tag[1:], "file": repo})
            elif line.startswith("@REPO "):
                spec["repos"].append({"tag": None, "file": line[6:]})
            elif line.startswith("@CACHE "):
                spec["cache"] = line[7:]
            elif line == "@EXPECT":
                in_expect = True
            elif in_expect:
                spec["expect"].append(line)
    return spec


def sha256_files(paths):
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def record_suite(apk, tests_dir, out):
    header = {"apk": apk_version(apk), "mode": "suite"}
    rows = []
    for name in sorted(os.listdir(tests_dir)):
        if not name.endswith(".test"):
            continue
        path = os.path.join(tests_dir, name)
        spec = parse_test(path)
        inputs = [path] + [os.path.join(tests_dir, r["file"]) for r in spec["repos"]]
        fresh = (spec["args"][:1] == ["add"] and not spec["installed"] and not spec["world"]
                 and not spec["cache"])
        row = {"id": name[:-5], "inputs_sha256": sha256_files(inputs), "args": spec["args"],
               "fresh_install": fresh}
        if fresh:
            repos = []
            for r in spec["repos"]:
                with open(os.path.join(tests_dir, r["file"])) as f:
                    repos.append({"tag": r["tag"], "index": f.read()})
            row["apk"] = run_case(apk, repos, None, spec["args"][1:])
        rows.append(row)
    with open(out, "w") as f:
        f.write(json.dumps(header) + "\n")
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    fresh = sum(1 for r in rows if r["fresh_install"])
    print(f"recorded {len(rows)} suite cases into {out}: {fresh} fresh installs run, "
          f"{len(rows) - fresh} upgrade cases listed")


# ---------------------------------------------------------------------------------------------
# Requests against one real index.

def read_index_records(index_path):
    with tarfile.open(index_path, "r:gz") as tar:
        member = tar.extractfile("APKINDEX")
        text = member.read().decode("utf-8", "replace")
    records = []
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if len(line) > 2 and line[1] == ":":
                fields.setdefault(line[0], []).append(line[2:])
        if "P" in fields:
            records.append(fields)
    return records


def record_index(apk, index_path, arch, count, seed, out):
    rng = random.Random(seed)
    records = read_index_records(index_path)
    names = sorted({r["P"][0] for r in records})
    provided = sorted({atom.split("=")[0].split(">")[0].split("<")[0].split("~")[0]
                       for r in records for line in r.get("p", []) for atom in line.split()})
    by_prefix = {p: [n for n in provided if n.startswith(p)] for p in ("so:", "cmd:", "pc:")}
    other_virtuals = [n for n in provided if ":" not in n and n not in set(names)]
    versions = {}
    for r in records:
        versions.setdefault(r["P"][0], []).append(r["V"][0])
    requests = []
    for _ in range(count):
        kind = rng.choice(["single", "single", "set", "virtual", "so", "cmd", "pc", "versioned",
                           "missing"])
        if kind == "single":
            req = [rng.choice(names)]
        elif kind == "set":
            req = rng.sample(names, rng.randint(2, 6))
        elif kind == "virtual" and other_virtuals:
            req = [rng.choice(other_virtuals)]
        elif kind in ("so", "cmd", "pc") and by_prefix[kind + ":"]:
            req = [rng.choice(by_prefix[kind + ":"])]
        elif kind == "versioned":
            name = rng.choice(names)
            version = rng.choice(versions[name])
            op = rng.choice(["=", ">=", "<", "~", ">~"])
            if op in ("~", ">~") and "." in version:
                version = version.split(".")[0]
            req = [f"{name}{op}{version}"]
        elif kind == "missing":
            req = [rng.choice(names), "no-such-package-" + str(rng.randint(0, 99))]
        else:
            req = [rng.choice(names)]
        requests.append(req)
    digest = hashlib.sha256(open(index_path, "rb").read()).hexdigest()
    header = {"apk": apk_version(apk), "mode": "index", "index_sha256": digest, "arch": arch,
              "seed": seed, "count": count}
    stats = {"ok": 0, "error": 0}
    with open(out, "w") as f:
        f.write(json.dumps(header) + "\n")
        for n, req in enumerate(requests):
            answer = run_case(apk, [{"tag": None, "index": None}], arch, req,
                              index_paths={0: os.path.abspath(index_path)})
            stats["ok" if answer["status"] == 0 else "error"] += 1
            f.write(json.dumps({"id": f"index-{n}", "args": req, "apk": answer},
                               sort_keys=True) + "\n")
    print(f"recorded {count} requests against {index_path} into {out}: "
          f"{stats['ok']} selected, {stats['error']} refused")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("random")
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("-o", "--output", required=True)
    p = sub.add_parser("suite")
    p.add_argument("--tests", required=True)
    p.add_argument("-o", "--output", required=True)
    p = sub.add_parser("index")
    p.add_argument("--index", required=True)
    p.add_argument("--arch", required=True)
    p.add_argument("--count", type=int, default=400)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    apk = apk_binary()
    if args.mode == "random":
        record_random(apk, args.count, args.seed, args.output)
    elif args.mode == "suite":
        record_suite(apk, args.tests, args.output)
    else:
        record_index(apk, args.index, args.arch, args.count, args.seed, args.output)


if __name__ == "__main__":
    main()
