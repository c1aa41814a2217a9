"""`make sbom` (a CycloneDX SBOM of the installed environment) and `make audit` (scripts/audit.py:
the SBOM against a local advisory snapshot, failing on high or critical advisories of direct
dependencies). The advisories here are generated OSV records aimed at the installed versions."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from audit import cvss3_base_score  # noqa: E402


@pytest.fixture(scope="module")
def sbom(tmp_path_factory) -> Path:
    tool = Path(sys.executable).with_name("cyclonedx-py")
    if not tool.is_file():
        pytest.skip("cyclonedx-bom is not installed (it comes with `make setup`)")
    out = tmp_path_factory.mktemp("sbom") / "sbom.cdx.json"
    subprocess.run([str(tool), "environment", sys.executable, "--pyproject", str(ROOT / "pyproject.toml"), "--of",
                    "JSON", "--output-reproducible", "-o", str(out)], check=True, cwd=ROOT, timeout=300)
    return out


def _osv(path: Path, ident: str, package: str, events: list[dict], severity: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    record = {"id": ident, "modified": "2026-12-01T00:00:00Z", "summary": f"test advisory for {package}",
              "affected": [{"package": {"ecosystem": "PyPI", "name": package}, "ranges": [{"type": "ECOSYSTEM", "events": events}]}],
              **severity}
    (path / f"{ident}.json").write_text(json.dumps(record))


def _audit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "audit.py"), *args], capture_output=True, text=True,
                          timeout=120)


def test_the_sbom_lists_the_environment_and_our_direct_dependencies(sbom):
    bom = json.loads(sbom.read_text())
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"].startswith("1.")
    versions = {c["name"].lower(): c["version"] for c in bom["components"]}
    assert versions["torch"] == importlib.metadata.version("torch")
    assert versions["fastapi"] == importlib.metadata.version("fastapi")
    root = bom["metadata"]["component"]
    assert root["name"] == "emofusion"
    direct = next(d["dependsOn"] for d in bom["dependencies"] if d["ref"] == root["bom-ref"])
    assert any(ref.startswith("torch==") for ref in direct) and any(ref.startswith("fastapi==") for ref in direct)
    assert not any(ref.startswith("starlette==") for ref in direct)  # fastapi's dependency, not ours


def test_audit_fails_on_a_critical_advisory_of_a_direct_dependency_only(sbom, tmp_path):
    numpy = importlib.metadata.version("numpy")
    db = tmp_path / "osv"
    critical = {"severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]}
    _osv(db, "TEST-1", "starlette", [{"introduced": "0"}, {"fixed": "999"}], critical)  # indirect: reported, passes
    _osv(db, "TEST-2", "NumPy", [{"introduced": "0"}, {"last_affected": numpy}], {"database_specific": {"severity": "LOW"}})
    _osv(db, "TEST-3", "numpy", [{"introduced": "0"}, {"fixed": numpy}], critical)  # fixed in ours: not a finding
    passing = _audit("--sbom", str(sbom), "--db", str(db), "--out", str(tmp_path / "audit.json"))
    assert passing.returncode == 0, passing.stdout + passing.stderr
    report = json.loads((tmp_path / "audit.json").read_text())
    found = {(f["id"], f["package"], f["direct"], f["severity"]) for f in report["findings"]}
    assert found == {("TEST-1", "starlette", False, "critical"), ("TEST-2", "numpy", True, "low")}
    assert report["result"] == "pass" and report["failing"] == []

    _osv(db, "TEST-4", "numpy", [{"introduced": "0"}], {"database_specific": {"severity": "HIGH"}})
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in db.glob("*.json"):
            z.write(path, path.name)
    failing = _audit("--sbom", str(sbom), "--db", str(archive))
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "FAIL numpy" in failing.stdout and "TEST-4" in failing.stdout
    medium_too = _audit("--sbom", str(sbom), "--db", str(db), "--fail-on", "low")
    assert medium_too.returncode == 1 and "TEST-2" in medium_too.stdout


def test_audit_input_errors_are_one_line(sbom, tmp_path, monkeypatch):
    monkeypatch.delenv("EMOFUSION_ADVISORY_DB", raising=False)
    no_db = _audit("--sbom", str(sbom))
    assert no_db.returncode == 2 and "no advisory snapshot" in no_db.stderr
    missing = _audit("--sbom", str(sbom), "--db", str(tmp_path / "none.zip"))
    assert missing.returncode == 2 and "no such advisory snapshot" in missing.stderr
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    bad = _audit("--sbom", str(sbom), "--db", str(tmp_path / "bad.zip"))
    assert bad.returncode == 2 and bad.stderr.startswith("error: audit:") and "Traceback" not in bad.stderr
    (tmp_path / "x.json").write_text("{}")
    not_sbom = _audit("--sbom", str(tmp_path / "x.json"), "--db", str(tmp_path))
    assert not_sbom.returncode == 2 and "not a CycloneDX SBOM" in not_sbom.stderr


def test_cvss3_base_scores_match_the_specification_examples():
    assert cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H") == 9.8
    assert cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H") == 10.0
    assert cvss3_base_score("CVSS:3.0/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N") == 5.5
    assert cvss3_base_score("CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N") == 3.1
    assert cvss3_base_score("CVSS:4.0/AV:N") is None and cvss3_base_score("CVSS:3.1/AV:N") is None
