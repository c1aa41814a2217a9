"""A vulnerability scan of a CycloneDX SBOM against a local advisory snapshot (`make audit`).

    python scripts/audit.py --sbom reports/sbom.cdx.json --db ADVISORIES --out reports/audit.json

What it reads:
- the SBOM (`make sbom`, cyclonedx-py): every installed package and version, and, from the root
  component's dependencies, which of them are *direct* dependencies (pyproject.toml's);
- ADVISORIES (or $EMOFUSION_ADVISORY_DB): a local snapshot, no network. Either OSV records (a
  folder of .json files or a .zip of them: the PyPI export OSV publishes at
  https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip, which `make advisory-db`
  downloads), or a safety-db `insecure_full.json`.

A package is affected when its version falls in an advisory's ranges (OSV ECOSYSTEM events
introduced / fixed / last_affected, or its explicit version list; safety-db version specifiers).
Severity: the advisory's own rating (GitHub's database_specific.severity), else the CVSS v3 base
score of its vector (>= 9.0 critical, >= 7.0 high, >= 4.0 medium, else low), else "unknown":
listed, never failed on (every safety-db advisory, and PYSEC records without a vector). Withdrawn
OSV records are skipped.
Exit status: 1 when a direct dependency has a high or critical advisory (or --fail-on says
otherwise), 2 for unusable input, else 0. Every match is listed in the report.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

RANKS = {"unknown": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


class AuditInputError(Exception):
    """An SBOM or advisory snapshot that cannot be read."""


@dataclass
class Advisory:
    id: str
    package: str  # canonical name
    summary: str
    severity: str
    ranges: list[list[dict[str, str]]]  # OSV ECOSYSTEM events
    versions: set[str]
    specifiers: list[str]  # safety-db
    aliases: list[str]

    def affects(self, version: str) -> bool:
        if version in self.versions:
            return True
        try:
            v = Version(version)
        except InvalidVersion:
            return False
        for spec in self.specifiers:
            try:
                if v in SpecifierSet(spec, prereleases=True):
                    return True
            except InvalidSpecifier:
                continue
        return any(_in_range(v, events) for events in self.ranges)


def _in_range(v: Version, events: list[dict[str, str]]) -> bool:
    """OSV semantics: sorted events; introduced opens, fixed closes (exclusive), last_affected closes (inclusive)."""
    def key(event: dict[str, str]) -> Version:
        value = next(iter(event.values()))
        return Version("0") if value == "0" else Version(value)

    affected = False
    try:
        for event in sorted(events, key=key):
            kind, value = next(iter(event.items()))
            bound = Version("0") if value == "0" else Version(value)
            if kind == "introduced" and v >= bound:
                affected = True
            elif kind == "fixed" and v >= bound:
                affected = False
            elif kind == "last_affected" and v > bound:
                affected = False
    except (InvalidVersion, StopIteration):
        return False
    return affected


# ---- CVSS v3.x base score (FIRST's specification, section 7) ----------------------------------
_CVSS3 = {
    "AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2}, "AC": {"L": 0.77, "H": 0.44},
    "UI": {"N": 0.85, "R": 0.62}, "C": {"H": 0.56, "L": 0.22, "N": 0.0},
    "I": {"H": 0.56, "L": 0.22, "N": 0.0}, "A": {"H": 0.56, "L": 0.22, "N": 0.0},
}


def _roundup(x: float) -> float:
    i = int(round(x * 100000))
    return i / 100000.0 if i % 10000 == 0 else (math.floor(i / 10000) + 1) / 10.0


def cvss3_base_score(vector: str) -> float | None:
    """The base score of a `CVSS:3.x/AV:../...` vector; None when it is not one."""
    if not vector.startswith("CVSS:3"):
        return None
    try:
        m = dict(part.split(":", 1) for part in vector.split("/")[1:])
        changed = m["S"] == "C"
        pr = {"N": 0.85, "L": 0.68 if changed else 0.62, "H": 0.5 if changed else 0.27}[m["PR"]]
        iss = 1 - (1 - _CVSS3["C"][m["C"]]) * (1 - _CVSS3["I"][m["I"]]) * (1 - _CVSS3["A"][m["A"]])
        impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 if changed else 6.42 * iss
        exploitability = 8.22 * _CVSS3["AV"][m["AV"]] * _CVSS3["AC"][m["AC"]] * pr * _CVSS3["UI"][m["UI"]]
    except (KeyError, ValueError):
        return None
    if impact <= 0:
        return 0.0
    return _roundup(min(1.08 * (impact + exploitability), 10)) if changed else _roundup(min(impact + exploitability, 10))


def _rating(score: float) -> str:
    return "critical" if score >= 9.0 else "high" if score >= 7.0 else "medium" if score >= 4.0 else "low" if score > 0 else "unknown"


def _osv_severity(record: dict[str, Any]) -> str:
    given = str((record.get("database_specific") or {}).get("severity", "")).lower()
    if given in ("low", "moderate", "medium", "high", "critical"):
        return "medium" if given == "moderate" else given
    scores = [cvss3_base_score(str(s.get("score", ""))) for s in record.get("severity", []) or []]
    scores = [s for s in scores if s is not None]
    return _rating(max(scores)) if scores else "unknown"


def _osv_advisories(record: dict[str, Any]) -> Iterator[Advisory]:
    if record.get("withdrawn"):  # retracted by its publisher: not an advisory any more
        return
    severity = _osv_severity(record)
    for affected in record.get("affected", []) or []:
        package = affected.get("package") or {}
        if str(package.get("ecosystem", "")).lower() != "pypi" or not package.get("name"):
            continue
        yield Advisory(
            id=str(record.get("id")), package=canonicalize_name(package["name"]),
            summary=str(record.get("summary") or record.get("details", ""))[:200], severity=severity,
            ranges=[r.get("events", []) for r in affected.get("ranges", []) or [] if r.get("type") in ("ECOSYSTEM", "SEMVER")],
            versions=set(affected.get("versions", []) or []), specifiers=[], aliases=list(record.get("aliases", []) or []))


def load_advisories(path: Path) -> tuple[list[Advisory], str]:
    """Every PyPI advisory in the snapshot at `path`, and a description of the snapshot."""
    records: list[dict[str, Any]] = []
    if not path.exists():
        raise AuditInputError(f"{path}: no such advisory snapshot (`make advisory-db` downloads OSV's PyPI export where the network allows)")
    if path.is_file() and path.suffix == ".json":
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "$meta" in data:  # safety-db insecure_full.json
            out = []
            for name, entries in data.items():
                if name == "$meta":
                    continue
                for entry in entries:
                    out.append(Advisory(id=str(entry.get("id")), package=canonicalize_name(name),
                                        summary=str(entry.get("advisory", ""))[:200], severity="unknown", ranges=[],
                                        versions=set(), specifiers=list(entry.get("specs", [])),
                                        aliases=[str(entry["cve"])] if entry.get("cve") else []))
            return out, f"safety-db {path} (timestamp {data['$meta'].get('timestamp')}, no severities)"
        records = data if isinstance(data, list) else [data]
    elif path.is_file() and path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            records = [json.loads(archive.read(n)) for n in archive.namelist() if n.endswith(".json")]
    elif path.is_dir():
        records = [json.loads(p.read_text()) for p in sorted(path.rglob("*.json"))]
    else:
        raise AuditInputError(f"{path}: expected a folder or .zip of OSV .json records, or a safety-db insecure_full.json")
    newest = max((str(r.get("modified", "")) for r in records), default="")
    return [a for r in records for a in _osv_advisories(r)], f"OSV {path} ({len(records)} records, newest modified {newest or 'unknown'})"


def read_sbom(path: Path) -> tuple[dict[str, str], set[str]]:
    """({canonical package name: version}, the direct dependencies' canonical names)."""
    try:
        bom = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise AuditInputError(f"{path}: not a readable CycloneDX JSON SBOM ({exc})") from None
    if bom.get("bomFormat") != "CycloneDX":
        raise AuditInputError(f"{path}: not a CycloneDX SBOM (bomFormat {bom.get('bomFormat')!r})")
    refs: dict[str, tuple[str, str]] = {}
    packages: dict[str, str] = {}
    for component in bom.get("components", []):
        name, version = canonicalize_name(component.get("name", "")), str(component.get("version", ""))
        if name and version:
            packages.setdefault(name, version)
            refs[component.get("bom-ref", "")] = (name, version)
    root = (bom.get("metadata", {}).get("component") or {}).get("bom-ref")
    direct: set[str] = set()
    for dep in bom.get("dependencies", []):
        if dep.get("ref") == root:
            direct = {refs[r][0] for r in dep.get("dependsOn", []) if r in refs}
    if root is None or not direct:
        raise AuditInputError(f"{path}: the SBOM names no root component with dependencies (make it with "
                              "`cyclonedx-py environment --pyproject pyproject.toml`, as `make sbom` does)")
    return packages, direct


def audit(sbom: Path, db: Path, fail_on: str = "high") -> tuple[dict[str, Any], int]:
    packages, direct = read_sbom(sbom)
    advisories, source = load_advisories(db)
    by_package: dict[str, list[Advisory]] = {}
    for a in advisories:
        by_package.setdefault(a.package, []).append(a)
    findings = []
    for name, version in sorted(packages.items()):
        for a in by_package.get(name, []):
            if a.affects(version):
                findings.append({"package": name, "version": version, "direct": name in direct, "id": a.id,
                                 "aliases": a.aliases, "severity": a.severity, "summary": a.summary})
    threshold = RANKS[fail_on]
    failing = [f for f in findings if f["direct"] and RANKS[f["severity"]] >= threshold > 0]
    report = {"sbom": str(sbom), "advisories": source, "advisory_count": len(advisories),
              "packages": len(packages), "direct_dependencies": sorted(direct), "fail_on": fail_on,
              "findings": findings, "failing": failing,
              "result": "fail" if failing else "pass"}
    return report, 1 if failing else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sbom", type=Path, required=True)
    ap.add_argument("--db", type=Path, default=os.environ.get("EMOFUSION_ADVISORY_DB") or None)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--fail-on", choices=["low", "medium", "high", "critical"], default="high")
    args = ap.parse_args(argv)
    if args.db is None:
        print("error: audit: no advisory snapshot: pass --db or set EMOFUSION_ADVISORY_DB (an OSV PyPI export, "
              "e.g. from `make advisory-db` where the network reaches osv-vulnerabilities.storage.googleapis.com)",
              file=sys.stderr)
        return 2
    try:
        report, status = audit(args.sbom, args.db, args.fail_on)
    except (AuditInputError, ValueError, OSError, zipfile.BadZipFile) as exc:
        print(f"error: audit: {exc}", file=sys.stderr)
        return 2
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"audit: {report['packages']} packages ({len(report['direct_dependencies'])} direct) against "
          f"{report['advisory_count']} advisories from {report['advisories']}: {len(report['findings'])} finding(s), "
          f"{len(report['failing'])} {args.fail_on} or worse in direct dependencies -> {report['result']}")
    for f in report["findings"]:
        mark = "FAIL" if f in report["failing"] else "    "
        print(f"  {mark} {f['package']} {f['version']} {'direct' if f['direct'] else 'indirect'} {f['id']} "
              f"{f['severity']}: {f['summary'][:100]}")
    return status


if __name__ == "__main__":
    sys.exit(main())
