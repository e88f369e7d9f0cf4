"""JUnit XML, the format CI systems show as test results: one testcase per scenario."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from imagegen.report.model import RunResult
from imagegen.safeoutput import safe_replace

SUITE_PREFIX = "imagegen test "


def junit_xml(result: RunResult) -> str:
    failures = sum(1 for s in result.scenarios if not s.passed and not s.skipped and s.error is None)
    errors = sum(1 for s in result.scenarios if s.error is not None and not s.skipped)
    skipped = sum(1 for s in result.scenarios if s.skipped)
    suite = ET.Element("testsuite", {
        "name": f"{SUITE_PREFIX}{result.profile}", "tests": str(len(result.scenarios)),
        "failures": str(failures), "errors": str(errors), "skipped": str(skipped),
        "time": f"{sum(s.seconds for s in result.scenarios):.1f}",
    })
    props = ET.SubElement(suite, "properties")
    for name, value in [("accel", result.accel), ("boot", result.boot), *result.figures.items()]:
        ET.SubElement(props, "property", {"name": name, "value": str(value)})
    for s in result.scenarios:
        case = ET.SubElement(suite, "testcase", {"classname": "imagegen.lab", "name": s.name,
                                                 "time": f"{s.seconds:.1f}"})
        lines = [f"{'PASS' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in s.checks]
        lines += [f"{k} = {v}" for k, v in s.figures.items()]
        if s.skipped:
            ET.SubElement(case, "skipped", {"message": s.skip_reason or s.error or "skipped"})
        elif s.error is not None:
            el = ET.SubElement(case, "error", {"message": s.error})
            el.text = "\n".join(lines)
        elif not s.passed:
            first = s.failed_checks()[0] if s.failed_checks() else None
            el = ET.SubElement(case, "failure", {"message": f"{first.name}: {first.detail}" if first else
                                                 "failed"})
            el.text = "\n".join(lines)
        out = ET.SubElement(case, "system-out")
        out.text = "\n".join(lines)
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def is_junit_report(content: bytes) -> bool:
    """Whether content is a JUnit file imagegen wrote: a testsuite named "imagegen test …"."""
    try:
        root = ET.fromstring(content)
    except ET.ParseError:
        return False
    return root.tag == "testsuite" and root.get("name", "").startswith(SUITE_PREFIX)


def write_junit(result: RunResult, path: Path, option: str = "--junit") -> None:
    safe_replace(path, junit_xml(result).encode(), option=option, ours=is_junit_report)
